//! The serving benchmark's ceiling: the least work that answers MLflow's `POST /invocations`
//! with an `{"inputs": [[f32, ...], ...]}` body correctly for an ONNX model, so that
//! `bench/serving/run.sh` can show how far `slipway serve` is from what axum and ONNX Runtime
//! allow on the same machine. It has none of slipway's limits, timeouts, metrics or other input
//! formats: what slipway adds on top is exactly what the gap measures.
//!
//! ```sh
//! ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh) slipway-serving-ceiling MODEL.onnx PORT
//! ```
//!
//! It uses `ort` the way `crates/slipway-serving/src/model.rs` does, but depends on no slipway
//! crate, so a regression in slipway's code cannot lower its own ceiling.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynMapValueType, DynValue, TensorElementType, ValueType};
use serde::{Deserialize, Serialize, Serializer};

/// The allocator slipway uses, so that the gap measures work and not malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct Request {
    inputs: Vec<Vec<f32>>,
}

#[derive(Serialize)]
struct Answer {
    predictions: Predictions,
}

/// The model's outputs by name; a single output is answered bare, as MLflow does.
struct Predictions(Vec<(String, Column)>);

#[derive(Serialize)]
#[serde(untagged)]
enum Column {
    Int64(Tensor<i64>),
    /// float32 widened to f64, since MLflow (and slipway) print a float32's exact expansion.
    Float(Tensor<f64>),
    /// ZipMap's class -> probability map per row, keys as text as JSON has them.
    Maps(Vec<BTreeMap<String, f64>>),
}

struct Tensor<T> {
    shape: Vec<i64>,
    data: Vec<T>,
}

/// A flat tensor written as nested lists following its shape, rows first.
struct Nested<'a, T> {
    shape: &'a [i64],
    data: &'a [T],
}

impl Serialize for Predictions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [(_, only)] => only.serialize(serializer),
            many => serializer.collect_map(many.iter().map(|(name, column)| (name, column))),
        }
    }
}

impl<T: Serialize> Serialize for Tensor<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Nested {
            shape: &self.shape,
            data: &self.data,
        }
        .serialize(serializer)
    }
}

impl<T: Serialize> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            [] | [_] => serializer.collect_seq(self.data),
            [_, rest @ ..] => {
                let width = rest.iter().map(|d| (*d).max(0) as usize).product::<usize>();
                serializer.collect_seq(self.data.chunks(width.max(1)).map(|chunk| Nested {
                    shape: rest,
                    data: chunk,
                }))
            }
        }
    }
}

/// Sessions not in use: `Session::run` takes `&mut self`, so each concurrent run needs its own.
struct Pool {
    free: Mutex<Vec<Session>>,
    /// Wakes a blocking-thread run waiting for a session when one is put back.
    returned: Condvar,
}

impl Pool {
    fn try_take(&self) -> Option<Session> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn take(&self) -> Session {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(session) = free.pop() {
                return session;
            }
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn put(&self, session: Session) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(session);
        self.returned.notify_one();
    }
}

struct Model {
    pool: Pool,
    input: String,
    outputs: Vec<String>,
}

impl Model {
    /// One session per core with one intra-op thread each, as slipway does: for a model this
    /// small, parallel requests on separate sessions beat one session splitting a tiny batch.
    fn load(environment: &Environment, bytes: &[u8], sessions: usize) -> ort::Result<Model> {
        let mut free = Vec::with_capacity(sessions);
        for _ in 0..sessions.max(1) {
            free.push(
                Session::builder(environment)?
                    .with_intra_threads(1)?
                    .commit_from_memory(bytes)?,
            );
        }
        let input = free[0].inputs()[0].name().to_owned();
        let outputs = free[0]
            .outputs()
            .iter()
            .map(|outlet| outlet.name().to_owned())
            .collect();
        Ok(Model {
            pool: Pool {
                free: Mutex::new(free),
                returned: Condvar::new(),
            },
            input,
            outputs,
        })
    }

    /// The rows as one `[rows, width]` tensor; ONNX Runtime checks the width against the graph.
    fn tensor(rows: Vec<Vec<f32>>) -> Result<DynValue, String> {
        let width = rows.first().map_or(0, Vec::len);
        if width == 0 || rows.iter().any(|row| row.len() != width) {
            return Err("inputs must be a non-empty list of rows of equal length".to_owned());
        }
        let count = rows.len();
        let data: Vec<f32> = rows.into_iter().flatten().collect();
        ort::value::Tensor::from_array(([count, width], data))
            .map(|tensor| tensor.into_dyn())
            .map_err(|error| error.to_string())
    }

    /// Runs on `session` and puts it back, also when the run fails.
    fn run_on(&self, mut session: Session, input: DynValue) -> Result<Predictions, String> {
        let outcome = self.run(&mut session, input);
        self.pool.put(session);
        outcome
    }

    fn run(&self, session: &mut Session, input: DynValue) -> Result<Predictions, String> {
        let outputs = session
            .run(vec![(self.input.clone(), input)])
            .map_err(|error| error.to_string())?;
        let mut columns = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let column = column(&outputs[name.as_str()])
                .map_err(|error| format!("reading output '{name}': {error}"))?;
            columns.push((name.clone(), column));
        }
        Ok(Predictions(columns))
    }
}

fn column(value: &DynValue) -> Result<Column, String> {
    let failed = |error: ort::Error| error.to_string();
    match value.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Int64,
            ..
        } => {
            let (shape, data) = value.try_extract_tensor::<i64>().map_err(failed)?;
            Ok(Column::Int64(Tensor {
                shape: shape.iter().copied().collect(),
                data: data.to_vec(),
            }))
        }
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(failed)?;
            Ok(Column::Float(Tensor {
                shape: shape.iter().copied().collect(),
                data: data.iter().map(|v| f64::from(*v)).collect(),
            }))
        }
        ValueType::Sequence(inner) => {
            let ValueType::Map {
                key,
                value: TensorElementType::Float32,
            } = inner.as_ref()
            else {
                return Err(format!("type {:?} is not served", value.dtype()));
            };
            let maps = value
                .try_extract_sequence::<DynMapValueType>()
                .map_err(failed)?;
            let mut rows = Vec::with_capacity(maps.len());
            for map in &maps {
                let row: BTreeMap<String, f64> = match key {
                    TensorElementType::Int64 => map
                        .try_extract_key_values::<i64, f32>()
                        .map_err(failed)?
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), f64::from(v)))
                        .collect(),
                    TensorElementType::String => map
                        .try_extract_key_values::<String, f32>()
                        .map_err(failed)?
                        .into_iter()
                        .map(|(k, v)| (k, f64::from(v)))
                        .collect(),
                    other => return Err(format!("map keys of type {other:?} are not served")),
                };
                rows.push(row);
            }
            Ok(Column::Maps(rows))
        }
        other => Err(format!("type {other:?} is not served")),
    }
}

async fn invocations(State(model): State<Arc<Model>>, body: Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let input = match Model::tensor(request.inputs) {
        Ok(input) => input,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    // A free session runs the batch right here, as slipway does for small batches: the hand-off
    // to a blocking thread costs more than this model's microseconds. Unlike slipway there is no
    // size threshold; only a busy pool waits, on a blocking thread, so no async worker blocks.
    let outcome = match model.pool.try_take() {
        Some(session) => model.run_on(session, input),
        None => {
            let model = model.clone();
            tokio::task::spawn_blocking(move || {
                let session = model.pool.take();
                model.run_on(session, input)
            })
            .await
            .unwrap_or_else(|error| Err(error.to_string()))
        }
    };
    match outcome {
        Ok(predictions) => axum::Json(Answer { predictions }).into_response(),
        Err(message) => (StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model_path), Some(port)) = (args.next(), args.next()) else {
        return Err("usage: slipway-serving-ceiling MODEL.onnx PORT".into());
    };
    let port: u16 = port.parse()?;
    let library = std::env::var("ORT_DYLIB_PATH")
        .map_err(|_| "set ORT_DYLIB_PATH to libonnxruntime (scripts/fetch-onnxruntime.sh)")?;
    let environment = ort::init_from(&library)?.with_name("ceiling").build()?;
    let sessions = std::thread::available_parallelism().map_or(1, usize::from);
    let model = Model::load(&environment, &std::fs::read(&model_path)?, sessions)?;
    let app = Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(|| async { "\n" }))
        .with_state(Arc::new(model));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
