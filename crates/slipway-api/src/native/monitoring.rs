//! Drift monitoring: a version's reference (set by editors, read by anyone who may read the
//! model, and by replicas for its schema), the summaries replicas send, and a deployment's
//! windows.

use axum::Json;
use axum::extract::{Extension, Path};
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_app::deployments::ModelRef;
use slipway_app::monitoring::NewReference;
use slipway_core::monitoring::MonitorReference;
use slipway_monitor::live::{Schema, Summary};

use crate::Deployments;
use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetReference {
    /// `models:/NAME/VERSION` or `models:/NAME@ALIAS` (resolved now).
    model_uri: String,
    /// Features in the model's input order, and the prediction.
    #[schema(value_type = Object)]
    schema: Schema,
    /// Profiles of the reference rows, built as the data plane builds them.
    #[schema(value_type = Object)]
    summary: Summary,
    label_column: Option<String>,
    #[schema(value_type = Option<Object>)]
    performance: Option<Value>,
}

/// A reference without its profiles (which only the server compares with).
fn describe(reference: &MonitorReference) -> Value {
    // Each numeric feature's range on the reference: what a release gate checks a holdout's
    // values against (the profiles themselves stay on the server).
    let ranges: Vec<Value> = slipway_app::gates::reference_ranges(reference)
        .into_iter()
        .map(|(name, (min, max))| json!({"name": name, "min": min, "max": max}))
        .collect();
    json!({
        "ranges": ranges,
        "model_name": reference.model_name,
        "version": reference.version.to_string(),
        "created_ms": reference.created_ms,
        "created_by": reference.created_by,
        "rows": reference.rows,
        "label_column": reference.label_column,
        "schema": reference.schema,
        "performance": reference.performance,
    })
}

pub async fn set_reference(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Message(request): Message<SetReference>,
) -> ApiResult<Json<Value>> {
    let stored = app
        .set_monitor_reference(NewReference {
            model: ModelRef::parse(&request.model_uri)?,
            schema: request.schema,
            summary: request.summary,
            label_column: request.label_column,
            performance: request.performance,
        })
        .await?;
    deployments
        .monitor
        .forget_reference(&stored.model_name, stored.version);
    // This server's plane starts profiling at its next sync, not after its schema cache ages.
    deployments.plane.forget_monitor_schemas();
    Ok(Json(json!({ "reference": describe(&stored) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetReference {
    model_uri: String,
}

pub async fn get_reference(
    AppFor(app): AppFor,
    Message(request): Message<GetReference>,
) -> ApiResult<Json<Value>> {
    let model = ModelRef::parse(&request.model_uri)?;
    match app.monitor_reference(&model).await? {
        Some(reference) => Ok(Json(json!({ "reference": describe(&reference) }))),
        None => Err(slipway_core::Error::NotFound(format!(
            "{} has no monitoring reference; create one with `slipway monitor reference create {} --data FILE`",
            request.model_uri, request.model_uri
        ))
        .into()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSummary {
    version: String,
    #[schema(value_type = Object)]
    summary: Summary,
}

/// A replica's summary of its traffic to one version of the deployment.
pub async fn report_summary(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
    Message(report): Message<ReportSummary>,
) -> ApiResult<Json<Value>> {
    let deployment = app.get_deployment(&name).await?;
    // Only the versions the deployment serves: a summary naming another would judge traffic
    // against a reference it never had.
    let serves = deployment.stable_version == report.version
        || deployment.candidate_version() == Some(report.version.as_str());
    let version: i64 = match report.version.parse() {
        Ok(version) if serves => version,
        _ => {
            return Err(slipway_core::Error::invalid(format!(
                "deployment '{name}' does not serve version {:?}",
                report.version
            ))
            .into());
        }
    };
    deployments
        .cluster
        .summary(
            &deployment,
            version,
            report.summary,
            &format!("replica:{}", app.caller().actor),
        )
        .await?;
    Ok(Json(json!({ "accepted": true })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Windows with an id below this (paging back in time).
    before: Option<I64>,
    /// At most this many windows, newest first (default 20, at most 1,000).
    limit: Option<I64>,
}

pub async fn status(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<Status>,
) -> ApiResult<Json<Value>> {
    let deployment = app.get_deployment(&name).await?;
    let limit = request.limit.map_or(20, |l| l.0.clamp(1, 1_000) as usize);
    let windows = app
        .monitor_windows(&name, request.before.map(|b| b.0), limit)
        .await?;
    let mut references = serde_json::Map::new();
    let versions =
        std::iter::once(deployment.stable_version.as_str()).chain(deployment.candidate_version());
    for version in versions {
        let model = ModelRef::Version {
            name: deployment.model_name.clone(),
            version: version.to_owned(),
        };
        let reference = app.monitor_reference(&model).await?;
        references.insert(
            version.to_owned(),
            reference.as_ref().map_or(Value::Null, describe),
        );
    }
    let next = (windows.len() == limit)
        .then(|| windows.last().map(|w| w.id))
        .flatten();
    Ok(Json(json!({
        "deployment": deployment.name,
        "model_name": deployment.model_name,
        "stable_version": deployment.stable_version,
        "candidate_version": deployment.candidate_version(),
        "settings": deployment.settings.monitor,
        "references": references,
        "windows": windows,
        "next_before": next,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The `x-request-id` of the response that carried the prediction.
    request_id: String,
    /// The true value: one for a single-row request, or a list of one per row.
    #[schema(value_type = Object)]
    label: Value,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    labels: Vec<Label>,
}

/// True labels, late: joined to the logged predictions by request id.
pub async fn labels(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<Labels>,
) -> ApiResult<Json<Value>> {
    let labels = request
        .labels
        .into_iter()
        .map(|l| (l.request_id, l.label))
        .collect();
    Ok(Json(app.upload_labels(&name, labels).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    /// Window length in milliseconds (default an hour).
    window_ms: Option<I64>,
    /// Windows, newest first (default 24, at most 1,000).
    windows: Option<I64>,
}

pub async fn performance(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<Performance>,
) -> ApiResult<Json<Value>> {
    let window_ms = request.window_ms.map_or(3_600_000, |w| w.0);
    let windows = request.windows.map_or(24, |w| w.0.clamp(0, 1_000) as usize);
    Ok(Json(app.performance(&name, window_ms, windows).await?))
}

/// Where the deployment's SLO stands: each objective's SLI over its window, the error budget
/// left and the burn rates over the alerting windows.
pub async fn slo(AppFor(app): AppFor, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(app.slo_status(&name).await?))
}
