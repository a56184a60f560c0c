//! Realized and estimated performance against scikit-learn 1.9.1 and CBPE's definitions, on
//! the cases of `tests/cases/performance.json` (`make_performance_cases.py`).

use serde_json::Value;
use slipway_monitor::performance::{Labeled, classification, estimate, regression};

fn cases() -> Vec<Value> {
    serde_json::from_str(include_str!("../cases/performance.json")).expect("performance.json")
}

fn close(got: f64, want: &Value, what: &str, case: &str) {
    let want = want.as_f64().unwrap_or_else(|| panic!("{case}: no {what}"));
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{case} {what}: {got} vs scikit-learn's {want}"
    );
}

fn class(v: &Value) -> String {
    v.as_i64().map_or_else(|| v.to_string(), |i| i.to_string())
}

#[test]
fn classification_metrics_match_scikit_learn_and_cbpe() {
    for case in cases().iter().filter(|c| c["name"] != "regression") {
        let name = case["name"].as_str().unwrap_or_default();
        let probabilities: Vec<Vec<(String, f64)>> = case["probabilities"]
            .as_array()
            .expect("probabilities")
            .iter()
            .map(|row| {
                row.as_array()
                    .expect("a row")
                    .iter()
                    .enumerate()
                    .map(|(k, p)| (k.to_string(), p.as_f64().expect("a probability")))
                    .collect()
            })
            .collect();
        let rows: Vec<Labeled> = case["truth"]
            .as_array()
            .expect("truth")
            .iter()
            .zip(case["predicted"].as_array().expect("predicted"))
            .zip(&probabilities)
            .map(|((t, p), probabilities)| Labeled {
                truth: class(t),
                predicted: class(p),
                probabilities: Some(probabilities.clone()),
            })
            .collect();
        let got = classification(&rows).expect("rows");
        assert_eq!(got.rows as usize, rows.len());
        close(got.accuracy, &case["accuracy"], "accuracy", name);
        close(got.precision, &case["precision"], "precision", name);
        close(got.recall, &case["recall"], "recall", name);
        close(got.f1, &case["f1"], "f1", name);
        close(got.roc_auc.expect("auc"), &case["roc_auc"], "roc_auc", name);
        close(
            got.log_loss.expect("log loss"),
            &case["log_loss"],
            "log_loss",
            name,
        );
        let estimated = estimate(&probabilities).expect("rows");
        close(
            estimated.accuracy,
            &case["estimated_accuracy"],
            "estimated accuracy",
            name,
        );
        close(
            estimated.roc_auc.expect("auc"),
            &case["estimated_roc_auc"],
            "estimated roc_auc",
            name,
        );
        // Calibrated probabilities: the estimate is near what the labels show.
        assert!((estimated.accuracy - got.accuracy).abs() < 0.1, "{name}");
    }
}

#[test]
fn regression_metrics_match_scikit_learn() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "regression")
        .expect("a regression case");
    let pairs: Vec<(f64, f64)> = case["truth"]
        .as_array()
        .expect("truth")
        .iter()
        .zip(case["predicted"].as_array().expect("predicted"))
        .map(|(t, p)| (t.as_f64().expect("t"), p.as_f64().expect("p")))
        .collect();
    let got = regression(&pairs).expect("rows");
    close(got.mae, &case["mae"], "mae", "regression");
    close(got.rmse, &case["rmse"], "rmse", "regression");
    close(got.r2.expect("r2"), &case["r2"], "r2", "regression");
}

#[test]
fn edge_cases_say_undefined_rather_than_a_number() {
    assert!(classification(&[]).is_none());
    assert!(regression(&[]).is_none());
    assert!(estimate(&[]).is_none());
    // One class only: no ROC AUC; all truths equal: no R².
    let one = Labeled {
        truth: "1".into(),
        predicted: "1".into(),
        probabilities: Some(vec![("0".into(), 0.2), ("1".into(), 0.8)]),
    };
    let got = classification(&[one.clone(), one]).expect("rows");
    assert_eq!(got.accuracy, 1.0);
    assert!(got.roc_auc.is_none());
    assert!(
        regression(&[(1.0, 1.5), (1.0, 0.5)])
            .expect("rows")
            .r2
            .is_none()
    );
    // Text labels meet text predictions.
    let text = Labeled {
        truth: "fraud".into(),
        predicted: "fraud".into(),
        probabilities: None,
    };
    assert_eq!(classification(&[text]).expect("rows").accuracy, 1.0);
}
