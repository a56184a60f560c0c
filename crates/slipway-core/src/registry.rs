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
}
