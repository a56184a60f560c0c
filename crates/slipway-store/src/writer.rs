//! Writes, with group commit on SQLite.
//!
//! SQLite allows one writer, and with `synchronous = FULL` every commit waits for an fsync. A
//! dedicated task owns the single write connection; concurrent write requests queue on a channel
//! and the task runs as many as are waiting inside one transaction, each under its own
//! SAVEPOINT, then commits once. Every request keeps its own all-or-nothing outcome (a failed one
//! rolls back to its savepoint and reports its error) while the fsync is shared, and no request
//! ever sees "database is locked".
//!
//! PostgreSQL does its own group commit across connections, so there a write is simply a
//! transaction on a pooled connection.

use std::any::Any;

use futures::future::BoxFuture;
use slipway_core::{Error, Result};
use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

/// Requests the writer takes into one transaction at most; bounds the latency a request can
/// add to the others of its group.
const MAX_GROUP: usize = 64;
/// Requests waiting for the writer before senders are slowed down (back-pressure, not errors).
const QUEUE_DEPTH: usize = 1024;

type Outcome = Result<Box<dyn Any + Send>>;
type Op = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Outcome> + Send>;

pub(crate) struct Job {
    op: Op,
    reply: oneshot::Sender<Outcome>,
    /// Whether the op needs its own savepoint. Ops that make every check before their first
    /// write ([`Writer::write_checked`]) skip it: two statements fewer on the hottest path.
    savepoint: bool,
}

#[derive(Clone)]
pub(crate) enum Writer {
    /// SQLite: the channel to the task that owns the one write connection.
    Grouped(mpsc::Sender<Job>),
    /// PostgreSQL: a transaction per write on the shared pool.
    Pooled(AnyPool),
}

impl Writer {
    pub(crate) fn grouped(connection: AnyConnection) -> Writer {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(connection, receiver));
        Writer::Grouped(sender)
    }

    /// Runs `op` in a write transaction and returns its result once it is committed. If `op`
    /// fails, whatever it wrote is rolled back and nothing else is affected.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(op, true).await
    }

    /// Like [`Writer::write`], for ops that return a domain error (invalid, not found, exists)
    /// only before their first write. An internal error still rolls back everything it touched.
    pub(crate) async fn write_checked<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(op, false).await
    }

    async fn submit<T, F>(&self, op: F, savepoint: bool) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Writer::Pooled(pool) => {
                let mut tx = pool
                    .begin()
                    .await
                    .map_err(|e| Error::internal("starting a write transaction", e))?;
                let value = op(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(|e| Error::internal("committing a write transaction", e))?;
                Ok(value)
            }
            Writer::Grouped(sender) => {
                let (reply, answer) = oneshot::channel();
                let op: Op = Box::new(move |conn| {
                    Box::pin(async move {
                        op(conn)
                            .await
                            .map(|value| Box::new(value) as Box<dyn Any + Send>)
                    })
                });
                sender
                    .send(Job {
                        op,
                        reply,
                        savepoint,
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

async fn run(mut conn: AnyConnection, mut receiver: mpsc::Receiver<Job>) {
    while let Some(first) = receiver.recv().await {
        let mut jobs = vec![first];
        // One yield lets request tasks that are already runnable enqueue their writes, so they
        // share this group's commit instead of each paying for its own.
        let mut yielded = false;
        while jobs.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        run_group(&mut conn, jobs).await;
    }
}

/// Runs one op, turning a panic into an internal error: the writer task must outlive any bug in
/// a single write, or every later write would fail.
async fn run_op(op: Op, conn: &mut AnyConnection) -> Outcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(op(conn)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::internal_msg(
            "a write panicked; its transaction is rolled back",
        )),
    }
}

async fn run_group(conn: &mut AnyConnection, jobs: Vec<Job>) {
    // A transaction left open by an earlier failure (a ROLLBACK that itself failed) would make
    // every later BEGIN fail; clear it once and retry before giving up on this group.
    let mut begun = conn.execute("BEGIN IMMEDIATE").await;
    if begun.is_err() {
        let _ = conn.execute("ROLLBACK").await;
        begun = conn.execute("BEGIN IMMEDIATE").await;
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
            let outcome = run_op(job.op, conn).await;
            if let Err(Error::Internal { context, .. }) = &outcome {
                broken = Some(format!("a write failed: {context}"));
            }
            outcomes.push((job.reply, outcome));
            continue;
        }
        if let Err(error) = conn.execute("SAVEPOINT slipway_write").await {
            broken = Some(format!("creating a savepoint: {error}"));
            outcomes.push((
                job.reply,
                Err(Error::internal("creating a savepoint", error)),
            ));
            continue;
        }
        let outcome = run_op(job.op, conn).await;
        let settle = if outcome.is_ok() {
            conn.execute("RELEASE slipway_write").await
        } else {
            match conn.execute("ROLLBACK TO slipway_write").await {
                Ok(_) => conn.execute("RELEASE slipway_write").await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = settle {
            broken = Some(format!("settling a savepoint: {error}"));
        }
        outcomes.push((job.reply, outcome));
    }
    let committed = match broken {
        None => conn
            .execute("COMMIT")
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
            let _ = conn.execute("ROLLBACK").await;
            tracing::error!(%reason, "a grouped SQLite write transaction failed and was rolled back");
            for (reply, outcome) in outcomes {
                // A request that failed on its own keeps its own error; the others learn that
                // nothing of theirs was written.
                let outcome = match outcome {
                    Err(
                        error @ (Error::InvalidParameter(_)
                        | Error::NotFound(_)
                        | Error::AlreadyExists(_)),
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
