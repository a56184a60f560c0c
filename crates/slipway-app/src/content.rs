//! What a registered version's files are: found where its source points in the artifact store,
//! hashed into a manifest when the version is created, and checked against it on every load.
//! The registry keeps the manifest (`model_version_content`); `artifacts.rs` refuses writes and
//! deletes under it while the version exists.

use futures::StreamExt;
use sha2::{Digest, Sha256};
use slipway_core::artifact_path::ArtifactPath;
use slipway_core::registry::{ContentManifest, ManifestEntry, VersionContent};
use slipway_core::tracking::RunId;
use slipway_core::{Error, Result};

use crate::App;

/// The most files one registered version may hold (MLflow model folders hold a handful; a
/// bound keeps one registration from walking an unbounded tree).
const MAX_VERSION_FILES: usize = 10_000;
/// Folder depth below the version's root that is walked.
const MAX_VERSION_DEPTH: usize = 32;

impl App {
    /// Where a version's `source` keeps its files: the URI, and the artifact-store path when
    /// it is in slipway's own store (`None` for another scheme or server).
    pub(crate) async fn source_location(
        &self,
        source: &str,
    ) -> Result<(String, Option<ArtifactPath>)> {
        let location = if let Some(rest) = source.strip_prefix("runs:/") {
            let (run_id, sub) = rest.split_once('/').unwrap_or((rest, ""));
            let run = self.store().get_run(&RunId::parse(run_id)?).await?;
            format!("{}/{sub}", run.info.artifact_uri.trim_end_matches('/'))
        } else if let Some(model_id) = source.strip_prefix("models:/") {
            self.store().get_logged_model(model_id).await?.artifact_uri
        } else {
            source.to_owned()
        };
        let path = crate::artifacts::proxied_path(location.trim_end_matches('/')).ok();
        Ok((location, path))
    }

    /// Hashes every file at `root` (a folder, or one file).
    pub(crate) async fn build_manifest(&self, root: &ArtifactPath) -> Result<ContentManifest> {
        if let Some(entry) = self.hash_file(root, None).await? {
            return Ok(ContentManifest::new(vec![entry]));
        }
        let mut files = Vec::new();
        let mut pending = vec![(root.clone(), String::new(), 0usize)];
        while let Some((dir, prefix, depth)) = pending.pop() {
            let Some(entries) = self.artifacts.list(Some(&dir)).await? else {
                continue;
            };
            for entry in entries {
                let relative = if prefix.is_empty() {
                    entry.name.clone()
                } else {
                    format!("{prefix}/{}", entry.name)
                };
                let path = dir.join(&entry.name)?;
                if entry.is_dir {
                    if depth + 1 > MAX_VERSION_DEPTH {
                        return Err(Error::invalid(format!(
                            "'{}' nests folders deeper than {MAX_VERSION_DEPTH} levels; a registered version's folder may not",
                            root.as_str()
                        )));
                    }
                    pending.push((path, relative, depth + 1));
                } else if let Some(hashed) = self.hash_file(&path, Some(relative)).await? {
                    files.push(hashed);
                    if files.len() > MAX_VERSION_FILES {
                        return Err(Error::invalid(format!(
                            "'{}' holds more than {MAX_VERSION_FILES} files; a registered version may hold at most that many",
                            root.as_str()
                        )));
                    }
                }
            }
        }
        Ok(ContentManifest::new(files))
    }

    /// SHA-256 and size of one stored file, streamed; `None` when it is not a file.
    async fn hash_file(
        &self,
        path: &ArtifactPath,
        relative: Option<String>,
    ) -> Result<Option<ManifestEntry>> {
        let Some(object) = self.artifacts.get(path).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = object.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::internal("reading a model file", e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let name = relative.unwrap_or_else(|| {
            path.as_str()
                .rsplit('/')
                .next()
                .unwrap_or(path.as_str())
                .to_owned()
        });
        Ok(Some(ManifestEntry {
            path: name,
            size,
            sha256: hex::encode(hasher.finalize()),
        }))
    }

    /// What a version's files were at registration, for a client that verifies what it
    /// downloads (`slipway serve`, replicas).
    pub async fn version_manifest(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<ContentManifest>> {
        self.visible_model(name)?;
        let version = slipway_core::validate::version_number(version)?;
        Ok(self
            .store()
            .model_version_content(name, version)
            .await?
            .map(|content| content.manifest))
    }

    /// The content to record for a new version with this source: `None` when its files are
    /// not in slipway's store (nothing here could change them, and nothing here serves them).
    pub(crate) async fn content_for_source(&self, source: &str) -> Result<Option<VersionContent>> {
        let (_, Some(root)) = self.source_location(source).await? else {
            return Ok(None);
        };
        Ok(Some(VersionContent {
            storage_path: root.as_str().to_owned(),
            manifest: self.build_manifest(&root).await?,
        }))
    }
}
