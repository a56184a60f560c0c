//! Managed deployments: a registered model served under a name, a rollout that brings a
//! candidate version to live traffic in stages, and the analysis that decides whether it may go
//! on. Everything here is pure: the controller (slipway-app) feeds it time and measurements.
//!
//! Every strategy compiles to a list of [`Stage`]s (a share of live traffic, a share of traffic
//! mirrored to the candidate, a duration), so one state machine runs them all:
//! - canary: the steps, e.g. 5 %, 25 %, 50 % of live traffic;
//! - blue-green: a preview (no live traffic; forced test traffic and an optional mirror), then
//!   an optional bake at 100 % before the candidate is promoted;
//! - shadow: a mirror of live traffic whose answers are compared and never returned.
//!
//! A stage ends when its duration has passed and the latest analysis of it passed; the last
//! stage's end promotes the candidate. A failed analysis rolls back at once. Too few samples is
//! its own outcome: the stage waits, it neither passes nor fails, but at most the rollout's
//! progress deadline past the stage's duration (as Argo Rollouts' `progressDeadlineSeconds`);
//! then it rolls back, or pauses for a person, as the rollout says.

pub mod analysis;
pub mod breaker;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use analysis::{
    Analysis, AnalysisRules, ChiSquare, LatencyHistogram, Measurement, RuleResult, SameRows,
    ServingStats, ServingTotals, VariantWindow, Verdict, WindowStats, agreement_p_value,
    chi_square_homogeneity, jensen_shannon_distance,
};
pub use breaker::{Breaker, BreakerConfig, BreakerState};

/// Request header that pins a caller to one variant: requests with the same value see the same
/// variant at a given weight, on every replica.
pub const ROUTE_KEY_HEADER: &str = "x-slipway-route-key";
/// Request header that forces a variant (`stable` or `candidate`), for testing a preview.
pub const FORCE_VARIANT_HEADER: &str = "x-slipway-variant";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Stable,
    Candidate,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Candidate => "candidate",
        }
    }

    pub fn parse(text: &str) -> Option<Variant> {
        match text.trim().to_ascii_lowercase().as_str() {
            "stable" => Some(Variant::Stable),
            "candidate" | "canary" => Some(Variant::Candidate),
            _ => None,
        }
    }
}

/// One canary step: this percentage of live traffic for at least this long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStep {
    pub weight: u8,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    Canary {
        steps: Vec<CanaryStep>,
    },
    BlueGreen {
        preview_ms: u64,
        /// Percentage of live traffic copied to the candidate during the preview.
        mirror_percent: u8,
        /// Time at 100 % with analysis before the promotion (0: promote at the switch).
        bake_ms: u64,
    },
    Shadow {
        mirror_percent: u8,
        duration_ms: u64,
    },
}

/// What a stage sends to the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Percentage of live traffic the candidate answers.
    pub weight: u8,
    /// Percentage of the stable's traffic also sent to the candidate, whose answer is compared
    /// and dropped.
    pub mirror: u8,
    pub duration_ms: u64,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen { .. } => "blue-green",
            Strategy::Shadow { .. } => "shadow",
        }
    }

    pub fn stages(&self) -> Vec<Stage> {
        match self {
            Strategy::Canary { steps } => steps
                .iter()
                .map(|step| Stage {
                    weight: step.weight,
                    mirror: 0,
                    duration_ms: step.duration_ms,
                })
                .collect(),
            Strategy::BlueGreen {
                preview_ms,
                mirror_percent,
                bake_ms,
            } => {
                let mut stages = vec![Stage {
                    weight: 0,
                    mirror: *mirror_percent,
                    duration_ms: *preview_ms,
                }];
                if *bake_ms > 0 {
                    stages.push(Stage {
                        weight: 100,
                        mirror: 0,
                        duration_ms: *bake_ms,
                    });
                }
                stages
            }
            Strategy::Shadow {
                mirror_percent,
                duration_ms,
            } => vec![Stage {
                weight: 0,
                mirror: *mirror_percent,
                duration_ms: *duration_ms,
            }],
        }
    }

    pub fn validate(&self) -> Result<()> {
        let percent = |what: &str, value: u8, low: u8| {
            if value < low || value > 100 {
                Err(Error::invalid(format!(
                    "{what} must be between {low} and 100 percent, got {value}"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Strategy::Canary { steps } => {
                if steps.is_empty() {
                    return Err(Error::invalid(
                        "a canary needs at least one step, e.g. --steps 5,25,50",
                    ));
                }
                let mut previous = 0;
                for step in steps {
                    percent("a canary step's weight", step.weight, 1)?;
                    if step.weight < previous {
                        return Err(Error::invalid(format!(
                            "canary steps must not decrease: {} after {previous}",
                            step.weight
                        )));
                    }
                    previous = step.weight;
                }
                Ok(())
            }
            Strategy::BlueGreen { mirror_percent, .. } => {
                percent("the preview mirror", *mirror_percent, 0)
            }
            Strategy::Shadow { mirror_percent, .. } => {
                percent("the shadow mirror", *mirror_percent, 1)
            }
        }
    }
}

/// How long a stage may wait for a passing analysis after its duration, unless the rollout
/// says otherwise: Argo Rollouts' and Flagger's default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE_MS: u64 = 600_000;

fn default_progress_deadline_ms() -> u64 {
    DEFAULT_PROGRESS_DEADLINE_MS
}

/// What a rollout does when a stage has not passed its analysis within the progress deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineAction {
    /// All traffic back to stable, as a failed analysis does: a candidate that cannot be
    /// judged is not trusted.
    #[default]
    Rollback,
    /// Hold the current split and wait for a person (`deploy promote` or `deploy rollback`);
    /// analysis goes on, and a failure still rolls back.
    Pause,
}

impl DeadlineAction {
    pub fn parse(text: &str) -> Result<DeadlineAction> {
        match text.trim().to_ascii_lowercase().as_str() {
            "rollback" | "roll-back" | "roll_back" => Ok(DeadlineAction::Rollback),
            "pause" => Ok(DeadlineAction::Pause),
            other => Err(Error::invalid(format!(
                "unknown action at the progress deadline '{other}': use rollback or pause"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineAction::Rollback => "rollback",
            DeadlineAction::Pause => "pause",
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    Progressing,
    /// Every stage passed; the alias waits for a promotion request's approvals (the policy
    /// protects it). Traffic stays at the last stage's split meanwhile.
    AwaitingApproval {
        promotion_id: i64,
    },
    /// A stage did not pass its analysis within the progress deadline and the rollout is set
    /// to pause: traffic stays at the stage's split until a person promotes or rolls back.
    Paused {
        reason: String,
    },
    /// The candidate became the stable version.
    Succeeded,
    /// Analysis failed (or a person rolled back); all traffic went back to the stable version.
    RolledBack {
        reason: String,
    },
    /// Stopped by a person before it finished; traffic back to stable.
    Aborted {
        reason: String,
    },
}

impl RolloutState {
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            RolloutState::Progressing
                | RolloutState::AwaitingApproval { .. }
                | RolloutState::Paused { .. }
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            RolloutState::Progressing => "progressing",
            RolloutState::AwaitingApproval { .. } => "awaiting_approval",
            RolloutState::Paused { .. } => "paused",
            RolloutState::Succeeded => "succeeded",
            RolloutState::RolledBack { .. } => "rolled_back",
            RolloutState::Aborted { .. } => "aborted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Counts up per deployment; measurements carry it so that a late report of an earlier
    /// rollout is never counted in the current one.
    pub id: i64,
    pub candidate_version: String,
    pub strategy: Strategy,
    pub rules: AnalysisRules,
    pub state: RolloutState,
    pub stage: usize,
    pub stage_started_ms: i64,
    /// Whether the latest conclusive analysis of this stage passed.
    pub stage_passed: bool,
    pub started_ms: i64,
    pub started_by: String,
    pub ended_ms: Option<i64>,
    /// Set while the deployment is protected by a promotion policy and the candidate is not
    /// approved: the most live traffic (percent) it may answer, whatever its stages say. Only
    /// an approved promotion lifts it (the candidate then becomes stable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unapproved_weight_cap: Option<u8>,
    /// How long a stage may wait, after its duration, for an analysis that passes (too few
    /// samples, a preview nobody tests) before `on_deadline`. Rollouts stored before it existed
    /// get the default, so none of them waits forever.
    #[serde(default = "default_progress_deadline_ms")]
    pub progress_deadline_ms: u64,
    #[serde(default)]
    pub on_deadline: DeadlineAction,
}

/// The traffic split a deployment's data plane applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Traffic {
    pub weight: u8,
    pub mirror: u8,
}

impl Rollout {
    pub fn current_stage(&self) -> Option<Stage> {
        self.strategy.stages().get(self.stage).copied()
    }

    /// When the current stage's wait for a passing analysis ends (epoch ms), if it has not
    /// passed yet: the stage's duration, then the progress deadline.
    pub fn stage_deadline_ms(&self) -> Option<i64> {
        let stage = self.current_stage()?;
        let wait = stage.duration_ms.saturating_add(self.progress_deadline_ms);
        Some(
            self.stage_started_ms
                .saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
        )
    }

    /// Checks the progress deadline against the analysis interval: a deadline shorter than an
    /// interval would end stages before their first analysis.
    pub fn validate_deadline(&self) -> Result<()> {
        if self.progress_deadline_ms < self.rules.interval_ms {
            return Err(Error::invalid(format!(
                "the progress deadline ({}) must be at least the analysis interval ({}): no analysis could pass before it",
                human_ms(self.progress_deadline_ms),
                human_ms(self.rules.interval_ms)
            )));
        }
        Ok(())
    }

    pub fn traffic(&self) -> Traffic {
        match self.state {
            RolloutState::Progressing
            | RolloutState::AwaitingApproval { .. }
            | RolloutState::Paused { .. } => self
                .current_stage()
                .map(|stage| Traffic {
                    weight: self
                        .unapproved_weight_cap
                        .map_or(stage.weight, |cap| stage.weight.min(cap)),
                    mirror: stage.mirror,
                })
                .unwrap_or_default(),
            _ => Traffic::default(),
        }
    }
}

/// How a deployment's data plane serves (the same on every replica).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingSettings {
    /// Share of requests written to the prediction log (0 to 1).
    pub log_sample: f64,
    /// Micro-batching: requests arriving within `max_wait_ms` are run together, up to this many
    /// rows. 0 turns it off.
    pub batch_max_rows: usize,
    pub batch_max_wait_ms: u64,
    pub breaker: BreakerConfig,
    /// Windows of drift monitoring (used when the served version has a reference).
    #[serde(default)]
    pub monitor: crate::monitoring::MonitorSettings,
    /// How long logged predictions (and labels) are kept, in milliseconds; older ones are
    /// deleted by the leader, audited. 0 keeps them.
    #[serde(default)]
    pub prediction_retention_ms: u64,
    /// Availability and latency objectives, with their error budget and burn-rate alerts.
    #[serde(default)]
    pub slo: Option<crate::slo::SloSpec>,
}

impl Default for ServingSettings {
    fn default() -> Self {
        ServingSettings {
            log_sample: 0.1,
            batch_max_rows: 0,
            batch_max_wait_ms: 2,
            breaker: BreakerConfig::default(),
            monitor: crate::monitoring::MonitorSettings::default(),
            prediction_retention_ms: 0,
            slo: None,
        }
    }
}

impl ServingSettings {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.log_sample) {
            return Err(Error::invalid(format!(
                "the prediction log sample must be between 0 and 1, got {}",
                self.log_sample
            )));
        }
        if (1..1_000).contains(&self.prediction_retention_ms) {
            return Err(Error::invalid(format!(
                "the prediction log's retention must be at least 1s (or 0 to keep it), got {} ms",
                self.prediction_retention_ms
            )));
        }
        if let Some(slo) = &self.slo {
            slo.validate()?;
        }
        if self.breaker.failures == 0 {
            return Err(Error::invalid(
                "the circuit breaker needs at least 1 failure to open",
            ));
        }
        self.monitor.validate()
    }
}

/// A deployment: a name served at `/deployments/NAME/...` and by replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    pub model_name: String,
    /// The alias the deployment follows (`models:/NAME@ALIAS`); `None` when it was created from
    /// a version number. A promotion moves it; with no rollout running, a move made elsewhere
    /// is followed at once.
    pub alias: Option<String>,
    pub stable_version: String,
    /// The stable version before the latest promotion, for `deploy rollback`.
    pub previous_version: Option<String>,
    pub settings: ServingSettings,
    /// The latest rollout, running or finished.
    pub rollout: Option<Rollout>,
    /// Bumped by every change; replicas reload when it moves, and updates are compare-and-set.
    pub revision: i64,
    pub created_ms: i64,
    pub created_by: String,
    pub updated_ms: i64,
}

impl Deployment {
    pub fn active_rollout(&self) -> Option<&Rollout> {
        self.rollout.as_ref().filter(|r| r.state.is_active())
    }

    pub fn traffic(&self) -> Traffic {
        self.active_rollout()
            .map(Rollout::traffic)
            .unwrap_or_default()
    }

    /// The candidate version the data plane must have loaded.
    pub fn candidate_version(&self) -> Option<&str> {
        self.active_rollout()
            .map(|rollout| rollout.candidate_version.as_str())
    }
}

/// A deployment name: used in URL paths and metric labels, so kept to a safe alphabet.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid deployment name '{name}': use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

/// What the controller did at one tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing changes (still in the stage, or waiting for samples).
    Hold,
    /// The stage passed; the next begins.
    NextStage { stage: usize },
    /// Every stage passed: promote the candidate.
    Promote,
    /// The analysis failed, or the progress deadline passed: back to stable.
    RollBack { reason: String },
    /// The progress deadline passed and the rollout pauses for a person.
    Pause { reason: String },
}

/// A duration as people read it, to the second ("2m 10s"; "250ms" under a second).
pub fn human_ms(ms: u64) -> String {
    let duration = if ms >= 1000 {
        std::time::Duration::from_secs(ms / 1000)
    } else {
        std::time::Duration::from_millis(ms)
    };
    humantime::format_duration(duration).to_string()
}

/// The state machine of one rollout: given the latest analysis (if one was made this tick),
/// what to do now. Updates the stage bookkeeping in place; promotion and rollback are applied
/// by the caller, which has the registry to move.
pub fn advance(rollout: &mut Rollout, analysis: Option<&Analysis>, now_ms: i64) -> Decision {
    if rollout.state != RolloutState::Progressing {
        return Decision::Hold;
    }
    if let Some(analysis) = analysis {
        match &analysis.verdict {
            Verdict::Fail { rule, detail } => {
                return Decision::RollBack {
                    reason: format!("analysis failed: {rule}: {detail}"),
                };
            }
            Verdict::Pass { .. } => rollout.stage_passed = true,
            Verdict::Inconclusive { .. } => {}
        }
    }
    let Some(stage) = rollout.current_stage() else {
        return Decision::Promote;
    };
    let elapsed = now_ms.saturating_sub(rollout.stage_started_ms);
    if !rollout.stage_passed
        && rollout
            .stage_deadline_ms()
            .is_some_and(|deadline| now_ms >= deadline)
    {
        let stages = rollout.strategy.stages().len();
        let reason = format!(
            "progress deadline: stage {} of {stages} ({}% live) had no passing analysis {} after its {} duration",
            rollout.stage + 1,
            rollout.traffic().weight,
            human_ms(rollout.progress_deadline_ms),
            human_ms(stage.duration_ms),
        );
        return match rollout.on_deadline {
            DeadlineAction::Rollback => Decision::RollBack { reason },
            DeadlineAction::Pause => Decision::Pause { reason },
        };
    }
    if elapsed < stage.duration_ms as i64 || !rollout.stage_passed {
        return Decision::Hold;
    }
    let next = rollout.stage + 1;
    if next >= rollout.strategy.stages().len() {
        return Decision::Promote;
    }
    rollout.stage = next;
    rollout.stage_started_ms = now_ms;
    rollout.stage_passed = false;
    Decision::NextStage { stage: next }
}

/// A stable 64-bit hash (FNV-1a) of a routing key: every replica must send one key to the same
/// variant, so no per-process random seed.
pub fn route_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Whether a request in bucket `bucket` (0..10 000) goes to the candidate at `weight` percent.
pub fn routes_to_candidate(bucket: u64, weight: u8) -> bool {
    bucket % 10_000 < u64::from(weight) * 100
}

/// An event in a deployment's history: creation, rollout start, every analysis, every stage,
/// promotion, rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentEvent {
    pub seq: i64,
    pub deployment: String,
    /// When it happened; for a compacted run, when the run began.
    pub time_ms: i64,
    pub rollout_id: Option<i64>,
    pub kind: String,
    pub actor: String,
    /// For a compacted run, the latest event's detail.
    pub detail: serde_json::Value,
    /// How many events this one stands for: more than 1 for a run of identical results (see
    /// [`NewDeploymentEvent::compact_key`]).
    #[serde(default = "one")]
    pub count: i64,
    /// When the run's latest event happened (`time_ms` for a single one).
    #[serde(default)]
    pub last_time_ms: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeploymentEvent {
    pub rollout_id: Option<i64>,
    pub kind: String,
    pub actor: String,
    pub detail: serde_json::Value,
    /// Events with a key are compacted: one whose key equals that of the deployment's latest
    /// event replaces its detail and counts one more, instead of adding a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_key: Option<String>,
}

/// One sampled request in the prediction log: the input of drift monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Assigned by the store; 0 before.
    #[serde(default)]
    pub id: i64,
    pub deployment: String,
    pub request_id: String,
    pub time_ms: i64,
    pub variant: Variant,
    pub model_version: String,
    /// The rows the model saw, as JSON (`[[...], ...]`).
    pub inputs: serde_json::Value,
    /// What the model returned, as the scoring protocol answers it.
    pub outputs: serde_json::Value,
    pub latency_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(steps: &[(u8, u64)]) -> Rollout {
        Rollout {
            id: 1,
            candidate_version: "2".into(),
            strategy: Strategy::Canary {
                steps: steps
                    .iter()
                    .map(|(weight, duration_ms)| CanaryStep {
                        weight: *weight,
                        duration_ms: *duration_ms,
                    })
                    .collect(),
            },
            rules: AnalysisRules::default(),
            state: RolloutState::Progressing,
            stage: 0,
            stage_started_ms: 0,
            stage_passed: false,
            started_ms: 0,
            started_by: "ann".into(),
            ended_ms: None,
            unapproved_weight_cap: None,
            progress_deadline_ms: DEFAULT_PROGRESS_DEADLINE_MS,
            on_deadline: DeadlineAction::Rollback,
        }
    }

    fn verdict(verdict: Verdict) -> Analysis {
        Analysis {
            at_ms: 0,
            window_ms: 0,
            measurements: Vec::new(),
            verdict,
            sources: Default::default(),
        }
    }

    #[test]
    fn stages_advance_only_after_their_duration_and_a_pass() {
        let mut rollout = canary(&[(5, 1000), (50, 1000)]);
        assert_eq!(rollout.traffic().weight, 5);
        // A pass before the duration holds.
        assert_eq!(
            advance(
                &mut rollout,
                Some(&verdict(Verdict::Pass {
                    detail: String::new()
                })),
                500
            ),
            Decision::Hold
        );
        // Time passed and the stage passed earlier: next stage.
        assert_eq!(
            advance(&mut rollout, None, 1000),
            Decision::NextStage { stage: 1 }
        );
        assert_eq!(rollout.traffic().weight, 50);
        // Time passed but no pass in this stage yet: hold, however long.
        let waiting = verdict(Verdict::Inconclusive {
            reason: "3 of 50 samples".into(),
        });
        assert_eq!(
            advance(&mut rollout, Some(&waiting), 100_000),
            Decision::Hold
        );
        assert_eq!(
            advance(
                &mut rollout,
                Some(&verdict(Verdict::Pass {
                    detail: String::new()
                })),
                100_001
            ),
            Decision::Promote
        );
    }

    #[test]
    fn an_unapproved_candidate_never_exceeds_its_cap() {
        let mut rollout = canary(&[(5, 0), (100, 0)]);
        rollout.unapproved_weight_cap = Some(10);
        assert_eq!(rollout.traffic().weight, 5);
        rollout.stage = 1;
        assert_eq!(rollout.traffic().weight, 10);
        rollout.state = RolloutState::AwaitingApproval { promotion_id: 1 };
        assert_eq!(
            rollout.traffic().weight,
            10,
            "waiting for approval keeps the cap"
        );
        rollout.unapproved_weight_cap = Some(0);
        assert_eq!(
            rollout.traffic().weight,
            0,
            "failed checks: no live traffic"
        );
        rollout.unapproved_weight_cap = None;
        assert_eq!(rollout.traffic().weight, 100);
        // Stored deployments written before the cap existed read as uncapped.
        let mut json = serde_json::to_value(&rollout).unwrap();
        json.as_object_mut()
            .unwrap()
            .remove("unapproved_weight_cap");
        let back: Rollout = serde_json::from_value(json).unwrap();
        assert_eq!(back.unapproved_weight_cap, None);
    }

    #[test]
    fn a_failure_rolls_back_at_any_time() {
        let mut rollout = canary(&[(5, 1000)]);
        let failed = verdict(Verdict::Fail {
            rule: "error_rate".into(),
            detail: "0.5 > 0.01".into(),
        });
        assert!(matches!(
            advance(&mut rollout, Some(&failed), 1),
            Decision::RollBack { .. }
        ));
    }

    #[test]
    fn idle_rollouts_hold_until_the_progress_deadline() {
        let mut rollout = canary(&[(5, 10)]);
        rollout.progress_deadline_ms = 1_000_000;
        let idle = verdict(Verdict::Inconclusive {
            reason: "no traffic".into(),
        });
        for now in (0..1_000_010).step_by(10_000) {
            assert_eq!(advance(&mut rollout, Some(&idle), now), Decision::Hold);
        }
        assert_eq!(rollout.stage, 0);
        // Its duration (10 ms) and the deadline after it have passed: rolled back, saying why.
        match advance(&mut rollout, Some(&idle), 1_000_010) {
            Decision::RollBack { reason } => {
                assert!(reason.starts_with("progress deadline"), "{reason}");
                assert!(reason.contains("stage 1 of 1 (5% live)"), "{reason}");
                assert!(
                    reason.contains("16m 40s after its 10ms duration"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_single_full_step_reaches_a_decision() {
        // The reported case, `--steps 100`: analysis passes on what it can measure (see
        // analysis::a_full_step_without_a_reference_...), so the step ends and promotes ...
        let mut rollout = canary(&[(100, 1_000)]);
        let pass = verdict(Verdict::Pass {
            detail: "latency_p90_ratio: not applicable".into(),
        });
        assert_eq!(advance(&mut rollout, Some(&pass), 500), Decision::Hold);
        assert_eq!(advance(&mut rollout, None, 1_000), Decision::Promote);
        // ... and one that never gathers its samples stops at the deadline: it pauses when
        // told to, and a paused rollout holds its split and waits for a person.
        let mut starved = canary(&[(100, 1_000)]);
        starved.progress_deadline_ms = 60_000;
        starved.on_deadline = DeadlineAction::Pause;
        let idle = verdict(Verdict::Inconclusive {
            reason: "waiting".into(),
        });
        assert_eq!(advance(&mut starved, Some(&idle), 60_999), Decision::Hold);
        let Decision::Pause { reason } = advance(&mut starved, Some(&idle), 61_000) else {
            panic!("expected a pause");
        };
        assert!(reason.contains("1m after its 1s duration"), "{reason}");
        starved.state = RolloutState::Paused { reason };
        assert!(starved.state.is_active());
        assert_eq!(starved.traffic().weight, 100);
        assert_eq!(advance(&mut starved, Some(&pass), 200_000), Decision::Hold);
    }

    #[test]
    fn the_deadline_is_checked_and_old_rollouts_get_the_default() {
        let mut rollout = canary(&[(5, 10)]);
        rollout.progress_deadline_ms = rollout.rules.interval_ms - 1;
        let error = rollout.validate_deadline().unwrap_err().to_string();
        assert!(
            error.contains("at least the analysis interval (30s)"),
            "{error}"
        );
        rollout.progress_deadline_ms = rollout.rules.interval_ms;
        rollout.validate_deadline().unwrap();
        let mut json = serde_json::to_value(&rollout).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("progress_deadline_ms");
        object.remove("on_deadline");
        let back: Rollout = serde_json::from_value(json).unwrap();
        assert_eq!(back.progress_deadline_ms, DEFAULT_PROGRESS_DEADLINE_MS);
        assert_eq!(back.on_deadline, DeadlineAction::Rollback);
        assert_eq!(
            DeadlineAction::parse("Pause").unwrap(),
            DeadlineAction::Pause
        );
        assert!(DeadlineAction::parse("wait").is_err());
        assert_eq!(human_ms(601_812), "10m 1s");
        assert_eq!(human_ms(250), "250ms");
    }

    #[test]
    fn strategies_compile_to_stages() {
        let blue_green = Strategy::BlueGreen {
            preview_ms: 5,
            mirror_percent: 0,
            bake_ms: 7,
        };
        assert_eq!(
            blue_green.stages(),
            vec![
                Stage {
                    weight: 0,
                    mirror: 0,
                    duration_ms: 5
                },
                Stage {
                    weight: 100,
                    mirror: 0,
                    duration_ms: 7
                }
            ]
        );
        let shadow = Strategy::Shadow {
            mirror_percent: 30,
            duration_ms: 9,
        };
        assert_eq!(shadow.stages()[0].mirror, 30);
        assert!(
            Strategy::Canary {
                steps: vec![
                    CanaryStep {
                        weight: 50,
                        duration_ms: 1
                    },
                    CanaryStep {
                        weight: 5,
                        duration_ms: 1
                    }
                ]
            }
            .validate()
            .is_err()
        );
        assert!(Strategy::Canary { steps: vec![] }.validate().is_err());
    }

    #[test]
    fn routing_is_stable_and_proportional() {
        assert_eq!(route_hash(b"user-1"), route_hash(b"user-1"));
        let to_candidate = (0..10_000u64)
            .filter(|i| routes_to_candidate(route_hash(format!("user-{i}").as_bytes()), 25))
            .count();
        assert!((2_200..2_800).contains(&to_candidate), "{to_candidate}");
        assert!(!routes_to_candidate(9_999, 99));
        assert!(routes_to_candidate(9_999, 100));
        assert!(!routes_to_candidate(0, 0));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("fraud-v2.eu_1").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
