//! An alert rule's condition: one signal, optionally with an argument, compared with a number
//! (`drift_share >= 0.5`, `feature_drift(amount)`, `performance_drop(accuracy) > 0.05`,
//! `latency_p99_ms > 300`, `no_traffic`). Deliberately not PromQL: each signal is something
//! slipway measures itself, and a condition names exactly one, so an alert always says which
//! number crossed which line.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// Where a signal's value comes from, which decides when it is read and what "no data" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The deployment's latest closed monitoring window.
    Drift,
    /// Logged predictions joined with late labels, over the rule's window.
    Performance,
    /// Every answered request of every data plane, over the rule's window.
    Serving,
    /// The serving minutes the store keeps, against the deployment's SLO.
    Slo,
}

/// A measured quantity of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Share of the features that drifted in the latest window (0 to 1).
    DriftShare,
    /// Number of features that drifted in the latest window.
    DriftedFeatures,
    /// The latest window's dataset-drift verdict (1 or 0).
    DatasetDrift,
    /// One feature's drift verdict in the latest window (1 or 0).
    FeatureDrift(String),
    /// The predictions' own drift verdict in the latest window (1 or 0).
    PredictionDrift,
    /// How much a realized metric is worse than the reference's (positive = worse).
    PerformanceDrop(String),
    /// How much a CBPE estimate is worse than the reference's (positive = worse).
    EstimatedPerformanceDrop(String),
    /// Share of requests answered with a 5xx (errors, timeouts, shed load).
    ErrorRate,
    /// The 99th percentile of request latency, in milliseconds.
    LatencyP99Ms,
    /// Requests received.
    Requests,
    /// No request at all over the window (1 or 0).
    NoTraffic,
    /// How fast the deployment's SLO budget burns (1: exactly over the SLO's window), the
    /// lower of the burn over the rule's window and over a twelfth of it (the SRE workbook's
    /// multi-window alert: both must burn, so it fires fast and resolves fast).
    SloBurn(crate::slo::SloKind),
}

/// Metrics a performance drop may name; the first set is better when higher.
const HIGHER_IS_BETTER: [&str; 6] = ["accuracy", "precision", "recall", "f1", "roc_auc", "r2"];
const LOWER_IS_BETTER: [&str; 3] = ["log_loss", "mae", "rmse"];
const ESTIMATED: [&str; 2] = ["accuracy", "roc_auc"];

/// Whether a larger value of `metric` is better (None: not a metric slipway reports).
pub fn higher_is_better(metric: &str) -> Option<bool> {
    if HIGHER_IS_BETTER.contains(&metric) {
        Some(true)
    } else if LOWER_IS_BETTER.contains(&metric) {
        Some(false)
    } else {
        None
    }
}

impl Signal {
    pub fn source(&self) -> Source {
        match self {
            Signal::DriftShare
            | Signal::DriftedFeatures
            | Signal::DatasetDrift
            | Signal::FeatureDrift(_)
            | Signal::PredictionDrift => Source::Drift,
            Signal::PerformanceDrop(_) | Signal::EstimatedPerformanceDrop(_) => Source::Performance,
            Signal::ErrorRate | Signal::LatencyP99Ms | Signal::Requests | Signal::NoTraffic => {
                Source::Serving
            }
            Signal::SloBurn(_) => Source::Slo,
        }
    }

    /// A verdict rather than a quantity: the condition is the signal itself.
    pub fn is_boolean(&self) -> bool {
        matches!(
            self,
            Signal::DatasetDrift
                | Signal::FeatureDrift(_)
                | Signal::PredictionDrift
                | Signal::NoTraffic
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Signal::DriftShare => "drift_share",
            Signal::DriftedFeatures => "drifted_features",
            Signal::DatasetDrift => "dataset_drift",
            Signal::FeatureDrift(_) => "feature_drift",
            Signal::PredictionDrift => "prediction_drift",
            Signal::PerformanceDrop(_) => "performance_drop",
            Signal::EstimatedPerformanceDrop(_) => "estimated_performance_drop",
            Signal::ErrorRate => "error_rate",
            Signal::LatencyP99Ms => "latency_p99_ms",
            Signal::Requests => "requests",
            Signal::NoTraffic => "no_traffic",
            Signal::SloBurn(_) => "slo_burn",
        }
    }

    pub fn argument(&self) -> Option<&str> {
        match self {
            Signal::FeatureDrift(a)
            | Signal::PerformanceDrop(a)
            | Signal::EstimatedPerformanceDrop(a) => Some(a),
            Signal::SloBurn(kind) => Some(kind.as_str()),
            _ => None,
        }
    }
}

/// Every signal's name, for error messages and docs.
pub const SIGNALS: [&str; 12] = [
    "drift_share",
    "drifted_features",
    "dataset_drift",
    "feature_drift(FEATURE)",
    "prediction_drift",
    "performance_drop(METRIC)",
    "estimated_performance_drop(accuracy|roc_auc)",
    "error_rate",
    "latency_p99_ms",
    "requests",
    "no_traffic",
    "slo_burn(availability|latency)",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

/// A parsed condition; written back as the text it was parsed from (normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub signal: Signal,
    /// None for a boolean signal used bare.
    pub comparison: Option<(Op, f64)>,
}

impl Condition {
    /// Whether `value` (the signal's current value) meets the condition.
    pub fn holds(&self, value: f64) -> bool {
        match self.comparison {
            Some((op, threshold)) => op.holds(value, threshold),
            None => value >= 0.5,
        }
    }

    pub fn threshold(&self) -> Option<f64> {
        self.comparison.map(|(_, t)| t)
    }

    pub fn parse(text: &str) -> Result<Condition> {
        let bad = |why: String| {
            Error::invalid(format!(
                "alert condition '{text}': {why}; a condition is SIGNAL [OP NUMBER] with a signal among {} and OP among > >= < <= == !=",
                SIGNALS.join(", ")
            ))
        };
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > 512 {
            return Err(bad("empty or longer than 512 characters".into()));
        }
        let name_end = trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(trimmed.len());
        let name = &trimmed[..name_end];
        let mut rest = trimmed[name_end..].trim_start();
        let mut argument = None;
        if let Some(inner) = rest.strip_prefix('(') {
            let close = inner
                .find(')')
                .ok_or_else(|| bad("an opening parenthesis is never closed".into()))?;
            let raw = inner[..close].trim();
            let unquoted = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                .unwrap_or(raw);
            if unquoted.is_empty() {
                return Err(bad(format!("{name}() needs an argument")));
            }
            argument = Some(unquoted.to_owned());
            rest = inner[close + 1..].trim_start();
        }
        let needs_argument = |what: &str| bad(format!("{name} needs an argument: {name}({what})"));
        let signal = match (name, argument) {
            ("drift_share", None) => Signal::DriftShare,
            ("drifted_features", None) => Signal::DriftedFeatures,
            ("dataset_drift", None) => Signal::DatasetDrift,
            ("prediction_drift", None) => Signal::PredictionDrift,
            ("error_rate", None) => Signal::ErrorRate,
            ("latency_p99_ms", None) => Signal::LatencyP99Ms,
            ("requests", None) => Signal::Requests,
            ("no_traffic", None) => Signal::NoTraffic,
            ("feature_drift", Some(feature)) => Signal::FeatureDrift(feature),
            ("feature_drift", None) => return Err(needs_argument("FEATURE")),
            ("performance_drop", Some(metric)) => {
                if higher_is_better(&metric).is_none() {
                    return Err(bad(format!(
                        "'{metric}' is not a metric slipway reports (one of {}, {})",
                        HIGHER_IS_BETTER.join(", "),
                        LOWER_IS_BETTER.join(", ")
                    )));
                }
                Signal::PerformanceDrop(metric)
            }
            ("performance_drop", None) => return Err(needs_argument("METRIC")),
            ("estimated_performance_drop", Some(metric)) => {
                if !ESTIMATED.contains(&metric.as_str()) {
                    return Err(bad(format!(
                        "only {} are estimated without labels, not '{metric}'",
                        ESTIMATED.join(" and ")
                    )));
                }
                Signal::EstimatedPerformanceDrop(metric)
            }
            ("estimated_performance_drop", None) => return Err(needs_argument("accuracy")),
            ("slo_burn", Some(kind)) => {
                Signal::SloBurn(crate::slo::SloKind::parse(&kind).ok_or_else(|| {
                    bad(format!(
                        "slo_burn takes availability or latency, not '{kind}'"
                    ))
                })?)
            }
            ("slo_burn", None) => return Err(needs_argument("availability")),
            (known, Some(_))
                if [
                    "drift_share",
                    "drifted_features",
                    "dataset_drift",
                    "prediction_drift",
                    "error_rate",
                    "latency_p99_ms",
                    "requests",
                    "no_traffic",
                ]
                .contains(&known) =>
            {
                return Err(bad(format!("{known} takes no argument")));
            }
            (unknown, _) => return Err(bad(format!("unknown signal '{unknown}'"))),
        };
        let comparison = if rest.is_empty() {
            None
        } else {
            let (op, number) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("==", Op::Eq),
                ("!=", Op::Ne),
                (">", Op::Gt),
                ("<", Op::Lt),
            ]
            .iter()
            .find_map(|(token, op)| rest.strip_prefix(token).map(|n| (*op, n.trim())))
            .ok_or_else(|| bad(format!("expected a comparison after {name}, got '{rest}'")))?;
            let threshold: f64 = number
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| bad(format!("'{number}' is not a finite number")))?;
            Some((op, threshold))
        };
        if comparison.is_none() && !signal.is_boolean() {
            return Err(bad(format!(
                "{name} is a number: compare it, e.g. `{name} > 0.1`"
            )));
        }
        Ok(Condition { signal, comparison })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.signal.name())?;
        if let Some(argument) = self.signal.argument() {
            write!(f, "({argument})")?;
        }
        if let Some((op, threshold)) = self.comparison {
            write!(f, " {} {threshold}", op.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Condition::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_print_back() {
        for (text, printed) in [
            ("drift_share >= 0.5", "drift_share >= 0.5"),
            ("  error_rate>0.05 ", "error_rate > 0.05"),
            ("feature_drift(amount)", "feature_drift(amount)"),
            (
                "feature_drift(\"merchant id\")",
                "feature_drift(merchant id)",
            ),
            (
                "performance_drop(accuracy) > 0.05",
                "performance_drop(accuracy) > 0.05",
            ),
            (
                "estimated_performance_drop(roc_auc) >= 0.1",
                "estimated_performance_drop(roc_auc) >= 0.1",
            ),
            ("no_traffic", "no_traffic"),
            ("requests < 10", "requests < 10"),
            ("latency_p99_ms > 300", "latency_p99_ms > 300"),
        ] {
            let condition = Condition::parse(text).unwrap();
            assert_eq!(condition.to_string(), printed);
            assert_eq!(Condition::parse(printed).unwrap(), condition);
        }
    }

    #[test]
    fn conditions_hold_as_written() {
        let c = Condition::parse("error_rate > 0.05").unwrap();
        assert!(c.holds(0.06) && !c.holds(0.05));
        let c = Condition::parse("drift_share >= 0.5").unwrap();
        assert!(c.holds(0.5) && !c.holds(0.49));
        let c = Condition::parse("no_traffic").unwrap();
        assert!(c.holds(1.0) && !c.holds(0.0));
        let c = Condition::parse("feature_drift(a) == 0").unwrap();
        assert!(c.holds(0.0) && !c.holds(1.0));
    }

    #[test]
    fn bad_conditions_say_what_to_fix() {
        for (text, says) in [
            ("", "empty"),
            ("drift", "unknown signal 'drift'"),
            ("error_rate", "compare it"),
            ("error_rate >", "not a finite number"),
            ("error_rate > NaN", "not a finite number"),
            ("error_rate ~ 1", "expected a comparison"),
            ("feature_drift", "needs an argument"),
            ("feature_drift()", "needs an argument"),
            ("feature_drift(a", "never closed"),
            ("performance_drop(speed) > 1", "not a metric"),
            (
                "estimated_performance_drop(f1) > 1",
                "only accuracy and roc_auc",
            ),
            ("error_rate(x) > 1", "takes no argument"),
            ("error_rate > 1 and", "not a finite number"),
        ] {
            let error = Condition::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
