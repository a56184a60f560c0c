//! The `MetadataStore` contract: the same assertions, run on SQLite and on PostgreSQL.
//!
//! Every case is written once, as `async fn case_x(store: &Store)` in one of the modules under
//! `tests/contract/`, and [`contract!`] turns it into two `#[tokio::test]`s: `x_sqlite` on a
//! fresh SQLite file and `x_postgres` on a fresh PostgreSQL database (skipped with a printed
//! notice when PostgreSQL is unreachable outside CI; a failure in CI).

/// `contract!(x_sqlite, x_postgres => case_x);` runs `case_x(&Store)` on both backends.
/// `contract!(uri: x_sqlite, x_postgres => case_x);` hands the case the database URI instead,
/// for cases that open the store themselves. Attributes (`#[ignore = "..."]`) written before the
/// names apply to both tests.
macro_rules! contract {
    ($(#[$meta:meta])* $sqlite:ident, $postgres:ident => $case:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$meta])*
        async fn $sqlite() {
            let db = slipway_testkit::SqliteDatabase::create();
            let sql = $crate::common::open(&db.uri).await;
            assert_eq!(slipway_core::ports::MetadataStore::backend_name(&sql), "sqlite");
            let store: $crate::common::Store = std::sync::Arc::new(sql.clone());
            $case(&store).await;
            sql.close().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$meta])*
        async fn $postgres() {
            let Some(db) = slipway_testkit::PgDatabase::create().await else {
                return;
            };
            let sql = $crate::common::open(&db.uri).await;
            assert_eq!(slipway_core::ports::MetadataStore::backend_name(&sql), "postgresql");
            let store: $crate::common::Store = std::sync::Arc::new(sql.clone());
            $case(&store).await;
            sql.close().await;
            drop(db);
        }
    };
    (uri: $(#[$meta:meta])* $sqlite:ident, $postgres:ident => $case:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$meta])*
        async fn $sqlite() {
            let db = slipway_testkit::SqliteDatabase::create();
            $case(&db.uri).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$meta])*
        async fn $postgres() {
            let Some(db) = slipway_testkit::PgDatabase::create().await else {
                return;
            };
            $case(&db.uri).await;
            drop(db);
        }
    };
}

/// `assert_err!(expr, Error::NotFound(_))`: the result is that error; returns it.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(,)?) => {
        match $result {
            Err(error @ $pattern) => error,
            other => panic!(
                "expected {} from `{}`, got {:?}",
                stringify!($pattern),
                stringify!($result),
                other
            ),
        }
    };
}

#[path = "contract/common.rs"]
mod common;

#[path = "contract/alerts.rs"]
mod alerts;
#[path = "contract/audit.rs"]
mod audit;
#[path = "contract/cluster.rs"]
mod cluster;
#[path = "contract/concurrency.rs"]
mod concurrency;
#[path = "contract/datasets.rs"]
mod datasets;
#[path = "contract/deployments.rs"]
mod deployments;
#[path = "contract/experiments.rs"]
mod experiments;
#[path = "contract/gates.rs"]
mod gates;
#[path = "contract/identity.rs"]
mod identity;
#[path = "contract/keys.rs"]
mod keys;
#[path = "contract/logged_models.rs"]
mod logged_models;
#[path = "contract/metrics.rs"]
mod metrics;
#[path = "contract/monitoring.rs"]
mod monitoring;
#[path = "contract/registry.rs"]
mod registry;
#[path = "contract/retrains.rs"]
mod retrains;
#[path = "contract/runs.rs"]
mod runs;
#[path = "contract/search_runs.rs"]
mod search_runs;
