//! The scoring body parsers as the fuzzing harness (`fuzz/`) drives them: each takes any bytes
//! and returns how many rows it read, or the status and message it refused them with. Not an API.

pub use axum::http::StatusCode;

use super::{Limits, body, rows_from_json};

/// Small limits, so the harness also walks the limit checks.
fn limits() -> Limits {
    Limits {
        max_rows: 64,
        max_values: 1024,
        ..Limits::default()
    }
}

/// An MLflow JSON body (`inputs`, `instances`, `dataframe_split`, `dataframe_records`), through
/// the hand scanner and the budgeted visitors as `/invocations` reads it.
pub fn mlflow_json(bytes: &[u8]) -> Result<usize, (StatusCode, String)> {
    let limits = limits();
    rows_from_json(bytes, "input", &limits)
        .map(|(rows, _)| rows.len())
        .map_err(|error| (error.status, error.message))
}

/// A CSV body with a header row.
pub fn csv(bytes: &[u8]) -> Result<usize, (StatusCode, String)> {
    body::csv(bytes, limits().budget())
        .map(|(rows, _)| rows.len())
        .map_err(|error| (error.status, error.message))
}

/// A V2 inference request.
pub fn v2(bytes: &[u8]) -> Result<usize, (StatusCode, String)> {
    body::v2(bytes, limits().budget())
        .map(|(_, inputs)| inputs.len())
        .map_err(|error| (error.status, error.message))
}
