//! Fairness of a classifier across the groups of a sensitive column, as fairlearn defines its
//! three headline measures:
//!
//! - demographic parity difference: the largest gap between groups' selection rates (the share
//!   of a group predicted positive);
//! - equal opportunity difference: the largest gap between groups' true positive rates (the
//!   share of a group's actual positives predicted positive);
//! - disparate impact ratio: the smallest selection rate over the largest (fairlearn's
//!   demographic parity ratio; the "four-fifths rule" asks for at least 0.8).

use std::collections::BTreeMap;

use serde::Serialize;

/// One row: its group, whether it is truly positive, whether it was predicted positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome<'a> {
    pub group: &'a str,
    pub actual: bool,
    pub predicted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRates {
    pub rows: u64,
    pub selection_rate: f64,
    /// None when the group has no actual positive.
    pub true_positive_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    pub groups: BTreeMap<String, GroupRates>,
    pub demographic_parity_difference: f64,
    /// None when fewer than two groups have an actual positive.
    pub equal_opportunity_difference: Option<f64>,
    /// None when every group's selection rate is 0 (the ratio is undefined).
    pub disparate_impact_ratio: Option<f64>,
}

/// The measures over `rows`; None with fewer than two groups (nothing to compare).
pub fn fairness(rows: &[Outcome<'_>]) -> Option<Fairness> {
    #[derive(Default)]
    struct Counts {
        rows: u64,
        selected: u64,
        positives: u64,
        true_positives: u64,
    }
    let mut counts: BTreeMap<&str, Counts> = BTreeMap::new();
    for row in rows {
        let c = counts.entry(row.group).or_default();
        c.rows += 1;
        c.selected += u64::from(row.predicted);
        c.positives += u64::from(row.actual);
        c.true_positives += u64::from(row.actual && row.predicted);
    }
    if counts.len() < 2 {
        return None;
    }
    let groups: BTreeMap<String, GroupRates> = counts
        .iter()
        .map(|(group, c)| {
            (
                (*group).to_owned(),
                GroupRates {
                    rows: c.rows,
                    selection_rate: c.selected as f64 / c.rows as f64,
                    true_positive_rate: (c.positives > 0)
                        .then(|| c.true_positives as f64 / c.positives as f64),
                },
            )
        })
        .collect();
    let spread = |values: &[f64]| -> Option<(f64, f64)> {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (values.len() >= 2).then_some((min, max))
    };
    let selection: Vec<f64> = groups.values().map(|g| g.selection_rate).collect();
    let tpr: Vec<f64> = groups
        .values()
        .filter_map(|g| g.true_positive_rate)
        .collect();
    let (sel_min, sel_max) = spread(&selection)?;
    Some(Fairness {
        demographic_parity_difference: sel_max - sel_min,
        equal_opportunity_difference: spread(&tpr).map(|(lo, hi)| hi - lo),
        disparate_impact_ratio: (sel_max > 0.0).then(|| sel_min / sel_max),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows<'a>(spec: &[(&'a str, bool, bool, usize)]) -> Vec<Outcome<'a>> {
        spec.iter()
            .flat_map(|&(group, actual, predicted, n)| {
                std::iter::repeat_n(
                    Outcome {
                        group,
                        actual,
                        predicted,
                    },
                    n,
                )
            })
            .collect()
    }

    #[test]
    fn the_three_measures_as_fairlearn_defines_them() {
        // Group a: 10 rows, 6 predicted positive; of its 5 actual positives 4 were predicted.
        // Group b: 10 rows, 3 predicted positive; of its 4 actual positives 2 were predicted.
        let data = rows(&[
            ("a", true, true, 4),
            ("a", true, false, 1),
            ("a", false, true, 2),
            ("a", false, false, 3),
            ("b", true, true, 2),
            ("b", true, false, 2),
            ("b", false, true, 1),
            ("b", false, false, 5),
        ]);
        let f = fairness(&data).unwrap();
        assert!((f.groups["a"].selection_rate - 0.6).abs() < 1e-12);
        assert!((f.groups["b"].selection_rate - 0.3).abs() < 1e-12);
        assert!((f.demographic_parity_difference - 0.3).abs() < 1e-12);
        assert!((f.equal_opportunity_difference.unwrap() - 0.3).abs() < 1e-12); // 0.8 - 0.5
        assert!((f.disparate_impact_ratio.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn edge_cases_are_none_not_nan() {
        assert_eq!(fairness(&rows(&[("a", true, true, 3)])), None);
        let none_selected =
            fairness(&rows(&[("a", false, false, 2), ("b", true, false, 2)])).unwrap();
        assert_eq!(none_selected.disparate_impact_ratio, None);
        assert_eq!(none_selected.demographic_parity_difference, 0.0);
        // Only b has actual positives: no second group to compare true positive rates with.
        assert_eq!(none_selected.equal_opportunity_difference, None);
    }
}
