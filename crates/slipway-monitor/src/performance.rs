//! A model's performance: realized, from predictions joined with their true labels, and
//! estimated before labels arrive, from a classifier's own probabilities (confidence-based
//! performance estimation, NannyML's CBPE).
//!
//! Classes are compared as text (`1` and `"1"` are one class), so integer labels, ZipMap keys
//! and uploaded labels meet. Classification metrics follow scikit-learn: precision, recall and
//! F1 for the class `1` when every class is 0 or 1 (`average="binary"`), else macro-averaged
//! over the classes seen in the truths and predictions; ROC AUC from the probability of class
//! `1` (binary) or one-vs-rest macro-averaged (multiclass, every class a column of the
//! probabilities); log loss with probabilities clipped to `[1e-15, 1 - 1e-15]`.
//!
//! CBPE assumes calibrated probabilities: a row predicted with probability `p` for its class
//! is right with probability `p`. Estimated accuracy is the mean of the predicted class's
//! probability; estimated ROC AUC integrates the expected true- and false-positive rates
//! (each row counts `p` as a positive and `1 - p` as a negative at every threshold at or below
//! `p`) by the trapezoid rule, one-vs-rest macro-averaged for several classes. Both are checked
//! against scikit-learn and these definitions in `tests/cases/performance.json`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One labeled prediction of a classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Labeled {
    pub truth: String,
    pub predicted: String,
    /// Probability per class, when the model gives them.
    pub probabilities: Option<Vec<(String, f64)>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub rows: u64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub rows: u64,
    pub mae: f64,
    pub rmse: f64,
    /// `None` when the truths are all equal (R² undefined).
    pub r2: Option<f64>,
}

/// Estimated from probabilities alone (CBPE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimated {
    pub rows: u64,
    pub accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
}

fn binary(classes: &BTreeSet<&str>) -> bool {
    classes.iter().all(|c| *c == "0" || *c == "1")
}

/// Realized classification metrics; `None` without rows.
pub fn classification(rows: &[Labeled]) -> Option<Classification> {
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as f64;
    let correct = rows.iter().filter(|r| r.truth == r.predicted).count() as f64;
    let classes: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| [r.truth.as_str(), r.predicted.as_str()])
        .collect();
    let per_class = |class: &str| {
        let tp = rows
            .iter()
            .filter(|r| r.truth == class && r.predicted == class)
            .count() as f64;
        let predicted = rows.iter().filter(|r| r.predicted == class).count() as f64;
        let actual = rows.iter().filter(|r| r.truth == class).count() as f64;
        let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
        let recall = if actual > 0.0 { tp / actual } else { 0.0 };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        (precision, recall, f1)
    };
    let (precision, recall, f1) = if binary(&classes) {
        per_class("1")
    } else {
        let k = classes.len() as f64;
        classes.iter().fold((0.0, 0.0, 0.0), |(p, r, f), class| {
            let (cp, cr, cf) = per_class(class);
            (p + cp / k, r + cr / k, f + cf / k)
        })
    };
    let probabilities: Option<Vec<BTreeMap<&str, f64>>> = rows
        .iter()
        .map(|r| {
            r.probabilities
                .as_ref()
                .map(|p| p.iter().map(|(c, v)| (c.as_str(), *v)).collect())
        })
        .collect();
    let (roc_auc, log_loss) = match &probabilities {
        Some(probabilities) => {
            let truths: Vec<&str> = rows.iter().map(|r| r.truth.as_str()).collect();
            (
                realized_auc(&truths, probabilities, &classes),
                Some(mean_log_loss(&truths, probabilities)),
            )
        }
        None => (None, None),
    };
    Some(Classification {
        rows: rows.len() as u64,
        accuracy: correct / n,
        precision,
        recall,
        f1,
        roc_auc,
        log_loss,
    })
}

fn mean_log_loss(truths: &[&str], probabilities: &[BTreeMap<&str, f64>]) -> f64 {
    const EPS: f64 = 1e-15;
    let total: f64 = truths
        .iter()
        .zip(probabilities)
        .map(|(truth, p)| {
            let sum: f64 = p.values().sum();
            let own = p.get(truth).copied().unwrap_or(0.0) / if sum > 0.0 { sum } else { 1.0 };
            -own.clamp(EPS, 1.0 - EPS).ln()
        })
        .sum();
    total / truths.len() as f64
}

/// ROC AUC of `scores` for `positives` (Mann-Whitney: ties count a half), `None` when a side is
/// empty.
fn auc(scores: &[(f64, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|s| s.1).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Average ranks over ties, then the rank-sum statistic.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        rank_sum += rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

fn realized_auc(
    truths: &[&str],
    probabilities: &[BTreeMap<&str, f64>],
    classes: &BTreeSet<&str>,
) -> Option<f64> {
    if binary(classes) {
        let scores: Vec<(f64, bool)> = truths
            .iter()
            .zip(probabilities)
            .map(|(t, p)| (p.get("1").copied().unwrap_or(0.0), *t == "1"))
            .collect();
        return auc(&scores);
    }
    let columns: BTreeSet<&str> = probabilities
        .iter()
        .flat_map(|p| p.keys().copied())
        .collect();
    let mut per_class = Vec::new();
    for class in &columns {
        let scores: Vec<(f64, bool)> = truths
            .iter()
            .zip(probabilities)
            .map(|(t, p)| (p.get(class).copied().unwrap_or(0.0), t == class))
            .collect();
        per_class.push(auc(&scores)?);
    }
    (!per_class.is_empty()).then(|| per_class.iter().sum::<f64>() / per_class.len() as f64)
}

/// Realized regression metrics; `None` without rows.
pub fn regression(pairs: &[(f64, f64)]) -> Option<Regression> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mae = pairs.iter().map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
    let mse = pairs.iter().map(|(t, p)| (t - p) * (t - p)).sum::<f64>() / n;
    let mean = pairs.iter().map(|(t, _)| t).sum::<f64>() / n;
    let total = pairs
        .iter()
        .map(|(t, _)| (t - mean) * (t - mean))
        .sum::<f64>()
        / n;
    Some(Regression {
        rows: pairs.len() as u64,
        mae,
        rmse: mse.sqrt(),
        r2: (total > 0.0).then(|| 1.0 - mse / total),
    })
}

/// Expected ROC AUC of one class's probabilities, if they were calibrated.
fn expected_auc(p: &[f64]) -> Option<f64> {
    let positives: f64 = p.iter().sum();
    let negatives: f64 = p.iter().map(|v| 1.0 - v).sum();
    if positives <= 0.0 || negatives <= 0.0 {
        return None;
    }
    let mut sorted = p.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut tp, mut fp, mut area, mut last_tpr, mut last_fpr) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j] == sorted[i] {
            tp += sorted[j];
            fp += 1.0 - sorted[j];
            j += 1;
        }
        let (tpr, fpr) = (tp / positives, fp / negatives);
        area += (fpr - last_fpr) * (tpr + last_tpr) / 2.0;
        (last_tpr, last_fpr) = (tpr, fpr);
        i = j;
    }
    Some(area)
}

/// Performance estimated from probabilities alone; `None` without rows.
pub fn estimate(probabilities: &[Vec<(String, f64)>]) -> Option<Estimated> {
    if probabilities.is_empty() {
        return None;
    }
    let normalized: Vec<BTreeMap<&str, f64>> = probabilities
        .iter()
        .map(|row| {
            let sum: f64 = row.iter().map(|(_, v)| v).sum();
            row.iter()
                .map(|(c, v)| (c.as_str(), if sum > 0.0 { v / sum } else { 0.0 }))
                .collect()
        })
        .collect();
    let accuracy = normalized
        .iter()
        .map(|p| p.values().copied().fold(0.0, f64::max))
        .sum::<f64>()
        / normalized.len() as f64;
    let classes: BTreeSet<&str> = normalized.iter().flat_map(|p| p.keys().copied()).collect();
    let column = |class: &str| -> Vec<f64> {
        normalized
            .iter()
            .map(|p| p.get(class).copied().unwrap_or(0.0))
            .collect()
    };
    let roc_auc = if binary(&classes) && classes.contains("1") {
        expected_auc(&column("1"))
    } else {
        let per_class: Option<Vec<f64>> =
            classes.iter().map(|c| expected_auc(&column(c))).collect();
        per_class
            .filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    Some(Estimated {
        rows: probabilities.len() as u64,
        accuracy,
        roc_auc,
    })
}
