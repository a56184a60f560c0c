//! Request spans exported over OTLP/HTTP (protobuf) when `--otlp-endpoint` is set, with the
//! caller's W3C `traceparent` as their parent, so a request shows up in the trace of whatever
//! sent it (a load balancer, a client library) and its inner spans (the API's `request`, a
//! use-case) beneath it.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
/// Where spans go: the collector's base URL (`http://collector:4318`, spans to `/v1/traces`
/// under it) or the full traces URL.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

#[cfg(feature = "otlp")]
mod enabled {
    use opentelemetry::propagation::Extractor;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// Keeps the exporter alive; dropping it (on exit) sends the spans still batched.
    pub struct Exporting(SdkTracerProvider);

    impl Drop for Exporting {
        fn drop(&mut self) {
            if let Err(error) = self.0.shutdown() {
                eprintln!("warning: could not send the last spans to the OTLP endpoint: {error}");
            }
        }
    }

    /// The tracing layer that exports spans; built before any async runtime starts (the HTTP
    /// client it uses blocks, on the exporter's own thread).
    pub fn layer<S>(
        endpoint: &str,
        service: &str,
    ) -> anyhow::Result<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        Exporting,
    )>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let url = super::traces_url(endpoint);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(std::time::Duration::from_secs(10))
            .with_headers(Default::default())
            .build()
            .map_err(|e| anyhow::anyhow!("setting up the OTLP exporter for {url}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let tracer = provider.tracer("slipway");
        Ok((
            tracing_opentelemetry::layer().with_tracer(tracer),
            Exporting(provider),
        ))
    }

    struct Headers<'a>(&'a axum::http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    pub fn parent(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
    }
}

#[cfg(feature = "otlp")]
pub use enabled::{Exporting, layer};

/// A span per request, named by its route template (never the raw path: run ids would make
/// every name unique), child of the caller's `traceparent`. Added to a router with
/// `Router::layer`, so it runs after routing and sees the matched route.
pub async fn trace_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "http.request",
        otel.name = %name,
        otel.kind = "server",
        http.request.method = %method,
        http.route = route.as_deref().unwrap_or(""),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    #[cfg(feature = "otlp")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(enabled::parent(request.headers()));
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        assert_eq!(
            super::traces_url("http://c:4318"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
