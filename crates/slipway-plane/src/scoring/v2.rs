//! The Open Inference Protocol V2 (`/v2/...`) for one model: metadata, readiness and
//! inference, errors as `{"error": ...}`.

use super::*;

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

pub(crate) fn known_version(
    state: &ScoringState,
    name: &str,
    version: &str,
) -> Result<(), V2Error> {
    known(state, name)?;
    match &state.version {
        Some(served) if &**served != version => Err(V2Error(
            StatusCode::NOT_FOUND,
            format!("Model {name} version {version} does not exist."),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn known(state: &ScoringState, name: &str) -> Result<(), V2Error> {
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

pub(crate) async fn v2_ready() -> axum::Json<Value> {
    axum::Json(json!({ "ready": true }))
}

pub(crate) fn metadata(state: &ScoringState) -> Value {
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

pub(crate) async fn v2_metadata(
    State(state): State<ScoringState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::Json<Value>, V2Error> {
    known(&state, &name)?;
    Ok(axum::Json(metadata(&state)))
}

pub(crate) async fn v2_metadata_versioned(
    State(state): State<ScoringState>,
    axum::extract::Path((name, version)): axum::extract::Path<(String, String)>,
) -> Result<axum::Json<Value>, V2Error> {
    known_version(&state, &name, &version)?;
    Ok(axum::Json(metadata(&state)))
}

pub(crate) async fn v2_model_ready(
    State(state): State<ScoringState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::Json<Value>, V2Error> {
    known(&state, &name)?;
    Ok(axum::Json(json!({ "name": name, "ready": true })))
}

pub(crate) async fn v2_model_ready_versioned(
    State(state): State<ScoringState>,
    axum::extract::Path((name, version)): axum::extract::Path<(String, String)>,
) -> Result<axum::Json<Value>, V2Error> {
    known_version(&state, &name, &version)?;
    Ok(axum::Json(json!({ "name": name, "ready": true })))
}

/// A ZipMap output as a dense `[rows, classes]` tensor, classes in key order (numeric keys
/// numerically).
pub(crate) fn maps_as_tensor(
    rows: &[std::collections::BTreeMap<String, f32>],
) -> (Vec<i64>, Vec<f32>) {
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

pub(crate) fn v2_output(name: &str, value: &OutputValue) -> Value {
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

pub(crate) async fn v2_infer(
    State(state): State<ScoringState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V2Error> {
    infer(state, name, body).await
}

pub(crate) async fn v2_infer_versioned(
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

pub(crate) async fn infer(
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
