//! The engine's integration tests, one binary (ARCHITECTURE.md: linking dominates on 2 cores).

mod cases;
mod decisions;
mod generator;
mod merge;
mod performance;
mod sketch;
mod speed;
