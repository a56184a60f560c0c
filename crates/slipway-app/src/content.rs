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

    /// The experiment whose artifacts a version's source points into, if any: the run's or
    /// logged model's experiment, or the first segment of an `mlflow-artifacts:` path (runs
    /// keep their artifacts under their experiment's id).
    pub(crate) async fn source_experiment(
        &self,
        source: &str,
        run_id: Option<&str>,
        model_id: Option<&str>,
    ) -> Result<Option<String>> {
        if let Some(model_id) = model_id.filter(|id| !id.is_empty()) {
            let model = self.store().get_logged_model(model_id).await?;
            return Ok(Some(model.experiment_id.to_string()));
        }
        let run_id = run_id
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                source
                    .strip_prefix("runs:/")
                    .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            });
        if let Some(run_id) = run_id {
            let run = self.store().get_run(&RunId::parse(&run_id)?).await?;
            return Ok(Some(run.info.experiment_id.to_string()));
        }
        if let Some(model_id) = source.strip_prefix("models:/") {
            let model = self.store().get_logged_model(model_id).await?;
            return Ok(Some(model.experiment_id.to_string()));
        }
        Ok(crate::artifacts::proxied_path(source)
            .ok()
            .and_then(|path| {
                path.as_str()
                    .split('/')
                    .next()
                    .filter(|segment| {
                        !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
                    })
                    .map(str::to_owned)
            }))
    }

    /// Refuses a caller who may not read the experiment a version's files come from: registering,
    /// deploying or rolling out such a version would hand them, through the registry or a
    /// deployment, what their permissions hide (a confused deputy).
    pub(crate) async fn require_source_readable(
        &self,
        what: &str,
        source: &str,
        run_id: Option<&str>,
        model_id: Option<&str>,
    ) -> Result<()> {
        let Some(experiment) = self.source_experiment(source, run_id, model_id).await? else {
            return Ok(());
        };
        if !self.hides(slipway_core::auth::ResourceKind::Experiment, &experiment) {
            return Ok(());
        }
        let message = format!(
            "user '{}' has NO_PERMISSIONS on experiment {experiment}, where {what} comes from; ask for READ on it first",
            self.caller().actor
        );
        self.record_denial(
            "registry.source_hidden",
            format!("experiment:{experiment}"),
            &message,
        )
        .await?;
        Err(Error::permission_denied(message))
    }

    /// [`App::require_source_readable`] for a registered version.
    pub(crate) async fn require_version_readable(&self, name: &str, version: &str) -> Result<()> {
        let model_version = self
            .store()
            .get_model_version(name, slipway_core::validate::version_number(version)?)
            .await?;
        self.require_source_readable(
            &format!("version {version} of '{name}'"),
            &model_version.source,
            model_version.run_id.as_deref(),
            model_version.model_id.as_deref(),
        )
        .await
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
        let (location, Some(root)) = self.source_location(source).await? else {
            return Ok(None);
        };
        // Registering freezes the folder: it must be one run's or logged model's artifacts (or
        // below), never an experiment's or the store's root, which would freeze others' runs.
        let inside_artifacts = root
            .as_str()
            .split('/')
            .skip(2)
            .any(|segment| segment == "artifacts");
        if !inside_artifacts {
            return Err(Error::invalid(format!(
                "version source '{location}' is not inside a run's or logged model's artifacts (…/<run>/artifacts/… or …/models/<id>/artifacts/…); a registered version's files become immutable, so they must be the model's own"
            )));
        }
        Ok(Some(VersionContent {
            storage_path: root.as_str().to_owned(),
            manifest: self.build_manifest(&root).await?,
        }))
    }
}
