//! slipway-api's integration tests, as one test binary: each file directly under `tests/` would
//! be a binary of its own that links the whole dependency graph again, and linking dominated a
//! cold test build on two cores. A new area of tests is a module here.
//!
//! `cargo test -p slipway-api --test api access::` runs one module's tests.

mod common;

mod access;
mod cluster;
mod deployments;
mod http;
mod openapi;
