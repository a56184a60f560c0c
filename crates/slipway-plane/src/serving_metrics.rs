//! Prometheus metrics of the inference routes, named as `docs/specs/metrics.md` says. One
//! registry per server, passed in state (no global); `/metrics` encodes it.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `mlflow` (`/invocations`) or `v2` (`/v2/.../infer`).
    pub protocol: &'static str,
    /// `ok`, `client_error`, `server_error`, `shed` (503) or `timeout` (504).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: &'static str,
}

pub struct ServingMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<ProtocolLabels, Histogram>,
    pub(crate) inference_duration: Histogram,
    pub(crate) batch_rows: Histogram,
    in_flight: Gauge<i64, AtomicI64>,
}

impl Default for ServingMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slipway_serving");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<ProtocolLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let inference_duration = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        let batch_rows = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "requests",
            "Inference requests answered, by protocol and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response of inference requests",
            request_duration.clone(),
        );
        registry.register(
            "inference_duration_seconds",
            "Time the model took to run a batch",
            inference_duration.clone(),
        );
        registry.register("batch_rows", "Rows per inference batch", batch_rows.clone());
        registry.register(
            "in_flight_requests",
            "Inference requests being handled now",
            in_flight.clone(),
        );
        ServingMetrics {
            registry,
            requests,
            request_duration,
            inference_duration,
            batch_rows,
            in_flight,
        }
    }
}

impl ServingMetrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Counts and times every inference request, including the ones shed or timed out by the
/// limit layers inside it.
pub(crate) async fn track(
    State(metrics): State<Arc<ServingMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let protocol = if request.uri().path().starts_with("/v2/") {
        "v2"
    } else {
        "mlflow"
    };
    // Decremented on drop, so a request whose client went away leaves the gauge right too.
    struct InFlight<'a>(&'a Gauge<i64, AtomicI64>);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    metrics.in_flight.inc();
    let in_flight = InFlight(&metrics.in_flight);
    let started = Instant::now();
    let response = next.run(request).await;
    drop(in_flight);
    let status = response.status().as_u16();
    let outcome = match status {
        503 => "shed",
        504 => "timeout",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "ok",
    };
    metrics
        .requests
        .get_or_create(&RequestLabels { protocol, outcome })
        .inc();
    metrics
        .request_duration
        .get_or_create(&ProtocolLabels { protocol })
        .observe(started.elapsed().as_secs_f64());
    response
}

pub(crate) async fn metrics_endpoint(State(metrics): State<Arc<ServingMetrics>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
