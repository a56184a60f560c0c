//! The inference runtime: ONNX models run by ONNX Runtime through the `ort` crate, with the
//! library loaded at run time (`load-dynamic`), so building slipway never downloads binaries.
//!
//! Module map:
//! - [`runtime`]: finding and loading `libonnxruntime` once per process, with one clear error
//!   that names the fix when it is missing or too old.
//! - [`model`]: a loaded model, its inputs and outputs, and batch prediction with tabular,
//!   label + probabilities and ZipMap (sequence of maps) outputs, which can be split back by
//!   input rows.
//! - [`batcher`]: dynamic micro-batching: concurrent requests merged into one model run on a
//!   blocking thread (closed by size or by time), each caller answered with its own rows.
//! - [`cpu`]: the calling thread's CPU time, which a model run is charged (cost per
//!   inference): with one intra-op thread, ONNX Runtime computes on the caller's thread.
//! - [`signature`]: the input and output schema of an MLflow model folder (`MLmodel`), and
//!   checking and ordering a request's columns against it.
//!
//! This crate knows ONNX and nothing about HTTP, the registry or MLflow's wire formats (of
//! MLflow it reads only the `MLmodel` file's signature); the protocols and the model cache come
//! on top of it.

pub mod batcher;
pub mod cpu;
pub mod model;
pub mod runtime;
pub mod signature;

pub use batcher::{BatchConfig, BatchError, Batched, Batcher};
pub use model::{ModelError, OnnxModel, Output, OutputValue};
pub use runtime::{Runtime, RuntimeError};
pub use signature::{InputMismatch, Signature, SignatureError, load_signature};
