//! The `slipway` binary as a user runs it, as one test binary: each file directly under `tests/`
//! would be a binary of its own that links the whole dependency graph again, and linking
//! dominated a cold test build on two cores. A new area of tests is a module here.

mod cli;
mod server;
