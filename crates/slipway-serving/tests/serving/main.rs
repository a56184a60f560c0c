//! slipway-serving's integration tests on real ONNX Runtime and the fixture models, as one test
//! binary: each file directly under `tests/` would be a binary of its own that links the whole
//! dependency graph again, and linking dominated a cold test build on two cores. A new area of
//! tests is a module here.

mod batcher;
mod fixtures;
mod signature;
