//! Rollout analysis: measurements of the candidate against the stable version over one window
//! of traffic, each rule with a threshold and a minimum sample count.
//!
//! Windows are sums of counters, so the reports of many replicas add up to the same window a
//! single server would have seen (latency as a fixed-bucket histogram, predictions as counts
//! per label or score bin).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Answered requests a side from which latency rules read p99 rather than p90.
pub const P99_SAMPLES: u64 = 500;

/// Upper bounds of the latency buckets, in microseconds; a last bucket holds the rest.
pub const LATENCY_BOUNDS_US: [u64; 24] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000,
    30_000, 50_000, 75_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
];

/// Latency counts per bucket of [`LATENCY_BOUNDS_US`] (plus one overflow bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram(pub Vec<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(vec![0; LATENCY_BOUNDS_US.len() + 1])
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, micros: u64) {
        let index = LATENCY_BOUNDS_US.partition_point(|bound| *bound < micros);
        self.resize();
        self.0[index] += 1;
    }

    fn resize(&mut self) {
        if self.0.len() != LATENCY_BOUNDS_US.len() + 1 {
            self.0.resize(LATENCY_BOUNDS_US.len() + 1, 0);
        }
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.resize();
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The quantile `q` in milliseconds, interpolated linearly inside its bucket (as
    /// Prometheus' `histogram_quantile` does). `None` without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (index, count) in self.0.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            if (seen + count) as f64 >= rank {
                let lower = if index == 0 {
                    0
                } else {
                    LATENCY_BOUNDS_US[index - 1]
                };
                let Some(upper) = LATENCY_BOUNDS_US.get(index).copied() else {
                    // Beyond the last bound: the last bound is all that is known.
                    return Some(lower as f64 / 1000.0);
                };
                let within = (rank - seen as f64) / *count as f64;
                return Some((lower as f64 + within * (upper - lower) as f64) / 1000.0);
            }
            seen += count;
        }
        Some(*LATENCY_BOUNDS_US.last().unwrap_or(&0) as f64 / 1000.0)
    }
}

/// Distinct predicted labels (or score bins) a window keeps; the rest count as [`OTHER_LABELS`].
pub const MAX_LABELS: usize = 1_000;
pub const OTHER_LABELS: &str = "(other)";

/// One variant's traffic in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantWindow {
    pub requests: u64,
    /// Requests the model failed (not the client's mistakes).
    pub errors: u64,
    pub latency: LatencyHistogram,
    /// Predicted label (or score bin) -> rows.
    pub predictions: BTreeMap<String, u64>,
}

impl VariantWindow {
    pub fn merge(&mut self, other: &VariantWindow) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency.merge(&other.latency);
        for (key, count) in &other.predictions {
            // Bounded: a model with more distinct labels (or a report with junk ones) adds to
            // one bucket rather than growing the window without limit.
            let key = if self.predictions.len() < MAX_LABELS || self.predictions.contains_key(key) {
                key.clone()
            } else {
                OTHER_LABELS.to_owned()
            };
            let slot = self.predictions.entry(key).or_default();
            *slot = slot.saturating_add(*count);
        }
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// A window of a rollout's traffic: both variants, and the mirrored comparisons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    pub stable: VariantWindow,
    pub candidate: VariantWindow,
    /// Rows answered by both variants on mirrored traffic.
    pub compared: u64,
    /// ... on which they predicted the same label (or score bin).
    pub agreed: u64,
}

impl WindowStats {
    pub fn merge(&mut self, other: &WindowStats) {
        self.stable.merge(&other.stable);
        self.candidate.merge(&other.candidate);
        self.compared = self.compared.saturating_add(other.compared);
        self.agreed = self.agreed.saturating_add(other.agreed);
    }

    pub fn is_empty(&self) -> bool {
        self.stable.requests == 0 && self.candidate.requests == 0 && self.compared == 0
    }
}

/// The rules a rollout's analysis applies; `None` turns a rule off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRules {
    pub interval_ms: u64,
    /// Requests (or compared rows) each rule needs from each side it looks at.
    pub min_samples: u64,
    pub max_error_rate: Option<f64>,
    /// The candidate's p99 latency, absolute.
    pub max_p99_ms: Option<f64>,
    /// The candidate's p99 over the stable's, both floored at 1 ms so that microsecond noise
    /// between two fast models is not a regression.
    pub max_p99_ratio: Option<f64>,
    /// Jensen-Shannon distance (natural log, as scipy) between the two variants' predicted
    /// labels or score bins.
    pub max_prediction_shift: Option<f64>,
    /// On mirrored traffic: the share of rows both variants predict alike.
    pub min_agreement: Option<f64>,
}

impl Default for AnalysisRules {
    fn default() -> Self {
        AnalysisRules {
            interval_ms: 30_000,
            // With 100 rows a side, sampling noise between two identical three-class
            // distributions stays under the 0.2 shift threshold (see the test below).
            min_samples: 100,
            max_error_rate: Some(0.01),
            max_p99_ms: None,
            max_p99_ratio: Some(2.0),
            max_prediction_shift: Some(0.2),
            min_agreement: None,
        }
    }
}

impl AnalysisRules {
    pub fn validate(&self) -> Result<()> {
        if self.interval_ms < 100 {
            return Err(Error::invalid(format!(
                "the analysis interval must be at least 100ms, got {}ms",
                self.interval_ms
            )));
        }
        if self.min_samples == 0 {
            return Err(Error::invalid(
                "the minimum sample count must be at least 1: a rule with no samples decides nothing",
            ));
        }
        let unit = |name: &str, value: Option<f64>| match value {
            Some(v) if !(0.0..=1.0).contains(&v) => Err(Error::invalid(format!(
                "{name} must be between 0 and 1, got {v}"
            ))),
            _ => Ok(()),
        };
        unit("max error rate", self.max_error_rate)?;
        unit("max prediction shift", self.max_prediction_shift)?;
        unit("min agreement", self.min_agreement)?;
        for (name, value) in [
            ("max p99 (ms)", self.max_p99_ms),
            ("max p99 ratio", self.max_p99_ratio),
        ] {
            if let Some(v) = value
                && (v.is_nan() || v <= 0.0)
            {
                return Err(Error::invalid(format!("{name} must be positive, got {v}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleResult {
    Pass,
    Fail,
    /// Fewer samples than the rule needs: neither a pass nor a fail.
    NotEnoughSamples,
}

/// One rule's measurement in one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub rule: String,
    pub candidate: Option<f64>,
    pub stable: Option<f64>,
    pub threshold: f64,
    /// Samples on the side with the fewest.
    pub samples: u64,
    pub result: RuleResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail { rule: String, detail: String },
    Inconclusive { reason: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail { .. } => "fail",
            Verdict::Inconclusive { .. } => "inconclusive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub at_ms: i64,
    /// How long the window ran (it grows while samples are too few).
    pub window_ms: i64,
    pub measurements: Vec<Measurement>,
    pub verdict: Verdict,
    /// Whose measurements the window summed: requests per reporting data plane (`server`, or
    /// a replica's credential), so a decision says which replicas' data it used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, u64>,
}

/// Jensen-Shannon distance between two count distributions over the union of their keys, with
/// the natural log (scipy's `jensenshannon` default, as Evidently uses it): 0 for identical
/// distributions, at most sqrt(ln 2) ≈ 0.833.
pub fn jensen_shannon_distance(p: &BTreeMap<String, u64>, q: &BTreeMap<String, u64>) -> f64 {
    let p_total: u64 = p.values().sum();
    let q_total: u64 = q.values().sum();
    if p_total == 0 || q_total == 0 {
        return 0.0;
    }
    let mut keys: Vec<&String> = p.keys().chain(q.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).ln() } else { 0.0 };
    let mut divergence = 0.0;
    for key in keys {
        let a = p.get(key).copied().unwrap_or(0) as f64 / p_total as f64;
        let b = q.get(key).copied().unwrap_or(0) as f64 / q_total as f64;
        let m = (a + b) / 2.0;
        divergence += 0.5 * kl(a, m) + 0.5 * kl(b, m);
    }
    divergence.max(0.0).sqrt()
}

fn judge(fails: bool) -> RuleResult {
    if fails {
        RuleResult::Fail
    } else {
        RuleResult::Pass
    }
}

/// Analyses one window. `reference` is the stable's last window with enough samples, used by
/// the relative rules when the stable gets no live traffic in this stage (a 100 % step).
pub fn analyze(
    rules: &AnalysisRules,
    window: &WindowStats,
    reference: Option<&VariantWindow>,
    at_ms: i64,
    window_ms: i64,
) -> Analysis {
    let min = rules.min_samples;
    let candidate = &window.candidate;
    let stable = if window.stable.requests >= min {
        &window.stable
    } else {
        reference.unwrap_or(&window.stable)
    };
    let mut measurements = Vec::new();
    let enough = |samples: u64| samples >= min;

    if let Some(threshold) = rules.max_error_rate {
        let value = candidate.error_rate();
        measurements.push(Measurement {
            rule: "error_rate".into(),
            candidate: value,
            stable: stable.error_rate(),
            threshold,
            samples: candidate.requests,
            result: if !enough(candidate.requests) {
                RuleResult::NotEnoughSamples
            } else {
                judge(value.unwrap_or(0.0) > threshold)
            },
        });
    }
    // Latency only counts answered requests: an error's latency says nothing about speed.
    let candidate_ok = candidate.latency.count();
    let stable_ok = stable.latency.count();
    // A p99 of a few dozen requests is their slowest one: one scheduling hiccup would fail a
    // healthy candidate. Below P99_SAMPLES answered requests a side, the rules read p90, and
    // the measurement says which percentile it used.
    let percentile = if candidate_ok.min(stable_ok) >= P99_SAMPLES {
        0.99
    } else {
        0.90
    };
    let candidate_p99 = candidate.latency.quantile_ms(percentile);
    let stable_p99 = stable.latency.quantile_ms(percentile);
    let label = if percentile == 0.99 { "p99" } else { "p90" };
    if let Some(threshold) = rules.max_p99_ms {
        measurements.push(Measurement {
            rule: format!("latency_{label}_ms"),
            candidate: candidate_p99,
            stable: stable_p99,
            threshold,
            samples: candidate_ok,
            result: if !enough(candidate_ok) {
                RuleResult::NotEnoughSamples
            } else {
                judge(candidate_p99.unwrap_or(0.0) > threshold)
            },
        });
    }
    if let Some(threshold) = rules.max_p99_ratio {
        let ratio = match (candidate_p99, stable_p99) {
            (Some(c), Some(s)) => Some(c.max(1.0) / s.max(1.0)),
            _ => None,
        };
        let samples = candidate_ok.min(stable_ok);
        measurements.push(Measurement {
            rule: format!("latency_{label}_ratio"),
            candidate: ratio,
            stable: stable_p99,
            threshold,
            samples,
            result: if !enough(samples) {
                RuleResult::NotEnoughSamples
            } else {
                judge(ratio.unwrap_or(0.0) > threshold)
            },
        });
    }
    if let Some(threshold) = rules.max_prediction_shift {
        let candidate_rows: u64 = candidate.predictions.values().sum();
        let stable_rows: u64 = stable.predictions.values().sum();
        let samples = candidate_rows.min(stable_rows);
        let distance = jensen_shannon_distance(&candidate.predictions, &stable.predictions);
        measurements.push(Measurement {
            rule: "prediction_shift".into(),
            candidate: (samples > 0).then_some(distance),
            stable: None,
            threshold,
            samples,
            result: if !enough(samples) {
                RuleResult::NotEnoughSamples
            } else {
                judge(distance > threshold)
            },
        });
    }
    if let Some(threshold) = rules.min_agreement {
        let rate = (window.compared > 0).then(|| window.agreed as f64 / window.compared as f64);
        measurements.push(Measurement {
            rule: "agreement".into(),
            candidate: rate,
            stable: None,
            threshold,
            samples: window.compared,
            result: if !enough(window.compared) {
                RuleResult::NotEnoughSamples
            } else {
                judge(rate.unwrap_or(1.0) < threshold)
            },
        });
    }

    let verdict = if let Some(failed) = measurements.iter().find(|m| m.result == RuleResult::Fail) {
        let relation = if failed.rule == "agreement" { "<" } else { ">" };
        Verdict::Fail {
            rule: failed.rule.clone(),
            detail: format!(
                "candidate {} {relation} threshold {} over {} samples{}",
                fmt(failed.candidate),
                failed.threshold,
                failed.samples,
                failed
                    .stable
                    .map(|s| format!(" (stable {})", fmt(Some(s))))
                    .unwrap_or_default()
            ),
        }
    } else if let Some(waiting) = measurements
        .iter()
        .find(|m| m.result == RuleResult::NotEnoughSamples)
    {
        Verdict::Inconclusive {
            reason: format!(
                "{}: {} of {} samples needed; waiting for traffic",
                waiting.rule, waiting.samples, min
            ),
        }
    } else {
        Verdict::Pass
    };
    Analysis {
        at_ms,
        window_ms,
        measurements,
        verdict,
        sources: BTreeMap::new(),
    }
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(
        requests: u64,
        errors: u64,
        latency_us: u64,
        labels: &[(&str, u64)],
    ) -> VariantWindow {
        let mut w = VariantWindow {
            requests,
            errors,
            ..Default::default()
        };
        for _ in 0..(requests - errors) {
            w.latency.record(latency_us);
        }
        for (label, count) in labels {
            w.predictions.insert((*label).to_owned(), *count);
        }
        w
    }

    fn rules() -> AnalysisRules {
        AnalysisRules {
            min_samples: 50,
            min_agreement: Some(0.9),
            ..AnalysisRules::default()
        }
    }

    #[test]
    fn a_good_candidate_passes() {
        let stats = WindowStats {
            stable: window(950, 0, 400, &[("0", 600), ("1", 350)]),
            candidate: window(100, 0, 450, &[("0", 62), ("1", 38)]),
            compared: 100,
            agreed: 97,
        };
        let analysis = analyze(&rules(), &stats, None, 0, 0);
        assert_eq!(analysis.verdict, Verdict::Pass, "{analysis:?}");
        assert_eq!(analysis.measurements.len(), 4);
    }

    #[test]
    fn each_rule_fails_on_its_own() {
        let good = WindowStats {
            stable: window(950, 0, 400, &[("0", 600), ("1", 350)]),
            candidate: window(100, 0, 450, &[("0", 62), ("1", 38)]),
            compared: 100,
            agreed: 97,
        };
        let mut erroring = good.clone();
        erroring.candidate = window(100, 20, 450, &[("0", 50), ("1", 30)]);
        let mut slow = good.clone();
        slow.candidate = window(100, 0, 9_000, &[("0", 62), ("1", 38)]);
        let mut shifted = good.clone();
        shifted.candidate = window(100, 0, 450, &[("1", 100)]);
        let mut disagreeing = good.clone();
        disagreeing.agreed = 40;
        for (stats, rule) in [
            (erroring, "error_rate"),
            (slow, "latency_p90_ratio"),
            (shifted, "prediction_shift"),
            (disagreeing, "agreement"),
        ] {
            let analysis = analyze(&rules(), &stats, None, 0, 0);
            match &analysis.verdict {
                Verdict::Fail {
                    rule: fired,
                    detail,
                } => {
                    assert_eq!(fired, rule, "{detail}");
                    assert!(detail.contains("threshold"), "{detail}");
                }
                other => panic!("{rule}: expected a failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn too_few_samples_is_neither_pass_nor_fail() {
        let stats = WindowStats {
            stable: window(10, 0, 400, &[("0", 10)]),
            // Every request failed, but there are only five.
            candidate: window(5, 5, 400, &[]),
            compared: 0,
            agreed: 0,
        };
        let analysis = analyze(&rules(), &stats, None, 0, 0);
        assert!(
            matches!(analysis.verdict, Verdict::Inconclusive { .. }),
            "{analysis:?}"
        );
        let idle = analyze(&rules(), &WindowStats::default(), None, 0, 0);
        assert!(matches!(idle.verdict, Verdict::Inconclusive { .. }));
    }

    #[test]
    fn relative_rules_use_the_reference_when_the_stable_gets_no_traffic() {
        let stats = WindowStats {
            stable: VariantWindow::default(),
            candidate: window(100, 0, 450, &[("0", 62), ("1", 38)]),
            compared: 0,
            agreed: 0,
        };
        let reference = window(950, 0, 400, &[("0", 600), ("1", 350)]);
        let rules = AnalysisRules {
            min_agreement: None,
            ..rules()
        };
        let analysis = analyze(&rules, &stats, Some(&reference), 0, 0);
        assert_eq!(analysis.verdict, Verdict::Pass, "{analysis:?}");
    }

    #[test]
    fn merged_windows_keep_a_bounded_label_set_and_never_wrap() {
        let mut window = VariantWindow::default();
        let mut junk = VariantWindow::default();
        for i in 0..(MAX_LABELS + 500) {
            junk.predictions.insert(format!("label-{i}"), 1);
        }
        junk.requests = u64::MAX;
        window.merge(&junk);
        window.merge(&junk);
        assert_eq!(window.predictions.len(), MAX_LABELS + 1);
        assert_eq!(window.predictions[OTHER_LABELS], 1_000);
        assert_eq!(window.requests, u64::MAX);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut h = LatencyHistogram::default();
        for _ in 0..100 {
            h.record(400); // bucket (300, 500]
        }
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((0.3..=0.5).contains(&p99), "{p99}");
        let mut slow = LatencyHistogram::default();
        slow.record(10_000_000);
        assert_eq!(slow.quantile_ms(0.5), Some(5_000.0));
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn jensen_shannon_matches_scipy() {
        // scipy.spatial.distance.jensenshannon([0.5, 0.5], [0.9, 0.1]) = 0.3189815...
        let p = BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 5)]);
        let q = BTreeMap::from([("a".to_owned(), 9), ("b".to_owned(), 1)]);
        let d = jensen_shannon_distance(&p, &q);
        assert!((d - 0.318_981_5).abs() < 1e-6, "{d}");
        assert_eq!(jensen_shannon_distance(&p, &p), 0.0);
        let disjoint = BTreeMap::from([("c".to_owned(), 3)]);
        assert!((jensen_shannon_distance(&p, &disjoint) - 2f64.ln().sqrt()).abs() < 1e-12);
    }

    #[test]
    fn sampling_noise_at_the_default_minimum_stays_under_the_default_shift() {
        // Two samples of the same three-class distribution at the minimum sample count: the
        // default threshold must not read noise as a shift. Deterministic pseudo-random draws.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut draw = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 100 {
                0..50 => "a",
                50..80 => "b",
                _ => "c",
            }
        };
        let min = AnalysisRules::default().min_samples;
        let threshold = AnalysisRules::default().max_prediction_shift.unwrap();
        let mut worst: f64 = 0.0;
        for _ in 0..500 {
            let mut p = BTreeMap::new();
            let mut q = BTreeMap::new();
            for _ in 0..min {
                *p.entry(draw().to_owned()).or_insert(0u64) += 1;
                *q.entry(draw().to_owned()).or_insert(0u64) += 1;
            }
            worst = worst.max(jensen_shannon_distance(&p, &q));
        }
        assert!(worst < threshold, "worst noise {worst} >= {threshold}");
    }
}
