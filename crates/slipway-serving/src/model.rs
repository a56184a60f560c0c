//! A loaded ONNX model and batch prediction.
//!
//! `Session::run` needs exclusive access, so a model holds a small pool of sessions, each with
//! one intra-op thread: for the small tabular models served here, parallel requests on separate
//! sessions beat one session splitting a tiny batch across threads.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use ort::session::Session;
use ort::value::{DynMapValueType, DynValue, TensorElementType, ValueType};

use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("could not load the ONNX model: {0}")]
    Load(String),
    #[error("{0}")]
    BadInput(String),
    #[error("inference failed: {0}")]
    Run(String),
    #[error("the model's output '{name}' has a type slipway cannot return yet: {ty}")]
    UnsupportedOutput { name: String, ty: String },
}

/// One named input or output as the graph declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    /// `float32`, `int64`, `seq(map(int64,float32))`, ...
    pub ty: String,
    /// -1 for a dynamic dimension; empty for non-tensors.
    pub shape: Vec<i64>,
}

/// One output of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: OutputValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputValue {
    F32 {
        shape: Vec<i64>,
        data: Vec<f32>,
    },
    F64 {
        shape: Vec<i64>,
        data: Vec<f64>,
    },
    I64 {
        shape: Vec<i64>,
        data: Vec<i64>,
    },
    /// One map per row, e.g. ZipMap's class -> probability (keys as text, as JSON has them).
    Maps(Vec<BTreeMap<String, f32>>),
}

impl Output {
    /// The part of this output that belongs to the input rows `rows` (see
    /// [`OutputValue::slice_rows`]).
    pub fn slice_rows(&self, rows: Range<usize>) -> Option<Output> {
        Some(Output {
            name: self.name.clone(),
            value: self.value.slice_rows(rows)?,
        })
    }
}

impl OutputValue {
    /// How many input rows this output answers: a tensor's first dimension, or the number of
    /// maps. `None` for a scalar tensor, which has no row to split by.
    pub fn row_count(&self) -> Option<usize> {
        match self {
            OutputValue::F32 { shape, .. }
            | OutputValue::F64 { shape, .. }
            | OutputValue::I64 { shape, .. } => {
                shape.first().and_then(|rows| usize::try_from(*rows).ok())
            }
            OutputValue::Maps(maps) => Some(maps.len()),
        }
    }

    /// The part of this output that belongs to the input rows `rows`, so one model run over
    /// several requests' rows can be answered per request: tensors keep their trailing
    /// dimensions and get `rows.len()` as their first, maps are taken one per row. `None` when
    /// the output has no row dimension, the range lies outside it, or a tensor's data does not
    /// match its shape.
    pub fn slice_rows(&self, rows: Range<usize>) -> Option<OutputValue> {
        fn tensor<T: Clone>(
            shape: &[i64],
            data: &[T],
            rows: &Range<usize>,
        ) -> Option<(Vec<i64>, Vec<T>)> {
            let (&total, trailing) = shape.split_first()?;
            let total = usize::try_from(total).ok()?;
            let row_size = trailing.iter().try_fold(1usize, |size, dim| {
                size.checked_mul(usize::try_from(*dim).ok()?)
            })?;
            if rows.start > rows.end
                || rows.end > total
                || data.len() != total.checked_mul(row_size)?
            {
                return None;
            }
            let mut sliced_shape = shape.to_vec();
            sliced_shape[0] = i64::try_from(rows.len()).ok()?;
            Some((
                sliced_shape,
                data[rows.start * row_size..rows.end * row_size].to_vec(),
            ))
        }
        match self {
            OutputValue::F32 { shape, data } => {
                tensor(shape, data, &rows).map(|(shape, data)| OutputValue::F32 { shape, data })
            }
            OutputValue::F64 { shape, data } => {
                tensor(shape, data, &rows).map(|(shape, data)| OutputValue::F64 { shape, data })
            }
            OutputValue::I64 { shape, data } => {
                tensor(shape, data, &rows).map(|(shape, data)| OutputValue::I64 { shape, data })
            }
            OutputValue::Maps(maps) => maps.get(rows).map(|maps| OutputValue::Maps(maps.to_vec())),
        }
    }
}

pub struct OnnxModel {
    /// Sessions not in use; a run takes one and puts it back (also when it fails).
    free: Mutex<Vec<Session>>,
    /// Signalled when a session is put back.
    returned: Condvar,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

/// A session taken from the pool, put back on drop.
struct Lease<'m> {
    model: &'m OnnxModel,
    session: Option<Session>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.model
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session);
            self.model.returned.notify_one();
        }
    }
}

/// Whether slipway can return an output of this type.
fn supported(spec: &IoSpec) -> bool {
    matches!(
        spec.ty.as_str(),
        "float32" | "float64" | "int64" | "seq(map(int64,float32))" | "seq(map(string,float32))"
    )
}

fn element_name(ty: &TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float32".to_owned(),
        TensorElementType::Float64 => "float64".to_owned(),
        TensorElementType::Int64 => "int64".to_owned(),
        TensorElementType::Int32 => "int32".to_owned(),
        TensorElementType::String => "string".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn spec(name: &str, ty: &ValueType) -> IoSpec {
    let (ty, shape) = match ty {
        ValueType::Tensor { ty, shape, .. } => (element_name(ty), shape.iter().copied().collect()),
        ValueType::Sequence(inner) => (format!("seq({})", spec("", inner).ty), Vec::new()),
        ValueType::Map { key, value } => (
            format!("map({},{})", element_name(key), element_name(value)),
            Vec::new(),
        ),
        ValueType::Optional(inner) => (format!("optional({})", spec("", inner).ty), Vec::new()),
    };
    IoSpec {
        name: name.to_owned(),
        ty,
        shape,
    }
}

impl OnnxModel {
    /// Loads a model file with `pool_size` sessions (at least one).
    pub fn load(runtime: &Runtime, path: &Path, pool_size: usize) -> Result<OnnxModel, ModelError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ModelError::Load(format!("reading {}: {e}", path.display())))?;
        Self::from_bytes(runtime, &bytes, pool_size)
    }

    pub fn from_bytes(
        runtime: &Runtime,
        bytes: &[u8],
        pool_size: usize,
    ) -> Result<OnnxModel, ModelError> {
        let mut sessions = Vec::new();
        for _ in 0..pool_size.max(1) {
            let session = Session::builder(runtime.environment())
                .map_err(|e| ModelError::Load(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| ModelError::Load(e.to_string()))?
                .commit_from_memory(bytes)
                .map_err(|e| ModelError::Load(e.to_string()))?;
            sessions.push(session);
        }
        let (inputs, outputs): (Vec<IoSpec>, Vec<IoSpec>) = {
            let session = &sessions[0];
            (
                session
                    .inputs()
                    .iter()
                    .map(|outlet| spec(outlet.name(), outlet.dtype()))
                    .collect(),
                session
                    .outputs()
                    .iter()
                    .map(|outlet| spec(outlet.name(), outlet.dtype()))
                    .collect(),
            )
        };
        // Refuse at load what could only fail on every request later.
        if let Some(output) = outputs.iter().find(|output| !supported(output)) {
            return Err(ModelError::UnsupportedOutput {
                name: output.name.clone(),
                ty: output.ty.clone(),
            });
        }
        Ok(OnnxModel {
            free: Mutex::new(sessions),
            returned: Condvar::new(),
            inputs,
            outputs,
        })
    }

    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    /// Runs a batch of float32 rows through the model's single float32 matrix input, waiting
    /// for a free session.
    pub fn predict_rows(&self, rows: &[Vec<f32>]) -> Result<Vec<Output>, ModelError> {
        let inputs = self.prepare(rows)?;
        let lease = self
            .lease(true)
            .ok_or_else(|| ModelError::Run("no session".to_owned()))?;
        self.run(lease, inputs)
    }

    /// Like [`OnnxModel::predict_rows`], but only if a session is free right now: `None`
    /// otherwise. Lets a caller run a small batch in place instead of handing it to a thread.
    pub fn predict_rows_if_free(
        &self,
        rows: &[Vec<f32>],
    ) -> Option<Result<Vec<Output>, ModelError>> {
        // The session first: when all are busy the caller goes elsewhere, and the input tensor
        // would only be built twice.
        let lease = self.lease(false)?;
        Some(
            self.prepare(rows)
                .and_then(|inputs| self.run(lease, inputs)),
        )
    }

    /// Checks that `rows` fit the model's single float32 matrix input, as
    /// [`OnnxModel::predict_rows`] would, without running anything; returns the row width.
    /// Lets a batcher refuse one malformed request before it is merged with others.
    pub fn check_rows(&self, rows: &[Vec<f32>]) -> Result<usize, ModelError> {
        let [input] = self.inputs.as_slice() else {
            return Err(ModelError::BadInput(format!(
                "the model has {} inputs; row prediction needs exactly one",
                self.inputs.len()
            )));
        };
        if input.ty != "float32" || input.shape.len() != 2 {
            return Err(ModelError::BadInput(format!(
                "the model's input '{}' is {} {:?}, not a float32 matrix",
                input.name, input.ty, input.shape
            )));
        }
        let width = rows.first().map_or(0, Vec::len);
        if rows.is_empty() {
            return Err(ModelError::BadInput("no rows to predict".to_owned()));
        }
        if let Some(expected) = input.shape.get(1).copied().filter(|d| *d >= 0)
            && width as i64 != expected
        {
            return Err(ModelError::BadInput(format!(
                "input '{}' takes {expected} features per row, got {width}",
                input.name
            )));
        }
        if let Some((index, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != width) {
            return Err(ModelError::BadInput(format!(
                "row {index} has {} values, the first row {width}",
                row.len()
            )));
        }
        Ok(width)
    }

    fn prepare(&self, rows: &[Vec<f32>]) -> Result<Vec<(String, DynValue)>, ModelError> {
        let width = self.check_rows(rows)?;
        let input = &self.inputs[0];
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        // The shape matches the data by construction: a failure here is the runtime's (it could
        // not allocate), not the client's.
        let tensor = ort::value::Tensor::from_array(([rows.len(), width], data))
            .map_err(|e| ModelError::Run(e.to_string()))?;
        Ok(vec![(input.name.clone(), tensor.into_dyn())])
    }

    /// A free session; with `wait`, the first to come free (callers are bounded by the
    /// server's in-flight limit), without, `None` when all are busy.
    fn lease(&self, wait: bool) -> Option<Lease<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(session) = free.pop() {
                return Some(Lease {
                    model: self,
                    session: Some(session),
                });
            }
            if !wait {
                return None;
            }
            free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn run(
        &self,
        mut lease: Lease<'_>,
        inputs: Vec<(String, DynValue)>,
    ) -> Result<Vec<Output>, ModelError> {
        let session = lease
            .session
            .as_mut()
            .ok_or_else(|| ModelError::Run("no session".to_owned()))?;
        let outputs = session
            .run(inputs)
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let value = outputs.get(spec.name.as_str()).ok_or_else(|| {
                ModelError::Run(format!("the run returned no output '{}'", spec.name))
            })?;
            result.push(Output {
                name: spec.name.clone(),
                value: extract(&spec.name, value)?,
            });
        }
        Ok(result)
    }
}

fn extract(name: &str, value: &DynValue) -> Result<OutputValue, ModelError> {
    let unsupported = || ModelError::UnsupportedOutput {
        name: name.to_owned(),
        ty: format!("{:?}", value.dtype()),
    };
    let run_err = |e: ort::Error| ModelError::Run(format!("reading output '{name}': {e}"));
    match value.dtype() {
        ValueType::Tensor { ty, .. } => match ty {
            TensorElementType::Float32 => {
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
                Ok(OutputValue::F32 {
                    shape: shape.iter().copied().collect(),
                    data: data.to_vec(),
                })
            }
            TensorElementType::Float64 => {
                let (shape, data) = value.try_extract_tensor::<f64>().map_err(run_err)?;
                Ok(OutputValue::F64 {
                    shape: shape.iter().copied().collect(),
                    data: data.to_vec(),
                })
            }
            TensorElementType::Int64 => {
                let (shape, data) = value.try_extract_tensor::<i64>().map_err(run_err)?;
                Ok(OutputValue::I64 {
                    shape: shape.iter().copied().collect(),
                    data: data.to_vec(),
                })
            }
            _ => Err(unsupported()),
        },
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, value: v } if *v == TensorElementType::Float32 => {
                let maps = value
                    .try_extract_sequence::<DynMapValueType>()
                    .map_err(run_err)?;
                let mut rows = Vec::with_capacity(maps.len());
                for map in &maps {
                    let entries: BTreeMap<String, f32> = match key {
                        TensorElementType::Int64 => map
                            .try_extract_key_values::<i64, f32>()
                            .map_err(run_err)?
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                        TensorElementType::String => map
                            .try_extract_key_values::<String, f32>()
                            .map_err(run_err)?
                            .into_iter()
                            .collect(),
                        _ => return Err(unsupported()),
                    };
                    rows.push(entries);
                }
                Ok(OutputValue::Maps(rows))
            }
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}
