//! The engine against scipy and Evidently 0.7 on the cases of `tests/cases/cases.json`.

use std::sync::OnceLock;

use serde_json::Value;
use slipway_monitor::ks::{kolmogorov_sf, ks_two_sample, smirnov_sf};
use slipway_monitor::{
    ColumnProfile, ColumnType, DriftOptions, Mode, ProfileConfig, ProfileKind, compare_column,
};

use crate::generator::{generate, profile};

fn cases() -> &'static Value {
    static CASES: OnceLock<Value> = OnceLock::new();
    CASES.get_or_init(|| {
        let text = include_str!("../cases/cases.json");
        serde_json::from_str(text).expect("cases.json parses")
    })
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("f64"),
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

/// Equal within `rel` relative, NaN equal to NaN; values below 1e-250 compare absolutely (the
/// far tail of a p-value is not a number anybody reads).
fn close(actual: f64, expected: f64, rel: f64) -> bool {
    if actual.is_nan() || expected.is_nan() {
        return actual.is_nan() && expected.is_nan();
    }
    if actual == expected {
        return true;
    }
    let scale = actual.abs().max(expected.abs());
    scale < 1e-250 || (actual - expected).abs() <= rel * scale
}

struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, what: String, actual: f64, expected: f64, rel: f64) {
        if !close(actual, expected, rel) {
            self.0.push(format!(
                "{what}: got {actual:e}, scipy/Evidently {expected:e}"
            ));
        }
    }

    fn finish(self, total: usize) {
        eprintln!("{total} checks");
        assert!(
            self.0.is_empty(),
            "{} of {total} checks failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn column_type(case: &Value) -> ColumnType {
    match case["column_type"].as_str() {
        Some("numerical") => ColumnType::Numerical,
        _ => ColumnType::Categorical,
    }
}

fn profiles(case: &Value) -> (ColumnProfile, ColumnProfile) {
    let kind = match (column_type(case), case["reference"]["kind"].as_str()) {
        (ColumnType::Numerical, _) => ProfileKind::Numeric,
        _ => ProfileKind::Categorical,
    };
    let config = ProfileConfig::default();
    (
        profile(&generate(&case["reference"]), kind, config),
        profile(&generate(&case["current"]), kind, config),
    )
}

const REL: f64 = 1e-6;

#[test]
fn ks_wasserstein_and_anderson_match_scipy() {
    let mut failures = Failures(Vec::new());
    let mut checks = 0;
    for case in cases()["numeric"].as_array().expect("numeric") {
        let name = case["name"].as_str().expect("name");
        if case.get("ks").is_none() || column_type(case) != ColumnType::Numerical {
            continue;
        }
        let (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) = profiles(case) else {
            panic!("numeric profiles")
        };
        let (rd, cd) = (r.sorted_data(), c.sorted_data());
        let ks = ks_two_sample(rd.view(), cd.view());
        failures.check(
            format!("{name} ks D"),
            ks.statistic,
            number(&case["ks"]["statistic"]),
            1e-12,
        );
        failures.check(
            format!("{name} ks p"),
            ks.p_value,
            number(&case["ks"]["p_value"]),
            REL,
        );
        let method = serde_json::to_value(ks.method).expect("method");
        if method != case["ks"]["method"] {
            failures.0.push(format!(
                "{name} ks method {method} vs {}",
                case["ks"]["method"]
            ));
        }
        let w = slipway_monitor::distance::wasserstein(rd.view(), cd.view());
        failures.check(
            format!("{name} wasserstein"),
            w,
            number(&case["wasserstein_raw"]),
            1e-9,
        );
        failures.check(
            format!("{name} std"),
            r.std(),
            number(&case["reference_std"]),
            1e-9,
        );
        checks += 5;
        if let Some(expected) = case.get("anderson") {
            match slipway_monitor::anderson::anderson_two_sample(rd.view(), cd.view()) {
                Ok(ad) => {
                    failures.check(
                        format!("{name} AD stat"),
                        ad.statistic,
                        number(&expected["statistic"]),
                        1e-9,
                    );
                    failures.check(
                        format!("{name} AD p"),
                        ad.p_value,
                        number(&expected["p_value"]),
                        REL,
                    );
                }
                Err(e) => failures.0.push(format!("{name} AD: {e}")),
            }
            checks += 2;
        }
    }
    failures.finish(checks);
}

#[test]
fn kolmogorov_distribution_matches_scipy() {
    let mut failures = Failures(Vec::new());
    let points = cases()["kolmogorov"].as_array().expect("kolmogorov");
    for point in points {
        let n = point["n"].as_u64().expect("n");
        let x = number(&point["x"]);
        failures.check(
            format!("kstwo.sf({x}, {n})"),
            kolmogorov_sf(n, x),
            number(&point["kstwo_sf"]),
            REL,
        );
        failures.check(
            format!("smirnov({n}, {x})"),
            smirnov_sf(n, x),
            number(&point["smirnov"]),
            REL,
        );
    }
    failures.finish(points.len() * 2);
}

fn evidently_checks(case: &Value, failures: &mut Failures) -> usize {
    let name = case["name"].as_str().expect("name");
    let (r, c) = profiles(case);
    let ty = column_type(case);
    let mut checks = 0;
    if case.get("empty").is_some() {
        let drift = compare_column(
            name,
            ty,
            &r,
            &c,
            &DriftOptions {
                mode: Mode::Evidently,
                ..DriftOptions::default()
            },
        )
        .expect("untested, not an error");
        assert!(
            drift.score.is_none() && !drift.drift_detected,
            "{name}: {drift:?}"
        );
        return 1;
    }
    let Some(expected) = case["evidently"].as_object() else {
        return 0;
    };
    for (test, want) in expected {
        if want.get("error").is_some() {
            continue;
        }
        let options = if test == "default" {
            DriftOptions {
                mode: Mode::Evidently,
                ..DriftOptions::default()
            }
        } else {
            DriftOptions {
                mode: Mode::Evidently,
                stattest: Some(test.clone()),
                ..DriftOptions::default()
            }
        };
        let drift = match compare_column(name, ty, &r, &c, &options) {
            Ok(drift) => drift,
            Err(e) => {
                failures.0.push(format!("{name} {test}: {e}"));
                continue;
            }
        };
        let what = format!("{name} evidently {test} ({})", drift.method);
        if test == "default" && want["method"].as_str() != Some(drift.method.as_str()) {
            failures
                .0
                .push(format!("{what}: method vs {}", want["method"]));
            continue;
        }
        failures.check(
            what.clone(),
            drift.score.unwrap_or(f64::NAN),
            number(&want["score"]),
            REL,
        );
        if Some(drift.drift_detected) != want["drifted"].as_bool() {
            failures.0.push(format!(
                "{what}: drift {} vs {}",
                drift.drift_detected, want["drifted"]
            ));
        }
        if (drift.threshold - number(&want["threshold"])).abs() > 1e-15 {
            failures.0.push(format!(
                "{what}: threshold {} vs {}",
                drift.threshold, want["threshold"]
            ));
        }
        checks += 3;
    }
    checks
}

#[test]
fn evidently_stattests_and_defaults_match_evidently() {
    let mut failures = Failures(Vec::new());
    let mut checks = 0;
    for section in ["numeric", "categorical"] {
        for case in cases()[section].as_array().expect("cases") {
            checks += evidently_checks(case, &mut failures);
        }
    }
    failures.finish(checks);
}

#[test]
fn contingency_tests_match_scipy() {
    let mut failures = Failures(Vec::new());
    let mut checks = 0;
    for case in cases()["categorical"].as_array().expect("categorical") {
        let Some(expected) = case.get("contingency") else {
            continue;
        };
        let name = case["name"].as_str().expect("name");
        let (ColumnProfile::Categorical(r), ColumnProfile::Categorical(c)) = profiles(case) else {
            panic!("categorical profiles")
        };
        let table = slipway_monitor::table::CountTable::from_profiles(&r, &c).without_unseen();
        let chi = slipway_monitor::categorical::contingency(&table, false);
        let g = slipway_monitor::categorical::contingency(&table, true);
        failures.check(
            format!("{name} chi2"),
            chi.statistic,
            number(&expected["chi2"]),
            1e-9,
        );
        failures.check(
            format!("{name} chi2 p"),
            chi.p_value,
            number(&expected["chi2_p"]),
            REL,
        );
        failures.check(
            format!("{name} G"),
            g.statistic,
            number(&expected["g"]),
            1e-9,
        );
        failures.check(
            format!("{name} G p"),
            g.p_value,
            number(&expected["g_p"]),
            REL,
        );
        checks += 4;
    }
    failures.finish(checks);
}

#[test]
fn the_cases_record_their_versions() {
    let versions = &cases()["versions"];
    assert!(
        versions["evidently"]
            .as_str()
            .is_some_and(|v| v.starts_with("0.7."))
    );
    assert!(versions["scipy"].as_str().is_some());
}

/// Whole `Report([DataDriftPreset()])` runs: Evidently's type inference on the reference's raw
/// cells, its test choice, scores, per-column verdicts and the drifted-column count and share.
#[test]
fn evidently_mode_reproduces_data_drift_preset_reports() {
    use slipway_monitor::{ColumnInput, compare, infer_column_type};

    let mut failures = Failures(Vec::new());
    let mut checks = 0;
    for dataset in cases()["datasets"].as_array().expect("datasets") {
        let name = dataset["name"].as_str().expect("name");
        let expected = &dataset["expected"];
        let mut built = Vec::new();
        for column in dataset["columns"].as_array().expect("columns") {
            let reference = generate(&column["reference"]);
            let current = generate(&column["current"]);
            let raw: Vec<_> = reference.iter().map(|c| c.raw()).collect();
            let ty = infer_column_type(&raw);
            let kind = if ty == ColumnType::Numerical {
                ProfileKind::Numeric
            } else {
                ProfileKind::Categorical
            };
            let config = ProfileConfig::default();
            built.push((
                column["name"].as_str().expect("name").to_owned(),
                ty,
                profile(&reference, kind, config),
                profile(&current, kind, config),
            ));
        }
        let inputs: Vec<ColumnInput<'_>> = built
            .iter()
            .map(|(n, t, r, c)| ColumnInput {
                name: n,
                column_type: *t,
                reference: r,
                current: c,
            })
            .collect();
        let options = DriftOptions {
            mode: Mode::Evidently,
            ..DriftOptions::default()
        };
        let report = compare(&inputs, &options).expect("compare");
        for column in &report.columns {
            let want = &expected["columns"][column.name.as_str()];
            let what = format!("{name}/{} ({:?})", column.name, column.column_type);
            if want["method"].as_str() != Some(column.method.as_str()) {
                failures.0.push(format!(
                    "{what}: method {} vs {}",
                    column.method, want["method"]
                ));
                continue;
            }
            failures.check(
                what,
                column.score.unwrap_or(f64::NAN),
                number(&want["score"]),
                REL,
            );
            checks += 2;
        }
        let count = number(&expected["count"]) as usize;
        if report.dataset.drifted_columns != count {
            failures.0.push(format!(
                "{name}: {} drifted columns vs {count}",
                report.dataset.drifted_columns
            ));
        }
        failures.check(
            format!("{name} share"),
            report.dataset.share,
            number(&expected["share"]),
            1e-12,
        );
        let evidently_drift = number(&expected["share"]) >= number(&expected["drift_share"]);
        if report.dataset.dataset_drift != evidently_drift {
            failures.0.push(format!(
                "{name}: dataset drift {}",
                report.dataset.dataset_drift
            ));
        }
        checks += 3;
    }
    failures.finish(checks);
}
