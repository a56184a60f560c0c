//! Test-only helpers shared by the crates' integration tests: a fresh database per test on
//! SQLite (always) and PostgreSQL (when reachable; in CI it must be).
//!
//! PostgreSQL is found through `SLIPWAY_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own database created from
//! there and dropped afterwards, so tests run in parallel without seeing each other's rows.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether this run must not skip anything (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn pg_admin_url() -> String {
    std::env::var("SLIPWAY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A fresh SQLite database file in its own temporary folder (removed on drop).
pub struct SqliteDatabase {
    pub dir: tempfile::TempDir,
    /// `sqlite:///<abs path>` as the server's `--backend-store-uri` takes it.
    pub uri: String,
}

impl SqliteDatabase {
    pub fn create() -> SqliteDatabase {
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        let uri = format!("sqlite:///{}", dir.path().join("slipway.db").display());
        SqliteDatabase { dir, uri }
    }
}

/// A fresh PostgreSQL database, dropped when this value is.
pub struct PgDatabase {
    pub name: String,
    /// `postgresql://.../<name>` as the server's `--backend-store-uri` takes it.
    pub uri: String,
    admin_url: String,
}

impl PgDatabase {
    /// `None` (after printing why) when PostgreSQL is unreachable outside CI; panics in CI,
    /// where a missing PostgreSQL must fail the run rather than skip half the suite.
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = pg_admin_url();
        let connected =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await;
        let mut admin = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return skip_or_panic(&admin_url, &error.to_string()),
            Err(_) => return skip_or_panic(&admin_url, "timed out after 5 s"),
        };
        let name = format!("slipway_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("creating a test database");
        let _ = admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        let uri = format!(
            "{}/{name}",
            base.replacen("postgres://", "postgresql://", 1)
        );
        Some(PgDatabase {
            name,
            uri,
            admin_url,
        })
    }
}

fn skip_or_panic(url: &str, why: &str) -> Option<PgDatabase> {
    if in_ci() {
        panic!("PostgreSQL at {url} is required in CI (CI=true) but unreachable: {why}");
    }
    eprintln!(
        "SKIPPED (PostgreSQL part): PostgreSQL at {url} is unreachable ({why}); set SLIPWAY_TEST_PG_URL or start PostgreSQL to run it"
    );
    None
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we can rely on, so use a short-lived runtime on
        // a plain thread.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let _ = admin
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            }
        });
        let _ = handle.join();
    }
}

/// Runs one SQL statement on the database behind `uri` (`sqlite:///...` or `postgresql://...`)
/// outside the store: how tests break the schema under a running server.
pub async fn execute_sql(uri: &str, sql: &str) {
    if uri.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(uri)
            .await
            .expect("opening the SQLite database");
        connection
            .execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .expect("running the statement");
        let _ = connection.close().await;
    } else {
        let uri = uri.replacen("postgresql://", "postgres://", 1);
        let mut connection = PgConnection::connect(&uri)
            .await
            .expect("opening the PostgreSQL database");
        connection
            .execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .expect("running the statement");
        let _ = connection.close().await;
    }
}
