//! Consistent copies of the metadata store, taken while servers keep writing, and their restore
//! into an empty store. SQLite: its online backup API, all pages in one step, which in WAL mode
//! is one read transaction (a consistent snapshot that never blocks the writer). PostgreSQL:
//! `pg_dump`'s custom format (one repeatable-read snapshot) and `pg_restore` in one transaction;
//! the password goes to them in PGPASSWORD, never on a command line.

use std::path::Path;
use std::process::Stdio;

use slipway_core::{Error, Result};

use crate::uri::BackendUri;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `sqlite` (a database file) or `pg_dump` (pg_dump's custom format).
    pub format: &'static str,
    /// The newest schema migration in the copy: a restore needs a slipway that knows it.
    pub schema_version: i64,
}

/// Writes a consistent copy of the store at `uri` to `dest`.
pub async fn snapshot(uri: &BackendUri, dest: &Path) -> Result<Snapshot> {
    match uri {
        BackendUri::Sqlite(path) => {
            let (path, dest) = (path.clone(), dest.to_path_buf());
            tokio::task::spawn_blocking(move || sqlite_snapshot(&path, &dest))
                .await
                .map_err(|e| Error::internal("copying the SQLite database", e))?
        }
        BackendUri::Postgres(url) => {
            let (dbname, password) = split_password(url);
            run_tool(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    "--file",
                    &dest.to_string_lossy(),
                    "--dbname",
                    &dbname,
                ],
                password.as_deref(),
            )
            .await?;
            Ok(Snapshot {
                format: "pg_dump",
                schema_version: postgres_schema_version(url).await?,
            })
        }
    }
}

fn sqlite_snapshot(path: &Path, dest: &Path) -> Result<Snapshot> {
    let lite = |what: &'static str| move |e: rusqlite::Error| Error::internal(what, e);
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "there is no SQLite database at {}",
            path.display()
        )));
    }
    let source = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(lite("opening the SQLite database"))?;
    source
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(lite("configuring the SQLite database"))?;
    let mut copy = rusqlite::Connection::open(dest).map_err(lite("creating the copy"))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)
            .map_err(lite("starting SQLite's online backup"))?;
        // Every page in one step: one read transaction, so the copy is one point in time.
        loop {
            match backup
                .step(-1)
                .map_err(lite("copying the SQLite database"))?
            {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => continue,
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(lite("checking the copy"))?;
    if check != "ok" {
        return Err(Error::internal(
            "checking the copy",
            std::io::Error::other(check),
        ));
    }
    let schema_version: i64 = copy
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(|_| {
            Error::invalid(format!(
                "{} holds no slipway store (no schema migrations)",
                path.display()
            ))
        })?;
    // The copy is a plain file: no WAL beside it.
    copy.execute_batch("PRAGMA journal_mode = DELETE")
        .map_err(lite("finishing the copy"))?;
    Ok(Snapshot {
        format: "sqlite",
        schema_version,
    })
}

async fn postgres_schema_version(url: &str) -> Result<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(url)
        .await
        .map_err(|e| Error::internal("connecting to PostgreSQL", e))?;
    let (version,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| Error::internal("reading the schema version", e))?;
    Ok(version)
}

/// Restores a snapshot into `uri`, which must hold no slipway store yet: a SQLite file that does
/// not exist, or an empty PostgreSQL database.
pub async fn restore(uri: &BackendUri, snapshot: &Path, format: &str) -> Result<()> {
    match (uri, format) {
        (BackendUri::Sqlite(path), "sqlite") => {
            if path.exists() {
                return Err(Error::invalid(format!(
                    "{} exists: restore into a new file (move the old one away first)",
                    path.display()
                )));
            }
            if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder)
                    .map_err(|e| Error::internal("creating the database's folder", e))?;
            }
            // Copied beside the target and renamed: a crash leaves no half database.
            let partial = path.with_extension("restoring");
            std::fs::copy(snapshot, &partial)
                .and_then(|_| std::fs::File::open(&partial)?.sync_all())
                .and_then(|()| std::fs::rename(&partial, path))
                .map_err(|e| Error::internal("writing the restored database", e))?;
            Ok(())
        }
        (BackendUri::Postgres(url), "pg_dump") => {
            let empty = {
                use sqlx::Connection;
                let mut conn = sqlx::postgres::PgConnection::connect(url)
                    .await
                    .map_err(|e| Error::internal("connecting to PostgreSQL", e))?;
                let (tables,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema()",
                )
                .fetch_one(&mut conn)
                .await
                .map_err(|e| Error::internal("looking at the target database", e))?;
                tables == 0
            };
            if !empty {
                return Err(Error::invalid(
                    "the target PostgreSQL database has tables: restore into an empty one (createdb)",
                ));
            }
            let (dbname, password) = split_password(url);
            run_tool(
                "pg_restore",
                &[
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    "--dbname",
                    &dbname,
                    &snapshot.to_string_lossy(),
                ],
                password.as_deref(),
            )
            .await
        }
        (_, format) => Err(Error::invalid(format!(
            "a {format} snapshot cannot be restored into {}: restore into the same kind of store it came from",
            uri.redacted()
        ))),
    }
}

/// The URL without its password, and the password (percent-decoded).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), None);
    };
    let Some(at) = url[scheme_end + 3..].find('@').map(|i| i + scheme_end + 3) else {
        return (url.to_owned(), None);
    };
    let credentials = &url[scheme_end + 3..at];
    match credentials.split_once(':') {
        Some((user, password)) => (
            format!("{}{user}{}", &url[..scheme_end + 3], &url[at..]),
            Some(percent_decode(password)),
        ),
        None => (url.to_owned(), None),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(value) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn run_tool(tool: &str, args: &[&str], password: Option<&str>) -> Result<()> {
    let mut command = tokio::process::Command::new(tool);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().await.map_err(|e| {
        Error::invalid(format!(
            "could not run {tool} ({e}): PostgreSQL backups use PostgreSQL's own client tools; install them (Debian: postgresql-client)"
        ))
    })?;
    if !output.status.success() {
        return Err(Error::internal(
            "a PostgreSQL client tool failed",
            std::io::Error::other(format!(
                "{tool}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url() {
        assert_eq!(
            split_password("postgresql://u:p%40ss@h:5432/db"),
            (
                "postgresql://u@h:5432/db".to_owned(),
                Some("p@ss".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
    }
}
