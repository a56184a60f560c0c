//! The comparison of a reference with a current dataset: per column (independent, so a caller
//! may run columns in parallel) and then per dataset (the multiple-testing correction and the
//! drift share), in the shape `slipway drift` prints.

use serde::{Deserialize, Serialize};

use crate::categorical::{contingency, pool_sparse, tvd_with_interval};
use crate::column::ColumnType;
use crate::ecdf::Sorted;
use crate::error::MonitorError;
use crate::ks::{KsMethod, gcd, ks_from_numerator, ks_two_sample};
use crate::profile::{ColumnProfile, NumericProfile};
use crate::stattest::{Operator, Sides, default_stattest, run_stattest, stattest};

/// How drift is decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Significance (corrected over columns) and a minimum effect size; see the crate docs.
    #[default]
    Auto,
    /// Evidently 0.7's `DataDriftPreset` defaults, exactly.
    Evidently,
}

/// The multiple-testing correction of auto mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm's step-down: the family-wise error stays at alpha, more power than Bonferroni.
    #[default]
    Holm,
    Bonferroni,
    None,
}

/// Everything a comparison can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftOptions {
    pub mode: Mode,
    /// One Evidently stattest name for every column, instead of the mode's choice.
    pub stattest: Option<String>,
    /// The threshold of the forced stattest (its Evidently default otherwise).
    pub threshold: Option<f64>,
    /// Dataset drift when the share of drifted columns is at least this (Evidently: 0.5).
    pub drift_share: f64,
    /// Auto mode: family-wise significance level over the tested columns.
    pub alpha: f64,
    pub correction: Correction,
    /// Auto mode: coverage of the effect sizes' confidence intervals.
    pub confidence: f64,
    /// Auto mode: the smallest KS distance D (numeric columns) that counts as drift.
    pub min_effect_ks: f64,
    /// Auto mode: the smallest total variation distance (categorical columns) that counts.
    pub min_effect_tvd: f64,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            mode: Mode::Auto,
            stattest: None,
            threshold: None,
            drift_share: 0.5,
            alpha: 0.05,
            correction: Correction::Holm,
            confidence: 0.95,
            min_effect_ks: 0.05,
            min_effect_tvd: 0.05,
        }
    }
}

impl DriftOptions {
    pub fn validate(&self) -> Result<(), MonitorError> {
        let unit = |v: f64| v > 0.0 && v < 1.0;
        if !unit(self.alpha) || !unit(self.confidence) {
            return Err(MonitorError::InvalidConfig(
                "alpha and confidence must lie in (0, 1)".to_owned(),
            ));
        }
        if !(0.0..=1.0).contains(&self.drift_share)
            || self.min_effect_ks < 0.0
            || self.min_effect_tvd < 0.0
        {
            return Err(MonitorError::InvalidConfig(
                "drift share and minimum effects must be non-negative".to_owned(),
            ));
        }
        if let Some(name) = &self.stattest
            && stattest(name).is_none()
        {
            return Err(MonitorError::UnknownStattest {
                name: name.clone(),
                kind: "any",
            });
        }
        Ok(())
    }
}

/// An effect size with its confidence interval and the minimum that counts as drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// `ks_distance` or `total_variation_distance`.
    pub name: String,
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub confidence: f64,
    pub min_effect: f64,
}

/// Data-quality numbers: reported beside drift, never mixed into it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataQuality {
    pub missing_reference: u64,
    pub missing_current: u64,
    pub missing_share_current: f64,
    /// Categories of the current sample the reference never had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen_categories: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen_share_current: Option<f64>,
    /// Current values outside the reference's [min, max].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_range_share_current: Option<f64>,
}

/// Present when a side is a sketch: the bounds on what that changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approximation {
    pub reference_rank_error: f64,
    pub current_rank_error: f64,
    /// |D_sketch - D_exact| is at most this.
    pub ks_statistic_bound: f64,
    /// |W_sketch - W_exact| (unnormed) is at most this.
    pub wasserstein_bound: f64,
}

/// One column's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub n_reference: u64,
    pub n_current: u64,
    /// Evidently's registry name of the test (empty when not tested).
    pub method: String,
    /// The p-value for tests, the distance for distances; in auto mode the p-value after the
    /// correction over columns. `None` when the column could not be tested.
    pub score: Option<f64>,
    pub threshold: f64,
    pub drift_detected: bool,
    /// Whether `score` is compared as a p-value or a distance, and how.
    pub operator: Operator,
    /// The p-value before the correction (auto mode) or the test's own statistic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_method: Option<KsMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    pub data_quality: DataQuality,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approximation: Option<Approximation>,
    /// Why this test, and why this verdict, in a sentence.
    pub reason: String,
}

impl ColumnDrift {
    fn tested_in_auto(&self) -> bool {
        self.effect.is_some() && self.p_value.is_some()
    }
}

/// The dataset-level verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDrift {
    /// Columns tested.
    pub columns: usize,
    pub drifted_columns: usize,
    pub share: f64,
    pub drift_share: f64,
    pub dataset_drift: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub mode: Mode,
    pub columns: Vec<ColumnDrift>,
    pub dataset: DatasetDrift,
}

/// Tests one column. Independent of every other column: run columns in parallel, then
/// [`decide`]. Fails only on inconsistent input (kinds, options); a column that cannot be
/// tested (a side with no values, text) comes back untested with the reason.
pub fn compare_column(
    name: &str,
    column_type: ColumnType,
    reference: &ColumnProfile,
    current: &ColumnProfile,
    options: &DriftOptions,
) -> Result<ColumnDrift, MonitorError> {
    if reference.kind() != current.kind() {
        return Err(MonitorError::KindMismatch(
            reference.kind().as_str(),
            current.kind().as_str(),
        ));
    }
    if column_type == ColumnType::Numerical && !matches!(reference, ColumnProfile::Numeric(_)) {
        return Err(MonitorError::KindMismatch(
            "numeric",
            reference.kind().as_str(),
        ));
    }
    let sides = Sides {
        column_type,
        reference,
        current,
    };
    let mut out = ColumnDrift {
        name: name.to_owned(),
        column_type,
        n_reference: reference.count(),
        n_current: current.count(),
        method: String::new(),
        score: None,
        threshold: 0.0,
        drift_detected: false,
        operator: Operator::AtMost,
        p_value: None,
        statistic: None,
        ks_method: None,
        effect: None,
        data_quality: data_quality(&sides)?,
        approximation: approximation(reference, current),
        reason: String::new(),
    };
    if out.n_reference == 0 || out.n_current == 0 {
        out.reason = "not tested: a side has no non-missing value".to_owned();
        return Ok(out);
    }
    if matches!(column_type, ColumnType::Text | ColumnType::Unknown) {
        out.reason = format!(
            "not tested: {} columns have no drift test here",
            column_type.as_str()
        );
        return Ok(out);
    }
    let forced = options.stattest.as_deref().map(|n| {
        stattest(n).ok_or_else(|| MonitorError::UnknownStattest {
            name: n.to_owned(),
            kind: column_type.as_str(),
        })
    });
    let chosen = match (forced, options.mode) {
        (Some(test), _) => Some((test?, "forced by the caller".to_owned())),
        (None, Mode::Evidently) => {
            // Evidently's choice only tells apart at most 2, at most 5 and more distinct values.
            const CAP: usize = 5;
            let n_unique = sides.n_unique_up_to(CAP)?;
            let distinct = if n_unique > CAP {
                format!("more than {CAP}")
            } else {
                n_unique.to_string()
            };
            default_stattest(column_type, out.n_reference, n_unique).map(|t| {
                (
                    t,
                    format!(
                        "Evidently's default for a {} column with {} reference values and {distinct} distinct values",
                        column_type.as_str(),
                        out.n_reference,
                    ),
                )
            })
        }
        (None, Mode::Auto) => None,
    };
    if let Some((test, why)) = chosen {
        let computed = run_stattest(test, &sides)?;
        let threshold = options
            .threshold
            .unwrap_or_else(|| test.default_threshold());
        out.method = test.name.to_owned();
        out.score = Some(computed.score);
        out.threshold = threshold;
        out.operator = test.operator;
        out.drift_detected = test.operator.drifted(computed.score, threshold);
        out.statistic = computed.statistic;
        out.ks_method = computed.ks_method;
        out.reason = why;
        return Ok(out);
    }
    auto_column(&mut out, &sides, options)?;
    Ok(out)
}

fn auto_column(
    out: &mut ColumnDrift,
    sides: &Sides<'_>,
    options: &DriftOptions,
) -> Result<(), MonitorError> {
    out.threshold = options.alpha;
    out.operator = Operator::AtMost;
    match (sides.column_type, sides.reference, sides.current) {
        (ColumnType::Numerical, ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) => {
            let (rd, cd) = (r.sorted_data(), c.sorted_data());
            let mut ks = ks_two_sample(rd.view(), cd.view());
            let sketch_bound = r.normalized_rank_error() + c.normalized_rank_error();
            if sketch_bound > 0.0 {
                // A sketch's D may be too large by the bound: test the smallest D it allows, so
                // the false-alarm rate stays at most alpha (the effect keeps the estimate).
                let g = gcd(ks.n_reference, ks.n_current);
                let lcm = (ks.n_reference / g) as f64 * ks.n_current as f64;
                let h = ((ks.statistic - sketch_bound).max(0.0) * lcm).floor() as u64;
                let statistic = ks.statistic;
                ks = ks_from_numerator(h, ks.n_reference, ks.n_current);
                ks.statistic = statistic;
            }
            let delta = (1.0 - options.confidence) / 2.0;
            let band = |n: u64, sketch_error: f64| {
                ((2.0 / delta).ln() / (2.0 * n as f64)).sqrt() + sketch_error
            };
            let half = band(ks.n_reference, r.normalized_rank_error())
                + band(ks.n_current, c.normalized_rank_error());
            out.method = "ks".to_owned();
            out.p_value = Some(ks.p_value);
            out.score = Some(ks.p_value);
            out.statistic = Some(ks.statistic);
            out.ks_method = Some(ks.method);
            out.effect = Some(Effect {
                name: "ks_distance".to_owned(),
                value: ks.statistic,
                ci_low: (ks.statistic - half).max(0.0),
                ci_high: (ks.statistic + half).min(1.0),
                confidence: options.confidence,
                min_effect: options.min_effect_ks,
            });
            out.reason =
                "auto: two-sample Kolmogorov-Smirnov test, effect D with a DKW band".to_owned();
        }
        _ => {
            let table = sides.table()?.without_unseen();
            if table.n_current() == 0 {
                out.reason = "not tested: every current value is an unseen category".to_owned();
                return Ok(());
            }
            let pooled = pool_sparse(&table, 5.0);
            let test = contingency(&pooled, false);
            let (tvd, low, high) = tvd_with_interval(&table, options.confidence);
            out.method = "chisquare".to_owned();
            out.p_value = Some(test.p_value);
            out.score = Some(test.p_value);
            out.statistic = Some(test.statistic);
            out.effect = Some(Effect {
                name: "total_variation_distance".to_owned(),
                value: tvd,
                ci_low: low,
                ci_high: high,
                confidence: options.confidence,
                min_effect: options.min_effect_tvd,
            });
            out.reason = format!(
                "auto: two-sample (contingency) chi-square over {} reference categories ({} after pooling sparse ones), unseen categories excluded, effect total variation distance",
                table.keys.len(),
                pooled.keys.len()
            );
        }
    }
    Ok(())
}

fn data_quality(sides: &Sides<'_>) -> Result<DataQuality, MonitorError> {
    let (r, c) = (sides.reference, sides.current);
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let mut dq = DataQuality {
        missing_reference: r.missing(),
        missing_current: c.missing(),
        missing_share_current: share(c.missing(), c.count() + c.missing()),
        ..DataQuality::default()
    };
    match (r, c) {
        (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) => {
            if let Some((min, max)) = r.range() {
                dq.out_of_range_share_current = Some(share(out_of_range(c, min, max), c.count()));
            }
        }
        _ => {
            let (kinds, count) = sides.table()?.unseen();
            dq.unseen_categories = Some(kinds);
            dq.unseen_share_current = Some(share(count, c.count()));
        }
    }
    Ok(dq)
}

fn out_of_range(profile: &NumericProfile, min: f64, max: f64) -> u64 {
    let data = profile.sorted_data();
    let view: Sorted<'_> = data.view();
    view.runs()
        .filter(|(v, _)| *v < min || *v > max)
        .map(|(_, n)| n)
        .sum()
}

fn approximation(reference: &ColumnProfile, current: &ColumnProfile) -> Option<Approximation> {
    let (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) = (reference, current) else {
        return None;
    };
    if r.is_exact() && c.is_exact() {
        return None;
    }
    let (er, ec) = (r.normalized_rank_error(), c.normalized_rank_error());
    let span = match (r.range(), c.range()) {
        (Some((a, b)), Some((x, y))) => b.max(y) - a.min(x),
        _ => 0.0,
    };
    Some(Approximation {
        reference_rank_error: er,
        current_rank_error: ec,
        ks_statistic_bound: er + ec,
        wasserstein_bound: (er + ec) * span,
    })
}

/// The dataset verdict: in auto mode, applies the correction over the columns auto mode
/// tested (their `score` becomes the adjusted p-value) and the minimum effect; then the drift
/// share. Columns are returned in the order given.
pub fn decide(mut columns: Vec<ColumnDrift>, options: &DriftOptions) -> DriftReport {
    let auto: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i].tested_in_auto())
        .collect();
    let m = auto.len();
    let mut order = auto.clone();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (
            columns[a].p_value.unwrap_or(1.0),
            columns[b].p_value.unwrap_or(1.0),
        );
        pa.total_cmp(&pb)
    });
    let mut running_max: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let p = columns[i].p_value.unwrap_or(1.0);
        let adjusted = match options.correction {
            Correction::Holm => {
                running_max = running_max.max(((m - rank) as f64 * p).min(1.0));
                running_max
            }
            Correction::Bonferroni => (m as f64 * p).min(1.0),
            Correction::None => p,
        };
        let column = &mut columns[i];
        column.score = Some(adjusted);
        let effect = column.effect.as_ref().map_or(0.0, |e| e.value);
        let min_effect = column.effect.as_ref().map_or(0.0, |e| e.min_effect);
        let significant = adjusted <= options.alpha;
        let large = effect >= min_effect;
        column.drift_detected = significant && large;
        column.reason = format!(
            "{}; p = {:.3e} ({} over {} columns: {:.3e}) {} alpha {}; effect {:.4} {} minimum {}",
            column.reason,
            p,
            match options.correction {
                Correction::Holm => "Holm",
                Correction::Bonferroni => "Bonferroni",
                Correction::None => "uncorrected",
            },
            m,
            adjusted,
            if significant { "<=" } else { ">" },
            options.alpha,
            effect,
            if large { ">=" } else { "<" },
            min_effect
        );
    }
    let tested = columns.iter().filter(|c| c.score.is_some()).count();
    let drifted = columns.iter().filter(|c| c.drift_detected).count();
    let share = if tested == 0 {
        0.0
    } else {
        drifted as f64 / tested as f64
    };
    DriftReport {
        mode: options.mode,
        dataset: DatasetDrift {
            columns: tested,
            drifted_columns: drifted,
            share,
            drift_share: options.drift_share,
            dataset_drift: tested > 0 && share >= options.drift_share,
        },
        columns,
    }
}

/// One input column: its name, declared or inferred type, and both profiles.
pub struct ColumnInput<'a> {
    pub name: &'a str,
    pub column_type: ColumnType,
    pub reference: &'a ColumnProfile,
    pub current: &'a ColumnProfile,
}

/// [`compare_column`] for every column (sequentially), then [`decide`].
pub fn compare(
    columns: &[ColumnInput<'_>],
    options: &DriftOptions,
) -> Result<DriftReport, MonitorError> {
    options.validate()?;
    let tested = columns
        .iter()
        .map(|c| compare_column(c.name, c.column_type, c.reference, c.current, options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(decide(tested, options))
}
