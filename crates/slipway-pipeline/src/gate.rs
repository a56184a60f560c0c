//! Release gate rules: `METRIC OP BOUND`, where the bound is a number or the champion's value
//! of the same metric with a margin (`f1 >= champion - 0.01`, `rmse <= champion * 1.05`), and
//! their verdicts on measured numbers, each explained with its figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;

/// What a gate can measure, and whether more is better (the default rules' direction).
pub const METRICS: [(&str, bool); 18] = [
    ("accuracy", true),
    ("precision", true),
    ("recall", true),
    ("f1", true),
    ("roc_auc", true),
    ("log_loss", false),
    ("mae", false),
    ("rmse", false),
    ("r2", true),
    ("latency_p50_ms", false),
    ("latency_p99_ms", false),
    ("throughput_rows_per_s", true),
    ("cost_per_1000", false),
    ("model_size_mb", false),
    ("missing_share", false),
    ("out_of_range_share", false),
    ("demographic_parity_difference", false),
    ("equal_opportunity_difference", false),
];

/// Fairness ratio measured too (not in METRICS' direction table: a ratio is judged against a
/// fixed floor, never a champion).
const EXTRA_METRICS: [&str; 2] = ["disparate_impact_ratio", "unseen_category_share"];

fn known(metric: &str) -> bool {
    METRICS.iter().any(|(m, _)| *m == metric) || EXTRA_METRICS.contains(&metric)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
        }
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Ge => value >= bound,
            Op::Gt => value > bound,
            Op::Le => value <= bound,
            Op::Lt => value < bound,
        }
    }
}

/// The right-hand side: a number, or `champion * factor + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Bound {
    Absolute(f64),
    Champion { factor: f64, offset: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateRule {
    pub text: String,
    pub metric: String,
    pub op: Op,
    pub bound: Bound,
}

fn number(text: &str, rule: &str) -> Result<f64, PipelineError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| {
            PipelineError::Invalid(format!(
                "gate rule '{rule}': '{}' is not a number",
                text.trim()
            ))
        })
}

impl GateRule {
    pub fn parse(text: &str) -> Result<GateRule, PipelineError> {
        let rule = text.trim();
        let bad = |why: &str| {
            PipelineError::Invalid(format!(
                "gate rule '{rule}': {why}; write METRIC OP BOUND, e.g. `f1 >= champion - 0.01` or `latency_p99_ms <= 20`"
            ))
        };
        let (metric, op, rest) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)]
            .iter()
            .find_map(|(token, op)| {
                rule.split_once(token)
                    .map(|(left, right)| (left.trim(), *op, right.trim()))
            })
            .ok_or_else(|| bad("no comparison (>=, >, <=, <)"))?;
        if !known(metric) {
            let names: Vec<&str> = METRICS
                .iter()
                .map(|(m, _)| *m)
                .chain(EXTRA_METRICS)
                .collect();
            return Err(bad(&format!(
                "unknown metric '{metric}' (one of {})",
                names.join(", ")
            )));
        }
        let bound = match rest.strip_prefix("champion") {
            None => Bound::Absolute(number(rest, rule)?),
            Some(margin) => {
                let margin = margin.trim();
                if margin.is_empty() {
                    Bound::Champion {
                        factor: 1.0,
                        offset: 0.0,
                    }
                } else if let Some(n) = margin.strip_prefix('+') {
                    Bound::Champion {
                        factor: 1.0,
                        offset: number(n, rule)?,
                    }
                } else if let Some(n) = margin.strip_prefix('-') {
                    Bound::Champion {
                        factor: 1.0,
                        offset: -number(n, rule)?,
                    }
                } else if let Some(n) = margin.strip_prefix('*') {
                    Bound::Champion {
                        factor: number(n, rule)?,
                        offset: 0.0,
                    }
                } else {
                    return Err(bad("after `champion` comes + N, - N or * N"));
                }
            }
        };
        Ok(GateRule {
            text: rule.to_owned(),
            metric: metric.to_owned(),
            op,
            bound,
        })
    }

    pub fn needs_champion(&self) -> bool {
        matches!(self.bound, Bound::Champion { .. })
    }
}

/// A rules file: `rules: [...]`, each a rule as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub rules: Vec<String>,
}

pub fn read_rules(yaml: &str) -> Result<Vec<GateRule>, PipelineError> {
    let file: RulesFile =
        yaml_serde::from_str(yaml).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    if file.rules.is_empty() {
        return Err(PipelineError::Invalid(
            "a gate's rules file needs at least one rule".into(),
        ));
    }
    file.rules.iter().map(|r| GateRule::parse(r)).collect()
}

/// The rules a gate applies when given none: the candidate no worse than the champion on its
/// task's quality metrics beyond `tolerance` (absolute), and the holdout like the reference
/// (no more missing values or values out of range than `tolerance` either). Without a
/// champion, only the data checks.
pub fn default_rules(quality: &[&str], champion: bool, tolerance: f64) -> Vec<GateRule> {
    let mut rules = Vec::new();
    if champion {
        for metric in quality {
            let Some((_, higher)) = METRICS.iter().find(|(m, _)| m == metric) else {
                continue;
            };
            let text = if *higher {
                format!("{metric} >= champion - {tolerance}")
            } else {
                format!("{metric} <= champion + {tolerance}")
            };
            if let Ok(rule) = GateRule::parse(&text) {
                rules.push(rule);
            }
        }
    }
    for text in ["missing_share <= 0.05", "out_of_range_share <= 0.05"] {
        if let Ok(rule) = GateRule::parse(text) {
            rules.push(rule);
        }
    }
    rules
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleVerdict {
    pub rule: String,
    pub metric: String,
    pub candidate: Option<f64>,
    pub champion: Option<f64>,
    /// The bound the candidate was held to.
    pub threshold: Option<f64>,
    pub passed: bool,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateVerdict {
    pub passed: bool,
    pub rules: Vec<RuleVerdict>,
}

fn show(value: f64) -> String {
    if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.3e}")
    } else {
        format!("{value:.4}")
    }
}

/// Judges each rule on the measured numbers; a metric that was not measured fails its rule
/// (a gate that cannot check something does not pass it).
pub fn evaluate(
    rules: &[GateRule],
    candidate: &BTreeMap<String, f64>,
    champion: Option<&BTreeMap<String, f64>>,
) -> GateVerdict {
    let rules: Vec<RuleVerdict> = rules
        .iter()
        .map(|rule| {
            let value = candidate.get(&rule.metric).copied();
            let champion_value = champion.and_then(|c| c.get(&rule.metric).copied());
            let threshold = match rule.bound {
                Bound::Absolute(n) => Some(n),
                Bound::Champion { factor, offset } => champion_value.map(|c| c * factor + offset),
            };
            let (passed, explanation) = match (value, threshold) {
                (None, _) => (
                    false,
                    format!("{} was not measured for the candidate", rule.metric),
                ),
                (Some(_), None) if champion.is_none() => (
                    false,
                    "the rule compares with the champion, and none was given (--against)".into(),
                ),
                (Some(_), None) => (
                    false,
                    format!("{} was not measured for the champion", rule.metric),
                ),
                (Some(v), Some(t)) => {
                    let passed = rule.op.holds(v, t);
                    let against = match (rule.bound, champion_value) {
                        (Bound::Champion { .. }, Some(c)) => {
                            format!(" (the champion's {} is {})", rule.metric, show(c))
                        }
                        _ => String::new(),
                    };
                    (
                        passed,
                        format!(
                            "{} {} is {} {} {}{against}",
                            rule.metric,
                            show(v),
                            if passed { "within" } else { "outside" },
                            rule.op.as_str(),
                            show(t)
                        ),
                    )
                }
            };
            RuleVerdict {
                rule: rule.text.clone(),
                metric: rule.metric.clone(),
                candidate: value,
                champion: champion_value,
                threshold,
                passed,
                explanation,
            }
        })
        .collect();
    GateVerdict {
        passed: rules.iter().all(|r| r.passed),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn rules_parse_with_numbers_and_champion_margins() {
        let r = GateRule::parse("f1 >= champion - 0.01").unwrap();
        assert_eq!(
            r.bound,
            Bound::Champion {
                factor: 1.0,
                offset: -0.01
            }
        );
        assert_eq!(r.op, Op::Ge);
        let r = GateRule::parse(" rmse <= champion * 1.05 ").unwrap();
        assert_eq!(
            r.bound,
            Bound::Champion {
                factor: 1.05,
                offset: 0.0
            }
        );
        assert_eq!(
            GateRule::parse("latency_p99_ms < 20").unwrap().bound,
            Bound::Absolute(20.0)
        );
        for (text, says) in [
            ("f1 = 0.9", "no comparison"),
            ("speed >= 1", "unknown metric 'speed'"),
            ("f1 >= lots", "not a number"),
            ("f1 >= champion / 2", "after `champion`"),
            ("f1 >= NaN", "not a number"),
        ] {
            let error = GateRule::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_worse_candidate_fails_and_a_good_one_passes_with_reasons() {
        let rules = vec![
            GateRule::parse("f1 >= champion - 0.01").unwrap(),
            GateRule::parse("latency_p99_ms <= 20").unwrap(),
        ];
        let champion = measured(&[("f1", 0.90), ("latency_p99_ms", 5.0)]);
        let good = evaluate(
            &rules,
            &measured(&[("f1", 0.895), ("latency_p99_ms", 3.0)]),
            Some(&champion),
        );
        assert!(good.passed, "{good:#?}");
        let worse = evaluate(
            &rules,
            &measured(&[("f1", 0.85), ("latency_p99_ms", 3.0)]),
            Some(&champion),
        );
        assert!(!worse.passed);
        assert_eq!(
            worse.rules[0].explanation,
            "f1 0.8500 is outside >= 0.8900 (the champion's f1 is 0.9000)"
        );
        assert!(worse.rules[1].passed);
        // What was not measured, and a champion rule without a champion, fail.
        let blind = evaluate(&rules, &measured(&[("f1", 0.99)]), None);
        assert!(!blind.passed);
        assert!(blind.rules[0].explanation.contains("--against"));
        assert!(blind.rules[1].explanation.contains("not measured"));
    }

    #[test]
    fn default_rules_follow_each_metrics_direction() {
        let rules = default_rules(&["f1", "log_loss"], true, 0.01);
        let texts: Vec<&str> = rules.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "f1 >= champion - 0.01",
                "log_loss <= champion + 0.01",
                "missing_share <= 0.05",
                "out_of_range_share <= 0.05"
            ]
        );
        assert_eq!(default_rules(&["f1"], false, 0.01).len(), 2);
        let file =
            read_rules("rules:\n  - accuracy >= 0.9\n  - disparate_impact_ratio >= 0.8\n").unwrap();
        assert_eq!(file.len(), 2);
        assert!(read_rules("rules: []\n").is_err());
        assert!(
            read_rules("rulez: []\n")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }
}
