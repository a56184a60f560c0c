//! MLflow's scoring protocol for one model, as `mlflow models serve` speaks it: `/invocations`
//! with `dataframe_split`, `dataframe_records`, `instances`, `inputs` or CSV, and `/ping`,
//! `/health`, `/version`. Answers `{"predictions": ...}`, errors as MLflow's JSON body.
//!
//! Deviations, where MLflow's behaviour is a bug: a request without a content type gets 415
//! (MLflow: 500); a non-UTF-8 charset is 415 as in MLflow.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::{Value, json};
use slipway_serving::{OnnxModel, OutputValue};

/// What the scoring routes serve.
#[derive(Clone)]
pub struct ScoringState {
    pub model: Arc<OnnxModel>,
}

/// `/invocations`, `/ping`, `/health` and `/version` for one model.
pub fn scoring_router(model: Arc<OnnxModel>) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .route("/invocations", post(invocations))
        .with_state(ScoringState { model })
}

async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "\n").into_response()
}

async fn version() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::MLFLOW_COMPATIBLE_VERSION,
    )
        .into_response()
}

/// An error as MLflow's scoring server writes it.
struct ScoringError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ScoringError {
    fn bad_request(message: impl Into<String>) -> Self {
        ScoringError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
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

/// A record whose keys keep their order (a tensor signature takes the columns in the order the
/// client wrote them).
struct OrderedRecord(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = OrderedRecord;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a record object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRecord, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(OrderedRecord(entries))
            }
        }
        deserializer.deserialize_map(RecordVisitor)
    }
}

#[derive(Deserialize)]
struct Records {
    dataframe_records: Vec<OrderedRecord>,
}

fn number(value: &Value, at: &str) -> Result<f32, ScoringError> {
    match value {
        Value::Number(number) => number
            .as_f64()
            .map(|v| v as f32)
            .ok_or_else(|| ScoringError::invalid(format!("{at}: {number} is not a number"))),
        Value::Null => Ok(f32::NAN),
        other => Err(ScoringError::invalid(format!(
            "{at}: expected a number, got {other}"
        ))),
    }
}

/// A list of rows (`[[...], ...]`) as f32 rows.
fn matrix(value: &Value, field: &str) -> Result<Vec<Vec<f32>>, ScoringError> {
    let rows = value
        .as_array()
        .ok_or_else(|| ScoringError::invalid(format!("'{field}' must be a list of rows")))?;
    rows.iter()
        .enumerate()
        .map(|(index, row)| match row {
            Value::Array(values) => values
                .iter()
                .enumerate()
                .map(|(column, v)| number(v, &format!("{field}[{index}][{column}]")))
                .collect(),
            _ => Err(ScoringError::invalid(format!(
                "Shape of input does not match the model's: '{field}[{index}]' is not a row (a list of numbers); \
                 send a batch of rows, e.g. [[1.0, 2.0, ...]]"
            ))),
        })
        .collect()
}

fn rows_from_json(body: &[u8], input_name: &str) -> Result<Vec<Vec<f32>>, ScoringError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ScoringError::bad_request(format!(
            "Invalid input. Ensure that input is a valid JSON formatted string. Error: '{e}'"
        ))
    })?;
    let Value::Object(object) = &value else {
        return Err(ScoringError::bad_request(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {FORMATS}. Received a list."
        )));
    };
    let present: Vec<&str> = [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    ]
    .into_iter()
    .filter(|key| object.contains_key(*key))
    .collect();
    let [format] = present.as_slice() else {
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        return Err(ScoringError::bad_request(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {FORMATS}. Received dictionary with input fields: {keys:?}."
        )));
    };
    match *format {
        "dataframe_split" => {
            let split = &object["dataframe_split"];
            matrix(
                split.get("data").ok_or_else(|| {
                    ScoringError::invalid("'dataframe_split' needs a 'data' list of rows")
                })?,
                "dataframe_split.data",
            )
        }
        "dataframe_records" => {
            let records: Records = serde_json::from_slice(body).map_err(|e| {
                ScoringError::invalid(format!(
                    "'dataframe_records' must be a list of objects: {e}"
                ))
            })?;
            records
                .dataframe_records
                .iter()
                .enumerate()
                .map(|(index, record)| {
                    record
                        .0
                        .iter()
                        .map(|(key, v)| number(v, &format!("dataframe_records[{index}].{key}")))
                        .collect()
                })
                .collect()
        }
        "instances" => matrix(&object["instances"], "instances"),
        _ => match &object["inputs"] {
            Value::Object(named) => match named.get(input_name) {
                Some(tensor) if named.len() == 1 => matrix(tensor, &format!("inputs.{input_name}")),
                _ => Err(ScoringError::invalid(format!(
                    "the model takes one input, '{input_name}'; send {{\"inputs\": [[...], ...]}} or {{\"inputs\": {{\"{input_name}\": [[...], ...]}}}}"
                ))),
            },
            tensor => matrix(tensor, "inputs"),
        },
    }
}

fn rows_from_csv(body: &[u8]) -> Result<Vec<Vec<f32>>, ScoringError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    reader
        .records()
        .enumerate()
        .map(|(index, record)| {
            let record =
                record.map_err(|e| ScoringError::bad_request(format!("Invalid CSV input: {e}")))?;
            record
                .iter()
                .enumerate()
                .map(|(column, field)| {
                    field.trim().parse::<f32>().map_err(|_| {
                        ScoringError::invalid(format!(
                            "CSV row {index}, column {column}: '{field}' is not a number"
                        ))
                    })
                })
                .collect()
        })
        .collect()
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

async fn invocations(
    State(state): State<ScoringState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScoringError> {
    let format = content_type(&headers)?;
    let input_name = state
        .model
        .inputs()
        .first()
        .map(|input| input.name.clone())
        .unwrap_or_default();
    let rows = match format {
        Format::Json => rows_from_json(&body, &input_name)?,
        Format::Csv => rows_from_csv(&body)?,
    };
    let model = state.model.clone();
    let outputs = tokio::task::spawn_blocking(move || model.predict_rows(&rows))
        .await
        .map_err(|e| ScoringError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: format!("inference stopped: {e}"),
        })?
        .map_err(|e| match e {
            slipway_serving::model::ModelError::BadInput(message) => ScoringError::invalid(message),
            other => ScoringError::bad_request(format!(
                "Encountered an unexpected error while evaluating the model: {other}"
            )),
        })?;
    let predictions = match outputs.as_slice() {
        [only] => output_json(&only.value),
        many => Value::Object(
            many.iter()
                .map(|output| (output.name.clone(), output_json(&output.value)))
                .collect(),
        ),
    };
    Ok(axum::Json(json!({ "predictions": predictions })).into_response())
}
