//! The connection a write runs on: sqlx's `Any` connection (PostgreSQL, and SQLite writes that
//! still go through sqlx) or the SQLite writer thread's own synchronous rusqlite connection.
//!
//! Why two SQLite drivers: sqlx runs every SQLite statement on a worker thread and hands each
//! one over through a channel, so a small write of three statements costs three thread
//! wake-ups, and under load those hand-offs, not SQLite, set the pace (single `log-metric`
//! requests stalled at ~3.5k/s with the CPU half idle). The writer thread owns a rusqlite
//! connection and runs the hot writes on it directly, one hand-off per request instead of one
//! per statement. Code written against [`Tx`] runs unchanged on both, so there is still one
//! implementation of each write.

use rusqlite::types::{ToSqlOutput, Value};
use slipway_core::{Error, Result};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Executor, Row};

use crate::Backend;
use crate::sql::{Arg, Sql, db_err};

/// A connection inside a write transaction.
pub(crate) enum Tx<'c> {
    Any(&'c mut AnyConnection),
    /// Owned by the SQLite writer thread; every call completes without waiting.
    Lite(&'c mut rusqlite::Connection),
}

impl Tx<'_> {
    pub(crate) fn reborrow(&mut self) -> Tx<'_> {
        match self {
            Tx::Any(conn) => Tx::Any(conn),
            Tx::Lite(conn) => Tx::Lite(conn),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Tx::Any(conn) if conn.backend_name() != "SQLite")
    }

    /// A query builder with this connection's placeholder style.
    pub(crate) fn sql(&self, text: &str) -> Sql {
        match self {
            Tx::Any(conn) => Sql::on(conn, text),
            Tx::Lite(_) => Sql::new(Backend::Sqlite, text),
        }
    }

    /// Runs a statement and returns the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: &Sql, context: &'static str) -> Result<u64> {
        match self {
            Tx::Any(conn) => Ok(sql
                .query()
                .execute(&mut **conn)
                .await
                .map_err(db_err(context))?
                .rows_affected()),
            Tx::Lite(conn) => lite_execute(conn, sql).map_err(lite_err(context)),
        }
    }

    /// Runs statements one after another (on sqlx's SQLite, as one round trip).
    pub(crate) async fn execute_all(
        &mut self,
        statements: Vec<Sql>,
        context: &'static str,
    ) -> Result<()> {
        match self {
            Tx::Any(conn) => Sql::execute_all(conn, statements)
                .await
                .map_err(db_err(context)),
            Tx::Lite(conn) => {
                for sql in &statements {
                    lite_execute(conn, sql).map_err(lite_err(context))?;
                }
                Ok(())
            }
        }
    }

    pub(crate) async fn fetch_all<R: Record>(
        &mut self,
        sql: &Sql,
        context: &'static str,
    ) -> Result<Vec<R>> {
        match self {
            Tx::Any(conn) => {
                let rows = sql
                    .query()
                    .fetch_all(&mut **conn)
                    .await
                    .map_err(db_err(context))?;
                rows.iter().map(R::from_any).collect()
            }
            Tx::Lite(conn) => lite_fetch(conn, sql).map_err(lite_err(context))?,
        }
    }

    pub(crate) async fn fetch_optional<R: Record>(
        &mut self,
        sql: &Sql,
        context: &'static str,
    ) -> Result<Option<R>> {
        Ok(self.fetch_all(sql, context).await?.into_iter().next())
    }

    /// Transaction control (`BEGIN`, `SAVEPOINT`, `COMMIT`, ...): text without parameters.
    pub(crate) async fn control(&mut self, text: &'static str) -> Result<(), String> {
        match self {
            Tx::Any(conn) => conn
                .execute(text)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Tx::Lite(conn) => conn.execute_batch(text).map_err(|e| e.to_string()),
        }
    }
}

/// Reads rows through a pool (outside any write transaction).
pub(crate) async fn read_all<R: Record>(
    pool: &sqlx::AnyPool,
    sql: &Sql,
    context: &'static str,
) -> Result<Vec<R>> {
    let rows = sql.query().fetch_all(pool).await.map_err(db_err(context))?;
    rows.iter().map(R::from_any).collect()
}

fn lite_execute(conn: &rusqlite::Connection, sql: &Sql) -> rusqlite::Result<u64> {
    let mut statement = conn.prepare_cached(sql.text())?;
    let changed = statement.execute(rusqlite::params_from_iter(sql.args()))?;
    Ok(changed as u64)
}

fn lite_fetch<R: Record>(
    conn: &rusqlite::Connection,
    sql: &Sql,
) -> rusqlite::Result<Result<Vec<R>>> {
    let mut statement = conn.prepare_cached(sql.text())?;
    let mut rows = statement.query(rusqlite::params_from_iter(sql.args()))?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        match R::from_lite(row) {
            Ok(record) => records.push(record),
            Err(error) => return Ok(Err(error)),
        }
    }
    Ok(Ok(records))
}

fn lite_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |error| Error::internal(context, error)
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::I64(value) => ToSqlOutput::Owned(Value::Integer(*value)),
            Arg::F64(value) => ToSqlOutput::Owned(Value::Real(*value)),
            Arg::Text(value) => ToSqlOutput::Borrowed(value.as_str().into()),
            Arg::OptText(Some(value)) => ToSqlOutput::Borrowed(value.as_str().into()),
            Arg::OptI64(Some(value)) => ToSqlOutput::Owned(Value::Integer(*value)),
            Arg::OptText(None) | Arg::OptI64(None) => ToSqlOutput::Owned(Value::Null),
            Arg::Blob(value) => ToSqlOutput::Borrowed(value.as_slice().into()),
        })
    }
}

/// One column value, read the same way from either driver.
pub(crate) trait Column: Sized {
    fn from_any(row: &AnyRow, index: usize) -> Result<Self>;
    fn from_lite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self>;
}

fn decode_err<E: std::error::Error + Send + Sync + 'static>(
    index: usize,
) -> impl FnOnce(E) -> Error {
    move |error| Error::internal(format!("decoding column {index}"), error)
}

macro_rules! column {
    ($($ty:ty),*) => {$(
        impl Column for $ty {
            fn from_any(row: &AnyRow, index: usize) -> Result<Self> {
                row.try_get::<$ty, _>(index).map_err(decode_err(index))
            }
            fn from_lite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self> {
                row.get::<_, $ty>(index).map_err(decode_err(index))
            }
        }
    )*};
}
column!(String, Option<String>, i64, Option<i64>, Vec<u8>);

impl Column for f64 {
    /// SQLite returns an integral REAL as an integer when it went through an expression.
    fn from_any(row: &AnyRow, index: usize) -> Result<Self> {
        match row.try_get::<f64, _>(index) {
            Ok(value) => Ok(value),
            Err(float_error) => row
                .try_get::<i64, _>(index)
                .map(|value| value as f64)
                .map_err(|_| decode_err(index)(float_error)),
        }
    }
    fn from_lite(row: &rusqlite::Row<'_>, index: usize) -> Result<Self> {
        // rusqlite converts an INTEGER to f64 by itself.
        row.get::<_, f64>(index).map_err(decode_err(index))
    }
}

/// A result row as a tuple of [`Column`]s, in select-list order.
pub(crate) trait Record: Sized {
    fn from_any(row: &AnyRow) -> Result<Self>;
    fn from_lite(row: &rusqlite::Row<'_>) -> Result<Self>;
}

macro_rules! record {
    ($(($($name:ident $index:tt),+)),*) => {$(
        impl<$($name: Column),+> Record for ($($name,)+) {
            fn from_any(row: &AnyRow) -> Result<Self> {
                Ok(($($name::from_any(row, $index)?,)+))
            }
            fn from_lite(row: &rusqlite::Row<'_>) -> Result<Self> {
                Ok(($($name::from_lite(row, $index)?,)+))
            }
        }
    )*};
}
record!(
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
);
