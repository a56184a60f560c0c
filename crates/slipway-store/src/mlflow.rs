//! Reads an MLflow backend store (MLflow's own SQLite file or PostgreSQL database), for
//! `slipway import mlflow --from sqlite:///mlflow.db`. Read only: the SQLite file is opened
//! with `mode=ro`, and only `SELECT`s are sent.
//!
//! Rows come back in the shape MLflow's REST API gives them (`Run`, `Experiment`,
//! `RegisteredModel`, `ModelVersion`, `LoggedModel` as JSON), so that the importer treats a
//! database and a running server alike. The tables read are the ones MLflow's SQLAlchemy store
//! has kept since 2.x plus MLflow 3's logged models; columns added later are left alone.

use std::collections::HashMap;

use serde_json::{Value, json};
use slipway_core::{Error, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions, Row};

use crate::BackendUri;

/// An MLflow database, opened read-only.
pub struct MlflowDb {
    pool: AnyPool,
    uri: BackendUri,
    /// `AND workspace = 'default'` where MLflow has workspaces (3.x): names are unique only
    /// within one, and slipway has none.
    workspace: &'static str,
}

fn read_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::internal(format!("reading MLflow's {what}"), e)
}

fn text(row: &AnyRow, column: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(column).ok().flatten()
}

fn int(row: &AnyRow, column: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(column).ok().flatten()
}

/// A metric value as MLflow's REST API writes it: NaN as a string, since JSON has no NaN.
fn metric_value(row: &AnyRow) -> Value {
    if int(row, "is_nan").unwrap_or(0) != 0 {
        return json!("NaN");
    }
    let value: f64 = row
        .try_get::<Option<f64>, _>("value")
        .ok()
        .flatten()
        .unwrap_or(f64::NAN);
    if value.is_nan() {
        json!("NaN")
    } else if value.is_infinite() {
        json!(if value > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(value)
    }
}

fn pairs(rows: &[AnyRow], owner: &str, key: &str, value: &str) -> HashMap<String, Vec<Value>> {
    let mut by_owner: HashMap<String, Vec<Value>> = HashMap::new();
    for row in rows {
        by_owner
            .entry(text(row, owner).unwrap_or_default())
            .or_default()
            .push(json!({"key": text(row, key), "value": text(row, value).unwrap_or_default()}));
    }
    by_owner
}

impl MlflowDb {
    /// Opens the database a backend store URI names; says so when it holds no MLflow schema.
    pub async fn open(raw: &str) -> Result<MlflowDb> {
        sqlx::any::install_default_drivers();
        let uri = BackendUri::parse(raw)?;
        let url = match &uri {
            BackendUri::Sqlite(path) => {
                if !path.is_file() {
                    return Err(Error::not_found(format!(
                        "there is no MLflow database at {} (no such file)",
                        uri.redacted()
                    )));
                }
                format!("sqlite://{}?mode=ro", path.display())
            }
            BackendUri::Postgres(url) => url.clone(),
        };
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()
            .map_err(|e| Error::internal(format!("parsing {}", uri.redacted()), e))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::internal(format!("connecting to {}", uri.redacted()), e))?;
        let mut db = MlflowDb {
            pool,
            uri,
            workspace: "",
        };
        if sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM experiments WHERE 1 = 0")
            .fetch_one(&db.pool)
            .await
            .is_err()
        {
            return Err(Error::invalid(format!(
                "{} holds no MLflow tracking schema (no experiments table): give the database an MLflow server was started with (--backend-store-uri)",
                db.uri.redacted()
            )));
        }
        if sqlx::query("SELECT workspace FROM experiments WHERE 1 = 0")
            .fetch_all(&db.pool)
            .await
            .is_ok()
        {
            db.workspace = " AND workspace = 'default'";
        }
        Ok(db)
    }

    /// Runs a query whose text has `{ws}` where the workspace condition goes.
    fn scoped(
        &self,
        text: &str,
    ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        // `workspace` is one of two constants of this module, never input.
        sqlx::query(sqlx::AssertSqlSafe(text.replace("{ws}", self.workspace)))
    }

    pub fn redacted(&self) -> String {
        self.uri.redacted()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn has_table(&self, table: &str) -> bool {
        // Not a bind: a table name cannot be one. `table` is a constant of this module.
        let probe = format!("SELECT 1 AS one FROM {table} WHERE 1 = 0");
        sqlx::query(sqlx::AssertSqlSafe(probe))
            .fetch_all(&self.pool)
            .await
            .is_ok()
    }

    /// Every experiment, deleted ones too.
    pub async fn experiments(&self) -> Result<Vec<Value>> {
        let rows = self
            .scoped(
                "SELECT CAST(experiment_id AS BIGINT) AS experiment_id, name, artifact_location,
                    lifecycle_stage, CAST(creation_time AS BIGINT) AS creation_time,
                    CAST(last_update_time AS BIGINT) AS last_update_time
             FROM experiments WHERE 1 = 1 {ws} ORDER BY experiment_id",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(read_err("experiments"))?;
        let tag_rows = sqlx::query(
            "SELECT CAST(experiment_id AS BIGINT) AS experiment_id, key, value FROM experiment_tags",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(read_err("experiment tags"))?;
        let mut tags: HashMap<i64, Vec<Value>> = HashMap::new();
        for row in &tag_rows {
            tags.entry(int(row, "experiment_id").unwrap_or_default())
                .or_default()
                .push(json!({"key": text(row, "key"), "value": text(row, "value").unwrap_or_default()}));
        }
        Ok(rows
            .iter()
            .map(|row| {
                let id = int(row, "experiment_id").unwrap_or_default();
                json!({
                    "experiment_id": id.to_string(),
                    "name": text(row, "name"),
                    "artifact_location": text(row, "artifact_location"),
                    "lifecycle_stage": text(row, "lifecycle_stage").unwrap_or_else(|| "active".into()),
                    "creation_time": int(row, "creation_time"),
                    "last_update_time": int(row, "last_update_time"),
                    "tags": tags.remove(&id).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The runs of one experiment, whole: info, params, tags, latest metrics, dataset and model
    /// inputs, model outputs.
    pub async fn runs(&self, experiment_id: i64) -> Result<Vec<Value>> {
        let of_experiment = "(SELECT run_uuid FROM runs WHERE experiment_id = $1)";
        let fetch = |sql: String, what: &'static str| async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(experiment_id)
                .fetch_all(&self.pool)
                .await
                .map_err(read_err(what))
        };
        let runs = fetch(
            "SELECT run_uuid, name, user_id, status, CAST(start_time AS BIGINT) AS start_time,
                    CAST(end_time AS BIGINT) AS end_time, lifecycle_stage, artifact_uri
             FROM runs WHERE experiment_id = $1 ORDER BY start_time, run_uuid"
                .to_owned(),
            "runs",
        )
        .await?;
        let params = fetch(
            format!("SELECT run_uuid, key, value FROM params WHERE run_uuid IN {of_experiment}"),
            "params",
        )
        .await?;
        let tags = fetch(
            format!("SELECT run_uuid, key, value FROM tags WHERE run_uuid IN {of_experiment}"),
            "run tags",
        )
        .await?;
        let metrics = fetch(
            format!(
                "SELECT run_uuid, key, value, CAST(timestamp AS BIGINT) AS timestamp,
                        CAST(step AS BIGINT) AS step,
                        CASE WHEN is_nan THEN 1 ELSE 0 END AS is_nan
                 FROM latest_metrics WHERE run_uuid IN {of_experiment}"
            ),
            "latest metrics",
        )
        .await?;
        let datasets = fetch(
            format!(
                "SELECT i.input_uuid, i.destination_id AS run_uuid, d.name, d.digest,
                        d.dataset_source_type, d.dataset_source, d.dataset_schema, d.dataset_profile
                 FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id
                 WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN'
                   AND i.destination_id IN {of_experiment}
                 ORDER BY i.input_uuid"
            ),
            "dataset inputs",
        )
        .await?;
        let input_tags = fetch(
            format!(
                "SELECT t.input_uuid, t.name, t.value FROM input_tags t
                 JOIN inputs i ON i.input_uuid = t.input_uuid
                 WHERE i.destination_id IN {of_experiment}"
            ),
            "input tags",
        )
        .await?;
        // MLflow 3 links runs and logged models through the same table.
        let model_links = fetch(
            format!(
                "SELECT source_type, source_id, destination_type, destination_id,
                        CAST(step AS BIGINT) AS step
                 FROM inputs
                 WHERE source_type IN ('RUN_OUTPUT', 'RUN_INPUT')
                   AND source_id IN {of_experiment}"
            ),
            "model inputs and outputs",
        )
        .await
        .unwrap_or_default();

        let mut params = pairs(&params, "run_uuid", "key", "value");
        let mut tags = pairs(&tags, "run_uuid", "key", "value");
        let mut latest: HashMap<String, Vec<Value>> = HashMap::new();
        for row in &metrics {
            latest
                .entry(text(row, "run_uuid").unwrap_or_default())
                .or_default()
                .push(json!({
                    "key": text(row, "key"),
                    "value": metric_value(row),
                    "timestamp": int(row, "timestamp"),
                    "step": int(row, "step"),
                }));
        }
        let mut input_tag_map = pairs(&input_tags, "input_uuid", "name", "value");
        let mut dataset_inputs: HashMap<String, Vec<Value>> = HashMap::new();
        for row in &datasets {
            let input = text(row, "input_uuid").unwrap_or_default();
            dataset_inputs
                .entry(text(row, "run_uuid").unwrap_or_default())
                .or_default()
                .push(json!({
                    "tags": input_tag_map.remove(&input).unwrap_or_default(),
                    "dataset": {
                        "name": text(row, "name"),
                        "digest": text(row, "digest"),
                        "source_type": text(row, "dataset_source_type"),
                        "source": text(row, "dataset_source"),
                        "schema": text(row, "dataset_schema"),
                        "profile": text(row, "dataset_profile"),
                    },
                }));
        }
        let mut model_inputs: HashMap<String, Vec<Value>> = HashMap::new();
        let mut model_outputs: HashMap<String, Vec<Value>> = HashMap::new();
        for row in &model_links {
            if text(row, "source_type").as_deref() == Some("RUN_OUTPUT") {
                model_outputs
                    .entry(text(row, "source_id").unwrap_or_default())
                    .or_default()
                    .push(json!({"model_id": text(row, "destination_id"),
                                 "step": int(row, "step").unwrap_or_default()}));
            } else {
                model_inputs
                    .entry(text(row, "source_id").unwrap_or_default())
                    .or_default()
                    .push(json!({"model_id": text(row, "destination_id")}));
            }
        }
        Ok(runs
            .iter()
            .map(|row| {
                let id = text(row, "run_uuid").unwrap_or_default();
                json!({
                    "info": {
                        "run_id": id,
                        "run_uuid": id,
                        "run_name": text(row, "name").unwrap_or_default(),
                        "experiment_id": experiment_id.to_string(),
                        "user_id": text(row, "user_id").unwrap_or_default(),
                        "status": text(row, "status"),
                        "start_time": int(row, "start_time"),
                        "end_time": int(row, "end_time"),
                        "artifact_uri": text(row, "artifact_uri"),
                        "lifecycle_stage": text(row, "lifecycle_stage").unwrap_or_else(|| "active".into()),
                    },
                    "data": {
                        "metrics": latest.remove(&id).unwrap_or_default(),
                        "params": params.remove(&id).unwrap_or_default(),
                        "tags": tags.remove(&id).unwrap_or_default(),
                    },
                    "inputs": {
                        "dataset_inputs": dataset_inputs.remove(&id).unwrap_or_default(),
                        "model_inputs": model_inputs.remove(&id).unwrap_or_default(),
                    },
                    "outputs": {
                        "model_outputs": model_outputs.remove(&id).unwrap_or_default(),
                    },
                })
            })
            .collect())
    }

    /// One metric's whole history, in MLflow's order.
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT key, value, CAST(timestamp AS BIGINT) AS timestamp,
                    CAST(step AS BIGINT) AS step, CASE WHEN is_nan THEN 1 ELSE 0 END AS is_nan
             FROM metrics WHERE run_uuid = $1 AND key = $2 ORDER BY timestamp, step, value",
        )
        .bind(run_id)
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(read_err("metric history"))?;
        Ok(rows
            .iter()
            .map(|row| {
                json!({
                    "key": text(row, "key"),
                    "value": metric_value(row),
                    "timestamp": int(row, "timestamp"),
                    "step": int(row, "step"),
                })
            })
            .collect())
    }

    /// MLflow 3's logged models of one experiment, with their params, tags and metrics; none
    /// from an MLflow 2 database.
    pub async fn logged_models(&self, experiment_id: i64) -> Result<Vec<Value>> {
        if !self.has_table("logged_models").await {
            return Ok(Vec::new());
        }
        let fetch = |sql: &'static str, what: &'static str| async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(experiment_id)
                .fetch_all(&self.pool)
                .await
                .map_err(read_err(what))
        };
        let models = fetch(
            "SELECT model_id, name, artifact_location,
                    CAST(creation_timestamp_ms AS BIGINT) AS creation_timestamp_ms,
                    CAST(last_updated_timestamp_ms AS BIGINT) AS last_updated_timestamp_ms,
                    CAST(status AS BIGINT) AS status, lifecycle_stage, model_type,
                    source_run_id, status_message
             FROM logged_models WHERE experiment_id = $1 AND lifecycle_stage <> 'deleted'
             ORDER BY creation_timestamp_ms, model_id",
            "logged models",
        )
        .await?;
        let params = fetch(
            "SELECT model_id, param_key, param_value FROM logged_model_params WHERE experiment_id = $1",
            "logged model params",
        )
        .await?;
        let tags = fetch(
            "SELECT model_id, tag_key, tag_value FROM logged_model_tags WHERE experiment_id = $1",
            "logged model tags",
        )
        .await?;
        let metrics = fetch(
            "SELECT model_id, metric_name, CAST(metric_timestamp_ms AS BIGINT) AS timestamp,
                    CAST(metric_step AS BIGINT) AS step, metric_value AS value, run_id,
                    dataset_name, dataset_digest, 0 AS is_nan
             FROM logged_model_metrics WHERE experiment_id = $1
             ORDER BY metric_timestamp_ms, metric_step",
            "logged model metrics",
        )
        .await?;
        let mut params = pairs(&params, "model_id", "param_key", "param_value");
        let mut tags = pairs(&tags, "model_id", "tag_key", "tag_value");
        let mut model_metrics: HashMap<String, Vec<Value>> = HashMap::new();
        for row in &metrics {
            model_metrics
                .entry(text(row, "model_id").unwrap_or_default())
                .or_default()
                .push(json!({
                    "key": text(row, "metric_name"),
                    "value": metric_value(row),
                    "timestamp": int(row, "timestamp"),
                    "step": int(row, "step"),
                    "run_id": text(row, "run_id"),
                    "dataset_name": text(row, "dataset_name"),
                    "dataset_digest": text(row, "dataset_digest"),
                    "model_id": text(row, "model_id"),
                }));
        }
        let status = |code: Option<i64>| match code {
            Some(2) => "LOGGED_MODEL_READY",
            Some(3) => "LOGGED_MODEL_UPLOAD_FAILED",
            _ => "LOGGED_MODEL_PENDING",
        };
        Ok(models
            .iter()
            .map(|row| {
                let id = text(row, "model_id").unwrap_or_default();
                json!({
                    "info": {
                        "model_id": id,
                        "experiment_id": experiment_id.to_string(),
                        "name": text(row, "name"),
                        "artifact_uri": text(row, "artifact_location"),
                        "creation_timestamp_ms": int(row, "creation_timestamp_ms"),
                        "last_updated_timestamp_ms": int(row, "last_updated_timestamp_ms"),
                        "status": status(int(row, "status")),
                        "status_message": text(row, "status_message"),
                        "lifecycle_stage": text(row, "lifecycle_stage").unwrap_or_else(|| "active".into()),
                        "model_type": text(row, "model_type"),
                        "source_run_id": text(row, "source_run_id"),
                        "tags": tags.remove(&id).unwrap_or_default(),
                    },
                    "data": {
                        "params": params.remove(&id).unwrap_or_default(),
                        "metrics": model_metrics.remove(&id).unwrap_or_default(),
                    },
                })
            })
            .collect())
    }

    /// Every registered model with its tags and aliases.
    pub async fn registered_models(&self) -> Result<Vec<Value>> {
        let models = self
            .scoped(
                "SELECT name, description, CAST(creation_time AS BIGINT) AS creation_time,
                    CAST(last_updated_time AS BIGINT) AS last_updated_time
             FROM registered_models WHERE 1 = 1 {ws} ORDER BY name",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(read_err("registered models"))?;
        let tags = self
            .scoped("SELECT name, key, value FROM registered_model_tags WHERE 1 = 1 {ws}")
            .fetch_all(&self.pool)
            .await
            .map_err(read_err("registered model tags"))?;
        let aliases = self
            .scoped(
                "SELECT name, alias, CAST(version AS BIGINT) AS version FROM registered_model_aliases
             WHERE 1 = 1 {ws}",
            )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        let mut tags = pairs(&tags, "name", "key", "value");
        let mut by_model: HashMap<String, Vec<Value>> = HashMap::new();
        for row in &aliases {
            by_model
                .entry(text(row, "name").unwrap_or_default())
                .or_default()
                .push(json!({"alias": text(row, "alias"),
                             "version": int(row, "version").unwrap_or_default().to_string()}));
        }
        Ok(models
            .iter()
            .map(|row| {
                let name = text(row, "name").unwrap_or_default();
                json!({
                    "name": name,
                    "description": text(row, "description"),
                    "creation_timestamp": int(row, "creation_time"),
                    "last_updated_timestamp": int(row, "last_updated_time"),
                    "tags": tags.remove(&name).unwrap_or_default(),
                    "aliases": by_model.remove(&name).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// A registered model's versions, without the ones MLflow keeps only to reserve their
    /// numbers (stage `Deleted_Internal`).
    pub async fn model_versions(&self, name: &str) -> Result<Vec<Value>> {
        let versions = self
            .scoped(
                "SELECT name, CAST(version AS BIGINT) AS version,
                    CAST(creation_time AS BIGINT) AS creation_time,
                    CAST(last_updated_time AS BIGINT) AS last_updated_time, description,
                    user_id, current_stage, source, run_id, run_link, status, status_message
             FROM model_versions WHERE name = $1 AND current_stage <> 'Deleted_Internal' {ws}
             ORDER BY version",
            )
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(read_err("model versions"))?;
        let tag_rows = self
            .scoped(
                "SELECT CAST(version AS BIGINT) AS version, key, value FROM model_version_tags
             WHERE name = $1 {ws}",
            )
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(read_err("model version tags"))?;
        let mut tags: HashMap<i64, Vec<Value>> = HashMap::new();
        for row in &tag_rows {
            tags.entry(int(row, "version").unwrap_or_default())
                .or_default()
                .push(json!({"key": text(row, "key"), "value": text(row, "value").unwrap_or_default()}));
        }
        Ok(versions
            .iter()
            .map(|row| {
                let version = int(row, "version").unwrap_or_default();
                let source = text(row, "source").unwrap_or_default();
                let model_id = source
                    .strip_prefix("models:/")
                    .filter(|rest| rest.starts_with("m-"))
                    .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned());
                json!({
                    "name": name,
                    "version": version.to_string(),
                    "creation_timestamp": int(row, "creation_time"),
                    "last_updated_timestamp": int(row, "last_updated_time"),
                    "description": text(row, "description"),
                    "user_id": text(row, "user_id"),
                    "current_stage": text(row, "current_stage"),
                    "source": source,
                    "run_id": text(row, "run_id"),
                    "run_link": text(row, "run_link"),
                    "status": text(row, "status"),
                    "model_id": model_id,
                    "tags": tags.remove(&version).unwrap_or_default(),
                })
            })
            .collect())
    }
}
