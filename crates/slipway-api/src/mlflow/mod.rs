//! MLflow's REST API: the classic tracking, registry and artifact endpoints plus LoggedModels,
//! mounted at `/api/2.0/mlflow/...` and at the web UI's `/ajax-api/2.0/mlflow/...`.

mod artifacts;
mod experiments;
mod logged_models;
mod registry;
mod runs;

use axum::Json;
use axum::Router;
use serde_json::{Value, json};
use slipway_app::App;
use slipway_core::tracking::{ExperimentId, KeyValue, RunId, Tag};
use slipway_core::validate;

use crate::dto::KeyValueIn;
use crate::error::{ApiError, ApiResult};
use crate::extract::IdString;

/// Where the tracking and registry routes are mounted: the client's and the web UI's prefix.
pub(crate) const API_PREFIXES: [&str; 2] = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"];
/// Where the artifact proxy is mounted.
pub(crate) const PROXY_PREFIXES: [&str; 2] = [
    "/api/2.0/mlflow-artifacts",
    "/ajax-api/2.0/mlflow-artifacts",
];

routes! {
    /// The tracking and registry routes, relative to `/api/2.0/mlflow`, each with its access rule.
    fn api_routes, api_rules, api_docs;
    GET "/experiments/get-by-name" => experiments::get_by_name [experiments::GetByName], Read ExperimentName;
    POST "/experiments/create" => experiments::create [experiments::CreateExperiment], Write None;
    POST "/experiments/search" => experiments::search [experiments::SearchExperiments], Read None;
    GET "/experiments/search" => experiments::search [experiments::SearchExperiments], Read None;
    GET "/experiments/get" => experiments::get [experiments::GetExperiment], Read Experiment;
    POST "/experiments/delete" => experiments::delete [experiments::GetExperiment], Delete Experiment;
    POST "/experiments/restore" => experiments::restore [experiments::GetExperiment], Delete Experiment;
    POST "/experiments/update" => experiments::update [experiments::UpdateExperiment], Write Experiment;
    POST "/experiments/set-experiment-tag" => experiments::set_tag [experiments::SetExperimentTag], Write Experiment;
    POST "/experiments/delete-experiment-tag" => experiments::delete_tag [experiments::DeleteExperimentTag], Write Experiment;
    POST "/runs/create" => runs::create [runs::CreateRun], Write Experiment;
    POST "/runs/update" => runs::update [runs::UpdateRun], Write Run;
    POST "/runs/delete" => runs::delete [runs::RunIdOnly], Delete Run;
    POST "/runs/restore" => runs::restore [runs::RunIdOnly], Delete Run;
    POST "/runs/log-metric" => runs::log_metric [runs::LogMetric], Write Run;
    POST "/runs/log-parameter" => runs::log_param [runs::KeyValueForRun], Write Run;
    POST "/runs/set-tag" => runs::set_tag [runs::KeyValueForRun], Write Run;
    POST "/runs/delete-tag" => runs::delete_tag [runs::DeleteTag], Write Run;
    GET "/runs/get" => runs::get [runs::GetRun], Read Run;
    POST "/runs/search" => runs::search [runs::SearchRunsRequest], Read None;
    POST "/runs/log-batch" => runs::log_batch [runs::LogBatch], Write Run;
    POST "/runs/log-model" => runs::log_model [runs::LogModel], Write Run;
    POST "/runs/log-inputs" => runs::log_inputs [runs::LogInputs], Write Run;
    POST "/runs/outputs" => runs::log_outputs [runs::LogOutputs], Write Run;
    GET "/metrics/get-history" => runs::get_history [runs::GetHistory], Read Run;
    GET "/metrics/get-history-bulk-interval" => runs::get_history_bulk_interval [runs::GetHistoryBulkInterval], Read None;
    GET "/artifacts/list" => artifacts::list_run_artifacts [artifacts::ListRunArtifacts], Read Run;
    POST "/artifacts/presigned-upload-url" => artifacts::multipart_unsupported, Write None;
    POST "/artifacts/presigned-download-url" => artifacts::multipart_unsupported, Read None;
    POST "/registered-models/create" => registry::create_model [registry::CreateModel], Write Model;
    POST "/registered-models/rename" => registry::rename_model [registry::RenameModel], Write Model;
    PATCH "/registered-models/update" => registry::update_model [registry::UpdateModel], Write Model;
    DELETE "/registered-models/delete" => registry::delete_model [registry::ModelName], Delete Model;
    GET "/registered-models/get" => registry::get_model [registry::ModelName], Read Model;
    GET "/registered-models/search" => registry::search_models [registry::Search], Read None;
    POST "/registered-models/get-latest-versions" => registry::latest_versions [registry::LatestVersions], Read Model;
    GET "/registered-models/get-latest-versions" => registry::latest_versions [registry::LatestVersions], Read Model;
    POST "/registered-models/set-tag" => registry::set_model_tag [registry::SetModelTag], Write Model;
    DELETE "/registered-models/delete-tag" => registry::delete_model_tag [registry::DeleteModelTag], Write Model;
    POST "/registered-models/alias" => registry::set_alias [registry::Alias], Write Model;
    DELETE "/registered-models/alias" => registry::delete_alias [registry::Alias], Write Model;
    GET "/registered-models/alias" => registry::get_by_alias [registry::Alias], Read Model;
    POST "/model-versions/create" => registry::create_version [registry::CreateVersion], Write Model;
    PATCH "/model-versions/update" => registry::update_version [registry::UpdateVersion], Write Model;
    POST "/model-versions/transition-stage" => registry::transition_stage [registry::TransitionStage], Write Model;
    DELETE "/model-versions/delete" => registry::delete_version [registry::VersionRef], Delete Model;
    GET "/model-versions/get" => registry::get_version [registry::VersionRef], Read Model;
    GET "/model-versions/search" => registry::search_versions [registry::Search], Read None;
    GET "/model-versions/get-download-uri" => registry::download_uri [registry::VersionRef], Read Model;
    POST "/model-versions/set-tag" => registry::set_version_tag [registry::SetVersionTag], Write Model;
    DELETE "/model-versions/delete-tag" => registry::delete_version_tag [registry::DeleteVersionTag], Write Model;
    POST "/logged-models" => logged_models::create [logged_models::CreateLoggedModel], Write Experiment;
    POST "/logged-models/search" => logged_models::search [logged_models::SearchLoggedModels], Read None;
    GET "/logged-models/{model_id}" => logged_models::get [logged_models::ModelIdBody], Read LoggedModel;
    PATCH "/logged-models/{model_id}" => logged_models::finalize [logged_models::Finalize], Write LoggedModel;
    DELETE "/logged-models/{model_id}" => logged_models::delete [logged_models::ModelIdBody], Delete LoggedModel;
    PATCH "/logged-models/{model_id}/tags" => logged_models::set_tags [logged_models::SetTags], Write LoggedModel;
    DELETE "/logged-models/{model_id}/tags/{tag_key}" => logged_models::delete_tag [logged_models::DeleteTag], Write LoggedModel;
    POST "/logged-models/{model_id}/params" => logged_models::log_params [logged_models::LogParams], Write LoggedModel;
    GET "/logged-models/{model_id}/artifacts/directories" => logged_models::list_artifacts [logged_models::ListArtifacts], Read LoggedModel;
}

routes! {
    /// The `mlflow-artifacts` proxy, relative to `/api/2.0/mlflow-artifacts`.
    fn proxy_routes, proxy_rules, proxy_docs;
    GET "/artifacts" => artifacts::list [artifacts::ListRequest], Read ArtifactPath;
    GET "/artifacts/" => artifacts::list [artifacts::ListRequest], Read ArtifactPath;
    GET "/artifacts/{*path}" => artifacts::download, Read ArtifactPath;
    PUT "/artifacts/{*path}" => artifacts::upload, Write ArtifactPath;
    DELETE "/artifacts/{*path}" => artifacts::delete, Delete ArtifactPath;
    POST "/mpu/create/{*path}" => artifacts::multipart_unsupported, Write None;
    POST "/mpu/complete/{*path}" => artifacts::multipart_unsupported, Write None;
    POST "/mpu/abort/{*path}" => artifacts::multipart_unsupported, Write None;
    GET "/presigned/{*path}" => artifacts::multipart_unsupported, Read None;
}

/// Every MLflow route, at both prefixes the client and the web UI use.
pub fn routes() -> Router<App> {
    let api = api_routes();
    let proxy = proxy_routes();
    let [api_prefix, ajax_prefix] = API_PREFIXES;
    let [proxy_prefix, ajax_proxy_prefix] = PROXY_PREFIXES;
    Router::new()
        .nest(api_prefix, api.clone())
        .nest(ajax_prefix, api)
        .nest(proxy_prefix, proxy.clone())
        .nest(ajax_proxy_prefix, proxy)
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
