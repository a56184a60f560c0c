//! Alerting: the configuration (receivers, route, rules; applied whole by admins), alerts
//! (active from the evaluator, resolved from the store) and silences (set and expired by
//! approvers, the people who may also roll a deployment back).

use axum::Json;
use axum::extract::{Extension, Path};
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::alerting::{AlertConfig, AlertState, Matcher, NewSilence, StoredAlertConfig};

use crate::Deployments;
use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{Bool, I64, Message};

/// The rules as anyone who may read sees them: receivers by name and kind only (their URLs and
/// secret references are the admins').
fn rules_view(stored: &StoredAlertConfig) -> Value {
    json!({
        "revision": stored.revision,
        "updated_ms": stored.updated_ms,
        "updated_by": stored.updated_by,
        "rules": stored.config.rules,
        "route": stored.config.route,
        "receivers": stored.config.receivers.iter().map(|r| json!({
            "name": r.name,
            "kind": r.target().map(|t| t.kind()).unwrap_or("invalid"),
        })).collect::<Vec<_>>(),
    })
}

pub async fn get_rules(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    Ok(Json(rules_view(&app.alert_config().await?)))
}

pub async fn get_config(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    // `{config, revision, updated_ms, updated_by}`: a Revisioned document as it serializes.
    Ok(Json(json!(app.alert_config().await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// The whole configuration: `receivers`, `route`, `rules` (a rules file, as JSON).
    #[schema(value_type = Object)]
    config: AlertConfig,
    /// Refuse unless the stored configuration is still at this revision (0: none yet).
    expected_revision: Option<i64>,
    /// Only say what would change.
    #[serde(default)]
    dry_run: bool,
}

pub async fn apply_config(
    AppFor(app): AppFor,
    Message(request): Message<ApplyConfig>,
) -> ApiResult<Json<Value>> {
    let (diff, stored) = app
        .apply_alert_config(request.config, request.expected_revision, request.dry_run)
        .await?;
    Ok(Json(json!({
        "applied": !request.dry_run,
        "changed": !diff.is_empty(),
        "diff": diff,
        "revision": stored.revision,
    })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAlerts {
    /// `pending`, `firing` or `resolved`.
    state: Option<String>,
    deployment: Option<String>,
    /// Resolved alerts returned at most (newest first; default 100, at most 1,000).
    limit: Option<I64>,
}

pub async fn list(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Message(request): Message<ListAlerts>,
) -> ApiResult<Json<Value>> {
    let state = request
        .state
        .as_deref()
        .map(AlertState::parse)
        .transpose()?;
    let limit = request.limit.map_or(100, |l| l.0.clamp(1, 1_000) as usize);
    let active = if deployments.cluster.is_leader() {
        deployments.alerter.active()
    } else {
        app.stored_firing_alerts().await?
    };
    let listed = app
        .list_alerts(active, state, request.deployment, limit)
        .await?;
    Ok(Json(json!({
        "alerts": listed.active,
        "resolved": listed.history,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSilence {
    /// `LABEL=VALUE` or `LABEL!=VALUE`, all of which an alert must match.
    matchers: Vec<String>,
    /// Start (epoch ms); now when absent.
    starts_ms: Option<i64>,
    ends_ms: i64,
    /// Why, and who to ask.
    comment: String,
}

pub async fn create_silence(
    AppFor(app): AppFor,
    Message(request): Message<CreateSilence>,
) -> ApiResult<Json<Value>> {
    let matchers = request
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let silence = app
        .create_silence(NewSilence {
            matchers,
            starts_ms: request.starts_ms.unwrap_or_else(slipway_app::now_ms),
            ends_ms: request.ends_ms,
            comment: request.comment,
        })
        .await?;
    Ok(Json(json!({ "silence": silence })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSilences {
    /// Expired silences too (the newest 1,000).
    all: Option<Bool>,
}

pub async fn list_silences(
    AppFor(app): AppFor,
    Message(request): Message<ListSilences>,
) -> ApiResult<Json<Value>> {
    let silences = app.list_silences(request.all.is_some_and(|b| b.0)).await?;
    Ok(Json(json!({ "silences": silences })))
}

pub async fn expire_silence(AppFor(app): AppFor, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id: i64 = id
        .parse()
        .map_err(|_| slipway_core::Error::invalid(format!("silence id '{id}' is not a number")))?;
    let silence = app.expire_silence(id).await?;
    Ok(Json(json!({ "silence": silence })))
}
