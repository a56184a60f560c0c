//! Retraining: triggers (applied whole by admins, read by anyone who may read), firings by hand
//! and by workers that saw new data, and the retrains workers claim and report on.

use axum::Json;
use axum::extract::Path;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::retrain::{Cause, Retrain, RetrainProgress, RetrainState, TriggerConfig};

use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};
use crate::mlflow::required_str;

pub(crate) fn retrain_json(retrain: &Retrain) -> Value {
    json!({
        "id": retrain.id,
        "trigger": retrain.trigger,
        "model": retrain.model_name,
        "deployment": retrain.deployment,
        "state": retrain.state.as_str(),
        "cause": retrain.cause,
        "cause_text": retrain.cause.describe(),
        "reason": retrain.reason,
        "requested_by": retrain.requested_by,
        "created_ms": retrain.created_ms,
        "updated_ms": retrain.updated_ms,
        "claimed_by": retrain.claimed_by,
        "pipeline_run_id": retrain.pipeline_run_id,
        "version": retrain.version,
        "gate_id": retrain.gate_id,
        "rollout_id": retrain.rollout_id,
    })
}

pub async fn get_triggers(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    // `{config, revision, updated_ms, updated_by}`, as the alerting configuration's.
    Ok(Json(json!(app.trigger_config().await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyTriggers {
    /// The whole triggers file (`triggers: [...]`), as JSON.
    #[schema(value_type = Object)]
    config: TriggerConfig,
    /// Refuse unless the stored triggers are still at this revision (0: none yet).
    expected_revision: Option<i64>,
    /// Only say what would change.
    #[serde(default)]
    dry_run: bool,
}

pub async fn apply_triggers(
    AppFor(app): AppFor,
    Message(request): Message<ApplyTriggers>,
) -> ApiResult<Json<Value>> {
    // A trigger's canary settings are a rollout request without its candidate: checked here,
    // where the rollout request's shape is known, so a bad one fails now, not at 3 a.m.
    for trigger in &request.config.triggers {
        if let Some(rollout) = &trigger.rollout {
            serde_json::from_value::<super::deployments::StartRollout>(rollout.clone()).map_err(
                |e| {
                    slipway_core::Error::invalid(format!(
                        "trigger '{}': rollout: {e}",
                        trigger.name
                    ))
                },
            )?;
        }
    }
    let (diff, stored) = app
        .apply_triggers(request.config, request.expected_revision, request.dry_run)
        .await?;
    let changed = !(diff.added.is_empty() && diff.changed.is_empty() && diff.removed.is_empty());
    Ok(Json(json!({
        "applied": !request.dry_run,
        "changed": changed,
        "diff": diff,
        "revision": stored.revision,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fire {
    /// Why, for the history.
    reason: Option<String>,
}

pub async fn fire(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<Fire>,
) -> ApiResult<Json<Value>> {
    let reason = request.reason.unwrap_or_default();
    if reason.len() > 1_024 {
        return Err(slipway_core::Error::invalid("reason is at most 1,024 characters").into());
    }
    let retrain = app
        .fire_trigger(&name, Cause::Manual { reason })
        .await?
        .ok_or_else(|| slipway_core::Error::internal_msg("a manual firing was not recorded"))?;
    Ok(Json(json!({ "retrain": retrain_json(&retrain) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewData {
    /// The watched path, as the trigger names it.
    path: Option<String>,
    /// A digest of what is under it now (names, sizes, content).
    digest: Option<String>,
}

/// A worker saw the data under a trigger's watched path change.
pub async fn new_data(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<NewData>,
) -> ApiResult<Json<Value>> {
    let path = required_str(request.path, "path")?;
    let digest = required_str(request.digest, "digest")?;
    if digest.len() > 128 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) || path.len() > 1_024 {
        return Err(slipway_core::Error::invalid(
            "digest is a hex digest (at most 128 characters) and path at most 1,024 characters",
        )
        .into());
    }
    let retrain = app
        .fire_trigger(&name, Cause::Data { path, digest })
        .await?;
    Ok(Json(
        json!({ "retrain": retrain.as_ref().map(retrain_json) }),
    ))
}

pub async fn claim(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    Ok(Json(match app.claim_retrain().await? {
        Some((retrain, trigger)) => {
            json!({ "retrain": retrain_json(&retrain), "trigger": trigger })
        }
        None => json!({ "retrain": null }),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// running, rolling_out, awaiting_approval, gate_failed, registered, promoted,
    /// rolled_back or failed.
    state: Option<String>,
    reason: Option<String>,
    pipeline_run_id: Option<String>,
    version: Option<I64>,
    gate_id: Option<I64>,
    rollout_id: Option<I64>,
}

fn retrain_id(raw: &str) -> Result<i64, slipway_core::Error> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| slipway_core::Error::invalid(format!("'{raw}' is not a retrain id")))
}

pub async fn progress(
    AppFor(app): AppFor,
    Path(id): Path<String>,
    Message(request): Message<Progress>,
) -> ApiResult<Json<Value>> {
    let retrain = app
        .report_retrain(
            retrain_id(&id)?,
            RetrainProgress {
                state: request
                    .state
                    .as_deref()
                    .map(RetrainState::parse)
                    .transpose()?,
                reason: request.reason,
                pipeline_run_id: request.pipeline_run_id,
                version: request.version.map(|v| v.0),
                gate_id: request.gate_id.map(|v| v.0),
                rollout_id: request.rollout_id.map(|v| v.0),
            },
        )
        .await?;
    Ok(Json(json!({ "retrain": retrain_json(&retrain) })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRetrains {
    trigger: Option<String>,
    model: Option<String>,
    /// Newest first; default 100, at most 1,000.
    max_results: Option<I64>,
}

pub async fn list(
    AppFor(app): AppFor,
    Message(request): Message<ListRetrains>,
) -> ApiResult<Json<Value>> {
    let limit = request
        .max_results
        .map_or(100, |n| usize::try_from(n.0.clamp(1, 1000)).unwrap_or(100));
    let retrains = app
        .list_retrains(request.trigger.as_deref(), request.model.as_deref(), limit)
        .await?;
    Ok(Json(json!({
        "retrains": retrains.iter().map(retrain_json).collect::<Vec<_>>(),
    })))
}

pub async fn get(AppFor(app): AppFor, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "retrain": retrain_json(&app.get_retrain(retrain_id(&id)?).await?) }),
    ))
}
