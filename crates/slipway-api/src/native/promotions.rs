//! Promotion policies, requests and decisions, alias rollback and history, and lineage.

use axum::Json;
use axum::extract::Path;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_app::promotions::{CheckOutcome, Lineage, PolicyInput};
use slipway_core::promotion::{AliasChange, PromotionPolicy, PromotionRequest, PromotionTarget};
use slipway_core::registry::Stage;

use crate::access::AppFor;
use crate::dto::RunOut;
use crate::error::ApiResult;
use crate::extract::{I64, Message};
use crate::mlflow::{ok, required, required_str};

fn policy_json(policy: &PromotionPolicy) -> Value {
    let stages: Vec<&str> = policy.protected_stages.iter().map(|s| s.as_str()).collect();
    json!({
        "name": policy.model_name,
        "protected_aliases": policy.protected_aliases,
        "protected_stages": stages,
        "required_approvals": policy.required_approvals,
        "checks": policy.checks,
        "max_unapproved_weight": policy.max_unapproved_weight,
        "require_gate": policy.require_gate,
        "gate_rules": policy.gate_rules,
        "gate_data": policy.gate_data,
        "gate_data_sha256": policy.gate_data_sha256,
        "updated_at": policy.updated_at,
        "updated_by": policy.updated_by,
    })
}

pub(crate) fn request_json(request: &PromotionRequest) -> Value {
    let decisions: Vec<Value> = request
        .decisions
        .iter()
        .map(|decision| {
            json!({
                "user": decision.approver,
                "decision": if decision.approve { "approve" } else { "reject" },
                "reason": decision.reason,
                "time": decision.decided_at,
            })
        })
        .collect();
    json!({
        "id": request.id,
        "name": request.model_name,
        "version": request.version,
        "target": { "kind": request.target.kind(), "value": request.target.value() },
        "requester": request.requester,
        "reason": request.reason,
        "state": request.state.as_str(),
        "approvals": request.approvals(),
        "created_at": request.created_at,
        "decided_at": request.decided_at,
        "decisions": decisions,
    })
}

fn change_json(change: &AliasChange) -> Value {
    json!({
        "name": change.model_name,
        "alias": change.alias,
        "version": change.version,
        "previous_version": change.previous_version,
        "time": change.changed_at,
        "via": change.via,
    })
}

fn checks_json(checks: &CheckOutcome) -> Value {
    json!({ "passed": checks.passed, "detail": checks.detail })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    protected_aliases: Option<Vec<String>>,
    protected_stages: Option<Vec<String>>,
    required_approvals: Option<I64>,
    checks: Option<String>,
    max_unapproved_weight: Option<I64>,
    /// A passed release gate (run by the server) must stand behind a promotion.
    require_gate: Option<bool>,
    /// The rules such a gate must have judged; without them, the default rules.
    gate_rules: Option<Vec<String>>,
    /// The holdout such a gate must have run on (runs:/RUN_ID/PATH or mlflow-artifacts:/PATH);
    /// its content is pinned when the policy is set.
    gate_data: Option<String>,
}

pub async fn set_policy(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<SetPolicy>,
) -> ApiResult<Json<Value>> {
    let approvals = request
        .required_approvals
        .map(|n| {
            u32::try_from(n.0).map_err(|_| {
                slipway_core::Error::invalid("required_approvals must be between 1 and 4294967295")
            })
        })
        .transpose()?;
    let max_unapproved_weight = request
        .max_unapproved_weight
        .map(|n| {
            u8::try_from(n.0).ok().filter(|n| *n <= 100).ok_or_else(|| {
                slipway_core::Error::invalid(
                    "max_unapproved_weight is a percentage of live traffic: between 0 and 100",
                )
            })
        })
        .transpose()?;
    let policy = app
        .set_policy(
            &name,
            PolicyInput {
                aliases: request.protected_aliases,
                stages: request.protected_stages,
                required_approvals: approvals,
                checks: request.checks,
                max_unapproved_weight,
                require_gate: request.require_gate.unwrap_or(false),
                gate_rules: request.gate_rules,
                gate_data: request.gate_data,
            },
        )
        .await?;
    Ok(Json(json!({ "policy": policy_json(&policy) })))
}

pub async fn get_policy(AppFor(app): AppFor, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    match app.get_policy(&name).await? {
        Some(policy) => Ok(Json(json!({ "policy": policy_json(&policy) }))),
        None => Err(slipway_core::Error::not_found(format!(
            "registered model '{name}' has no promotion policy"
        ))
        .into()),
    }
}

pub async fn delete_policy(
    AppFor(app): AppFor,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    app.delete_policy(&name).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestPromotion {
    name: Option<String>,
    version: Option<String>,
    alias: Option<String>,
    stage: Option<String>,
    reason: Option<String>,
}

pub async fn request(
    AppFor(app): AppFor,
    Message(request): Message<RequestPromotion>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required_str(request.version, "version")?;
    let target = match (request.alias, request.stage) {
        (Some(alias), None) => PromotionTarget::Alias(alias),
        (None, Some(stage)) => PromotionTarget::Stage(Stage::parse(&stage)?),
        _ => {
            return Err(slipway_core::Error::invalid(
                "name exactly one of 'alias' or 'stage' to promote to",
            )
            .into());
        }
    };
    let (created, checks) = app
        .request_promotion(
            &name,
            &version,
            target,
            request.reason.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({
        "promotion": request_json(&created),
        "checks": checks_json(&checks),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPromotions {
    name: Option<String>,
    state: Option<String>,
}

pub async fn list(
    AppFor(app): AppFor,
    Message(request): Message<ListPromotions>,
) -> ApiResult<Json<Value>> {
    let requests = app
        .list_promotions(request.name.as_deref(), request.state.as_deref())
        .await?;
    let requests: Vec<Value> = requests.iter().map(request_json).collect();
    Ok(Json(json!({ "promotions": requests })))
}

fn promotion_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| {
        slipway_core::Error::invalid(format!("promotion id '{raw}' is not a number")).into()
    })
}

pub async fn get(AppFor(app): AppFor, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let request = app.get_promotion(promotion_id(&id)?).await?;
    Ok(Json(json!({ "promotion": request_json(&request) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    reason: Option<String>,
}

pub async fn approve(
    AppFor(app): AppFor,
    Path(id): Path<String>,
    Message(request): Message<Decide>,
) -> ApiResult<Json<Value>> {
    let decided = app
        .approve_promotion(
            promotion_id(&id)?,
            request.reason.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({ "promotion": request_json(&decided) })))
}

pub async fn reject(
    AppFor(app): AppFor,
    Path(id): Path<String>,
    Message(request): Message<Decide>,
) -> ApiResult<Json<Value>> {
    let reason = required_str(request.reason, "reason")?;
    let decided = app.reject_promotion(promotion_id(&id)?, &reason).await?;
    Ok(Json(json!({ "promotion": request_json(&decided) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    name: Option<String>,
    alias: Option<String>,
}

pub async fn rollback(
    AppFor(app): AppFor,
    Message(request): Message<AliasRequest>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let alias = required_str(request.alias, "alias")?;
    let change = app.rollback_alias(&name, &alias).await?;
    Ok(Json(json!({ "change": change_json(&change) })))
}

pub async fn alias_history(
    AppFor(app): AppFor,
    Message(request): Message<AliasRequest>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let changes = app
        .alias_history(&name, request.alias.as_deref().filter(|a| !a.is_empty()))
        .await?;
    let changes: Vec<Value> = changes.iter().map(change_json).collect();
    Ok(Json(json!({ "changes": changes })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineageRequest {
    name: Option<String>,
    version: Option<String>,
}

pub(crate) fn lineage_json(lineage: &Lineage) -> Value {
    let version = &lineage.version;
    let source_tags: Value = lineage
        .run
        .as_ref()
        .map(|run| {
            run.data
                .tags
                .iter()
                .filter(|tag| tag.key.starts_with("mlflow.source.") || tag.key == "mlflow.user")
                .map(|tag| (tag.key.clone(), Value::String(tag.value.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .unwrap_or(Value::Null);
    let datasets: Vec<Value> = lineage
        .datasets
        .iter()
        .map(|input| {
            json!({
                "name": input.dataset.name,
                "digest": input.dataset.digest,
                "source_type": input.dataset.source_type,
                "source": input.dataset.source,
                "context": input.tags.iter().find(|t| t.key == "mlflow.data.context").map(|t| t.value.clone()),
            })
        })
        .collect();
    json!({
        "model_version": {
            "name": version.name,
            "version": version.version,
            "source": version.source,
            "run_id": version.run_id,
            "model_id": version.model_id,
            "registered_by": version.user_id,
            "registered_at": version.creation_timestamp,
            "stage": version.current_stage.as_str(),
            "aliases": version.aliases,
            // Where a version came from beyond its run, e.g. `slipway.converted_from`.
            "tags": version.tags.iter().map(|tag| (tag.key.clone(), Value::String(tag.value.clone()))).collect::<serde_json::Map<_, _>>(),
            "content_digest": lineage.content.as_ref().map(|c| c.digest()),
            "files": lineage.content.as_ref().map(|c| &c.files),
        },
        "run": lineage.run.as_ref().map(RunOut::from),
        "source": source_tags,
        "datasets": datasets,
        "parents": lineage.parents.iter().map(|run| {
            let tag = |key: &str| run.data.tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
            json!({
                "run_id": run.info.run_id.as_str(),
                "run_name": run.info.run_name,
                "experiment_id": run.info.experiment_id.to_string(),
                // A pipeline's run, when the version came from one of its steps.
                "pipeline": tag("slipway.pipeline"),
                "git_commit": tag("mlflow.source.git.commit"),
            })
        }).collect::<Vec<_>>(),
        "promotions": lineage.promotions.iter().map(request_json).collect::<Vec<_>>(),
        "alias_history": lineage.aliases.iter().map(change_json).collect::<Vec<_>>(),
        "gates": lineage.gates.iter().map(crate::native::gates::gate_json).collect::<Vec<_>>(),
        "retrain": lineage.retrain.as_ref().map(crate::native::retrain::retrain_json),
        // A pipeline's steps: each step's run, its cache key (command, params, environment and
        // input digests) and its input datasets with their digests.
        "steps": lineage.steps.iter().map(|run| {
            let tag = |key: &str| run.data.tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
            json!({
                "run_id": run.info.run_id.as_str(),
                "step": tag("slipway.pipeline.step"),
                "cache_key": tag("slipway.pipeline.cache_key"),
                "status": run.info.status.as_str(),
                "datasets": run.inputs.dataset_inputs.iter().map(|d| json!({
                    "name": d.dataset.name,
                    "digest": d.dataset.digest,
                })).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
    })
}

pub async fn lineage(
    AppFor(app): AppFor,
    Message(request): Message<LineageRequest>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    let lineage = app.lineage(&name, &version).await?;
    Ok(Json(json!({ "lineage": lineage_json(&lineage) })))
}

/// A version's files as registered (`null` when slipway does not store them), so that a
/// client fetching them can check every byte.
pub async fn content(
    AppFor(app): AppFor,
    Message(request): Message<LineageRequest>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    let manifest = app.version_manifest(&name, &version).await?;
    Ok(Json(json!({
        "content_digest": manifest.as_ref().map(|m| m.digest()),
        "files": manifest.as_ref().map(|m| &m.files),
    })))
}
