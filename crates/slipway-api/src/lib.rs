//! slipway's HTTP layer: MLflow's REST API, the artifact proxy and the health endpoints.
//! This crate (with the UI, later) is the only one that knows HTTP.
//!
//! Module map:
//! - [`error`]: the one table from errors to HTTP statuses and MLflow error codes.
//! - [`extract`]: request decoding (query for GET, JSON otherwise) with protobuf-JSON leniency.
//! - `dto`: wire shapes and their conversions from domain types.
//! - `mlflow`: the MLflow handlers, by area.
//! - `native`: slipway's own API under `/api/slipway/v1` (users, tokens, permissions).
//! - [`scoring`]: MLflow's scoring protocol for one model (`slipway serve`).
//! - [`access`]: authentication and the access rule of every route.
//! - [`openapi`]: the OpenAPI document of every route, built from the same route tables.
//! - [`plane`]: the data plane of managed deployments (routing, rollouts' measurements,
//!   mirroring, circuit breakers, the prediction log), in the server and in replicas.
//!
//! A request flows: router -> `Message<T>` extractor (400 on bad input) -> handler (wire ->
//! domain) -> `slipway_app::App` use-case -> `MetadataStore`/`ArtifactStore` port -> response
//! DTO, or `ApiError` through the table in [`error`].

/// Declares a router together with its access rules and its OpenAPI description, so no route
/// exists without either: `METHOD "path" => handler [Request], Action Scope;` per route, where
/// `[Request]` names the message the handler decodes (its schema goes into the document).
macro_rules! routes {
    (
        $(#[$doc:meta])*
        fn $router:ident, $rules:ident, $docs:ident;
        $($method:ident $path:literal => $handler:path $([$request:ty])?, $action:ident $scope:ident;)*
    ) => {
        $(#[$doc])*
        pub(crate) fn $router() -> axum::Router<slipway_app::App> {
            axum::Router::new()
                $(.route($path, axum::routing::on(axum::routing::MethodFilter::$method, $handler)))*
        }

        /// The access rule of every route of the router of the same name.
        pub(crate) fn $rules() -> Vec<(axum::http::Method, &'static str, crate::access::Rule)> {
            vec![$((
                axum::http::Method::$method,
                $path,
                crate::access::Rule::new(
                    slipway_core::auth::Action::$action,
                    crate::access::Scope::$scope,
                ),
            ),)*]
        }

        /// What the OpenAPI document says of every route of the router of the same name.
        pub(crate) fn $docs() -> Vec<crate::openapi::RouteDoc> {
            vec![$(crate::openapi::RouteDoc {
                method: axum::http::Method::$method,
                path: $path,
                handler: stringify!($handler),
                request: <($($request,)?) as crate::openapi::RequestType>::SCHEMA,
            },)*]
        }
    };
}

pub mod access;
pub mod dto;
pub mod error;
pub mod extract;
mod http_metrics;
mod mlflow;
mod monitor_metrics;
mod native;
pub mod openapi;
mod plane_routes;
pub mod plane_source;

pub use slipway_plane::{plane, scoring};

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use slipway_app::App;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

pub use slipway_plane::request_id::{ClientRequestId, RequestIds, set_aside_client_request_id};
pub use slipway_plane::{MLFLOW_COMPATIBLE_VERSION, VERSION};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the deployment routes work with: the rollout controller and the data plane.
#[derive(Clone)]
pub struct Deployments {
    pub controller: std::sync::Arc<slipway_app::rollout::Controller>,
    pub plane: std::sync::Arc<plane::Plane>,
    /// Drift monitoring's windows: every plane's summaries, judged as windows close.
    pub monitor: std::sync::Arc<slipway_app::monitoring::Monitor>,
    /// Alert rules evaluated over monitoring and every plane's serving counts.
    pub alerter: std::sync::Arc<slipway_app::alerting::Alerter>,
    /// Retraining schedules, alerts' triggers and lapsed retrains.
    pub retrainer: std::sync::Arc<slipway_app::retrain::Retrainer>,
    /// Who leads among the servers on this store, and the way measurements reach the leader.
    pub cluster: std::sync::Arc<slipway_app::cluster::Cluster>,
}

impl Deployments {
    /// A controller and a plane over `app` that nothing runs yet, on the only server of its
    /// store: the binary spawns [`plane::Plane::run`] and the controller's ticks.
    pub fn new(app: &App, config: plane::PlaneConfig) -> Deployments {
        Deployments::with_mode(app, config, slipway_app::cluster::Mode::Standalone)
    }

    /// The same, taking part in a cluster as `mode` says.
    pub fn with_mode(
        app: &App,
        config: plane::PlaneConfig,
        mode: slipway_app::cluster::Mode,
    ) -> Deployments {
        use std::sync::Arc;
        let controller = Arc::new(slipway_app::rollout::Controller::new(app));
        let monitor = Arc::new(slipway_app::monitoring::Monitor::new(app));
        let serving = Arc::new(slipway_app::alerting::ServingLog::default());
        let alerter = Arc::new(slipway_app::alerting::Alerter::new(app, serving));
        let retrainer = Arc::new(slipway_app::retrain::Retrainer::new(app));
        let cluster = Arc::new(slipway_app::cluster::Cluster::new(
            app,
            mode,
            controller.clone(),
            monitor.clone(),
            alerter.clone(),
            retrainer.clone(),
        ));
        let source = Arc::new(plane_source::ServerSource::new(
            app,
            monitor.clone(),
            cluster.clone(),
        ));
        Deployments {
            controller,
            plane: plane::Plane::new(source, config),
            monitor,
            alerter,
            retrainer,
            cluster,
        }
    }
}

/// The whole HTTP application. The binary adds the listener and shutdown; tests call it with
/// `tower::ServiceExt::oneshot`.
pub fn router(app: App) -> Router {
    let deployments = Deployments::new(&app, plane::PlaneConfig::default());
    router_with(app, deployments)
}

/// The whole HTTP application with the given deployment controller and data plane.
pub fn router_with(app: App, deployments: Deployments) -> Router {
    let max_body = deployments.plane.config.limits.max_body_bytes;
    let api_metrics = std::sync::Arc::new(http_metrics::ApiMetrics::default());
    // Inference routes: the same access rules, but no trace span per request (their metrics
    // and the prediction log account for them; a span cost a tenth of a single-row request).
    let plane = plane_routes::plane_routes()
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            access::authorize,
        ))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(deployments.plane.clone()))
        .layer(axum::Extension(deployments.monitor.clone()))
        .layer(axum::Extension(deployments.alerter.clone()))
        .layer(axum::Extension(api_metrics.clone()))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::Panic.into_response()
        }))
        .with_state(app.clone());
    let api = mlflow::routes()
        .merge(native::routes())
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
        .route(openapi::PATH, get(openapi::serve))
        // Only matched routes: an unknown path is a 404 for everyone.
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            access::authorize,
        ))
        // Outside the access layer, so refusals are counted too.
        .route_layer(axum::middleware::from_fn_with_state(
            api_metrics,
            http_metrics::track,
        ))
        .fallback(endpoint_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(deployments))
        .with_state(app)
        .layer(DefaultBodyLimit::max(extract::MAX_JSON_BODY))
        .layer(CatchPanicLayer::custom(|_panic| ApiError::Panic.into_response()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let client_request_id = request
                    .extensions()
                    .get::<ClientRequestId>()
                    .map_or("", |id| id.0.as_str());
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %request_id, client_request_id = %client_request_id)
            }),
        );
    plane
        .merge(api)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), RequestIds))
        .layer(axum::middleware::map_request(set_aside_client_request_id))
}

/// The server-wide routes and their rules: (method, path, rule, open without credentials).
pub(crate) fn server_rules() -> Vec<(axum::http::Method, &'static str, access::Rule, bool)> {
    use axum::http::Method;
    let read = access::Rule::new(slipway_core::auth::Action::Read, access::Scope::None);
    vec![
        (Method::GET, "/health", access::Rule::PUBLIC, true),
        (Method::GET, "/version", access::Rule::PUBLIC, true),
        (Method::GET, "/api/3.0/mlflow/server-info", read, false),
        (Method::GET, "/ajax-api/3.0/mlflow/server-info", read, false),
        // What the API looks like is no secret (the code is open); clients and tools fetch it
        // before they have credentials.
        (Method::GET, openapi::PATH, access::Rule::PUBLIC, true),
    ]
}

/// The server-wide routes for the OpenAPI document, in the order of [`server_rules`].
pub(crate) fn server_docs() -> Vec<openapi::RouteDoc> {
    use axum::http::Method;
    let doc = |path, handler| openapi::RouteDoc {
        method: Method::GET,
        path,
        handler,
        request: None,
    };
    vec![
        doc("/health", "health"),
        doc("/version", "version"),
        doc("/api/3.0/mlflow/server-info", "server_info"),
        doc("/ajax-api/3.0/mlflow/server-info", "server_info"),
        doc(openapi::PATH, "openapi"),
    ]
}

/// Answers as soon as the process serves HTTP; MLflow's `/health` is plain text `OK`.
async fn health() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response()
}

async fn version() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        MLFLOW_COMPATIBLE_VERSION,
    )
        .into_response()
}

async fn server_info(State(app): State<App>) -> Response {
    axum::Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": {"gateway": false},
        "slipway_version": VERSION,
        "metadata_backend": app.store().backend_name(),
    }))
    .into_response()
}

async fn endpoint_not_found(uri: Uri) -> ApiError {
    ApiError::EndpointNotFound(format!("No API endpoint at {}", uri.path()))
}

async fn method_not_allowed(request: Request<axum::body::Body>) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "method {} is not allowed for {}",
        request.method(),
        request.uri().path()
    ))
}

/// How long the server waits for in-flight requests on shutdown before it gives up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
