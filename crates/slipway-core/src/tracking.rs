//! Tracking domain: experiments, runs and what is logged to them.

use std::fmt;

use crate::error::{Error, Result};

/// Experiment ids are decimal strings on the wire; `0` is the `Default` experiment created at
/// start-up. They are integers in the store so the next id comes from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExperimentId(i64);

impl ExperimentId {
    pub const DEFAULT: ExperimentId = ExperimentId(0);

    pub fn new(id: i64) -> Self {
        ExperimentId(id)
    }

    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim();
        match trimmed.parse::<i64>() {
            Ok(id) if id >= 0 => Ok(ExperimentId(id)),
            _ => Err(Error::invalid(format!(
                "Invalid experiment ID: '{raw}'. Experiment IDs are non-negative integers"
            ))),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A run id. New ones are 32 lowercase hex characters (a dashless UUID v4), but ids imported from
/// other MLflow stores may differ, so parsing only enforces what keeps them safe inside artifact
/// paths and SQL: 1..=256 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    pub fn generate() -> Self {
        RunId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn parse(raw: &str) -> Result<Self> {
        if is_safe_id(raw) {
            Ok(RunId(raw.to_owned()))
        } else {
            Err(Error::invalid(format!(
                "Invalid run ID: '{}'",
                crate::validate::truncate_for_message(raw)
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_safe_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 256
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleStage {
    Active,
    Deleted,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }

    pub fn from_db(raw: &str) -> Self {
        if raw == "deleted" {
            LifecycleStage::Deleted
        } else {
            LifecycleStage::Active
        }
    }
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "ACTIVE_ONLY" | "1" => Ok(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
            "ALL" | "3" => Ok(ViewType::All),
            other => Err(Error::invalid(format!(
                "Invalid view type '{other}'. Expected one of ACTIVE_ONLY, DELETED_ONLY, ALL"
            ))),
        }
    }

    /// The lifecycle stages this view admits, for a SQL `IN` list.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            ViewType::ActiveOnly => &["active"],
            ViewType::DeletedOnly => &["deleted"],
            ViewType::All => &["active", "deleted"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::Scheduled,
        RunStatus::Finished,
        RunStatus::Failed,
        RunStatus::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// Accepts the enum name or the proto number (protobuf JSON allows both).
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "RUNNING" | "1" => Ok(RunStatus::Running),
            "SCHEDULED" | "2" => Ok(RunStatus::Scheduled),
            "FINISHED" | "3" => Ok(RunStatus::Finished),
            "FAILED" | "4" => Ok(RunStatus::Failed),
            "KILLED" | "5" => Ok(RunStatus::Killed),
            other => Err(Error::invalid(format!(
                "Invalid run status '{other}'. Expected one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"
            ))),
        }
    }

    pub fn from_db(raw: &str) -> Self {
        RunStatus::parse(raw).unwrap_or(RunStatus::Running)
    }

    pub fn is_terminated(self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Failed | RunStatus::Killed
        )
    }
}

/// A key/value pair: run tags, experiment tags, registry tags, params all share this shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

pub type Tag = KeyValue;
pub type Param = KeyValue;

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    /// NaN and ±infinity are legal values; MLflow clients send them as strings.
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    /// Set when the metric was logged against a LoggedModel (`log_metric(model_id=...)`).
    pub model_id: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
    /// The run that logged the point; set on a LoggedModel's metrics, where it is not implied.
    pub run_id: Option<String>,
}

impl Metric {
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Metric {
            key: key.into(),
            value,
            timestamp,
            step,
            model_id: None,
            dataset_name: None,
            dataset_digest: None,
            run_id: None,
        }
    }

    /// MLflow's rule for the "latest" value shown by get-run and used by search: the greatest
    /// (step, timestamp, value), with NaN ordered above every number as in MLflow's SQL store.
    pub fn is_newer_than(&self, other: &Metric) -> bool {
        (self.step, self.timestamp)
            .cmp(&(other.step, other.timestamp))
            .then_with(|| nan_high_cmp(self.value, other.value))
            .is_gt()
    }
}

fn nan_high_cmp(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => a.total_cmp(&b),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub experiment_id: ExperimentId,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: LifecycleStage,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub run_name: String,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: LifecycleStage,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunData {
    /// The latest value of each metric key.
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    pub schema: Option<String>,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInput {
    pub tags: Vec<Tag>,
    pub dataset: Dataset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOutput {
    pub model_id: String,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunInputs {
    pub dataset_inputs: Vec<DatasetInput>,
    pub model_inputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: RunInputs,
    pub outputs: Vec<ModelOutput>,
}

/// What the store needs to create a run; names and defaults are settled by the use-case.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub user_id: String,
    pub run_name: String,
    pub start_time: i64,
    pub tags: Vec<Tag>,
    /// The artifact root of the run's experiment is only known inside the store's transaction,
    /// so the store appends `/<run_id>/artifacts` to it.
    pub artifact_uri_suffix: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

/// One all-or-nothing log-batch, already validated.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.params.is_empty() && self.tags.is_empty()
    }
}
