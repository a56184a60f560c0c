//! Release gates: run by the server on a holdout in its artifact store (editors of the model),
//! and their records (readers).

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_app::gates::GateRequest;
use slipway_core::gate::GateRecord;

use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};
use crate::mlflow::required_str;

pub(crate) fn gate_json(record: &GateRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.model_name,
        "version": record.version,
        "champion_version": record.champion_version,
        "passed": record.passed,
        "status": if record.passed { "passed" } else { "failed" },
        "data": record.data_uri,
        "data_sha256": record.data_sha256,
        "rules": record.rules,
        "rules_source": record.rules_source.as_str(),
        "run_id": record.run_id,
        "metrics": record.metrics,
        "created_at": record.created_at,
        "created_by": record.created_by,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunGate {
    /// The candidate: models:/NAME/VERSION or models:/NAME@ALIAS.
    model_uri: Option<String>,
    /// The champion; without it, the version holding the policy's protected alias, if any.
    against: Option<String>,
    /// The holdout (.csv or .parquet) in the artifact store: runs:/RUN_ID/PATH or
    /// mlflow-artifacts:/PATH; without it, the policy's pinned holdout.
    data: Option<String>,
    /// The holdout's column of true labels (or values).
    label: Option<String>,
    /// A sensitive column, for fairness.
    sensitive: Option<String>,
    /// The favourable class, for fairness (default "1").
    positive: Option<String>,
    /// Rules (`f1 >= champion - 0.01`); without them, the policy's gate rules, else the defaults.
    rules: Option<Vec<String>>,
    /// How far below the champion the default rules let a quality metric be (default 0.01).
    tolerance: Option<f64>,
    /// The price of one CPU hour, for the cost per 1,000 predictions (default 0.05).
    cpu_hour_price: Option<f64>,
    /// Rows timed one at a time (default 200, at most 2000).
    latency_rows: Option<I64>,
}

pub async fn run(
    AppFor(app): AppFor,
    Message(request): Message<RunGate>,
) -> ApiResult<Json<Value>> {
    let latency_rows = request
        .latency_rows
        .map(|n| {
            usize::try_from(n.0).map_err(|_| {
                slipway_core::Error::invalid("latency_rows is a positive number of rows")
            })
        })
        .transpose()?;
    let done = app
        .run_gate(GateRequest {
            candidate: required_str(request.model_uri, "model_uri")?,
            against: request.against.filter(|a| !a.is_empty()),
            data: request.data.filter(|d| !d.is_empty()),
            label: required_str(request.label, "label")?,
            sensitive: request.sensitive.filter(|s| !s.is_empty()),
            positive: request.positive,
            rules: request.rules,
            tolerance: request.tolerance,
            cpu_hour_price: request.cpu_hour_price,
            latency_rows,
        })
        .await?;
    let mut gate = gate_json(&done.record);
    gate["report"] = done.report;
    Ok(Json(json!({ "gate": gate })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListGates {
    name: Option<String>,
    version: Option<String>,
    max_results: Option<I64>,
}

pub async fn list(
    AppFor(app): AppFor,
    Message(request): Message<ListGates>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let limit = request
        .max_results
        .map_or(100, |n| usize::try_from(n.0.clamp(1, 1000)).unwrap_or(100));
    let gates = app
        .list_gates(&name, request.version.as_deref(), limit)
        .await?;
    Ok(Json(json!({
        "gates": gates.iter().map(|g| {
            let mut out = gate_json(g);
            out["report"] = serde_json::from_str(&g.report).unwrap_or(Value::Null);
            out
        }).collect::<Vec<_>>(),
    })))
}
