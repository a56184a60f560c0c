//! Auto mode's promises (false alarms at most alpha at any n, real shifts caught at small n,
//! tiny shifts ignored at large n) and the dataset-level rules of both modes.

use slipway_monitor::{
    ColumnDrift, ColumnInput, ColumnProfile, ColumnType, DriftOptions, Mode, ProfileConfig,
    ProfileKind, RawValue, compare, compare_column, decide,
};

fn normal(rng: &mut fastrand::Rng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn numeric(rng: &mut fastrand::Rng, n: usize, shift: f64) -> ColumnProfile {
    let mut p = ColumnProfile::new(ProfileKind::Numeric, ProfileConfig::default());
    for _ in 0..n {
        p.push(RawValue::Float(normal(rng) + shift));
    }
    p.finish();
    p
}

const WORDS: [&str; 6] = ["red", "green", "blue", "cyan", "gold", "gray"];

fn categorical(rng: &mut fastrand::Rng, n: usize, weights: &[f64]) -> ColumnProfile {
    let total: f64 = weights.iter().sum();
    let mut p = ColumnProfile::new(ProfileKind::Categorical, ProfileConfig::default());
    for _ in 0..n {
        let mut u = rng.f64() * total;
        let mut pick = weights.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                pick = i;
                break;
            }
            u -= w;
        }
        p.push(RawValue::Str(WORDS[pick]));
    }
    p
}

const UNEVEN: [f64; 6] = [0.4, 0.25, 0.15, 0.1, 0.07, 0.03];

/// Family-wise false alarms over `reps` no-drift datasets of three numeric and two
/// categorical columns with `n` rows per side.
fn false_alarms(n: usize, reps: usize, seed: u64) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let options = DriftOptions::default();
    let mut alarms = 0;
    for _ in 0..reps {
        let sides: Vec<(ColumnType, ColumnProfile, ColumnProfile)> = (0..5)
            .map(|i| {
                if i < 3 {
                    (
                        ColumnType::Numerical,
                        numeric(&mut rng, n, 0.0),
                        numeric(&mut rng, n, 0.0),
                    )
                } else {
                    let (r, c) = (
                        categorical(&mut rng, n, &UNEVEN),
                        categorical(&mut rng, n, &UNEVEN),
                    );
                    (ColumnType::Categorical, r, c)
                }
            })
            .collect();
        let names = ["a", "b", "c", "d", "e"];
        let inputs: Vec<ColumnInput<'_>> = sides
            .iter()
            .zip(names)
            .map(|((t, r, c), name)| ColumnInput {
                name,
                column_type: *t,
                reference: r,
                current: c,
            })
            .collect();
        let report = compare(&inputs, &options).expect("compare");
        if report.dataset.drifted_columns > 0 {
            alarms += 1;
        }
    }
    alarms
}

/// At most alpha plus three binomial standard deviations.
fn allowed(reps: usize, alpha: f64) -> usize {
    let r = reps as f64;
    (r * alpha + 3.0 * (r * alpha * (1.0 - alpha)).sqrt()).floor() as usize
}

#[test]
fn false_alarms_stay_at_alpha_for_small_and_medium_n() {
    for (n, reps) in [(100, 600), (1_000, 200)] {
        let alarms = false_alarms(n, reps, n as u64);
        assert!(
            alarms <= allowed(reps, 0.05),
            "n {n}: {alarms} of {reps} no-drift datasets alarmed"
        );
    }
}

#[test]
fn false_alarms_stay_at_alpha_for_large_n() {
    let reps = 40;
    let alarms = false_alarms(100_000, reps, 99);
    assert!(alarms <= allowed(reps, 0.05), "{alarms} of {reps}");
}

/// Per-column p-values under no drift are uniform or conservative: the raw rejection rate of a
/// single KS column stays at alpha too (a sharper check than the family-wise one).
#[test]
fn single_column_ks_level_holds_with_ties() {
    let mut rng = fastrand::Rng::with_seed(5);
    let reps = 1500;
    let mut rejected = 0;
    for _ in 0..reps {
        let mut sides = Vec::new();
        for _ in 0..2 {
            let mut p = ColumnProfile::new(ProfileKind::Numeric, ProfileConfig::default());
            for _ in 0..60 {
                // Heavy ties: 8 levels.
                p.push(RawValue::Int(i64::from(rng.u8(0..8))));
            }
            p.finish();
            sides.push(p);
        }
        let d = compare_column(
            "x",
            ColumnType::Numerical,
            &sides[0],
            &sides[1],
            &DriftOptions::default(),
        )
        .expect("compare");
        if d.p_value.expect("p") <= 0.05 {
            rejected += 1;
        }
    }
    assert!(rejected <= allowed(reps, 0.05), "{rejected} of {reps}");
}

#[test]
fn a_real_shift_is_caught_at_small_n() {
    let mut rng = fastrand::Rng::with_seed(11);
    let options = DriftOptions::default();
    let reps = 100;
    let mut caught_numeric = 0;
    let mut caught_categorical = 0;
    for _ in 0..reps {
        // One standard deviation at n = 50 per side.
        let (r, c) = (numeric(&mut rng, 50, 0.0), numeric(&mut rng, 50, 1.0));
        let col = compare_column("x", ColumnType::Numerical, &r, &c, &options).expect("compare");
        caught_numeric += usize::from(decide(vec![col], &options).columns[0].drift_detected);
        let (r, c) = (
            categorical(&mut rng, 80, &UNEVEN),
            categorical(&mut rng, 80, &[0.1, 0.1, 0.1, 0.1, 0.3, 0.3]),
        );
        let col = compare_column("y", ColumnType::Categorical, &r, &c, &options).expect("compare");
        caught_categorical += usize::from(decide(vec![col], &options).columns[0].drift_detected);
    }
    assert!(
        caught_numeric >= 90,
        "numeric shift caught {caught_numeric} of {reps}"
    );
    assert!(
        caught_categorical >= 90,
        "categorical shift caught {caught_categorical} of {reps}"
    );
}

#[test]
fn a_tiny_shift_at_large_n_is_significant_but_not_drift() {
    let mut rng = fastrand::Rng::with_seed(12);
    let options = DriftOptions::default();
    let (r, c) = (
        numeric(&mut rng, 200_000, 0.0),
        numeric(&mut rng, 200_000, 0.05),
    );
    let col = compare_column("x", ColumnType::Numerical, &r, &c, &options).expect("compare");
    let decided = decide(vec![col], &options).columns.remove(0);
    let effect = decided.effect.clone().expect("effect");
    assert!(decided.score.expect("p") < 1e-6, "{decided:?}");
    assert!(effect.value < 0.05 && effect.ci_low <= effect.value && effect.value <= effect.ci_high);
    assert!(!decided.drift_detected, "{}", decided.reason);
}

fn column(name: &str, p: f64, effect: f64) -> ColumnDrift {
    let options = DriftOptions {
        mode: Mode::Auto,
        ..DriftOptions::default()
    };
    let mut rng = fastrand::Rng::with_seed(1);
    let (r, c) = (numeric(&mut rng, 20, 0.0), numeric(&mut rng, 20, 0.0));
    let mut col = compare_column(name, ColumnType::Numerical, &r, &c, &options).expect("compare");
    col.p_value = Some(p);
    if let Some(e) = col.effect.as_mut() {
        e.value = effect;
    }
    col
}

#[test]
fn holm_adjusts_over_the_tested_columns() {
    let options = DriftOptions::default();
    // Holm at 0.05 over 3: 0.01 * 3 = 0.03 rejects, then 0.02 * 2 = 0.04 rejects, 0.04 stays.
    let report = decide(
        vec![
            column("a", 0.02, 0.5),
            column("b", 0.01, 0.5),
            column("c", 0.04, 0.5),
        ],
        &options,
    );
    let scores: Vec<f64> = report
        .columns
        .iter()
        .map(|c| c.score.expect("score"))
        .collect();
    assert_eq!(scores, vec![0.04, 0.03, 0.04]);
    let drifted: Vec<bool> = report.columns.iter().map(|c| c.drift_detected).collect();
    assert_eq!(drifted, vec![true, true, true]);
    let report = decide(
        vec![
            column("a", 0.02, 0.5),
            column("b", 0.01, 0.01),
            column("c", 0.2, 0.5),
        ],
        &options,
    );
    let drifted: Vec<bool> = report.columns.iter().map(|c| c.drift_detected).collect();
    // b is significant but too small; c is not significant after correction.
    assert_eq!(drifted, vec![true, false, false]);
    assert_eq!(report.dataset.drifted_columns, 1);
    assert!(!report.dataset.dataset_drift);
}

#[test]
fn evidently_dataset_drift_at_half_the_columns() {
    let mut rng = fastrand::Rng::with_seed(3);
    let options = DriftOptions {
        mode: Mode::Evidently,
        ..DriftOptions::default()
    };
    let r1 = numeric(&mut rng, 200, 0.0);
    let c1 = numeric(&mut rng, 200, 2.0);
    let r2 = numeric(&mut rng, 200, 0.0);
    let c2 = numeric(&mut rng, 200, 0.0);
    let inputs = [
        ColumnInput {
            name: "shifted",
            column_type: ColumnType::Numerical,
            reference: &r1,
            current: &c1,
        },
        ColumnInput {
            name: "same",
            column_type: ColumnType::Numerical,
            reference: &r2,
            current: &c2,
        },
    ];
    let report = compare(&inputs, &options).expect("compare");
    assert_eq!(report.columns[0].method, "ks");
    assert!(report.columns[0].drift_detected);
    assert_eq!(report.dataset.share, 0.5);
    assert!(
        report.dataset.dataset_drift,
        "share >= 0.5 is dataset drift"
    );
    let json = serde_json::to_value(&report).expect("serialize");
    for key in [
        "name",
        "type",
        "n_reference",
        "n_current",
        "method",
        "score",
        "threshold",
        "drift_detected",
    ] {
        assert!(
            json["columns"][0].get(key).is_some(),
            "column JSON lacks {key}"
        );
    }
    for key in [
        "columns",
        "drifted_columns",
        "share",
        "drift_share",
        "dataset_drift",
    ] {
        assert!(
            json["dataset"].get(key).is_some(),
            "dataset JSON lacks {key}"
        );
    }
    assert_eq!(json["columns"][0]["type"], "numerical");
}

#[test]
fn a_forced_stattest_uses_its_default_threshold_unless_given() {
    let mut rng = fastrand::Rng::with_seed(4);
    let (r, c) = (numeric(&mut rng, 300, 0.0), numeric(&mut rng, 300, 0.2));
    let forced = DriftOptions {
        stattest: Some("psi".to_owned()),
        ..DriftOptions::default()
    };
    let col = compare_column("x", ColumnType::Numerical, &r, &c, &forced).expect("compare");
    assert_eq!((col.method.as_str(), col.threshold), ("psi", 0.1));
    let given = DriftOptions {
        threshold: Some(0.01),
        ..forced
    };
    let col2 = compare_column("x", ColumnType::Numerical, &r, &c, &given).expect("compare");
    assert_eq!(col2.threshold, 0.01);
    assert_eq!(col2.drift_detected, col2.score.expect("score") >= 0.01);
    let unknown = DriftOptions {
        stattest: Some("nope".to_owned()),
        ..DriftOptions::default()
    };
    assert!(compare(&[], &unknown).is_err());
}

#[test]
fn unseen_categories_and_missing_values_are_data_quality_not_drift() {
    let mut reference = ColumnProfile::new(ProfileKind::Categorical, ProfileConfig::default());
    let mut current = ColumnProfile::new(ProfileKind::Categorical, ProfileConfig::default());
    for i in 0..400 {
        reference.push(RawValue::Str(WORDS[i % 3]));
        // The same three categories in the same shares, plus a new one and missing values.
        current.push(RawValue::Str(WORDS[i % 3]));
        if i % 4 == 0 {
            current.push(RawValue::Str("brand-new"));
            current.push(RawValue::Null);
        }
    }
    let options = DriftOptions::default();
    let col = compare_column("x", ColumnType::Categorical, &reference, &current, &options)
        .expect("compare");
    let decided = decide(vec![col], &options).columns.remove(0);
    assert!(!decided.drift_detected, "{}", decided.reason);
    assert_eq!(decided.data_quality.unseen_categories, Some(1));
    assert_eq!(decided.data_quality.missing_current, 100);
    assert!(
        (decided.data_quality.unseen_share_current.expect("share") - 100.0 / 500.0).abs() < 1e-12
    );
    // Evidently's goodness of fit sees the new category as infinite chi-square.
    let evidently = DriftOptions {
        mode: Mode::Evidently,
        ..DriftOptions::default()
    };
    let col = compare_column(
        "x",
        ColumnType::Categorical,
        &reference,
        &current,
        &evidently,
    )
    .expect("compare");
    assert_eq!((col.method.as_str(), col.score), ("chisquare", Some(0.0)));
}

#[test]
fn columns_without_values_or_of_text_are_reported_untested() {
    let empty = ColumnProfile::new(ProfileKind::Numeric, ProfileConfig::default());
    let mut rng = fastrand::Rng::with_seed(8);
    let full = numeric(&mut rng, 10, 0.0);
    let report = compare(
        &[
            ColumnInput {
                name: "empty",
                column_type: ColumnType::Numerical,
                reference: &full,
                current: &empty,
            },
            ColumnInput {
                name: "text",
                column_type: ColumnType::Text,
                reference: &full,
                current: &full,
            },
        ],
        &DriftOptions::default(),
    )
    .expect("compare");
    assert!(
        report
            .columns
            .iter()
            .all(|c| c.score.is_none() && !c.drift_detected)
    );
    assert_eq!(report.dataset.columns, 0);
    assert!(!report.dataset.dataset_drift);
}
