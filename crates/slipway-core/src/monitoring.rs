//! Monitoring of deployed models: a version's stored reference and the windows of live traffic
//! compared with it. The profiles and reports themselves are the monitoring engine's
//! (`slipway-monitor`) and travel here as JSON: the domain stores and guards them, the engine
//! reads them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A model version's monitoring reference: what its inputs and predictions looked like on data
/// it was validated on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReference {
    pub model_name: String,
    pub version: i64,
    pub created_ms: i64,
    pub created_by: String,
    /// Rows the reference was built from.
    pub rows: u64,
    /// The label column of the reference data, when performance was measured on it.
    pub label_column: Option<String>,
    /// The engine's `Schema`: features in tensor order, the prediction.
    pub schema: serde_json::Value,
    /// The engine's `Summary` of the reference rows.
    pub summary: serde_json::Value,
    /// The model's performance on the reference rows, when they had labels.
    pub performance: Option<serde_json::Value>,
}

/// One closed window of a deployment's live traffic, compared with its version's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorWindow {
    /// Assigned by the store; 0 before.
    #[serde(default)]
    pub id: i64,
    pub deployment: String,
    pub model_name: String,
    pub version: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub rows: u64,
    /// The engine's `LiveReport`.
    pub report: serde_json::Value,
}

/// How a deployment's live traffic is cut into windows (tumbling, by time and optionally by
/// rows: a window closes at its time's end or at `window_rows` rows, whichever comes first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorSettings {
    pub window_ms: u64,
    /// 0: by time only.
    pub window_rows: u64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            window_ms: 5 * 60_000,
            window_rows: 0,
        }
    }
}

/// Shortest window: a replica sends its summary every two seconds, and a window must outlast
/// a few of them to be more than one replica's chunk.
pub const MIN_WINDOW_MS: u64 = 5_000;
/// Longest window: a week, beyond which a window is a trend, not a check.
pub const MAX_WINDOW_MS: u64 = 7 * 24 * 3_600_000;
/// Most rows a window waits for: its profiles are sketches beyond 10,000 values, so more rows
/// change little but the time a drift takes to show.
pub const MAX_WINDOW_ROWS: u64 = 100_000_000;

impl MonitorSettings {
    pub fn validate(&self) -> Result<()> {
        if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&self.window_ms) {
            return Err(Error::invalid(format!(
                "the monitoring window must be between {} and {}, got {}",
                crate::deployment::human_ms(MIN_WINDOW_MS),
                crate::deployment::human_ms(MAX_WINDOW_MS),
                crate::deployment::human_ms(self.window_ms)
            )));
        }
        if self.window_rows > MAX_WINDOW_ROWS {
            return Err(Error::invalid(format!(
                "a monitoring window closes at {MAX_WINDOW_ROWS} rows at most, got {}",
                self.window_rows
            )));
        }
        Ok(())
    }
}
