//! MLflow 3 LoggedModels, their tags, params and metrics.

use std::collections::HashMap;

use slipway_core::logged_model::{LoggedModel, LoggedModelStatus, NewLoggedModel};
use slipway_core::paging::Page;
use slipway_core::ports::SearchQuery;
use slipway_core::tracking::{ExperimentId, KeyValue, Metric, Tag};
use slipway_core::{Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::experiments::{not_found as experiment_not_found, push_limit};
use crate::filter::{self, Target};
use crate::sql::{db_err, delete_existing, get_f64, get_i64, get_opt_str, get_str, loaded_value};

const COLUMNS: &str = "lm.model_id, lm.experiment_id, lm.name, lm.artifact_uri, lm.status, lm.model_type, \
     lm.source_run_id, lm.status_message, lm.creation_time, lm.last_updated_time";

fn not_found(model_id: &str) -> Error {
    Error::not_found(format!("Logged model with ID '{model_id}' not found."))
}

fn from_row(row: &AnyRow) -> Result<LoggedModel> {
    Ok(LoggedModel {
        model_id: get_str(row, "model_id")?,
        experiment_id: ExperimentId::new(get_i64(row, "experiment_id")?),
        name: get_str(row, "name")?,
        creation_timestamp: get_i64(row, "creation_time")?,
        last_updated_timestamp: get_i64(row, "last_updated_time")?,
        artifact_uri: get_str(row, "artifact_uri")?,
        status: LoggedModelStatus::from_db(&get_str(row, "status")?),
        model_type: get_opt_str(row, "model_type")?,
        source_run_id: get_opt_str(row, "source_run_id")?,
        status_message: get_opt_str(row, "status_message")?,
        tags: Vec::new(),
        params: Vec::new(),
        metrics: Vec::new(),
        registrations: Vec::new(),
    })
}

pub(crate) async fn create(
    store: &SqlStore,
    model: NewLoggedModel,
    artifact_root: &str,
    now: i64,
) -> Result<LoggedModel> {
    let artifact_root_owned = artifact_root.to_owned();
    let model_id = model.model_id.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let artifact_root = artifact_root_owned.as_str();
                let row = sqlx::query(
                    "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = $1",
                )
                .bind(model.experiment_id.get())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("reading an experiment"))?
                .ok_or_else(|| experiment_not_found(model.experiment_id))?;
                if get_str(&row, "lifecycle_stage")? != "active" {
                    return Err(Error::invalid(format!(
                        "The experiment {} must be in the 'active' state.",
                        model.experiment_id
                    )));
                }
                let location = get_str(&row, "artifact_location")?;
                let base = if location.is_empty() {
                    format!("{artifact_root}/{}", model.experiment_id)
                } else {
                    location
                };
                let artifact_uri = format!(
                    "{}/models/{}/artifacts",
                    base.trim_end_matches('/'),
                    model.model_id
                );
                sqlx::query(
                    "INSERT INTO logged_models (model_id, experiment_id, name, artifact_uri, status, model_type, source_run_id, \
                     status_message, creation_time, last_updated_time, lifecycle_stage) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, 'active')",
                )
                .bind(model.model_id.clone())
                .bind(model.experiment_id.get())
                .bind(model.name.clone())
                .bind(artifact_uri)
                .bind(LoggedModelStatus::Pending.as_str())
                .bind(model.model_type.clone())
                .bind(model.source_run_id.clone())
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err("creating a logged model"))?;
                for tag in &model.tags {
                    upsert_kv(&mut *tx, "logged_model_tags", &model.model_id, tag, true).await?;
                }
                for param in &model.params {
                    upsert_kv(&mut *tx, "logged_model_params", &model.model_id, param, true).await?;
                }
                Ok(())
            })
        })
        .await?;
    get(store, &model_id).await
}

async fn upsert_kv(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    model_id: &str,
    kv: &KeyValue,
    overwrite: bool,
) -> Result<()> {
    let conflict = if overwrite {
        "DO UPDATE SET value = excluded.value"
    } else {
        "DO NOTHING"
    };
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) {conflict}"
    )))
    .bind(model_id.to_owned())
    .bind(kv.key.clone())
    .bind(kv.value.clone())
    .execute(conn)
    .await
    .map_err(db_err("writing a logged model tag or param"))?;
    Ok(())
}

async fn hydrate(store: &SqlStore, models: &mut [LoggedModel]) -> Result<()> {
    if models.is_empty() {
        return Ok(());
    }
    let position: HashMap<String, usize> = models
        .iter()
        .enumerate()
        .map(|(index, model)| (model.model_id.clone(), index))
        .collect();
    let ids: Vec<String> = models.iter().map(|m| m.model_id.clone()).collect();
    for (table, is_tag) in [("logged_model_tags", true), ("logged_model_params", false)] {
        let mut sql = store.sql(&format!(
            "SELECT model_id, key, value FROM {table} WHERE model_id IN "
        ));
        sql.bind_list(ids.iter().map(String::as_str))
            .push(" ORDER BY key");
        for row in sql
            .query()
            .fetch_all(&store.read)
            .await
            .map_err(db_err("reading logged model data"))?
        {
            let model = &mut models[position[&get_str(&row, "model_id")?]];
            let kv = KeyValue::new(get_str(&row, "key")?, get_str(&row, "value")?);
            if is_tag {
                model.tags.push(kv)
            } else {
                model.params.push(kv)
            }
        }
    }
    let mut sql = store.sql(
        "SELECT model_id, key, value, timestamp, step, is_nan, run_id, dataset_name, dataset_digest \
         FROM logged_model_metrics WHERE model_id IN ",
    );
    sql.bind_list(ids.iter().map(String::as_str))
        .push(" ORDER BY key, step, timestamp");
    for row in sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading logged model metrics"))?
    {
        let model = &mut models[position[&get_str(&row, "model_id")?]];
        let mut metric = Metric::new(
            get_str(&row, "key")?,
            loaded_value(get_f64(&row, "value")?, get_i64(&row, "is_nan")?),
            get_i64(&row, "timestamp")?,
            get_i64(&row, "step")?,
        );
        metric.model_id = Some(model.model_id.clone());
        metric.dataset_name = get_opt_str(&row, "dataset_name")?;
        metric.dataset_digest = get_opt_str(&row, "dataset_digest")?;
        metric.run_id = get_opt_str(&row, "run_id")?;
        model.metrics.push(metric);
    }
    let mut sql = store.sql(
        "SELECT mv.logged_model_id, rm.name, mv.version FROM model_versions mv \
         JOIN registered_models rm ON rm.id = mv.model_id WHERE mv.logged_model_id IN ",
    );
    sql.bind_list(ids.iter().map(String::as_str))
        .push(" ORDER BY rm.name, mv.version");
    for row in sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading logged model registrations"))?
    {
        let model = &mut models[position[&get_str(&row, "logged_model_id")?]];
        model
            .registrations
            .push((get_str(&row, "name")?, get_i64(&row, "version")?));
    }
    Ok(())
}

pub(crate) async fn get(store: &SqlStore, model_id: &str) -> Result<LoggedModel> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM logged_models lm WHERE lm.model_id = $1 AND lm.lifecycle_stage = 'active'"
    )))
    .bind(model_id.to_owned())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading a logged model"))?
    .ok_or_else(|| not_found(model_id))?;
    let mut models = [from_row(&row)?];
    hydrate(store, &mut models).await?;
    let [model] = models;
    Ok(model)
}

async fn require_active(conn: &mut sqlx::AnyConnection, model_id: &str) -> Result<()> {
    sqlx::query(
        "SELECT 1 AS present FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active'",
    )
    .bind(model_id.to_owned())
    .fetch_optional(conn)
    .await
    .map_err(db_err("reading a logged model"))?
    .map(|_| ())
    .ok_or_else(|| not_found(model_id))
}

pub(crate) async fn finalize(
    store: &SqlStore,
    model_id: &str,
    status: LoggedModelStatus,
    now: i64,
) -> Result<LoggedModel> {
    let model_id_owned = model_id.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let model_id = model_id_owned.as_str();
                require_active(&mut *tx, model_id).await?;
                sqlx::query("UPDATE logged_models SET status = $1, last_updated_time = $2 WHERE model_id = $3")
                    .bind(status.as_str())
                    .bind(now)
                    .bind(model_id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("finalizing a logged model"))?;
                Ok(())
            })
        })
        .await?;
    get(store, model_id).await
}

pub(crate) async fn delete(store: &SqlStore, model_id: &str, now: i64) -> Result<()> {
    let model_id_owned = model_id.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let model_id = model_id_owned.as_str();
                require_active(&mut *tx, model_id).await?;
                sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_time = $1 WHERE model_id = $2")
                    .bind(now)
                    .bind(model_id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a logged model"))?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn set_tags(
    store: &SqlStore,
    model_id: &str,
    tags: &[Tag],
    now: i64,
) -> Result<LoggedModel> {
    let model_id_owned = model_id.to_owned();
    let tags_owned = tags.to_vec();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let model_id = model_id_owned.as_str();
                let tags = tags_owned.as_slice();
                require_active(&mut *tx, model_id).await?;
                for tag in tags {
                    upsert_kv(&mut *tx, "logged_model_tags", model_id, tag, true).await?;
                }
                sqlx::query("UPDATE logged_models SET last_updated_time = $1 WHERE model_id = $2")
                    .bind(now)
                    .bind(model_id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("touching a logged model"))?;
                Ok(())
            })
        })
        .await?;
    get(store, model_id).await
}

pub(crate) async fn delete_tag(store: &SqlStore, model_id: &str, key: &str) -> Result<()> {
    let model_id_owned = model_id.to_owned();
    let key_owned = key.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let model_id = model_id_owned.as_str();
                let key = key_owned.as_str();
                require_active(&mut *tx, model_id).await?;
                delete_existing(
                    tx,
                    sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
                        .bind(model_id.to_owned())
                        .bind(key.to_owned()),
                    "deleting a logged model tag",
                    || {
                        Error::not_found(format!(
                            "No tag with key '{key}' found for logged model with ID '{model_id}'."
                        ))
                    },
                )
                .await
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn log_params(store: &SqlStore, model_id: &str, params: &[Tag]) -> Result<()> {
    let model_id_owned = model_id.to_owned();
    let params_owned = params.to_vec();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let model_id = model_id_owned.as_str();
                let params = params_owned.as_slice();
                require_active(&mut *tx, model_id).await?;
                for param in params {
                    upsert_kv(&mut *tx, "logged_model_params", model_id, param, true).await?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn search(
    store: &SqlStore,
    experiment_ids: &[ExperimentId],
    query: &SearchQuery,
) -> Result<Page<LoggedModel>> {
    let mut sql = store.sql(&format!("SELECT {COLUMNS} FROM logged_models lm"));
    // Metric ordering on logged models reads a history table, so it goes through a correlated
    // sub-query (the newest point per key) instead of a join that would repeat rows.
    let mut order_items = Vec::new();
    let mut plain_order = Vec::new();
    for order in &query.order_by {
        if let slipway_core::search::Field::Metric(key) = &order.field {
            let direction = if order.ascending { "ASC" } else { "DESC" };
            order_items.push((key.clone(), direction));
        } else {
            plain_order.push(order.clone());
        }
    }
    let order = filter::order_joins(&mut sql, Target::LoggedModels, &plain_order, false)?;
    sql.push(" WHERE lm.lifecycle_stage = 'active'");
    if !experiment_ids.is_empty() {
        sql.push(" AND lm.experiment_id IN ");
        sql.bind_list(experiment_ids.iter().map(|id| id.get()));
    }
    if let Some(expr) = &query.filter {
        sql.push(" AND ");
        filter::push_expr(&mut sql, Target::LoggedModels, expr)?;
    }
    sql.push(" ORDER BY ");
    // The newest point of the key: NULL when the model lacks the metric, and NaN mapped to NULL
    // too, so both sort last in either direction on both backends (their NULL orders differ).
    const NEWEST: &str = "(SELECT CASE WHEN lmm.is_nan = 1 THEN NULL ELSE lmm.value END \
         FROM logged_model_metrics lmm WHERE lmm.model_id = lm.model_id AND lmm.key = ";
    for (key, direction) in &order_items {
        sql.push("CASE WHEN ")
            .push(NEWEST)
            .bind(key.as_str())
            .push(
                " ORDER BY lmm.step DESC, lmm.timestamp DESC LIMIT 1) IS NULL THEN 1 ELSE 0 END, ",
            )
            .push(NEWEST)
            .bind(key.as_str())
            .push(" ORDER BY lmm.step DESC, lmm.timestamp DESC LIMIT 1) ")
            .push(direction)
            .push(", ");
    }
    if !order.is_empty() {
        sql.push(&order).push(", ");
    }
    sql.push("lm.creation_time DESC, lm.model_id ASC");
    push_limit(&mut sql, query);
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("searching logged models"))?;
    let models = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let mut page = Page::from_overfetch(models, query.offset, query.max_results);
    hydrate(store, &mut page.items).await?;
    Ok(page)
}
