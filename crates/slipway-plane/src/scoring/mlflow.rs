//! MLflow's scoring protocol: `/invocations` in every format `mlflow models serve` takes, its
//! answers (`{"predictions": ...}`, float32 written wide as MLflow does) and its errors.

use super::*;

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

pub(crate) const FORMATS: &str = "{'dataframe_records', 'dataframe_split', 'instances', 'inputs'}";

pub(crate) enum Format {
    Json,
    Csv,
}

pub(crate) fn content_type(headers: &HeaderMap) -> Result<Format, ScoringError> {
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

use super::body::Named;

/// An MLflow JSON body: the hand scanner for the hottest shape, the budgeted visitors for the
/// rest (and for the scanner's refusals, which they word).
pub(crate) fn rows_from_json(
    body: &[u8],
    input_name: &str,
    limits: &Limits,
) -> Result<Named, ScoringError> {
    if let Some(rows) = scan_matrix(body, limits)? {
        return Ok((rows, None));
    }
    body::mlflow_json(body, input_name, limits.budget())
}

/// A flat tensor as nested lists following its shape (rows first).
pub(crate) fn nested<T: Copy + Into<Value>>(shape: &[i64], data: &[T]) -> Value {
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

pub(crate) fn output_json(value: &OutputValue) -> Value {
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
pub(crate) struct Wide(f32);

impl serde::Serialize for Wide {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(f64::from(self.0))
    }
}

/// A flat tensor as nested lists following its shape, serialized in place.
pub(crate) struct NestedOut<'a, T> {
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
pub(crate) enum Wideable {
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

pub(crate) struct ValueOut<'a>(&'a OutputValue);

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

pub(crate) struct MapOut<'a>(&'a std::collections::BTreeMap<String, f32>);

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

pub(crate) struct PredictionsMap<'a>(&'a [slipway_serving::Output]);

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

pub(crate) async fn invocations(
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
