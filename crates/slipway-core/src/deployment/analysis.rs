//! Rollout analysis: measurements of the candidate against the stable version over one window
//! of traffic, each rule with a threshold and a minimum sample count.
//!
//! Windows are sums of counters, so the reports of many replicas add up to the same window a
//! single server would have seen (latency as a fixed-bucket histogram, predictions as counts
//! per label or score bin).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

use super::Traffic;
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
    /// Predicted label (or score bin) -> rows, of the live traffic routed to this variant
    /// (forced test requests and mirrored copies are not a sample of that traffic and are left
    /// out; they count in [`SameRows`]).
    pub predictions: BTreeMap<String, u64>,
    /// Requests routed to this variant that its open circuit sent to the other one: neither
    /// its answers nor its failures, so they count toward no rule (shown for explanation).
    #[serde(default)]
    pub diverted: u64,
}

impl VariantWindow {
    pub fn merge(&mut self, other: &VariantWindow) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency.merge(&other.latency);
        merge_labels(&mut self.predictions, &other.predictions);
        self.diverted = self.diverted.saturating_add(other.diverted);
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// Every request a deployment was sent, whatever the variant and the outcome: what its callers
/// saw. Measured by every data plane whether or not a rollout runs, and summed on the server
/// per deployment; alert rules (error rate, latency, no traffic) read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingStats {
    pub requests: u64,
    /// Answered with a 5xx: the model failed, the request timed out, or load was shed.
    pub server_errors: u64,
    /// Request to response, every outcome.
    pub latency: LatencyHistogram,
    /// CPU time the model runs of these requests took (mirrored copies included), in
    /// microseconds: what cost per inference is measured on.
    #[serde(default)]
    pub cpu_us: u64,
    /// Nanoseconds not yet a whole microsecond: a request's share of a merged run is often
    /// below one, and dropping it every time would count no CPU at all.
    #[serde(skip)]
    pub cpu_ns_rest: u64,
}

/// A deployment's serving summed over a span of stored minutes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingTotals {
    pub deployment: String,
    pub requests: u64,
    pub server_errors: u64,
    pub cpu_us: u64,
    /// Minutes with any traffic.
    pub minutes: u64,
}

impl ServingStats {
    pub fn record(&mut self, status: u16, micros: u64) {
        self.requests = self.requests.saturating_add(1);
        if status >= 500 {
            self.server_errors = self.server_errors.saturating_add(1);
        }
        self.latency.record(micros);
    }

    pub fn merge(&mut self, other: &ServingStats) {
        self.requests = self.requests.saturating_add(other.requests);
        self.server_errors = self.server_errors.saturating_add(other.server_errors);
        self.latency.merge(&other.latency);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.server_errors as f64 / self.requests as f64)
    }
}

/// Adds label counts, bounded: a model with more distinct labels (or a report with junk ones)
/// adds to one bucket rather than growing the window without limit.
fn merge_labels(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        let key = if into.len() < MAX_LABELS || into.contains_key(key) {
            key.clone()
        } else {
            OTHER_LABELS.to_owned()
        };
        let slot = into.entry(key).or_default();
        *slot = slot.saturating_add(*count);
    }
}

/// Predicted labels (or score bins) of rows both variants answered: the same inputs on both
/// sides, so a difference is the models' and never the traffic's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SameRows {
    pub stable: BTreeMap<String, u64>,
    pub candidate: BTreeMap<String, u64>,
}

impl SameRows {
    pub fn merge(&mut self, other: &SameRows) {
        merge_labels(&mut self.stable, &other.stable);
        merge_labels(&mut self.candidate, &other.candidate);
    }

    pub fn rows(&self) -> u64 {
        self.candidate.values().sum()
    }
}

/// A window of a rollout's traffic: both variants, and the row-by-row comparisons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    pub stable: VariantWindow,
    pub candidate: VariantWindow,
    /// Rows answered by both variants on mirrored traffic.
    pub compared: u64,
    /// ... on which they predicted the same label (or a score within the tolerance).
    pub agreed: u64,
    /// Rows the candidate answered that were run again on the stable, off the response path.
    #[serde(default)]
    pub rescored: u64,
    /// ... on which both predicted alike.
    #[serde(default)]
    pub rescore_agreed: u64,
    /// Requests picked for re-scoring but skipped because the re-scoring queue was full.
    #[serde(default)]
    pub rescore_skipped: u64,
    /// Labels of the mirrored and re-scored rows, per variant.
    #[serde(default)]
    pub same_rows: SameRows,
}

impl WindowStats {
    pub fn merge(&mut self, other: &WindowStats) {
        self.stable.merge(&other.stable);
        self.candidate.merge(&other.candidate);
        self.compared = self.compared.saturating_add(other.compared);
        self.agreed = self.agreed.saturating_add(other.agreed);
        self.rescored = self.rescored.saturating_add(other.rescored);
        self.rescore_agreed = self.rescore_agreed.saturating_add(other.rescore_agreed);
        self.rescore_skipped = self.rescore_skipped.saturating_add(other.rescore_skipped);
        self.same_rows.merge(&other.same_rows);
    }

    pub fn is_empty(&self) -> bool {
        self.stable.requests == 0
            && self.candidate.requests == 0
            && self.compared == 0
            && self.rescored == 0
            && self.rescore_skipped == 0
            && self.stable.diverted == 0
            && self.candidate.diverted == 0
    }
}

/// The rules a rollout's analysis applies; `None` turns a rule off.
///
/// Rules that compare distributions or agreement judge by significance: they fail only when the
/// difference is both certain at the samples they have (p < `alpha`) and larger than their
/// threshold, so a small shift measured on many rows is not waved through for being small in
/// a fixed unit and noise on few rows is not a failure.
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
    /// The smallest shift between the two variants' predicted labels or score bins that fails,
    /// as a Jensen-Shannon distance (natural log, as scipy); the shift must also be
    /// significant (chi-square test of homogeneity, p < `alpha`).
    pub max_prediction_shift: Option<f64>,
    /// On mirrored traffic: the share of rows both variants predict alike.
    pub min_agreement: Option<f64>,
    /// Significance level of the shift and agreement tests.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Percentage of the requests the candidate answers whose rows are also run on the stable
    /// (off the response path) and compared row by row. Forced test requests are all re-scored.
    #[serde(default = "default_rescore_percent")]
    pub rescore_percent: u8,
    /// On re-scored rows: the share both variants must predict alike.
    #[serde(default = "default_min_rescore_agreement")]
    pub min_rescore_agreement: Option<f64>,
    /// Re-scored rows the re-score agreement rule needs before it decides.
    #[serde(default = "default_rescore_min_samples")]
    pub rescore_min_samples: u64,
    /// Two scores (a regressor's value) agree when they differ by at most this, relative to
    /// the stable's score (absolute below 1).
    #[serde(default = "default_score_tolerance")]
    pub score_tolerance: f64,
}

fn default_alpha() -> f64 {
    0.01
}

fn default_rescore_percent() -> u8 {
    20
}

fn default_min_rescore_agreement() -> Option<f64> {
    Some(0.9)
}

fn default_rescore_min_samples() -> u64 {
    20
}

fn default_score_tolerance() -> f64 {
    1e-3
}

impl Default for AnalysisRules {
    fn default() -> Self {
        AnalysisRules {
            interval_ms: 30_000,
            min_samples: 100,
            max_error_rate: Some(0.01),
            max_p99_ms: None,
            max_p99_ratio: Some(2.0),
            // Evidently's Jensen-Shannon threshold; significance keeps noise from reaching it.
            max_prediction_shift: Some(0.1),
            min_agreement: None,
            alpha: default_alpha(),
            rescore_percent: default_rescore_percent(),
            min_rescore_agreement: default_min_rescore_agreement(),
            rescore_min_samples: default_rescore_min_samples(),
            score_tolerance: default_score_tolerance(),
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
        if self.min_samples == 0 || self.rescore_min_samples == 0 {
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
        unit("min rescore agreement", self.min_rescore_agreement)?;
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::invalid(format!(
                "alpha (the significance level) must be between 0 and 1, exclusive, got {}",
                self.alpha
            )));
        }
        if self.rescore_percent > 100 {
            return Err(Error::invalid(format!(
                "the re-score percentage must be between 0 and 100, got {}",
                self.rescore_percent
            )));
        }
        if !(self.score_tolerance >= 0.0 && self.score_tolerance.is_finite()) {
            return Err(Error::invalid(format!(
                "the score tolerance must be a finite number of at least 0, got {}",
                self.score_tolerance
            )));
        }
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
    /// The stage cannot produce what the rule compares (a stable side at 100 %, mirrored rows
    /// in a stage that mirrors nothing): the rule is skipped and says why, so it never holds a
    /// stage that could not feed it.
    NotApplicable,
}

/// One rule's measurement in one analysis: the numbers it decided on, and the decision in a
/// sentence (`detail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub rule: String,
    pub candidate: Option<f64>,
    pub stable: Option<f64>,
    pub threshold: f64,
    /// Samples on the side with the fewest.
    pub samples: u64,
    pub result: RuleResult,
    /// Samples of each side, for the rules that compare two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_samples: Option<u64>,
    /// The test's statistic (chi-square) and degrees of freedom, for the shift rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degrees_of_freedom: Option<u64>,
    /// The test's p-value, and the level it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Which rows were compared: `live` (the traffic each variant answered) or `same_rows`
    /// (mirrored or re-scored rows, answered by both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    /// The decision in words, with the numbers it used.
    #[serde(default)]
    pub detail: String,
}

impl Measurement {
    fn new(rule: impl Into<String>, threshold: f64) -> Measurement {
        Measurement {
            rule: rule.into(),
            candidate: None,
            stable: None,
            threshold,
            samples: 0,
            result: RuleResult::NotEnoughSamples,
            candidate_samples: None,
            stable_samples: None,
            statistic: None,
            degrees_of_freedom: None,
            p_value: None,
            alpha: None,
            basis: None,
            detail: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every rule passed; `detail` lists them with their numbers.
    Pass {
        #[serde(default)]
        detail: String,
    },
    /// `rule` is the first rule that failed; `detail` gives every failed rule's numbers.
    Fail { rule: String, detail: String },
    /// No rule failed and at least one lacks samples; `reason` names those and their counts.
    Inconclusive { reason: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass { .. } => "pass",
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

/// A chi-square test of homogeneity between two count distributions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    pub statistic: f64,
    pub degrees_of_freedom: u64,
    pub p_value: f64,
}

/// Expected count under which a cell is pooled with the other sparse ones: the chi-square
/// approximation does not hold for smaller cells (the usual rule of five).
const MIN_EXPECTED: f64 = 5.0;

/// Chi-square test of homogeneity (a 2 x k contingency table) between two samples of labels
/// or score bins: are they drawn from one distribution? Labels too rare for the approximation
/// (expected count under [`MIN_EXPECTED`] on either side) are pooled into one cell. One cell
/// (or an empty side) is no evidence of a difference: statistic 0, p-value 1.
pub fn chi_square_homogeneity(p: &BTreeMap<String, u64>, q: &BTreeMap<String, u64>) -> ChiSquare {
    let none = ChiSquare {
        statistic: 0.0,
        degrees_of_freedom: 0,
        p_value: 1.0,
    };
    let p_total: u64 = p.values().sum();
    let q_total: u64 = q.values().sum();
    if p_total == 0 || q_total == 0 {
        return none;
    }
    let total = (p_total + q_total) as f64;
    let smaller_share = p_total.min(q_total) as f64 / total;
    let mut keys: Vec<&String> = p.keys().chain(q.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let mut pooled = (0.0, 0.0);
    for key in keys {
        let a = p.get(key).copied().unwrap_or(0) as f64;
        let b = q.get(key).copied().unwrap_or(0) as f64;
        if (a + b) * smaller_share < MIN_EXPECTED {
            pooled.0 += a;
            pooled.1 += b;
        } else {
            cells.push((a, b));
        }
    }
    if pooled.0 + pooled.1 > 0.0 {
        cells.push(pooled);
    }
    if cells.len() < 2 {
        return none;
    }
    let mut statistic = 0.0;
    for (a, b) in &cells {
        let column = a + b;
        for (observed, side_total) in [(*a, p_total), (*b, q_total)] {
            let expected = column * side_total as f64 / total;
            if expected > 0.0 {
                statistic += (observed - expected).powi(2) / expected;
            }
        }
    }
    let degrees_of_freedom = cells.len() as u64 - 1;
    let p_value = ChiSquared::new(degrees_of_freedom as f64)
        .map(|distribution| distribution.sf(statistic))
        .unwrap_or(1.0);
    ChiSquare {
        statistic,
        degrees_of_freedom,
        p_value,
    }
}

/// One-sided exact binomial test of agreement: the probability of `agreed` or fewer agreeing
/// rows out of `compared` if the true agreement were `threshold`. Small: the agreement is
/// certainly below the threshold.
pub fn agreement_p_value(agreed: u64, compared: u64, threshold: f64) -> f64 {
    if compared == 0 || agreed >= compared {
        return 1.0;
    }
    if threshold >= 1.0 {
        // Any disagreement is impossible at an agreement of 1.
        return 0.0;
    }
    Binomial::new(threshold.max(0.0), compared)
        .map(|distribution| distribution.cdf(agreed))
        .unwrap_or(1.0)
}

/// Analyses one window of a stage that splits traffic as `traffic` says. `reference` is the
/// stable's last window with enough samples, used by the relative rules when the stable gets
/// no live traffic in this stage (a 100 % step).
///
/// A rule the stage cannot feed is [`RuleResult::NotApplicable`] rather than waiting: at 100 %
/// with no reference (a single `--steps 100`) the latency ratio has no stable side, as in
/// Argo Rollouts and Flagger, whose analyses judge the canary on its own figures there; the
/// candidate is then judged by the error rate, the absolute latency, and the rows re-scored
/// on the stable (prediction shift and re-score agreement). Mirrored agreement needs a mirror.
pub fn analyze(
    rules: &AnalysisRules,
    window: &WindowStats,
    reference: Option<&VariantWindow>,
    traffic: Traffic,
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
    // The stable's live figures exist when it gets a share of live traffic, or when an earlier
    // stage (the reference) or forced requests measured it.
    let stable_side = traffic.weight < 100 || reference.is_some() || window.stable.requests >= min;
    let no_stable_side = "the stable answers no live traffic at 100 % and no earlier stage of this rollout measured it";
    let mut measurements = Vec::new();
    let waiting = |m: &mut Measurement, needed: u64, what: &str| {
        m.result = RuleResult::NotEnoughSamples;
        m.detail = format!("{} of {needed} {what} needed", m.samples);
    };

    if let Some(threshold) = rules.max_error_rate {
        let mut m = Measurement::new("error_rate", threshold);
        m.candidate = candidate.error_rate();
        m.stable = stable.error_rate();
        m.samples = candidate.requests;
        let diverted = if candidate.diverted > 0 {
            format!(
                "; {} more diverted by the open circuit, not counted",
                candidate.diverted
            )
        } else {
            String::new()
        };
        if m.samples < min {
            waiting(&mut m, min, "candidate requests");
        } else {
            let rate = m.candidate.unwrap_or(0.0);
            m.result = judge(rate > threshold);
            m.detail = format!(
                "candidate error rate {} ({} of {} requests) {} max {threshold}",
                fmt(Some(rate)),
                candidate.errors,
                candidate.requests,
                if m.result == RuleResult::Fail {
                    ">"
                } else {
                    "<="
                },
            );
        }
        m.detail.push_str(&diverted);
        measurements.push(m);
    }
    // Latency only counts answered requests: an error's latency says nothing about speed.
    let candidate_ok = candidate.latency.count();
    let stable_ok = stable.latency.count();
    // A p99 of a few dozen requests is their slowest one: one scheduling hiccup would fail a
    // healthy candidate. Below P99_SAMPLES answered requests a side, the rules read p90, and
    // the measurement says which percentile it used.
    let sides_ok = if stable_side {
        candidate_ok.min(stable_ok)
    } else {
        candidate_ok
    };
    let percentile = if sides_ok >= P99_SAMPLES { 0.99 } else { 0.90 };
    let candidate_p99 = candidate.latency.quantile_ms(percentile);
    let stable_p99 = stable.latency.quantile_ms(percentile);
    let label = if percentile == 0.99 { "p99" } else { "p90" };
    if let Some(threshold) = rules.max_p99_ms {
        let mut m = Measurement::new(format!("latency_{label}_ms"), threshold);
        m.candidate = candidate_p99;
        m.stable = stable_p99;
        m.samples = candidate_ok;
        if candidate_ok < min {
            waiting(&mut m, min, "answered candidate requests");
        } else {
            let value = candidate_p99.unwrap_or(0.0);
            m.result = judge(value > threshold);
            m.detail = format!(
                "candidate {label} {} ms over {candidate_ok} requests {} max {threshold} ms",
                fmt(Some(value)),
                if m.result == RuleResult::Fail {
                    ">"
                } else {
                    "<="
                },
            );
        }
        measurements.push(m);
    }
    if let Some(threshold) = rules.max_p99_ratio {
        let mut m = Measurement::new(format!("latency_{label}_ratio"), threshold);
        m.candidate = match (candidate_p99, stable_p99) {
            (Some(c), Some(s)) => Some(c.max(1.0) / s.max(1.0)),
            _ => None,
        };
        m.stable = stable_p99;
        m.samples = candidate_ok.min(stable_ok);
        m.candidate_samples = Some(candidate_ok);
        m.stable_samples = Some(stable_ok);
        if !stable_side {
            m.result = RuleResult::NotApplicable;
            m.detail = format!(
                "not applicable: {no_stable_side}, so there is no stable latency to compare with; {}",
                if rules.max_p99_ms.is_some() {
                    "the absolute latency rule judges the candidate's"
                } else {
                    "set a maximum latency in ms (--max-p99-ms) to bound the candidate's"
                }
            );
        } else if m.samples < min {
            waiting(&mut m, min, "answered requests a side");
        } else {
            let ratio = m.candidate.unwrap_or(0.0);
            m.result = judge(ratio > threshold);
            m.detail = format!(
                "candidate {label} {} ms / stable {} ms (each floored at 1 ms) = {} {} max {threshold}, over {candidate_ok} and {stable_ok} requests",
                fmt(candidate_p99),
                fmt(stable_p99),
                fmt(Some(ratio)),
                if m.result == RuleResult::Fail {
                    ">"
                } else {
                    "<="
                },
            );
        }
        measurements.push(m);
    }
    if let Some(threshold) = rules.max_prediction_shift {
        // Rows both variants answered come from re-scoring and mirroring; with neither, and no
        // stable side, nothing can be compared.
        let same_rows = rules.rescore_percent > 0 || traffic.mirror > 0;
        if stable_side || same_rows {
            measurements.push(prediction_shift(rules, window, stable, threshold));
        } else {
            let mut m = Measurement::new("prediction_shift", threshold);
            m.result = RuleResult::NotApplicable;
            m.detail = format!(
                "not applicable: {no_stable_side}, and neither re-scoring (--rescore-percent 0) nor a mirror gives rows both answered"
            );
            measurements.push(m);
        }
    }
    if let Some(threshold) = rules.min_agreement {
        if traffic.mirror > 0 || window.compared > 0 {
            measurements.push(agreement(
                "agreement",
                "mirrored",
                window.agreed,
                window.compared,
                threshold,
                min,
                rules.alpha,
            ));
        } else {
            let mut m = Measurement::new("agreement", threshold);
            m.result = RuleResult::NotApplicable;
            m.detail = "not applicable: this stage mirrors no traffic to the candidate".to_owned();
            measurements.push(m);
        }
    }
    // A window of mirrored traffic only (a shadow, a preview without test requests) has no
    // candidate answer to re-score: its rows are compared by the mirror, and waiting for
    // re-scored rows would hold the stage forever.
    let mirror_only = window.rescored == 0 && window.rescore_skipped == 0 && window.compared > 0;
    if let Some(threshold) = rules.min_rescore_agreement
        && rules.rescore_percent > 0
        && !mirror_only
    {
        let mut m = agreement(
            "rescore_agreement",
            "re-scored",
            window.rescore_agreed,
            window.rescored,
            threshold,
            rules.rescore_min_samples,
            rules.alpha,
        );
        if window.rescore_skipped > 0 {
            m.detail.push_str(&format!(
                "; {} requests not re-scored (queue full)",
                window.rescore_skipped
            ));
        }
        measurements.push(m);
    }

    let summary = |result: RuleResult| {
        measurements
            .iter()
            .filter(|m| m.result == result)
            .map(|m| format!("{}: {}", m.rule, m.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let verdict = if let Some(failed) = measurements.iter().find(|m| m.result == RuleResult::Fail) {
        Verdict::Fail {
            rule: failed.rule.clone(),
            detail: {
                let failed_rules = summary(RuleResult::Fail);
                // The first rule's name is the verdict's `rule`; its detail leads.
                failed_rules
                    .strip_prefix(&format!("{}: ", failed.rule))
                    .unwrap_or(&failed_rules)
                    .to_owned()
            },
        }
    } else if measurements
        .iter()
        .any(|m| m.result == RuleResult::NotEnoughSamples)
    {
        Verdict::Inconclusive {
            reason: format!(
                "waiting for traffic: {}",
                summary(RuleResult::NotEnoughSamples)
            ),
        }
    } else {
        let passed = summary(RuleResult::Pass);
        let skipped = summary(RuleResult::NotApplicable);
        Verdict::Pass {
            detail: match (passed.is_empty(), skipped.is_empty()) {
                (_, true) => passed,
                (true, false) => format!("no rule applies at this stage: {skipped}"),
                (false, false) => format!("{passed}; {skipped}"),
            },
        }
    };
    Analysis {
        at_ms,
        window_ms,
        measurements,
        verdict,
        sources: BTreeMap::new(),
    }
}

/// The prediction-shift rule: the live traffic of both variants when each side has enough
/// rows (a canary's random split), else the rows both answered (a mirror's or a preview's
/// re-scored rows). Never forced test requests against other, live requests.
fn prediction_shift(
    rules: &AnalysisRules,
    window: &WindowStats,
    stable: &VariantWindow,
    threshold: f64,
) -> Measurement {
    let min = rules.min_samples;
    let mut m = Measurement::new("prediction_shift", threshold);
    let live = (
        window.candidate.predictions.values().sum::<u64>(),
        stable.predictions.values().sum::<u64>(),
    );
    let same = (
        window.same_rows.candidate.values().sum::<u64>(),
        window.same_rows.stable.values().sum::<u64>(),
    );
    let (basis, candidate, stable_labels, (candidate_rows, stable_rows)) =
        if live.0.min(live.1) >= min {
            (
                "live",
                &window.candidate.predictions,
                &stable.predictions,
                live,
            )
        } else if same.0.min(same.1) >= min {
            (
                "same_rows",
                &window.same_rows.candidate,
                &window.same_rows.stable,
                same,
            )
        } else {
            m.samples = live.0.min(live.1).max(same.0.min(same.1));
            m.detail = format!(
                "{} of {min} rows a side needed (live: candidate {}, stable {}; same rows: {})",
                m.samples, live.0, live.1, same.0
            );
            return m;
        };
    let distance = jensen_shannon_distance(candidate, stable_labels);
    let test = chi_square_homogeneity(candidate, stable_labels);
    m.candidate = Some(distance);
    m.samples = candidate_rows.min(stable_rows);
    m.candidate_samples = Some(candidate_rows);
    m.stable_samples = Some(stable_rows);
    m.statistic = Some(test.statistic);
    m.degrees_of_freedom = Some(test.degrees_of_freedom);
    m.p_value = Some(test.p_value);
    m.alpha = Some(rules.alpha);
    m.basis = Some(basis.to_owned());
    let significant = test.p_value < rules.alpha;
    let large = distance > threshold;
    m.result = judge(significant && large);
    m.detail = format!(
        "Jensen-Shannon distance {} {} min effect {threshold}, chi-square {:.2} (df {}) p={} {} alpha {}, on {} rows: candidate {candidate_rows}, stable {stable_rows}{}",
        fmt(Some(distance)),
        if large { ">" } else { "<=" },
        test.statistic,
        test.degrees_of_freedom,
        fmt_p(test.p_value),
        if significant { "<" } else { ">=" },
        rules.alpha,
        if basis == "live" { "live" } else { "the same" },
        match (significant, large) {
            (true, true) => "",
            (true, false) => " (significant but too small to fail)",
            (false, true) => " (large but not significant at these samples)",
            (false, false) => "",
        }
    );
    m
}

/// An agreement rule on rows both variants answered: fails when the agreement is below the
/// threshold and certainly so (one-sided binomial test, p < alpha).
fn agreement(
    rule: &str,
    rows: &str,
    agreed: u64,
    compared: u64,
    threshold: f64,
    min: u64,
    alpha: f64,
) -> Measurement {
    let mut m = Measurement::new(rule, threshold);
    m.samples = compared;
    m.candidate = (compared > 0).then(|| agreed as f64 / compared as f64);
    if compared < min {
        m.detail = format!("{compared} of {min} {rows} rows needed");
        return m;
    }
    let rate = m.candidate.unwrap_or(1.0);
    let p_value = agreement_p_value(agreed, compared, threshold);
    m.p_value = Some(p_value);
    m.alpha = Some(alpha);
    let below = rate < threshold;
    let significant = p_value < alpha;
    m.result = judge(below && significant);
    m.detail = format!(
        "agreement {} ({agreed} of {compared} {rows} rows) {} min {threshold}, binomial p={} {} alpha {alpha}{}",
        fmt(Some(rate)),
        if below { "<" } else { ">=" },
        fmt_p(p_value),
        if significant { "<" } else { ">=" },
        if below && !significant {
            " (below, but not certainly at these samples)"
        } else {
            ""
        }
    );
    m
}

fn judge(fails: bool) -> RuleResult {
    if fails {
        RuleResult::Fail
    } else {
        RuleResult::Pass
    }
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

fn fmt_p(p: f64) -> String {
    if p != 0.0 && p < 1e-4 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
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
        w.predictions = counts(labels);
        w
    }

    fn counts(labels: &[(&str, u64)]) -> BTreeMap<String, u64> {
        labels
            .iter()
            .map(|(label, count)| ((*label).to_owned(), *count))
            .collect()
    }

    /// A stage where both variants answer live traffic and a share is mirrored: every rule
    /// applies.
    const SPLIT: Traffic = Traffic {
        weight: 50,
        mirror: 50,
    };

    /// A blue-green preview: no live traffic to the candidate, nothing mirrored.
    const PREVIEW: Traffic = Traffic {
        weight: 0,
        mirror: 0,
    };
    /// A 100 % step: the stable answers no live traffic.
    const FULL: Traffic = Traffic {
        weight: 100,
        mirror: 0,
    };

    fn rules() -> AnalysisRules {
        AnalysisRules {
            min_samples: 50,
            min_agreement: Some(0.9),
            ..AnalysisRules::default()
        }
    }

    fn good() -> WindowStats {
        WindowStats {
            stable: window(950, 0, 400, &[("0", 600), ("1", 350)]),
            candidate: window(100, 0, 450, &[("0", 62), ("1", 38)]),
            compared: 100,
            agreed: 97,
            rescored: 20,
            rescore_agreed: 20,
            ..Default::default()
        }
    }

    fn measurement<'a>(analysis: &'a Analysis, rule: &str) -> &'a Measurement {
        analysis
            .measurements
            .iter()
            .find(|m| m.rule == rule)
            .unwrap_or_else(|| panic!("no {rule} in {analysis:?}"))
    }

    /// Deterministic pseudo-random numbers in 0..1 (xorshift), for sampling-noise tests.
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn a_good_candidate_passes_and_says_why() {
        let analysis = analyze(&rules(), &good(), None, SPLIT, 0, 0);
        let Verdict::Pass { detail } = &analysis.verdict else {
            panic!("{analysis:?}");
        };
        assert_eq!(analysis.measurements.len(), 5);
        for rule in [
            "error_rate",
            "latency_p90_ratio",
            "prediction_shift",
            "agreement",
            "rescore_agreement",
        ] {
            assert!(detail.contains(&format!("{rule}: ")), "{rule}: {detail}");
        }
        assert!(detail.contains("p="), "{detail}");
    }

    #[test]
    fn each_rule_fails_on_its_own_and_names_its_numbers() {
        let mut erroring = good();
        erroring.candidate = window(100, 20, 450, &[("0", 50), ("1", 30)]);
        let mut slow = good();
        slow.candidate = window(100, 0, 9_000, &[("0", 62), ("1", 38)]);
        let mut shifted = good();
        shifted.candidate = window(100, 0, 450, &[("1", 100)]);
        let mut disagreeing = good();
        disagreeing.agreed = 40;
        let mut rescored_apart = good();
        rescored_apart.rescore_agreed = 2;
        for (stats, rule, number) in [
            (erroring, "error_rate", "20 of 100"),
            (slow, "latency_p90_ratio", "max 2"),
            (shifted, "prediction_shift", "candidate 100, stable 950"),
            (disagreeing, "agreement", "40 of 100"),
            (rescored_apart, "rescore_agreement", "2 of 20"),
        ] {
            let analysis = analyze(&rules(), &stats, None, SPLIT, 0, 0);
            match &analysis.verdict {
                Verdict::Fail {
                    rule: fired,
                    detail,
                } => {
                    assert_eq!(fired, rule, "{detail}");
                    assert!(detail.contains(number), "{rule}: {detail}");
                }
                other => panic!("{rule}: expected a failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_inverted_model_on_38_percent_positive_traffic_fails() {
        // The reported case: 10 s windows at ~900 req/s, a 5 % canary whose model predicts the
        // opposite class on every row. Its label frequencies are 62/38 against 38/62: a
        // Jensen-Shannon distance of 0.176, under the old fixed 0.2.
        let stats = WindowStats {
            stable: window(8_550, 0, 400, &[("0", 5_301), ("1", 3_249)]),
            candidate: window(450, 0, 400, &[("0", 171), ("1", 279)]),
            ..Default::default()
        };
        let distance =
            jensen_shannon_distance(&stats.candidate.predictions, &stats.stable.predictions);
        assert!((0.17..0.2).contains(&distance), "{distance}");
        let rules = AnalysisRules {
            min_rescore_agreement: None,
            ..AnalysisRules::default()
        };
        let analysis = analyze(&rules, &stats, None, SPLIT, 0, 0);
        let shift = measurement(&analysis, "prediction_shift");
        assert_eq!(shift.result, RuleResult::Fail, "{shift:?}");
        assert!(shift.p_value.unwrap() < 1e-10, "{shift:?}");
        assert_eq!(shift.basis.as_deref(), Some("live"));
        assert_eq!(
            (shift.candidate_samples, shift.stable_samples),
            (Some(450), Some(8_550))
        );
        assert!(
            matches!(&analysis.verdict, Verdict::Fail { rule, .. } if rule == "prediction_shift"),
            "{analysis:?}"
        );

        // Re-scored on the stable, its rows agree on none: the agreement rule fails on its own,
        // from its minimum of rows.
        let rescored = WindowStats {
            rescored: 20,
            rescore_agreed: 0,
            ..stats.clone()
        };
        let only_agreement = AnalysisRules {
            max_prediction_shift: None,
            ..AnalysisRules::default()
        };
        let analysis = analyze(&only_agreement, &rescored, None, SPLIT, 0, 0);
        match &analysis.verdict {
            Verdict::Fail { rule, detail } => {
                assert_eq!(rule, "rescore_agreement");
                assert!(detail.contains("0 of 20 re-scored rows"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identical_distributions_pass_and_noise_at_small_n_does_not_fail() {
        let identical = WindowStats {
            stable: window(500, 0, 400, &[("0", 310), ("1", 190)]),
            candidate: window(500, 0, 400, &[("0", 310), ("1", 190)]),
            ..Default::default()
        };
        let rules = AnalysisRules {
            min_rescore_agreement: None,
            min_agreement: None,
            ..rules()
        };
        let analysis = analyze(&rules, &identical, None, SPLIT, 0, 0);
        assert!(
            matches!(analysis.verdict, Verdict::Pass { .. }),
            "{analysis:?}"
        );
        assert_eq!(
            measurement(&analysis, "prediction_shift").p_value,
            Some(1.0)
        );

        // Large in distance (0.21) but ten rows a side: chance, not evidence.
        let few = AnalysisRules {
            min_samples: 10,
            max_p99_ratio: None,
            ..rules.clone()
        };
        let noisy = WindowStats {
            stable: window(10, 0, 400, &[("0", 4), ("1", 6)]),
            candidate: window(10, 0, 400, &[("0", 7), ("1", 3)]),
            ..Default::default()
        };
        let analysis = analyze(&few, &noisy, None, SPLIT, 0, 0);
        let shift = measurement(&analysis, "prediction_shift");
        assert!(
            shift.candidate.unwrap() > few.max_prediction_shift.unwrap(),
            "{shift:?}"
        );
        assert_eq!(shift.result, RuleResult::Pass, "{shift:?}");
        assert!(shift.detail.contains("not significant"), "{}", shift.detail);

        // A tiny shift at the default minimum.
        let tiny = WindowStats {
            stable: window(100, 0, 400, &[("0", 60), ("1", 40)]),
            candidate: window(100, 0, 400, &[("0", 55), ("1", 45)]),
            ..Default::default()
        };
        let analysis = analyze(&AnalysisRules::default(), &tiny, None, SPLIT, 0, 0);
        assert_eq!(
            measurement(&analysis, "prediction_shift").result,
            RuleResult::Pass
        );

        // Certain (a million rows) but small: a shift under the minimum effect passes, and
        // the measurement says it was significant.
        let large_n = WindowStats {
            stable: window(1, 0, 400, &[("0", 600_000), ("1", 400_000)]),
            candidate: window(1, 0, 400, &[("0", 580_000), ("1", 420_000)]),
            ..Default::default()
        };
        let analysis = analyze(&few, &large_n, None, SPLIT, 0, 0);
        let shift = measurement(&analysis, "prediction_shift");
        assert_eq!(shift.result, RuleResult::Pass, "{shift:?}");
        assert!(shift.p_value.unwrap() < 1e-10, "{shift:?}");
        assert!(shift.detail.contains("too small"), "{}", shift.detail);
    }

    #[test]
    fn sampling_noise_at_the_minimums_fails_no_more_often_than_alpha() {
        // Two samples of one three-class distribution at the default minimum, 2000 times: the
        // shift rule fails at most about alpha of them. A candidate agreeing on 95 % of rows,
        // re-scored at the default minimum: its agreement rule (0.9) almost never fails.
        let mut draw = uniform(0x2545_f491_4f6c_dd1d);
        let rules = AnalysisRules::default();
        let label = |u: f64| match u {
            u if u < 0.5 => "a",
            u if u < 0.8 => "b",
            _ => "c",
        };
        let mut shift_failures = 0;
        let mut agreement_failures = 0;
        let runs = 2_000;
        for _ in 0..runs {
            let mut stats = WindowStats::default();
            for _ in 0..rules.min_samples {
                *stats
                    .candidate
                    .predictions
                    .entry(label(draw()).to_owned())
                    .or_default() += 1;
                *stats
                    .stable
                    .predictions
                    .entry(label(draw()).to_owned())
                    .or_default() += 1;
            }
            stats.rescored = rules.rescore_min_samples;
            stats.rescore_agreed = (0..rules.rescore_min_samples)
                .filter(|_| draw() < 0.95)
                .count() as u64;
            let shift = prediction_shift(
                &rules,
                &stats,
                &stats.stable,
                rules.max_prediction_shift.unwrap(),
            );
            shift_failures += u64::from(shift.result == RuleResult::Fail);
            let agreement = agreement(
                "rescore_agreement",
                "re-scored",
                stats.rescore_agreed,
                stats.rescored,
                0.9,
                rules.rescore_min_samples,
                rules.alpha,
            );
            agreement_failures += u64::from(agreement.result == RuleResult::Fail);
        }
        assert!(shift_failures <= runs / 50, "{shift_failures} of {runs}");
        assert!(
            agreement_failures <= runs / 100,
            "{agreement_failures} of {runs}"
        );
    }

    #[test]
    fn chi_square_matches_scipy() {
        // scipy.stats.chi2_contingency([[62, 38], [38, 62]], correction=False):
        // statistic 11.52, p 0.000688513...
        let test = chi_square_homogeneity(
            &counts(&[("0", 62), ("1", 38)]),
            &counts(&[("0", 38), ("1", 62)]),
        );
        assert!((test.statistic - 11.52).abs() < 1e-9, "{test:?}");
        assert_eq!(test.degrees_of_freedom, 1);
        assert!((test.p_value - 0.000_688_513).abs() < 1e-8, "{test:?}");
        // Rare labels are pooled: "c" and "d" (expected under 5) make one cell.
        let pooled = chi_square_homogeneity(
            &counts(&[("a", 50), ("b", 50), ("c", 1)]),
            &counts(&[("a", 50), ("b", 48), ("d", 2)]),
        );
        assert_eq!(pooled.degrees_of_freedom, 2, "{pooled:?}");
        let one_cell = chi_square_homogeneity(&counts(&[("a", 5)]), &counts(&[("a", 9)]));
        assert_eq!(one_cell.p_value, 1.0);
        // P(X <= 0 | 20, 0.9) = 0.1^20.
        assert!((agreement_p_value(0, 20, 0.9) - 1e-20).abs() < 1e-30);
        assert_eq!(agreement_p_value(20, 20, 0.9), 1.0);
    }

    #[test]
    fn too_few_samples_is_neither_pass_nor_fail_and_diverted_requests_do_not_count() {
        // Five real failures opened the circuit; 95 more requests meant for the candidate were
        // answered by the stable. They are not the candidate's errors, nor its samples.
        let mut candidate = window(5, 5, 400, &[]);
        candidate.diverted = 95;
        let stats = WindowStats {
            stable: window(200, 0, 400, &[("0", 200)]),
            candidate,
            ..Default::default()
        };
        let analysis = analyze(&rules(), &stats, None, SPLIT, 0, 0);
        let error_rate = measurement(&analysis, "error_rate");
        assert_eq!(error_rate.result, RuleResult::NotEnoughSamples);
        assert_eq!(error_rate.samples, 5);
        match &analysis.verdict {
            Verdict::Inconclusive { reason } => {
                assert!(reason.contains("error_rate: 5 of 50"), "{reason}");
                assert!(reason.contains("95 more diverted"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let idle = analyze(&rules(), &WindowStats::default(), None, SPLIT, 0, 0);
        assert!(matches!(idle.verdict, Verdict::Inconclusive { .. }));
        let mut merged = WindowStats::default();
        merged.merge(&stats);
        merged.merge(&stats);
        assert_eq!(merged.candidate.diverted, 190);
        assert!(
            !WindowStats {
                candidate: VariantWindow {
                    diverted: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .is_empty()
        );
    }

    #[test]
    fn a_preview_compares_the_same_rows() {
        // A blue-green preview: the candidate answers no live traffic, only forced requests
        // (which are not a sample of the traffic and never enter `predictions`) and re-scored
        // rows. The shift is judged on the rows both variants answered.
        let mut stats = WindowStats {
            stable: window(500, 0, 400, &[("0", 300), ("1", 200)]),
            candidate: window(60, 0, 400, &[]),
            rescored: 60,
            rescore_agreed: 60,
            ..Default::default()
        };
        stats.same_rows.stable = counts(&[("1", 60)]);
        stats.same_rows.candidate = counts(&[("1", 60)]);
        let analysis = analyze(&rules(), &stats, None, PREVIEW, 0, 0);
        let shift = measurement(&analysis, "prediction_shift");
        assert_eq!(shift.basis.as_deref(), Some("same_rows"), "{shift:?}");
        assert_eq!(shift.result, RuleResult::Pass, "{shift:?}");
        assert_eq!(
            measurement(&analysis, "rescore_agreement").result,
            RuleResult::Pass
        );
    }

    #[test]
    fn a_mirror_only_window_does_not_wait_for_rescored_rows() {
        // A shadow: the candidate answers no request itself, so nothing is re-scored; its
        // mirrored rows are compared instead, and the stage can pass.
        let mut stats = WindowStats {
            stable: window(500, 0, 400, &[("0", 300), ("1", 200)]),
            candidate: window(100, 0, 400, &[]),
            compared: 100,
            agreed: 100,
            ..Default::default()
        };
        stats.same_rows.stable = counts(&[("0", 60), ("1", 40)]);
        stats.same_rows.candidate = counts(&[("0", 60), ("1", 40)]);
        let analysis = analyze(
            &rules(),
            &stats,
            None,
            Traffic {
                weight: 0,
                mirror: 100,
            },
            0,
            0,
        );
        assert!(
            matches!(analysis.verdict, Verdict::Pass { .. }),
            "{analysis:?}"
        );
        assert!(
            analysis
                .measurements
                .iter()
                .all(|m| m.rule != "rescore_agreement")
        );
    }

    #[test]
    fn stored_rules_windows_and_verdicts_from_before_still_read() {
        let rules: AnalysisRules = serde_json::from_value(serde_json::json!({
            "interval_ms": 1000, "min_samples": 100, "max_error_rate": 0.01, "max_p99_ms": null,
            "max_p99_ratio": 2.0, "max_prediction_shift": 0.2, "min_agreement": null
        }))
        .unwrap();
        assert_eq!(rules.max_prediction_shift, Some(0.2));
        assert_eq!(rules.alpha, 0.01);
        assert_eq!(rules.rescore_percent, 20);
        assert_eq!(rules.min_rescore_agreement, Some(0.9));
        rules.validate().unwrap();
        let stats: WindowStats = serde_json::from_value(serde_json::json!({
            "stable": {"requests": 1, "errors": 0, "latency": [], "predictions": {}},
            "candidate": {"requests": 1, "errors": 0, "latency": [], "predictions": {}},
            "compared": 0, "agreed": 0
        }))
        .unwrap();
        assert_eq!(stats.rescored, 0);
        let verdict: Verdict =
            serde_json::from_value(serde_json::json!({"verdict": "pass"})).unwrap();
        assert_eq!(verdict.label(), "pass");
        let measurement: Measurement = serde_json::from_value(serde_json::json!({
            "rule": "error_rate", "candidate": 0.0, "stable": null, "threshold": 0.01,
            "samples": 100, "result": "pass"
        }))
        .unwrap();
        assert_eq!(measurement.p_value, None);
    }

    #[test]
    fn relative_rules_use_the_reference_when_the_stable_gets_no_traffic() {
        let stats = WindowStats {
            stable: VariantWindow::default(),
            candidate: window(100, 0, 450, &[("0", 62), ("1", 38)]),
            rescored: 20,
            rescore_agreed: 20,
            ..Default::default()
        };
        let reference = window(950, 0, 400, &[("0", 600), ("1", 350)]);
        let rules = AnalysisRules {
            min_agreement: None,
            ..rules()
        };
        let analysis = analyze(&rules, &stats, Some(&reference), FULL, 0, 0);
        assert!(
            matches!(analysis.verdict, Verdict::Pass { .. }),
            "{analysis:?}"
        );
    }

    #[test]
    fn a_full_step_without_a_reference_is_decided_on_what_it_can_measure() {
        // A single `--steps 100`: the stable answers nothing live and no earlier stage measured
        // it. The reported case waited forever on "latency_p90_ratio: 0 of 20"; the ratio is
        // not applicable, and the candidate is judged on its own figures and re-scored rows.
        let mut stats = WindowStats {
            candidate: window(1_000, 0, 450, &[("0", 620), ("1", 380)]),
            rescored: 200,
            rescore_agreed: 200,
            ..Default::default()
        };
        stats.same_rows.stable = counts(&[("0", 124), ("1", 76)]);
        stats.same_rows.candidate = counts(&[("0", 124), ("1", 76)]);
        let rules = AnalysisRules {
            min_samples: 20,
            // On by default for mirrored strategies: a canary stage mirrors nothing.
            min_agreement: Some(0.9),
            ..AnalysisRules::default()
        };
        let analysis = analyze(&rules, &stats, None, FULL, 0, 0);
        let Verdict::Pass { detail } = &analysis.verdict else {
            panic!("{analysis:?}");
        };
        // 1000 answered requests on the candidate alone read p99, not a p90 held down by an
        // empty stable side.
        let ratio = measurement(&analysis, "latency_p99_ratio");
        assert_eq!(ratio.result, RuleResult::NotApplicable, "{ratio:?}");
        assert!(ratio.detail.contains("--max-p99-ms"), "{}", ratio.detail);
        assert!(
            detail.contains("latency_p99_ratio: not applicable"),
            "{detail}"
        );
        assert_eq!(
            measurement(&analysis, "agreement").result,
            RuleResult::NotApplicable
        );
        let shift = measurement(&analysis, "prediction_shift");
        assert_eq!(
            (shift.result, shift.basis.as_deref()),
            (RuleResult::Pass, Some("same_rows")),
            "{shift:?}"
        );
        let absolute = AnalysisRules {
            max_p99_ms: Some(100.0),
            ..rules.clone()
        };
        let analysis = analyze(&absolute, &stats, None, FULL, 0, 0);
        assert_eq!(
            measurement(&analysis, "latency_p99_ms").result,
            RuleResult::Pass
        );

        // Still a real judgement: an erroring candidate at 100 % fails.
        let mut erroring = stats.clone();
        erroring.candidate = window(1_000, 100, 450, &[("0", 620), ("1", 280)]);
        let analysis = analyze(&rules, &erroring, None, FULL, 0, 0);
        assert!(
            matches!(&analysis.verdict, Verdict::Fail { rule, .. } if rule == "error_rate"),
            "{analysis:?}"
        );

        // Without re-scoring there are no rows both answered: the shift is not applicable
        // either, rather than waiting for rows that never come.
        let no_rescore = AnalysisRules {
            rescore_percent: 0,
            ..rules
        };
        let analysis = analyze(&no_rescore, &stats, None, FULL, 0, 0);
        assert_eq!(
            measurement(&analysis, "prediction_shift").result,
            RuleResult::NotApplicable
        );
        assert!(
            matches!(analysis.verdict, Verdict::Pass { .. }),
            "{analysis:?}"
        );
        // At a capped 100 % (a protected deployment) the stable does answer: the ratio waits.
        let capped = analyze(
            &no_rescore,
            &stats,
            None,
            Traffic {
                weight: 10,
                mirror: 0,
            },
            0,
            0,
        );
        assert_eq!(
            measurement(&capped, "latency_p90_ratio").result,
            RuleResult::NotEnoughSamples
        );
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
}
