//! Runs: lifecycle, logging, metric history, inputs/outputs and search.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use slipway_core::paging::Page;
use slipway_core::ports::{HistoryCursor, HistoryPage, SearchQuery};
use slipway_core::search::Field;
use slipway_core::tracking::{
    Batch, Dataset, DatasetInput, ExperimentId, KeyValue, LifecycleStage, Metric, ModelOutput,
    NewRun, Run, RunData, RunId, RunInfo, RunInputs, RunStatus, RunUpdate, Tag,
};
use slipway_core::{Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::conn::Tx;
use crate::experiments::{not_found as experiment_not_found, push_limit};
use crate::filter::{self, Target};
use crate::sql::{
    Sql, db_err, delete_existing, get_f64, get_i64, get_opt_i64, get_opt_str, get_str,
    loaded_value, stored_value,
};
use crate::{SqlStore, chunks};

/// The tag that mirrors a run's name, kept in step with `runs.name` as MLflow does.
const RUN_NAME_TAG: &str = "mlflow.runName";
/// Rows per multi-row INSERT: far below SQLite's 32766 and PostgreSQL's 65535 bind limits.
const ROWS_PER_INSERT: usize = 500;
/// Ids per `IN (...)` when loading the data of a page of runs.
const IDS_PER_QUERY: usize = 500;

const INFO_COLUMNS: &str = "r.run_id, r.experiment_id, r.name, r.user_id, r.status, r.start_time, \
     r.end_time, r.artifact_uri, r.lifecycle_stage";

pub(crate) fn not_found(run_id: &RunId) -> Error {
    Error::not_found(format!("Run with id={run_id} not found"))
}

fn info_from_row(row: &AnyRow) -> Result<RunInfo> {
    Ok(RunInfo {
        run_id: RunId::parse(&get_str(row, "run_id")?)?,
        experiment_id: ExperimentId::new(get_i64(row, "experiment_id")?),
        run_name: get_str(row, "name")?,
        user_id: get_str(row, "user_id")?,
        status: RunStatus::from_db(&get_str(row, "status")?),
        start_time: get_i64(row, "start_time")?,
        end_time: get_opt_i64(row, "end_time")?,
        artifact_uri: get_str(row, "artifact_uri")?,
        lifecycle_stage: LifecycleStage::from_db(&get_str(row, "lifecycle_stage")?),
    })
}

pub(crate) async fn create(store: &SqlStore, run: NewRun) -> Result<Run> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT artifact_location, lifecycle_stage FROM experiments \
         WHERE experiment_id = $1",
                )
                .bind(run.experiment_id.get())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("reading a run's experiment"))?
                .ok_or_else(|| experiment_not_found(run.experiment_id))?;
                let stage = get_str(&row, "lifecycle_stage")?;
                if stage != "active" {
                    return Err(Error::invalid(format!(
                        "The experiment {} must be in the 'active' state. \
             Current state is {stage}.",
                        run.experiment_id
                    )));
                }
                let artifact_uri = format!(
                    "{}/{}/{}",
                    get_str(&row, "artifact_location")?.trim_end_matches('/'),
                    run.run_id,
                    run.artifact_uri_suffix
                );
                sqlx::query(
                    "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, \
         end_time, lifecycle_stage, artifact_uri) \
         VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, 'active', $6)",
                )
                .bind(run.run_id.as_str().to_owned())
                .bind(run.experiment_id.get())
                .bind(run.run_name.clone())
                .bind(run.user_id.clone())
                .bind(run.start_time)
                .bind(artifact_uri.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err("creating a run"))?;
                let mut tags = run.tags.clone();
                tags.retain(|tag| tag.key != RUN_NAME_TAG);
                tags.push(Tag::new(RUN_NAME_TAG, run.run_name.clone()));
                upsert_tags(&mut Tx::Any(tx), run.run_id.as_str(), &tags).await?;
                Ok(Run {
                    info: RunInfo {
                        run_id: run.run_id,
                        experiment_id: run.experiment_id,
                        run_name: run.run_name,
                        user_id: run.user_id,
                        status: RunStatus::Running,
                        start_time: run.start_time,
                        end_time: None,
                        artifact_uri,
                        lifecycle_stage: LifecycleStage::Active,
                    },
                    data: RunData {
                        metrics: Vec::new(),
                        params: Vec::new(),
                        tags,
                    },
                    inputs: RunInputs::default(),
                    outputs: Vec::new(),
                })
            })
        })
        .await
}

async fn upsert_tags(tx: &mut Tx<'_>, run_id: &str, tags: &[Tag]) -> Result<()> {
    // Later duplicates win, as if the tags had been set one after another.
    let mut unique: BTreeMap<&str, &str> = BTreeMap::new();
    for tag in tags {
        unique.insert(&tag.key, &tag.value);
    }
    let unique: Vec<_> = unique.into_iter().collect();
    for chunk in unique.chunks(ROWS_PER_INSERT) {
        let mut sql = tx.sql("INSERT INTO tags (run_id, key, value) VALUES ");
        for (index, (key, value)) in chunk.iter().enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(run_id)
                .push(", ")
                .bind(*key)
                .push(", ")
                .bind(*value)
                .push(")");
        }
        sql.push(" ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value");
        tx.execute(&sql, "setting run tags").await?;
    }
    if let Some((_, name)) = unique.iter().find(|(key, _)| *key == RUN_NAME_TAG) {
        let mut sql = tx.sql("UPDATE runs SET name = ");
        sql.bind(*name).push(" WHERE run_id = ").bind(run_id);
        tx.execute(&sql, "renaming a run").await?;
    }
    Ok(())
}

pub(crate) async fn get(store: &SqlStore, run_id: &RunId) -> Result<Run> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {INFO_COLUMNS} FROM runs r WHERE r.run_id = $1"
    )))
    .bind(run_id.as_str().to_owned())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading a run"))?
    .ok_or_else(|| not_found(run_id))?;
    let info = info_from_row(&row)?;
    let mut runs = hydrate(store, vec![info]).await?;
    runs.pop().ok_or_else(|| not_found(run_id))
}

/// Loads the data, inputs and outputs of a page of runs with a few `IN` queries per table,
/// never one query per run.
async fn hydrate(store: &SqlStore, infos: Vec<RunInfo>) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = infos
        .into_iter()
        .map(|info| Run {
            info,
            data: RunData::default(),
            inputs: RunInputs::default(),
            outputs: Vec::new(),
        })
        .collect();
    if runs.is_empty() {
        return Ok(runs);
    }
    let position: HashMap<String, usize> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| (run.info.run_id.as_str().to_owned(), index))
        .collect();
    let ids: Vec<String> = position.keys().cloned().collect();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        // Params and tags come back as one JSON array per run and table: a page of runs is then
        // two rows per run instead of one per key, and each row costs a hand-off from sqlx's
        // SQLite thread. Keys and values are text, so JSON carries them exactly.
        let aggregate = match store.backend {
            crate::Backend::Sqlite => "json_group_array(json_array(key, value))",
            crate::Backend::Postgres => "json_agg(json_build_array(key, value))::text",
        };
        let head = format!(
            "SELECT 'p' AS kind, run_id, {aggregate} AS pairs FROM params WHERE run_id IN "
        );
        let mut sql = store.sql(&head);
        sql.bind_list(chunk.iter().map(String::as_str));
        sql.push(" GROUP BY run_id UNION ALL SELECT 't' AS kind, run_id, ")
            .push(aggregate)
            .push(" AS pairs FROM tags WHERE run_id IN ");
        sql.bind_list(chunk.iter().map(String::as_str));
        sql.push(" GROUP BY run_id");
        let rows = sql
            .query()
            .fetch_all(&store.read)
            .await
            .map_err(db_err("reading run params and tags"))?;
        for row in &rows {
            let index = position[&get_str(row, "run_id")?];
            let pairs: Vec<(String, String)> = serde_json::from_str(&get_str(row, "pairs")?)
                .map_err(|e| Error::internal("decoding aggregated params or tags", e))?;
            let mut pairs: Vec<KeyValue> = pairs
                .into_iter()
                .map(|(key, value)| KeyValue::new(key, value))
                .collect();
            pairs.sort_by(|a, b| a.key.cmp(&b.key));
            let data = &mut runs[index].data;
            if get_str(row, "kind")? == "p" {
                data.params = pairs;
            } else {
                data.tags = pairs;
            }
        }
        let rows = in_query(
            store,
            "SELECT run_id, key, value, timestamp, step, is_nan FROM latest_metrics WHERE run_id IN ",
            chunk,
            " ORDER BY key",
        )
        .await?;
        for row in &rows {
            let index = position[&get_str(row, "run_id")?];
            runs[index].data.metrics.push(Metric::new(
                get_str(row, "key")?,
                loaded_value(get_f64(row, "value")?, get_i64(row, "is_nan")?),
                get_i64(row, "timestamp")?,
                get_i64(row, "step")?,
            ));
        }
        let rows = in_query(
            store,
            "SELECT ri.run_id, ri.tags_json, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
             FROM run_inputs ri JOIN datasets d ON d.dataset_id = ri.dataset_id WHERE ri.run_id IN ",
            chunk,
            " ORDER BY ri.position",
        )
        .await?;
        for row in &rows {
            let index = position[&get_str(row, "run_id")?];
            runs[index].inputs.dataset_inputs.push(DatasetInput {
                tags: decode_tags(&get_str(row, "tags_json")?)?,
                dataset: Dataset {
                    name: get_str(row, "name")?,
                    digest: get_str(row, "digest")?,
                    source_type: get_str(row, "source_type")?,
                    source: get_str(row, "source")?,
                    schema: get_opt_str(row, "schema")?,
                    profile: get_opt_str(row, "profile")?,
                },
            });
        }
        let rows = in_query(
            store,
            "SELECT run_id, model_id FROM run_model_inputs WHERE run_id IN ",
            chunk,
            " ORDER BY model_id",
        )
        .await?;
        for row in &rows {
            let index = position[&get_str(row, "run_id")?];
            runs[index]
                .inputs
                .model_inputs
                .push(get_str(row, "model_id")?);
        }
        let rows = in_query(
            store,
            "SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id IN ",
            chunk,
            " ORDER BY model_id",
        )
        .await?;
        for row in &rows {
            let index = position[&get_str(row, "run_id")?];
            runs[index].outputs.push(ModelOutput {
                model_id: get_str(row, "model_id")?,
                step: get_i64(row, "step")?,
            });
        }
    }
    Ok(runs)
}

async fn in_query(store: &SqlStore, head: &str, ids: &[String], tail: &str) -> Result<Vec<AnyRow>> {
    let mut sql = store.sql(head);
    sql.bind_list(ids.iter().map(String::as_str));
    sql.push(tail);
    sql.query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading run data"))
}

fn encode_tags(tags: &[Tag]) -> String {
    serde_json::Value::Array(
        tags.iter()
            .map(|tag| serde_json::json!({"key": tag.key, "value": tag.value}))
            .collect(),
    )
    .to_string()
}

fn decode_tags(raw: &str) -> Result<Vec<Tag>> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| Error::internal("decoding input tags", e))?;
    Ok(value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    Tag::new(
                        item["key"].as_str().unwrap_or_default(),
                        item["value"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The run's lifecycle stage, or NotFound.
async fn lifecycle(tx: &mut Tx<'_>, run_id: &RunId) -> Result<(String, i64)> {
    let mut sql = tx.sql("SELECT lifecycle_stage, experiment_id FROM runs WHERE run_id = ");
    sql.bind(run_id.as_str());
    tx.fetch_optional(&sql, "reading a run")
        .await?
        .ok_or_else(|| not_found(run_id))
}

/// The run's experiment id, when the run exists and is active.
async fn require_active(tx: &mut Tx<'_>, run_id: &RunId) -> Result<i64> {
    let (stage, experiment_id) = lifecycle(tx, run_id).await?;
    if stage == "active" {
        Ok(experiment_id)
    } else {
        Err(Error::invalid(format!(
            "The run {run_id} must be in the 'active' state. Current state is {stage}."
        )))
    }
}

pub(crate) async fn update(store: &SqlStore, run_id: &RunId, update: RunUpdate) -> Result<RunInfo> {
    let run_id_owned = run_id.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let run_id = &run_id_owned;
                require_active(&mut Tx::Any(tx), run_id).await?;
                let mut sql = Sql::on(tx, "UPDATE runs SET run_id = run_id");
                if let Some(status) = update.status {
                    sql.push(", status = ").bind(status.as_str());
                }
                if let Some(end_time) = update.end_time {
                    sql.push(", end_time = ").bind(end_time);
                }
                if let Some(name) = &update.run_name {
                    sql.push(", name = ").bind(name.as_str());
                }
                sql.push(" WHERE run_id = ").bind(run_id.as_str());
                sql.query()
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("updating a run"))?;
                if let Some(name) = &update.run_name {
                    upsert_tags(
                        &mut Tx::Any(tx),
                        run_id.as_str(),
                        &[Tag::new(RUN_NAME_TAG, name.clone())],
                    )
                    .await?;
                }
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {INFO_COLUMNS} FROM runs r WHERE r.run_id = $1"
                )))
                .bind(run_id.as_str().to_owned())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("reading an updated run"))?;
                let info = info_from_row(&row)?;
                Ok(info)
            })
        })
        .await
}

/// `deleted_at = Some(t)` deletes (softly), `None` restores.
pub(crate) async fn set_lifecycle(
    store: &SqlStore,
    run_id: &RunId,
    deleted_at: Option<i64>,
) -> Result<()> {
    let run_id_owned = run_id.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let run_id = &run_id_owned;
                lifecycle(&mut Tx::Any(tx), run_id).await?;
                sqlx::query(
                    "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_id = $3",
                )
                .bind(if deleted_at.is_some() {
                    "deleted"
                } else {
                    "active"
                })
                .bind(deleted_at)
                .bind(run_id.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .map_err(db_err("changing a run's lifecycle"))?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn log_batch(store: &SqlStore, run_id: &RunId, batch: Batch) -> Result<()> {
    let run_id = run_id.clone();
    // Every refusal (missing or inactive run, changed param) is decided by reads before the
    // first write, so the batch needs no savepoint of its own.
    store
        .writer
        .write_tx_checked(move |mut tx| {
            Box::pin(async move {
                let tx = &mut tx;
                let experiment_id = require_active(tx, &run_id).await?;
                if !batch.params.is_empty() {
                    insert_params(tx, &run_id, &batch.params).await?;
                }
                if !batch.tags.is_empty() {
                    upsert_tags(tx, run_id.as_str(), &batch.tags).await?;
                }
                if !batch.metrics.is_empty() {
                    insert_metrics(tx, &run_id, experiment_id, &batch.metrics).await?;
                }
                Ok(())
            })
        })
        .await
}

/// Params are immutable: logging the same value again is fine, a different value is refused and
/// the whole batch with it.
async fn insert_params(tx: &mut Tx<'_>, run_id: &RunId, params: &[KeyValue]) -> Result<()> {
    let mut wanted: BTreeMap<&str, &str> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for param in params {
        match wanted.insert(&param.key, &param.value) {
            Some(previous) if previous != param.value => conflicts.push(format!(
                "{{'key': '{}', 'old_value': '{previous}', 'new_value': '{}'}}",
                param.key, param.value
            )),
            _ => {}
        }
    }
    let keys: Vec<&str> = wanted.keys().copied().collect();
    let mut existing: HashMap<String, String> = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let mut sql = tx.sql("SELECT key, value FROM params WHERE run_id = ");
        sql.bind(run_id.as_str())
            .push(" AND key IN ")
            .bind_list(chunk.iter().copied());
        existing.extend(
            tx.fetch_all::<(String, String)>(&sql, "reading params")
                .await?,
        );
    }
    for (key, value) in &wanted {
        if let Some(old) = existing.get(*key).filter(|old| old != value) {
            conflicts.push(format!(
                "{{'key': '{key}', 'old_value': '{old}', 'new_value': '{value}'}}"
            ));
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::invalid(format!(
            "Changing param values is not allowed. Params were already logged='[{}]' for run ID='{run_id}'.",
            conflicts.join(", ")
        )));
    }
    let new: Vec<(&str, &str)> = wanted
        .into_iter()
        .filter(|(key, _)| !existing.contains_key(*key))
        .collect();
    for chunk in new.chunks(ROWS_PER_INSERT) {
        let mut sql = tx.sql("INSERT INTO params (run_id, key, value) VALUES ");
        for (index, (key, value)) in chunk.iter().enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(run_id.as_str())
                .push(", ")
                .bind(*key)
                .push(", ")
                .bind(*value)
                .push(")");
        }
        sql.push(" ON CONFLICT (run_id, key) DO NOTHING");
        tx.execute(&sql, "logging params").await?;
    }
    Ok(())
}

async fn insert_metrics(
    tx: &mut Tx<'_>,
    run_id: &RunId,
    experiment_id: i64,
    metrics: &[Metric],
) -> Result<()> {
    // One chunk per (key, model, dataset) of this batch, points in the order they came.
    let mut groups: Vec<(&Metric, Vec<chunks::Point>)> = Vec::new();
    for metric in metrics {
        let point = chunks::Point {
            timestamp: metric.timestamp,
            step: metric.step,
            value: if metric.value.is_nan() {
                f64::NAN
            } else {
                metric.value
            },
        };
        match groups.iter_mut().find(|(first, _)| {
            first.key == metric.key
                && first.model_id == metric.model_id
                && first.dataset_name == metric.dataset_name
                && first.dataset_digest == metric.dataset_digest
        }) {
            Some((_, points)) => points.push(point),
            None => groups.push((metric, vec![point])),
        }
    }
    // Chunk rows, latest values and model metrics go out together: on SQLite that is one round
    // trip to the connection thread instead of three.
    let mut statements = Vec::new();
    for chunk in groups.chunks(ROWS_PER_INSERT / 2) {
        let mut sql = tx.sql(
            "INSERT INTO metric_chunks (run_id, key, model_id, dataset_name, dataset_digest, \
             min_timestamp, max_timestamp, point_count, points) VALUES ",
        );
        for (index, (first, points)) in chunk.iter().enumerate() {
            let min_timestamp = points.iter().map(|p| p.timestamp).min().unwrap_or(0);
            let max_timestamp = points.iter().map(|p| p.timestamp).max().unwrap_or(0);
            if index > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(run_id.as_str())
                .push(", ")
                .bind(first.key.as_str())
                .push(", ")
                .bind(first.model_id.clone())
                .push(", ")
                .bind(first.dataset_name.clone())
                .push(", ")
                .bind(first.dataset_digest.clone())
                .push(", ")
                .bind(min_timestamp)
                .push(", ")
                .bind(max_timestamp)
                .push(", ")
                .bind(points.len() as i64)
                .push(", ")
                .bind(chunks::encode(points))
                .push(")");
        }
        statements.push(sql);
    }

    // Only the newest point per key can move the latest value; fold the batch first so a
    // 1000-step batch of one key is one upsert, not a thousand.
    let mut newest: BTreeMap<&str, &Metric> = BTreeMap::new();
    for metric in metrics {
        match newest.get(metric.key.as_str()) {
            Some(current) if !metric.is_newer_than(current) => {}
            _ => {
                newest.insert(&metric.key, metric);
            }
        }
    }
    let newest: Vec<&Metric> = newest.into_values().collect();
    for chunk in newest.chunks(ROWS_PER_INSERT) {
        let mut sql = tx.sql(
            "INSERT INTO latest_metrics (run_id, key, experiment_id, value, timestamp, step, is_nan) VALUES ",
        );
        for (index, metric) in chunk.iter().enumerate() {
            let (value, is_nan) = stored_value(metric.value);
            if index > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(run_id.as_str())
                .push(", ")
                .bind(metric.key.as_str())
                .push(", ")
                .bind(experiment_id)
                .push(", ")
                .bind(value)
                .push(", ")
                .bind(metric.timestamp)
                .push(", ")
                .bind(metric.step)
                .push(", ")
                .bind(is_nan)
                .push(")");
        }
        sql.push(
            " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, \
             step = excluded.step, is_nan = excluded.is_nan \
             WHERE excluded.step > latest_metrics.step \
             OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
             OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp \
                 AND (excluded.is_nan > latest_metrics.is_nan \
                      OR (excluded.is_nan = latest_metrics.is_nan AND excluded.value > latest_metrics.value)))",
        );
        statements.push(sql);
    }

    // Metrics logged against a LoggedModel also belong to the model.
    let model_metrics: Vec<&Metric> = metrics.iter().filter(|m| m.model_id.is_some()).collect();
    for chunk in model_metrics.chunks(ROWS_PER_INSERT) {
        let mut sql = tx.sql(
            "INSERT INTO logged_model_metrics (model_id, key, timestamp, step, value, is_nan, run_id, dataset_name, dataset_digest) VALUES ",
        );
        for (index, metric) in chunk.iter().enumerate() {
            let (value, is_nan) = stored_value(metric.value);
            if index > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(metric.model_id.clone())
                .push(", ")
                .bind(metric.key.as_str())
                .push(", ")
                .bind(metric.timestamp)
                .push(", ")
                .bind(metric.step)
                .push(", ")
                .bind(value)
                .push(", ")
                .bind(is_nan)
                .push(", ")
                .bind(run_id.as_str())
                .push(", ")
                .bind(metric.dataset_name.clone())
                .push(", ")
                .bind(metric.dataset_digest.clone())
                .push(")");
        }
        sql.push(" ON CONFLICT DO NOTHING");
        statements.push(sql);
    }
    tx.execute_all(statements, "logging metrics").await
}

pub(crate) async fn delete_tag(store: &SqlStore, run_id: &RunId, key: &str) -> Result<()> {
    let run_id_owned = run_id.clone();
    let key_owned = key.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let run_id = &run_id_owned;
                let key = key_owned.as_str();
                require_active(&mut Tx::Any(tx), run_id).await?;
                delete_existing(
                    tx,
                    sqlx::query("DELETE FROM tags WHERE run_id = $1 AND key = $2")
                        .bind(run_id.as_str().to_owned())
                        .bind(key.to_owned()),
                    "deleting a run tag",
                    || Error::not_found(format!("No tag with name: {key} in run with id {run_id}")),
                )
                .await
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn metric_history(
    store: &SqlStore,
    run_id: &RunId,
    key: &str,
    cursor: HistoryCursor,
    max_results: usize,
) -> Result<Option<HistoryPage>> {
    let exists = sqlx::query("SELECT 1 AS present FROM runs WHERE run_id = $1")
        .bind(run_id.as_str().to_owned())
        .fetch_optional(&store.read)
        .await
        .map_err(db_err("reading a run"))?;
    if exists.is_none() {
        return Ok(None);
    }
    let after = cursor
        .after
        .map(|(timestamp, step, value, is_nan)| chunks::Point {
            timestamp,
            step,
            value: if is_nan { f64::NAN } else { value },
        });
    let mut collector = chunks::PageCollector::new(after, max_results);
    // Chunks in the order of their earliest point; one that ends before the cursor holds
    // nothing for this page. The scan stops once no later chunk can change the page.
    let mut sql = store.sql(
        "SELECT model_id, dataset_name, dataset_digest, min_timestamp, points FROM metric_chunks WHERE run_id = ",
    );
    sql.bind(run_id.as_str()).push(" AND key = ").bind(key);
    if let Some(after) = after {
        sql.push(" AND max_timestamp >= ").bind(after.timestamp);
    }
    sql.push(" ORDER BY min_timestamp, chunk_id");
    let mut rows = sql.query().fetch(&store.read);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(db_err("reading a metric history"))?
    {
        if collector.is_complete_before(get_i64(&row, "min_timestamp")?) {
            break;
        }
        let meta = chunks::Meta {
            model_id: get_opt_str(&row, "model_id")?,
            dataset_name: get_opt_str(&row, "dataset_name")?,
            dataset_digest: get_opt_str(&row, "dataset_digest")?,
        };
        let blob: Vec<u8> = row
            .try_get("points")
            .map_err(|e| Error::internal("decoding a metric chunk", e))?;
        if !collector.add_chunk(meta, &blob) {
            return Err(Error::internal_msg(format!(
                "a metric chunk of run {run_id}, key {key} is corrupt (length {})",
                blob.len()
            )));
        }
    }
    drop(rows);
    let (entries, more, metas) = collector.finish();
    let metrics: Vec<Metric> = entries
        .iter()
        .map(|entry| {
            let meta = &metas[entry.meta];
            Metric {
                key: key.to_owned(),
                value: entry.point.value,
                timestamp: entry.point.timestamp,
                step: entry.point.step,
                model_id: meta.model_id.clone(),
                dataset_name: meta.dataset_name.clone(),
                dataset_digest: meta.dataset_digest.clone(),
                run_id: None,
            }
        })
        .collect();
    let next = if more {
        metrics.last().map(|last| HistoryCursor {
            after: Some((last.timestamp, last.step, last.value, last.value.is_nan())),
        })
    } else {
        None
    };
    Ok(Some(HistoryPage { metrics, next }))
}

pub(crate) async fn search(
    store: &SqlStore,
    experiment_ids: &[ExperimentId],
    query: &SearchQuery,
) -> Result<Page<Run>> {
    let driving = filter::driving_metric(query.filter.as_ref(), &query.order_by);
    if driving.is_none()
        && let [order] = query.order_by.as_slice()
        && let Field::Metric(key) | Field::Param(key) | Field::Tag(key) = &order.field
        // Params' and tags' value index spans every experiment: for a few runs, sorting them
        // all is cheaper than walking other experiments' values.
        && (matches!(order.field, Field::Metric(_))
            || count_runs(store, experiment_ids).await?
                > SORT_IN_MEMORY_RUNS.load(std::sync::atomic::Ordering::Relaxed))
    {
        return search_by_side_key(store, experiment_ids, query, order, key).await;
    }
    // Without a sort metric to start from, a metric range the filter requires narrows the
    // runs before the rest of the filter is checked on each, and before they are sorted. In
    // the default order (newest first) the runs' own index already stops at the page's end.
    let filtering = (driving.is_none() && !query.order_by.is_empty())
        .then(|| filter::filtering_metric(query.filter.as_ref()))
        .flatten();
    let mut sql = store.sql(&format!("SELECT {INFO_COLUMNS} FROM "));
    // CROSS JOIN fixes the join order on SQLite, whose planner otherwise may start from `runs`
    // and sort them all; PostgreSQL plans it as an ordinary join.
    sql.push(if driving.is_some() {
        "latest_metrics ob0 CROSS JOIN runs r"
    } else if filtering.is_some() {
        "latest_metrics f0 CROSS JOIN runs r"
    } else {
        "runs r"
    });
    let order = filter::order_joins(&mut sql, Target::Runs, &query.order_by, driving.is_some())?;
    sql.push(" WHERE ");
    if let Some(key) = &driving {
        sql.push("ob0.experiment_id IN ");
        sql.bind_list(experiment_ids.iter().map(|id| id.get()));
        sql.push(" AND ob0.key = ").bind(key.as_str());
        sql.push(" AND ob0.run_id = r.run_id AND ");
    }
    if let Some(comparison) = &filtering {
        sql.push("f0.experiment_id IN ");
        sql.bind_list(experiment_ids.iter().map(|id| id.get()));
        sql.push(" AND ");
        filter::push_driving_filter(&mut sql, comparison)?;
        sql.push(" AND f0.run_id = r.run_id AND ");
    }
    push_run_scope(&mut sql, experiment_ids, query)?;
    sql.push(" ORDER BY ");
    if !order.is_empty() {
        sql.push(&order).push(", ");
    }
    sql.push("r.start_time DESC, r.run_id ASC");
    push_limit(&mut sql, query);
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("searching runs"))?;
    let infos = rows.iter().map(info_from_row).collect::<Result<Vec<_>>>()?;
    hydrated_page(store, infos, query).await
}

/// The runs a search may return: of these experiments, in the view's stages, matching the
/// filter (`r` being the runs table).
fn push_run_scope(
    sql: &mut Sql,
    experiment_ids: &[ExperimentId],
    query: &SearchQuery,
) -> Result<()> {
    sql.push("r.experiment_id IN ");
    sql.bind_list(experiment_ids.iter().map(|id| id.get()));
    sql.push(" AND r.lifecycle_stage IN ");
    sql.bind_list(query.view_type.stages().iter().copied());
    if let Some(expr) = &query.filter {
        sql.push(" AND ");
        filter::push_expr(sql, Target::Runs, expr)?;
    }
    Ok(())
}

/// A page of the runs found (one more than the page when another follows), with their data.
async fn hydrated_page(
    store: &SqlStore,
    infos: Vec<RunInfo>,
    query: &SearchQuery,
) -> Result<Page<Run>> {
    let page = Page::from_overfetch(infos, query.offset, query.max_results);
    let runs = hydrate(store, page.items).await?;
    Ok(Page {
        items: runs,
        next_page_token: page.next_page_token,
    })
}

/// Runs of these experiments up to which a param or tag sort reads them all (see `search`).
static SORT_IN_MEMORY_RUNS: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(20_000);

/// Sets [`SORT_IN_MEMORY_RUNS`]: the contract tests set 0 so that small stores take the path
/// large ones do (both give the same answers, so other tests running meanwhile see no change).
#[doc(hidden)]
pub fn set_sort_in_memory_runs(runs: i64) {
    SORT_IN_MEMORY_RUNS.store(runs, std::sync::atomic::Ordering::Relaxed);
}

async fn count_runs(store: &SqlStore, experiment_ids: &[ExperimentId]) -> Result<i64> {
    let mut sql = store.sql("SELECT COUNT(*) AS n FROM runs WHERE experiment_id IN ");
    sql.bind_list(experiment_ids.iter().map(|id| id.get()));
    let row = sql
        .query()
        .fetch_one(&store.read)
        .await
        .map_err(db_err("counting runs"))?;
    get_i64(&row, "n")
}

/// A search sorted by one metric, param or tag, in the order MLflow gives: runs with the key by
/// its value, then (metrics) runs whose value is NaN, then runs without the key, each group by
/// start time. Each group is its own query, the first started from the key's value index, so
/// a page of the newest values reads about a page of rows instead of sorting every run; a
/// later group is read only when the ones before it ran out before the page's end.
async fn search_by_side_key(
    store: &SqlStore,
    experiment_ids: &[ExperimentId],
    query: &SearchQuery,
    order: &slipway_core::search::OrderBy,
    key: &str,
) -> Result<Page<Run>> {
    let direction = if order.ascending { "ASC" } else { "DESC" };
    let (table, scope) = match order.field {
        Field::Metric(_) => ("latest_metrics", true),
        Field::Param(_) => ("params", false),
        _ => ("tags", false),
    };
    let is_metric = matches!(order.field, Field::Metric(_));
    // Rows before the page's end, plus one to know whether another page follows.
    let wanted = usize::try_from(query.offset)
        .unwrap_or(usize::MAX)
        .saturating_add(query.max_results)
        .saturating_add(1);
    let mut infos: Vec<RunInfo> = Vec::new();
    // (driving condition, ORDER BY) per group; `None` drives from the runs without the key.
    let mut groups: Vec<(Option<&str>, String)> = Vec::new();
    let by_value = format!("ob0.value {direction}, r.start_time DESC, r.run_id ASC");
    if is_metric {
        groups.push((Some(" AND ob0.is_nan = 0"), by_value));
        groups.push((
            Some(" AND ob0.is_nan = 1"),
            "r.start_time DESC, r.run_id ASC".to_owned(),
        ));
    } else {
        groups.push((Some(""), by_value));
    }
    groups.push((None, "r.start_time DESC, r.run_id ASC".to_owned()));
    for (driving, order_sql) in groups {
        if infos.len() >= wanted {
            break;
        }
        let mut sql = store.sql(&format!("SELECT {INFO_COLUMNS} FROM "));
        match driving {
            Some(condition) => {
                // CROSS JOIN keeps SQLite starting from the key's index, in value order.
                sql.push(table).push(" ob0 CROSS JOIN runs r WHERE ");
                if scope {
                    sql.push("ob0.experiment_id IN ");
                    sql.bind_list(experiment_ids.iter().map(|id| id.get()));
                    sql.push(" AND ");
                }
                sql.push("ob0.key = ").bind(key);
                sql.push(condition).push(" AND ob0.run_id = r.run_id AND ");
            }
            None => {
                sql.push("runs r WHERE NOT EXISTS (SELECT 1 FROM ")
                    .push(table)
                    .push(" k WHERE k.run_id = r.run_id AND k.key = ")
                    .bind(key)
                    .push(") AND ");
            }
        }
        push_run_scope(&mut sql, experiment_ids, query)?;
        sql.push(" ORDER BY ").push(&order_sql).push(" LIMIT ");
        sql.bind(i64::try_from(wanted - infos.len()).unwrap_or(i64::MAX));
        let rows = sql
            .query()
            .fetch_all(&store.read)
            .await
            .map_err(db_err("searching runs"))?;
        for row in &rows {
            infos.push(info_from_row(row)?);
        }
    }
    let skip = usize::try_from(query.offset)
        .unwrap_or(usize::MAX)
        .min(infos.len());
    infos.drain(..skip);
    hydrated_page(store, infos, query).await
}

pub(crate) async fn log_inputs(
    store: &SqlStore,
    run_id: &RunId,
    datasets: Vec<DatasetInput>,
    model_ids: Vec<String>,
) -> Result<()> {
    let run_id_owned = run_id.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let run_id = &run_id_owned;
                require_active(&mut Tx::Any(tx), run_id).await?;
                let row = sqlx::query("SELECT experiment_id FROM runs WHERE run_id = $1")
                    .bind(run_id.as_str().to_owned())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("reading a run"))?;
                let experiment_id = get_i64(&row, "experiment_id")?;
                let next_position = sqlx::query("SELECT COUNT(*) AS n FROM run_inputs WHERE run_id = $1")
                    .bind(run_id.as_str().to_owned())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("counting run inputs"))?;
                let mut position = get_i64(&next_position, "n")?;
                for input in datasets {
                    let dataset = &input.dataset;
                    // Datasets are shared by the runs of an experiment and identified by (name, digest).
                    sqlx::query(
                        "INSERT INTO datasets (dataset_id, experiment_id, name, digest, source_type, source, schema, profile) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (experiment_id, name, digest) DO NOTHING",
                    )
                    .bind(uuid::Uuid::new_v4().simple().to_string())
                    .bind(experiment_id)
                    .bind(dataset.name.clone())
                    .bind(dataset.digest.clone())
                    .bind(dataset.source_type.clone())
                    .bind(dataset.source.clone())
                    .bind(dataset.schema.clone())
                    .bind(dataset.profile.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("recording a dataset"))?;
                    let row = sqlx::query("SELECT dataset_id FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3")
                        .bind(experiment_id)
                        .bind(dataset.name.clone())
                        .bind(dataset.digest.clone())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err("reading a dataset"))?;
                    let dataset_id = get_str(&row, "dataset_id")?;
                    let context = input
                        .tags
                        .iter()
                        .find(|tag| tag.key == "mlflow.data.context")
                        .map(|tag| tag.value.clone());
                    let inserted = sqlx::query(
                        "INSERT INTO run_inputs (run_id, dataset_id, tags_json, context, position) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (run_id, dataset_id) DO NOTHING",
                    )
                    .bind(run_id.as_str().to_owned())
                    .bind(dataset_id)
                    .bind(encode_tags(&input.tags))
                    .bind(context)
                    .bind(position)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("recording a run input"))?;
                    position += inserted.rows_affected() as i64;
                }
                for model_id in model_ids {
                    sqlx::query("INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(run_id.as_str().to_owned())
                        .bind(model_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("recording a model input"))?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn log_outputs(
    store: &SqlStore,
    run_id: &RunId,
    models: Vec<ModelOutput>,
) -> Result<()> {
    let run_id_owned = run_id.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let run_id = &run_id_owned;
                require_active(&mut Tx::Any(tx), run_id).await?;
                for output in models {
                    sqlx::query(
            "INSERT INTO run_model_outputs (run_id, model_id, step) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
        )
        .bind(run_id.as_str().to_owned())
        .bind(output.model_id)
        .bind(output.step)
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording a model output"))?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}
