//! The inference runtime: ONNX models run by ONNX Runtime through the `ort` crate, with the
//! library loaded at run time (`load-dynamic`), so building slipway never downloads binaries.
//!
//! Module map:
//! - [`runtime`]: finding and loading `libonnxruntime` once per process, with one clear error
//!   that names the fix when it is missing or too old.
//! - [`model`]: a loaded model, its inputs and outputs, and batch prediction with tabular,
//!   label + probabilities and ZipMap (sequence of maps) outputs.
//!
//! This crate knows ONNX and nothing about HTTP, the registry or MLflow's wire formats; the
//! protocols and the model cache come on top of it.

pub mod model;
pub mod runtime;

pub use model::{OnnxModel, Output, OutputValue};
pub use runtime::{Runtime, RuntimeError};
