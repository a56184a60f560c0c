//! Model registry domain: registered models, their versions, tags, aliases and stages.

use crate::error::{Error, Result};
use crate::tracking::Tag;

/// Deprecated in MLflow but still used by clients: a version's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Case-insensitive, as MLflow's `get_canonical_stage`.
    pub fn parse(raw: &str) -> Result<Self> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid Model Version stage: {raw}. Value must be one of None, Staging, Production, Archived."
                ))
            })
    }

    pub fn from_db(raw: &str) -> Self {
        Stage::parse(raw).unwrap_or(Stage::None)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasVersion {
    pub alias: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: Option<String>,
    pub description: Option<String>,
    /// The newest version in each stage, as MLflow's `latest_versions`.
    pub latest_versions: Vec<ModelVersion>,
    pub tags: Vec<Tag>,
    pub aliases: Vec<AliasVersion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: Option<String>,
    pub current_stage: Stage,
    pub description: Option<String>,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub status: String,
    pub status_message: Option<String>,
    pub tags: Vec<Tag>,
    pub aliases: Vec<String>,
    pub model_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
    pub model_id: Option<String>,
    pub user_id: Option<String>,
    /// The number to give it (an import keeping MLflow's numbers): at least the model's next
    /// number, so a number is never reused. `None`: the next number.
    pub version: Option<i64>,
    /// The version's files as registered, when they are in slipway's artifact store: from then
    /// on they may not change, and every load checks them against this.
    pub content: Option<VersionContent>,
}

impl NewModelVersion {
    /// A version of `name` from `source` with nothing else said: the next number, no run,
    /// tags or content.
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> NewModelVersion {
        NewModelVersion {
            name: name.into(),
            source: source.into(),
            run_id: None,
            run_link: None,
            description: None,
            tags: Vec::new(),
            model_id: None,
            user_id: None,
            version: None,
            content: None,
        }
    }
}

/// The version tag that shows the content digest recorded at registration. Only the server
/// writes it; the authoritative copy is the registry's own record of the version's content.
pub const CONTENT_DIGEST_TAG: &str = "slipway.content_digest";

/// One file of a registered version's folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Relative to the version's folder (the file's own name for a single-file version).
    pub path: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// Every file of a registered version with its SHA-256, sorted by path; its digest names the
/// whole folder, so a changed, added or removed file changes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentManifest {
    pub files: Vec<ManifestEntry>,
}

impl ContentManifest {
    pub fn new(mut files: Vec<ManifestEntry>) -> ContentManifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        ContentManifest { files }
    }

    /// `sha256:` and the hex SHA-256 of one line per file (`sha256 size path`, the path JSON
    /// quoted so that no file name can forge a line).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for file in &self.files {
            let path = serde_json::to_string(&file.path).unwrap_or_default();
            hasher.update(format!("{} {} {path}\n", file.sha256, file.size).as_bytes());
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    pub fn entry(&self, path: &str) -> Option<&ManifestEntry> {
        self.files.iter().find(|file| file.path == path)
    }

    /// Checks a file as loaded against what was registered.
    pub fn verify(&self, path: &str, bytes: &[u8]) -> Result<()> {
        use sha2::{Digest, Sha256};
        let Some(entry) = self.entry(path) else {
            return Err(Error::invalid(format!(
                "'{path}' was not among the version's files when it was registered"
            )));
        };
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != entry.sha256 || bytes.len() as u64 != entry.size {
            return Err(Error::invalid(format!(
                "'{path}' changed since the version was registered: SHA-256 {actual} ({} bytes), registered {} ({} bytes); refusing to serve it",
                bytes.len(),
                entry.sha256,
                entry.size
            )));
        }
        Ok(())
    }
}

/// Where a version's files are in slipway's artifact store, and what they were at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionContent {
    /// The artifact-store path of the version's folder (or single file).
    pub storage_path: String,
    pub manifest: ContentManifest,
}

#[cfg(test)]
mod content_tests {
    use super::*;

    fn entry(path: &str, bytes: &[u8]) -> ManifestEntry {
        use sha2::{Digest, Sha256};
        ManifestEntry {
            path: path.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    #[test]
    fn the_digest_names_every_file_and_its_bytes() {
        let manifest =
            ContentManifest::new(vec![entry("model.onnx", b"abc"), entry("MLmodel", b"x")]);
        assert_eq!(manifest.files[0].path, "MLmodel", "sorted by path");
        let same = ContentManifest::new(vec![entry("MLmodel", b"x"), entry("model.onnx", b"abc")]);
        assert_eq!(manifest.digest(), same.digest());
        assert!(manifest.digest().starts_with("sha256:"));
        let changed =
            ContentManifest::new(vec![entry("model.onnx", b"abd"), entry("MLmodel", b"x")]);
        assert_ne!(manifest.digest(), changed.digest());
        let renamed =
            ContentManifest::new(vec![entry("model2.onnx", b"abc"), entry("MLmodel", b"x")]);
        assert_ne!(manifest.digest(), renamed.digest());
        let added = ContentManifest::new(vec![
            entry("model.onnx", b"abc"),
            entry("MLmodel", b"x"),
            entry("extra", b""),
        ]);
        assert_ne!(manifest.digest(), added.digest());
        assert!(manifest.verify("model.onnx", b"abc").is_ok());
        let error = manifest
            .verify("model.onnx", b"abd")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("changed since the version was registered"),
            "{error}"
        );
        assert!(manifest.verify("other.onnx", b"abc").is_err());
    }
}
