//! Artifacts: the `mlflow-artifacts` proxy and listings of a run's artifacts.
//!
//! Runs created here get `mlflow-artifacts:/<experiment>/<run>/artifacts` as their artifact URI;
//! the client resolves that against the tracking URI and talks to the proxy routes, which map the
//! path below `mlflow-artifacts:/` onto the artifact store.

use slipway_core::artifact_path::ArtifactPath;
use slipway_core::ports::{ArtifactEntry, ArtifactObject, ByteStream};
use slipway_core::tracking::RunId;
use slipway_core::{Error, Result};

use crate::App;

const PROXY_SCHEME: &str = "mlflow-artifacts:";

/// One entry of a run artifact listing: `path` is relative to the run's artifact root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub size: Option<u64>,
}

/// The store path behind an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/abc/artifacts` ->
/// `1/abc/artifacts`); other schemes are not stored by this server.
pub fn proxied_path(uri: &str) -> Result<ArtifactPath> {
    let rest = uri.strip_prefix(PROXY_SCHEME).ok_or_else(|| {
        Error::invalid(format!(
            "artifact URI '{uri}' is not served by this server's artifact proxy (only mlflow-artifacts: URIs are)"
        ))
    })?;
    // `mlflow-artifacts://host:port/path` names another proxy; the path part is what we store.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host
            .split_once('/')
            .map(|(_, path)| path)
            .unwrap_or(""),
        None => rest,
    };
    ArtifactPath::parse(path)
}

impl App {
    /// Refuses a write or delete at `path` that would change a registered version's files: a
    /// version's bytes are what was reviewed and approved, and its number must keep naming them.
    async fn guard_registered_files(&self, path: &ArtifactPath, action: &str) -> Result<()> {
        let Some((model, version)) = self.store.version_holding_path(path.as_str()).await? else {
            return Ok(());
        };
        let message = format!(
            "'{}' holds files of version {version} of registered model '{model}', which may not change after registration; log the new files under another path and register them as a new version",
            path.as_str()
        );
        self.record_denial(
            &format!("artifacts.{action}"),
            format!("artifact:{}", path.as_str()),
            &message,
        )
        .await?;
        Err(Error::permission_denied(message))
    }

    pub async fn put_artifact(&self, path: &str, body: ByteStream) -> Result<u64> {
        let path = ArtifactPath::parse(path)?;
        self.guard_registered_files(&path, "put").await?;
        let size = self.artifacts.put(&path, body).await?;
        // Objects live outside the database, so the entry follows the upload that succeeded.
        self.store
            .append_audit(self.audit_event(
                "artifacts.put",
                format!("artifact:{}", path.as_str()),
                serde_json::json!({ "bytes": size }),
            ))
            .await?;
        Ok(size)
    }

    pub async fn get_artifact(&self, path: &str) -> Result<Option<ArtifactObject>> {
        let path = ArtifactPath::parse(path)?;
        self.artifacts.get(&path).await
    }

    /// Lists a proxy directory (`None` path = the root); `None` when it is a file or missing.
    pub async fn list_artifacts(&self, path: Option<&str>) -> Result<Option<Vec<ArtifactEntry>>> {
        let path = match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            Some(raw) => Some(ArtifactPath::parse(raw)?),
            None => None,
        };
        self.artifacts.list(path.as_ref()).await
    }

    pub async fn delete_artifact(&self, path: &str) -> Result<()> {
        let path = ArtifactPath::parse(path)?;
        self.guard_registered_files(&path, "delete").await?;
        self.artifacts.delete(&path).await?;
        self.store
            .append_audit(self.audit_event(
                "artifacts.delete",
                format!("artifact:{}", path.as_str()),
                serde_json::json!({}),
            ))
            .await?;
        Ok(())
    }

    /// The tracking API's listing: entries under `path` of a run's artifacts, with paths
    /// relative to the run's artifact root, and that root.
    pub async fn list_run_artifacts(
        &self,
        run_id: &RunId,
        path: Option<&str>,
    ) -> Result<(String, Vec<FileInfo>)> {
        let run = self.store.get_run(run_id).await?;
        let root_uri = run.info.artifact_uri.clone();
        let files = self.list_under(&root_uri, path).await?;
        Ok((root_uri, files))
    }

    /// Lists `relative` below an artifact root URI, returning paths relative to the root.
    pub async fn list_under(
        &self,
        root_uri: &str,
        relative: Option<&str>,
    ) -> Result<Vec<FileInfo>> {
        let root = proxied_path(root_uri)?;
        let relative = relative
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty());
        let dir = match relative {
            Some(relative) => root.join(relative)?,
            None => root,
        };
        let entries = self.artifacts.list(Some(&dir)).await?.unwrap_or_default();
        Ok(entries
            .into_iter()
            .map(|entry| FileInfo {
                path: match relative {
                    Some(prefix) => format!("{prefix}/{}", entry.name),
                    None => entry.name,
                },
                is_dir: entry.is_dir,
                size: entry.size,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_paths_drop_scheme_and_host() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts")
                .unwrap()
                .as_str(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/x")
                .unwrap()
                .as_str(),
            "1/x"
        );
        assert!(proxied_path("s3://bucket/x").is_err());
        assert!(proxied_path("mlflow-artifacts:/../etc").is_err());
    }
}
