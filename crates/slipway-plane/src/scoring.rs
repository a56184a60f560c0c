//! The inference protocols for one model: MLflow's scoring protocol, as `mlflow models serve`
//! speaks it (`/invocations` with `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//! or CSV; `/ping`, `/health`, `/version`; answers `{"predictions": ...}`, errors as MLflow's
//! JSON body), and the Open Inference Protocol V2 (`/v2/...`, errors as `{"error": ...}`).
//!
//! One module per protocol: `mlflow.rs` (formats, answers, errors), `v2.rs`; the body readers
//! they share: `scanner.rs` (the hottest shape, by hand) and `body.rs` (every shape through
//! serde visitors), both within `--max-rows` / `--max-values`, never as a JSON tree. This file
//! holds what both protocols share: the router, limits, load shedding and running a batch.
//!
//! `explain.rs` answers `POST /explain`: per-feature attributions of the model's answers.
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
pub mod explain;
#[doc(hidden)]
pub mod fuzzing;
mod mlflow;
#[cfg(test)]
mod properties;
mod scanner;
mod v2;

pub(crate) use body::V2Request;
pub use body::{DEFAULT_MAX_ROWS, DEFAULT_MAX_VALUES};
pub(crate) use mlflow::*;
use scanner::scan_matrix;
pub(crate) use v2::*;
pub use v2::{v2_live, v2_server};

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
    /// How long an admitted request of a managed deployment may wait for the model before it
    /// is shed with 503 and `Retry-After`. The in-flight limit counts requests, but what a
    /// client feels is time: under overload the queue grows until every answer is late, so a
    /// request that has waited this long is turned away and the ones admitted keep their
    /// latency.
    pub max_queue_wait: std::time::Duration,
}

/// The default [`Limits::max_queue_wait`], in milliseconds.
pub const DEFAULT_MAX_QUEUE_WAIT_MS: u64 = 50;

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
            max_queue_wait: std::time::Duration::from_millis(DEFAULT_MAX_QUEUE_WAIT_MS),
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
        // Under the same in-flight limit and timeout, but no inference request: not counted
        // in the serving metrics.
        .route("/explain", post(explain::serve).layer(guarded.clone()))
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
