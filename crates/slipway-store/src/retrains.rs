//! Retraining triggers (one document) and retrains. Starting a retrain decides and writes in
//! one transaction (busy, cooldown, daily cap read from the rows it writes beside), and a
//! partial unique index keeps one active retrain per model even when two firings race.

use slipway_core::retrain::{
    Cause, Retrain, RetrainProgress, RetrainState, StoredTriggerConfig, Trigger, TriggerConfig,
    may_start,
};
use slipway_core::{Error, Result};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::sql::{db_err, get_i64, get_opt_i64, get_opt_str, get_str, is_unique_violation};

/// Retrains kept: the newest; older ones are deleted as new ones are written.
const KEPT: i64 = 10_000;
/// Recent retrains of a model read to decide a firing (a day's worth at any daily cap).
const RECENT: i64 = 500;

pub(crate) async fn get_config(store: &SqlStore) -> Result<Option<StoredTriggerConfig>> {
    crate::documents::get::<TriggerConfig>(
        store,
        "trigger_config",
        "reading the retraining triggers",
    )
    .await
}

pub(crate) async fn put_config(
    store: &SqlStore,
    config: TriggerConfig,
    expected: i64,
    by: String,
    now_ms: i64,
) -> Result<StoredTriggerConfig> {
    crate::documents::put(
        store,
        "trigger_config",
        "retraining triggers",
        config,
        expected,
        by,
        now_ms,
    )
    .await
}

fn retrain_from_row(row: &AnyRow) -> Result<Retrain> {
    let cause: Cause = serde_json::from_str(&get_str(row, "cause")?)
        .map_err(|e| Error::internal("decoding a retrain's cause", e))?;
    Ok(Retrain {
        id: get_i64(row, "id")?,
        trigger: get_str(row, "trigger_name")?,
        model_name: get_str(row, "model_name")?,
        deployment: get_opt_str(row, "deployment")?,
        state: RetrainState::parse(&get_str(row, "state")?)?,
        cause,
        reason: get_opt_str(row, "reason")?,
        requested_by: get_str(row, "requested_by")?,
        created_ms: get_i64(row, "created_ms")?,
        updated_ms: get_i64(row, "updated_ms")?,
        claimed_by: get_opt_str(row, "claimed_by")?,
        lease_until_ms: get_opt_i64(row, "lease_until_ms")?,
        pipeline_run_id: get_opt_str(row, "pipeline_run_id")?,
        version: get_opt_i64(row, "version")?,
        gate_id: get_opt_i64(row, "gate_id")?,
        rollout_id: get_opt_i64(row, "rollout_id")?,
    })
}

async fn load(conn: &mut AnyConnection, id: i64) -> Result<Retrain> {
    let row = sqlx::query("SELECT * FROM retrains WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_err("reading a retrain"))?
        .ok_or_else(|| Error::not_found(format!("retrain {id} does not exist")))?;
    retrain_from_row(&row)
}

/// Fires `trigger`: a queued retrain, or a skipped one saying why not. `Err(AlreadyExists)`
/// when another firing for the model won a race (read again to see it).
pub(crate) async fn start(
    store: &SqlStore,
    trigger: Trigger,
    cause: Cause,
    by: String,
    now_ms: i64,
) -> Result<Retrain> {
    let cause_json =
        serde_json::to_string(&cause).map_err(|e| Error::internal("encoding a cause", e))?;
    let id = store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT * FROM retrains WHERE model_name = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(trigger.model.clone())
                .bind(RECENT)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("reading a model's retrains"))?;
                let recent = rows
                    .iter()
                    .map(retrain_from_row)
                    .collect::<Result<Vec<_>>>()?;
                let (state, reason) = match may_start(&trigger, now_ms, &recent) {
                    Ok(()) => (RetrainState::Queued, None),
                    Err(reason) => (RetrainState::Skipped, Some(reason)),
                };
                let row = sqlx::query(
                    "INSERT INTO retrains (trigger_name, model_name, deployment, state, cause, \
                     reason, requested_by, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
                )
                .bind(trigger.name.clone())
                .bind(trigger.model.clone())
                .bind(trigger.deployment.clone())
                .bind(state.as_str())
                .bind(cause_json)
                .bind(reason)
                .bind(by)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::already_exists(format!(
                            "another retrain of '{}' started meanwhile",
                            trigger.model
                        ))
                    } else {
                        db_err("storing a retrain")(e)
                    }
                })?;
                let id = get_i64(&row, "id")?;
                sqlx::query(
                    "DELETE FROM retrains WHERE id <= \
                     (SELECT id FROM retrains ORDER BY id DESC LIMIT 1 OFFSET $1)",
                )
                .bind(KEPT)
                .execute(&mut *tx)
                .await
                .map_err(db_err("pruning retrains"))?;
                Ok(id)
            })
        })
        .await?;
    get(store, id).await
}

pub(crate) async fn get(store: &SqlStore, id: i64) -> Result<Retrain> {
    let mut conn = store
        .read
        .acquire()
        .await
        .map_err(db_err("reading a retrain"))?;
    load(&mut conn, id).await
}

/// Gives the oldest queued retrain to `worker`, leased until `lease_until_ms`.
pub(crate) async fn claim(
    store: &SqlStore,
    worker: String,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<Retrain>> {
    let id = store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let Some(row) = sqlx::query(
                    "SELECT id FROM retrains WHERE state = 'queued' ORDER BY id LIMIT 1",
                )
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("finding a queued retrain"))?
                else {
                    return Ok(None);
                };
                let id = get_i64(&row, "id")?;
                let done = sqlx::query(
                    "UPDATE retrains SET state = 'running', claimed_by = $1, lease_until_ms = $2, \
                     updated_ms = $3 WHERE id = $4 AND state = 'queued'",
                )
                .bind(worker)
                .bind(lease_until_ms)
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("claiming a retrain"))?;
                Ok((done.rows_affected() == 1).then_some(id))
            })
        })
        .await?;
    match id {
        Some(id) => Ok(Some(get(store, id).await?)),
        None => Ok(None),
    }
}

/// A worker's report: only the worker that claimed the retrain, only forward, and each link
/// of the chain set once.
pub(crate) async fn progress(
    store: &SqlStore,
    id: i64,
    worker: String,
    update: RetrainProgress,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Retrain> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let current = load(&mut *tx, id).await?;
                if current.claimed_by.as_deref() != Some(worker.as_str()) {
                    return Err(Error::permission_denied(format!(
                        "retrain {id} was claimed by {}, not by '{worker}'",
                        current.claimed_by.as_deref().unwrap_or("no worker")
                    )));
                }
                let next = update.state.unwrap_or(current.state);
                if !current.state.may_become(next) {
                    return Err(Error::invalid(format!(
                        "retrain {id} is {} and cannot become {}",
                        current.state.as_str(),
                        next.as_str()
                    )));
                }
                let once = |field: &str, old: Option<String>, new: Option<String>| {
                    match (old, new) {
                        (Some(old), Some(new)) if old != new => Err(Error::invalid(format!(
                            "retrain {id}'s {field} is {old} already"
                        ))),
                        (old, new) => Ok(new.or(old)),
                    }
                };
                let run = once("pipeline run", current.pipeline_run_id.clone(), update.pipeline_run_id)?;
                let version = once("version", current.version.map(|v| v.to_string()), update.version.map(|v| v.to_string()))?;
                let gate = once("gate", current.gate_id.map(|v| v.to_string()), update.gate_id.map(|v| v.to_string()))?;
                let rollout = once("rollout", current.rollout_id.map(|v| v.to_string()), update.rollout_id.map(|v| v.to_string()))?;
                let number = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
                let ended = !next.is_active();
                sqlx::query(
                    "UPDATE retrains SET state = $1, reason = $2, pipeline_run_id = $3, version = $4, \
                     gate_id = $5, rollout_id = $6, updated_ms = $7, lease_until_ms = $8 WHERE id = $9",
                )
                .bind(next.as_str())
                .bind(update.reason.or(current.reason))
                .bind(run)
                .bind(number(version))
                .bind(number(gate))
                .bind(number(rollout))
                .bind(now_ms)
                .bind(if ended { None } else { Some(lease_until_ms) })
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("updating a retrain"))?;
                load(&mut *tx, id).await
            })
        })
        .await
}

/// Claimed retrains whose worker stopped reporting: failed, so the model is free again.
pub(crate) async fn expire(store: &SqlStore, now_ms: i64) -> Result<Vec<Retrain>> {
    let ids = store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT id FROM retrains WHERE lease_until_ms IS NOT NULL AND lease_until_ms < $1 \
                     AND state IN ('running', 'rolling_out', 'awaiting_approval')",
                )
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("finding lapsed retrains"))?;
                let ids = rows.iter().map(|r| get_i64(r, "id")).collect::<Result<Vec<_>>>()?;
                for id in &ids {
                    sqlx::query(
                        "UPDATE retrains SET state = 'failed', lease_until_ms = NULL, updated_ms = $1, \
                         reason = 'its worker stopped reporting (lease lapsed)' WHERE id = $2",
                    )
                    .bind(now_ms)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("failing a lapsed retrain"))?;
                }
                Ok(ids)
            })
        })
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(get(store, id).await?);
    }
    Ok(out)
}

/// Newest first, at most `limit` (capped at 1000).
pub(crate) async fn list(
    store: &SqlStore,
    trigger: Option<&str>,
    model: Option<&str>,
    limit: usize,
) -> Result<Vec<Retrain>> {
    let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
    let mut sql = String::from("SELECT * FROM retrains WHERE 1 = 1");
    let mut binds = Vec::new();
    for (column, value) in [("trigger_name", trigger), ("model_name", model)] {
        if let Some(value) = value {
            binds.push(value.to_owned());
            sql.push_str(&format!(" AND {column} = ${}", binds.len()));
        }
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in binds {
        query = query.bind(value);
    }
    let rows = query
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading retrains"))?;
    rows.iter().map(retrain_from_row).collect()
}
