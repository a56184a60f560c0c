//! The audit log: appending an entry inside the transaction of the change it describes, and
//! reading entries back in sequence order.
//!
//! The chain's end lives in `audit_head`. Appending reads it (on PostgreSQL with `FOR UPDATE`,
//! which orders concurrent transactions on the chain; SQLite has one writer anyway), inserts the
//! entry and moves the head, all in the caller's transaction: a change that rolls back takes its
//! entry with it.

use slipway_core::audit::{AuditEvent, AuditRecord, Outcome, canonical_tail, entry_hash_with_tail};
use slipway_core::ports::AuditFilter;
use slipway_core::{Error, Result};

use crate::conn::{Tx, read_all};
use crate::sql::Arg;
use crate::{SqlStore, now_ms};

/// The chain's end as a transaction sees it. The SQLite writer loads it once per group of
/// writes and stores it once before the commit, so each audited write costs one INSERT.
pub(crate) struct ChainHead {
    seq: i64,
    hash: String,
    moved: bool,
}

/// Reads the head; on PostgreSQL it stays locked until the transaction ends, which orders
/// concurrent appenders.
pub(crate) async fn load_head(tx: &mut Tx<'_>) -> Result<ChainHead> {
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = tx.sql(&format!(
        "SELECT seq, hash FROM audit_head WHERE id = 1{lock}"
    ));
    let (seq, hash) = tx
        .fetch_optional::<(i64, String)>(&sql, "reading the audit head")
        .await?
        .ok_or_else(|| Error::internal_msg("the audit_head row is missing"))?;
    Ok(ChainHead {
        seq,
        hash,
        moved: false,
    })
}

/// Writes the head back if entries were added.
pub(crate) async fn store_head(tx: &mut Tx<'_>, head: &ChainHead) -> Result<()> {
    if !head.moved {
        return Ok(());
    }
    let mut sql = tx.sql("UPDATE audit_head SET seq = ");
    sql.bind(head.seq)
        .push(", hash = ")
        .bind(head.hash.as_str())
        .push(" WHERE id = 1");
    tx.execute(&sql, "moving the audit head").await?;
    Ok(())
}

/// An event with its [`canonical_tail`], computed by the request before it queues for the
/// writer.
pub(crate) struct PreparedEvent {
    pub(crate) event: AuditEvent,
    tail: String,
}

impl PreparedEvent {
    pub(crate) fn new(event: AuditEvent) -> PreparedEvent {
        let tail = canonical_tail(&event);
        PreparedEvent { event, tail }
    }
}

/// Inserts the entry after `head` and moves `head` to it (only once the insert succeeded).
pub(crate) async fn insert_entry(
    tx: &mut Tx<'_>,
    head: &mut ChainHead,
    prepared: &PreparedEvent,
) -> Result<AuditRecord> {
    let event = &prepared.event;
    let seq = head.seq + 1;
    let time_ms = now_ms();
    let hash = entry_hash_with_tail(&head.hash, seq, time_ms, &prepared.tail);
    let mut sql = tx.sql(
        "INSERT INTO audit_log (seq, time_ms, actor, action, resource, request_id, outcome, \
         summary, prev_hash, hash) VALUES ",
    );
    sql.bind_list([
        Arg::from(seq),
        Arg::from(time_ms),
        Arg::from(event.actor.as_str()),
        Arg::from(event.action.as_str()),
        Arg::from(event.resource.as_str()),
        Arg::from(event.request_id.clone()),
        Arg::from(event.outcome.as_str()),
        Arg::from(event.summary.as_str()),
        Arg::from(head.hash.as_str()),
        Arg::from(hash.as_str()),
    ]);
    tx.execute(&sql, "appending to the audit log").await?;
    let prev_hash = std::mem::replace(&mut head.hash, hash.clone());
    head.seq = seq;
    head.moved = true;
    Ok(AuditRecord::new(
        seq,
        time_ms,
        event.clone(),
        prev_hash,
        hash,
    ))
}

/// Appends `event` in the transaction `tx` belongs to: head, entry, head.
pub(crate) async fn append(tx: &mut Tx<'_>, event: &PreparedEvent) -> Result<AuditRecord> {
    let mut head = load_head(tx).await?;
    let record = insert_entry(tx, &mut head, event).await?;
    store_head(tx, &head).await?;
    Ok(record)
}

/// An entry on its own, in its own transaction (a denied request changes nothing else).
pub(crate) async fn append_alone(store: &SqlStore, event: AuditEvent) -> Result<AuditRecord> {
    store.writer.append_alone(event).await
}

pub(crate) async fn head(store: &SqlStore) -> Result<(i64, String)> {
    let sql = store.sql("SELECT seq, hash FROM audit_head WHERE id = 1");
    read_all::<(i64, String)>(&store.read, &sql, "reading the audit head")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::internal_msg("the audit_head row is missing"))
}

type Row = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
);

/// Where a read starts and which way it goes.
pub(crate) enum Start {
    /// Oldest first, after this sequence number.
    After(i64),
    /// Newest first, before this sequence number.
    Before(i64),
}

pub(crate) async fn read(
    store: &SqlStore,
    filter: &AuditFilter,
    from: Start,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let mut sql = store.sql(
        "SELECT seq, time_ms, actor, action, resource, request_id, outcome, summary, prev_hash, hash \
         FROM audit_log WHERE seq ",
    );
    let order = match from {
        Start::After(seq) => {
            sql.push("> ").bind(seq);
            " ORDER BY seq LIMIT "
        }
        Start::Before(seq) => {
            sql.push("< ").bind(seq);
            " ORDER BY seq DESC LIMIT "
        }
    };
    if let Some(resource) = &filter.resource {
        sql.push(" AND resource = ").bind(resource.as_str());
        if !resource.starts_with("run:") {
            // Repeats the partial index's condition, so both planners may use it.
            sql.push(" AND substr(resource, 1, 4) <> 'run:'");
        }
    }
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor = ").bind(actor.as_str());
    }
    if let Some(since) = filter.since_ms {
        sql.push(" AND time_ms >= ").bind(since);
    }
    sql.push(order)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    Ok(read_all::<Row>(&store.read, &sql, "reading the audit log")
        .await?
        .into_iter()
        .map(
            |(
                seq,
                time_ms,
                actor,
                action,
                resource,
                request_id,
                outcome,
                summary,
                prev_hash,
                hash,
            )| {
                AuditRecord {
                    seq,
                    time_ms,
                    actor,
                    action,
                    resource,
                    request_id,
                    outcome: Outcome::parse(&outcome),
                    summary,
                    prev_hash,
                    hash,
                }
            },
        )
        .collect())
}
