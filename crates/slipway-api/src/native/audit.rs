//! The audit trail over HTTP (admin only): paging and chain verification.

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::audit::AuditRecord;
use slipway_core::ports::AuditFilter;

use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadAudit {
    resource: Option<String>,
    actor: Option<String>,
    /// Epoch milliseconds.
    since: Option<I64>,
    max_results: Option<I64>,
    page_token: Option<String>,
}

pub(crate) fn entry(record: &AuditRecord) -> Value {
    json!({
        "seq": record.seq,
        "time": record.time_ms,
        "actor": record.actor,
        "action": record.action,
        "resource": record.resource,
        "request_id": record.request_id,
        "outcome": record.outcome.as_str(),
        // Stored as canonical JSON text; shown as the object it is.
        "summary": serde_json::from_str::<Value>(&record.summary).unwrap_or(Value::String(record.summary.clone())),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    })
}

pub async fn read(
    AppFor(app): AppFor,
    Message(request): Message<ReadAudit>,
) -> ApiResult<Json<Value>> {
    let filter = AuditFilter {
        resource: request.resource.filter(|r| !r.is_empty()),
        actor: request.actor.filter(|a| !a.is_empty()),
        since_ms: request.since.map(|since| since.0),
    };
    let page = app
        .audit_log(
            &filter,
            request.max_results.map(|max| max.0),
            request.page_token.as_deref(),
        )
        .await?;
    let entries: Vec<Value> = page.entries.iter().map(entry).collect();
    let mut body = json!({ "entries": entries });
    if let Some(token) = page.next_page_token {
        body["next_page_token"] = json!(token);
    }
    Ok(Json(body))
}

pub async fn verify(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    let report = app.verify_audit(|_| {}).await?;
    let mut body = json!({
        "intact": report.broken.is_none(),
        "checked": report.checked,
        "head": { "seq": report.head_seq, "hash": report.head_hash },
    });
    if let Some(broken) = report.broken {
        body["first_bad_entry"] = json!({ "seq": broken.seq, "reason": broken.reason });
    }
    Ok(Json(body))
}

/// The platform's state as documents (policies, deployments, SLOs, alerting, triggers,
/// permissions), as `slipway export state` writes them.
pub async fn state(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "documents": app.export_state().await? })))
}

/// Documents a plan or an apply takes, in the shape `export` gives them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateDocuments {
    #[schema(value_type = Vec<Object>)]
    documents: Vec<slipway_core::state::Document>,
}

/// More documents than a platform's objects plausibly number: a bound on one request's work.
const MAX_DOCUMENTS: usize = 10_000;

fn bounded(
    request: StateDocuments,
) -> Result<Vec<slipway_core::state::Document>, crate::error::ApiError> {
    if request.documents.len() > MAX_DOCUMENTS {
        return Err(slipway_core::Error::invalid(format!(
            "at most {MAX_DOCUMENTS} documents at once, got {}",
            request.documents.len()
        ))
        .into());
    }
    Ok(request.documents)
}

/// What applying the documents would change, and what changed outside apply; nothing is
/// written.
pub async fn plan_state(
    AppFor(app): AppFor,
    Message(request): Message<StateDocuments>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "plan": app.plan_state(bounded(request)?).await? }),
    ))
}

/// Makes the server match the documents, all or nothing.
pub async fn apply_state(
    AppFor(app): AppFor,
    Message(request): Message<StateDocuments>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "plan": app.apply_state(bounded(request)?).await? }),
    ))
}
