//! `/registered-models/*` and `/model-versions/*` handlers.

use axum::Json;

use serde::Deserialize;
use serde_json::{Value, json};
use slipway_core::registry::NewModelVersion;
use slipway_core::tracking::Tag;

use super::{key_values, ok, required, required_str};
use crate::access::AppFor;
use crate::dto::{KeyValueIn, ModelVersionOut, RegisteredModelOut};
use crate::error::ApiResult;
use crate::extract::{Bool, I64, Message, Repeated};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
    description: Option<String>,
    deployment_job_id: Option<String>,
}

fn model_body(model: &slipway_core::registry::RegisteredModel) -> Json<Value> {
    Json(json!({ "registered_model": RegisteredModelOut::from(model) }))
}

fn version_body(version: &slipway_core::registry::ModelVersion) -> Json<Value> {
    Json(json!({ "model_version": ModelVersionOut::from(version) }))
}

pub async fn create_model(
    AppFor(app): AppFor,
    Message(request): Message<CreateModel>,
) -> ApiResult<Json<Value>> {
    let _ = request.deployment_job_id;
    let name = required_str(request.name, "name")?;
    let tags = key_values(request.tags, "tags")?;
    let model = app
        .create_registered_model(
            &name,
            request.description.as_deref().filter(|d| !d.is_empty()),
            tags,
        )
        .await?;
    Ok(model_body(&model))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameModel {
    name: Option<String>,
    new_name: Option<String>,
}

pub async fn rename_model(
    AppFor(app): AppFor,
    Message(request): Message<RenameModel>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let new_name = required_str(request.new_name, "new_name")?;
    Ok(model_body(
        &app.rename_registered_model(&name, &new_name).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    name: Option<String>,
    description: Option<String>,
    deployment_job_id: Option<String>,
}

pub async fn update_model(
    AppFor(app): AppFor,
    Message(request): Message<UpdateModel>,
) -> ApiResult<Json<Value>> {
    let _ = request.deployment_job_id;
    let name = required_str(request.name, "name")?;
    Ok(model_body(
        &app.update_registered_model(&name, request.description.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelName {
    name: Option<String>,
}

pub async fn delete_model(
    AppFor(app): AppFor,
    Message(request): Message<ModelName>,
) -> ApiResult<Json<Value>> {
    app.delete_registered_model(&required_str(request.name, "name")?)
        .await?;
    Ok(ok())
}

pub async fn get_model(
    AppFor(app): AppFor,
    Message(request): Message<ModelName>,
) -> ApiResult<Json<Value>> {
    Ok(model_body(
        &app.get_registered_model(&required_str(request.name, "name")?)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    filter: Option<String>,
    max_results: Option<I64>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    order_by: Repeated<String>,
    page_token: Option<String>,
}

pub async fn search_models(
    AppFor(app): AppFor,
    Message(request): Message<Search>,
) -> ApiResult<Json<Value>> {
    let page = app
        .search_registered_models(
            request.filter.as_deref(),
            &request.order_by.0,
            request.max_results.map(|m| m.0),
            request.page_token.as_deref(),
        )
        .await?;
    let models: Vec<RegisteredModelOut> = page.items.iter().map(RegisteredModelOut::from).collect();
    let mut body = json!({ "registered_models": models });
    if let Some(token) = page.next_page_token {
        body["next_page_token"] = Value::String(token);
    }
    Ok(Json(body))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatestVersions {
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    stages: Repeated<String>,
}

pub async fn latest_versions(
    AppFor(app): AppFor,
    Message(request): Message<LatestVersions>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let versions = app.get_latest_versions(&name, &request.stages.0).await?;
    let versions: Vec<ModelVersionOut> = versions.iter().map(ModelVersionOut::from).collect();
    Ok(Json(json!({ "model_versions": versions })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetModelTag {
    name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_model_tag(
    AppFor(app): AppFor,
    Message(request): Message<SetModelTag>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let key = required_str(request.key, "key")?;
    let value = required(request.value, "value")?;
    app.set_registered_model_tag(&name, Tag::new(key, value))
        .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteModelTag {
    name: Option<String>,
    key: Option<String>,
}

pub async fn delete_model_tag(
    AppFor(app): AppFor,
    Message(request): Message<DeleteModelTag>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let key = required_str(request.key, "key")?;
    app.delete_registered_model_tag(&name, &key).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    name: Option<String>,
    alias: Option<String>,
    version: Option<crate::extract::IdString>,
}

pub async fn set_alias(
    AppFor(app): AppFor,
    Message(request): Message<Alias>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let alias = required_str(request.alias, "alias")?;
    let version = required(request.version, "version")?;
    app.set_alias(&name, &alias, &version.0).await?;
    Ok(ok())
}

pub async fn delete_alias(
    AppFor(app): AppFor,
    Message(request): Message<Alias>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let alias = required_str(request.alias, "alias")?;
    app.delete_alias(&name, &alias).await?;
    Ok(ok())
}

pub async fn get_by_alias(
    AppFor(app): AppFor,
    Message(request): Message<Alias>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let alias = required_str(request.alias, "alias")?;
    Ok(version_body(
        &app.get_version_by_alias(&name, &alias).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
    run_link: Option<String>,
    description: Option<String>,
    model_id: Option<String>,
}

pub async fn create_version(
    AppFor(app): AppFor,
    Message(request): Message<CreateVersion>,
) -> ApiResult<Json<Value>> {
    let version = app
        .create_model_version(NewModelVersion {
            name: required_str(request.name, "name")?,
            source: required_str(request.source, "source")?,
            run_id: request.run_id.filter(|id| !id.is_empty()),
            run_link: request.run_link.filter(|link| !link.is_empty()),
            description: request.description.filter(|d| !d.is_empty()),
            tags: key_values(request.tags, "tags")?,
            model_id: request.model_id.filter(|id| !id.is_empty()),
            user_id: None,
            version: None,
            content: None,
        })
        .await?;
    Ok(version_body(&version))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionRef {
    name: Option<String>,
    version: Option<crate::extract::IdString>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVersion {
    name: Option<String>,
    version: Option<crate::extract::IdString>,
    description: Option<String>,
}

pub async fn update_version(
    AppFor(app): AppFor,
    Message(request): Message<UpdateVersion>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    Ok(version_body(
        &app.update_model_version(&name, &version.0, request.description.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionStage {
    name: Option<String>,
    version: Option<crate::extract::IdString>,
    stage: Option<String>,
    archive_existing_versions: Option<Bool>,
}

pub async fn transition_stage(
    AppFor(app): AppFor,
    Message(request): Message<TransitionStage>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    let stage = required_str(request.stage, "stage")?;
    let archive = required(
        request.archive_existing_versions,
        "archive_existing_versions",
    )?;
    Ok(version_body(
        &app.transition_stage(&name, &version.0, &stage, archive.0)
            .await?,
    ))
}

pub async fn delete_version(
    AppFor(app): AppFor,
    Message(request): Message<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    app.delete_model_version(&name, &version.0).await?;
    Ok(ok())
}

pub async fn get_version(
    AppFor(app): AppFor,
    Message(request): Message<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    Ok(version_body(
        &app.get_model_version(&name, &version.0).await?,
    ))
}

pub async fn search_versions(
    AppFor(app): AppFor,
    Message(request): Message<Search>,
) -> ApiResult<Json<Value>> {
    let page = app
        .search_model_versions(
            request.filter.as_deref(),
            &request.order_by.0,
            request.max_results.map(|m| m.0),
            request.page_token.as_deref(),
        )
        .await?;
    let versions: Vec<ModelVersionOut> = page.items.iter().map(ModelVersionOut::from).collect();
    let mut body = json!({ "model_versions": versions });
    if let Some(token) = page.next_page_token {
        body["next_page_token"] = Value::String(token);
    }
    Ok(Json(body))
}

pub async fn download_uri(
    AppFor(app): AppFor,
    Message(request): Message<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    let uri = app
        .get_model_version_download_uri(&name, &version.0)
        .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVersionTag {
    name: Option<String>,
    version: Option<crate::extract::IdString>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_version_tag(
    AppFor(app): AppFor,
    Message(request): Message<SetVersionTag>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    let key = required_str(request.key, "key")?;
    let value = required(request.value, "value")?;
    app.set_model_version_tag(&name, &version.0, Tag::new(key, value))
        .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteVersionTag {
    name: Option<String>,
    version: Option<crate::extract::IdString>,
    key: Option<String>,
}

pub async fn delete_version_tag(
    AppFor(app): AppFor,
    Message(request): Message<DeleteVersionTag>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let version = required(request.version, "version")?;
    let key = required_str(request.key, "key")?;
    app.delete_model_version_tag(&name, &version.0, &key)
        .await?;
    Ok(ok())
}
