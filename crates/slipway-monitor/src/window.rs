//! Time windows of profiles. The engine reads no clock: callers pass the time of each row (or
//! batch) in milliseconds since the epoch, and windows are aligned to multiples of their width,
//! so replicas that never talk to each other cut the same windows and the server can merge
//! their summaries.

use serde::{Deserialize, Serialize};

use crate::column::RawValue;
use crate::error::MonitorError;
use crate::profile::{ColumnProfile, DatasetProfile, ProfileConfig, ProfileKind};

/// The start of the tumbling window of `width_ms` that holds `time_ms`.
pub fn window_start(time_ms: i64, width_ms: i64) -> i64 {
    time_ms.div_euclid(width_ms.max(1)) * width_ms.max(1)
}

/// The profiles of one window, `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowProfile {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Column names in the order `push_row` takes values.
    pub schema: Vec<String>,
    pub profile: DatasetProfile,
}

impl WindowProfile {
    /// An empty window for the given columns and their profile kinds.
    pub fn new(
        start_ms: i64,
        end_ms: i64,
        columns: &[(String, ProfileKind)],
        config: ProfileConfig,
    ) -> Self {
        let mut profile = DatasetProfile::default();
        for (name, kind) in columns {
            profile
                .columns
                .insert(name.clone(), ColumnProfile::new(*kind, config));
        }
        WindowProfile {
            start_ms,
            end_ms,
            schema: columns.iter().map(|(n, _)| n.clone()).collect(),
            profile,
        }
    }

    /// Adds one row, its cells in schema order. A row shorter than the schema leaves the
    /// missing columns missing.
    pub fn push_row(&mut self, row: &[RawValue<'_>]) {
        for (i, name) in self.schema.iter().enumerate() {
            if let Some(column) = self.profile.columns.get_mut(name) {
                column.push(row.get(i).copied().unwrap_or(RawValue::Null));
            }
        }
    }

    /// Merges another replica's summary of the same or an adjacent window: the result spans
    /// both.
    pub fn merge(&mut self, other: &WindowProfile) -> Result<(), MonitorError> {
        self.profile.merge(&other.profile)?;
        self.start_ms = self.start_ms.min(other.start_ms);
        self.end_ms = self.end_ms.max(other.end_ms);
        for name in &other.schema {
            if !self.schema.contains(name) {
                self.schema.push(name.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_their_width() {
        assert_eq!(window_start(61_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
    }

    #[test]
    fn replicas_windows_merge() {
        let columns = [
            ("x".to_owned(), ProfileKind::Numeric),
            ("c".to_owned(), ProfileKind::Categorical),
        ];
        let config = ProfileConfig::default();
        let mut a = WindowProfile::new(0, 60_000, &columns, config);
        let mut b = WindowProfile::new(60_000, 120_000, &columns, config);
        a.push_row(&[RawValue::Float(1.0), RawValue::Str("u")]);
        b.push_row(&[RawValue::Float(2.0)]);
        a.merge(&b).expect("merge");
        assert_eq!((a.start_ms, a.end_ms), (0, 120_000));
        assert_eq!(a.profile.columns["x"].count(), 2);
        assert_eq!(a.profile.columns["c"].missing(), 1);
    }
}
