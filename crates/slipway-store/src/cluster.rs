//! Several servers on one store: the leader's lease (taken and renewed on the database's clock),
//! measurements queued for the leader, and generations of what servers cache.

use std::collections::BTreeMap;

use slipway_core::Result;
use slipway_core::cluster::{Lease, QueuedReport};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::sql::{db_err, get_i64, get_str};
use crate::{Backend, SqlStore};

/// The database's clock in epoch milliseconds: every server reads the same one, so a lease's
/// expiry does not depend on whose clock runs ahead.
fn now_expression(backend: Backend) -> &'static str {
    match backend {
        // clock_timestamp, not now(): now() is the transaction's start.
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

async fn database_now(conn: &mut AnyConnection, backend: Backend) -> Result<i64> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} AS now_ms",
        now_expression(backend)
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err("reading the database's clock"))?;
    get_i64(&row, "now_ms")
}

fn lease_from(row: &AnyRow, now_ms: i64) -> Result<Lease> {
    Ok(Lease {
        name: get_str(row, "name")?,
        holder: get_str(row, "holder")?,
        epoch: get_i64(row, "epoch")?,
        acquired_ms: get_i64(row, "acquired_ms")?,
        renewed_ms: get_i64(row, "renewed_ms")?,
        expires_ms: get_i64(row, "expires_ms")?,
        now_ms,
    })
}

pub(crate) async fn acquire_lease(
    store: &SqlStore,
    name: String,
    holder: String,
    ttl_ms: i64,
) -> Result<Lease> {
    let backend = store.backend;
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let now = database_now(tx, backend).await?;
                // One statement decides: PostgreSQL locks the row and re-checks the condition
                // against the latest version, so two servers cannot both take a lapsed lease.
                sqlx::query(
                    "INSERT INTO leases (name, holder, epoch, acquired_ms, renewed_ms, expires_ms) \
                     VALUES ($1, $2, 1, $3, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET \
                     epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch \
                                  ELSE leases.epoch + 1 END, \
                     acquired_ms = CASE WHEN leases.holder = excluded.holder \
                                        THEN leases.acquired_ms ELSE excluded.acquired_ms END, \
                     holder = excluded.holder, renewed_ms = excluded.renewed_ms, \
                     expires_ms = excluded.expires_ms \
                     WHERE leases.holder = excluded.holder OR leases.expires_ms <= excluded.renewed_ms",
                )
                .bind(name.clone())
                .bind(holder)
                .bind(now)
                .bind(now.saturating_add(ttl_ms))
                .execute(&mut *tx)
                .await
                .map_err(db_err("taking a lease"))?;
                let row = sqlx::query("SELECT * FROM leases WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("reading a lease"))?;
                lease_from(&row, now)
            })
        })
        .await
}

pub(crate) async fn release_lease(store: &SqlStore, name: String, holder: String) -> Result<()> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("releasing a lease"))?;
                Ok(())
            })
        })
        .await
}

pub(crate) async fn get_lease(store: &SqlStore, name: &str) -> Result<Option<Lease>> {
    let mut conn = store
        .read
        .acquire()
        .await
        .map_err(db_err("reading a lease"))?;
    let now = database_now(&mut conn, store.backend).await?;
    let row = sqlx::query("SELECT * FROM leases WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err("reading a lease"))?;
    row.map(|row| lease_from(&row, now)).transpose()
}

pub(crate) async fn queue_report(
    store: &SqlStore,
    deployment: String,
    source: String,
    body: String,
    now_ms: i64,
) -> Result<()> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO queued_reports (created_ms, deployment, source, body) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(now_ms)
                .bind(deployment)
                .bind(source)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(db_err("queueing a report for the leader"))?;
                Ok(())
            })
        })
        .await
}

pub(crate) async fn has_queued_reports(store: &SqlStore) -> Result<bool> {
    Ok(sqlx::query("SELECT id FROM queued_reports LIMIT 1")
        .fetch_optional(&store.read)
        .await
        .map_err(db_err("looking for queued reports"))?
        .is_some())
}

pub(crate) async fn take_queued_reports(
    store: &SqlStore,
    limit: usize,
) -> Result<Vec<QueuedReport>> {
    let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
    let mut taken = store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                // A second taker's DELETE finds the rows gone: each report reaches one leader.
                let rows = sqlx::query(
                    "DELETE FROM queued_reports WHERE id IN \
                     (SELECT id FROM queued_reports ORDER BY id LIMIT $1) \
                     RETURNING id, created_ms, deployment, source, body",
                )
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("taking queued reports"))?;
                rows.iter()
                    .map(|row| {
                        Ok(QueuedReport {
                            id: get_i64(row, "id")?,
                            created_ms: get_i64(row, "created_ms")?,
                            deployment: get_str(row, "deployment")?,
                            source: get_str(row, "source")?,
                            body: get_str(row, "body")?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
        })
        .await?;
    taken.sort_by_key(|report| report.id);
    Ok(taken)
}

pub(crate) async fn generations(store: &SqlStore) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT topic, generation FROM cache_generations")
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading cache generations"))?;
    rows.iter()
        .map(|row| Ok((get_str(row, "topic")?, get_i64(row, "generation")?)))
        .collect()
}

/// Moves `topic`'s generation, in the transaction of the change that makes caches stale.
pub(crate) async fn bump_generation(conn: &mut AnyConnection, topic: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO cache_generations (topic, generation) VALUES ($1, 1) \
         ON CONFLICT (topic) DO UPDATE SET generation = cache_generations.generation + 1",
    )
    .bind(topic.to_owned())
    .execute(&mut *conn)
    .await
    .map_err(db_err("moving a cache generation"))?;
    Ok(())
}
