//! Experiments and their tags.

use std::collections::HashMap;

use slipway_core::paging::Page;
use slipway_core::ports::{ArtifactLocation, SearchQuery};
use slipway_core::tracking::{Experiment, ExperimentId, LifecycleStage, Tag};
use slipway_core::{Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::filter::{self, Target};
use crate::sql::{Sql, db_err, delete_existing, get_i64, get_str, is_unique_violation};
use crate::{SqlStore, now_ms};

const COLUMNS: &str = "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

/// Experiment 0, `Default`, exists in every MLflow store; clients log there without naming one.
pub(crate) async fn ensure_default_experiment(pool: &sqlx::AnyPool) -> Result<()> {
    {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', $1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(now)
        .bind(now)
        .execute(pool)
        .await
        .map_err(db_err("creating the Default experiment"))?;
        Ok(())
    }
}

fn already_exists(name: &str) -> Error {
    Error::already_exists(format!("Experiment(name={name}) already exists."))
}

pub(crate) fn not_found(id: ExperimentId) -> Error {
    Error::not_found(format!("No Experiment with id={id} exists"))
}

pub(crate) async fn create(
    store: &SqlStore,
    name: &str,
    artifact_location: ArtifactLocation,
    tags: &[Tag],
    now: i64,
) -> Result<ExperimentId> {
    let name_owned = name.to_owned();
    let tags_owned = tags.to_vec();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let tags = tags_owned.as_slice();
                let explicit = match &artifact_location {
                    ArtifactLocation::Explicit(location) => location.clone(),
                    ArtifactLocation::UnderRoot(_) => String::new(),
                };
                let inserted = sqlx::query(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
                     VALUES ($1, $2, 'active', $3, $4) RETURNING experiment_id",
                )
                .bind(name.to_owned())
                .bind(explicit)
                .bind(now)
                .bind(now)
                .fetch_one(&mut *tx)
                .await;
                let row = match inserted {
                    Ok(row) => row,
                    Err(e) if is_unique_violation(&e) => return Err(already_exists(name)),
                    Err(e) => return Err(db_err("creating an experiment")(e)),
                };
                let id = ExperimentId::new(get_i64(&row, "experiment_id")?);
                if let ArtifactLocation::UnderRoot(root) = &artifact_location {
                    sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
                        .bind(format!("{}/{id}", root.trim_end_matches('/')))
                        .bind(id.get())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("setting an experiment's artifact location"))?;
                }
                for tag in tags {
                    upsert_tag(&mut *tx, id, tag).await?;
                }
                Ok(id)
            })
        })
        .await
}

async fn upsert_tag(conn: &mut AnyConnection, id: ExperimentId, tag: &Tag) -> Result<()> {
    sqlx::query(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(id.get())
    .bind(tag.key.clone())
    .bind(tag.value.clone())
    .execute(conn)
    .await
    .map_err(db_err("setting an experiment tag"))?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<Experiment> {
    Ok(Experiment {
        experiment_id: ExperimentId::new(get_i64(row, "experiment_id")?),
        name: get_str(row, "name")?,
        artifact_location: get_str(row, "artifact_location")?,
        lifecycle_stage: LifecycleStage::from_db(&get_str(row, "lifecycle_stage")?),
        creation_time: get_i64(row, "creation_time")?,
        last_update_time: get_i64(row, "last_update_time")?,
        tags: Vec::new(),
    })
}

async fn attach_tags(store: &SqlStore, experiments: &mut [Experiment]) -> Result<()> {
    if experiments.is_empty() {
        return Ok(());
    }
    let mut sql =
        store.sql("SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ");
    sql.bind_list(experiments.iter().map(|e| e.experiment_id.get()));
    sql.push(" ORDER BY key");
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading experiment tags"))?;
    let mut by_id: HashMap<i64, Vec<Tag>> = HashMap::new();
    for row in &rows {
        by_id
            .entry(get_i64(row, "experiment_id")?)
            .or_default()
            .push(Tag::new(get_str(row, "key")?, get_str(row, "value")?));
    }
    for experiment in experiments {
        experiment.tags = by_id
            .remove(&experiment.experiment_id.get())
            .unwrap_or_default();
    }
    Ok(())
}

pub(crate) async fn get(store: &SqlStore, id: ExperimentId) -> Result<Experiment> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.experiment_id = $1"
    )))
    .bind(id.get())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading an experiment"))?
    .ok_or_else(|| not_found(id))?;
    let mut experiments = [from_row(&row)?];
    attach_tags(store, &mut experiments).await?;
    let [experiment] = experiments;
    Ok(experiment)
}

pub(crate) async fn get_by_name(store: &SqlStore, name: &str) -> Result<Experiment> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.name = $1"
    )))
    .bind(name.to_owned())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading an experiment"))?
    .ok_or_else(|| Error::not_found(format!("Could not find experiment with name '{name}'")))?;
    let mut experiments = [from_row(&row)?];
    attach_tags(store, &mut experiments).await?;
    let [experiment] = experiments;
    Ok(experiment)
}

pub(crate) async fn search(store: &SqlStore, query: &SearchQuery) -> Result<Page<Experiment>> {
    let mut sql = store.sql(&format!("SELECT {COLUMNS} FROM experiments e"));
    let order = filter::order_joins(&mut sql, Target::Experiments, &query.order_by, false)?;
    sql.push(" WHERE e.lifecycle_stage IN ");
    sql.bind_list(query.view_type.stages().iter().copied());
    if let Some(expr) = &query.filter {
        sql.push(" AND ");
        filter::push_expr(&mut sql, Target::Experiments, expr)?;
    }
    sql.push(" ORDER BY ");
    sql.push(&order);
    if !order.is_empty() {
        sql.push(", ");
    }
    sql.push("e.creation_time DESC, e.experiment_id ASC");
    push_limit(&mut sql, query);
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("searching experiments"))?;
    let mut experiments = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    attach_tags(store, &mut experiments).await?;
    Ok(Page::from_overfetch(
        experiments,
        query.offset,
        query.max_results,
    ))
}

/// `LIMIT max+1 OFFSET n`: the extra row tells whether a next page exists.
pub(crate) fn push_limit(sql: &mut Sql, query: &SearchQuery) {
    sql.push(" LIMIT ");
    sql.bind(query.max_results as i64 + 1);
    sql.push(" OFFSET ");
    sql.bind(query.offset as i64);
}

pub(crate) async fn set_lifecycle(
    store: &SqlStore,
    id: ExperimentId,
    delete: bool,
    now: i64,
) -> Result<()> {
    if delete && id == ExperimentId::DEFAULT {
        return Err(Error::invalid(
            "Cannot delete the default experiment '0'. This is an internally reserved experiment.",
        ));
    }
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let (to, from) = if delete {
                    ("deleted", "active")
                } else {
                    ("active", "deleted")
                };
                let row =
                    sqlx::query("SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1")
                        .bind(id.get())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("reading an experiment"))?
                        .ok_or_else(|| not_found(id))?;
                let stage: String = row
                    .try_get("lifecycle_stage")
                    .map_err(db_err("decoding lifecycle"))?;
                if stage != from {
                    return Err(Error::invalid(format!(
                        "Cannot {} experiment {id}: it is already {stage}.",
                        if delete { "delete" } else { "restore" }
                    )));
                }
                sqlx::query(
                    "UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 \
         WHERE experiment_id = $3",
                )
                .bind(to)
                .bind(now)
                .bind(id.get())
                .execute(&mut *tx)
                .await
                .map_err(db_err("changing an experiment's lifecycle"))?;
                // MLflow's SQL store deletes and restores the experiment's runs along with it.
                sqlx::query(
                    "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 \
         WHERE experiment_id = $3 AND lifecycle_stage = $4",
                )
                .bind(to)
                .bind(if delete { Some(now) } else { None })
                .bind(id.get())
                .bind(from)
                .execute(&mut *tx)
                .await
                .map_err(db_err("changing the lifecycle of an experiment's runs"))?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn rename(
    store: &SqlStore,
    id: ExperimentId,
    new_name: &str,
    now: i64,
) -> Result<()> {
    let new_name_owned = new_name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let new_name = new_name_owned.as_str();
                let stage = lifecycle(&mut *tx, id).await?;
                if stage != "active" {
                    return Err(Error::invalid(format!(
                        "Cannot rename a non-active experiment. Experiment {id} is {stage}."
                    )));
                }
                let result = sqlx::query(
        "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
    )
    .bind(new_name.to_owned())
    .bind(now)
    .bind(id.get())
    .execute(&mut *tx)
    .await;
                match result {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Err(already_exists(new_name)),
                    Err(e) => return Err(db_err("renaming an experiment")(e)),
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}

async fn lifecycle(conn: &mut AnyConnection, id: ExperimentId) -> Result<String> {
    let row = sqlx::query("SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1")
        .bind(id.get())
        .fetch_optional(conn)
        .await
        .map_err(db_err("reading an experiment"))?
        .ok_or_else(|| not_found(id))?;
    get_str(&row, "lifecycle_stage")
}

pub(crate) async fn set_tag(store: &SqlStore, id: ExperimentId, tag: &Tag) -> Result<()> {
    let tag_owned = tag.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let tag = &tag_owned;
                let stage = lifecycle(&mut *tx, id).await?;
                if stage != "active" {
                    return Err(Error::invalid(format!(
                        "The experiment {id} must be in the 'active' state. Current state is {stage}."
                    )));
                }
                upsert_tag(&mut *tx, id, tag).await?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn delete_tag(store: &SqlStore, id: ExperimentId, key: &str) -> Result<()> {
    let key_owned = key.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let key = key_owned.as_str();
                let stage = lifecycle(&mut *tx, id).await?;
                if stage != "active" {
                    return Err(Error::invalid(format!(
                        "The experiment {id} must be in the 'active' state. Current state is {stage}."
                    )));
                }
                delete_existing(
                    tx,
                    sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2")
                        .bind(id.get())
                        .bind(key.to_owned()),
                    "deleting an experiment tag",
                    || Error::not_found(format!("No tag with name: {key} in experiment with id {id}")),
                )
                .await
            })
        })
        .await?;
    Ok(())
}
