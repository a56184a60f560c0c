//! The model registry: registered models, versions, tags, aliases and stages.

use std::collections::HashMap;

use slipway_core::paging::Page;
use slipway_core::ports::SearchQuery;
use slipway_core::registry::{
    AliasVersion, ModelVersion, NewModelVersion, RegisteredModel, Stage, VersionContent,
};
use slipway_core::tracking::Tag;
use slipway_core::{Error, Result};
use sqlx::AnyConnection;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::experiments::push_limit;
use crate::filter::{self, Target};
use crate::sql::{db_err, delete_existing, get_i64, get_opt_str, get_str, is_unique_violation};

const MODEL_COLUMNS: &str =
    "rm.id, rm.name, rm.creation_time, rm.last_updated_time, rm.description, rm.user_id";
const VERSION_COLUMNS: &str = "rm.name, mv.model_id, mv.version, mv.creation_time, mv.last_updated_time, \
     mv.description, mv.user_id, mv.current_stage, mv.source, mv.run_id, mv.run_link, mv.status, \
     mv.status_message, mv.logged_model_id";

fn model_not_found(name: &str) -> Error {
    Error::not_found(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: i64) -> Error {
    Error::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

fn model_exists(name: &str) -> Error {
    Error::already_exists(format!("Registered Model (name={name}) already exists."))
}

/// A registered model row plus its surrogate id, which never leaves this module.
struct ModelRow {
    id: i64,
    model: RegisteredModel,
}

fn model_from_row(row: &AnyRow) -> Result<ModelRow> {
    Ok(ModelRow {
        id: get_i64(row, "id")?,
        model: RegisteredModel {
            name: get_str(row, "name")?,
            creation_timestamp: get_i64(row, "creation_time")?,
            last_updated_timestamp: get_i64(row, "last_updated_time")?,
            user_id: get_opt_str(row, "user_id")?,
            description: get_opt_str(row, "description")?,
            latest_versions: Vec::new(),
            tags: Vec::new(),
            aliases: Vec::new(),
        },
    })
}

fn version_from_row(row: &AnyRow) -> Result<(i64, ModelVersion)> {
    Ok((
        get_i64(row, "model_id")?,
        ModelVersion {
            name: get_str(row, "name")?,
            version: get_i64(row, "version")?,
            creation_timestamp: get_i64(row, "creation_time")?,
            last_updated_timestamp: get_i64(row, "last_updated_time")?,
            user_id: get_opt_str(row, "user_id")?,
            current_stage: Stage::from_db(&get_str(row, "current_stage")?),
            description: get_opt_str(row, "description")?,
            source: get_str(row, "source")?,
            run_id: get_opt_str(row, "run_id")?,
            run_link: get_opt_str(row, "run_link")?,
            status: get_str(row, "status")?,
            status_message: get_opt_str(row, "status_message")?,
            tags: Vec::new(),
            aliases: Vec::new(),
            model_id: get_opt_str(row, "logged_model_id")?,
        },
    ))
}

pub(crate) async fn model_id(conn: &mut AnyConnection, name: &str) -> Result<i64> {
    let row = sqlx::query("SELECT id FROM registered_models WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(conn)
        .await
        .map_err(db_err("reading a registered model"))?
        .ok_or_else(|| model_not_found(name))?;
    get_i64(&row, "id")
}

pub(crate) async fn require_version(
    conn: &mut AnyConnection,
    name: &str,
    version: i64,
) -> Result<i64> {
    let id = model_id(conn, name).await?;
    sqlx::query("SELECT 1 AS present FROM model_versions WHERE model_id = $1 AND version = $2")
        .bind(id)
        .bind(version)
        .fetch_optional(conn)
        .await
        .map_err(db_err("reading a model version"))?
        .ok_or_else(|| version_not_found(name, version))?;
    Ok(id)
}

async fn touch_model(conn: &mut AnyConnection, id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
        .map_err(db_err("touching a registered model"))?;
    Ok(())
}

pub(crate) async fn create_model(
    store: &SqlStore,
    name: &str,
    description: Option<&str>,
    tags: &[Tag],
    now: i64,
) -> Result<RegisteredModel> {
    let name_owned = name.to_owned();
    let description_owned = description.map(str::to_owned);
    let tags_owned = tags.to_vec();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let description = description_owned.as_deref();
                let tags = tags_owned.as_slice();
                let inserted = sqlx::query(
                    "INSERT INTO registered_models (name, creation_time, last_updated_time, description, user_id, next_version) \
                     VALUES ($1, $2, $3, $4, NULL, 1) RETURNING id",
                )
                .bind(name.to_owned())
                .bind(now)
                .bind(now)
                .bind(description.map(str::to_owned))
                .fetch_one(&mut *tx)
                .await;
                let id = match inserted {
                    Ok(row) => get_i64(&row, "id")?,
                    Err(e) if is_unique_violation(&e) => return Err(model_exists(name)),
                    Err(e) => return Err(db_err("creating a registered model")(e)),
                };
                for tag in tags {
                    upsert_model_tag(&mut *tx, id, tag).await?;
                }
                Ok(())
            })
        })
        .await?;
    get_model(store, name).await
}

async fn upsert_model_tag(conn: &mut AnyConnection, id: i64, tag: &Tag) -> Result<()> {
    sqlx::query(
        "INSERT INTO registered_model_tags (model_id, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(id)
    .bind(tag.key.clone())
    .bind(tag.value.clone())
    .execute(conn)
    .await
    .map_err(db_err("setting a registered model tag"))?;
    Ok(())
}

/// Fills tags, aliases and `latest_versions` for a page of models.
async fn hydrate_models(store: &SqlStore, rows: Vec<ModelRow>) -> Result<Vec<RegisteredModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let position: HashMap<i64, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (row.id, i))
        .collect();
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let mut models: Vec<RegisteredModel> = rows.into_iter().map(|row| row.model).collect();

    let mut sql =
        store.sql("SELECT model_id, key, value FROM registered_model_tags WHERE model_id IN ");
    sql.bind_list(ids.iter().copied()).push(" ORDER BY key");
    for row in sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading model tags"))?
    {
        models[position[&get_i64(&row, "model_id")?]]
            .tags
            .push(Tag::new(get_str(&row, "key")?, get_str(&row, "value")?));
    }
    let mut sql = store
        .sql("SELECT model_id, alias, version FROM registered_model_aliases WHERE model_id IN ");
    sql.bind_list(ids.iter().copied()).push(" ORDER BY alias");
    for row in sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading model aliases"))?
    {
        models[position[&get_i64(&row, "model_id")?]]
            .aliases
            .push(AliasVersion {
                alias: get_str(&row, "alias")?,
                version: get_i64(&row, "version")?,
            });
    }
    // The newest version of each stage, as MLflow's `latest_versions`.
    let mut sql = store.sql(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id \
         WHERE mv.model_id IN "
    ));
    sql.bind_list(ids.iter().copied());
    sql.push(
        " AND mv.version = (SELECT MAX(v2.version) FROM model_versions v2 \
          WHERE v2.model_id = mv.model_id AND v2.current_stage = mv.current_stage) ORDER BY mv.version",
    );
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading latest versions"))?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in &rows {
        versions.push(version_from_row(row)?);
    }
    attach_version_details(store, &mut versions).await?;
    for (model_id, version) in versions {
        models[position[&model_id]].latest_versions.push(version);
    }
    Ok(models)
}

/// Fills the tags and aliases of a list of versions with one query each, whatever its length.
async fn attach_version_details(
    store: &SqlStore,
    versions: &mut [(i64, ModelVersion)],
) -> Result<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let position: HashMap<(i64, i64), usize> = versions
        .iter()
        .enumerate()
        .map(|(index, (id, version))| ((*id, version.version), index))
        .collect();
    let mut model_ids: Vec<i64> = versions.iter().map(|(id, _)| *id).collect();
    model_ids.sort_unstable();
    model_ids.dedup();
    let query = |head: &str, order: &str| {
        let mut sql = store.sql(head);
        sql.bind_list(model_ids.iter().copied()).push(order);
        sql
    };
    let tags = query(
        "SELECT model_id, version, key, value FROM model_version_tags WHERE model_id IN ",
        " ORDER BY key",
    );
    for row in tags
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading version tags"))?
    {
        if let Some(index) = position.get(&(get_i64(&row, "model_id")?, get_i64(&row, "version")?))
        {
            versions[*index]
                .1
                .tags
                .push(Tag::new(get_str(&row, "key")?, get_str(&row, "value")?));
        }
    }
    let aliases = query(
        "SELECT model_id, alias, version FROM registered_model_aliases WHERE model_id IN ",
        " ORDER BY alias",
    );
    for row in aliases
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading version aliases"))?
    {
        if let Some(index) = position.get(&(get_i64(&row, "model_id")?, get_i64(&row, "version")?))
        {
            versions[*index].1.aliases.push(get_str(&row, "alias")?);
        }
    }
    Ok(())
}

pub(crate) async fn get_model(store: &SqlStore, name: &str) -> Result<RegisteredModel> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {MODEL_COLUMNS} FROM registered_models rm WHERE rm.name = $1"
    )))
    .bind(name.to_owned())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading a registered model"))?
    .ok_or_else(|| model_not_found(name))?;
    let mut models = hydrate_models(store, vec![model_from_row(&row)?]).await?;
    models.pop().ok_or_else(|| model_not_found(name))
}

pub(crate) async fn rename_model(
    store: &SqlStore,
    name: &str,
    new_name: &str,
    now: i64,
) -> Result<RegisteredModel> {
    let name_owned = name.to_owned();
    let new_name_owned = new_name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let new_name = new_name_owned.as_str();
                let id = model_id(&mut *tx, name).await?;
                let result = sqlx::query(
                    "UPDATE registered_models SET name = $1, last_updated_time = $2 WHERE id = $3",
                )
                .bind(new_name.to_owned())
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await;
                match result {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Err(model_exists(new_name)),
                    Err(e) => return Err(db_err("renaming a registered model")(e)),
                }
                for table in [
                    "promotion_policies",
                    "promotion_requests",
                    "alias_history",
                    "monitor_references",
                    "gate_results",
                ] {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {table} SET model_name = $1 WHERE model_name = $2"
                    )))
                    .bind(new_name.to_owned())
                    .bind(name.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("renaming a model's promotion records"))?;
                }
                crate::identity::rename_model_grants(&mut crate::conn::Tx::Any(tx), name, new_name)
                    .await
            })
        })
        .await?;
    get_model(store, new_name).await
}

pub(crate) async fn update_model(
    store: &SqlStore,
    name: &str,
    description: Option<&str>,
    now: i64,
) -> Result<RegisteredModel> {
    let name_owned = name.to_owned();
    let description_owned = description.map(str::to_owned);
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let description = description_owned.as_deref();
                let id = model_id(&mut *tx, name).await?;
                if let Some(description) = description {
                    sqlx::query("UPDATE registered_models SET description = $1 WHERE id = $2")
                        .bind(description.to_owned())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("updating a registered model"))?;
                }
                touch_model(&mut *tx, id, now).await?;
                Ok(())
            })
        })
        .await?;
    get_model(store, name).await
}

pub(crate) async fn delete_model(store: &SqlStore, name: &str) -> Result<()> {
    let name_owned = name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let id = model_id(&mut *tx, name).await?;
                for table in [
                    "model_version_tags",
                    "model_version_content",
                    "model_versions",
                    "registered_model_aliases",
                    "registered_model_tags",
                ] {
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE model_id = $1"
                    )))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a registered model"))?;
                }
                sqlx::query("DELETE FROM registered_models WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a registered model"))?;
                // What belonged to the name goes with it, so a new model of the same name starts
                // with no policy, requests, alias history or permissions (the audit log keeps
                // the story).
                for statement in [
                    "DELETE FROM promotion_decisions WHERE request_id IN \
                     (SELECT id FROM promotion_requests WHERE model_name = $1)",
                    "DELETE FROM promotion_requests WHERE model_name = $1",
                    "DELETE FROM promotion_policies WHERE model_name = $1",
                    "DELETE FROM alias_history WHERE model_name = $1",
                    "DELETE FROM monitor_references WHERE model_name = $1",
                    "DELETE FROM gate_results WHERE model_name = $1",
                ] {
                    sqlx::query(AssertSqlSafe(statement))
                        .bind(name.to_owned())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("deleting a registered model's promotion records"))?;
                }
                crate::identity::delete_resource_grants(
                    &mut crate::conn::Tx::Any(tx),
                    "registered_model",
                    name,
                )
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn search_models(
    store: &SqlStore,
    query: &SearchQuery,
) -> Result<Page<RegisteredModel>> {
    let mut sql = store.sql(&format!("SELECT {MODEL_COLUMNS} FROM registered_models rm"));
    let order = filter::order_joins(&mut sql, Target::RegisteredModels, &query.order_by, false)?;
    sql.push(" WHERE 1 = 1");
    if let Some(expr) = &query.filter {
        sql.push(" AND ");
        filter::push_expr(&mut sql, Target::RegisteredModels, expr)?;
    }
    sql.push(" ORDER BY ");
    if !order.is_empty() {
        sql.push(&order).push(", ");
    }
    sql.push("rm.name ASC");
    push_limit(&mut sql, query);
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("searching registered models"))?;
    let rows = rows
        .iter()
        .map(model_from_row)
        .collect::<Result<Vec<_>>>()?;
    let page = Page::from_overfetch(rows, query.offset, query.max_results);
    Ok(Page {
        items: hydrate_models(store, page.items).await?,
        next_page_token: page.next_page_token,
    })
}

pub(crate) async fn latest_versions(
    store: &SqlStore,
    name: &str,
    stages: &[Stage],
) -> Result<Vec<ModelVersion>> {
    let model = get_model(store, name).await?;
    let mut versions: Vec<ModelVersion> = model
        .latest_versions
        .into_iter()
        .filter(|version| stages.is_empty() || stages.contains(&version.current_stage))
        .collect();
    versions.sort_by_key(|version| version.version);
    Ok(versions)
}

pub(crate) async fn set_model_tag(store: &SqlStore, name: &str, tag: &Tag) -> Result<()> {
    let name_owned = name.to_owned();
    let tag_owned = tag.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let tag = &tag_owned;
                let id = model_id(&mut *tx, name).await?;
                upsert_model_tag(&mut *tx, id, tag).await?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn delete_model_tag(store: &SqlStore, name: &str, key: &str) -> Result<()> {
    let name_owned = name.to_owned();
    let key_owned = key.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let key = key_owned.as_str();
                let id = model_id(&mut *tx, name).await?;
                delete_existing(
                    tx,
                    sqlx::query(
                        "DELETE FROM registered_model_tags WHERE model_id = $1 AND key = $2",
                    )
                    .bind(id)
                    .bind(key.to_owned()),
                    "deleting a registered model tag",
                    || {
                        Error::not_found(format!(
                            "No tag with key '{key}' found for registered model '{name}'"
                        ))
                    },
                )
                .await
            })
        })
        .await?;
    Ok(())
}

/// The version an alias points at now.
async fn alias_version(
    conn: &mut AnyConnection,
    model_id: i64,
    alias: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT version FROM registered_model_aliases WHERE model_id = $1 AND alias = $2",
    )
    .bind(model_id)
    .bind(alias.to_owned())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err("reading an alias"))?;
    row.map(|row| get_i64(&row, "version")).transpose()
}

async fn record_alias_change(
    conn: &mut AnyConnection,
    name: &str,
    alias: &str,
    version: Option<i64>,
    previous: Option<i64>,
    via: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO alias_history (model_name, alias, version, previous_version, changed_at, via) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(name.to_owned())
    .bind(alias.to_owned())
    .bind(version)
    .bind(previous)
    .bind(crate::now_ms())
    .bind(via.to_owned())
    .execute(&mut *conn)
    .await
    .map_err(db_err("recording an alias change"))?;
    Ok(())
}

/// Points `alias` at `version` inside a write transaction and records the move; `via` says
/// what moved it. Returns the version it pointed at before.
pub(crate) async fn set_alias_in(
    conn: &mut AnyConnection,
    name: &str,
    alias: &str,
    version: i64,
    via: &str,
) -> Result<Option<i64>> {
    let id = require_version(&mut *conn, name, version).await?;
    let previous = alias_version(&mut *conn, id, alias).await?;
    sqlx::query(
        "INSERT INTO registered_model_aliases (model_id, alias, version) VALUES ($1, $2, $3) \
         ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version",
    )
    .bind(id)
    .bind(alias.to_owned())
    .bind(version)
    .execute(&mut *conn)
    .await
    .map_err(db_err("setting an alias"))?;
    if previous != Some(version) {
        record_alias_change(conn, name, alias, Some(version), previous, via).await?;
    }
    Ok(previous)
}

pub(crate) async fn set_alias(
    store: &SqlStore,
    name: &str,
    alias: &str,
    version: i64,
) -> Result<()> {
    let name = name.to_owned();
    let alias = alias.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                set_alias_in(tx, &name, &alias, version, "set_alias").await?;
                Ok(())
            })
        })
        .await
}

pub(crate) async fn delete_alias(store: &SqlStore, name: &str, alias: &str) -> Result<()> {
    let name = name.to_owned();
    let alias = alias.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let id = model_id(&mut *tx, &name).await?;
                let previous = alias_version(&mut *tx, id, &alias).await?;
                sqlx::query(
                    "DELETE FROM registered_model_aliases WHERE model_id = $1 AND alias = $2",
                )
                .bind(id)
                .bind(alias.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err("deleting an alias"))?;
                if previous.is_some() {
                    record_alias_change(tx, &name, &alias, None, previous, "delete_alias").await?;
                }
                Ok(())
            })
        })
        .await
}

pub(crate) async fn version_by_alias(
    store: &SqlStore,
    name: &str,
    alias: &str,
) -> Result<ModelVersion> {
    let row = sqlx::query(
        "SELECT a.version FROM registered_model_aliases a JOIN registered_models rm ON rm.id = a.model_id \
         WHERE rm.name = $1 AND a.alias = $2",
    )
    .bind(name.to_owned())
    .bind(alias.to_owned())
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("resolving an alias"))?;
    match row {
        Some(row) => get_version(store, name, get_i64(&row, "version")?).await,
        None => {
            // Tell a missing model apart from a missing alias; MLflow answers the latter with 400.
            let mut conn = store
                .read
                .acquire()
                .await
                .map_err(db_err("acquiring a connection"))?;
            model_id(&mut conn, name).await?;
            Err(Error::invalid(format!(
                "Registered model alias {alias} not found."
            )))
        }
    }
}

pub(crate) async fn create_version(
    store: &SqlStore,
    new: NewModelVersion,
    now: i64,
) -> Result<ModelVersion> {
    let name = new.name.clone();
    let version = store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let id = model_id(&mut *tx, &new.name).await?;
                // The counter update takes the row lock (PostgreSQL) or the write lock (SQLite), so two
                // concurrent registrations never get the same number.
                let row = match new.version {
                    None => sqlx::query(
                        "UPDATE registered_models SET next_version = next_version + 1, last_updated_time = $1 \
                         WHERE id = $2 \
                         RETURNING next_version - 1 AS version",
                    )
                    .bind(now)
                    .bind(id),
                    // A number asked for takes the counter past it, and only a number the
                    // counter has not passed yet may be asked for.
                    Some(wanted) => sqlx::query(
                        "UPDATE registered_models SET next_version = $1 + 1, last_updated_time = $2 \
                         WHERE id = $3 AND next_version <= $1 \
                         RETURNING $1 AS version",
                    )
                    .bind(wanted)
                    .bind(now)
                    .bind(id),
                }
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("allocating a version number"))?;
                let Some(row) = row else {
                    return Err(Error::AlreadyExists(format!(
                        "version {} of '{}' exists or was used before: version numbers are never reused",
                        new.version.unwrap_or_default(),
                        new.name
                    )));
                };
                let version = get_i64(&row, "version")?;
                sqlx::query(
        "INSERT INTO model_versions (model_id, version, creation_time, last_updated_time, \
         description, user_id, \
         current_stage, source, run_id, run_link, status, status_message, logged_model_id) \
         VALUES ($1, $2, $3, $4, $5, $6, 'None', $7, $8, $9, 'READY', NULL, $10)",
    )
    .bind(id)
    .bind(version)
    .bind(now)
    .bind(now)
    .bind(new.description.clone())
    .bind(new.user_id.clone())
    .bind(new.source.clone())
    .bind(new.run_id.clone())
    .bind(new.run_link.clone())
    .bind(new.model_id.clone())
    .execute(&mut *tx)
    .await
    .map_err(db_err("creating a model version"))?;
                for tag in &new.tags {
                    upsert_version_tag(&mut *tx, id, version, tag).await?;
                }
                if let Some(content) = &new.content {
                    let manifest = serde_json::to_string(&content.manifest)
                        .map_err(|e| Error::internal("encoding a version's manifest", e))?;
                    sqlx::query(
                        "INSERT INTO model_version_content (model_id, version, storage_path, digest, manifest) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(version)
                    .bind(content.storage_path.clone())
                    .bind(content.manifest.digest())
                    .bind(manifest)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("recording a model version's content"))?;
                }
                Ok(version)
            })
        })
        .await?;
    get_version(store, &name, version).await
}

pub(crate) async fn upsert_version_tag(
    conn: &mut AnyConnection,
    id: i64,
    version: i64,
    tag: &Tag,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_version_tags (model_id, version, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (model_id, version, key) DO UPDATE SET value = excluded.value",
    )
    .bind(id)
    .bind(version)
    .bind(tag.key.clone())
    .bind(tag.value.clone())
    .execute(conn)
    .await
    .map_err(db_err("setting a model version tag"))?;
    Ok(())
}

pub(crate) async fn get_version(
    store: &SqlStore,
    name: &str,
    version: i64,
) -> Result<ModelVersion> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id \
         WHERE rm.name = $1 AND mv.version = $2"
    )))
    .bind(name.to_owned())
    .bind(version)
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading a model version"))?
    .ok_or_else(|| version_not_found(name, version))?;
    let mut versions = vec![version_from_row(&row)?];
    attach_version_details(store, &mut versions).await?;
    versions
        .pop()
        .map(|(_, version)| version)
        .ok_or_else(|| version_not_found(name, version))
}

pub(crate) async fn update_version(
    store: &SqlStore,
    name: &str,
    version: i64,
    description: Option<&str>,
    now: i64,
) -> Result<ModelVersion> {
    let name_owned = name.to_owned();
    let description_owned = description.map(str::to_owned);
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let description = description_owned.as_deref();
                let id = require_version(&mut *tx, name, version).await?;
                if let Some(description) = description {
                    sqlx::query("UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE model_id = $3 AND version = $4")
                        .bind(description.to_owned())
                        .bind(now)
                        .bind(id)
                        .bind(version)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("updating a model version"))?;
                }
                Ok(())
            })
        })
        .await?;
    get_version(store, name, version).await
}

/// Moves a version to `stage` inside a write transaction, archiving the others in that stage
/// when asked, as MLflow does.
pub(crate) async fn transition_in(
    conn: &mut AnyConnection,
    name: &str,
    version: i64,
    stage: Stage,
    archive_existing_versions: bool,
    now: i64,
) -> Result<()> {
    let id = require_version(&mut *conn, name, version).await?;
    if archive_existing_versions && matches!(stage, Stage::Staging | Stage::Production) {
        sqlx::query(
            "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1 \
             WHERE model_id = $2 AND version <> $3 AND current_stage = $4",
        )
        .bind(now)
        .bind(id)
        .bind(version)
        .bind(stage.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_err("archiving model versions"))?;
    }
    sqlx::query(
        "UPDATE model_versions SET current_stage = $1, last_updated_time = $2 \
         WHERE model_id = $3 AND version = $4",
    )
    .bind(stage.as_str())
    .bind(now)
    .bind(id)
    .bind(version)
    .execute(&mut *conn)
    .await
    .map_err(db_err("transitioning a model version"))?;
    touch_model(conn, id, now).await
}

pub(crate) async fn transition_stage(
    store: &SqlStore,
    name: &str,
    version: i64,
    stage: Stage,
    archive_existing_versions: bool,
    now: i64,
) -> Result<ModelVersion> {
    let name_owned = name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                transition_in(
                    tx,
                    &name_owned,
                    version,
                    stage,
                    archive_existing_versions,
                    now,
                )
                .await
            })
        })
        .await?;
    get_version(store, name, version).await
}

pub(crate) async fn delete_version(store: &SqlStore, name: &str, version: i64) -> Result<()> {
    let name_owned = name.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let id = require_version(&mut *tx, name, version).await?;
                // The aliases go with the version; their history says so.
                let aliases = sqlx::query(
                    "SELECT alias FROM registered_model_aliases WHERE model_id = $1 AND version = $2",
                )
                .bind(id)
                .bind(version)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("reading a version's aliases"))?;
                for row in &aliases {
                    let alias = get_str(row, "alias")?;
                    record_alias_change(tx, name, &alias, None, Some(version), "delete_version")
                        .await?;
                }
                for table in [
                    "model_version_tags",
                    "model_version_content",
                    "registered_model_aliases",
                    "model_versions",
                ] {
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE model_id = $1 AND version = $2"
                    )))
                    .bind(id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a model version"))?;
                }
                // A later version of the same number never exists (numbers are not reused), but
                // a reference of a deleted version must not outlive it.
                sqlx::query("DELETE FROM monitor_references WHERE model_name = $1 AND version = $2")
                    .bind(name.to_owned())
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a model version's monitoring reference"))?;
                sqlx::query("DELETE FROM gate_results WHERE model_name = $1 AND version = $2")
                    .bind(name.to_owned())
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting a model version's gate results"))?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn search_versions(
    store: &SqlStore,
    query: &SearchQuery,
) -> Result<Page<ModelVersion>> {
    let mut sql = store.sql(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id"
    ));
    let order = filter::order_joins(&mut sql, Target::ModelVersions, &query.order_by, false)?;
    sql.push(" WHERE 1 = 1");
    if let Some(expr) = &query.filter {
        sql.push(" AND ");
        filter::push_expr(&mut sql, Target::ModelVersions, expr)?;
    }
    sql.push(" ORDER BY ");
    if !order.is_empty() {
        sql.push(&order).push(", ");
    }
    sql.push("rm.name ASC, mv.version DESC");
    push_limit(&mut sql, query);
    let rows = sql
        .query()
        .fetch_all(&store.read)
        .await
        .map_err(db_err("searching model versions"))?;
    let versions = rows
        .iter()
        .map(version_from_row)
        .collect::<Result<Vec<_>>>()?;
    let mut page = Page::from_overfetch(versions, query.offset, query.max_results);
    attach_version_details(store, &mut page.items).await?;
    Ok(Page {
        items: page.items.into_iter().map(|(_, version)| version).collect(),
        next_page_token: page.next_page_token,
    })
}

pub(crate) async fn set_version_tag(
    store: &SqlStore,
    name: &str,
    version: i64,
    tag: &Tag,
) -> Result<()> {
    let name_owned = name.to_owned();
    let tag_owned = tag.clone();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let tag = &tag_owned;
                let id = require_version(&mut *tx, name, version).await?;
                upsert_version_tag(&mut *tx, id, version, tag).await?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub(crate) async fn delete_version_tag(
    store: &SqlStore,
    name: &str,
    version: i64,
    key: &str,
) -> Result<()> {
    let name_owned = name.to_owned();
    let key_owned = key.to_owned();
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let name = name_owned.as_str();
                let key = key_owned.as_str();
                let id = require_version(&mut *tx, name, version).await?;
                delete_existing(
        tx,
        sqlx::query(
            "DELETE FROM model_version_tags WHERE model_id = $1 AND version = $2 AND key = $3",
        )
        .bind(id)
        .bind(version)
        .bind(key.to_owned()),
        "deleting a model version tag",
        || {
            Error::not_found(format!(
                "No tag with key '{key}' found for model version \
                 (name={name}, version={version})"
            ))
        },
    )
    .await
            })
        })
        .await?;
    Ok(())
}

/// The files a version had when it was registered, if they are in slipway's artifact store.
pub(crate) async fn version_content(
    store: &SqlStore,
    name: &str,
    version: i64,
) -> Result<Option<VersionContent>> {
    let row = sqlx::query(
        "SELECT c.storage_path, c.manifest FROM model_version_content c \
         JOIN registered_models m ON m.id = c.model_id WHERE m.name = $1 AND c.version = $2",
    )
    .bind(name.to_owned())
    .bind(version)
    .fetch_optional(&store.read)
    .await
    .map_err(db_err("reading a model version's content"))?;
    row.map(|row| {
        Ok(VersionContent {
            storage_path: get_str(&row, "storage_path")?,
            manifest: serde_json::from_str(&get_str(&row, "manifest")?)
                .map_err(|e| Error::internal("decoding a version's manifest", e))?,
        })
    })
    .transpose()
}

/// A registered version whose files are at, under or above `path` in the artifact store (so
/// that writing or deleting there would change them): its model name and number.
pub(crate) async fn version_holding_path(
    store: &SqlStore,
    path: &str,
) -> Result<Option<(String, i64)>> {
    // A version's folder is `path` itself or one of its ancestors: at most one lookup per
    // segment, each an index probe. A folder below `path` (deleting a parent) is a range of
    // the same index: '0' is the character after '/'.
    let mut ancestors: Vec<String> = Vec::new();
    let mut end = 0;
    for segment in path.split('/') {
        end += segment.len();
        ancestors.push(path[..end].to_owned());
        end += 1;
    }
    let mut sql = crate::sql::Sql::new(
        store.backend,
        "SELECT m.name, c.version FROM model_version_content c \
         JOIN registered_models m ON m.id = c.model_id WHERE c.storage_path IN (",
    );
    for (index, ancestor) in ancestors.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(ancestor.clone());
    }
    sql.push(") OR (c.storage_path > ");
    sql.bind(format!("{path}/"));
    sql.push(" AND c.storage_path < ");
    sql.bind(format!("{path}0"));
    sql.push(") LIMIT 1");
    let row = sql
        .query()
        .fetch_optional(&store.read)
        .await
        .map_err(db_err("looking for a registered version's files"))?;
    row.map(|row| Ok((get_str(&row, "name")?, get_i64(&row, "version")?)))
        .transpose()
}
