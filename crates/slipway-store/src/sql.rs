//! A small builder for dynamic SQL with `$N` placeholders, which both SQLite and PostgreSQL
//! accept through sqlx's `Any` driver (its `QueryBuilder` emits `?`, which PostgreSQL rejects).

use std::fmt::Write as _;

use slipway_core::Error;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row};

use crate::Backend;

/// A bound value. Only the types the `Any` driver carries on both backends.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    F64(f64),
    Text(String),
    OptText(Option<String>),
    OptI64(Option<i64>),
    Blob(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::I64(value)
    }
}
impl From<f64> for Arg {
    fn from(value: f64) -> Self {
        Arg::F64(value)
    }
}
impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(value)
    }
}
impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(value.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(value: &String) -> Self {
        Arg::Text(value.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Arg::OptText(value)
    }
}
impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Self {
        Arg::OptText(value.map(str::to_owned))
    }
}
impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Arg::OptI64(value)
    }
}
impl From<Vec<u8>> for Arg {
    fn from(value: Vec<u8>) -> Self {
        Arg::Blob(value)
    }
}
impl From<bool> for Arg {
    fn from(value: bool) -> Self {
        Arg::I64(i64::from(value))
    }
}

/// Placeholders are `$N` on PostgreSQL and anonymous `?` on SQLite. SQLite looks up a named
/// parameter by scanning every name (`sqlite3_bind_parameter_name` walks a list), so a 4500-value
/// `INSERT` with `$N` names costs quadratic time there: 70 ms instead of 2 ms per 1000-metric
/// batch. The builder binds in textual order, so anonymous placeholders line up.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
    positional: bool,
}

impl Sql {
    pub(crate) fn new(backend: Backend, text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
            positional: backend == Backend::Sqlite,
        }
    }

    /// For code that only holds a connection (inside a write transaction).
    pub(crate) fn on(conn: &AnyConnection, text: &str) -> Self {
        let backend = if conn.backend_name() == "SQLite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        Sql::new(backend, text)
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next `$N` placeholder and remembers its value.
    pub(crate) fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        if self.positional {
            self.text.push('?');
        } else {
            let _ = write!(self.text, "${}", self.args.len());
        }
        self
    }

    /// Appends `($a, $b, ...)` for an `IN` list; an empty list becomes `(NULL)`, which matches
    /// nothing, rather than invalid SQL.
    pub(crate) fn bind_list<T: Into<Arg>>(
        &mut self,
        values: impl IntoIterator<Item = T>,
    ) -> &mut Self {
        self.text.push('(');
        let mut first = true;
        for value in values {
            if !first {
                self.text.push_str(", ");
            }
            first = false;
            self.bind(value);
        }
        if first {
            self.text.push_str("NULL");
        }
        self.text.push(')');
        self
    }

    /// Runs several statements. SQLite takes them as one multi-statement query, a single round
    /// trip to its connection thread (sqlx binds the anonymous placeholders across the
    /// statements in order); PostgreSQL's extended protocol takes one statement at a time.
    pub(crate) async fn execute_all(
        conn: &mut AnyConnection,
        statements: Vec<Sql>,
    ) -> Result<(), sqlx::Error> {
        if statements.iter().all(|sql| sql.positional) && statements.len() > 1 {
            let mut combined = Sql {
                text: String::new(),
                args: Vec::new(),
                positional: true,
            };
            for sql in statements {
                if !combined.text.is_empty() {
                    combined.text.push_str(";\n");
                }
                combined.text.push_str(&sql.text);
                combined.args.extend(sql.args);
            }
            combined.query().execute(&mut *conn).await?;
        } else {
            for sql in statements {
                sql.query().execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.as_str()));
        for arg in &self.args {
            query = match arg {
                Arg::I64(value) => query.bind(*value),
                Arg::F64(value) => query.bind(*value),
                Arg::Text(value) => query.bind(value.clone()),
                Arg::OptText(value) => query.bind(value.clone()),
                Arg::OptI64(value) => query.bind(*value),
                Arg::Blob(value) => query.bind(value.clone()),
            };
        }
        query
    }
}

/// Maps a driver error to a domain error; unique violations become `AlreadyExists` with the
/// caller's message, everything else is internal and logged, never shown to clients.
pub(crate) fn db_err(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |error| {
        // PostgreSQL refuses NUL characters in text (SQLSTATE 22021) and malformed escapes
        // (22P05); those are the client's input, not a server fault.
        let code = error
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned());
        match code.as_deref() {
            Some("22021" | "22P05") => {
                Error::invalid("text values must not contain NUL (\\u0000) characters")
            }
            _ => Error::internal(context, error),
        }
    }
}

/// Runs a DELETE that must remove something: a tag delete of a key never set is a NotFound in
/// MLflow. `missing` builds that error.
pub(crate) async fn delete_existing(
    conn: &mut AnyConnection,
    query: Query<'_, Any, AnyArguments>,
    context: &'static str,
    missing: impl FnOnce() -> Error,
) -> Result<(), Error> {
    let deleted = query.execute(conn).await.map_err(db_err(context))?;
    if deleted.rows_affected() == 0 {
        return Err(missing());
    }
    Ok(())
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

pub(crate) fn get_str(row: &AnyRow, column: &str) -> Result<String, Error> {
    row.try_get::<String, _>(column)
        .map_err(|e| Error::internal(format!("decoding column {column}"), e))
}

pub(crate) fn get_opt_str(row: &AnyRow, column: &str) -> Result<Option<String>, Error> {
    row.try_get::<Option<String>, _>(column)
        .map_err(|e| Error::internal(format!("decoding column {column}"), e))
}

pub(crate) fn get_i64(row: &AnyRow, column: &str) -> Result<i64, Error> {
    row.try_get::<i64, _>(column)
        .map_err(|e| Error::internal(format!("decoding column {column}"), e))
}

pub(crate) fn get_opt_i64(row: &AnyRow, column: &str) -> Result<Option<i64>, Error> {
    row.try_get::<Option<i64>, _>(column)
        .map_err(|e| Error::internal(format!("decoding column {column}"), e))
}

/// SQLite returns an integral REAL as an integer when it went through an expression, so accept
/// both.
pub(crate) fn get_f64(row: &AnyRow, column: &str) -> Result<f64, Error> {
    match row.try_get::<f64, _>(column) {
        Ok(value) => Ok(value),
        Err(float_error) => row
            .try_get::<i64, _>(column)
            .map(|value| value as f64)
            .map_err(|_| Error::internal(format!("decoding column {column}"), float_error)),
    }
}

/// Metric values as stored: NaN is `(0, is_nan = 1)` because SQLite cannot store NaN.
pub(crate) fn stored_value(value: f64) -> (f64, i64) {
    if value.is_nan() { (0.0, 1) } else { (value, 0) }
}

pub(crate) fn loaded_value(value: f64, is_nan: i64) -> f64 {
    if is_nan != 0 { f64::NAN } else { value }
}
