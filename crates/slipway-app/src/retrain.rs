//! Retraining: triggers applied whole (admins, audited with the diff); firings from a schedule,
//! an alert, new data (reported by a worker) or a person, each decided in the store and
//! audited whether it started a retrain or was skipped; workers claiming retrains and
//! reporting each link of the chain (pipeline run, version, gate, rollout, decision), every
//! link checked against what the server knows before it is recorded.
//!
//! The server never runs a pipeline: a worker (`slipway triggers worker`) does, in its own
//! folder, as its own user. What the server decides is whether a retrain starts and what a
//! retrain may claim happened.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;
use slipway_core::alerting::Transition;
use slipway_core::deployment::RolloutState;
use slipway_core::retrain::{
    Cause, LEASE_MS, Retrain, RetrainProgress, RetrainState, StoredTriggerConfig, Trigger,
    TriggerConfig, TriggerDiff, next_fire, parse_schedule,
};
use slipway_core::tracking::RunId;
use slipway_core::{Error, Result};

use crate::alerting::AlertTransition;
use crate::{App, now_ms};

/// The actor schedule and alert firings are audited under.
pub const TRIGGERS_ACTOR: &str = "slipway-triggers";

fn resource(trigger: &str) -> String {
    format!("trigger:{trigger}")
}

fn audit_of(retrain: &Retrain) -> serde_json::Value {
    json!({
        "retrain": retrain.id,
        "trigger": retrain.trigger,
        "model": retrain.model_name,
        "state": retrain.state.as_str(),
        "cause": retrain.cause,
        "reason": retrain.reason,
        "pipeline_run_id": retrain.pipeline_run_id,
        "version": retrain.version,
        "gate_id": retrain.gate_id,
        "rollout_id": retrain.rollout_id,
    })
}

impl App {
    pub async fn trigger_config(&self) -> Result<StoredTriggerConfig> {
        Ok(self.store().get_trigger_config().await?.unwrap_or_default())
    }

    /// Replaces the triggers with `config` (checked whole first). With `dry_run`, only says
    /// what would change. Audited with the diff.
    pub async fn apply_triggers(
        &self,
        config: TriggerConfig,
        expected_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<(TriggerDiff, StoredTriggerConfig)> {
        config.validate()?;
        for trigger in &config.triggers {
            if let Some(rules) = &trigger.gate.rules {
                self.check_gate_rules(rules)
                    .map_err(|e| Error::invalid(format!("trigger '{}': {e}", trigger.name)))?;
            }
        }
        let current = self.trigger_config().await?;
        let diff = current.config.diff(&config);
        if dry_run {
            return Ok((diff, current));
        }
        let expected = current.expected(expected_revision)?;
        let stored = self
            .audited(
                "triggers.apply",
                "retraining:triggers",
                json!({
                    "revision": expected.saturating_add(1),
                    "diff": diff,
                    "triggers": config.triggers.iter().map(|t| json!({
                        "name": t.name, "model": t.model, "deployment": t.deployment,
                        "pipeline": t.pipeline,
                    })).collect::<Vec<_>>(),
                }),
            )
            .put_trigger_config(config, expected, &self.caller().actor, now_ms())
            .await?;
        Ok((diff, stored))
    }

    async fn trigger_named(&self, name: &str) -> Result<Trigger> {
        self.trigger_config()
            .await?
            .config
            .trigger(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("there is no trigger '{name}'")))
    }

    /// Fires trigger `name`: a queued retrain, or a skipped one saying why (busy model,
    /// cooldown, daily cap). New data already retrained on (or skipped for) is not fired again.
    pub async fn fire_trigger(&self, name: &str, cause: Cause) -> Result<Option<Retrain>> {
        let trigger = self.trigger_named(name).await?;
        self.visible_model(&trigger.model)?;
        if let Cause::Schedule { due_ms, .. } = &cause {
            let recent = self.store().list_retrains(Some(name), None, 200).await?;
            if recent
                .iter()
                .any(|r| matches!(&r.cause, Cause::Schedule { due_ms: seen, .. } if seen == due_ms))
            {
                // This due time fired already (a leader that took over counts from before it
                // led, and the one before may have fired it).
                return Ok(None);
            }
        }
        if let Cause::Data { digest, .. } = &cause {
            let recent = self.store().list_retrains(Some(name), None, 200).await?;
            let last_data = recent
                .iter()
                .find(|r| matches!(&r.cause, Cause::Data { .. }));
            if let Some(last) = last_data
                && matches!(&last.cause, Cause::Data { digest: seen, .. } if seen == digest)
            {
                // Started on this data already, or skipped on it: another skip row per poll
                // would only grow the history.
                return Ok(None);
            }
        }
        let now = now_ms();
        let started = match self
            .store()
            .start_retrain(trigger.clone(), cause.clone(), &self.caller().actor, now)
            .await
        {
            // Another firing for the model won the race: this one sees it now and is skipped.
            Err(Error::AlreadyExists(_)) => {
                self.store()
                    .start_retrain(trigger.clone(), cause, &self.caller().actor, now)
                    .await?
            }
            other => other?,
        };
        let action = if started.state == RetrainState::Skipped {
            "retrains.skipped"
        } else {
            "retrains.start"
        };
        self.store()
            .append_audit(self.audit_event(action, resource(name), audit_of(&started)))
            .await?;
        Ok(Some(started))
    }

    /// Gives a worker the oldest queued retrain with its trigger, leased to it.
    pub async fn claim_retrain(&self) -> Result<Option<(Retrain, Trigger)>> {
        let now = now_ms();
        let Some(retrain) = self
            .store()
            .claim_retrain(&self.caller().actor, now, now.saturating_add(LEASE_MS))
            .await?
        else {
            return Ok(None);
        };
        self.store()
            .append_audit(self.audit_event(
                "retrains.claim",
                resource(&retrain.trigger),
                audit_of(&retrain),
            ))
            .await?;
        match self.trigger_named(&retrain.trigger).await {
            Ok(trigger) => Ok(Some((retrain, trigger))),
            // Removed since it fired: the retrain ends here, saying so.
            Err(Error::NotFound(_)) => {
                self.report_retrain(
                    retrain.id,
                    RetrainProgress {
                        state: Some(RetrainState::Failed),
                        reason: Some(format!(
                            "trigger '{}' was removed before a worker took it",
                            retrain.trigger
                        )),
                        ..RetrainProgress::default()
                    },
                )
                .await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// A worker's report on a retrain it claimed. Each link is checked against the server's
    /// records: the run exists, the version is the model's, the gate is that version's, the
    /// rollout is that version's on the trigger's deployment, and a decision is the one the
    /// deployment shows.
    pub async fn report_retrain(&self, id: i64, update: RetrainProgress) -> Result<Retrain> {
        let current = self.store().get_retrain(id).await?;
        if let Some(reason) = &update.reason
            && reason.len() > 4_096
        {
            return Err(Error::invalid("reason is at most 4,096 characters"));
        }
        if let Some(run) = &update.pipeline_run_id {
            self.store().get_run(&RunId::parse(run)?).await?;
        }
        let version = update.version.or(current.version);
        if let Some(v) = update.version {
            self.store()
                .get_model_version(&current.model_name, v)
                .await?;
        }
        if let Some(gate_id) = update.gate_id {
            let gate = self.store().get_gate(gate_id).await?;
            if gate.model_name != current.model_name || Some(gate.version) != version {
                return Err(Error::invalid(format!(
                    "gate {gate_id} judged {} version {}, not this retrain's version",
                    gate.model_name, gate.version
                )));
            }
            let failed = update.state == Some(RetrainState::GateFailed);
            if gate.passed == failed {
                return Err(Error::invalid(format!(
                    "gate {gate_id} {}: the retrain cannot say otherwise",
                    if gate.passed { "passed" } else { "failed" }
                )));
            }
        }
        let next = update.state.unwrap_or(current.state);
        let rollout_id = update.rollout_id.or(current.rollout_id);
        if update.rollout_id.is_some()
            || matches!(next, RetrainState::Promoted | RetrainState::RolledBack)
        {
            let deployment_name = current.deployment.as_deref().ok_or_else(|| {
                Error::invalid(format!(
                    "retrain {id}'s trigger names no deployment: it has no rollout"
                ))
            })?;
            let deployment = self.store().get_deployment(deployment_name).await?;
            let rollout = deployment
                .rollout
                .as_ref()
                .filter(|r| Some(r.id) == rollout_id)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "deployment '{deployment_name}' has no rollout {} of its latest",
                        rollout_id.map_or("(none given)".to_owned(), |r| r.to_string())
                    ))
                })?;
            if Some(rollout.candidate_version.as_str()) != version.map(|v| v.to_string()).as_deref()
            {
                return Err(Error::invalid(format!(
                    "rollout {} on '{deployment_name}' is of version {}, not this retrain's",
                    rollout.id, rollout.candidate_version
                )));
            }
            let shows = match &rollout.state {
                RolloutState::Succeeded => Some(RetrainState::Promoted),
                RolloutState::RolledBack { .. } | RolloutState::Aborted { .. } => {
                    Some(RetrainState::RolledBack)
                }
                _ => None,
            };
            if matches!(next, RetrainState::Promoted | RetrainState::RolledBack)
                && shows != Some(next)
            {
                return Err(Error::invalid(format!(
                    "rollout {} on '{deployment_name}' has not {}",
                    rollout.id,
                    if next == RetrainState::Promoted {
                        "succeeded"
                    } else {
                        "rolled back"
                    }
                )));
            }
        }
        // Heartbeats (nothing new) are not decisions; a change of state or link is.
        let changes = update.state.is_some_and(|s| s != current.state)
            || update.pipeline_run_id.is_some()
            || update.version.is_some()
            || update.gate_id.is_some()
            || update.rollout_id.is_some();
        let now = now_ms();
        let updated = self
            .store()
            .progress_retrain(
                id,
                &self.caller().actor,
                update,
                now,
                now.saturating_add(LEASE_MS),
            )
            .await?;
        if changes {
            self.store()
                .append_audit(self.audit_event(
                    "retrains.progress",
                    resource(&updated.trigger),
                    audit_of(&updated),
                ))
                .await?;
        }
        Ok(updated)
    }

    pub async fn get_retrain(&self, id: i64) -> Result<Retrain> {
        let retrain = self.store().get_retrain(id).await?;
        self.visible_model(&retrain.model_name)?;
        Ok(retrain)
    }

    pub async fn list_retrains(
        &self,
        trigger: Option<&str>,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Retrain>> {
        let all = self.store().list_retrains(trigger, model, limit).await?;
        Ok(all
            .into_iter()
            .filter(|r| self.visible_model(&r.model_name).is_ok())
            .collect())
    }

    /// Fails retrains whose worker went quiet, audited.
    pub async fn expire_retrains(&self) -> Result<usize> {
        let lapsed = self.store().expire_retrains(now_ms()).await?;
        for retrain in &lapsed {
            self.store()
                .append_audit(self.audit_event(
                    "retrains.lapsed",
                    resource(&retrain.trigger),
                    audit_of(retrain),
                ))
                .await?;
        }
        Ok(lapsed.len())
    }
}

/// The server's side of triggers: schedules come due, alerts fire, leases lapse.
pub struct Retrainer {
    app: App,
    /// Per trigger: its schedule as read and the next time it fires.
    due: Mutex<HashMap<String, (String, i64)>>,
    /// Set when this server became the leader: schedules first seen count from here, not from
    /// now, so a time that came due while no server led still fires (once: a firing for a
    /// due time already recorded is not repeated).
    catch_up_from: Mutex<Option<i64>>,
}

impl Retrainer {
    pub fn new(app: &App) -> Retrainer {
        Retrainer {
            app: app.for_caller(TRIGGERS_ACTOR, None),
            due: Mutex::new(HashMap::new()),
            catch_up_from: Mutex::new(None),
        }
    }

    /// Forgets the schedules' next times; the next tick reads them again, counting from
    /// `catch_up_from` (this server just became the leader; the previous one may have died
    /// before firing what came due).
    pub fn reset(&self, catch_up_from: Option<i64>) {
        self.due.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.catch_up_from.lock().unwrap_or_else(|p| p.into_inner()) = catch_up_from;
    }

    /// Fires the triggers whose schedule came due since the last tick (a schedule first seen
    /// now fires at its next time, not for times it missed), and fails lapsed retrains.
    pub async fn tick(&self) -> Result<()> {
        self.tick_at(now_ms()).await
    }

    /// [`Retrainer::tick`] as of `now` (epoch milliseconds).
    pub async fn tick_at(&self, now: i64) -> Result<()> {
        self.app.expire_retrains().await?;
        let config = self.app.trigger_config().await?.config;
        let mut fire = Vec::new();
        {
            let from = self
                .catch_up_from
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map_or(now, |from| from.min(now));
            let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
            due.retain(|name, _| {
                config
                    .trigger(name)
                    .is_some_and(|t| t.on.schedule.is_some())
            });
            for trigger in &config.triggers {
                let Some(schedule) = &trigger.on.schedule else {
                    continue;
                };
                let Ok(cron) = parse_schedule(schedule) else {
                    continue;
                };
                match due.get(&trigger.name) {
                    Some((seen, next)) if seen == schedule => {
                        if *next <= now {
                            fire.push((trigger.name.clone(), schedule.clone(), *next));
                            let after = next_fire(&cron, now).unwrap_or(i64::MAX);
                            due.insert(trigger.name.clone(), (schedule.clone(), after));
                        }
                    }
                    _ => {
                        let next = next_fire(&cron, from).unwrap_or(i64::MAX);
                        due.insert(trigger.name.clone(), (schedule.clone(), next));
                    }
                }
            }
        }
        for (name, schedule, due_ms) in fire {
            if let Err(error) = self
                .app
                .fire_trigger(&name, Cause::Schedule { schedule, due_ms })
                .await
            {
                tracing::warn!(trigger = %name, %error, "could not fire a scheduled trigger");
            }
        }
        Ok(())
    }

    /// Fires the triggers that name a firing alert for their deployment.
    pub async fn on_alert(&self, event: &AlertTransition) -> Result<()> {
        if event.transition != Transition::Fired {
            return Ok(());
        }
        let config = self.app.trigger_config().await?.config;
        let alert = &event.alert;
        for trigger in &config.triggers {
            let listens = trigger.on.alerts.iter().any(|a| a == alert.name())
                && trigger.deployment.as_deref() == Some(alert.deployment());
            if !listens {
                continue;
            }
            let cause = Cause::Alert {
                alert: alert.name().to_owned(),
                alert_id: alert.id,
                fingerprint: alert.fingerprint.clone(),
                deployment: alert.deployment().to_owned(),
            };
            self.app.fire_trigger(&trigger.name, cause).await?;
        }
        Ok(())
    }
}
