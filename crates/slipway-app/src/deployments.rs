//! Managed deployments: creating them, starting, promoting, aborting and rolling back rollouts,
//! the files of the versions they serve, and the prediction log. The controller that runs
//! rollouts on its own lives in [`crate::rollout`]; both apply decisions through the functions
//! here, so a decision taken by a person and one taken by analysis leave the same trail:
//! deployment event, audit entry, registry tags, alias, webhook.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use slipway_core::deployment::{
    self, AnalysisRules, DeadlineAction, Deployment, DeploymentEvent, NewDeploymentEvent,
    PredictionRecord, Rollout, RolloutState, ServingSettings, Strategy,
};
use slipway_core::promotion::{PromotionPolicy, PromotionTarget};
use slipway_core::tracking::Tag;
use slipway_core::{Error, Result, validate};

use crate::promotions::CheckOutcome;
use crate::{App, now_ms};

/// A model reference as users write it: `models:/NAME@ALIAS` or `models:/NAME/VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Alias { name: String, alias: String },
    Version { name: String, version: String },
}

impl ModelRef {
    pub fn parse(uri: &str) -> Result<ModelRef> {
        let bad = || {
            Error::invalid(format!(
                "'{uri}' is not a registry model URI: write models:/NAME@ALIAS or models:/NAME/VERSION"
            ))
        };
        let rest = uri.strip_prefix("models:/").ok_or_else(bad)?;
        if let Some((name, alias)) = rest.rsplit_once('@') {
            if name.is_empty() || alias.is_empty() {
                return Err(bad());
            }
            validate::alias(alias)?;
            return Ok(ModelRef::Alias {
                name: name.to_owned(),
                alias: alias.to_owned(),
            });
        }
        let (name, version) = rest.rsplit_once('/').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        validate::version_number(version)?;
        Ok(ModelRef::Version {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }

    pub fn model_name(&self) -> &str {
        match self {
            ModelRef::Alias { name, .. } | ModelRef::Version { name, .. } => name,
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
            ModelRef::Version { name, version } => write!(f, "models:/{name}/{version}"),
        }
    }
}

/// An admin's explicit decision to go around a deployment's protection; audited as such.
#[derive(Debug, Clone)]
pub struct AdminOverride {
    pub reason: String,
}

/// What a protected deployment allows an unapproved candidate.
#[derive(Debug, Clone)]
pub struct UnapprovedGate {
    pub alias: String,
    /// Percent of live traffic, at most, until the promotion is approved.
    pub cap: u8,
    pub checks: CheckOutcome,
}

impl UnapprovedGate {
    fn json(&self) -> serde_json::Value {
        json!({
            "alias": self.alias,
            "unapproved_weight_cap": self.cap,
            "checks_passed": self.checks.passed,
            "checks": self.checks.detail,
        })
    }
}

/// What a rollback did, so the caller can say it rather than retell the last rollout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackDone {
    /// The rollout that was ended, when one was running; `None` when the deployment went back
    /// to its previous stable version.
    pub rollout_id: Option<i64>,
    /// The version that stopped answering: the candidate, or the stable before the rollback.
    pub from_version: String,
    /// The version that answers all traffic now.
    pub to_version: String,
    /// The alias moved back with it (a deployment that follows an alias, no rollout running).
    pub alias: Option<String>,
}

/// A version's model files as the data plane needs them.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub onnx: Bytes,
    /// The `MLmodel` file of an MLflow model folder (its signature validates requests).
    pub mlmodel: Option<String>,
}

/// The largest model file served (a sanity bound, not a format limit).
const MAX_MODEL_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The tag a deployment writes on the versions it serves, so the registry says what runs.
pub fn deployment_tag(deployment: &str) -> String {
    format!("slipway.deployment.{deployment}")
}

impl App {
    fn deployment_resource(name: &str) -> String {
        format!("deployment:{name}")
    }

    pub(crate) fn event(
        &self,
        rollout: Option<&Rollout>,
        kind: &str,
        detail: serde_json::Value,
    ) -> NewDeploymentEvent {
        NewDeploymentEvent {
            rollout_id: rollout.map(|r| r.id),
            kind: kind.to_owned(),
            actor: self.caller().actor.clone(),
            detail,
            compact_key: None,
        }
    }

    /// The version a reference points at now.
    pub async fn resolve_model_ref(&self, model: &ModelRef) -> Result<String> {
        match model {
            ModelRef::Alias { name, alias } => Ok(self
                .get_version_by_alias(name, alias)
                .await?
                .version
                .to_string()),
            ModelRef::Version { name, version } => Ok(self
                .get_model_version(name, version)
                .await?
                .version
                .to_string()),
        }
    }

    /// Creates a deployment. A name that last served a protected alias (its deletion said so)
    /// must follow a protected alias again: otherwise deleting and re-creating it would put an
    /// unapproved version behind the endpoint clients call for the approved one. Only an
    /// admin's explicit `override_reason` (audited as an override) lifts that.
    pub async fn create_deployment(
        &self,
        name: &str,
        model: &ModelRef,
        settings: ServingSettings,
        admin_override: Option<&AdminOverride>,
    ) -> Result<Deployment> {
        deployment::validate_name(name)?;
        settings.validate()?;
        let version = self.resolve_model_ref(model).await?;
        self.require_version_readable(model.model_name(), &version)
            .await?;
        let protected_now = match model {
            ModelRef::Alias { name: model, alias } => {
                self.protecting_policy(model, Some(alias)).await?.is_some()
            }
            ModelRef::Version { .. } => false,
        };
        if !protected_now
            && let Some(deleted) = self.store().last_deployment_event(name, "deleted").await?
            && let Some(was) = deleted.detail.get("protected").filter(|p| p.is_object())
        {
            let was_model = was["model"].as_str().unwrap_or_default();
            let was_alias = was["alias"].as_str().unwrap_or_default();
            match admin_override {
                Some(admin_override) => {
                    self.audited(
                        "deployments.override",
                        Self::deployment_resource(name),
                        json!({
                            "override": "re-create a protected deployment unprotected",
                            "reason": admin_override.reason,
                            "was": { "model": was_model, "alias": was_alias },
                            "model_uri": model.to_string(),
                        }),
                    )
                    .append_deployment_events(
                        name,
                        vec![self.event(
                            None,
                            "override",
                            json!({ "reason": admin_override.reason, "model_uri": model.to_string() }),
                        )],
                    )
                    .await?;
                }
                None => {
                    let message = format!(
                        "deployment '{name}' served alias '{was_alias}' of '{was_model}', which its promotion policy protects, until it was deleted; re-create it following that alias (`slipway deploy create {name} --model models:/{was_model}@{was_alias}`) and roll a new version out with `slipway deploy update`, or have an admin re-create it with --override-reason"
                    );
                    self.record_denial(
                        "deployments.protected_change",
                        Self::deployment_resource(name),
                        &message,
                    )
                    .await?;
                    return Err(Error::permission_denied(message));
                }
            }
        }
        let now = now_ms();
        let new = Deployment {
            name: name.to_owned(),
            model_name: model.model_name().to_owned(),
            alias: match model {
                ModelRef::Alias { alias, .. } => Some(alias.clone()),
                ModelRef::Version { .. } => None,
            },
            stable_version: version.clone(),
            previous_version: None,
            settings,
            rollout: None,
            revision: 0,
            created_ms: now,
            created_by: self.caller().actor.clone(),
            updated_ms: now,
        };
        let created = self
            .audited(
                "deployments.create",
                Self::deployment_resource(name),
                json!({ "model": model.model_name(), "alias": new.alias, "version": version }),
            )
            .create_deployment(
                new.clone(),
                self.event(
                    None,
                    "created",
                    json!({ "model": new.model_name, "alias": new.alias, "version": version }),
                ),
            )
            .await?;
        self.tag_version(&created, &version, "stable").await?;
        Ok(created)
    }

    pub async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        let deployment = self.store().get_deployment(name).await?;
        self.visible_model(&deployment.model_name)?;
        Ok(deployment)
    }

    pub async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        let mut all = self.store().list_deployments().await?;
        all.retain(|d| {
            !self.hides(
                slipway_core::auth::ResourceKind::RegisteredModel,
                &d.model_name,
            )
        });
        Ok(all)
    }

    pub async fn deployment_events(
        &self,
        name: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<DeploymentEvent>> {
        self.get_deployment(name).await?;
        self.store()
            .deployment_events(name, after_seq, limit.clamp(1, 1000))
            .await
    }

    /// A deployment's newest events, newest first (what a person watching it wants).
    pub async fn recent_deployment_events(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<DeploymentEvent>> {
        self.get_deployment(name).await?;
        self.store()
            .recent_deployment_events(name, limit.clamp(1, 1000))
            .await
    }

    pub async fn update_deployment_settings(
        &self,
        name: &str,
        settings: ServingSettings,
    ) -> Result<Deployment> {
        settings.validate()?;
        let mut current = self.get_deployment(name).await?;
        current.settings = settings;
        current.updated_ms = now_ms();
        let detail = json!({ "settings": current.settings });
        self.audited(
            "deployments.update",
            Self::deployment_resource(name),
            detail.clone(),
        )
        .update_deployment(current, vec![self.event(None, "settings", detail)])
        .await
    }

    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        let current = self.get_deployment(name).await?;
        if let Some(rollout) = current.active_rollout() {
            return Err(Error::invalid(format!(
                "deployment '{name}' has rollout {} of version {} running: abort it first (`slipway deploy abort {name}`)",
                rollout.id, rollout.candidate_version
            )));
        }
        // A deleted protected deployment stays protected by name (see `create_deployment`).
        let protected = match self
            .protecting_policy(&current.model_name, current.alias.as_deref())
            .await?
        {
            Some(_) => json!({ "model": current.model_name, "alias": current.alias }),
            None => serde_json::Value::Null,
        };
        self.audited(
            "deployments.delete",
            Self::deployment_resource(name),
            json!({ "version": current.stable_version, "protected": protected }),
        )
        .delete_deployment(
            name,
            self.event(None, "deleted", json!({ "protected": protected })),
        )
        .await
    }

    /// Starts a rollout of `candidate` (a version of the deployment's model). A stage that has
    /// no passing analysis `progress_deadline_ms` after its duration rolls back or pauses, as
    /// `on_deadline` says.
    pub async fn start_rollout(
        &self,
        name: &str,
        candidate: &ModelRef,
        strategy: Strategy,
        rules: AnalysisRules,
        progress_deadline_ms: u64,
        on_deadline: DeadlineAction,
    ) -> Result<Deployment> {
        strategy.validate()?;
        rules.validate()?;
        let mut current = self.get_deployment(name).await?;
        if candidate.model_name() != current.model_name {
            return Err(Error::invalid(format!(
                "deployment '{name}' serves registered model '{}'; the candidate must be one of its versions, not of '{}'",
                current.model_name,
                candidate.model_name()
            )));
        }
        if let Some(rollout) = current.active_rollout() {
            return Err(Error::invalid(format!(
                "deployment '{name}' already has rollout {} of version {} ({}); promote or abort it first",
                rollout.id,
                rollout.candidate_version,
                rollout.state.label()
            )));
        }
        let version = self.resolve_model_ref(candidate).await?;
        if version == current.stable_version {
            return Err(Error::invalid(format!(
                "version {version} is already the stable version of deployment '{name}'"
            )));
        }
        self.require_version_readable(&current.model_name, &version)
            .await?;
        let gate = self.unapproved_gate(&current, &version).await?;
        let now = now_ms();
        let rollout = Rollout {
            id: current.rollout.as_ref().map_or(1, |r| r.id + 1),
            candidate_version: version.clone(),
            strategy,
            rules,
            state: RolloutState::Progressing,
            stage: 0,
            stage_started_ms: now,
            stage_passed: false,
            started_ms: now,
            started_by: self.caller().actor.clone(),
            ended_ms: None,
            unapproved_weight_cap: gate.as_ref().map(|gate| gate.cap),
            progress_deadline_ms,
            on_deadline,
        };
        rollout.validate_deadline()?;
        let detail = json!({
            "candidate_version": version,
            "stable_version": current.stable_version,
            "strategy": rollout.strategy,
            "rules": rollout.rules,
            "progress_deadline_ms": rollout.progress_deadline_ms,
            "on_deadline": rollout.on_deadline,
            "protected": gate.as_ref().map(UnapprovedGate::json),
        });
        let event = self.event(Some(&rollout), "rollout_started", detail.clone());
        current.rollout = Some(rollout);
        current.updated_ms = now;
        let updated = self
            .audited(
                "deployments.rollout",
                Self::deployment_resource(name),
                detail,
            )
            .update_deployment(current, vec![event])
            .await?;
        self.tag_version(&updated, &version, "candidate").await?;
        Ok(updated)
    }

    /// Promotes the running rollout's candidate now, skipping the remaining stages. Through the
    /// promotion policy: a protected alias waits for approvals.
    pub async fn promote_rollout(&self, name: &str) -> Result<Deployment> {
        let current = self.get_deployment(name).await?;
        let Some(rollout) = current.active_rollout() else {
            return Err(Error::invalid(format!(
                "deployment '{name}' has no rollout running; start one with `slipway deploy update {name} --candidate models:/{}/VERSION`",
                current.model_name
            )));
        };
        if let RolloutState::AwaitingApproval { promotion_id } = rollout.state {
            return Err(Error::invalid(format!(
                "rollout {} waits for promotion request {promotion_id} to be approved (`slipway promote approve {promotion_id}`)",
                rollout.id
            )));
        }
        self.apply_promotion(current, "promoted by hand").await
    }

    /// Stops the running rollout: all traffic back to the stable version.
    pub async fn abort_rollout(&self, name: &str, reason: &str) -> Result<Deployment> {
        let current = self.get_deployment(name).await?;
        if current.active_rollout().is_none() {
            return Err(Error::invalid(format!(
                "deployment '{name}' has no rollout running to abort"
            )));
        }
        let reason = if reason.is_empty() {
            format!("aborted by {}", self.caller().actor)
        } else {
            reason.to_owned()
        };
        self.end_rollout(current, RolloutState::Aborted { reason }, None)
            .await
    }

    /// Rolls back: a running rollout ends as rolled back; with none running, the previous
    /// stable version comes back (and the alias with it).
    pub async fn rollback_deployment(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<(Deployment, RollbackDone)> {
        let current = self.get_deployment(name).await?;
        let reason = if reason.is_empty() {
            format!("rolled back by {}", self.caller().actor)
        } else {
            reason.to_owned()
        };
        if let Some(rollout) = current.active_rollout() {
            let done = RollbackDone {
                rollout_id: Some(rollout.id),
                from_version: rollout.candidate_version.clone(),
                to_version: current.stable_version.clone(),
                alias: None,
            };
            let ended = self
                .end_rollout(current, RolloutState::RolledBack { reason }, None)
                .await?;
            return Ok((ended, done));
        }
        let Some(previous) = current.previous_version.clone() else {
            return Err(Error::invalid(format!(
                "deployment '{name}' has no rollout running and no previous version to go back to"
            )));
        };
        if let Some(alias) = &current.alias {
            self.move_alias_back(&current.model_name, alias, &previous)
                .await?;
        }
        let from = current.stable_version.clone();
        let detail = json!({ "from_version": from, "to_version": previous, "reason": reason });
        // The registry first, as for a promotion.
        self.tag_version(&current, &from, "rolled_back").await?;
        self.tag_version(&current, &previous, "stable").await?;
        // Moving the alias back lets the controller's alias follower update the deployment at
        // the same time (to the same version): a compare-and-set lost to it is taken again on
        // what it wrote, as long as no rollout started meanwhile.
        let mut base = current;
        let mut attempts = 0;
        let saved = loop {
            let mut updated = base.clone();
            updated.stable_version = previous.clone();
            updated.previous_version = Some(from.clone());
            updated.updated_ms = now_ms();
            let written = self
                .audited(
                    "deployments.rollback",
                    Self::deployment_resource(name),
                    detail.clone(),
                )
                .update_deployment(
                    updated,
                    vec![self.event(None, "rolled_back", detail.clone())],
                )
                .await;
            match written {
                Err(Error::InvalidParameter(message))
                    if message.contains("changed meanwhile") && attempts < 3 =>
                {
                    attempts += 1;
                    let latest = self.get_deployment(name).await?;
                    if latest.active_rollout().is_some() {
                        return Err(Error::InvalidParameter(message));
                    }
                    base = latest;
                }
                other => break other?,
            }
        };
        self.notify("deployment.rolled_back", &saved, detail).await;
        let done = RollbackDone {
            rollout_id: None,
            from_version: from,
            to_version: previous,
            alias: saved.alias.clone(),
        };
        Ok((saved, done))
    }

    /// The policy that protects `alias` of `model`, if any: a deployment following that alias
    /// is protected by it.
    pub(crate) async fn protecting_policy(
        &self,
        model: &str,
        alias: Option<&str>,
    ) -> Result<Option<PromotionPolicy>> {
        let Some(alias) = alias else {
            return Ok(None);
        };
        Ok(self
            .store()
            .get_policy(model)
            .await?
            .filter(|policy| policy.protects(&PromotionTarget::Alias(alias.to_owned()))))
    }

    /// For a protected deployment, how much live traffic `candidate` may answer before its
    /// promotion is approved, and why; `None` when the deployment is not protected.
    pub(crate) async fn unapproved_gate(
        &self,
        deployment: &Deployment,
        candidate: &str,
    ) -> Result<Option<UnapprovedGate>> {
        let Some(policy) = self
            .protecting_policy(&deployment.model_name, deployment.alias.as_deref())
            .await?
        else {
            return Ok(None);
        };
        let version = self
            .store()
            .get_model_version(&deployment.model_name, validate::version_number(candidate)?)
            .await?;
        let checks = self.evaluate_checks(&policy, &version).await?;
        Ok(Some(UnapprovedGate {
            alias: deployment.alias.clone().unwrap_or_default(),
            cap: policy.unapproved_weight_cap(checks.passed),
            checks,
        }))
    }

    /// Moves an alias back to `version`: through the approvers' rollback when the policy
    /// protects it, directly otherwise.
    async fn move_alias_back(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        if self.protecting_policy(model, Some(alias)).await?.is_some() {
            let change = self.rollback_alias(model, alias).await?;
            if change.version.map(|v| v.to_string()).as_deref() != Some(version) {
                return Err(Error::invalid(format!(
                    "alias '{alias}' of '{model}' went back to version {:?}, not {version}: its history moved elsewhere; set it with a promotion",
                    change.version
                )));
            }
            Ok(())
        } else {
            self.set_alias(model, alias, version).await
        }
    }

    /// The last stage passed (or a person promoted): the candidate becomes stable. A protected
    /// alias gets a promotion request and the rollout waits for its approval.
    pub(crate) async fn apply_promotion(
        &self,
        mut current: Deployment,
        why: &str,
    ) -> Result<Deployment> {
        let Some(rollout) = current.active_rollout().cloned() else {
            return Ok(current);
        };
        let candidate = rollout.candidate_version.clone();
        if let Some(alias) = current.alias.clone() {
            let policy = self
                .protecting_policy(&current.model_name, Some(&alias))
                .await?;
            if let Some(policy) = policy {
                let (request, checks) = self
                    .request_promotion(
                        &current.model_name,
                        &candidate,
                        PromotionTarget::Alias(alias.clone()),
                        &format!(
                            "rollout {} of deployment '{}' passed its analysis ({why})",
                            rollout.id, current.name
                        ),
                    )
                    .await?;
                let detail = json!({
                    "promotion_id": request.id,
                    "alias": alias,
                    "candidate_version": candidate,
                    "checks_passed": checks.passed,
                    "unapproved_weight_cap": policy.unapproved_weight_cap(checks.passed),
                });
                let mut waiting = rollout.clone();
                waiting.state = RolloutState::AwaitingApproval {
                    promotion_id: request.id,
                };
                // Until approved, the candidate keeps at most the policy's share, even when its
                // last stage gave it all the traffic (a policy set during the rollout included).
                let cap = policy.unapproved_weight_cap(checks.passed);
                waiting.unapproved_weight_cap = Some(
                    waiting
                        .unapproved_weight_cap
                        .map_or(cap, |held| held.min(cap)),
                );
                let event = self.event(Some(&waiting), "awaiting_approval", detail.clone());
                current.rollout = Some(waiting);
                current.updated_ms = now_ms();
                let saved = self
                    .audited(
                        "deployments.await_approval",
                        Self::deployment_resource(&current.name),
                        detail.clone(),
                    )
                    .update_deployment(current, vec![event])
                    .await?;
                self.notify("deployment.awaiting_approval", &saved, detail)
                    .await;
                return Ok(saved);
            }
            // A person may have aborted or rolled back meanwhile: the alias moves only for the
            // revision this decision was made on (the compare-and-set after it covers the rest).
            let latest = self.store().get_deployment(&current.name).await?;
            if latest.revision != current.revision {
                return Err(Error::invalid(format!(
                    "deployment '{}' changed meanwhile (revision {} is now {}); read it again and retry",
                    current.name, current.revision, latest.revision
                )));
            }
            self.set_alias(&current.model_name, &alias, &candidate)
                .await?;
        }
        self.complete_promotion(current, why).await
    }

    /// The alias (if any) already points at the candidate: make it the stable version.
    pub(crate) async fn complete_promotion(
        &self,
        mut current: Deployment,
        why: &str,
    ) -> Result<Deployment> {
        let Some(mut rollout) = current.active_rollout().cloned() else {
            return Ok(current);
        };
        let now = now_ms();
        rollout.state = RolloutState::Succeeded;
        rollout.ended_ms = Some(now);
        let candidate = rollout.candidate_version.clone();
        let from = std::mem::replace(&mut current.stable_version, candidate.clone());
        current.previous_version = Some(from.clone());
        let detail = json!({
            "from_version": from,
            "to_version": candidate,
            "alias": current.alias,
            "why": why,
        });
        let event = self.event(Some(&rollout), "promoted", detail.clone());
        // The registry first: once the deployment says succeeded, the tags already say so too
        // (a failed tag write leaves the rollout as it was, and the next tick tries again).
        self.tag_version(&current, &candidate, "stable").await?;
        self.tag_version(&current, &from, "previous").await?;
        current.rollout = Some(rollout);
        current.updated_ms = now;
        let saved = self
            .audited(
                "deployments.promote",
                Self::deployment_resource(&current.name),
                detail.clone(),
            )
            .update_deployment(current, vec![event])
            .await?;
        self.notify("deployment.promoted", &saved, detail).await;
        Ok(saved)
    }

    /// Ends the running rollout as rolled back or aborted: traffic back to stable, the
    /// candidate tagged in the registry, an audit entry and a webhook event naming the reason
    /// (and the analysis that decided, if any).
    pub(crate) async fn end_rollout(
        &self,
        mut current: Deployment,
        state: RolloutState,
        analysis: Option<&deployment::Analysis>,
    ) -> Result<Deployment> {
        let Some(mut rollout) = current.active_rollout().cloned() else {
            return Ok(current);
        };
        let now = now_ms();
        let (kind, reason) = match &state {
            RolloutState::Aborted { reason } => ("aborted", reason.clone()),
            RolloutState::RolledBack { reason } => ("rolled_back", reason.clone()),
            other => {
                return Err(Error::internal_msg(format!(
                    "end_rollout called with state {}",
                    other.label()
                )));
            }
        };
        if let RolloutState::AwaitingApproval { promotion_id } = rollout.state {
            self.withdraw_promotion(promotion_id, &reason).await?;
        }
        rollout.state = state;
        rollout.ended_ms = Some(now);
        let failed = analysis.and_then(|a| match &a.verdict {
            deployment::Verdict::Fail { rule, .. } => Some(rule.clone()),
            _ => None,
        });
        let detail = json!({
            "candidate_version": rollout.candidate_version,
            "stable_version": current.stable_version,
            "alias": current.alias,
            "reason": reason,
            "rule": failed,
            "measurements": analysis.map(|a| &a.measurements),
        });
        let event = self.event(Some(&rollout), kind, detail.clone());
        let candidate = rollout.candidate_version.clone();
        // The registry first, as for a promotion.
        self.tag_version(&current, &candidate, kind).await?;
        current.rollout = Some(rollout);
        current.updated_ms = now;
        let saved = self
            .audited(
                &format!(
                    "deployments.{}",
                    if kind == "aborted" {
                        "abort"
                    } else {
                        "rollback"
                    }
                ),
                Self::deployment_resource(&current.name),
                detail.clone(),
            )
            .update_deployment(current, vec![event])
            .await?;
        self.notify(&format!("deployment.{kind}"), &saved, detail)
            .await;
        Ok(saved)
    }

    /// Pauses the running rollout at its progress deadline: the split stays, analysis goes on,
    /// and a person promotes or rolls back. The same trail as every decision: an event, an
    /// audit entry and a webhook event saying why and what to run.
    pub(crate) async fn pause_rollout(
        &self,
        mut current: Deployment,
        reason: String,
        analysis: Option<&deployment::Analysis>,
    ) -> Result<Deployment> {
        let Some(mut rollout) = current.active_rollout().cloned() else {
            return Ok(current);
        };
        let name = current.name.clone();
        let detail = json!({
            "candidate_version": rollout.candidate_version,
            "stage": rollout.stage,
            "reason": reason,
            "measurements": analysis.map(|a| &a.measurements),
            "next": format!(
                "promote with `slipway deploy promote {name}`, or roll back with `slipway deploy rollback {name}`"
            ),
        });
        rollout.state = RolloutState::Paused { reason };
        let event = self.event(Some(&rollout), "paused", detail.clone());
        current.rollout = Some(rollout);
        current.updated_ms = now_ms();
        let saved = self
            .audited(
                "deployments.pause",
                Self::deployment_resource(&name),
                detail.clone(),
            )
            .update_deployment(current, vec![event])
            .await?;
        self.notify("deployment.paused", &saved, detail).await;
        Ok(saved)
    }

    /// Rejects the promotion request a rollout was waiting for, so a later approval cannot move
    /// the alias to a candidate that was rolled back or aborted.
    async fn withdraw_promotion(&self, id: i64, reason: &str) -> Result<()> {
        let request = self.store().get_promotion_request(id).await?;
        if request.state != slipway_core::promotion::RequestState::Pending {
            return Ok(());
        }
        self.audited(
            "promotions.reject",
            format!("registered_model:{}", request.model_name),
            json!({ "id": id, "reason": reason, "withdrawn_by": "deployment" }),
        )
        .decide_promotion(
            id,
            slipway_core::promotion::Decision {
                approver: self.caller().actor.clone(),
                approve: false,
                reason: format!("withdrawn: the rollout ended ({reason})"),
                decided_at: now_ms(),
            },
            u32::MAX,
        )
        .await?;
        Ok(())
    }

    /// Says in the registry what a version is to a deployment (`stable`, `candidate`,
    /// `rolled_back`, ...). A version deleted meanwhile is not an error.
    async fn tag_version(&self, deployment: &Deployment, version: &str, state: &str) -> Result<()> {
        match self
            .set_model_version_tag(
                &deployment.model_name,
                version,
                Tag {
                    key: deployment_tag(&deployment.name),
                    value: state.to_owned(),
                },
            )
            .await
        {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn notify(&self, kind: &str, deployment: &Deployment, detail: serde_json::Value) {
        let Some(notifier) = self.notifier() else {
            return;
        };
        notifier
            .notify(json!({
                "event": kind,
                "deployment": deployment.name,
                "model": deployment.model_name,
                "stable_version": deployment.stable_version,
                "rollout_id": deployment.rollout.as_ref().map(|r| r.id),
                "actor": self.caller().actor,
                "time_ms": now_ms(),
                "detail": detail,
            }))
            .await;
    }

    /// A version's ONNX file (and `MLmodel`), read from the artifact store and checked against
    /// what was registered: a file that changed since is refused, never served.
    pub async fn model_files(&self, name: &str, version: &str) -> Result<ModelFiles> {
        let model_version = self.get_model_version(name, version).await?;
        let (location, root) = self.source_location(&model_version.source).await?;
        let root = root.ok_or_else(|| {
            Error::invalid(format!(
                "version {version} of '{name}' lives at '{location}', which this server does not store; deployments serve versions whose files are in slipway's artifact store"
            ))
        })?;
        let content = self
            .store()
            .model_version_content(name, model_version.version)
            .await?;
        if content.is_none() {
            tracing::warn!(model = %name, %version, "serving a version registered before content digests: its files are not verified");
        }
        let verify = |relative: &str, bytes: &[u8]| -> Result<()> {
            match &content {
                Some(content) => content.manifest.verify(relative, bytes).map_err(|error| {
                    tracing::error!(model = %name, %version, %error, "refusing a changed model file");
                    Error::invalid(format!("version {version} of '{name}': {error}"))
                }),
                None => Ok(()),
            }
        };
        // A bare .onnx file registered as the version's source.
        if let Some(file) = self.read_file(&root).await? {
            let own_name = root.as_str().rsplit('/').next().unwrap_or(root.as_str());
            verify(own_name, &file)?;
            return Ok(ModelFiles {
                onnx: file,
                mlmodel: None,
            });
        }
        let entries = self.artifacts.list(Some(&root)).await?.ok_or_else(|| {
            Error::invalid(format!(
                "version {version} of '{name}' has no files at '{location}'"
            ))
        })?;
        let onnx_name = entries
            .iter()
            .find(|e| !e.is_dir && e.name == "model.onnx")
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| !e.is_dir && e.name.ends_with(".onnx"))
            })
            .map(|e| e.name.clone())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "version {version} of '{name}' is not an ONNX model: '{location}' holds no .onnx file (log it with mlflow.onnx.log_model)"
                ))
            })?;
        let onnx = self
            .read_file(&root.join(&onnx_name)?)
            .await?
            .ok_or_else(|| Error::internal_msg("the listed model file disappeared"))?;
        verify(&onnx_name, &onnx)?;
        let mlmodel = match self.read_file(&root.join("MLmodel")?).await? {
            Some(bytes) => {
                verify("MLmodel", &bytes)?;
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            None => None,
        };
        Ok(ModelFiles { onnx, mlmodel })
    }

    async fn read_file(
        &self,
        path: &slipway_core::artifact_path::ArtifactPath,
    ) -> Result<Option<Bytes>> {
        let Some(object) = self.artifacts.get(path).await? else {
            return Ok(None);
        };
        if object.size > MAX_MODEL_BYTES {
            return Err(Error::invalid(format!(
                "'{}' is {} bytes, more than the {MAX_MODEL_BYTES} a served model may have",
                path.as_str(),
                object.size
            )));
        }
        let mut body = object.body;
        let mut bytes = Vec::with_capacity(object.size as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::internal("reading a model file", e))?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(bytes)))
    }

    pub async fn append_predictions(&self, mut records: Vec<PredictionRecord>) -> Result<()> {
        if !self.seal_records(&mut records).await? {
            warn_unwritten(records.len());
            return Ok(());
        }
        self.store().append_predictions(records).await
    }

    pub async fn read_predictions(
        &self,
        deployment: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PredictionRecord>> {
        // Only through a deployment the caller may see: the log of a deleted one stays in the
        // store, but its model's permissions can no longer be checked here.
        self.get_deployment(deployment).await?;
        let mut records = self
            .store()
            .read_predictions(deployment, after_id, limit.clamp(1, 10_000))
            .await?;
        for record in &mut records {
            self.unseal_record(record).await?;
        }
        // Reading the log is reading what people sent: who read which rows is kept.
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            let event = self.audit_event(
                "deployments.predictions.read",
                format!("deployment:{deployment}"),
                serde_json::json!({ "rows": records.len(), "first_id": first.id, "last_id": last.id }),
            );
            self.store().append_audit(event).await?;
        }
        Ok(records)
    }
}

/// Predictions deleted per transaction by the retention sweep.
const EXPIRE_BATCH: usize = 1_000;

impl App {
    /// Deletes logged predictions (and labels) older than their deployment's retention, in
    /// audited batches; the leader runs it. Returns how many predictions went.
    pub async fn expire_predictions(&self) -> Result<u64> {
        let mut total = 0;
        for deployment in self.store().list_deployments().await? {
            let retention = deployment.settings.prediction_retention_ms;
            if retention == 0 {
                continue;
            }
            let before_ms = now_ms().saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
            loop {
                // Counted before the delete (through indexes, without the rows), so the audit
                // entry written in the delete's own transaction says what it removes.
                let (predictions, labels) = self
                    .store()
                    .expired_counts(&deployment.name, before_ms, EXPIRE_BATCH)
                    .await?;
                if predictions == 0 && labels == 0 {
                    break;
                }
                let (deleted, _) = self
                    .audited(
                        "deployments.predictions.expire",
                        format!("deployment:{}", deployment.name),
                        serde_json::json!({
                            "predictions": predictions,
                            "labels": labels,
                            "before_ms": before_ms,
                            "retention_ms": retention,
                        }),
                    )
                    .expire_predictions(&deployment.name, before_ms, (predictions, labels))
                    .await?;
                total += deleted;
                if predictions < EXPIRE_BATCH as u64 && labels < EXPIRE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// Predictions that cannot be written (the store's log is encrypted and this server has no
/// key) are dropped, loudly but at most once a minute: serving goes on regardless.
fn warn_unwritten(count: usize) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60)) {
        *last = Some(std::time::Instant::now());
        tracing::error!(
            count,
            "the prediction log on this store is encrypted and this server has no master key \
             (--encryption-key): predictions are not logged"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs_parse() {
        assert_eq!(
            ModelRef::parse("models:/fraud@production").unwrap(),
            ModelRef::Alias {
                name: "fraud".into(),
                alias: "production".into()
            }
        );
        assert_eq!(
            ModelRef::parse("models:/team/fraud/7").unwrap(),
            ModelRef::Version {
                name: "team/fraud".into(),
                version: "7".into()
            }
        );
        for bad in [
            "fraud",
            "models:/fraud",
            "models:/fraud/x",
            "models:/@a",
            "models:/f@",
            "models:/f/0",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }
}
