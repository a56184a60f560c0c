//! Promotions: policies that protect aliases and stages, requests, approvals by someone other
//! than the requester, checks on the source run, rollback, and the lineage a reviewer reads.

use serde_json::json;
use slipway_core::auth::ResourceKind;
use slipway_core::promotion::{
    AliasChange, DEFAULT_MAX_UNAPPROVED_WEIGHT, DEFAULT_PROTECTED_ALIASES, Decision,
    NewPromotionRequest, PromotionPolicy, PromotionRequest, PromotionTarget, RequestState,
};
use slipway_core::registry::{ModelVersion, Stage};
use slipway_core::search::{SearchEntity, parse_filter};
use slipway_core::tracking::{DatasetInput, Run, RunId, ViewType};
use slipway_core::validate;
use slipway_core::{Error, Result};

use crate::tracking::build_query;
use crate::{App, now_ms};

/// What the policy's checks said about a version's source run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub passed: bool,
    pub detail: String,
}

/// Where a model version came from and what happened to it, for a reviewer or a regulator.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub version: ModelVersion,
    pub run: Option<Run>,
    /// Parent runs, nearest first (from `mlflow.parentRunId`).
    pub parents: Vec<Run>,
    pub datasets: Vec<DatasetInput>,
    pub promotions: Vec<PromotionRequest>,
    /// Alias moves onto or away from this version, oldest first.
    pub aliases: Vec<AliasChange>,
    /// Its files as registered (path, size, SHA-256), when they are in slipway's store.
    pub content: Option<slipway_core::registry::ContentManifest>,
    /// Release gates run on it, newest first.
    pub gates: Vec<slipway_core::gate::GateRecord>,
    /// When its run is a pipeline's: the runs of the pipeline's steps (with their datasets).
    pub steps: Vec<Run>,
    /// The retrain that made it (its cause: an alert, a schedule, new data, a person).
    pub retrain: Option<slipway_core::retrain::Retrain>,
}

/// A policy as an admin sets it; `None` takes the default.
#[derive(Debug, Clone, Default)]
pub struct PolicyInput {
    pub aliases: Option<Vec<String>>,
    pub stages: Option<Vec<String>>,
    pub required_approvals: Option<u32>,
    pub checks: Option<String>,
    /// Percent of a protected deployment's live traffic an unapproved candidate may answer.
    pub max_unapproved_weight: Option<u8>,
    /// A passed release gate must stand behind a promotion.
    pub require_gate: bool,
    /// The rules such a gate must have judged (`None`: the defaults).
    pub gate_rules: Option<Vec<String>>,
    /// The holdout such a gate must have run on (an artifact URI; its content is pinned now).
    pub gate_data: Option<String>,
}

const PARENT_TAG: &str = "mlflow.parentRunId";
const MAX_PARENT_DEPTH: usize = 32;

impl App {
    pub async fn set_policy(&self, name: &str, input: PolicyInput) -> Result<PromotionPolicy> {
        let PolicyInput {
            aliases,
            stages,
            required_approvals,
            checks,
            max_unapproved_weight,
            require_gate,
            gate_rules,
            gate_data,
        } = input;
        if let Some(rules) = &gate_rules {
            self.check_gate_rules(rules)?;
        }
        if !require_gate && (gate_rules.is_some() || gate_data.is_some()) {
            return Err(Error::invalid(
                "gate_rules and gate_data say which gates count; set require_gate too",
            ));
        }
        let gate_data_sha256 = match gate_data.as_deref().filter(|d| !d.is_empty()) {
            Some(data) => Some(self.read_holdout(data).await?.1),
            None => None,
        };
        let max_unapproved_weight = max_unapproved_weight.unwrap_or(DEFAULT_MAX_UNAPPROVED_WEIGHT);
        if max_unapproved_weight > 100 {
            return Err(Error::invalid(format!(
                "max_unapproved_weight is a percentage of live traffic (0 to 100), got {max_unapproved_weight}"
            )));
        }
        let checks = checks.filter(|checks| !checks.trim().is_empty());
        if let Some(checks) = &checks {
            parse_filter(SearchEntity::Runs, checks)
                .map_err(|error| Error::invalid(format!("invalid checks `{checks}`: {error}")))?;
        }
        let aliases = aliases.unwrap_or_else(|| {
            DEFAULT_PROTECTED_ALIASES
                .iter()
                .map(|alias| (*alias).to_owned())
                .collect()
        });
        for alias in &aliases {
            validate::alias(alias)?;
        }
        let stages = match stages {
            Some(stages) => stages
                .iter()
                .map(|stage| Stage::parse(stage))
                .collect::<Result<Vec<_>>>()?,
            None => vec![Stage::Production],
        };
        let required_approvals = required_approvals.unwrap_or(1);
        if required_approvals == 0 {
            return Err(Error::invalid(
                "a policy needs at least one approval; delete the policy to unprotect the model",
            ));
        }
        let policy = PromotionPolicy {
            model_name: name.to_owned(),
            protected_aliases: aliases,
            protected_stages: stages,
            required_approvals,
            checks,
            max_unapproved_weight,
            require_gate,
            gate_rules,
            gate_data: gate_data.filter(|d| !d.is_empty()),
            gate_data_sha256,
            updated_at: now_ms(),
            updated_by: self.caller.actor.clone(),
        };
        let stage_names: Vec<&str> = policy.protected_stages.iter().map(|s| s.as_str()).collect();
        self.audited(
            "policies.set",
            format!("registered_model:{name}"),
            json!({
                "protected_aliases": policy.protected_aliases,
                "protected_stages": stage_names,
                "required_approvals": policy.required_approvals,
                "checks": policy.checks,
                "max_unapproved_weight": policy.max_unapproved_weight,
                "require_gate": policy.require_gate,
                "gate_rules": policy.gate_rules,
                "gate_data": policy.gate_data,
                "gate_data_sha256": policy.gate_data_sha256,
            }),
        )
        .set_policy(policy.clone())
        .await?;
        Ok(policy)
    }

    pub async fn get_policy(&self, name: &str) -> Result<Option<PromotionPolicy>> {
        self.visible_model(name)?;
        self.store.get_policy(name).await
    }

    /// Refuses a registered model the caller's `NO_PERMISSIONS` hides (the native promotion
    /// routes name requests by id, so their access rule cannot scope them).
    pub(crate) fn visible_model(&self, name: &str) -> Result<()> {
        if self.hides(ResourceKind::RegisteredModel, name) {
            return Err(Error::permission_denied(format!(
                "user '{}' has NO_PERMISSIONS on registered model '{name}'",
                self.caller.actor
            )));
        }
        Ok(())
    }

    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        self.audited(
            "policies.delete",
            format!("registered_model:{name}"),
            json!({}),
        )
        .delete_policy(name)
        .await
    }

    /// Refuses a direct change of a protected alias or stage (MLflow's `set-alias`,
    /// `delete-alias`, `transition-stage`), saying which policy protects it and how to promote.
    pub(crate) async fn guard(
        &self,
        name: &str,
        version: Option<i64>,
        target: &PromotionTarget,
    ) -> Result<()> {
        let Some(policy) = self.store.get_policy(name).await? else {
            return Ok(());
        };
        if !policy.protects(target) {
            return Ok(());
        }
        let how = match version {
            Some(version) => format!(
                "`slipway promote request {name} {version} --to {}`",
                target.value()
            ),
            None => format!(
                "`slipway promote request {name} VERSION --to {}`",
                target.value()
            ),
        };
        let message = format!(
            "{target} of registered model '{name}' is protected by its promotion policy ({} from someone other than the requester): request a promotion with {how} (or POST /api/slipway/v1/promotions) and have an approver approve it; approvers can roll it back with `slipway models rollback {name} --alias ALIAS`",
            policy.describe()
        );
        self.record_denial(
            "registry.protected_change",
            format!("registered_model:{name}"),
            &message,
        )
        .await?;
        Err(Error::permission_denied(message))
    }

    /// Whether the version passes the policy's checks: its source run's filter, and a passed
    /// release gate when the policy requires one. Nothing required: passed.
    pub async fn evaluate_checks(
        &self,
        policy: &PromotionPolicy,
        version: &ModelVersion,
    ) -> Result<CheckOutcome> {
        let run = self.source_run_checks(policy, version).await?;
        if !policy.require_gate {
            return Ok(run);
        }
        let (gate_passed, gate_detail) = self.gate_requirement(policy, version).await?;
        Ok(CheckOutcome {
            passed: run.passed && gate_passed,
            detail: if policy.checks.is_some() {
                format!("{}; {gate_detail}", run.detail)
            } else {
                gate_detail
            },
        })
    }

    async fn source_run_checks(
        &self,
        policy: &PromotionPolicy,
        version: &ModelVersion,
    ) -> Result<CheckOutcome> {
        let Some(checks) = &policy.checks else {
            return Ok(CheckOutcome {
                passed: true,
                detail: "no checks".to_owned(),
            });
        };
        let Some(run_id) = version.run_id.as_deref().filter(|id| !id.is_empty()) else {
            return Ok(CheckOutcome {
                passed: false,
                detail: format!(
                    "version {} has no source run to check `{checks}` against",
                    version.version
                ),
            });
        };
        let run = self.store.get_run(&RunId::parse(run_id)?).await?;
        let filter = format!("({checks}) and attributes.run_id = '{run_id}'");
        let query = build_query(
            SearchEntity::Runs,
            Some(&filter),
            &[],
            ViewType::All,
            1,
            None,
        )?;
        let found = self
            .store
            .search_runs(&[run.info.experiment_id], &query)
            .await?;
        let passed = !found.items.is_empty();
        let metrics: Vec<String> = run
            .data
            .metrics
            .iter()
            .take(10)
            .map(|metric| format!("{}={}", metric.key, metric.value))
            .collect();
        Ok(CheckOutcome {
            passed,
            detail: if passed {
                format!("source run {run_id} passes `{checks}`")
            } else {
                format!(
                    "source run {run_id} does not pass `{checks}` (its metrics: {})",
                    if metrics.is_empty() {
                        "none".to_owned()
                    } else {
                        metrics.join(", ")
                    }
                )
            },
        })
    }

    pub async fn request_promotion(
        &self,
        name: &str,
        version: &str,
        target: PromotionTarget,
        reason: &str,
    ) -> Result<(PromotionRequest, CheckOutcome)> {
        let version = validate::version_number(version)?;
        if let PromotionTarget::Alias(alias) = &target {
            validate::alias(alias)?;
        }
        let policy = self
            .store
            .get_policy(name)
            .await?
            .filter(|p| p.protects(&target));
        let Some(policy) = policy else {
            return Err(Error::invalid(format!(
                "{target} of registered model '{name}' is not protected by a promotion policy: set it directly"
            )));
        };
        let model_version = self.store.get_model_version(name, version).await?;
        let checks = self.evaluate_checks(&policy, &model_version).await?;
        let request = self
            .audited(
                "promotions.request",
                format!("registered_model:{name}"),
                json!({
                    "version": version,
                    "target": target.to_string(),
                    "reason": reason,
                    "checks_passed": checks.passed,
                }),
            )
            .create_promotion_request(NewPromotionRequest {
                model_name: name.to_owned(),
                version,
                target,
                requester: self.caller.actor.clone(),
                reason: reason.to_owned(),
                created_at: now_ms(),
            })
            .await?;
        Ok((request, checks))
    }

    pub async fn get_promotion(&self, id: i64) -> Result<PromotionRequest> {
        let request = self.store.get_promotion_request(id).await?;
        self.visible_model(&request.model_name)?;
        Ok(request)
    }

    pub async fn list_promotions(
        &self,
        name: Option<&str>,
        state: Option<&str>,
    ) -> Result<Vec<PromotionRequest>> {
        let state = state.map(RequestState::parse).transpose()?;
        let mut requests = self.store.list_promotion_requests(name, state).await?;
        requests.retain(|request| !self.hides(ResourceKind::RegisteredModel, &request.model_name));
        Ok(requests)
    }

    /// Approves a request. The requester never can; the checks must pass at this moment; the
    /// approval that completes the count moves the alias atomically.
    pub async fn approve_promotion(&self, id: i64, reason: &str) -> Result<PromotionRequest> {
        let request = self.get_promotion(id).await?;
        let resource = format!("registered_model:{}", request.model_name);
        if request.requester == self.caller.actor {
            let message = format!(
                "user '{}' requested promotion {id} and cannot approve it; another approver must",
                self.caller.actor
            );
            self.record_denial("promotions.approve", resource, &message)
                .await?;
            return Err(Error::permission_denied(message));
        }
        let policy = self.store.get_policy(&request.model_name).await?;
        let required = policy.as_ref().map_or(1, |p| p.required_approvals);
        if let Some(policy) = &policy {
            let version = self
                .store
                .get_model_version(&request.model_name, request.version)
                .await?;
            let checks = self.evaluate_checks(policy, &version).await?;
            if !checks.passed {
                let message = format!("promotion {id} cannot be approved: {}", checks.detail);
                self.record_denial("promotions.approve", resource, &message)
                    .await?;
                return Err(Error::permission_denied(message));
            }
        }
        let will_apply = request.approvals() + 1 >= required as usize;
        self.audited(
            "promotions.approve",
            resource,
            json!({
                "request": id,
                "version": request.version,
                "target": request.target.to_string(),
                "reason": reason,
                "applied": will_apply,
            }),
        )
        .decide_promotion(
            id,
            Decision {
                approver: self.caller.actor.clone(),
                approve: true,
                reason: reason.to_owned(),
                decided_at: now_ms(),
            },
            required,
        )
        .await
    }

    pub async fn reject_promotion(&self, id: i64, reason: &str) -> Result<PromotionRequest> {
        if reason.trim().is_empty() {
            return Err(Error::invalid("a rejection needs a reason"));
        }
        let request = self.get_promotion(id).await?;
        self.audited(
            "promotions.reject",
            format!("registered_model:{}", request.model_name),
            json!({ "request": id, "reason": reason }),
        )
        .decide_promotion(
            id,
            Decision {
                approver: self.caller.actor.clone(),
                approve: false,
                reason: reason.to_owned(),
                decided_at: now_ms(),
            },
            u32::MAX,
        )
        .await
    }

    /// The emergency brake: the alias goes back to its previous version without a new
    /// approval (the route requires the approver role), and the audit log says who pulled it.
    pub async fn rollback_alias(&self, name: &str, alias: &str) -> Result<AliasChange> {
        let history = self.store.alias_history(name, Some(alias)).await?;
        let (from, to) = history
            .last()
            .map_or((None, None), |last| (last.version, last.previous_version));
        self.audited(
            "registry.rollback_alias",
            format!("registered_model:{name}"),
            json!({ "alias": alias, "before": { "version": from }, "after": { "version": to } }),
        )
        .rollback_alias(name, alias)
        .await
    }

    pub async fn alias_history(&self, name: &str, alias: Option<&str>) -> Result<Vec<AliasChange>> {
        self.store.alias_history(name, alias).await
    }

    /// The runs nested under a pipeline's run: its steps.
    async fn pipeline_steps(&self, run: &Run) -> Result<Vec<Run>> {
        let filter = format!("tags.`{PARENT_TAG}` = '{}'", run.info.run_id);
        let query = build_query(
            SearchEntity::Runs,
            Some(&filter),
            &[],
            ViewType::All,
            100,
            None,
        )?;
        Ok(self
            .store
            .search_runs(&[run.info.experiment_id], &query)
            .await?
            .items)
    }

    /// A model version's lineage: source run, its parents, its datasets, and its promotions
    /// and alias moves.
    pub async fn lineage(&self, name: &str, version: &str) -> Result<Lineage> {
        let version = validate::version_number(version)?;
        let model_version = self.store.get_model_version(name, version).await?;
        let run = match model_version.run_id.as_deref().filter(|id| !id.is_empty()) {
            Some(run_id) => match self.store.get_run(&RunId::parse(run_id)?).await {
                // A run in an experiment the caller may not see stays out of the answer.
                Ok(run)
                    if self.hides(
                        ResourceKind::Experiment,
                        &run.info.experiment_id.to_string(),
                    ) =>
                {
                    None
                }
                Ok(run) => Some(run),
                Err(Error::NotFound(_)) => None,
                Err(error) => return Err(error),
            },
            None => None,
        };
        let mut parents = Vec::new();
        let mut next = run.as_ref().and_then(parent_of);
        while let Some(parent_id) = next.take() {
            if parents.len() >= MAX_PARENT_DEPTH {
                break;
            }
            let Ok(parent_id) = RunId::parse(&parent_id) else {
                break;
            };
            match self.store.get_run(&parent_id).await {
                Ok(parent)
                    if self.hides(
                        ResourceKind::Experiment,
                        &parent.info.experiment_id.to_string(),
                    ) =>
                {
                    break;
                }
                Ok(parent) => {
                    next = parent_of(&parent);
                    parents.push(parent);
                }
                Err(Error::NotFound(_)) => break,
                Err(error) => return Err(error),
            }
        }
        let datasets = run
            .as_ref()
            .map(|run| run.inputs.dataset_inputs.clone())
            .unwrap_or_default();
        let promotions = self
            .store
            .list_promotion_requests(Some(name), None)
            .await?
            .into_iter()
            .filter(|request| request.version == version)
            .collect();
        let aliases = self
            .store
            .alias_history(name, None)
            .await?
            .into_iter()
            .filter(|change| {
                change.version == Some(version) || change.previous_version == Some(version)
            })
            .collect();
        let content = self
            .store
            .model_version_content(name, model_version.version)
            .await?
            .map(|content| content.manifest);
        let gates = self.lineage_gates(name, version).await?;
        let retrain = match model_version
            .tags
            .iter()
            .find(|t| t.key == "slipway.retrain.id")
            .and_then(|t| t.value.parse::<i64>().ok())
        {
            Some(id) => match self.store.get_retrain(id).await {
                // The tag is the client's word; the record must be this version's.
                Ok(r) if r.model_name == name && r.version == Some(version) => Some(r),
                Ok(_) | Err(Error::NotFound(_)) => None,
                Err(error) => return Err(error),
            },
            None => None,
        };
        let steps = match &run {
            Some(run) if run.data.tags.iter().any(|t| t.key == "slipway.pipeline") => {
                self.pipeline_steps(run).await?
            }
            _ => Vec::new(),
        };
        Ok(Lineage {
            version: model_version,
            run,
            parents,
            datasets,
            promotions,
            aliases,
            content,
            gates,
            steps,
            retrain,
        })
    }
}

fn parent_of(run: &Run) -> Option<String> {
    run.data
        .tags
        .iter()
        .find(|tag| tag.key == PARENT_TAG && !tag.value.is_empty())
        .map(|tag| tag.value.clone())
}
