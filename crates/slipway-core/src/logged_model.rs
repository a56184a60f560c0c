//! MLflow 3 LoggedModels: a model logged by a run (or on its own), with params, tags and metrics.

use crate::error::{Error, Result};
use crate::tracking::{ExperimentId, Metric, Param, Tag};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedModelStatus {
    Pending,
    Ready,
    Failed,
}

impl LoggedModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::Failed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "LOGGED_MODEL_PENDING" | "1" => Ok(LoggedModelStatus::Pending),
            "LOGGED_MODEL_READY" | "2" => Ok(LoggedModelStatus::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => Ok(LoggedModelStatus::Failed),
            other => Err(Error::invalid(format!(
                "Invalid logged model status '{other}'. Expected one of LOGGED_MODEL_PENDING, LOGGED_MODEL_READY, LOGGED_MODEL_UPLOAD_FAILED"
            ))),
        }
    }

    pub fn from_db(raw: &str) -> Self {
        LoggedModelStatus::parse(raw).unwrap_or(LoggedModelStatus::Pending)
    }
}

pub fn generate_logged_model_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

pub fn parse_logged_model_id(raw: &str) -> Result<String> {
    if crate::tracking::is_safe_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(Error::invalid(format!(
            "Invalid logged model ID: '{}'",
            crate::validate::truncate_for_message(raw)
        )))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    pub model_id: String,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub artifact_uri: String,
    pub status: LoggedModelStatus,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub status_message: Option<String>,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
    pub metrics: Vec<Metric>,
    pub registrations: Vec<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct NewLoggedModel {
    pub model_id: String,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}
