//! Deployments (one JSON body per row, compare-and-set on the revision), their events, and the
//! prediction log.

use slipway_core::deployment::{Deployment, DeploymentEvent, NewDeploymentEvent, PredictionRecord};
use slipway_core::{Error, Result};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::sql::{db_err, get_i64, get_opt_i64, get_str};
use crate::{SqlStore, now_ms};

fn not_found(name: &str) -> Error {
    Error::not_found(format!(
        "deployment '{name}' does not exist (list them with `slipway deploy list`)"
    ))
}

fn from_row(row: &AnyRow) -> Result<Deployment> {
    let mut deployment: Deployment = serde_json::from_str(&get_str(row, "body")?)
        .map_err(|e| Error::internal("decoding a deployment", e))?;
    deployment.revision = get_i64(row, "revision")?;
    Ok(deployment)
}

fn encode(deployment: &Deployment) -> Result<String> {
    serde_json::to_string(deployment).map_err(|e| Error::internal("encoding a deployment", e))
}

async fn append_events(
    tx: &mut AnyConnection,
    deployment: &str,
    time_ms: i64,
    events: &[NewDeploymentEvent],
) -> Result<()> {
    for event in events {
        if let Some(key) = &event.compact_key {
            // The deployment's latest event, if it has the same key, stands for this one too:
            // an index probe on (deployment, seq), in the writer's transaction, so no other
            // event can slip in between the read and the update.
            let merged = sqlx::query(
                "UPDATE deployment_events SET event_count = event_count + 1, last_time_ms = $1, detail = $2 \
                 WHERE seq = (SELECT MAX(seq) FROM deployment_events WHERE deployment = $3) \
                 AND compact_key = $4",
            )
            .bind(time_ms)
            .bind(event.detail.to_string())
            .bind(deployment.to_owned())
            .bind(key.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err("compacting a deployment event"))?;
            if merged.rows_affected() > 0 {
                continue;
            }
        }
        sqlx::query(
            "INSERT INTO deployment_events \
             (deployment, time_ms, rollout_id, kind, actor, detail, compact_key, event_count, last_time_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $2)",
        )
        .bind(deployment.to_owned())
        .bind(time_ms)
        .bind(event.rollout_id)
        .bind(event.kind.clone())
        .bind(event.actor.clone())
        .bind(event.detail.to_string())
        .bind(event.compact_key.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording a deployment event"))?;
    }
    Ok(())
}

pub(crate) async fn create(
    store: &SqlStore,
    mut deployment: Deployment,
    event: NewDeploymentEvent,
) -> Result<Deployment> {
    deployment.revision = 1;
    let body = encode(&deployment)?;
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                // ON CONFLICT, not a check first: two creates of one name at once must give
                // one deployment and one AlreadyExists, never a constraint error (a 500).
                let inserted = sqlx::query(
                    "INSERT INTO deployments (name, model_name, revision, body, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                )
                .bind(deployment.name.clone())
                .bind(deployment.model_name.clone())
                .bind(deployment.revision)
                .bind(body)
                .bind(deployment.updated_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err("creating a deployment"))?;
                if inserted.rows_affected() == 0 {
                    return Err(Error::already_exists(format!(
                        "deployment '{}' already exists; change it with `slipway deploy update {}`",
                        deployment.name, deployment.name
                    )));
                }
                append_events(tx, &deployment.name, deployment.updated_ms, &[event]).await?;
                Ok(deployment)
            })
        })
        .await
}

pub(crate) async fn get(store: &SqlStore, name: &str) -> Result<Deployment> {
    let row = sqlx::query("SELECT revision, body FROM deployments WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(&store.read)
        .await
        .map_err(db_err("reading a deployment"))?;
    match row {
        Some(row) => from_row(&row),
        None => Err(not_found(name)),
    }
}

pub(crate) async fn list(store: &SqlStore) -> Result<Vec<Deployment>> {
    let rows = sqlx::query("SELECT revision, body FROM deployments ORDER BY name")
        .fetch_all(&store.read)
        .await
        .map_err(db_err("listing deployments"))?;
    rows.iter().map(from_row).collect()
}

pub(crate) async fn update(
    store: &SqlStore,
    mut deployment: Deployment,
    events: Vec<NewDeploymentEvent>,
) -> Result<Deployment> {
    let expected = deployment.revision;
    deployment.revision = expected + 1;
    let body = encode(&deployment)?;
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let result = sqlx::query(
                    "UPDATE deployments SET revision = $1, body = $2, updated_at = $3, model_name = $4 \
                     WHERE name = $5 AND revision = $6",
                )
                .bind(deployment.revision)
                .bind(body)
                .bind(deployment.updated_ms)
                .bind(deployment.model_name.clone())
                .bind(deployment.name.clone())
                .bind(expected)
                .execute(&mut *tx)
                .await
                .map_err(db_err("updating a deployment"))?;
                if result.rows_affected() == 0 {
                    let current = sqlx::query("SELECT revision FROM deployments WHERE name = $1")
                        .bind(deployment.name.clone())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("reading a deployment's revision"))?;
                    return Err(match current {
                        None => not_found(&deployment.name),
                        Some(row) => Error::invalid(format!(
                            "deployment '{}' changed meanwhile (revision {} is now {}); read it again and retry",
                            deployment.name,
                            expected,
                            get_i64(&row, "revision")?
                        )),
                    });
                }
                append_events(tx, &deployment.name, deployment.updated_ms, &events).await?;
                Ok(deployment)
            })
        })
        .await
}

pub(crate) async fn append(
    store: &SqlStore,
    name: &str,
    events: Vec<NewDeploymentEvent>,
) -> Result<()> {
    let name = name.to_owned();
    let now = now_ms();
    store
        .writer
        .write(move |tx| Box::pin(async move { append_events(tx, &name, now, &events).await }))
        .await
}

pub(crate) async fn delete(store: &SqlStore, name: &str, event: NewDeploymentEvent) -> Result<()> {
    let name = name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let result = sqlx::query("DELETE FROM deployments WHERE name = $1")
                    .bind(name.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a deployment"))?;
                if result.rows_affected() == 0 {
                    return Err(not_found(&name));
                }
                append_events(tx, &name, now_ms(), &[event]).await
            })
        })
        .await
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<DeploymentEvent> {
    let time_ms = get_i64(row, "time_ms")?;
    Ok(DeploymentEvent {
        seq: get_i64(row, "seq")?,
        deployment: get_str(row, "deployment")?,
        time_ms,
        rollout_id: get_opt_i64(row, "rollout_id")?,
        kind: get_str(row, "kind")?,
        actor: get_str(row, "actor")?,
        detail: serde_json::from_str(&get_str(row, "detail")?)
            .map_err(|e| Error::internal("decoding a deployment event", e))?,
        count: get_i64(row, "event_count")?,
        last_time_ms: get_opt_i64(row, "last_time_ms")?.unwrap_or(time_ms),
    })
}

pub(crate) async fn events(
    store: &SqlStore,
    name: &str,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<DeploymentEvent>> {
    let rows = sqlx::query(
        "SELECT * FROM deployment_events WHERE deployment = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(name.to_owned())
    .bind(after_seq)
    .bind(limit as i64)
    .fetch_all(&store.read)
    .await
    .map_err(db_err("reading deployment events"))?;
    rows.iter().map(event_from_row).collect()
}

/// A deployment's newest events, newest first (through the `(deployment, seq)` index).
pub(crate) async fn recent_events(
    store: &SqlStore,
    name: &str,
    limit: usize,
) -> Result<Vec<DeploymentEvent>> {
    let rows = sqlx::query(
        "SELECT * FROM deployment_events WHERE deployment = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(name.to_owned())
    .bind(limit as i64)
    .fetch_all(&store.read)
    .await
    .map_err(db_err("reading deployment events"))?;
    rows.iter().map(event_from_row).collect()
}

pub(crate) async fn last_event(
    store: &SqlStore,
    name: &str,
    kind: &str,
) -> Result<Option<DeploymentEvent>> {
    let row = sqlx::query(
        "SELECT * FROM deployment_events WHERE deployment = $1 AND kind = $2 ORDER BY seq DESC LIMIT 1",
    )
    .bind(name.to_owned())
    .bind(kind.to_owned())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading deployment events"))?;
    row.as_ref().map(event_from_row).transpose()
}

/// Rows per INSERT: 8 parameters each stays far below SQLite's and PostgreSQL's limits.
const PREDICTIONS_PER_STATEMENT: usize = 200;

pub(crate) async fn append_predictions(
    store: &SqlStore,
    records: Vec<PredictionRecord>,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                for chunk in records.chunks(PREDICTIONS_PER_STATEMENT) {
                    // Through `Sql`: anonymous placeholders on SQLite, which resolves named
                    // ones by a linear scan (quadratic over a 1,600-parameter statement).
                    let mut sql = crate::sql::Sql::on(
                        tx,
                        "INSERT INTO prediction_log (deployment, request_id, time_ms, variant, \
                         model_version, inputs, outputs, latency_us) VALUES ",
                    );
                    for (index, record) in chunk.iter().enumerate() {
                        sql.push(if index == 0 { "(" } else { ", (" });
                        sql.bind(record.deployment.clone())
                            .push(", ")
                            .bind(record.request_id.clone())
                            .push(", ")
                            .bind(record.time_ms)
                            .push(", ")
                            .bind(record.variant.as_str().to_owned())
                            .push(", ")
                            .bind(record.model_version.clone())
                            .push(", ")
                            .bind(record.inputs.to_string())
                            .push(", ")
                            .bind(record.outputs.to_string())
                            .push(", ")
                            .bind(i64::try_from(record.latency_us).unwrap_or(i64::MAX))
                            .push(")");
                    }
                    sql.query()
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("writing the prediction log"))?;
                }
                Ok(())
            })
        })
        .await
}

pub(crate) async fn read_predictions(
    store: &SqlStore,
    deployment: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<PredictionRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM prediction_log WHERE deployment = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(deployment.to_owned())
    .bind(after_id)
    .bind(limit as i64)
    .fetch_all(&store.read)
    .await
    .map_err(db_err("reading the prediction log"))?;
    rows.iter().map(prediction_from_row).collect()
}

fn prediction_from_row(row: &sqlx::any::AnyRow) -> Result<PredictionRecord> {
    let json = |column: &str| -> Result<serde_json::Value> {
        serde_json::from_str(&get_str(row, column)?)
            .map_err(|e| Error::internal("decoding a prediction record", e))
    };
    Ok(PredictionRecord {
        id: get_i64(row, "id")?,
        deployment: get_str(row, "deployment")?,
        request_id: get_str(row, "request_id")?,
        time_ms: get_i64(row, "time_ms")?,
        variant: slipway_core::deployment::Variant::parse(&get_str(row, "variant")?)
            .unwrap_or(slipway_core::deployment::Variant::Stable),
        model_version: get_str(row, "model_version")?,
        inputs: json("inputs")?,
        outputs: json("outputs")?,
        latency_us: u64::try_from(get_i64(row, "latency_us")?).unwrap_or(0),
    })
}

/// Counted through the (deployment, time_ms) indexes, up to `limit`: what a retention sweep
/// is about to delete, read without the rows' payload.
pub(crate) async fn expired_counts(
    store: &SqlStore,
    deployment: &str,
    before_ms: i64,
    limit: usize,
) -> Result<(u64, u64)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut counts = [0u64; 2];
    for (count, table) in counts
        .iter_mut()
        .zip(["prediction_log", "deployment_labels"])
    {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM {table} \
             WHERE deployment = $1 AND time_ms < $2 LIMIT $3) AS due"
        )))
        .bind(deployment.to_owned())
        .bind(before_ms)
        .bind(limit)
        .fetch_one(&store.read)
        .await
        .map_err(db_err("counting expired predictions"))?;
        *count = u64::try_from(get_i64(&row, "n")?).unwrap_or(0);
    }
    Ok((counts[0], counts[1]))
}

pub(crate) async fn expire_predictions(
    store: &SqlStore,
    deployment: String,
    before_ms: i64,
    limits: (u64, u64),
) -> Result<(u64, u64)> {
    let limit = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let (prediction_limit, label_limit) = (limit(limits.0), limit(limits.1));
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                // By time, through the (deployment, time_ms) index: a row whose time lies
                // ahead (a replica's clock) holds up nothing behind it.
                let predictions = sqlx::query(
                    "DELETE FROM prediction_log WHERE id IN (SELECT id FROM prediction_log \
                     WHERE deployment = $1 AND time_ms < $2 LIMIT $3)",
                )
                .bind(deployment.clone())
                .bind(before_ms)
                .bind(prediction_limit)
                .execute(&mut *tx)
                .await
                .map_err(db_err("deleting expired predictions"))?
                .rows_affected();
                let labels = sqlx::query(
                    "DELETE FROM deployment_labels WHERE deployment = $1 AND request_id IN \
                     (SELECT request_id FROM deployment_labels WHERE deployment = $1 \
                     AND time_ms < $2 LIMIT $3)",
                )
                .bind(deployment)
                .bind(before_ms)
                .bind(label_limit)
                .execute(&mut *tx)
                .await
                .map_err(db_err("deleting expired labels"))?
                .rows_affected();
                Ok((predictions, labels))
            })
        })
        .await
}

/// Rows per label INSERT: 4 parameters each.
const LABELS_PER_STATEMENT: usize = 200;

pub(crate) async fn put_labels(
    store: &SqlStore,
    deployment: &str,
    labels: Vec<(String, serde_json::Value)>,
    time_ms: i64,
) -> Result<u64> {
    if labels.is_empty() {
        return Ok(0);
    }
    let name = deployment.to_owned();
    let deployment = deployment.to_owned();
    let ids: Vec<String> = labels.iter().map(|(id, _)| id.clone()).collect();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                for chunk in labels.chunks(LABELS_PER_STATEMENT) {
                    let mut sql = crate::sql::Sql::on(
                        tx,
                        "INSERT INTO deployment_labels (deployment, request_id, label, time_ms) VALUES ",
                    );
                    for (index, (request_id, label)) in chunk.iter().enumerate() {
                        sql.push(if index == 0 { "(" } else { ", (" });
                        sql.bind(deployment.clone())
                            .push(", ")
                            .bind(request_id.clone())
                            .push(", ")
                            .bind(label.to_string())
                            .push(", ")
                            .bind(time_ms)
                            .push(")");
                    }
                    sql.push(
                        " ON CONFLICT (deployment, request_id) DO UPDATE SET \
                         label = excluded.label, time_ms = excluded.time_ms",
                    );
                    sql.query()
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("writing labels"))?;
                }
                Ok(())
            })
        })
        .await?;
    // How many of them name a logged prediction (the rest wait for none: their requests were
    // not sampled, or the ids are wrong).
    let mut matched = 0u64;
    for chunk in ids.chunks(LABELS_PER_STATEMENT) {
        let mut sql = crate::sql::Sql::new(
            store.backend,
            "SELECT COUNT(*) AS n FROM prediction_log WHERE deployment = ",
        );
        sql.bind(name.clone()).push(" AND request_id IN ");
        sql.bind_list(chunk.iter().cloned());
        let row = sql
            .query()
            .fetch_one(&store.read)
            .await
            .map_err(db_err("matching labels"))?;
        matched += u64::try_from(get_i64(&row, "n")?).unwrap_or(0);
    }
    Ok(matched)
}

pub(crate) async fn predictions_with_labels(
    store: &SqlStore,
    deployment: &str,
    from_ms: i64,
    to_ms: i64,
    after_id: i64,
    limit: usize,
) -> Result<Vec<(PredictionRecord, Option<serde_json::Value>)>> {
    // Not the inputs: performance reads outputs and labels, and a record's inputs may hold
    // 10,000 values.
    let rows = sqlx::query(
        "SELECT p.id, p.deployment, p.request_id, p.time_ms, p.variant, p.model_version, \
         'null' AS inputs, p.outputs, p.latency_us, l.label AS truth \
         FROM prediction_log p LEFT JOIN deployment_labels l \
         ON l.deployment = p.deployment AND l.request_id = p.request_id \
         WHERE p.deployment = $1 AND p.time_ms >= $2 AND p.time_ms < $3 AND p.id > $4 \
         ORDER BY p.id LIMIT $5",
    )
    .bind(deployment.to_owned())
    .bind(from_ms)
    .bind(to_ms)
    .bind(after_id)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&store.read)
    .await
    .map_err(db_err("reading labeled predictions"))?;
    rows.iter()
        .map(|row| {
            let truth = crate::sql::get_opt_str(row, "truth")?
                .map(|t| {
                    serde_json::from_str(&t).map_err(|e| Error::internal("decoding a label", e))
                })
                .transpose()?;
            Ok((prediction_from_row(row)?, truth))
        })
        .collect()
}
