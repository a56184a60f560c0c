//! Writes, with group commit on SQLite.
//!
//! SQLite allows one writer, and with `synchronous = FULL` every commit waits for an fsync. A
//! dedicated thread owns the write connections; concurrent write requests queue on a channel
//! and the thread runs as many as are waiting inside one transaction, each under its own
//! SAVEPOINT, then commits once. Every request keeps its own all-or-nothing outcome (a failed one
//! rolls back to its savepoint and reports its error) while the fsync is shared, and no request
//! ever sees "database is locked".
//!
//! The thread holds two connections to the same file and uses one at a time, so there is still
//! a single writer: a synchronous rusqlite connection for writes written against [`Tx`] (no
//! thread hand-off per statement, see [`crate::conn`]), and a sqlx connection for the rest.
//!
//! PostgreSQL does its own group commit across connections, so there a write is simply a
//! transaction on a pooled connection.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use slipway_core::{Error, Result};
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use slipway_core::audit::{AuditEvent, AuditRecord};

use crate::audit::{ChainHead, PreparedEvent};
use crate::conn::Tx;

/// Requests the writer takes into one transaction at most; bounds the latency a request can
/// add to the others of its group.
const MAX_GROUP: usize = 64;
/// Requests waiting for the writer before senders are slowed down (back-pressure, not errors).
const QUEUE_DEPTH: usize = 1024;

type Outcome = Result<Box<dyn Any + Send>>;

/// What an op returns that only carries an audit entry (a refusal, an upload's record): the
/// writer answers with the entry it appended instead.
struct AuditOnly;
type Op = Box<dyn for<'c> FnOnce(Tx<'c>) -> BoxFuture<'c, Outcome> + Send>;

pub(crate) struct Job {
    op: Op,
    reply: oneshot::Sender<Outcome>,
    /// Whether the op needs its own savepoint. Ops that make every check before their first
    /// write ([`Writer::write_checked`]) skip it.
    savepoint: bool,
    /// Whether the op is written against [`Tx`] and may run on the rusqlite connection.
    lite: bool,
    /// The audit entry to append in the op's transaction once it succeeded.
    audit: Option<Arc<PreparedEvent>>,
}

#[derive(Clone)]
pub(crate) enum Writer {
    /// SQLite: the channel to the thread that owns the write connections.
    Grouped(mpsc::Sender<Job>),
    /// PostgreSQL: a transaction per write on the shared pool.
    Pooled(AnyPool),
}

impl Writer {
    /// Starts the SQLite writer thread. It lives until every sender is gone, and runs sqlx's
    /// futures through the runtime it was started from.
    pub(crate) fn grouped(any: AnyConnection, lite: rusqlite::Connection) -> Result<Writer> {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("slipway-sqlite-writer".into())
            .spawn(move || runtime.block_on(run(any, lite, receiver)))
            .map_err(|e| Error::internal("starting the SQLite writer thread", e))?;
        Ok(Writer::Grouped(sender))
    }

    async fn submit<T, F>(
        &self,
        op: F,
        savepoint: bool,
        lite: bool,
        audit: Option<Arc<PreparedEvent>>,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Tx<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Writer::Pooled(pool) => {
                let mut tx = pool
                    .begin()
                    .await
                    .map_err(|e| Error::internal("starting a write transaction", e))?;
                let value = op(Tx::Any(&mut tx)).await?;
                if let Some(event) = &audit {
                    crate::audit::append(&mut Tx::Any(&mut tx), event).await?;
                }
                tx.commit()
                    .await
                    .map_err(|e| Error::internal("committing a write transaction", e))?;
                Ok(value)
            }
            Writer::Grouped(sender) => {
                let (reply, answer) = oneshot::channel();
                let op: Op = Box::new(move |tx| {
                    Box::pin(async move {
                        op(tx)
                            .await
                            .map(|value| Box::new(value) as Box<dyn Any + Send>)
                    })
                });
                sender
                    .send(Job {
                        op,
                        reply,
                        savepoint,
                        lite,
                        audit,
                    })
                    .await
                    .map_err(|_| Error::internal_msg("the SQLite writer has stopped"))?;
                let value = answer
                    .await
                    .map_err(|_| Error::internal_msg("the SQLite writer dropped a request"))??;
                value.downcast::<T>().map(|value| *value).map_err(|_| {
                    Error::internal_msg("the SQLite writer returned a value of the wrong type")
                })
            }
        }
    }
}

/// A writer that records an audit entry with each write it runs, in the write's transaction.
/// The store holds an unaudited one; `MetadataStore::audited` hands out audited copies.
#[derive(Clone)]
pub(crate) struct AuditedWriter {
    writer: Writer,
    audit: Option<Arc<PreparedEvent>>,
}

impl AuditedWriter {
    pub(crate) fn new(writer: Writer) -> AuditedWriter {
        AuditedWriter {
            writer,
            audit: None,
        }
    }

    pub(crate) fn with_audit(&self, event: AuditEvent) -> AuditedWriter {
        AuditedWriter {
            writer: self.writer.clone(),
            audit: Some(Arc::new(PreparedEvent::new(event))),
        }
    }

    /// Appends an entry that goes with no change. On SQLite it goes through the group's chain
    /// head like any audited write: read from the table instead, it would miss the entries of
    /// earlier writes in the same group (the head is written back once, at the group's end)
    /// and collide with them.
    pub(crate) async fn append_alone(&self, event: AuditEvent) -> Result<AuditRecord> {
        let event = Arc::new(PreparedEvent::new(event));
        match &self.writer {
            Writer::Pooled(pool) => {
                let mut tx = pool
                    .begin()
                    .await
                    .map_err(|e| Error::internal("starting a write transaction", e))?;
                let record = crate::audit::append(&mut Tx::Any(&mut tx), &event).await?;
                tx.commit()
                    .await
                    .map_err(|e| Error::internal("committing a write transaction", e))?;
                Ok(record)
            }
            Writer::Grouped(sender) => {
                let (reply, answer) = oneshot::channel();
                let op: Op = Box::new(|_tx| {
                    Box::pin(async { Ok(Box::new(AuditOnly) as Box<dyn Any + Send>) })
                });
                sender
                    .send(Job {
                        op,
                        reply,
                        savepoint: true,
                        lite: true,
                        audit: Some(event),
                    })
                    .await
                    .map_err(|_| Error::internal_msg("the SQLite writer has stopped"))?;
                let value = answer
                    .await
                    .map_err(|_| Error::internal_msg("the SQLite writer dropped a request"))??;
                value.downcast::<AuditRecord>().map(|r| *r).map_err(|_| {
                    Error::internal_msg("the SQLite writer returned a value of the wrong type")
                })
            }
        }
    }

    /// Runs `op` in a write transaction and returns its result once it is committed. If `op`
    /// fails, whatever it wrote is rolled back and nothing else is affected.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.writer
            .submit(any_only(op), true, false, self.audit.clone())
            .await
    }

    /// Runs an op written against [`Tx`] in a write transaction (on SQLite, on the writer
    /// thread's synchronous connection) under its own savepoint.
    pub(crate) async fn write_tx<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Tx<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.writer.submit(op, true, true, self.audit.clone()).await
    }

    /// Runs an op written against [`Tx`] (on SQLite, on the writer thread's synchronous
    /// connection) that returns a domain error (invalid, not found, exists) only before its
    /// first write, so it needs no savepoint. An internal error still rolls back everything.
    pub(crate) async fn write_tx_checked<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Tx<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.writer
            .submit(op, false, true, self.audit.clone())
            .await
    }
}

/// Adapts an op written against sqlx's connection; the writer only ever hands it one.
fn any_only<T, F>(op: F) -> impl for<'c> FnOnce(Tx<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    move |tx: Tx<'_>| match tx {
        Tx::Any(conn) => op(conn),
        Tx::Lite(_) => Box::pin(async {
            Err(Error::internal_msg(
                "a sqlx write was sent to the rusqlite connection",
            ))
        }),
    }
}

async fn run(
    mut any: AnyConnection,
    mut lite: rusqlite::Connection,
    mut receiver: mpsc::Receiver<Job>,
) {
    while let Some(first) = receiver.recv().await {
        let mut jobs = vec![first];
        // One yield lets request tasks that are already running enqueue their writes, so they
        // share this group's commit instead of each paying for its own. (Waiting up to 100 µs
        // for the previous group's size to come back measured within the noise: 13.6-15.0k
        // against 14.0-15.8k single log-metric req/s.)
        let mut yielded = false;
        while jobs.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) if !yielded => {
                    yielded = true;
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        // Consecutive jobs for the same connection share one transaction; the order stays the
        // order of arrival.
        let mut jobs = jobs.into_iter().peekable();
        while let Some(job) = jobs.next() {
            let lite_run = job.lite;
            let mut group = vec![job];
            while let Some(next) = jobs.next_if(|next| next.lite == lite_run) {
                group.push(next);
            }
            if lite_run {
                run_group(Tx::Lite(&mut lite), group).await;
            } else {
                run_group(Tx::Any(&mut any), group).await;
            }
        }
    }
}
/// Runs one op, turning a panic into an internal error: the writer task must outlive any bug in
/// a single write, or every later write would fail.
async fn run_op(op: Op, tx: Tx<'_>) -> Outcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(op(tx)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::internal_msg(
            "a write panicked; its transaction is rolled back",
        )),
    }
}

/// Runs one op and, when it succeeded, appends its audit entry in the same transaction. The
/// group's chain head is read at its first audited op and written back once before the commit.
async fn run_audited(
    op: Op,
    audit: Option<&PreparedEvent>,
    tx: &mut Tx<'_>,
    head: &mut Option<ChainHead>,
) -> Outcome {
    let value = run_op(op, tx.reborrow()).await?;
    if let Some(event) = audit {
        let head = match head {
            Some(head) => head,
            None => head.insert(crate::audit::load_head(tx).await?),
        };
        let record = crate::audit::insert_entry(tx, head, event).await?;
        if value.is::<AuditOnly>() {
            return Ok(Box::new(record));
        }
    }
    Ok(value)
}

async fn run_group(mut tx: Tx<'_>, jobs: Vec<Job>) {
    // A transaction left open by an earlier failure (a ROLLBACK that itself failed) would make
    // every later BEGIN fail; clear it once and retry before giving up on this group.
    let mut begun = tx.control("BEGIN IMMEDIATE").await;
    if begun.is_err() {
        let _ = tx.control("ROLLBACK").await;
        begun = tx.control("BEGIN IMMEDIATE").await;
    }
    if let Err(error) = begun {
        let message = format!("starting a write transaction: {error}");
        for job in jobs {
            let _ = job.reply.send(Err(Error::internal_msg(message.clone())));
        }
        return;
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut broken: Option<String> = None;
    let mut head: Option<ChainHead> = None;
    for job in jobs {
        if broken.is_some() {
            outcomes.push((
                job.reply,
                Err(Error::internal_msg(
                    "an earlier write in the same transaction failed",
                )),
            ));
            continue;
        }
        if !job.savepoint {
            let outcome = run_audited(job.op, job.audit.as_deref(), &mut tx, &mut head).await;
            if let Err(Error::Internal { context, .. }) = &outcome {
                broken = Some(format!("a write failed: {context}"));
            }
            outcomes.push((job.reply, outcome));
            continue;
        }
        if let Err(error) = tx.control("SAVEPOINT slipway_write").await {
            broken = Some(format!("creating a savepoint: {error}"));
            outcomes.push((
                job.reply,
                Err(Error::internal_msg(format!(
                    "creating a savepoint: {error}"
                ))),
            ));
            continue;
        }
        let outcome = run_audited(job.op, job.audit.as_deref(), &mut tx, &mut head).await;
        let settle = if outcome.is_ok() {
            tx.control("RELEASE slipway_write").await
        } else {
            match tx.control("ROLLBACK TO slipway_write").await {
                Ok(_) => tx.control("RELEASE slipway_write").await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = settle {
            broken = Some(format!("settling a savepoint: {error}"));
        }
        outcomes.push((job.reply, outcome));
    }
    if broken.is_none()
        && let Some(head) = &head
        && let Err(error) = crate::audit::store_head(&mut tx, head).await
    {
        broken = Some(format!("moving the audit head: {error}"));
    }
    let committed = match broken {
        None => tx
            .control("COMMIT")
            .await
            .map_err(|e| format!("committing: {e}")),
        Some(reason) => Err(reason),
    };
    match committed {
        Ok(_) => {
            for (reply, outcome) in outcomes {
                let _ = reply.send(outcome);
            }
        }
        Err(reason) => {
            let _ = tx.control("ROLLBACK").await;
            tracing::error!(%reason, "a grouped SQLite write transaction failed and was rolled back");
            for (reply, outcome) in outcomes {
                // A request that failed on its own keeps its own error; the others learn that
                // nothing of theirs was written.
                let outcome = match outcome {
                    Err(
                        error @ (Error::InvalidParameter(_)
                        | Error::NotFound(_)
                        | Error::AlreadyExists(_)
                        | Error::Unauthenticated(_)
                        | Error::PermissionDenied(_)),
                    ) => Err(error),
                    _ => Err(Error::internal_msg(format!(
                        "write transaction rolled back: {reason}"
                    ))),
                };
                let _ = reply.send(outcome);
            }
        }
    }
}
