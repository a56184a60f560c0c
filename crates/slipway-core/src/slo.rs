//! Service level objectives of a deployment: availability (requests answered without a 5xx)
//! and latency (requests answered within a threshold), each a share of requests over a rolling
//! window, with the error budget that leaves and how fast it burns (the Google SRE workbook's
//! multi-window burn rates).

use serde::{Deserialize, Serialize};

use crate::deployment::ServingStats;
use crate::deployment::analysis::LATENCY_BOUNDS_US;
use crate::{Error, Result};

/// The longest window an SLO may have: the store keeps serving minutes a little longer.
pub const MAX_WINDOW_DAYS: u32 = 90;

/// What one deployment promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// Share of requests answered without a 5xx, e.g. 0.999.
    #[serde(default)]
    pub availability: Option<f64>,
    /// Share of requests answered within `threshold_ms`.
    #[serde(default)]
    pub latency: Option<LatencyObjective>,
    /// The rolling window the objectives hold over, in days (default 30).
    #[serde(default = "default_window_days")]
    pub window_days: u32,
}

fn default_window_days() -> u32 {
    30
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyObjective {
    /// One of the latency histogram's bounds, so the count within it is exact.
    pub threshold_ms: f64,
    pub objective: f64,
}

/// The thresholds a latency objective may name, in milliseconds.
pub fn latency_thresholds_ms() -> Vec<f64> {
    LATENCY_BOUNDS_US
        .iter()
        .map(|us| *us as f64 / 1_000.0)
        .collect()
}

fn check_objective(what: &str, objective: f64) -> Result<()> {
    if !(0.5..1.0).contains(&objective) {
        return Err(Error::invalid(format!(
            "the {what} objective must be at least 0.5 and below 1 (e.g. 0.999 for 99.9%), got {objective}"
        )));
    }
    Ok(())
}

impl SloSpec {
    pub fn validate(&self) -> Result<()> {
        if self.availability.is_none() && self.latency.is_none() {
            return Err(Error::invalid(
                "an SLO needs an availability objective, a latency objective, or both",
            ));
        }
        if let Some(objective) = self.availability {
            check_objective("availability", objective)?;
        }
        if let Some(latency) = &self.latency {
            check_objective("latency", latency.objective)?;
            if threshold_index(latency.threshold_ms).is_none() {
                return Err(Error::invalid(format!(
                    "a latency objective's threshold must be one of the latency histogram's bounds, so it is counted exactly: {} ms; got {} ms",
                    latency_thresholds_ms()
                        .iter()
                        .map(|ms| ms.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    latency.threshold_ms
                )));
            }
        }
        if !(1..=MAX_WINDOW_DAYS).contains(&self.window_days) {
            return Err(Error::invalid(format!(
                "an SLO's window must be 1 to {MAX_WINDOW_DAYS} days, got {}",
                self.window_days
            )));
        }
        Ok(())
    }

    pub fn window_ms(&self) -> i64 {
        i64::from(self.window_days) * 86_400_000
    }

    pub fn objective(&self, kind: SloKind) -> Option<f64> {
        match kind {
            SloKind::Availability => self.availability,
            SloKind::Latency => self.latency.as_ref().map(|l| l.objective),
        }
    }
}

/// The histogram bucket a threshold closes (its bound's index).
fn threshold_index(threshold_ms: f64) -> Option<usize> {
    LATENCY_BOUNDS_US
        .iter()
        .position(|us| (*us as f64 - threshold_ms * 1_000.0).abs() < 1e-6)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloKind {
    Availability,
    Latency,
}

impl SloKind {
    pub const ALL: [SloKind; 2] = [SloKind::Availability, SloKind::Latency];

    pub fn as_str(self) -> &'static str {
        match self {
            SloKind::Availability => "availability",
            SloKind::Latency => "latency",
        }
    }

    pub fn parse(text: &str) -> Option<SloKind> {
        SloKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Requests counted against one objective: all of them, and those that missed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Events {
    pub total: u64,
    pub bad: u64,
}

impl Events {
    /// Counts `stats` against `kind` of `spec` (zero when the spec has no such objective).
    pub fn of(stats: &ServingStats, spec: &SloSpec, kind: SloKind) -> Events {
        match kind {
            SloKind::Availability if spec.availability.is_some() => Events {
                total: stats.requests,
                bad: stats.server_errors.min(stats.requests),
            },
            SloKind::Latency => {
                let Some(index) = spec
                    .latency
                    .as_ref()
                    .and_then(|l| threshold_index(l.threshold_ms))
                else {
                    return Events::default();
                };
                // The latency histogram counts every answered request, 5xx included.
                let total = stats.latency.count();
                let within: u64 = stats.latency.0.iter().take(index + 1).sum();
                Events {
                    total,
                    bad: total - within.min(total),
                }
            }
            SloKind::Availability => Events::default(),
        }
    }

    /// How fast the budget burns: the share of bad events over the share the objective
    /// allows (1: the budget lasts exactly the window). `None` without events.
    pub fn burn_rate(&self, objective: f64) -> Option<f64> {
        (self.total > 0).then(|| (self.bad as f64 / self.total as f64) / (1.0 - objective))
    }
}

/// The SRE workbook's alerting windows for a 30-day SLO: (long, short, burn rate). A page
/// when 2% of the budget goes in an hour or 5% in six; a ticket when 10% goes in three days.
pub const BURN_WINDOWS: [(i64, i64, f64, &str); 3] = [
    (3_600_000, 300_000, 14.4, "page"),
    (21_600_000, 1_800_000, 6.0, "page"),
    (259_200_000, 21_600_000, 1.0, "ticket"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64, latencies_us: &[u64]) -> ServingStats {
        let mut stats = ServingStats {
            requests,
            server_errors: errors,
            ..ServingStats::default()
        };
        for us in latencies_us {
            stats.latency.record(*us);
        }
        stats
    }

    #[test]
    fn events_count_what_missed_each_objective() {
        let spec = SloSpec {
            availability: Some(0.999),
            latency: Some(LatencyObjective {
                threshold_ms: 200.0,
                objective: 0.99,
            }),
            window_days: 30,
        };
        spec.validate().unwrap();
        let s = stats(4, 1, &[1_000, 200_000, 200_001, 3_000_000]);
        assert_eq!(
            Events::of(&s, &spec, SloKind::Availability),
            Events { total: 4, bad: 1 }
        );
        // 200 ms exactly is within; anything above is not.
        assert_eq!(
            Events::of(&s, &spec, SloKind::Latency),
            Events { total: 4, bad: 2 }
        );
        // 1 bad in 1,000 against 99.9%: the budget burns at exactly 1.
        let burn = Events {
            total: 1_000,
            bad: 1,
        }
        .burn_rate(0.999)
        .unwrap();
        assert!((burn - 1.0).abs() < 1e-9, "{burn}");
        assert_eq!(Events::default().burn_rate(0.999), None);
    }

    #[test]
    fn specs_say_what_is_wrong() {
        let mut spec = SloSpec {
            availability: Some(0.999),
            latency: Some(LatencyObjective {
                threshold_ms: 300.0,
                objective: 0.99,
            }),
            window_days: 30,
        };
        let error = spec.validate().unwrap_err().to_string();
        assert!(error.contains("200, 500"), "{error}");
        spec.latency = None;
        spec.availability = Some(99.9);
        assert!(spec.validate().unwrap_err().to_string().contains("0.999"));
        spec.availability = None;
        assert!(spec.validate().is_err());
        spec.availability = Some(0.99);
        spec.window_days = 0;
        assert!(spec.validate().is_err());
    }
}
