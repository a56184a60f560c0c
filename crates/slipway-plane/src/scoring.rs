//! The inference protocols for one model: MLflow's scoring protocol, as `mlflow models serve`
//! speaks it (`/invocations` with `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//! or CSV; `/ping`, `/health`, `/version`; answers `{"predictions": ...}`, errors as MLflow's
//! JSON body), and the Open Inference Protocol V2 (`/v2/...`, errors as `{"error": ...}`).
//!
//! Bodies are read within `--max-rows` / `--max-values` (`scoring/body.rs`), never as a JSON
//! tree.
//!
//! Deviations, where MLflow's behaviour is a bug: a request without a content type gets 415
//! (MLflow: 500); a non-UTF-8 charset is 415 as in MLflow.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use slipway_serving::signature::Signature;
use slipway_serving::{OnnxModel, OutputValue};

use crate::serving_metrics::ServingMetrics;

mod body;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod properties;

pub(crate) use body::V2Request;
pub use body::{DEFAULT_MAX_ROWS, DEFAULT_MAX_VALUES};

/// What the scoring routes serve.
#[derive(Clone)]
pub struct ScoringState {
    pub model: Arc<OnnxModel>,
    /// The name the V2 protocol addresses the model by.
    pub name: Arc<str>,
    /// The registry version served, when it came from the registry; V2 paths naming another
    /// version get 404.
    pub version: Option<Arc<str>>,
    pub metrics: Arc<ServingMetrics>,
    /// The MLmodel signature, when the model came as an MLflow model folder.
    pub signature: Option<Arc<Signature>>,
    /// Batches running or waiting for a session. A permit moves into the blocking task, so
    /// a request that timed out (504) still holds it until its batch is done: the limit
    /// bounds real work, not only the requests still waiting for an answer.
    pub work: Arc<tokio::sync::Semaphore>,
    /// Rows and values one request may carry.
    pub limits: Limits,
}

impl axum::extract::FromRef<ScoringState> for Arc<ServingMetrics> {
    fn from_ref(state: &ScoringState) -> Self {
        state.metrics.clone()
    }
}

/// Runs a batch off the async workers and records its time and size.
async fn predict(
    state: &ScoringState,
    rows: Vec<Vec<f32>>,
) -> Result<Result<Vec<slipway_serving::Output>, slipway_serving::model::ModelError>, String> {
    let model = state.model.clone();
    let metrics = state.metrics.clone();
    // A small batch on a free session runs in place (a few microseconds of model time): the
    // hand-off to a blocking thread would cost more than the work. Larger batches, or a busy
    // pool, go to a blocking thread.
    let values: usize = rows.iter().map(Vec::len).sum();
    if values <= INLINE_VALUES {
        let started = std::time::Instant::now();
        if let Some(outcome) = model.predict_rows_if_free(&rows) {
            if outcome.is_ok() {
                metrics
                    .inference_duration
                    .observe(started.elapsed().as_secs_f64());
                metrics.batch_rows.observe(rows.len() as f64);
            }
            return Ok(outcome);
        }
    }
    let permit = state
        .work
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = std::time::Instant::now();
        let outcome = model.predict_rows(&rows);
        // Batches the model ran; refused input is counted as a client error per request.
        if outcome.is_ok() {
            metrics
                .inference_duration
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_rows.observe(rows.len() as f64);
        }
        outcome
    })
    .await
    .map_err(|e| e.to_string())
}

/// Batches up to this many input values may run on the request's own thread.
pub(crate) const INLINE_VALUES: usize = 1024;

/// How much work the scoring routes take on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Inference requests handled at once; more are refused at once with 503 and
    /// `Retry-After` (load shedding) instead of waiting in an unbounded queue.
    pub max_in_flight: usize,
    /// A request that takes longer gets 504, as `mlflow models serve -t` does.
    pub timeout: std::time::Duration,
    /// The largest request body; a larger one gets 413 in the protocol's error format.
    pub max_body_bytes: usize,
    /// Rows one request may carry; more get 413 while the body is read.
    pub max_rows: usize,
    /// Input values one request may carry (rows times columns); more get 413 while the body
    /// is read, so a body's parse never holds more than a small multiple of this.
    pub max_values: usize,
}

impl Limits {
    pub(crate) fn budget(&self) -> body::Budget {
        body::Budget::new(self.max_rows, self.max_values)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 64,
            timeout: std::time::Duration::from_secs(60),
            max_body_bytes: 32 * 1024 * 1024,
            max_rows: DEFAULT_MAX_ROWS,
            max_values: DEFAULT_MAX_VALUES,
        }
    }
}

/// Turns the limit layers' refusals into responses: 503 for a full server, 504 for a slow one.
pub(crate) async fn overloaded(error: tower::BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        return (
            StatusCode::GATEWAY_TIMEOUT,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Request processing time exceeded limit",
        )
            .into_response();
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::RETRY_AFTER, "1"),
                (header::CONTENT_TYPE, "application/json"),
            ],
            json!({
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": "the server is at its limit of requests in flight; retry shortly",
                "error": "the server is at its limit of requests in flight; retry shortly",
            })
            .to_string(),
        )
            .into_response();
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error_code": "INTERNAL_ERROR", "message": error.to_string() })),
    )
        .into_response()
}

/// MLflow's `/invocations`, `/ping`, `/health`, `/version` and the Open Inference Protocol V2
/// (`/v2/...`) for one model, called `name` in V2 paths. Every response carries an
/// `x-request-id`; inference routes share the in-flight limit and the timeout.
pub fn scoring_router(
    model: Arc<OnnxModel>,
    name: &str,
    served_version: Option<&str>,
    limits: Limits,
) -> Router {
    scoring_router_with(model, name, served_version, None, limits)
}

/// [`scoring_router`] for a model with an MLmodel signature, which then validates and orders
/// named columns.
pub fn scoring_router_with(
    model: Arc<OnnxModel>,
    name: &str,
    served_version: Option<&str>,
    signature: Option<Signature>,
    limits: Limits,
) -> Router {
    use tower::ServiceBuilder;
    let guarded = ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
        .layer(tower::timeout::TimeoutLayer::new(limits.timeout))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight,
        ));
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    let metrics = Arc::new(ServingMetrics::default());
    let track =
        axum::middleware::from_fn_with_state(metrics.clone(), crate::serving_metrics::track);
    Router::new()
        .route("/metrics", get(crate::serving_metrics::metrics_endpoint))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .route(
            "/invocations",
            post(invocations)
                .layer(guarded.clone())
                .layer(track.clone()),
        )
        .route("/v2", get(v2_server))
        .route("/v2/health/live", get(v2_live))
        .route("/v2/health/ready", get(v2_ready))
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
        .route(
            "/v2/models/{name}/infer",
            post(v2_infer).layer(guarded.clone()).layer(track.clone()),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2_infer_versioned).layer(guarded).layer(track),
        )
        .with_state(ScoringState {
            model,
            name: Arc::from(name),
            version: served_version.map(Arc::from),
            metrics,
            signature: signature.map(Arc::new),
            work: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
            limits,
        })
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
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

pub(crate) async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "\n").into_response()
}

pub(crate) async fn version() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::MLFLOW_COMPATIBLE_VERSION,
    )
        .into_response()
}

/// An error as MLflow's scoring server writes it.
pub(crate) struct ScoringError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ScoringError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ScoringError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ScoringError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE",
            message: message.into(),
        }
    }
}

impl IntoResponse for ScoringError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return (
                self.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                self.message,
            )
                .into_response();
        }
        (
            self.status,
            axum::Json(json!({ "error_code": self.code, "message": self.message })),
        )
            .into_response()
    }
}

const FORMATS: &str = "{'dataframe_records', 'dataframe_split', 'instances', 'inputs'}";

enum Format {
    Json,
    Csv,
}

fn content_type(headers: &HeaderMap) -> Result<Format, ScoringError> {
    let unsupported = |message: String| ScoringError {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "UNSUPPORTED_MEDIA_TYPE",
        message,
    };
    let Some(raw) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(unsupported(
            "a Content-Type is required: application/json or text/csv".to_owned(),
        ));
    };
    let mut parts = raw.split(';').map(str::trim);
    let mime = parts.next().unwrap_or_default().to_ascii_lowercase();
    for parameter in parts.filter(|p| !p.is_empty()) {
        match parameter.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("charset") => {
                if !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
                    return Err(unsupported(
                        "The scoring server only supports UTF-8".to_owned(),
                    ));
                }
            }
            _ => {
                return Err(unsupported(format!(
                    "Unrecognized content type parameters: {parameter}"
                )));
            }
        }
    }
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "text/csv" => Ok(Format::Csv),
        _ => Err(unsupported(format!(
            "This predictor only supports the following content types: Types: ['text/csv', 'application/json']. Got '{raw}'."
        ))),
    }
}

/// The hottest shape, `{"inputs": [[n, ...], ...]}` (or `"instances"`), read by hand: numbers
/// go straight from the body's bytes to `f64::from_str` (correctly rounded, the same value
/// serde_json's `float_roundtrip` gives, which the tracking API needs and which costs it a
/// buffer copy per number) and then to f32, as pandas and serde read them. Anything this does
/// not recognise exactly, whitespace aside, returns `Ok(None)` for the full parser. Rows and
/// values count against the limits as they are read, and a number beyond f32 is refused.
fn scan_matrix(body: &[u8], limits: &Limits) -> Result<Option<Vec<Vec<f32>>>, ScoringError> {
    struct Scanner<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl Scanner<'_> {
        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
                self.at += 1;
            }
        }
        fn eat(&mut self, byte: u8) -> bool {
            self.skip_ws();
            if self.bytes.get(self.at) == Some(&byte) {
                self.at += 1;
                true
            } else {
                false
            }
        }
        fn eat_literal(&mut self, literal: &[u8]) -> bool {
            self.skip_ws();
            if self.bytes[self.at..].starts_with(literal) {
                self.at += literal.len();
                true
            } else {
                false
            }
        }
        /// A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        fn number(&mut self) -> Option<f64> {
            self.skip_ws();
            let start = self.at;
            let digits = |s: &mut Self| {
                let from = s.at;
                while s.bytes.get(s.at).is_some_and(u8::is_ascii_digit) {
                    s.at += 1;
                }
                s.at - from
            };
            if self.bytes.get(self.at) == Some(&b'-') {
                self.at += 1;
            }
            let first = *self.bytes.get(self.at)?;
            let integer = digits(self);
            if integer == 0 || (first == b'0' && integer > 1) {
                return None;
            }
            if self.bytes.get(self.at) == Some(&b'.') {
                self.at += 1;
                if digits(self) == 0 {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = self.bytes.get(self.at) {
                self.at += 1;
                if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                    self.at += 1;
                }
                if digits(self) == 0 {
                    return None;
                }
            }
            let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
            // Beyond f64 (1e400): serde_json refuses it, so the full parser words the error.
            text.parse::<f64>().ok().filter(|v| v.is_finite())
        }
    }
    let mut s = Scanner { bytes: body, at: 0 };
    let field = if !s.eat(b'{') {
        return Ok(None);
    } else if s.eat_literal(b"\"inputs\"") {
        "inputs"
    } else if s.eat_literal(b"\"instances\"") {
        "instances"
    } else {
        return Ok(None);
    };
    if !s.eat(b':') || !s.eat(b'[') {
        return Ok(None);
    }
    let mut budget = limits.budget();
    let mut rows = Vec::new();
    if !s.eat(b']') {
        loop {
            if !s.eat(b'[') {
                return Ok(None);
            }
            budget.row()?;
            let mut row = Vec::with_capacity(rows.first().map_or(8, Vec::len));
            if !s.eat(b']') {
                loop {
                    let Some(number) = s.number() else {
                        return Ok(None);
                    };
                    budget.values(1)?;
                    let at = format_args!("{field}[{}][{}]", rows.len(), row.len());
                    row.push(body::to_f32(number, at)?);
                    if s.eat(b']') {
                        break;
                    }
                    if !s.eat(b',') {
                        return Ok(None);
                    }
                }
            }
            rows.push(row);
            if s.eat(b']') {
                break;
            }
            if !s.eat(b',') {
                return Ok(None);
            }
        }
    }
    if !s.eat(b'}') {
        return Ok(None);
    }
    s.skip_ws();
    Ok((s.at == body.len()).then_some(rows))
}

use body::Named;

/// An MLflow JSON body: the hand scanner for the hottest shape, the budgeted visitors for the
/// rest (and for the scanner's refusals, which they word).
fn rows_from_json(body: &[u8], input_name: &str, limits: &Limits) -> Result<Named, ScoringError> {
    if let Some(rows) = scan_matrix(body, limits)? {
        return Ok((rows, None));
    }
    body::mlflow_json(body, input_name, limits.budget())
}

/// A flat tensor as nested lists following its shape (rows first).
fn nested<T: Copy + Into<Value>>(shape: &[i64], data: &[T]) -> Value {
    match shape {
        [] | [_] => Value::Array(data.iter().map(|v| (*v).into()).collect()),
        [_, rest @ ..] => {
            let width: usize = rest
                .iter()
                .map(|d| (*d).max(0) as usize)
                .product::<usize>()
                .max(1);
            Value::Array(
                data.chunks(width)
                    .map(|chunk| nested(rest, chunk))
                    .collect(),
            )
        }
    }
}

fn output_json(value: &OutputValue) -> Value {
    match value {
        OutputValue::F32 { shape, data } => {
            // float32 as its float64 expansion, as MLflow prints them.
            let widened: Vec<f64> = data.iter().map(|v| f64::from(*v)).collect();
            nested(shape, &widened)
        }
        OutputValue::F64 { shape, data } => nested(shape, data),
        OutputValue::I64 { shape, data } => nested(shape, data),
        OutputValue::Maps(rows) => Value::Array(
            rows.iter()
                .map(|row| {
                    Value::Object(
                        row.iter()
                            .map(|(k, v)| (k.clone(), json!(f64::from(*v))))
                            .collect(),
                    )
                })
                .collect(),
        ),
    }
}

/// An f32 written as its f64 expansion, as MLflow prints float32 outputs.
struct Wide(f32);

impl serde::Serialize for Wide {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(f64::from(self.0))
    }
}

/// A flat tensor as nested lists following its shape, serialized in place.
struct NestedOut<'a, T> {
    shape: &'a [i64],
    data: &'a [T],
}

impl<T: Copy> serde::Serialize for NestedOut<'_, T>
where
    T: Into<Wideable>,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            [] | [_] => serializer.collect_seq(self.data.iter().map(|v| (*v).into())),
            [_, rest @ ..] => {
                let width: usize = rest
                    .iter()
                    .map(|d| (*d).max(0) as usize)
                    .product::<usize>()
                    .max(1);
                serializer.collect_seq(self.data.chunks(width).map(|chunk| NestedOut {
                    shape: rest,
                    data: chunk,
                }))
            }
        }
    }
}

/// The element types of output tensors, serialized as MLflow writes them.
enum Wideable {
    F32(f32),
    F64(f64),
    I64(i64),
}

impl From<f32> for Wideable {
    fn from(v: f32) -> Self {
        Wideable::F32(v)
    }
}

impl From<f64> for Wideable {
    fn from(v: f64) -> Self {
        Wideable::F64(v)
    }
}

impl From<i64> for Wideable {
    fn from(v: i64) -> Self {
        Wideable::I64(v)
    }
}

impl serde::Serialize for Wideable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Wideable::F32(v) => Wide(*v).serialize(serializer),
            // Non-finite values are written as null, as serde_json::Value has them.
            Wideable::F64(v) => serializer.serialize_f64(*v),
            Wideable::I64(v) => serializer.serialize_i64(*v),
        }
    }
}

struct ValueOut<'a>(&'a OutputValue);

impl serde::Serialize for ValueOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            OutputValue::F32 { shape, data } => NestedOut { shape, data }.serialize(serializer),
            OutputValue::F64 { shape, data } => NestedOut { shape, data }.serialize(serializer),
            OutputValue::I64 { shape, data } => NestedOut { shape, data }.serialize(serializer),
            OutputValue::Maps(rows) => serializer.collect_seq(rows.iter().map(MapOut)),
        }
    }
}

struct MapOut<'a>(&'a std::collections::BTreeMap<String, f32>);

impl serde::Serialize for MapOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, Wide(*v))))
    }
}

/// `{"predictions": ...}` serialized straight from the outputs: the same text as
/// [`predictions_json`] without building a `Value` tree per request.
pub(crate) struct PredictionsBody<'a>(pub(crate) &'a [slipway_serving::Output]);

impl serde::Serialize for PredictionsBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut body = serializer.serialize_map(Some(1))?;
        match self.0 {
            [only] => body.serialize_entry("predictions", &ValueOut(&only.value))?,
            many => body.serialize_entry("predictions", &PredictionsMap(many))?,
        }
        body.end()
    }
}

struct PredictionsMap<'a>(&'a [slipway_serving::Output]);

impl serde::Serialize for PredictionsMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Sorted by name, as a serde_json map writes them.
        let mut outputs: Vec<&slipway_serving::Output> = self.0.iter().collect();
        outputs.sort_by(|a, b| a.name.cmp(&b.name));
        serializer.collect_map(outputs.into_iter().map(|o| (&o.name, ValueOut(&o.value))))
    }
}

/// The rows of an `/invocations` body, in whichever format its content type says.
/// With the model's MLmodel signature, named columns are put in the signature's order and
/// checked against it (missing, unknown, duplicated), and unnamed rows are checked against its
/// width; without one the ONNX graph's input shape checks them when the model runs.
pub(crate) fn invocation_rows(
    headers: &HeaderMap,
    body: &[u8],
    input_name: &str,
    signature: Option<&Signature>,
    limits: &Limits,
) -> Result<Vec<Vec<f32>>, ScoringError> {
    let (rows, columns) = match content_type(headers)? {
        Format::Json => rows_from_json(body, input_name, limits)?,
        Format::Csv => body::csv(body, limits.budget())?,
    };
    let Some(signature) = signature else {
        return Ok(rows);
    };
    let checked = match (signature.input_names(), columns) {
        // Named columns matter only to a signature that names its inputs.
        (Some(_), Some(columns)) => signature.arrange_named_rows(&columns, rows),
        (_, _) => signature.check_unnamed_rows(&rows).map(|()| rows),
    };
    checked.map_err(|mismatch| ScoringError::invalid(mismatch.message().to_owned()))
}

/// The `predictions` value of an `/invocations` answer: the one output's value, or an object
/// by output name when the model has several, as MLflow answers.
pub(crate) fn predictions_json(outputs: &[slipway_serving::Output]) -> Value {
    match outputs {
        [only] => output_json(&only.value),
        many => Value::Object(
            many.iter()
                .map(|output| (output.name.clone(), output_json(&output.value)))
                .collect(),
        ),
    }
}

/// A body over the limit, in the protocol's error format rather than axum's plain text.
pub(crate) fn too_large(rejection: &BytesRejection) -> (StatusCode, String) {
    (
        rejection.status(),
        format!("the request body could not be read: {rejection} (the limit is --max-body bytes)"),
    )
}

async fn invocations(
    State(state): State<ScoringState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScoringError> {
    let body = body.map_err(|rejection| {
        let (status, message) = too_large(&rejection);
        ScoringError {
            status,
            code: "INVALID_PARAMETER_VALUE",
            message,
        }
    })?;
    let input_name = state
        .model
        .inputs()
        .first()
        .map(|input| input.name.clone())
        .unwrap_or_default();
    let rows = invocation_rows(
        &headers,
        &body,
        &input_name,
        state.signature.as_deref(),
        &state.limits,
    )?;
    let outputs = predict(&state, rows)
        .await
        .map_err(|e| ScoringError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: format!("inference stopped: {e}"),
        })?
        .map_err(|e| match e {
            slipway_serving::model::ModelError::BadInput(message) => ScoringError::invalid(message),
            // The runtime failing (an allocation it could not make, a kernel error) is the
            // server's trouble, not the client's.
            other => ScoringError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "INTERNAL_ERROR",
                message: format!(
                    "Encountered an unexpected error while evaluating the model: {other}"
                ),
            },
        })?;
    Ok(axum::Json(PredictionsBody(&outputs)).into_response())
}

// ---------- Open Inference Protocol V2 ----------

/// A V2 error: `{"error": message}` with the status KServe uses.
pub(crate) struct V2Error(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn v2_datatype(ty: &str) -> &'static str {
    match ty {
        "float32" => "FP32",
        "float64" => "FP64",
        "int64" => "INT64",
        "int32" => "INT32",
        "string" => "BYTES",
        // ZipMap outputs are answered as an FP32 [N, classes] tensor.
        _ => "FP32",
    }
}

fn known_version(state: &ScoringState, name: &str, version: &str) -> Result<(), V2Error> {
    known(state, name)?;
    match &state.version {
        Some(served) if &**served != version => Err(V2Error(
            StatusCode::NOT_FOUND,
            format!("Model {name} version {version} does not exist."),
        )),
        _ => Ok(()),
    }
}

fn known(state: &ScoringState, name: &str) -> Result<(), V2Error> {
    if name == &*state.name {
        Ok(())
    } else {
        Err(V2Error(
            StatusCode::NOT_FOUND,
            format!("Model with name {name} does not exist."),
        ))
    }
}

pub async fn v2_server() -> axum::Json<Value> {
    axum::Json(json!({ "name": "slipway", "version": crate::VERSION, "extensions": [] }))
}

pub async fn v2_live() -> axum::Json<Value> {
    axum::Json(json!({ "live": true }))
}

async fn v2_ready() -> axum::Json<Value> {
    axum::Json(json!({ "ready": true }))
}

fn metadata(state: &ScoringState) -> Value {
    model_metadata(
        &state.name,
        state.version.iter().map(|v| v.to_string()).collect(),
        &state.model,
    )
}

/// A V2 model metadata answer.
pub(crate) fn model_metadata(name: &str, versions: Vec<String>, model: &OnnxModel) -> Value {
    let io = |specs: &[slipway_serving::model::IoSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|spec| {
                json!({
                    "name": spec.name,
                    "datatype": v2_datatype(&spec.ty),
                    "shape": if spec.shape.is_empty() { vec![-1, -1] } else { spec.shape.clone() },
                })
            })
            .collect()
    };
    json!({
        "name": name,
        "versions": versions,
        "platform": "onnx_onnxv1",
        "inputs": io(model.inputs()),
        "outputs": io(model.outputs()),
    })
}

async fn v2_metadata(
    State(state): State<ScoringState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::Json<Value>, V2Error> {
    known(&state, &name)?;
    Ok(axum::Json(metadata(&state)))
}

async fn v2_metadata_versioned(
    State(state): State<ScoringState>,
    axum::extract::Path((name, version)): axum::extract::Path<(String, String)>,
) -> Result<axum::Json<Value>, V2Error> {
    known_version(&state, &name, &version)?;
    Ok(axum::Json(metadata(&state)))
}

async fn v2_model_ready(
    State(state): State<ScoringState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::Json<Value>, V2Error> {
    known(&state, &name)?;
    Ok(axum::Json(json!({ "name": name, "ready": true })))
}

async fn v2_model_ready_versioned(
    State(state): State<ScoringState>,
    axum::extract::Path((name, version)): axum::extract::Path<(String, String)>,
) -> Result<axum::Json<Value>, V2Error> {
    known_version(&state, &name, &version)?;
    Ok(axum::Json(json!({ "name": name, "ready": true })))
}

/// A ZipMap output as a dense `[rows, classes]` tensor, classes in key order (numeric keys
/// numerically).
fn maps_as_tensor(rows: &[std::collections::BTreeMap<String, f32>]) -> (Vec<i64>, Vec<f32>) {
    let mut keys: Vec<&String> = rows
        .first()
        .map(|row| row.keys().collect())
        .unwrap_or_default();
    keys.sort_by_key(|key| (key.parse::<i64>().unwrap_or(i64::MAX), (*key).clone()));
    let data = rows
        .iter()
        .flat_map(|row| {
            keys.iter()
                .map(|key| row.get(*key).copied().unwrap_or(f32::NAN))
        })
        .collect();
    (vec![rows.len() as i64, keys.len() as i64], data)
}

fn v2_output(name: &str, value: &OutputValue) -> Value {
    let (datatype, shape, data): (&str, Vec<i64>, Value) = match value {
        OutputValue::F32 { shape, data } => (
            "FP32",
            shape.clone(),
            json!(data.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()),
        ),
        OutputValue::F64 { shape, data } => ("FP64", shape.clone(), json!(data)),
        OutputValue::I64 { shape, data } => ("INT64", shape.clone(), json!(data)),
        OutputValue::Maps(rows) => {
            let (shape, data) = maps_as_tensor(rows);
            (
                "FP32",
                shape,
                json!(data.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()),
            )
        }
    };
    json!({ "name": name, "datatype": datatype, "shape": shape, "data": data })
}

async fn v2_infer(
    State(state): State<ScoringState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V2Error> {
    infer(state, name, body).await
}

async fn v2_infer_versioned(
    State(state): State<ScoringState>,
    axum::extract::Path((name, version)): axum::extract::Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V2Error> {
    known_version(&state, &name, &version)?;
    infer(state, name, body).await
}

/// A V2 inference request's rows, checked against the model's one input.
pub(crate) fn v2_rows(
    body: &[u8],
    expected: &str,
    limits: &Limits,
) -> Result<(V2Request, Vec<Vec<f32>>), V2Error> {
    let bad = |message: String| V2Error(StatusCode::BAD_REQUEST, message);
    let (request, inputs) =
        body::v2(body, limits.budget()).map_err(|e| V2Error(e.status, e.message))?;
    let [input] = inputs.as_slice() else {
        return Err(bad(format!(
            "the model takes one input, '{expected}'; the request has {}",
            inputs.len()
        )));
    };
    if input.name != expected {
        return Err(bad(format!(
            "unknown input '{}': the model's input is '{expected}'",
            input.name
        )));
    }
    if !matches!(
        input.datatype.as_str(),
        "FP32" | "FP64" | "FP16" | "INT64" | "INT32" | "INT16" | "INT8" | "UINT8" | "BOOL"
    ) {
        return Err(bad(format!(
            "input '{}' has datatype {}; the model takes numbers (FP32)",
            input.name, input.datatype
        )));
    }
    let [rows, width] = input.shape.as_slice() else {
        return Err(bad(format!(
            "input '{}' has shape {:?}; the model takes [rows, features]",
            input.name, input.shape
        )));
    };
    let flat = &input.data;
    let (rows, width) = (*rows, *width);
    if flat.len() as u64 != rows.saturating_mul(width) {
        return Err(bad(format!(
            "input '{}' has {} values for shape [{rows}, {width}]",
            input.name,
            flat.len()
        )));
    }
    let matrix: Vec<Vec<f32>> = if width == 0 {
        // No values to split, but the rows still count (the model refuses empty rows).
        vec![Vec::new(); rows as usize]
    } else {
        flat.chunks(width as usize).map(<[f32]>::to_vec).collect()
    };
    Ok((request, matrix))
}

/// A V2 response body: the requested outputs (all when none were named).
pub(crate) fn v2_response(
    model_name: &str,
    request: &V2Request,
    outputs: &[slipway_serving::Output],
) -> Result<Value, V2Error> {
    for requested in &request.outputs {
        if !outputs.iter().any(|output| &output.name == requested) {
            return Err(V2Error(
                StatusCode::BAD_REQUEST,
                format!("the model has no output '{requested}'"),
            ));
        }
    }
    let outputs: Vec<Value> = outputs
        .iter()
        .filter(|output| request.outputs.is_empty() || request.outputs.contains(&output.name))
        .map(|output| v2_output(&output.name, &output.value))
        .collect();
    let mut response = json!({ "model_name": model_name, "outputs": outputs });
    if let Some(id) = &request.id {
        response["id"] = json!(id);
    }
    Ok(response)
}

async fn infer(
    state: ScoringState,
    name: String,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V2Error> {
    known(&state, &name)?;
    let body = body.map_err(|rejection| {
        let (status, message) = too_large(&rejection);
        V2Error(status, message)
    })?;
    let expected = state
        .model
        .inputs()
        .first()
        .map(|input| input.name.clone())
        .unwrap_or_default();
    let (request, matrix) = v2_rows(&body, &expected, &state.limits)?;
    let outputs = predict(&state, matrix)
        .await
        .map_err(|e| {
            V2Error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("inference stopped: {e}"),
            )
        })?
        .map_err(|e| match e {
            slipway_serving::model::ModelError::BadInput(message) => {
                V2Error(StatusCode::BAD_REQUEST, message)
            }
            other => V2Error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    Ok(axum::Json(v2_response(&state.name, &request, &outputs)?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_serving::Output;

    #[test]
    fn predictions_serialize_in_place_exactly_as_the_value_tree() {
        let cases = vec![
            vec![Output {
                name: "variable".into(),
                value: OutputValue::F32 {
                    shape: vec![2, 1],
                    data: vec![0.1, f32::NAN],
                },
            }],
            vec![
                Output {
                    name: "probabilities".into(),
                    value: OutputValue::Maps(vec![std::collections::BTreeMap::from([
                        ("0".to_owned(), 0.25),
                        ("1".to_owned(), 0.75),
                    ])]),
                },
                Output {
                    name: "label".into(),
                    value: OutputValue::I64 {
                        shape: vec![1],
                        data: vec![1],
                    },
                },
                Output {
                    name: "score".into(),
                    value: OutputValue::F64 {
                        shape: vec![1, 2, 2],
                        data: vec![1.5, -2.0, f64::INFINITY, 3.0],
                    },
                },
            ],
        ];
        for outputs in cases {
            let tree = json!({ "predictions": predictions_json(&outputs) }).to_string();
            let direct = serde_json::to_string(&PredictionsBody(&outputs)).unwrap();
            assert_eq!(direct, tree);
        }
    }

    fn scan(body: &[u8]) -> Option<Vec<Vec<f32>>> {
        scan_matrix(body, &Limits::default()).ok().flatten()
    }

    #[test]
    fn common_bodies_are_read_directly_and_the_rest_falls_back() {
        let rows = vec![vec![1.0f32, 2.5], vec![3.0, 4.0]];
        for body in [
            r#"{"inputs": [[1, 2.5], [3, 4]]}"#,
            r#"{"instances": [[1, 2.5], [3, 4]]}"#,
        ] {
            assert_eq!(scan(body.as_bytes()), Some(rows.clone()));
        }
        for body in [
            r#"{"inputs": [[1, 2.5], [3, 4]]}"#,
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]}}"#,
            r#"{"inputs": [[1, 2.5], [3, 4]], "params": {}}"#,
        ] {
            assert_eq!(
                rows_from_json(body.as_bytes(), "x", &Limits::default())
                    .ok()
                    .map(|n| n.0),
                Some(rows.clone())
            );
        }
        for body in [
            r#"{"inputs": [[1, null]]}"#,
            r#"{"inputs": {"x": [[1, 2]]}}"#,
            r#"{"inputs": [[1, 2]], "params": {}}"#,
            r#"{"dataframe_records": [{"a": 1}]}"#,
            "[1, 2]",
        ] {
            assert_eq!(scan(body.as_bytes()), None, "{body}");
        }
        // Nulls still become NaN through the general path.
        let (rows, _) = rows_from_json(br#"{"inputs": [[1, null]]}"#, "x", &Limits::default())
            .ok()
            .unwrap();
        assert!(rows[0][1].is_nan());
    }

    #[test]
    fn the_scanner_counts_against_the_limits_and_refuses_overflow() {
        let limits = Limits {
            max_rows: 2,
            max_values: 4,
            ..Limits::default()
        };
        let refused = |body: &str| scan_matrix(body.as_bytes(), &limits).err().unwrap();
        assert_eq!(
            refused(r#"{"inputs": [[1], [2], [3]]}"#).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            refused(r#"{"inputs": [[1, 2, 3], [4, 5]]}"#).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let overflow = refused(r#"{"instances": [[1], [-1e39]]}"#);
        assert_eq!(overflow.status, StatusCode::BAD_REQUEST);
        assert!(
            overflow.message.contains("instances[1][0]"),
            "{}",
            overflow.message
        );
    }

    #[test]
    fn a_column_signature_orders_named_columns_and_names_the_mismatch() {
        let signature = Signature::from_mlmodel(
            "signature:\n  inputs: '[{\"type\": \"double\", \"name\": \"a\", \"required\": true}, {\"type\": \"double\", \"name\": \"b\", \"required\": true}]'\n",
        )
        .unwrap()
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let parse = |body: &str| {
            invocation_rows(
                &headers,
                body.as_bytes(),
                "x",
                Some(&signature),
                &Limits::default(),
            )
        };
        let ordered = [[1.0f32, 2.0]];
        for body in [
            r#"{"dataframe_records": [{"b": 2, "a": 1}]}"#,
            r#"{"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, null]]}}"#,
        ] {
            let rows = parse(body).ok().unwrap();
            assert_eq!(rows[0][0], ordered[0][0], "{body}");
            assert!(rows[0][1] == 2.0 || rows[0][1].is_nan(), "{body}");
        }
        for (body, says) in [
            (r#"{"dataframe_records": [{"a": 1, "c": 2}]}"#, "unknown"),
            (
                r#"{"dataframe_split": {"columns": ["a"], "data": [[1]]}}"#,
                "missing",
            ),
            (r#"{"inputs": [[1, 2]]}"#, "name"),
        ] {
            let error = parse(body).err().unwrap();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(error.message.contains(says), "{body}: {}", error.message);
        }
    }

    #[test]
    fn the_hand_scanner_reads_what_serde_reads_and_nothing_else() {
        let numbers = [
            "0",
            "-0",
            "1",
            "-1",
            "0.1",
            "1e3",
            "1E-3",
            "-2.5e+10",
            "3.4028235e38",
            "0.30000000000000004",
            "123456789.123456789",
            "4.9e-324",
            "17.99",
        ];
        let mut state = 7u64;
        for _ in 0..200 {
            let mut body = String::from("{\"inputs\": [");
            for row in 0..3 {
                if row > 0 {
                    body.push_str(", ");
                }
                body.push('[');
                for column in 0..5 {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if column > 0 {
                        body.push_str(if state.is_multiple_of(2) { "," } else { " , " });
                    }
                    body.push_str(numbers[(state >> 33) as usize % numbers.len()]);
                }
                body.push(']');
            }
            body.push_str("]}");
            let expected: Vec<Vec<f32>> = serde_json::from_value(
                serde_json::from_str::<Value>(&body).unwrap()["inputs"].take(),
            )
            .unwrap();
            let scanned = scan(body.as_bytes()).unwrap();
            let bits = |rows: &Vec<Vec<f32>>| -> Vec<u32> {
                rows.iter().flatten().map(|v| v.to_bits()).collect()
            };
            assert_eq!(bits(&scanned), bits(&expected), "{body}");
        }
        for body in [
            r#"{"inputs": [[01]]}"#,
            r#"{"inputs": [[1.]]}"#,
            r#"{"inputs": [[.5]]}"#,
            r#"{"inputs": [[+1]]}"#,
            r#"{"inputs": [[NaN]]}"#,
            r#"{"inputs": [[1,]]}"#,
            r#"{"inputs": [[1]],}"#,
            r#"{"inputs": [[1]]} x"#,
            r#"{"inputs": [[1e]]}"#,
            r#"{"inputs": [["1"]]}"#,
            r#"{"inputs": [[null]]}"#,
            r#"{"inputs": {"x": [[1]]}}"#,
            r#"{"inputs": [[1]], "params": {}}"#,
        ] {
            assert_eq!(scan(body.as_bytes()), None, "{body}");
        }
        // Beyond f64's range: the full parser's error.
        assert_eq!(scan(br#"{"inputs": [[1e400]]}"#), None);
        assert_eq!(
            scan(b" { \"instances\" : [ [ 1 , 2 ] , [ ] ] } \n"),
            Some(vec![vec![1.0, 2.0], vec![]])
        );
    }
}
