//! `/logged-models/*` handlers (MLflow 3).

use axum::Json;
use axum::extract::Path;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::logged_model::{LoggedModel, LoggedModelStatus, parse_logged_model_id};
use slipway_core::{Error, validate};

use super::{experiment_id, key_values, ok, required, required_str};
use crate::access::AppFor;
use crate::dto::{KeyValueIn, LoggedModelOut};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Bool, I64, IdString, Message};

fn model_body(model: &LoggedModel) -> Json<Value> {
    Json(json!({ "model": LoggedModelOut::from(model) }))
}

/// The id in the path wins; a body copy, when sent, must agree with it.
fn path_model_id(path_id: &str, body_id: Option<&str>) -> ApiResult<String> {
    let id = parse_logged_model_id(path_id)?;
    if let Some(body_id) = body_id.filter(|b| !b.is_empty())
        && body_id != id
    {
        return Err(ApiError::Core(Error::invalid(format!(
            "model_id '{body_id}' in the body does not match '{id}' in the path"
        ))));
    }
    Ok(id)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLoggedModel {
    experiment_id: Option<IdString>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValueIn>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

pub async fn create(
    AppFor(app): AppFor,
    Message(request): Message<CreateLoggedModel>,
) -> ApiResult<Json<Value>> {
    let experiment = experiment_id(request.experiment_id, "experiment_id")?;
    let model = app
        .create_logged_model(
            experiment,
            request.name,
            request.model_type.filter(|t| !t.is_empty()),
            request.source_run_id.filter(|id| !id.is_empty()),
            key_values(request.params, "params")?,
            key_values(request.tags, "tags")?,
        )
        .await?;
    Ok(model_body(&model))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelIdBody {
    model_id: Option<String>,
}

pub async fn get(
    AppFor(app): AppFor,
    Path(model_id): Path<String>,
    Message(request): Message<ModelIdBody>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    Ok(model_body(&app.get_logged_model(&id).await?))
}

pub async fn delete(
    AppFor(app): AppFor,
    Path(model_id): Path<String>,
    Message(request): Message<ModelIdBody>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    app.delete_logged_model(&id).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finalize {
    model_id: Option<String>,
    status: Option<IdString>,
}

pub async fn finalize(
    AppFor(app): AppFor,
    Path(model_id): Path<String>,
    Message(request): Message<Finalize>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    let status = LoggedModelStatus::parse(&required(request.status, "status")?.0)?;
    Ok(model_body(&app.finalize_logged_model(&id, status).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTags {
    model_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

pub async fn set_tags(
    AppFor(app): AppFor,
    Path(model_id): Path<String>,
    Message(request): Message<SetTags>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    let tags = key_values(request.tags, "tags")?;
    Ok(model_body(&app.set_logged_model_tags(&id, tags).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTag {
    model_id: Option<String>,
    tag_key: Option<String>,
}

pub async fn delete_tag(
    AppFor(app): AppFor,
    Path((model_id, tag_key)): Path<(String, String)>,
    Message(request): Message<DeleteTag>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    let _ = request.tag_key;
    app.delete_logged_model_tag(&id, &tag_key).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    model_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValueIn>,
}

pub async fn log_params(
    AppFor(app): AppFor,
    Path(model_id): Path<String>,
    Message(request): Message<LogParams>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    app.log_logged_model_params(&id, key_values(request.params, "params")?)
        .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderByIn {
    field_name: Option<String>,
    ascending: Option<Bool>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetFilterIn {
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchLoggedModels {
    #[serde(default)]
    experiment_ids: Vec<IdString>,
    filter: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetFilterIn>,
    max_results: Option<I64>,
    #[serde(default)]
    order_by: Vec<OrderByIn>,
    page_token: Option<String>,
}

pub async fn search(
    AppFor(app): AppFor,
    Message(request): Message<SearchLoggedModels>,
) -> ApiResult<Json<Value>> {
    let experiment_ids = request
        .experiment_ids
        .into_iter()
        .map(|id| experiment_id(Some(id), "experiment_ids"))
        .collect::<ApiResult<Vec<_>>>()?;
    for dataset in &request.datasets {
        required_str(dataset.dataset_name.clone(), "datasets[].dataset_name")?;
        let _ = &dataset.dataset_digest;
    }
    // Structured order_by objects become the text form the grammar parses.
    let order_by = request
        .order_by
        .into_iter()
        .map(|order| {
            let _ = (&order.dataset_name, &order.dataset_digest);
            let field = required_str(order.field_name, "order_by[].field_name")?;
            let direction = if order.ascending.map(|a| a.0).unwrap_or(true) {
                "ASC"
            } else {
                "DESC"
            };
            Ok(format!("{field} {direction}"))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let page = app
        .search_logged_models(
            experiment_ids,
            request.filter.as_deref(),
            &order_by,
            request.max_results.map(|m| m.0),
            request.page_token.as_deref(),
        )
        .await?;
    let models: Vec<LoggedModelOut> = page.items.iter().map(LoggedModelOut::from).collect();
    let mut body = json!({ "models": models });
    if let Some(token) = page.next_page_token {
        body["next_page_token"] = Value::String(token);
    }
    Ok(Json(body))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArtifacts {
    model_id: Option<String>,
    artifact_directory_path: Option<String>,
    page_token: Option<String>,
}

pub async fn list_artifacts(
    AppFor(app): AppFor,
    Path(model_id): Path<String>,
    Message(request): Message<ListArtifacts>,
) -> ApiResult<Json<Value>> {
    let id = path_model_id(&model_id, request.model_id.as_deref())?;
    if request.page_token.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::Core(validate::missing(
            "a valid page_token (listings are not paged)",
        )));
    }
    let model = app.get_logged_model(&id).await?;
    let files = app
        .list_under(
            &model.artifact_uri,
            request.artifact_directory_path.as_deref(),
        )
        .await?;
    Ok(Json(json!({
        "root_uri": model.artifact_uri,
        "files": super::artifacts::file_infos(&files),
    })))
}
