//! `/experiments/*` handlers.

use axum::Json;

use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::tracking::{Tag, ViewType};

use super::{experiment_id, key_values, ok, required, required_str};
use crate::access::AppFor;
use crate::dto::{ExperimentOut, KeyValueIn};
use crate::error::ApiResult;
use crate::extract::{I64, IdString, Message, Repeated};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExperiment {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

pub async fn create(
    AppFor(app): AppFor,
    Message(request): Message<CreateExperiment>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let tags = key_values(request.tags, "tags")?;
    let id = app
        .create_experiment(&name, request.artifact_location, tags)
        .await?;
    Ok(Json(json!({ "experiment_id": id.to_string() })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetExperiment {
    experiment_id: Option<IdString>,
}

pub async fn get(
    AppFor(app): AppFor,
    Message(request): Message<GetExperiment>,
) -> ApiResult<Json<Value>> {
    let id = experiment_id(request.experiment_id, "experiment_id")?;
    let experiment = app.get_experiment(id).await?;
    Ok(Json(
        json!({ "experiment": ExperimentOut::from(&experiment) }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetByName {
    experiment_name: Option<String>,
}

pub async fn get_by_name(
    AppFor(app): AppFor,
    Message(request): Message<GetByName>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.experiment_name, "experiment_name")?;
    let experiment = app.get_experiment_by_name(&name).await?;
    Ok(Json(
        json!({ "experiment": ExperimentOut::from(&experiment) }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchExperiments {
    max_results: Option<I64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    order_by: Repeated<String>,
    view_type: Option<IdString>,
}

pub async fn search(
    AppFor(app): AppFor,
    Message(request): Message<SearchExperiments>,
) -> ApiResult<Json<Value>> {
    let view_type = match request.view_type {
        Some(raw) => ViewType::parse(&raw.0)?,
        None => ViewType::ActiveOnly,
    };
    let page = app
        .search_experiments(
            request.filter.as_deref(),
            &request.order_by.0,
            view_type,
            request.max_results.map(|m| m.0),
            request.page_token.as_deref(),
        )
        .await?;
    let experiments: Vec<ExperimentOut> = page.items.iter().map(ExperimentOut::from).collect();
    let mut body = json!({ "experiments": experiments });
    if let Some(token) = page.next_page_token {
        body["next_page_token"] = Value::String(token);
    }
    Ok(Json(body))
}

pub async fn delete(
    AppFor(app): AppFor,
    Message(request): Message<GetExperiment>,
) -> ApiResult<Json<Value>> {
    app.delete_experiment(experiment_id(request.experiment_id, "experiment_id")?)
        .await?;
    Ok(ok())
}

pub async fn restore(
    AppFor(app): AppFor,
    Message(request): Message<GetExperiment>,
) -> ApiResult<Json<Value>> {
    app.restore_experiment(experiment_id(request.experiment_id, "experiment_id")?)
        .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateExperiment {
    experiment_id: Option<IdString>,
    new_name: Option<String>,
}

pub async fn update(
    AppFor(app): AppFor,
    Message(request): Message<UpdateExperiment>,
) -> ApiResult<Json<Value>> {
    let id = experiment_id(request.experiment_id, "experiment_id")?;
    if let Some(new_name) = request.new_name.filter(|name| !name.is_empty()) {
        app.rename_experiment(id, &new_name).await?;
    }
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExperimentTag {
    experiment_id: Option<IdString>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_tag(
    AppFor(app): AppFor,
    Message(request): Message<SetExperimentTag>,
) -> ApiResult<Json<Value>> {
    let id = experiment_id(request.experiment_id, "experiment_id")?;
    let key = required_str(request.key, "key")?;
    let value = required(request.value, "value")?;
    app.set_experiment_tag(id, Tag::new(key, value)).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteExperimentTag {
    experiment_id: Option<IdString>,
    key: Option<String>,
}

pub async fn delete_tag(
    AppFor(app): AppFor,
    Message(request): Message<DeleteExperimentTag>,
) -> ApiResult<Json<Value>> {
    let id = experiment_id(request.experiment_id, "experiment_id")?;
    let key = required_str(request.key, "key")?;
    app.delete_experiment_tag(id, &key).await?;
    Ok(ok())
}
