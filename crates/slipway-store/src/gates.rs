//! Release gate results. Storing one writes the version's `slipway.gate.*` tags in the same
//! transaction, so the registry's mirror and the record a policy reads never disagree.

use std::collections::BTreeMap;

use slipway_core::gate::{GATE_TAG_PREFIX, GateRecord, NewGateRecord, RulesSource};
use slipway_core::tracking::Tag;
use slipway_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::sql::{db_err, get_i64, get_opt_i64, get_opt_str, get_str};

/// Results kept per version: gates are re-run on every retrain, and a policy reads the newest.
const KEPT_PER_VERSION: i64 = 100;

pub(crate) async fn put_gate(store: &SqlStore, record: NewGateRecord) -> Result<GateRecord> {
    let rules = serde_json::to_string(&record.rules)
        .map_err(|e| Error::internal("encoding gate rules", e))?;
    let metrics = serde_json::to_string(&finite(&record.metrics))
        .map_err(|e| Error::internal("encoding gate metrics", e))?;
    let id = store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let model_id =
                    crate::registry::require_version(&mut *tx, &record.model_name, record.version)
                        .await?;
                let row = sqlx::query(
                    "INSERT INTO gate_results (model_name, version, champion_version, passed, \
                     data_uri, data_sha256, rules_json, rules_source, run_id, metrics_json, \
                     report_json, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                )
                .bind(record.model_name.clone())
                .bind(record.version)
                .bind(record.champion_version)
                .bind(i64::from(record.passed))
                .bind(record.data_uri.clone())
                .bind(record.data_sha256.clone())
                .bind(rules)
                .bind(record.rules_source.as_str())
                .bind(record.run_id.clone())
                .bind(metrics)
                .bind(record.report.clone())
                .bind(record.created_at)
                .bind(record.created_by.clone())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("storing a gate result"))?;
                let id = get_i64(&row, "id")?;
                let mut tags = vec![
                    (
                        "status",
                        if record.passed { "passed" } else { "failed" }.to_owned(),
                    ),
                    ("id", id.to_string()),
                ];
                if let Some(run) = &record.run_id {
                    tags.push(("run_id", run.clone()));
                }
                for (key, value) in tags {
                    crate::registry::upsert_version_tag(
                        &mut *tx,
                        model_id,
                        record.version,
                        &Tag {
                            key: format!("{GATE_TAG_PREFIX}{key}"),
                            value,
                        },
                    )
                    .await?;
                }
                sqlx::query(
                    "DELETE FROM gate_results WHERE model_name = $1 AND version = $2 AND id <= \
                     (SELECT id FROM gate_results WHERE model_name = $1 AND version = $2 \
                     ORDER BY id DESC LIMIT 1 OFFSET $3)",
                )
                .bind(record.model_name.clone())
                .bind(record.version)
                .bind(KEPT_PER_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(db_err("pruning gate results"))?;
                Ok(id)
            })
        })
        .await?;
    get_gate(store, id).await
}

/// JSON has no NaN: a metric that could not be measured is left out.
fn finite(metrics: &BTreeMap<String, f64>) -> BTreeMap<&str, f64> {
    metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

fn gate_from_row(row: &AnyRow) -> Result<GateRecord> {
    let rules: Vec<String> = serde_json::from_str(&get_str(row, "rules_json")?)
        .map_err(|e| Error::internal("decoding gate rules", e))?;
    let metrics: BTreeMap<String, f64> = serde_json::from_str(&get_str(row, "metrics_json")?)
        .map_err(|e| Error::internal("decoding gate metrics", e))?;
    Ok(GateRecord {
        id: get_i64(row, "id")?,
        model_name: get_str(row, "model_name")?,
        version: get_i64(row, "version")?,
        champion_version: get_opt_i64(row, "champion_version")?,
        passed: get_i64(row, "passed")? != 0,
        data_uri: get_str(row, "data_uri")?,
        data_sha256: get_str(row, "data_sha256")?,
        rules,
        rules_source: RulesSource::parse(&get_str(row, "rules_source")?)?,
        run_id: get_opt_str(row, "run_id")?,
        metrics,
        report: get_str(row, "report_json")?,
        created_at: get_i64(row, "created_at")?,
        created_by: get_str(row, "created_by")?,
    })
}

pub(crate) async fn get_gate(store: &SqlStore, id: i64) -> Result<GateRecord> {
    let row = sqlx::query("SELECT * FROM gate_results WHERE id = $1")
        .bind(id)
        .fetch_optional(&store.read)
        .await
        .map_err(db_err("reading a gate result"))?
        .ok_or_else(|| Error::not_found(format!("gate {id} does not exist")))?;
    gate_from_row(&row)
}

/// A model's gate results (of one version, or all), newest first, at most `limit`.
pub(crate) async fn list_gates(
    store: &SqlStore,
    model_name: &str,
    version: Option<i64>,
    limit: usize,
) -> Result<Vec<GateRecord>> {
    let limit = i64::try_from(limit.min(1000)).unwrap_or(1000);
    let rows = match version {
        Some(version) => {
            sqlx::query(
                "SELECT * FROM gate_results WHERE model_name = $1 AND version = $2 \
             ORDER BY id DESC LIMIT $3",
            )
            .bind(model_name.to_owned())
            .bind(version)
            .bind(limit)
            .fetch_all(&store.read)
            .await
        }
        None => {
            sqlx::query(
                "SELECT * FROM gate_results WHERE model_name = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(model_name.to_owned())
            .bind(limit)
            .fetch_all(&store.read)
            .await
        }
    }
    .map_err(db_err("reading gate results"))?;
    rows.iter().map(gate_from_row).collect()
}
