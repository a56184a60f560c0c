//! Backend store URIs, written the way MLflow users already write them.

use std::path::PathBuf;

use slipway_core::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendUri {
    /// A database file; its folder is created if missing.
    Sqlite(PathBuf),
    /// A sqlx-ready `postgres://` URL.
    Postgres(String),
}

impl BackendUri {
    /// Accepts SQLAlchemy-style URIs as MLflow does: `sqlite:///relative.db`,
    /// `sqlite:////absolute/path.db`, `postgresql://user@host:port/db` (and `postgres://`,
    /// `postgresql+psycopg2://`).
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        let (scheme, rest) = raw.split_once(':').ok_or_else(|| unsupported(raw))?;
        let scheme = scheme
            .split('+')
            .next()
            .unwrap_or(scheme)
            .to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => {
                let path = rest
                    .strip_prefix("///")
                    .or_else(|| rest.strip_prefix("//"))
                    .unwrap_or(rest);
                let path = path.split('?').next().unwrap_or(path);
                if path.is_empty() || path == ":memory:" {
                    return Err(Error::invalid(format!(
                        "backend store URI '{raw}' names no database file; use sqlite:///path/to/slipway.db"
                    )));
                }
                Ok(BackendUri::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                let rest = rest.strip_prefix("//").ok_or_else(|| unsupported(raw))?;
                Ok(BackendUri::Postgres(format!("postgres://{rest}")))
            }
            _ => Err(unsupported(raw)),
        }
    }

    /// For logs: no password.
    pub fn redacted(&self) -> String {
        match self {
            BackendUri::Sqlite(path) => format!("sqlite:///{}", path.display()),
            BackendUri::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &url[scheme_end + 3..at];
                    let user = credentials.split(':').next().unwrap_or("");
                    format!("postgres://{user}@{}", &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

fn unsupported(raw: &str) -> Error {
    Error::invalid(format!(
        "unsupported backend store URI '{raw}': use sqlite:///path/to/file.db or postgresql://user@host:port/database"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mlflow_style_uris() {
        assert_eq!(
            BackendUri::parse("sqlite:///mlruns.db").unwrap(),
            BackendUri::Sqlite("mlruns.db".into())
        );
        assert_eq!(
            BackendUri::parse("sqlite:////tmp/x/mlruns.db").unwrap(),
            BackendUri::Sqlite("/tmp/x/mlruns.db".into())
        );
        assert_eq!(
            BackendUri::parse("postgresql+psycopg2://u:p@h:5432/db").unwrap(),
            BackendUri::Postgres("postgres://u:p@h:5432/db".into())
        );
        assert!(BackendUri::parse("mysql://x").is_err());
        assert!(BackendUri::parse("sqlite://").is_err());
        assert!(BackendUri::parse("nonsense").is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        let uri = BackendUri::parse("postgresql://u:secret@h:5432/db").unwrap();
        assert_eq!(uri.redacted(), "postgres://u@h:5432/db");
    }
}
