//! Configuration kept as one JSON document per table (alerting rules, retraining triggers):
//! applied whole, with a revision that guards against applying over someone else's change.

use slipway_core::{Error, Result, Revisioned};
use sqlx::AssertSqlSafe;

use crate::SqlStore;
use crate::sql::{db_err, get_i64, get_str};

pub(crate) async fn get<T: serde::de::DeserializeOwned>(
    store: &SqlStore,
    table: &'static str,
    what: &'static str,
) -> Result<Option<Revisioned<T>>> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {table} WHERE id = 1")))
        .fetch_optional(&store.read)
        .await
        .map_err(db_err(what))?;
    row.map(|row| {
        Ok(Revisioned {
            config: serde_json::from_str(&get_str(&row, "body")?)
                .map_err(|e| Error::internal(what, e))?,
            revision: get_i64(&row, "revision")?,
            updated_ms: get_i64(&row, "updated_ms")?,
            updated_by: get_str(&row, "updated_by")?,
        })
    })
    .transpose()
}

/// Replaces the document when the stored revision is still `expected` (0: none stored);
/// `name` says what it is in the refusal.
pub(crate) async fn put<T: serde::Serialize + Send + 'static>(
    store: &SqlStore,
    table: &'static str,
    name: &'static str,
    value: T,
    expected: i64,
    by: String,
    now_ms: i64,
) -> Result<Revisioned<T>> {
    let body =
        serde_json::to_string(&value).map_err(|e| Error::internal("encoding the document", e))?;
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                let current: i64 = sqlx::query(AssertSqlSafe(format!(
                    "SELECT revision FROM {table} WHERE id = 1"
                )))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("reading a document's revision"))?
                .map(|row| get_i64(&row, "revision"))
                .transpose()?
                .unwrap_or(0);
                if current != expected {
                    return Err(Error::invalid(format!(
                        "the {name} changed meanwhile (revision {current}, expected {expected}): read it again and re-apply"
                    )));
                }
                let revision = current.saturating_add(1);
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {table} (id, body, revision, updated_ms, updated_by) \
                     VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                     body = excluded.body, revision = excluded.revision, \
                     updated_ms = excluded.updated_ms, updated_by = excluded.updated_by"
                )))
                .bind(body)
                .bind(revision)
                .bind(now_ms)
                .bind(by.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err("storing a document"))?;
                Ok(Revisioned {
                    config: value,
                    revision,
                    updated_ms: now_ms,
                    updated_by: by,
                })
            })
        })
        .await
}
