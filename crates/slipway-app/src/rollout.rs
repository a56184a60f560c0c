//! The rollout controller: gathers every replica's measurements of a deployment into the window
//! of its current stage, analyses the window each interval, and applies the decision (next
//! stage, promotion, rollback) through the use-cases in [`crate::deployments`].
//!
//! Windows live in memory: a restarted server, or one that just became the leader, starts the
//! current window afresh (an analysis is delayed by one interval, never decided on half the
//! data). One controller runs per metadata store, on the leader (`crate::cluster`); updates are
//! compare-and-set on the deployment's revision, so a deposed leader still finishing a tick
//! loses its races rather than doubling a decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::json;
use slipway_core::deployment::{
    self, Analysis, Decision, Deployment, NewDeploymentEvent, Rollout, RolloutState, VariantWindow,
    Verdict, WindowStats,
};
use slipway_core::promotion::RequestState;
use slipway_core::{Error, Result};

use crate::{App, now_ms};

/// The actor the controller's decisions are recorded under.
pub const CONTROLLER_ACTOR: &str = slipway_core::delivery::CONTROLLER_ACTOR;

#[derive(Debug, Clone, Serialize)]
pub struct LiveWindow {
    pub rollout_id: i64,
    pub stage: usize,
    pub started_ms: i64,
    pub stats: WindowStats,
    /// Requests counted per reporting data plane (`server` or a replica's credential).
    pub sources: BTreeMap<String, u64>,
    pub last_analysis: Option<Analysis>,
}

struct Window {
    live: LiveWindow,
    last_analysis_ms: i64,
    /// The stable's last window with enough samples: the relative rules' baseline when the
    /// stable gets no live traffic (a 100 % stage).
    reference: Option<VariantWindow>,
}

impl Window {
    fn open(rollout_id: i64, stage: usize) -> Window {
        let now = now_ms();
        Window {
            live: LiveWindow {
                rollout_id,
                stage,
                started_ms: now,
                stats: WindowStats::default(),
                sources: BTreeMap::new(),
                last_analysis: None,
            },
            last_analysis_ms: now,
            reference: None,
        }
    }

    /// Starts the window of another stage; the reference survives within a rollout.
    fn reopen(&mut self, rollout_id: i64, stage: usize) {
        let reference = if rollout_id == self.live.rollout_id {
            self.reference.take()
        } else {
            None
        };
        *self = Window {
            reference,
            ..Window::open(rollout_id, stage)
        };
    }
}

pub struct Controller {
    app: App,
    windows: Mutex<HashMap<String, Window>>,
    stale_reports: AtomicU64,
}

impl Controller {
    pub fn new(app: &App) -> Controller {
        Controller {
            app: app.for_caller(CONTROLLER_ACTOR, None),
            windows: Mutex::new(HashMap::new()),
            stale_reports: AtomicU64::new(0),
        }
    }

    /// Adds measurements of a deployment's traffic. Counted only if they belong to the stage
    /// being analysed now, or to a later one the controller has not seen yet (a plane that
    /// picked up a new stage first opens its window); a replica still on an earlier split is
    /// ignored (returns false).
    pub fn record(
        &self,
        name: &str,
        rollout_id: i64,
        stage: usize,
        stats: &WindowStats,
        source: &str,
    ) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = (rollout_id, stage);
        let window = windows
            .entry(name.to_owned())
            .or_insert_with(|| Window::open(rollout_id, stage));
        if key > (window.live.rollout_id, window.live.stage) {
            window.reopen(rollout_id, stage);
        }
        if (window.live.rollout_id, window.live.stage) == key {
            window.live.stats.merge(stats);
            // Bounded: one entry per data plane that reported, and the report route only takes
            // replicas' credentials.
            *window.live.sources.entry(source.to_owned()).or_default() +=
                stats.stable.requests + stats.candidate.requests;
            true
        } else {
            if !stats.is_empty() {
                self.stale_reports.fetch_add(1, Ordering::Relaxed);
            }
            false
        }
    }

    /// The window being gathered for a deployment now.
    pub fn live_window(&self, name: &str) -> Option<LiveWindow> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(name).map(|w| w.live.clone())
    }

    /// Forgets every window: leadership moved, and what was gathered before belongs to a
    /// period another server may have analysed since.
    pub fn reset(&self) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn stale_reports(&self) -> u64 {
        self.stale_reports.load(Ordering::Relaxed)
    }

    /// One pass over every deployment. Errors of one deployment are logged and do not stop
    /// the others.
    pub async fn tick(&self) -> Result<()> {
        let deployments = self.app.store().list_deployments().await?;
        let names: Vec<String> = deployments.iter().map(|d| d.name.clone()).collect();
        {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows.retain(|name, _| names.contains(name));
        }
        for deployment in deployments {
            let name = deployment.name.clone();
            if let Err(error) = self.tick_one(deployment).await {
                match error {
                    // Someone changed the deployment meanwhile: the next tick sees it.
                    Error::InvalidParameter(message) if message.contains("changed meanwhile") => {}
                    other => {
                        tracing::warn!(deployment = %name, error = %other, "rollout controller")
                    }
                }
            }
        }
        Ok(())
    }

    async fn tick_one(&self, deployment: Deployment) -> Result<()> {
        let now = now_ms();
        let Some(rollout) = deployment.active_rollout().cloned() else {
            self.windows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&deployment.name);
            return self.follow_alias(deployment).await;
        };
        let rollout_name = deployment.name.clone();
        // The window of the current stage, opened now if the stage just began.
        let analysis = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            let window = windows
                .entry(deployment.name.clone())
                .or_insert_with(|| Window::open(rollout.id, rollout.stage));
            if window.live.rollout_id != rollout.id || window.live.stage != rollout.stage {
                window.reopen(rollout.id, rollout.stage);
            }
            if now - window.last_analysis_ms >= rollout.rules.interval_ms as i64 {
                let mut analysis = deployment::analysis::analyze(
                    &rollout.rules,
                    &window.live.stats,
                    window.reference.as_ref(),
                    rollout.traffic(),
                    now,
                    now - window.live.started_ms,
                );
                analysis.sources = window.live.sources.clone();
                window.last_analysis_ms = now;
                let mut closed = None;
                if !matches!(analysis.verdict, deployment::Verdict::Inconclusive { .. }) {
                    // A conclusive window closes; an inconclusive one grows until it has
                    // enough samples.
                    if window.live.stats.stable.requests >= rollout.rules.min_samples {
                        window.reference = Some(window.live.stats.stable.clone());
                    }
                    closed = Some((
                        std::mem::take(&mut window.live.stats),
                        std::mem::take(&mut window.live.sources),
                    ));
                    window.live.started_ms = now;
                }
                window.live.last_analysis = Some(analysis.clone());
                (Some(analysis), closed, window.live.last_analysis.clone())
            } else {
                (None, None, window.live.last_analysis.clone())
            }
        };
        let (analysis, closed, latest) = analysis;
        let decided = self
            .decide(deployment, &rollout, analysis, latest, now)
            .await;
        if decided.is_err()
            && let Some(closed) = closed
        {
            // The decision was not stored (someone changed the deployment, a write failed): the
            // window's measurements come back and the next tick analyses them again at once.
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(window) = windows.get_mut(&rollout_name)
                && (window.live.rollout_id, window.live.stage) == (rollout.id, rollout.stage)
            {
                let (stats, sources) = closed;
                window.live.stats.merge(&stats);
                for (source, requests) in sources {
                    *window.live.sources.entry(source).or_default() += requests;
                }
                window.last_analysis_ms = 0;
            }
        }
        decided
    }

    /// The event recording an analysis of `rollout`'s current stage. An inconclusive one is a
    /// re-read of the same growing window, so a run of them with the same rules waiting is
    /// kept as one event (the latest numbers, a count, first and last time): stage changes stay
    /// in sight and the history stays small however long a stage waits.
    fn analysis_event(&self, rollout: &Rollout, analysis: &Analysis) -> NewDeploymentEvent {
        let mut event = self.app.event(Some(rollout), "analysis", json!(analysis));
        if matches!(analysis.verdict, Verdict::Inconclusive { .. }) {
            let results: Vec<String> = analysis
                .measurements
                .iter()
                .map(|m| format!("{}={:?}", m.rule, m.result))
                .collect();
            event.compact_key = Some(format!(
                "inconclusive:{}:{}:{}:{}",
                rollout.id,
                rollout.stage,
                rollout.state.label(),
                results.join(",")
            ));
        }
        event
    }

    /// Applies what the state machine decides for one tick's analysis (if any); `latest` is
    /// the stage's latest analysis, this tick's or an earlier one (what a deadline waited for).
    async fn decide(
        &self,
        deployment: Deployment,
        rollout: &deployment::Rollout,
        analysis: Option<Analysis>,
        latest: Option<Analysis>,
        now: i64,
    ) -> Result<()> {
        // Waiting for approval, or paused at the deadline, the candidate still serves its
        // share: analysis goes on, and a failure rolls back (withdrawing a promotion request)
        // rather than waiting for a person.
        let waiting_for_person = match rollout.state {
            RolloutState::AwaitingApproval { promotion_id } => Some(Some(promotion_id)),
            RolloutState::Paused { .. } => Some(None),
            _ => None,
        };
        if let Some(promotion_id) = waiting_for_person {
            return match analysis {
                Some(analysis) if matches!(analysis.verdict, deployment::Verdict::Fail { .. }) => {
                    let reason = match &analysis.verdict {
                        deployment::Verdict::Fail { rule, detail } => format!(
                            "analysis failed while {}: {rule}: {detail}",
                            if promotion_id.is_some() {
                                "waiting for approval"
                            } else {
                                "paused"
                            }
                        ),
                        _ => String::new(),
                    };
                    self.app
                        .end_rollout(
                            deployment,
                            RolloutState::RolledBack { reason },
                            Some(&analysis),
                        )
                        .await
                        .map(|_| ())
                }
                Some(analysis) => {
                    self.app
                        .store()
                        .append_deployment_events(
                            &deployment.name,
                            vec![self.analysis_event(rollout, &analysis)],
                        )
                        .await?;
                    match promotion_id {
                        Some(id) => self.check_approval(deployment, id).await,
                        None => Ok(()),
                    }
                }
                None => match promotion_id {
                    Some(id) => self.check_approval(deployment, id).await,
                    None => Ok(()),
                },
            };
        }
        let mut advanced = rollout.clone();
        let decision = deployment::advance(&mut advanced, analysis.as_ref(), now);
        let app = &self.app;
        // What a deadline waited for, in the words of the stage's latest analysis.
        let waited = |reason: String| match latest.as_ref().map(|a| &a.verdict) {
            Some(Verdict::Inconclusive { reason: waiting }) => format!("{reason}; {waiting}"),
            _ => reason,
        };
        match decision {
            Decision::RollBack { reason } => {
                let failed = analysis
                    .as_ref()
                    .is_some_and(|a| matches!(a.verdict, Verdict::Fail { .. }));
                let (reason, decided_on) = if failed {
                    (reason, analysis.as_ref())
                } else {
                    (waited(reason), latest.as_ref())
                };
                app.end_rollout(deployment, RolloutState::RolledBack { reason }, decided_on)
                    .await?;
            }
            Decision::Pause { reason } => {
                let mut current = deployment;
                if let Some(analysis) = &analysis {
                    current = self
                        .save_analysis(current, rollout, &advanced, analysis)
                        .await?;
                }
                app.pause_rollout(current, waited(reason), latest.as_ref())
                    .await?;
            }
            Decision::Promote => {
                let mut current = deployment;
                if let Some(analysis) = &analysis {
                    current = self
                        .save_analysis(current, rollout, &advanced, analysis)
                        .await?;
                }
                app.apply_promotion(current, "every stage passed its analysis")
                    .await?;
            }
            Decision::NextStage { stage } => {
                // A policy set while the rollout ran protects its next stages too.
                if advanced.unapproved_weight_cap.is_none()
                    && let Some(gate) = app
                        .unapproved_gate(&deployment, &advanced.candidate_version)
                        .await?
                {
                    advanced.unapproved_weight_cap = Some(gate.cap);
                }
                let stage_spec = advanced.current_stage();
                let mut current = deployment;
                let mut events = Vec::new();
                if let Some(analysis) = &analysis {
                    events.push(self.analysis_event(rollout, analysis));
                }
                let detail = json!({
                    "stage": stage,
                    "weight": stage_spec.map(|s| s.weight),
                    "live_weight": advanced.traffic().weight,
                    "mirror": stage_spec.map(|s| s.mirror),
                });
                events.push(app.event(Some(&advanced), "stage", detail.clone()));
                current.rollout = Some(advanced);
                current.updated_ms = now;
                app.audited(
                    "deployments.stage",
                    format!("deployment:{}", current.name),
                    detail,
                )
                .update_deployment(current, events)
                .await?;
            }
            Decision::Hold => {
                if let Some(analysis) = &analysis {
                    if advanced == *rollout {
                        // Nothing the data plane acts on changed: no new revision, so replicas
                        // do not rebuild for a bare measurement.
                        app.store()
                            .append_deployment_events(
                                &deployment.name,
                                vec![self.analysis_event(rollout, analysis)],
                            )
                            .await?;
                    } else {
                        self.save_analysis(deployment, rollout, &advanced, analysis)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records an analysis of `rollout`'s stage (and the stage bookkeeping it changed, in
    /// `advanced`).
    async fn save_analysis(
        &self,
        mut current: Deployment,
        rollout: &Rollout,
        advanced: &Rollout,
        analysis: &Analysis,
    ) -> Result<Deployment> {
        let event = self.analysis_event(rollout, analysis);
        current.rollout = Some(advanced.clone());
        current.updated_ms = now_ms();
        self.app
            .store()
            .update_deployment(current, vec![event])
            .await
    }

    async fn check_approval(&self, deployment: Deployment, promotion_id: i64) -> Result<()> {
        let request = self.app.store().get_promotion_request(promotion_id).await?;
        match request.state {
            RequestState::Pending => Ok(()),
            RequestState::Approved => {
                self.app
                    .complete_promotion(
                        deployment,
                        &format!("promotion request {promotion_id} was approved"),
                    )
                    .await?;
                Ok(())
            }
            RequestState::Rejected => {
                self.app
                    .end_rollout(
                        deployment,
                        RolloutState::RolledBack {
                            reason: format!("promotion request {promotion_id} was rejected"),
                        },
                        None,
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// With no rollout running, a deployment that follows an alias serves whatever the alias
    /// points at: a move made elsewhere (an approved promotion, a rollback) is picked up here.
    async fn follow_alias(&self, mut deployment: Deployment) -> Result<()> {
        let Some(alias) = deployment.alias.clone() else {
            return Ok(());
        };
        let version = match self
            .app
            .store()
            .get_version_by_alias(&deployment.model_name, &alias)
            .await
        {
            Ok(version) => version.version.to_string(),
            // The alias was deleted: keep serving what runs, and say so in status.
            Err(Error::NotFound(_) | Error::InvalidParameter(_)) => return Ok(()),
            Err(other) => return Err(other),
        };
        if version == deployment.stable_version {
            return Ok(());
        }
        // The alias points at a candidate this deployment just rolled back or aborted (an
        // alias move that raced the decision): keep serving the stable version.
        if let Some(last) = &deployment.rollout
            && last.candidate_version == version
            && matches!(
                last.state,
                RolloutState::RolledBack { .. } | RolloutState::Aborted { .. }
            )
        {
            return Ok(());
        }
        let from = std::mem::replace(&mut deployment.stable_version, version.clone());
        deployment.previous_version = Some(from.clone());
        deployment.updated_ms = now_ms();
        let detail = json!({ "alias": alias, "from_version": from, "to_version": version });
        self.app
            .audited(
                "deployments.follow_alias",
                format!("deployment:{}", deployment.name),
                detail.clone(),
            )
            .update_deployment(
                deployment,
                vec![self.app.event(None, "followed_alias", detail)],
            )
            .await?;
        Ok(())
    }
}
