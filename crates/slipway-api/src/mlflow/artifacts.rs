//! The artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`) and the tracking API's
//! `artifacts/list`.
//!
//! Uploads and downloads stream: a 10 GB model file passes through in fixed-size chunks and is
//! never held in memory.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_app::artifacts::FileInfo;
use slipway_core::Error;

use super::run_id;
use crate::access::AppFor;
use crate::error::{ApiError, ApiResult};
use crate::extract::Message;

pub(crate) fn file_infos(files: &[FileInfo]) -> Vec<Value> {
    files
        .iter()
        .map(|file| {
            let mut entry = json!({ "path": file.path, "is_dir": file.is_dir });
            if let Some(size) = file.size {
                entry["file_size"] = json!(size);
            }
            entry
        })
        .collect()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    path: Option<String>,
}

/// Lists a directory; a file or a missing path answers `{}` as MLflow's proxy does (the client
/// lists before downloading to tell files from directories).
pub(crate) async fn list(
    AppFor(app): AppFor,
    Message(request): Message<ListRequest>,
) -> ApiResult<Json<Value>> {
    let Some(entries) = app.list_artifacts(request.path.as_deref()).await? else {
        return Ok(Json(json!({})));
    };
    let files: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut file = json!({ "path": entry.name, "is_dir": entry.is_dir });
            if let Some(size) = entry.size {
                file["file_size"] = json!(size);
            }
            file
        })
        .collect();
    if files.is_empty() {
        return Ok(Json(json!({})));
    }
    Ok(Json(json!({ "files": files })))
}

pub(crate) async fn upload(
    AppFor(app): AppFor,
    Path(path): Path<String>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let stream = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    app.put_artifact(&path, Box::pin(stream)).await?;
    Ok(Json(json!({})))
}

pub(crate) async fn download(AppFor(app): AppFor, Path(path): Path<String>) -> ApiResult<Response> {
    let Some(object) = app.get_artifact(&path).await? else {
        return Err(ApiError::ArtifactNotFound(format!("File {path} not found")));
    };
    let file_name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let content_type = mime_guess::from_path(&file_name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let mut response = Body::from_stream(object.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        file_name.replace(['"', '\\', '\r', '\n'], "_")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

pub(crate) async fn delete(
    AppFor(app): AppFor,
    Path(path): Path<String>,
) -> ApiResult<Json<Value>> {
    app.delete_artifact(&path).await?;
    Ok(Json(json!({})))
}

/// Multipart uploads and presigned URLs only make sense for cloud object stores; `/server-info`
/// tells clients they are off, so only a hand-made request lands here.
pub async fn multipart_unsupported() -> ApiError {
    ApiError::NotImplemented(
        "multipart uploads and presigned URLs are not available: this server stores artifacts on a local file system; upload and download through /api/2.0/mlflow-artifacts/artifacts/<path>".to_owned(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRunArtifacts {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
    page_token: Option<String>,
}

pub async fn list_run_artifacts(
    AppFor(app): AppFor,
    Message(request): Message<ListRunArtifacts>,
) -> ApiResult<Json<Value>> {
    if request.page_token.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::Core(Error::invalid(
            "artifact listings are not paged; omit page_token",
        )));
    }
    let id = run_id(request.run_id, request.run_uuid)?;
    let (root_uri, files) = app.list_run_artifacts(&id, request.path.as_deref()).await?;
    let mut body = json!({ "root_uri": root_uri });
    if !files.is_empty() {
        body["files"] = Value::Array(file_infos(&files));
    }
    Ok(Json(body))
}
