//! The metadata store: `MetadataStore` over SQLite (the embedded default) and PostgreSQL, one
//! code path through sqlx's `Any` driver so both backends behave the same.
//!
//! Module map:
//! - [`uri`]: MLflow-style backend URIs (`sqlite:///file.db`, `postgresql://...`).
//! - `sql`: a `$N` query builder and row decoding helpers.
//! - `filter`: search AST -> SQL `WHERE` / `ORDER BY`.
//! - `experiments`, `runs`, `logged_models`, `registry`: the port's methods, by area.
//!
//! Writes: SQLite allows one writer at a time, so the store keeps a separate pool with a single
//! connection for writes and queues writers in-process instead of letting them fight over the
//! file lock ("database is locked"); reads use a pool of WAL readers. PostgreSQL uses one pool.

mod alerts;
mod audit;
pub mod backup;
mod chunks;
mod cluster;
mod conn;
mod deployments;
mod documents;
mod experiments;
mod filter;
mod gates;
mod identity;
mod keys;
mod logged_models;
pub mod mlflow;
mod monitoring;
mod promotions;
mod registry;
mod retrains;
mod runs;
#[doc(hidden)]
pub use runs::set_sort_in_memory_runs;
mod serving;
mod sql;
pub mod uri;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slipway_core::audit::{AuditEvent, AuditRecord};
use slipway_core::auth::{
    Grant, Resource, Role, TokenCredentials, TokenInfo, User, UserCredentials,
};
use slipway_core::deployment::{Deployment, DeploymentEvent, NewDeploymentEvent, PredictionRecord};
use slipway_core::logged_model::{LoggedModel, LoggedModelStatus, NewLoggedModel};
use slipway_core::monitoring::{MonitorReference, MonitorWindow};
use slipway_core::paging::Page;
use slipway_core::ports::{
    ArtifactLocation, AuditFilter, HistoryCursor, HistoryPage, MetadataStore, SearchQuery,
};
use slipway_core::promotion::{
    AliasChange, Decision, NewPromotionRequest, PromotionPolicy, PromotionRequest, RequestState,
};
use slipway_core::registry::{ModelVersion, NewModelVersion, RegisteredModel, Stage};
use slipway_core::tracking::{
    Batch, DatasetInput, Experiment, ExperimentId, ModelOutput, NewRun, Run, RunId, RunInfo,
    RunUpdate, Tag,
};
use slipway_core::{Error, Result};

use crate::experiments::ensure_default_experiment;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use uri::BackendUri;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The newest schema migration this build knows for `backend`: a backup of a newer schema
/// cannot be restored by it.
pub fn schema_version(backend: Backend) -> i64 {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Tuning that a deployment may want to change; the defaults suit a laptop.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Read connections (SQLite) or all connections (PostgreSQL).
    pub max_connections: u32,
    /// How long a request waits for a connection before failing.
    pub acquire_timeout: Duration,
    /// Make a new store when there is none: the SQLite file (and its folder) and the schema in
    /// an empty database. The server does; the admin commands open an existing store only, so
    /// a mistyped path fails instead of quietly filling a new, empty database.
    pub create_if_missing: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            create_if_missing: true,
        }
    }
}

/// The SQL implementation of [`MetadataStore`].
#[derive(Clone)]
pub struct SqlStore {
    backend: Backend,
    /// Readers. On PostgreSQL also the writers.
    read: AnyPool,
    /// Schema setup; afterwards, on SQLite, the source of the writer's one connection.
    write: AnyPool,
    /// Every mutation goes through here: grouped commits on SQLite, pooled on PostgreSQL; with
    /// an audit entry when this handle came from `audited`.
    writer: writer::AuditedWriter,
}

/// SQLite settings applied to every connection. WAL lets readers run beside the writer;
/// `synchronous = FULL` makes an acknowledged commit survive power loss, not only a process
/// crash; `case_sensitive_like` gives LIKE MLflow's (and PostgreSQL's) case-sensitive meaning.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; \
    PRAGMA synchronous = FULL; \
    PRAGMA case_sensitive_like = ON; \
    PRAGMA foreign_keys = OFF; \
    PRAGMA temp_store = MEMORY; \
    PRAGMA cache_size = -32000; \
    PRAGMA mmap_size = 268435456;";

/// The SQLite writer thread's synchronous connection, set up like sqlx's connections.
fn open_lite_writer(path: &std::path::Path) -> Result<rusqlite::Connection> {
    let lite = rusqlite::Connection::open(path)
        .map_err(|e| Error::internal(format!("opening {} for writing", path.display()), e))?;
    lite.execute_batch(SQLITE_PRAGMAS)
        .map_err(|e| Error::internal("configuring the SQLite write connection", e))?;
    // Batches of different sizes are different statement texts; keep the common ones prepared.
    lite.set_prepared_statement_cache_capacity(64);
    Ok(lite)
}

impl SqlStore {
    /// Connects, creates or migrates the schema, and makes sure the `Default` experiment exists.
    /// Refuses a database whose schema is newer than this binary knows.
    pub async fn open(uri: &BackendUri, options: StoreOptions) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let (backend, url) = match uri {
            BackendUri::Sqlite(path) => {
                if !options.create_if_missing && !path.is_file() {
                    return Err(Error::not_found(format!(
                        "there is no metadata store at {} (no such file)",
                        uri.redacted()
                    )));
                }
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::internal(format!("creating folder {}", parent.display()), e)
                    })?;
                }
                (
                    Backend::Sqlite,
                    format!("sqlite://{}?mode=rwc", path.display()),
                )
            }
            BackendUri::Postgres(url) => (Backend::Postgres, url.clone()),
        };
        let connect_options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()
            .map_err(|e| Error::internal(format!("parsing backend URI {}", uri.redacted()), e))?
            .disable_statement_logging();

        let pool_options = |max: u32| {
            let pool = AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(if max == 1 { 1 } else { 0 })
                .acquire_timeout(options.acquire_timeout)
                // A ping before every checkout is a round trip to the connection's worker
                // thread per query; a local SQLite file has no network to go stale.
                .test_before_acquire(backend == Backend::Postgres);
            if backend == Backend::Sqlite {
                pool.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
            } else {
                pool
            }
        };

        let write = pool_options(if backend == Backend::Sqlite {
            1
        } else {
            options.max_connections
        })
        .connect_with(connect_options.clone())
        .await
        .map_err(|e| connect_error(uri, e))?;
        if backend == Backend::Sqlite {
            // WAL is a property of the file; set it once, before any reader opens.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&write)
                .await
                .map_err(|e| Error::internal("enabling SQLite WAL mode", e))?;
        }

        if !options.create_if_missing && !has_schema(&write, backend).await? {
            return Err(Error::not_found(format!(
                "the database {} has no slipway schema: it is not a slipway metadata store",
                uri.redacted()
            )));
        }

        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&write).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => Error::internal_msg(format!(
                "the database at {} has schema migration {version}, which this slipway binary does not know: it was written by a newer slipway; upgrade slipway instead of downgrading the schema",
                uri.redacted()
            )),
            other => Error::internal("migrating the schema", other),
        })?;

        let read = if backend == Backend::Sqlite {
            pool_options(options.max_connections)
                .connect_with(connect_options)
                .await
                .map_err(|e| connect_error(uri, e))?
        } else {
            write.clone()
        };

        ensure_default_experiment(&write).await?;
        let writer = match (backend, uri) {
            (Backend::Sqlite, BackendUri::Sqlite(path)) => {
                let connection = write
                    .acquire()
                    .await
                    .map_err(|e| Error::internal("opening the SQLite write connection", e))?;
                // Detached: the writer thread owns it for the store's lifetime, and closing the
                // pool must not wait for it.
                writer::Writer::grouped(connection.detach(), open_lite_writer(path)?)?
            }
            _ => {
                spawn_statistics_refresher(write.clone());
                writer::Writer::Pooled(write.clone())
            }
        };
        Ok(SqlStore {
            backend,
            read,
            write,
            writer: writer::AuditedWriter::new(writer),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A query builder with this backend's placeholder style.
    pub(crate) fn sql(&self, text: &str) -> sql::Sql {
        sql::Sql::new(self.backend, text)
    }

    /// The newest migration this binary knows, for `/version` and diagnostics.
    pub fn schema_version() -> i64 {
        SQLITE_MIGRATIONS
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0)
    }

    /// Closes both pools, letting in-flight queries finish; call on shutdown.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// A failed connection. A PostgreSQL database that does not exist is the caller's mistake, said
/// once with what to do; sqlx's own error would print the server's message twice (its text and
/// its source).
fn connect_error(uri: &BackendUri, error: sqlx::Error) -> Error {
    let missing_database = error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "3D000");
    if missing_database {
        let name = match uri {
            BackendUri::Postgres(url) => url
                .rsplit('/')
                .next()
                .and_then(|last| last.split('?').next())
                .unwrap_or_default()
                .to_owned(),
            BackendUri::Sqlite(path) => path.display().to_string(),
        };
        return Error::not_found(format!(
            "the PostgreSQL database '{name}' does not exist on {} (create it with `createdb {name}`)",
            uri.redacted()
        ));
    }
    match error {
        sqlx::Error::Database(db) => Error::internal_msg(format!("connecting: {}", db.message())),
        other => Error::internal("connecting", other),
    }
}

/// Whether slipway's migrations ever ran on this database.
async fn has_schema(pool: &AnyPool, backend: Backend) -> Result<bool> {
    let query = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
        }
    };
    let (count,): (i64,) = sqlx::query_as(query)
        .fetch_one(pool)
        .await
        .map_err(|e| Error::internal("looking for slipway's schema", e))?;
    Ok(count > 0)
}

/// Tables whose statistics the PostgreSQL planner needs to pick index plans for search.
const ANALYZED_TABLES: &[&str] = &[
    "experiments",
    "runs",
    "params",
    "tags",
    "latest_metrics",
    "registered_models",
    "model_versions",
];

/// How often the PostgreSQL statistics check runs.
const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps PostgreSQL's planner statistics fresh. Without them (a table filled in the last minute,
/// before autovacuum's next round) the planner estimates one row everywhere and can pick a plan
/// a hundred times slower for search (measured: 355 ms instead of 5 ms on 2,000 runs). Every few
/// seconds, tables changed by more than a tenth since their last analyze are analyzed.
fn spawn_statistics_refresher(pool: AnyPool) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(STATISTICS_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(error) = refresh_statistics(&pool).await {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(error = %error, "refreshing PostgreSQL statistics failed; will retry");
            }
        }
    });
}

async fn refresh_statistics(pool: &AnyPool) -> Result<()> {
    let mut sql = sql::Sql::new(
        Backend::Postgres,
        "SELECT relname::text AS relname FROM pg_stat_user_tables \
         WHERE n_mod_since_analyze > 500 + n_live_tup / 10 AND relname::text IN ",
    );
    sql.bind_list(ANALYZED_TABLES.iter().copied());
    let rows = sql
        .query()
        .fetch_all(pool)
        .await
        .map_err(sql::db_err("reading table statistics"))?;
    for row in rows {
        let name = sql::get_str(&row, "relname")?;
        // Only names from the fixed list above reach the statement.
        if let Some(table) = ANALYZED_TABLES.iter().find(|table| **table == name) {
            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
                .execute(pool)
                .await
                .map_err(sql::db_err("analyzing a table"))?;
        }
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl MetadataStore for SqlStore {
    fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }

    async fn create_experiment(
        &self,
        name: &str,
        artifact_location: ArtifactLocation,
        tags: &[Tag],
        now_ms: i64,
    ) -> Result<ExperimentId> {
        experiments::create(self, name, artifact_location, tags, now_ms).await
    }
    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        experiments::get(self, id).await
    }
    async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        experiments::get_by_name(self, name).await
    }
    async fn search_experiments(&self, query: &SearchQuery) -> Result<Page<Experiment>> {
        experiments::search(self, query).await
    }
    async fn delete_experiment(&self, id: ExperimentId, now_ms: i64) -> Result<()> {
        experiments::set_lifecycle(self, id, true, now_ms).await
    }
    async fn restore_experiment(&self, id: ExperimentId, now_ms: i64) -> Result<()> {
        experiments::set_lifecycle(self, id, false, now_ms).await
    }
    async fn rename_experiment(&self, id: ExperimentId, new_name: &str, now_ms: i64) -> Result<()> {
        experiments::rename(self, id, new_name, now_ms).await
    }
    async fn set_experiment_tag(&self, id: ExperimentId, tag: &Tag) -> Result<()> {
        experiments::set_tag(self, id, tag).await
    }
    async fn delete_experiment_tag(&self, id: ExperimentId, key: &str) -> Result<()> {
        experiments::delete_tag(self, id, key).await
    }

    async fn create_run(&self, run: NewRun) -> Result<Run> {
        runs::create(self, run).await
    }
    async fn get_run(&self, run_id: &RunId) -> Result<Run> {
        runs::get(self, run_id).await
    }
    async fn update_run(&self, run_id: &RunId, update: RunUpdate) -> Result<RunInfo> {
        runs::update(self, run_id, update).await
    }
    async fn delete_run(&self, run_id: &RunId, now_ms: i64) -> Result<()> {
        runs::set_lifecycle(self, run_id, Some(now_ms)).await
    }
    async fn restore_run(&self, run_id: &RunId) -> Result<()> {
        runs::set_lifecycle(self, run_id, None).await
    }
    async fn log_batch(&self, run_id: &RunId, batch: Batch) -> Result<()> {
        runs::log_batch(self, run_id, batch).await
    }
    async fn delete_run_tag(&self, run_id: &RunId, key: &str) -> Result<()> {
        runs::delete_tag(self, run_id, key).await
    }
    async fn get_metric_history(
        &self,
        run_id: &RunId,
        key: &str,
        cursor: HistoryCursor,
        max_results: usize,
    ) -> Result<Option<HistoryPage>> {
        runs::metric_history(self, run_id, key, cursor, max_results).await
    }
    async fn search_runs(
        &self,
        experiment_ids: &[ExperimentId],
        query: &SearchQuery,
    ) -> Result<Page<Run>> {
        runs::search(self, experiment_ids, query).await
    }
    async fn log_inputs(
        &self,
        run_id: &RunId,
        datasets: Vec<DatasetInput>,
        model_ids: Vec<String>,
    ) -> Result<()> {
        runs::log_inputs(self, run_id, datasets, model_ids).await
    }
    async fn log_outputs(&self, run_id: &RunId, models: Vec<ModelOutput>) -> Result<()> {
        runs::log_outputs(self, run_id, models).await
    }

    async fn create_logged_model(
        &self,
        model: NewLoggedModel,
        artifact_root: &str,
        now_ms: i64,
    ) -> Result<LoggedModel> {
        logged_models::create(self, model, artifact_root, now_ms).await
    }
    async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        logged_models::get(self, model_id).await
    }
    async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
        now_ms: i64,
    ) -> Result<LoggedModel> {
        logged_models::finalize(self, model_id, status, now_ms).await
    }
    async fn delete_logged_model(&self, model_id: &str, now_ms: i64) -> Result<()> {
        logged_models::delete(self, model_id, now_ms).await
    }
    async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[Tag],
        now_ms: i64,
    ) -> Result<LoggedModel> {
        logged_models::set_tags(self, model_id, tags, now_ms).await
    }
    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        logged_models::delete_tag(self, model_id, key).await
    }
    async fn log_logged_model_params(&self, model_id: &str, params: &[Tag]) -> Result<()> {
        logged_models::log_params(self, model_id, params).await
    }
    async fn search_logged_models(
        &self,
        experiment_ids: &[ExperimentId],
        query: &SearchQuery,
    ) -> Result<Page<LoggedModel>> {
        logged_models::search(self, experiment_ids, query).await
    }

    async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
        now_ms: i64,
    ) -> Result<RegisteredModel> {
        registry::create_model(self, name, description, tags, now_ms).await
    }
    async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        registry::get_model(self, name).await
    }
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now_ms: i64,
    ) -> Result<RegisteredModel> {
        registry::rename_model(self, name, new_name, now_ms).await
    }
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<RegisteredModel> {
        registry::update_model(self, name, description, now_ms).await
    }
    async fn delete_registered_model(&self, name: &str) -> Result<()> {
        registry::delete_model(self, name).await
    }
    async fn search_registered_models(&self, query: &SearchQuery) -> Result<Page<RegisteredModel>> {
        registry::search_models(self, query).await
    }
    async fn get_latest_versions(&self, name: &str, stages: &[Stage]) -> Result<Vec<ModelVersion>> {
        registry::latest_versions(self, name, stages).await
    }
    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> Result<()> {
        registry::set_model_tag(self, name, tag).await
    }
    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()> {
        registry::delete_model_tag(self, name, key).await
    }
    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()> {
        registry::set_alias(self, name, alias, version).await
    }
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        registry::delete_alias(self, name, alias).await
    }
    async fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        registry::version_by_alias(self, name, alias).await
    }

    async fn create_model_version(
        &self,
        version: NewModelVersion,
        now_ms: i64,
    ) -> Result<ModelVersion> {
        registry::create_version(self, version, now_ms).await
    }
    async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        registry::get_version(self, name, version).await
    }
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<ModelVersion> {
        registry::update_version(self, name, version, description, now_ms).await
    }
    async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing_versions: bool,
        now_ms: i64,
    ) -> Result<ModelVersion> {
        registry::transition_stage(
            self,
            name,
            version,
            stage,
            archive_existing_versions,
            now_ms,
        )
        .await
    }
    async fn delete_model_version(&self, name: &str, version: i64) -> Result<()> {
        registry::delete_version(self, name, version).await
    }
    async fn search_model_versions(&self, query: &SearchQuery) -> Result<Page<ModelVersion>> {
        registry::search_versions(self, query).await
    }
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> Result<()> {
        registry::set_version_tag(self, name, version, tag).await
    }
    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()> {
        registry::delete_version_tag(self, name, version, key).await
    }

    async fn create_user(&self, user: User, password_hash: Option<String>) -> Result<()> {
        identity::create_user(self, user, password_hash).await
    }

    async fn get_user_credentials(&self, name: &str) -> Result<UserCredentials> {
        identity::get_user_credentials(self, name).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        identity::list_users(self).await
    }

    async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        password_hash: Option<String>,
        now_ms: i64,
    ) -> Result<User> {
        identity::update_user(self, name, role, password_hash, now_ms).await
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        identity::delete_user(self, name).await
    }

    async fn create_token(&self, token: TokenInfo, secret_hash: String) -> Result<()> {
        identity::create_token(self, token, secret_hash).await
    }

    async fn get_token_credentials(&self, id: &str) -> Result<TokenCredentials> {
        identity::get_token_credentials(self, id).await
    }

    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenInfo>> {
        identity::list_tokens(self, user_name).await
    }

    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<TokenInfo> {
        identity::revoke_token(self, id, now_ms).await
    }

    async fn set_grant(&self, grant: Grant) -> Result<()> {
        identity::set_grant(self, grant).await
    }

    async fn delete_grant(&self, user_name: &str, resource: &Resource) -> Result<()> {
        identity::delete_grant(self, user_name, resource).await
    }

    async fn list_grants(&self, user_name: Option<&str>) -> Result<Vec<Grant>> {
        identity::list_grants(self, user_name).await
    }

    async fn identity_generation(&self) -> Result<i64> {
        identity::generation(self).await
    }

    fn audited(&self, event: AuditEvent) -> Arc<dyn MetadataStore> {
        Arc::new(SqlStore {
            writer: self.writer.with_audit(event),
            ..self.clone()
        })
    }

    async fn append_audit(&self, event: AuditEvent) -> Result<AuditRecord> {
        audit::append_alone(self, event).await
    }

    async fn set_policy(&self, policy: PromotionPolicy) -> Result<()> {
        promotions::set_policy(self, policy).await
    }

    async fn get_trigger_config(
        &self,
    ) -> Result<Option<slipway_core::retrain::StoredTriggerConfig>> {
        retrains::get_config(self).await
    }

    async fn put_trigger_config(
        &self,
        config: slipway_core::retrain::TriggerConfig,
        expected: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<slipway_core::retrain::StoredTriggerConfig> {
        retrains::put_config(self, config, expected, by.to_owned(), now_ms).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<slipway_core::cluster::Lease> {
        cluster::acquire_lease(self, name.to_owned(), holder.to_owned(), ttl_ms).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        cluster::release_lease(self, name.to_owned(), holder.to_owned()).await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<slipway_core::cluster::Lease>> {
        cluster::get_lease(self, name).await
    }

    async fn queue_report(
        &self,
        deployment: &str,
        source: &str,
        body: String,
        now_ms: i64,
    ) -> Result<()> {
        cluster::queue_report(self, deployment.to_owned(), source.to_owned(), body, now_ms).await
    }

    async fn has_queued_reports(&self) -> Result<bool> {
        cluster::has_queued_reports(self).await
    }

    async fn take_queued_reports(
        &self,
        limit: usize,
    ) -> Result<Vec<slipway_core::cluster::QueuedReport>> {
        cluster::take_queued_reports(self, limit).await
    }

    async fn generations(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        cluster::generations(self).await
    }

    async fn add_serving_minutes(
        &self,
        minutes: Vec<(String, i64, slipway_core::deployment::ServingStats)>,
    ) -> Result<()> {
        serving::add(self, minutes).await
    }

    async fn serving_minutes(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, slipway_core::deployment::ServingStats)>> {
        serving::read(self, deployment, from_ms, to_ms).await
    }

    async fn serving_totals(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<slipway_core::deployment::ServingTotals>> {
        serving::totals(self, from_ms, to_ms).await
    }

    async fn expire_serving_minutes(&self, before_ms: i64) -> Result<u64> {
        serving::expire(self, before_ms).await
    }

    async fn get_applied_state(&self) -> Result<Option<slipway_core::state::StoredAppliedState>> {
        documents::get(self, "applied_state", "reading the applied state").await
    }

    async fn put_applied_state(
        &self,
        state: slipway_core::state::AppliedState,
        expected: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<slipway_core::state::StoredAppliedState> {
        documents::put(
            self,
            "applied_state",
            "applied state",
            state,
            expected,
            by.to_owned(),
            now_ms,
        )
        .await
    }

    async fn put_data_key(&self, key: slipway_core::keys::DataKey) -> Result<()> {
        keys::put(self, key).await
    }

    async fn list_data_keys(&self) -> Result<Vec<slipway_core::keys::DataKey>> {
        keys::list(self).await
    }

    async fn rewrap_data_keys(&self, keys: Vec<slipway_core::keys::DataKey>) -> Result<()> {
        keys::rewrap(self, keys).await
    }

    async fn start_retrain(
        &self,
        trigger: slipway_core::retrain::Trigger,
        cause: slipway_core::retrain::Cause,
        by: &str,
        now_ms: i64,
    ) -> Result<slipway_core::retrain::Retrain> {
        retrains::start(self, trigger, cause, by.to_owned(), now_ms).await
    }

    async fn get_retrain(&self, id: i64) -> Result<slipway_core::retrain::Retrain> {
        retrains::get(self, id).await
    }

    async fn claim_retrain(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<slipway_core::retrain::Retrain>> {
        retrains::claim(self, worker.to_owned(), now_ms, lease_until_ms).await
    }

    async fn progress_retrain(
        &self,
        id: i64,
        worker: &str,
        update: slipway_core::retrain::RetrainProgress,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<slipway_core::retrain::Retrain> {
        retrains::progress(self, id, worker.to_owned(), update, now_ms, lease_until_ms).await
    }

    async fn expire_retrains(&self, now_ms: i64) -> Result<Vec<slipway_core::retrain::Retrain>> {
        retrains::expire(self, now_ms).await
    }

    async fn list_retrains(
        &self,
        trigger: Option<&str>,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<slipway_core::retrain::Retrain>> {
        retrains::list(self, trigger, model, limit).await
    }

    async fn put_gate(
        &self,
        record: slipway_core::gate::NewGateRecord,
    ) -> Result<slipway_core::gate::GateRecord> {
        gates::put_gate(self, record).await
    }

    async fn get_gate(&self, id: i64) -> Result<slipway_core::gate::GateRecord> {
        gates::get_gate(self, id).await
    }

    async fn list_gates(
        &self,
        model_name: &str,
        version: Option<i64>,
        limit: usize,
    ) -> Result<Vec<slipway_core::gate::GateRecord>> {
        gates::list_gates(self, model_name, version, limit).await
    }

    async fn get_policy(&self, model_name: &str) -> Result<Option<PromotionPolicy>> {
        promotions::get_policy(self, model_name).await
    }

    async fn delete_policy(&self, model_name: &str) -> Result<()> {
        promotions::delete_policy(self, model_name).await
    }

    async fn create_promotion_request(
        &self,
        request: NewPromotionRequest,
    ) -> Result<PromotionRequest> {
        promotions::create_request(self, request).await
    }

    async fn get_promotion_request(&self, id: i64) -> Result<PromotionRequest> {
        promotions::get_request(self, id).await
    }

    async fn list_promotion_requests(
        &self,
        model_name: Option<&str>,
        state: Option<RequestState>,
    ) -> Result<Vec<PromotionRequest>> {
        promotions::list_requests(self, model_name, state).await
    }

    async fn decide_promotion(
        &self,
        id: i64,
        decision: Decision,
        required_approvals: u32,
    ) -> Result<PromotionRequest> {
        promotions::decide(self, id, decision, required_approvals).await
    }

    async fn alias_history(
        &self,
        model_name: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasChange>> {
        promotions::alias_history(self, model_name, alias).await
    }

    async fn rollback_alias(&self, model_name: &str, alias: &str) -> Result<AliasChange> {
        promotions::rollback_alias(self, model_name, alias).await
    }

    async fn create_deployment(
        &self,
        deployment: Deployment,
        event: NewDeploymentEvent,
    ) -> Result<Deployment> {
        deployments::create(self, deployment, event).await
    }

    async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        deployments::get(self, name).await
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        deployments::list(self).await
    }

    async fn update_deployment(
        &self,
        deployment: Deployment,
        events: Vec<NewDeploymentEvent>,
    ) -> Result<Deployment> {
        deployments::update(self, deployment, events).await
    }

    async fn append_deployment_events(
        &self,
        name: &str,
        events: Vec<NewDeploymentEvent>,
    ) -> Result<()> {
        deployments::append(self, name, events).await
    }

    async fn delete_deployment(&self, name: &str, event: NewDeploymentEvent) -> Result<()> {
        deployments::delete(self, name, event).await
    }

    async fn deployment_events(
        &self,
        name: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<DeploymentEvent>> {
        deployments::events(self, name, after_seq, limit).await
    }

    async fn recent_deployment_events(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<DeploymentEvent>> {
        deployments::recent_events(self, name, limit).await
    }

    async fn model_version_content(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<slipway_core::registry::VersionContent>> {
        registry::version_content(self, name, version).await
    }

    async fn version_holding_path(&self, path: &str) -> Result<Option<(String, i64)>> {
        registry::version_holding_path(self, path).await
    }

    async fn last_deployment_event(
        &self,
        name: &str,
        kind: &str,
    ) -> Result<Option<DeploymentEvent>> {
        deployments::last_event(self, name, kind).await
    }

    async fn append_predictions(&self, records: Vec<PredictionRecord>) -> Result<()> {
        deployments::append_predictions(self, records).await
    }

    async fn read_predictions(
        &self,
        deployment: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PredictionRecord>> {
        deployments::read_predictions(self, deployment, after_id, limit).await
    }

    async fn expired_counts(
        &self,
        deployment: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<(u64, u64)> {
        deployments::expired_counts(self, deployment, before_ms, limit).await
    }

    async fn expire_predictions(
        &self,
        deployment: &str,
        before_ms: i64,
        limits: (u64, u64),
    ) -> Result<(u64, u64)> {
        deployments::expire_predictions(self, deployment.to_owned(), before_ms, limits).await
    }

    async fn put_labels(
        &self,
        deployment: &str,
        labels: Vec<(String, serde_json::Value)>,
        time_ms: i64,
    ) -> Result<u64> {
        deployments::put_labels(self, deployment, labels, time_ms).await
    }

    async fn predictions_with_labels(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(PredictionRecord, Option<serde_json::Value>)>> {
        deployments::predictions_with_labels(self, deployment, from_ms, to_ms, after_id, limit)
            .await
    }

    async fn put_monitor_reference(&self, reference: MonitorReference) -> Result<()> {
        monitoring::put_reference(self, reference).await
    }

    async fn get_monitor_reference(
        &self,
        model_name: &str,
        version: i64,
    ) -> Result<Option<MonitorReference>> {
        monitoring::get_reference(self, model_name, version).await
    }

    async fn append_monitor_window(&self, window: MonitorWindow) -> Result<i64> {
        monitoring::append_window(self, window).await
    }

    async fn monitor_windows(
        &self,
        deployment: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<MonitorWindow>> {
        monitoring::windows(self, deployment, before_id, limit).await
    }

    async fn get_alert_config(&self) -> Result<Option<slipway_core::alerting::StoredAlertConfig>> {
        alerts::get_config(self).await
    }

    async fn put_alert_config(
        &self,
        config: slipway_core::alerting::AlertConfig,
        expected_revision: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<slipway_core::alerting::StoredAlertConfig> {
        alerts::put_config(self, config, expected_revision, by.to_owned(), now_ms).await
    }

    async fn save_alert(&self, alert: slipway_core::alerting::Alert) -> Result<i64> {
        alerts::save_alert(self, alert).await
    }

    async fn list_alerts(
        &self,
        filter: &slipway_core::ports::AlertFilter,
        limit: usize,
    ) -> Result<Vec<slipway_core::alerting::Alert>> {
        alerts::list_alerts(self, filter, limit).await
    }

    async fn create_silence(
        &self,
        silence: slipway_core::alerting::NewSilence,
        by: &str,
        now_ms: i64,
    ) -> Result<slipway_core::alerting::Silence> {
        alerts::create_silence(self, silence, by.to_owned(), now_ms).await
    }

    async fn list_silences(
        &self,
        after_ms: i64,
        limit: usize,
    ) -> Result<Vec<slipway_core::alerting::Silence>> {
        alerts::list_silences(self, after_ms, limit).await
    }

    async fn expire_silence(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<slipway_core::alerting::Silence> {
        alerts::expire_silence(self, id, now_ms).await
    }

    async fn audit_head(&self) -> Result<(i64, String)> {
        audit::head(self).await
    }

    async fn read_audit(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        audit::read(self, filter, audit::Start::After(after_seq), limit).await
    }

    async fn read_audit_newest(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        let from = audit::Start::Before(before_seq.unwrap_or(i64::MAX));
        audit::read(self, filter, from, limit).await
    }
}
