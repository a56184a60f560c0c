//! Prometheus metrics of the control plane's routes (MLflow tracking and registry, the
//! artifact proxy, the native API), named as `docs/specs/metrics.md` says. One registry per
//! router, passed as an extension (no global); the server's `/metrics` encodes it after the
//! data plane's.
//!
//! Requests are labelled by the matched route template (`/api/2.0/mlflow/runs/get`,
//! `/api/slipway/v1/deployments/{name}`), never the raw path, so run ids and model names cannot
//! grow the label set; unmatched paths are not counted (their 404 comes from the fallback).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Extension, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// The route template the request matched.
    route: String,
    /// The HTTP status code of the response.
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

pub struct ApiMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slipway_api");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms to about 16 s: a cached read to a large search or log-batch.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "requests",
            "Control-plane requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the response's head, by method and route template",
            duration.clone(),
        );
        ApiMetrics {
            registry,
            requests,
            duration,
        }
    }
}

impl ApiMetrics {
    fn observe(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        self.duration
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
}

/// The method as a label from a fixed set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request to a matched control-plane route, the ones refused by the
/// access layer (401, 403) included.
pub(crate) async fn track(
    State(metrics): State<Arc<ApiMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The server's `GET /metrics`: the data plane's metrics, drift monitoring's and the control
/// plane's, one
/// OpenMetrics document.
pub(crate) async fn metrics(
    Extension(plane): Extension<Arc<slipway_plane::plane::Plane>>,
    Extension(api): Extension<Arc<ApiMetrics>>,
    Extension(monitor): Extension<Arc<slipway_app::monitoring::Monitor>>,
    Extension(alerter): Extension<Arc<slipway_app::alerting::Alerter>>,
) -> Response {
    let mut text = String::new();
    plane.encode_metrics_into(&mut text);
    crate::monitor_metrics::encode_into(&monitor, &mut text);
    crate::monitor_metrics::encode_alerts_into(&alerter, &mut text);
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &api.registry);
    let _ = prometheus_client::encoding::text::encode_eof(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
