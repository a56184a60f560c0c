//! MLflow's REST API: the classic tracking, registry and artifact endpoints plus LoggedModels,
//! mounted at `/api/2.0/mlflow/...` and at the web UI's `/ajax-api/2.0/mlflow/...`.

mod artifacts;
mod experiments;
mod logged_models;
mod registry;
mod runs;

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};
use slipway_app::App;
use slipway_core::tracking::{ExperimentId, KeyValue, RunId, Tag};
use slipway_core::validate;

use crate::dto::KeyValueIn;
use crate::error::{ApiError, ApiResult};
use crate::extract::IdString;

/// The tracking and registry routes, relative to `/api/2.0/mlflow`.
fn mlflow_routes() -> Router<App> {
    Router::new()
        .route("/experiments/get-by-name", get(experiments::get_by_name))
        .route("/experiments/create", post(experiments::create))
        .route(
            "/experiments/search",
            post(experiments::search).get(experiments::search),
        )
        .route("/experiments/get", get(experiments::get))
        .route("/experiments/delete", post(experiments::delete))
        .route("/experiments/restore", post(experiments::restore))
        .route("/experiments/update", post(experiments::update))
        .route(
            "/experiments/set-experiment-tag",
            post(experiments::set_tag),
        )
        .route(
            "/experiments/delete-experiment-tag",
            post(experiments::delete_tag),
        )
        .route("/runs/create", post(runs::create))
        .route("/runs/update", post(runs::update))
        .route("/runs/delete", post(runs::delete))
        .route("/runs/restore", post(runs::restore))
        .route("/runs/log-metric", post(runs::log_metric))
        .route("/runs/log-parameter", post(runs::log_param))
        .route("/runs/set-tag", post(runs::set_tag))
        .route("/runs/delete-tag", post(runs::delete_tag))
        .route("/runs/get", get(runs::get))
        .route("/runs/search", post(runs::search))
        .route("/runs/log-batch", post(runs::log_batch))
        .route("/runs/log-model", post(runs::log_model))
        .route("/runs/log-inputs", post(runs::log_inputs))
        .route("/runs/outputs", post(runs::log_outputs))
        .route("/metrics/get-history", get(runs::get_history))
        .route(
            "/metrics/get-history-bulk-interval",
            get(runs::get_history_bulk_interval),
        )
        .route("/artifacts/list", get(artifacts::list_run_artifacts))
        .route(
            "/artifacts/presigned-upload-url",
            post(artifacts::multipart_unsupported),
        )
        .route(
            "/artifacts/presigned-download-url",
            post(artifacts::multipart_unsupported),
        )
        .route("/registered-models/create", post(registry::create_model))
        .route("/registered-models/rename", post(registry::rename_model))
        .route(
            "/registered-models/update",
            axum::routing::patch(registry::update_model),
        )
        .route(
            "/registered-models/delete",
            axum::routing::delete(registry::delete_model),
        )
        .route("/registered-models/get", get(registry::get_model))
        .route("/registered-models/search", get(registry::search_models))
        .route(
            "/registered-models/get-latest-versions",
            post(registry::latest_versions).get(registry::latest_versions),
        )
        .route("/registered-models/set-tag", post(registry::set_model_tag))
        .route(
            "/registered-models/delete-tag",
            axum::routing::delete(registry::delete_model_tag),
        )
        .route(
            "/registered-models/alias",
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        )
        .route("/model-versions/create", post(registry::create_version))
        .route(
            "/model-versions/update",
            axum::routing::patch(registry::update_version),
        )
        .route(
            "/model-versions/transition-stage",
            post(registry::transition_stage),
        )
        .route(
            "/model-versions/delete",
            axum::routing::delete(registry::delete_version),
        )
        .route("/model-versions/get", get(registry::get_version))
        .route("/model-versions/search", get(registry::search_versions))
        .route(
            "/model-versions/get-download-uri",
            get(registry::download_uri),
        )
        .route("/model-versions/set-tag", post(registry::set_version_tag))
        .route(
            "/model-versions/delete-tag",
            axum::routing::delete(registry::delete_version_tag),
        )
        .route("/logged-models", post(logged_models::create))
        .route("/logged-models/search", post(logged_models::search))
        .route(
            "/logged-models/{model_id}",
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        )
        .route(
            "/logged-models/{model_id}/tags",
            axum::routing::patch(logged_models::set_tags),
        )
        .route(
            "/logged-models/{model_id}/tags/{tag_key}",
            axum::routing::delete(logged_models::delete_tag),
        )
        .route(
            "/logged-models/{model_id}/params",
            post(logged_models::log_params),
        )
        .route(
            "/logged-models/{model_id}/artifacts/directories",
            get(logged_models::list_artifacts),
        )
}

/// Every MLflow route, at both prefixes the client and the web UI use.
pub fn routes() -> Router<App> {
    let api = mlflow_routes();
    let proxy = artifacts::proxy_routes();
    Router::new()
        .nest("/api/2.0/mlflow", api.clone())
        .nest("/ajax-api/2.0/mlflow", api)
        .nest("/api/2.0/mlflow-artifacts", proxy.clone())
        .nest("/ajax-api/2.0/mlflow-artifacts", proxy)
}

/// Serialises a (borrowing) response message into a JSON response.
pub(crate) fn json_response<T: serde::Serialize>(
    message: &T,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let body = serde_json::to_vec(message)
        .map_err(|e| ApiError::Core(slipway_core::Error::internal("encoding a response", e)))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The empty message most mutations answer with.
pub(crate) fn ok() -> Json<Value> {
    Json(json!({}))
}

pub(crate) fn required<T>(value: Option<T>, field: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::Core(validate::missing(field)))
}

/// A required string that must also be non-empty (proto3 cannot tell "" from unset).
pub(crate) fn required_str(value: Option<String>, field: &str) -> ApiResult<String> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::Core(validate::missing(field))),
    }
}

/// The client sends both `run_id` and the deprecated `run_uuid`; either will do.
pub(crate) fn run_id(run_id: Option<String>, run_uuid: Option<String>) -> ApiResult<RunId> {
    let raw = run_id
        .filter(|id| !id.is_empty())
        .or(run_uuid.filter(|id| !id.is_empty()))
        .ok_or_else(|| ApiError::Core(validate::missing("run_id")))?;
    Ok(RunId::parse(&raw)?)
}

pub(crate) fn experiment_id(raw: Option<IdString>, field: &str) -> ApiResult<ExperimentId> {
    let raw = required(raw, field)?;
    if raw.0.is_empty() {
        return Err(ApiError::Core(validate::missing(field)));
    }
    Ok(ExperimentId::parse(&raw.0)?)
}

pub(crate) fn key_values(items: Vec<KeyValueIn>, field: &str) -> ApiResult<Vec<Tag>> {
    items
        .into_iter()
        .map(|item| {
            Ok(KeyValue::new(
                required(item.key, &format!("{field}.key"))?,
                item.value.unwrap_or_default(),
            ))
        })
        .collect()
}
