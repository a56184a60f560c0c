//! The one table from errors to HTTP statuses and MLflow error codes.
//!
//! MLflow clients branch on `error_code`, and their retry logic on the status (5xx and 429 are
//! retried up to 7 times), so a client mistake must never come back as a 5xx. Internal errors
//! are logged once with their full chain and answered with a request id only.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use slipway_core::Error as CoreError;

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    Core(CoreError),
    /// Syntactically bad request: malformed JSON, wrong types, unknown fields.
    BadRequest(String),
    /// No route at this path.
    EndpointNotFound(String),
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    /// An artifact that is not there; MLflow's proxy answers these with 404.
    ArtifactNotFound(String),
    /// A feature this deployment does not offer (multipart uploads on a local artifact store).
    NotImplemented(String),
    /// A handler panicked; the panic was caught and logged.
    Panic,
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        ApiError::Core(error)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error_code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    /// Status and MLflow error code for each variant. No wildcard arm: a new variant without a
    /// row here does not compile.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Core(CoreError::InvalidParameter(_)) => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            ApiError::Core(CoreError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
            }
            // MLflow answers duplicates with 400, not 409; clients expect that.
            ApiError::Core(CoreError::AlreadyExists(_)) => {
                (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS")
            }
            ApiError::Core(CoreError::Unauthenticated(_)) => {
                (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
            }
            ApiError::Core(CoreError::PermissionDenied(_)) => {
                (StatusCode::FORBIDDEN, "PERMISSION_DENIED")
            }
            ApiError::Core(CoreError::Internal { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
            ApiError::EndpointNotFound(_) => (StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "BAD_REQUEST"),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "INVALID_PARAMETER_VALUE")
            }
            // MLflow answers a wrong content type with 400; clients branch on statuses.
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            ApiError::ArtifactNotFound(_) => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "NOT_IMPLEMENTED"),
            ApiError::Panic => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.status_and_code();
        let (message, request_id) = match self {
            ApiError::Core(error @ CoreError::Internal { .. }) => {
                let request_id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(
                    request_id = %request_id,
                    error = %DisplayChain(&error),
                    "internal error"
                );
                (
                    format!(
                        "internal error; the server log has the details under request id {request_id}"
                    ),
                    Some(request_id),
                )
            }
            ApiError::Core(error) => (error.to_string(), None),
            ApiError::BadRequest(message)
            | ApiError::EndpointNotFound(message)
            | ApiError::MethodNotAllowed(message)
            | ApiError::PayloadTooLarge(message)
            | ApiError::UnsupportedMediaType(message)
            | ApiError::ArtifactNotFound(message)
            | ApiError::NotImplemented(message) => (message, None),
            ApiError::Panic => {
                let request_id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(request_id = %request_id, "a request handler panicked");
                (
                    format!(
                        "internal error; the server log has the details under request id {request_id}"
                    ),
                    Some(request_id),
                )
            }
        };
        (
            status,
            Json(ErrorBody {
                error_code,
                message,
                request_id,
            }),
        )
            .into_response()
    }
}

/// Formats an error with its whole `source()` chain, for the one log line an internal error gets.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
