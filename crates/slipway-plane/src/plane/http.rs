//! The inference routes of managed deployments, on `slipway server` (`/deployments/NAME/...`,
//! `/v2/models/NAME/...`) and on replicas (the same, plus `/invocations` at the root for their
//! one deployment, as `mlflow models serve` answers).
//!
//! A request goes: find the deployment (404, or 503 while it loads); while a model's queue
//! stands, refuse a share of requests that grows with the runtime's lag; take an in-flight
//! permit (503 + `Retry-After` when full; a refused body is drained so the connection stays
//! usable); read the body; pick the variant (forced by header or V2 version path, sticky by
//! route key, else by weight; an open circuit sends candidate traffic to stable); take a place
//! at that version's model, waiting no longer than the queue allows (503 + `Retry-After` past
//! it); parse with that version's input (large bodies on the blocking pool); run; on a
//! candidate failure, answer from stable and count the failure against the candidate;
//! measure, mirror, sample into the prediction log; answer.

// Early returns carry the finished error response; boxing it would only add an allocation on
// the error path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use slipway_core::deployment::{
    FORCE_VARIANT_HEADER, PredictionRecord, ROUTE_KEY_HEADER, Variant, route_hash,
    routes_to_candidate,
};

use super::{LoadedVersion, Plane, Ran, RunError, Served, compare_rows, now_ms, summarize};
use crate::scoring::{Limits, ScoringError, V2Error, V2Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Mlflow,
    V2,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Mlflow => "mlflow",
            Protocol::V2 => "v2",
        }
    }

    fn error(self, status: StatusCode, code: &'static str, message: String) -> Response {
        match self {
            Protocol::Mlflow => ScoringError {
                status,
                code,
                message,
            }
            .into_response(),
            Protocol::V2 => V2Error(status, message).into_response(),
        }
    }
}

fn shed(protocol: Protocol, why: &str) -> Response {
    let mut response = protocol.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "TEMPORARILY_UNAVAILABLE",
        why.to_owned(),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A replica's router: its deployment at the root (`/invocations`, `/ping`, ...) as
/// `mlflow models serve` answers, and under its name as the server does. No access control:
/// replicas bind to loopback unless told otherwise, like `slipway serve`.
pub fn replica_router(plane: Arc<Plane>, name: &str) -> axum::Router {
    let name: Arc<str> = Arc::from(name);
    let root_name = name.clone();
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    axum::Router::new()
        .route(
            "/invocations",
            post(
                move |plane: Extension<Arc<Plane>>, headers: HeaderMap, request: Request| {
                    let name = root_name.clone();
                    async move {
                        handle(&plane, &name, Protocol::Mlflow, &headers, request, None).await
                    }
                },
            ),
        )
        .route("/ping", get(replica_ping))
        .route("/health", get(replica_ping))
        .route("/version", get(crate::scoring::version))
        .route("/deployments/{name}/invocations", post(invocations))
        .route("/deployments/{name}/ping", get(deployment_ping))
        .route("/v2/models/{name}/infer", post(v2_infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2_infer_versioned),
        )
        .route("/v2/models/{name}", get(v2_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2_metadata_versioned),
        )
        .route("/v2/models/{name}/ready", get(v2_model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2_model_ready_versioned),
        )
        .route("/v2", get(crate::scoring::v2_server))
        .route("/v2/health/live", get(crate::scoring::v2_live))
        .route("/v2/health/ready", get(v2_ready))
        .route("/metrics", get(metrics))
        .layer(Extension(name))
        .layer(Extension(plane.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(
            plane.config.limits.max_body_bytes,
        ))
        .layer(tower_http::request_id::PropagateRequestIdLayer::new(
            request_id.clone(),
        ))
        .layer(tower_http::request_id::SetRequestIdLayer::new(
            request_id,
            crate::request_id::RequestIds,
        ))
        // A client's id is never answered (or logged with predictions) as ours.
        .layer(axum::middleware::map_request(
            crate::request_id::set_aside_client_request_id,
        ))
}

/// A replica's own deployment: 503 until it is loaded, as `mlflow models serve` answers.
async fn replica_ping(
    Extension(plane): Extension<Arc<Plane>>,
    Extension(name): Extension<Arc<str>>,
) -> Response {
    let name = name.to_string();
    if plane.get(&name).is_some() {
        ([(header::CONTENT_TYPE, "application/json")], "\n").into_response()
    } else if let Some(not_ready) = plane.not_ready(&name) {
        (StatusCode::SERVICE_UNAVAILABLE, not_ready.reason).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("deployment '{name}' is not loaded (yet)"),
        )
            .into_response()
    }
}

/// A deployment on the server: 200 when it is loaded, 503 while it loads, 404 when there is
/// no such deployment (as its `/invocations` answers).
pub async fn deployment_ping(
    Extension(plane): Extension<Arc<Plane>>,
    Path(name): Path<String>,
) -> Response {
    if plane.get_fresh(&name).await.is_some() {
        ([(header::CONTENT_TYPE, "application/json")], "\n").into_response()
    } else {
        missing(&plane, &name, Protocol::Mlflow)
    }
}

pub async fn metrics(Extension(plane): Extension<Arc<Plane>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        plane.metrics.encode(),
    )
        .into_response()
}

pub async fn v2_ready(Extension(plane): Extension<Arc<Plane>>) -> Response {
    let ready = plane.is_synced();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "ready": ready }))).into_response()
}

pub async fn invocations(
    Extension(plane): Extension<Arc<Plane>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    handle(&plane, &name, Protocol::Mlflow, &headers, request, None).await
}

pub async fn v2_infer(
    Extension(plane): Extension<Arc<Plane>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    handle(&plane, &name, Protocol::V2, &headers, request, None).await
}

pub async fn v2_infer_versioned(
    Extension(plane): Extension<Arc<Plane>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    handle(
        &plane,
        &name,
        Protocol::V2,
        &headers,
        request,
        Some(&version),
    )
    .await
}

fn served_or_404(plane: &Plane, name: &str) -> Result<Arc<Served>, Response> {
    plane
        .get(name)
        .ok_or_else(|| missing(plane, name, Protocol::V2))
}

fn missing(plane: &Plane, name: &str, protocol: Protocol) -> Response {
    if let Some(not_ready) = plane.not_ready(name) {
        return protocol.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            format!("deployment '{name}' is not ready: {}", not_ready.reason),
        );
    }
    plane.metrics.unknown(protocol.label());
    protocol.error(
        StatusCode::NOT_FOUND,
        "RESOURCE_DOES_NOT_EXIST",
        format!("Model with name {name} does not exist."),
    )
}

fn versions(served: &Served) -> Vec<String> {
    let mut versions = vec![served.stable.version.clone()];
    if let Some(candidate) = &served.candidate {
        versions.push(candidate.version.clone());
    }
    versions
}

fn version_of<'s>(served: &'s Served, version: &str) -> Option<&'s Arc<LoadedVersion>> {
    [Some(&served.stable), served.candidate.as_ref()]
        .into_iter()
        .flatten()
        .find(|loaded| loaded.version == version)
}

pub async fn v2_metadata(
    Extension(plane): Extension<Arc<Plane>>,
    Path(name): Path<String>,
) -> Response {
    match served_or_404(&plane, &name) {
        Ok(served) => axum::Json(crate::scoring::model_metadata(
            &name,
            versions(&served),
            &served.stable.model,
        ))
        .into_response(),
        Err(response) => response,
    }
}

pub async fn v2_metadata_versioned(
    Extension(plane): Extension<Arc<Plane>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let served = match served_or_404(&plane, &name) {
        Ok(served) => served,
        Err(response) => return response,
    };
    match version_of(&served, &version) {
        Some(loaded) => axum::Json(crate::scoring::model_metadata(
            &name,
            vec![loaded.version.clone()],
            &loaded.model,
        ))
        .into_response(),
        None => V2Error(
            StatusCode::NOT_FOUND,
            format!("Model {name} version {version} does not exist."),
        )
        .into_response(),
    }
}

pub async fn v2_model_ready(
    Extension(plane): Extension<Arc<Plane>>,
    Path(name): Path<String>,
) -> Response {
    match served_or_404(&plane, &name) {
        Ok(_) => axum::Json(json!({ "name": name, "ready": true })).into_response(),
        Err(response) => response,
    }
}

pub async fn v2_model_ready_versioned(
    Extension(plane): Extension<Arc<Plane>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let served = match served_or_404(&plane, &name) {
        Ok(served) => served,
        Err(response) => return response,
    };
    if version_of(&served, &version).is_some() {
        axum::Json(json!({ "name": name, "ready": true })).into_response()
    } else {
        V2Error(
            StatusCode::NOT_FOUND,
            format!("Model {name} version {version} does not exist."),
        )
        .into_response()
    }
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads and drops the body of a request answered without it, then answers. An unread body
/// makes the connection unusable, so the client's next request on it would fail as a
/// transport error instead of getting this answer's `Retry-After`; reading costs a copy, not
/// the parse. A body over `limit` or slower than a second is left unread (the connection
/// closes after the answer), so this holds nothing for long.
async fn drained(request: Request, limit: usize, answer: Response) -> Response {
    use futures::StreamExt;
    let mut chunks = request.into_body().into_data_stream();
    let mut read = 0usize;
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while read <= limit {
        match tokio::time::timeout_at(give_up, chunks.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => break,
        }
    }
    answer
}

async fn handle(
    plane: &Arc<Plane>,
    name: &str,
    protocol: Protocol,
    headers: &HeaderMap,
    request: Request,
    forced_version: Option<&str>,
) -> Response {
    let Some(served) = plane.get_fresh(name).await else {
        let answer = missing(plane, name, protocol);
        return drained(request, plane.config.limits.max_body_bytes, answer).await;
    };
    let handles = &served.handles;
    handles.in_flight.inc();
    let _in_flight = InFlight(handles.in_flight.clone());
    let started = Instant::now();
    let limits = &plane.config.limits;
    let overloaded = served.stable.overloaded(limits.max_queue_wait)
        || served
            .candidate
            .as_ref()
            .is_some_and(|candidate| candidate.overloaded(limits.max_queue_wait));
    // The door lets in only what the model's places answer soon: every request in flight
    // shares the same CPU (reading bodies, parsing, answering), so one let in beyond that is
    // not answered sooner, it only makes every admitted one wait longer.
    let place_limit = served.stable.in_flight_limit()
        + served
            .candidate
            .as_ref()
            .map_or(0, |candidate| candidate.in_flight_limit());
    let in_flight = limits
        .max_in_flight
        .max(1)
        .saturating_sub(served.in_flight.available_permits());
    let refused = if in_flight >= place_limit {
        Some(
            "the deployment is saturated: more requests arrive than its model answers; retry shortly",
        )
    } else if overloaded && plane.lag.refuses(super::RuntimeLag::TARGET) {
        Some(
            "the server is saturated: requests wait for its CPU before they are read; retry shortly",
        )
    } else {
        None
    };
    let micros =
        |started: Instant| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Some(why) = refused {
        handles.request(protocol.label(), "shed");
        let answer = drained(request, limits.max_body_bytes, shed(protocol, why)).await;
        served.count_request(answer.status().as_u16(), micros(started));
        return answer;
    }
    let Ok(permit) = served.in_flight.clone().try_acquire_owned() else {
        handles.request(protocol.label(), "shed");
        let answer = shed(
            protocol,
            "the deployment is at its limit of requests in flight; retry shortly",
        );
        let answer = drained(request, plane.config.limits.max_body_bytes, answer).await;
        served.count_request(answer.status().as_u16(), micros(started));
        return answer;
    };
    let response = match tokio::time::timeout(
        plane.config.limits.timeout,
        serve(plane, &served, protocol, headers, request, forced_version),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => protocol.error(
            StatusCode::GATEWAY_TIMEOUT,
            "DEADLINE_EXCEEDED",
            "Request processing time exceeded limit".to_owned(),
        ),
    };
    drop(permit);
    let outcome = match response.status().as_u16() {
        503 => "shed",
        504 => "timeout",
        404 => "not_found",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "ok",
    };
    handles.request(protocol.label(), outcome);
    handles.duration.observe(started.elapsed().as_secs_f64());
    served.count_request(response.status().as_u16(), micros(started));
    response
}

/// Which variant answers a request.
struct Choice {
    variant: Variant,
    /// Forced by header or version path: never rerouted, never mirrored.
    forced: bool,
    /// The weight picked the candidate but its circuit is open: the stable answers, and the
    /// rollout counts the request as diverted. It is not the candidate's error: the failures
    /// that opened the circuit were counted one by one, and counting every request the circuit
    /// turns away as another would let a short burst of failures make up the minimum sample
    /// count on its own.
    diverted: bool,
}

fn choose(
    served: &Served,
    headers: &HeaderMap,
    forced_version: Option<&str>,
    protocol: Protocol,
) -> Result<Choice, Response> {
    let pick = |variant, forced, diverted| {
        Ok(Choice {
            variant,
            forced,
            diverted,
        })
    };
    // A protected deployment's candidate that failed the policy's checks answers nothing, not
    // even a request that asks for it by name, until an approval makes it stable.
    let sealed = || {
        protocol.error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "the candidate of deployment '{}' failed its promotion policy's checks and is not approved: it answers no traffic, forced or live, until a promotion makes it stable",
                served.spec.name
            ),
        )
    };
    let candidate_sealed = served
        .spec
        .active_rollout()
        .is_some_and(|rollout| rollout.unapproved_weight_cap == Some(0));
    if let Some(version) = forced_version {
        return if served.stable.version == version {
            pick(Variant::Stable, true, false)
        } else if served
            .candidate
            .as_ref()
            .is_some_and(|c| c.version == version)
        {
            if candidate_sealed {
                return Err(sealed());
            }
            pick(Variant::Candidate, true, false)
        } else {
            Err(V2Error(
                StatusCode::NOT_FOUND,
                format!(
                    "Model {} version {version} does not exist (serving {})",
                    served.spec.name,
                    versions(served).join(", ")
                ),
            )
            .into_response())
        };
    }
    if let Some(value) = headers.get(FORCE_VARIANT_HEADER) {
        let text = value.to_str().unwrap_or_default();
        return match Variant::parse(text) {
            Some(Variant::Candidate) if served.candidate.is_none() => Err(protocol.error(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!(
                    "{FORCE_VARIANT_HEADER}: candidate, but deployment '{}' has no rollout running",
                    served.spec.name
                ),
            )),
            Some(Variant::Candidate) if candidate_sealed => Err(sealed()),
            Some(variant) => pick(variant, true, false),
            None => Err(protocol.error(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("{FORCE_VARIANT_HEADER} must be 'stable' or 'candidate', got '{text}'"),
            )),
        };
    }
    let weight = served.traffic.weight;
    if weight == 0 || served.candidate.is_none() {
        return pick(Variant::Stable, false, false);
    }
    let bucket = match headers.get(ROUTE_KEY_HEADER) {
        Some(key) => route_hash(key.as_bytes()),
        None => fastrand::u64(..),
    };
    if !routes_to_candidate(bucket, weight) {
        pick(Variant::Stable, false, false)
    } else if served.breaker_allows(Variant::Candidate) {
        pick(Variant::Candidate, false, false)
    } else {
        pick(Variant::Stable, false, true)
    }
}

/// Parsed rows, and the V2 request they came in (for the answer's shape).
fn parse(
    protocol: Protocol,
    headers: &HeaderMap,
    body: &[u8],
    loaded: &LoadedVersion,
    limits: &Limits,
) -> Result<(Vec<Vec<f32>>, Option<V2Request>), Response> {
    let input_name = loaded.input_name();
    match protocol {
        Protocol::Mlflow => crate::scoring::invocation_rows(
            headers,
            body,
            input_name,
            loaded.signature.as_deref(),
            limits,
        )
        .map(|rows| (rows, None))
        .map_err(IntoResponse::into_response),
        Protocol::V2 => crate::scoring::v2_rows(body, input_name, limits)
            .map(|(request, rows)| (rows, Some(request)))
            .map_err(IntoResponse::into_response),
    }
}

/// Bodies up to this size are parsed on the runtime's thread; larger ones on the blocking
/// pool, beside inference. Parsing a large body takes as long as running the model on it,
/// and on the runtime's thread it would hold up every other connection: reading bodies,
/// refusing requests, writing answers, which then all wait for the CPU together.
const INLINE_PARSE_BYTES: usize = 16 * 1024;

async fn parse_off_thread(
    protocol: Protocol,
    headers: &HeaderMap,
    body: &Bytes,
    loaded: &Arc<LoadedVersion>,
    limits: &Limits,
) -> Result<(Vec<Vec<f32>>, Option<V2Request>), Response> {
    if body.len() <= INLINE_PARSE_BYTES {
        return parse(protocol, headers, body, loaded, limits);
    }
    let (headers, body, loaded, limits) = (headers.clone(), body.clone(), loaded.clone(), *limits);
    tokio::task::spawn_blocking(move || parse(protocol, &headers, &body, &loaded, &limits))
        .await
        .unwrap_or_else(|e| {
            Err(protocol.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("reading the request stopped: {e}"),
            ))
        })
}

fn answer(
    protocol: Protocol,
    served: &Served,
    variant: Variant,
    v2: Option<&V2Request>,
    outputs: &[slipway_serving::Output],
) -> Response {
    let mut response = match (protocol, v2) {
        (Protocol::V2, Some(request)) => {
            match crate::scoring::v2_response(&served.spec.name, request, outputs) {
                Ok(body) => axum::Json(body).into_response(),
                Err(error) => return error.into_response(),
            }
        }
        _ => axum::Json(crate::scoring::PredictionsBody(outputs)).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        FORCE_VARIANT_HEADER,
        HeaderValue::from_static(variant.as_str()),
    );
    if let Some(loaded) = served.version(variant)
        && let Some(value) = &loaded.version_header
    {
        headers.insert("x-slipway-model-version", value.clone());
    }
    response
}

fn run_failed(protocol: Protocol, error: RunError) -> Response {
    match error {
        RunError::BadInput(message) => {
            protocol.error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
        }
        RunError::Failed(message) => protocol.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("Encountered an unexpected error while evaluating the model: {message}"),
        ),
        RunError::Full(why) => shed(protocol, why),
    }
}

/// Records a variant's successful answer in its metrics and the rollout window. `live`: the
/// request was routed at random by weight, so its labels are a sample of the variant's traffic
/// (forced test requests, requests pinned by a routing key and mirrored copies are compared on
/// the same rows instead).
fn record_ok(
    served: &Served,
    variant: Variant,
    ran: &Ran,
    micros: u64,
    summary: &[String],
    live: bool,
) {
    let handles = served.handles.variant(variant);
    handles.ok.inc();
    handles.duration.observe(micros as f64 / 1e6);
    served.count_cpu(ran.cpu);
    if ran.reports_run {
        handles.inference.observe(ran.inference.as_secs_f64());
        handles.batch_rows.observe(ran.batch_rows as f64);
    }
    served.measure(|window| {
        let side = match variant {
            Variant::Stable => &mut window.stable,
            Variant::Candidate => &mut window.candidate,
        };
        side.requests += 1;
        side.latency.record(micros);
        if !live {
            return;
        }
        for label in summary {
            // The label is known after the first few requests: no allocation then.
            match side.predictions.get_mut(label) {
                Some(count) => *count += 1,
                None => {
                    side.predictions.insert(label.clone(), 1);
                }
            }
        }
    });
}

fn record_candidate_failure(served: &Served) {
    served.measure(|window| {
        window.candidate.requests += 1;
        window.candidate.errors += 1;
    });
    let state = served.breaker_record(Variant::Candidate, false);
    if let Some(handles) = &served.handles.candidate {
        handles.circuit.set(state.gauge());
    }
}

async fn serve(
    plane: &Arc<Plane>,
    served: &Arc<Served>,
    protocol: Protocol,
    headers: &HeaderMap,
    request: Request,
    forced_version: Option<&str>,
) -> Response {
    // The body is read only now that the request holds an in-flight permit, so what waits
    // for admission is a few headers, and the bodies in memory are bounded by the limit.
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => {
            return protocol.error(
                rejection.status(),
                "INVALID_PARAMETER_VALUE",
                format!("the request body could not be read: {rejection}"),
            );
        }
    };
    let Choice {
        variant,
        forced,
        diverted,
    } = match choose(served, headers, forced_version, protocol) {
        Ok(choice) => choice,
        Err(response) => return response,
    };
    // However this request ends (a client mistake, a timeout dropping this future), a
    // half-open trial it holds is freed; an outcome recorded first already freed it.
    let _trial = (variant == Variant::Candidate && !forced).then(|| TrialGuard(served.clone()));
    let Some(loaded) = served.version(variant).cloned() else {
        return protocol.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "the chosen variant is not loaded".to_owned(),
        );
    };
    let started = Instant::now();
    let max_wait = plane.config.limits.max_queue_wait;
    let candidate_unforced = variant == Variant::Candidate && !forced;
    let mut variant = variant;
    // A place at the model comes before parsing: under overload a request is turned away
    // before it costs any. A candidate without room is no failure of the candidate: the
    // stable answers.
    let (mut loaded, mut admitted) = match loaded.admit(max_wait).await {
        Ok(admitted) => (loaded, admitted),
        Err(RunError::Full(_)) if candidate_unforced => {
            variant = Variant::Stable;
            match served.stable.admit(max_wait).await {
                Ok(admitted) => (served.stable.clone(), admitted),
                Err(error) => return run_failed(protocol, error),
            }
        }
        Err(error) => return run_failed(protocol, error),
    };
    let (rows, v2) =
        match parse_off_thread(protocol, headers, &body, &loaded, &plane.config.limits).await {
            Ok(parsed) => parsed,
            // A body the candidate cannot read (another input name, another signature) but the
            // stable can is the candidate's failure: the stable answers it.
            Err(_) if candidate_unforced && variant == Variant::Candidate => match parse(
                protocol,
                headers,
                &body,
                &served.stable,
                &plane.config.limits,
            ) {
                Ok(parsed) => {
                    record_candidate_failure(served);
                    if let Some(handles) = &served.handles.candidate {
                        handles.fallback.inc();
                    }
                    variant = Variant::Stable;
                    drop(admitted);
                    admitted = match served.stable.admit(max_wait).await {
                        Ok(admitted) => admitted,
                        Err(error) => return run_failed(protocol, error),
                    };
                    loaded = served.stable.clone();
                    parsed
                }
                Err(response) => return response,
            },
            Err(response) => return response,
        };
    let mirror = variant == Variant::Stable
        && !forced
        && served.candidate.is_some()
        && served.traffic.mirror > 0
        && fastrand::u8(0..100) < served.traffic.mirror;
    let log =
        served.spec.settings.log_sample > 0.0 && fastrand::f64() < served.spec.settings.log_sample;
    let total_rows = rows.len();
    let kept = log.then(|| logged_rows(&rows));
    // Drift monitoring sees live traffic only: a forced request is someone's test.
    let monitor = if forced {
        None
    } else {
        served.monitor(variant).cloned()
    };
    let picks = monitor.as_ref().map(|monitor| monitor.pick(&rows));
    let monitored = variant;
    let outcome = if variant == Variant::Candidate && candidate_unforced {
        // The candidate gets half the request's time: a hung candidate is a failure the
        // stable still has time to answer, not a 504 that nothing counts.
        match tokio::time::timeout(plane.config.limits.timeout / 2, loaded.run(rows, admitted))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(RunError::Failed(
                "the candidate did not answer within half the request timeout".to_owned(),
            )),
        }
    } else {
        loaded.run(rows, admitted).await
    };
    let (variant, ran) = match outcome {
        Ok(ran) => (variant, ran),
        Err(RunError::Full(why)) if variant == Variant::Stable => return shed(protocol, why),
        Err(error) if variant == Variant::Candidate && candidate_unforced => {
            // The candidate failed (or its queue was full): the stable answers, reading the
            // body its own way. A failure the stable shares is the input's fault, not the
            // candidate's, and is not counted against it.
            let stable_rows = match parse(
                protocol,
                headers,
                &body,
                &served.stable,
                &plane.config.limits,
            ) {
                Ok((rows, _)) => rows,
                Err(response) => return response,
            };
            let stable_run = match served.stable.admit(max_wait).await {
                Ok(admitted) => served.stable.run(stable_rows, admitted).await,
                Err(error) => Err(error),
            };
            match stable_run {
                Ok(ran) => {
                    if !matches!(error, RunError::Full(_)) {
                        record_candidate_failure(served);
                        if let Some(handles) = &served.handles.candidate {
                            handles.fallback.inc();
                        }
                    }
                    (Variant::Stable, ran)
                }
                Err(stable_error) => return run_failed(protocol, stable_error),
            }
        }
        Err(error) => {
            if let RunError::Failed(_) = &error {
                served.handles.variant(variant).error.inc();
                if variant == Variant::Candidate {
                    record_candidate_failure(served);
                } else {
                    served.measure(|window| {
                        window.stable.requests += 1;
                        window.stable.errors += 1;
                    });
                }
            }
            return run_failed(protocol, error);
        }
    };
    let micros = started.elapsed().as_micros() as u64;
    if let (Some(monitor), Some(picks)) = (&monitor, picks)
        && variant == monitored
    {
        monitor.record(picks, &ran.outputs);
    }
    let summary = summarize(&ran.outputs);
    // Requests pinned by a routing key go to a variant by who sends them, not at random, so
    // their labels are no fair sample of a variant's traffic (one variant may get all of one
    // kind of entity): like forced requests, they are compared on the same rows instead.
    let sampled = !forced && !headers.contains_key(ROUTE_KEY_HEADER);
    record_ok(served, variant, &ran, micros, &summary, sampled);
    if diverted {
        served.measure(|window| window.candidate.diverted += 1);
        if let Some(handles) = &served.handles.candidate {
            handles.diverted.inc();
        }
    }
    if variant == Variant::Candidate {
        let state = served.breaker_record(Variant::Candidate, true);
        if let Some(handles) = &served.handles.candidate {
            handles.circuit.set(state.gauge());
        }
    }
    if variant == Variant::Candidate && wants_rescore(served, forced) {
        spawn_rescore(
            plane,
            served,
            protocol,
            headers,
            body.clone(),
            ran.outputs.clone(),
            summary,
        );
    } else if mirror {
        spawn_mirror(
            plane,
            served,
            protocol,
            headers,
            body.clone(),
            ran.outputs.clone(),
            summary,
        );
    }
    let response = answer(protocol, served, variant, v2.as_ref(), &ran.outputs);
    if log && let Some(rows) = kept {
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // What the record will hold: the kept rows' values and as many outputs per row.
        let values = rows.iter().map(Vec::len).sum::<usize>() + rows.len() * ran.outputs.len();
        plane.log_prediction(
            values,
            PredictionRecord {
                id: 0,
                deployment: served.spec.name.clone(),
                request_id,
                time_ms: now_ms(),
                variant,
                model_version: served
                    .version(variant)
                    .map(|l| l.version.clone())
                    .unwrap_or_default(),
                outputs: logged_outputs(&ran.outputs, rows.len(), total_rows),
                inputs: logged_inputs(rows, total_rows),
                latency_us: micros,
            },
        );
    }
    response
}

/// Rows of one request the prediction log keeps: a sample is for looking at what the model saw,
/// and copying a 100,000-row batch per sampled request would cost more than serving it.
const LOG_MAX_ROWS: usize = 100;
/// Values of one request the prediction log keeps, for wide rows (an image, an embedding).
const LOG_MAX_VALUES: usize = 10_000;

/// The first rows of a request, within [`LOG_MAX_ROWS`] and [`LOG_MAX_VALUES`].
fn logged_rows(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut values = 0;
    rows.iter()
        .take(LOG_MAX_ROWS)
        .take_while(|row| {
            values += row.len();
            values <= LOG_MAX_VALUES
        })
        .cloned()
        .collect()
}

/// The logged inputs: `[[...], ...]` when the whole request was kept, else
/// `{"rows": [[...]], "total_rows": N, "truncated": true}`, so a reader never mistakes a
/// prefix for the request.
fn logged_inputs(kept: Vec<Vec<f32>>, total_rows: usize) -> serde_json::Value {
    if kept.len() == total_rows {
        json!(kept)
    } else {
        json!({ "rows": kept, "total_rows": total_rows, "truncated": true })
    }
}

/// The logged outputs, cut to the rows the inputs kept (an output without rows to cut by is
/// left out of a truncated record rather than copied whole).
fn logged_outputs(
    outputs: &[slipway_serving::Output],
    kept: usize,
    total_rows: usize,
) -> serde_json::Value {
    if kept == total_rows {
        return crate::scoring::predictions_json(outputs);
    }
    let sliced: Option<Vec<slipway_serving::Output>> = outputs
        .iter()
        .map(|output| output.slice_rows(0..kept))
        .collect();
    match sliced {
        Some(sliced) => crate::scoring::predictions_json(&sliced),
        None => serde_json::Value::Null,
    }
}

struct TrialGuard(Arc<Served>);

impl Drop for TrialGuard {
    fn drop(&mut self) {
        self.0.breaker_release(Variant::Candidate);
    }
}

/// Sends a copy of a request to the candidate after the stable answered. Never awaited by the
/// request; bounded by the plane's mirror permits (skipped, and counted, when all are taken).
fn spawn_mirror(
    plane: &Arc<Plane>,
    served: &Arc<Served>,
    protocol: Protocol,
    headers: &HeaderMap,
    body: Bytes,
    stable_outputs: Vec<slipway_serving::Output>,
    stable: Vec<String>,
) {
    let Some(candidate) = served.candidate.clone() else {
        return;
    };
    let Ok(permit) = plane.mirrors.clone().try_acquire_owned() else {
        plane.metrics.mirrored(&served.spec.name, "skipped");
        return;
    };
    let plane = plane.clone();
    let served = served.clone();
    let headers = headers.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let started = Instant::now();
        let outcome = run_in_background(&plane, protocol, &headers, &body, &candidate).await;
        match outcome {
            Ok(ran) => {
                let micros = started.elapsed().as_micros() as u64;
                let summary = summarize(&ran.outputs);
                let (compared, agreed) = compare_rows(
                    &stable_outputs,
                    &stable,
                    &ran.outputs,
                    &summary,
                    score_tolerance(&served),
                );
                record_ok(&served, Variant::Candidate, &ran, micros, &summary, false);
                served.measure(|window| {
                    window.compared += compared;
                    window.agreed += agreed;
                    count_labels(&mut window.same_rows.stable, &stable);
                    count_labels(&mut window.same_rows.candidate, &summary);
                });
                // Successes count for the breaker too, or scattered failures would add up.
                let state = served.breaker_record(Variant::Candidate, true);
                if let Some(handles) = &served.handles.candidate {
                    handles.circuit.set(state.gauge());
                }
                plane.metrics.mirrored(&served.spec.name, "compared");
            }
            Err(RunError::Full(_)) => plane.metrics.mirrored(&served.spec.name, "skipped"),
            Err(_) => {
                served.handles.variant(Variant::Candidate).error.inc();
                record_candidate_failure(&served);
                plane.metrics.mirrored(&served.spec.name, "error");
            }
        }
    });
}

/// A background run (mirror, re-score): admitted before it parses, waiting for the model no
/// longer than a request would, so it is skipped and counted, never queued behind live
/// traffic; then the version reads the body its own way (its input name, its signature's
/// order).
async fn run_in_background(
    plane: &Plane,
    protocol: Protocol,
    headers: &HeaderMap,
    body: &Bytes,
    loaded: &Arc<LoadedVersion>,
) -> Result<Ran, RunError> {
    let admitted = loaded.admit(plane.config.limits.max_queue_wait).await?;
    match parse_off_thread(protocol, headers, body, loaded, &plane.config.limits).await {
        Ok((rows, _)) => loaded.run(rows, admitted).await,
        Err(_) => Err(RunError::BadInput(format!(
            "version {} cannot read the request",
            loaded.version
        ))),
    }
}

fn count_labels(counts: &mut std::collections::BTreeMap<String, u64>, labels: &[String]) {
    for label in labels {
        match counts.get_mut(label) {
            Some(count) => *count += 1,
            None => {
                counts.insert(label.clone(), 1);
            }
        }
    }
}

fn score_tolerance(served: &Served) -> f64 {
    served
        .spec
        .active_rollout()
        .map_or(0.0, |rollout| rollout.rules.score_tolerance)
}

/// Whether the candidate's answer to this request is also run on the stable: every forced
/// (test) request, which has no live counterpart to compare with, and `rescore_percent` of
/// the live ones.
fn wants_rescore(served: &Served, forced: bool) -> bool {
    let Some(rollout) = served.spec.active_rollout() else {
        return false;
    };
    let percent = rollout.rules.rescore_percent;
    percent > 0 && (forced || fastrand::u8(0..100) < percent)
}

/// Runs the rows the candidate answered on the stable too, after the answer left, and adds
/// the row-by-row agreement to the window. Never awaited by the request; bounded by the
/// plane's re-score permits (skipped, and counted, when all are taken or the stable's queue
/// is full). A failure of the stable says nothing about the candidate and is not counted
/// against it.
fn spawn_rescore(
    plane: &Arc<Plane>,
    served: &Arc<Served>,
    protocol: Protocol,
    headers: &HeaderMap,
    body: Bytes,
    candidate_outputs: Vec<slipway_serving::Output>,
    candidate: Vec<String>,
) {
    let Ok(permit) = plane.rescores.clone().try_acquire_owned() else {
        served.measure(|window| window.rescore_skipped += 1);
        plane.metrics.rescored(&served.spec.name, "skipped");
        return;
    };
    let plane = plane.clone();
    let served = served.clone();
    let headers = headers.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let stable = served.stable.clone();
        let outcome = run_in_background(&plane, protocol, &headers, &body, &stable).await;
        match outcome {
            Ok(ran) => {
                let summary = summarize(&ran.outputs);
                let (compared, agreed) = compare_rows(
                    &ran.outputs,
                    &summary,
                    &candidate_outputs,
                    &candidate,
                    score_tolerance(&served),
                );
                served.measure(|window| {
                    window.rescored += compared;
                    window.rescore_agreed += agreed;
                    count_labels(&mut window.same_rows.stable, &summary);
                    count_labels(&mut window.same_rows.candidate, &candidate);
                });
                plane.metrics.rescored(&served.spec.name, "compared");
            }
            Err(RunError::Full(_)) => {
                served.measure(|window| window.rescore_skipped += 1);
                plane.metrics.rescored(&served.spec.name, "skipped");
            }
            Err(_) => plane.metrics.rescored(&served.spec.name, "error"),
        }
    });
}
