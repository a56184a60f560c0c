//! Monitoring references (one per model version) and the closed windows of live traffic.

use slipway_core::monitoring::{MonitorReference, MonitorWindow};
use slipway_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::sql::{db_err, get_i64, get_opt_str, get_str};

/// Windows kept per deployment: five-minute windows for a month; older ones are deleted as new
/// ones arrive, so a deployment's history cannot grow without bound.
pub(crate) const WINDOWS_KEPT: i64 = 10_000;

fn json(text: &str, what: &'static str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::internal(what, e))
}

pub(crate) async fn put_reference(store: &SqlStore, reference: MonitorReference) -> Result<()> {
    let schema = reference.schema.to_string();
    let summary = reference.summary.to_string();
    let performance = reference.performance.as_ref().map(|p| p.to_string());
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                crate::registry::require_version(&mut *tx, &reference.model_name, reference.version)
                    .await?;
                sqlx::query(
                    "INSERT INTO monitor_references (model_name, version, created_ms, created_by, \
                     row_count, label_column, schema_json, summary_json, performance) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (model_name, version) DO UPDATE SET created_ms = excluded.created_ms, \
                     created_by = excluded.created_by, row_count = excluded.row_count, \
                     label_column = excluded.label_column, schema_json = excluded.schema_json, \
                     summary_json = excluded.summary_json, performance = excluded.performance",
                )
                .bind(reference.model_name.clone())
                .bind(reference.version)
                .bind(reference.created_ms)
                .bind(reference.created_by.clone())
                .bind(i64::try_from(reference.rows).unwrap_or(i64::MAX))
                .bind(reference.label_column.clone())
                .bind(schema)
                .bind(summary)
                .bind(performance)
                .execute(&mut *tx)
                .await
                .map_err(db_err("storing a monitoring reference"))?;
                // Every server's Monitor caches references: a replaced one must be read again.
                crate::cluster::bump_generation(
                    tx,
                    slipway_core::cluster::GENERATION_MONITOR_REFERENCES,
                )
                .await?;
                Ok(())
            })
        })
        .await
}

fn reference_from_row(row: &AnyRow) -> Result<MonitorReference> {
    Ok(MonitorReference {
        model_name: get_str(row, "model_name")?,
        version: get_i64(row, "version")?,
        created_ms: get_i64(row, "created_ms")?,
        created_by: get_str(row, "created_by")?,
        rows: u64::try_from(get_i64(row, "row_count")?).unwrap_or(0),
        label_column: get_opt_str(row, "label_column")?,
        schema: json(
            &get_str(row, "schema_json")?,
            "decoding a monitoring schema",
        )?,
        summary: json(
            &get_str(row, "summary_json")?,
            "decoding a reference summary",
        )?,
        performance: get_opt_str(row, "performance")?
            .map(|p| json(&p, "decoding a reference performance"))
            .transpose()?,
    })
}

pub(crate) async fn get_reference(
    store: &SqlStore,
    model_name: &str,
    version: i64,
) -> Result<Option<MonitorReference>> {
    let row =
        sqlx::query("SELECT * FROM monitor_references WHERE model_name = $1 AND version = $2")
            .bind(model_name.to_owned())
            .bind(version)
            .fetch_optional(&store.read)
            .await
            .map_err(db_err("reading a monitoring reference"))?;
    row.as_ref().map(reference_from_row).transpose()
}

pub(crate) async fn append_window(store: &SqlStore, window: MonitorWindow) -> Result<i64> {
    let report = window.report.to_string();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO monitor_windows (deployment, model_name, version, start_ms, \
                     end_ms, row_count, report) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(window.deployment.clone())
                .bind(window.model_name.clone())
                .bind(window.version)
                .bind(window.start_ms)
                .bind(window.end_ms)
                .bind(i64::try_from(window.rows).unwrap_or(i64::MAX))
                .bind(report)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("storing a monitoring window"))?;
                let id = get_i64(&row, "id")?;
                // Per deployment: a quiet deployment keeps its month beside a busy one.
                sqlx::query(
                    "DELETE FROM monitor_windows WHERE deployment = $1 AND id < \
                     (SELECT id FROM monitor_windows WHERE deployment = $1 \
                     ORDER BY id DESC LIMIT 1 OFFSET $2)",
                )
                .bind(window.deployment.clone())
                .bind(WINDOWS_KEPT - 1)
                .execute(&mut *tx)
                .await
                .map_err(db_err("pruning old monitoring windows"))?;
                Ok(id)
            })
        })
        .await
}

pub(crate) async fn windows(
    store: &SqlStore,
    deployment: &str,
    before_id: Option<i64>,
    limit: usize,
) -> Result<Vec<MonitorWindow>> {
    let rows = sqlx::query(
        "SELECT * FROM monitor_windows WHERE deployment = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(deployment.to_owned())
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&store.read)
    .await
    .map_err(db_err("reading monitoring windows"))?;
    rows.iter()
        .map(|row| {
            Ok(MonitorWindow {
                id: get_i64(row, "id")?,
                deployment: get_str(row, "deployment")?,
                model_name: get_str(row, "model_name")?,
                version: get_i64(row, "version")?,
                start_ms: get_i64(row, "start_ms")?,
                end_ms: get_i64(row, "end_ms")?,
                rows: u64::try_from(get_i64(row, "row_count")?).unwrap_or(0),
                report: json(&get_str(row, "report")?, "decoding a monitoring window")?,
            })
        })
        .collect()
}
