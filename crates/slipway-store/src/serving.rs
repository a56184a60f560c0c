//! Serving minutes: every data plane's request counts per deployment and minute, which SLOs
//! are measured on. Added to, never overwritten: a minute reported twice (by two flushes of
//! the leader, or by a new leader) sums.

use slipway_core::deployment::{LatencyHistogram, ServingStats};
use slipway_core::{Error, Result};

use crate::SqlStore;
use crate::sql::{db_err, get_i64, get_str};

fn stats_from(row: &sqlx::any::AnyRow) -> Result<ServingStats> {
    Ok(ServingStats {
        requests: u64::try_from(get_i64(row, "requests")?).unwrap_or(0),
        server_errors: u64::try_from(get_i64(row, "server_errors")?).unwrap_or(0),
        latency: serde_json::from_str::<LatencyHistogram>(&get_str(row, "latency")?)
            .map_err(|e| Error::internal("decoding a serving minute's latency", e))?,
        cpu_us: u64::try_from(get_i64(row, "cpu_us")?).unwrap_or(0),
        cpu_ns_rest: 0,
    })
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) async fn add(store: &SqlStore, minutes: Vec<(String, i64, ServingStats)>) -> Result<()> {
    if minutes.is_empty() {
        return Ok(());
    }
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                for (deployment, minute_ms, stats) in minutes {
                    let existing = sqlx::query(
                        "SELECT * FROM serving_minutes WHERE deployment = $1 AND minute_ms = $2",
                    )
                    .bind(deployment.clone())
                    .bind(minute_ms)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("reading a serving minute"))?;
                    let mut sum = existing
                        .as_ref()
                        .map(stats_from)
                        .transpose()?
                        .unwrap_or_default();
                    sum.merge(&stats);
                    let latency = serde_json::to_string(&sum.latency)
                        .map_err(|e| Error::internal("encoding a latency histogram", e))?;
                    sqlx::query(
                        "INSERT INTO serving_minutes \
                         (deployment, minute_ms, requests, server_errors, latency, cpu_us) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (deployment, minute_ms) DO UPDATE SET \
                         requests = excluded.requests, server_errors = excluded.server_errors, \
                         latency = excluded.latency, cpu_us = excluded.cpu_us",
                    )
                    .bind(deployment)
                    .bind(minute_ms)
                    .bind(count(sum.requests))
                    .bind(count(sum.server_errors))
                    .bind(latency)
                    .bind(count(sum.cpu_us))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("writing a serving minute"))?;
                }
                Ok(())
            })
        })
        .await
}

pub(crate) async fn read(
    store: &SqlStore,
    deployment: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, ServingStats)>> {
    let rows = sqlx::query(
        "SELECT * FROM serving_minutes WHERE deployment = $1 AND minute_ms >= $2 \
         AND minute_ms < $3 ORDER BY minute_ms",
    )
    .bind(deployment.to_owned())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(&store.read)
    .await
    .map_err(db_err("reading serving minutes"))?;
    rows.iter()
        .map(|row| Ok((get_i64(row, "minute_ms")?, stats_from(row)?)))
        .collect()
}

/// Every deployment's summed requests, server errors and CPU time over minutes starting in
/// `[from_ms, to_ms)`, by name: one grouped read, not the minutes themselves.
pub(crate) async fn totals(
    store: &SqlStore,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<slipway_core::deployment::ServingTotals>> {
    // CAST: PostgreSQL sums BIGINT to NUMERIC, which the Any driver does not decode.
    let rows = sqlx::query(
        "SELECT deployment, CAST(SUM(requests) AS BIGINT) AS requests, \
         CAST(SUM(server_errors) AS BIGINT) AS server_errors, \
         CAST(SUM(cpu_us) AS BIGINT) AS cpu_us, COUNT(*) AS minutes \
         FROM serving_minutes WHERE minute_ms >= $1 AND minute_ms < $2 \
         GROUP BY deployment ORDER BY deployment",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(&store.read)
    .await
    .map_err(db_err("summing serving minutes"))?;
    rows.iter()
        .map(|row| {
            let n = |column| get_i64(row, column).map(|v| u64::try_from(v).unwrap_or(0));
            Ok(slipway_core::deployment::ServingTotals {
                deployment: get_str(row, "deployment")?,
                requests: n("requests")?,
                server_errors: n("server_errors")?,
                cpu_us: n("cpu_us")?,
                minutes: n("minutes")?,
            })
        })
        .collect()
}

pub(crate) async fn expire(store: &SqlStore, before_ms: i64) -> Result<u64> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                Ok(
                    sqlx::query("DELETE FROM serving_minutes WHERE minute_ms < $1")
                        .bind(before_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("deleting old serving minutes"))?
                        .rows_affected(),
                )
            })
        })
        .await
}
