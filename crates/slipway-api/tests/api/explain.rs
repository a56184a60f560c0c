//! Explanations over HTTP (`POST /deployments/NAME/explain`), on SQLite and PostgreSQL, with
//! the real ONNX Runtime and the breast-cancer model of the deployment tests: refused without
//! a background, then explained against the version's monitoring reference and against rows
//! sent with the request, repeatably by seed, and every limit refused with a 4xx before any
//! model runs.
//!
//! A module of `deployments` (it reuses that harness and its fixture models).

use slipway_api::access::{Rule, Scope, route_rules};
use slipway_core::auth::Action;

use super::*;

on_both_backends!(case_explanations: explanations_sqlite, explanations_postgres);

fn explain_path() -> String {
    format!("/deployments/{NAME}/explain")
}

fn example_rows() -> Value {
    example()["inputs"].clone()
}

async fn explain(h: &Harness, body: &Value) -> Raw {
    h.invoke(&explain_path(), &[], body).await
}

async fn explained(h: &Harness, body: Value) -> Value {
    let raw = explain(h, &body).await;
    let answer = raw.json();
    assert_eq!(raw.status, StatusCode::OK, "{body}: {answer}");
    answer
}

fn refused(raw: &Raw, status: u16, code: &str, needle: &str) {
    let message = assert_error("explain", raw.status, &raw.json(), status, code);
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

const INVALID: &str = "INVALID_PARAMETER_VALUE";

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

async fn case_explanations(h: &Harness) {
    h.deploy(json!({})).await;
    // Explaining reads the deployment as inference does.
    let rule = route_rules()
        .into_iter()
        .find(|r| r.method == Method::POST && r.path == "/deployments/{name}/explain")
        .expect("the route has a rule");
    assert_eq!(rule.rule, Rule::new(Action::Read, Scope::Deployment));
    assert!(!rule.public);

    // No reference and no background rows: nothing to draw the background from.
    let raw = explain(h, &json!({"inputs": example_rows()})).await;
    refused(
        &raw,
        400,
        INVALID,
        "slipway monitor reference create models:/cancer/1",
    );

    let (schema, reference) = monitoring_reference(2_000, 0.0);
    h.ok(
        "POST",
        &format!("{NATIVE}/monitoring/references"),
        Some(json!({
            "model_uri": format!("models:/{MODEL}/1"),
            "schema": schema,
            "summary": reference,
            "label_column": null,
            "performance": null,
        })),
    )
    .await;

    let started = Instant::now();
    let answer = explained(
        h,
        json!({"inputs": example_rows(), "samples": 200, "seed": 1}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(answer["model"], json!({"name": MODEL, "version": "1"}));
    assert_eq!(answer["deployment"], NAME);
    assert_eq!(answer["variant"], "stable");
    assert_eq!(answer["background"], "reference");
    assert_eq!(
        (answer["samples"].clone(), answer["seed"].clone()),
        (json!(200), json!(1))
    );
    assert_eq!(answer["model_rows"], 2 * 200 * 31 + 2);
    // The rows are of two classes, so each says its own.
    assert_eq!(answer["output"], Value::Null, "{answer}");
    let rows = answer["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let recorded = recorded();
    for (index, row) in rows.iter().enumerate() {
        let class = [1, 0][index];
        assert_eq!(row["class"], class, "{row}");
        assert_eq!(row["output"], format!("probability of class {class}"));
        let expected = number(&recorded["probabilities"][index][class]);
        assert!(
            (number(&row["prediction"]) - expected).abs() < 1e-6,
            "{row}"
        );
        let attributions = row["attributions"].as_array().expect("attributions");
        assert_eq!(attributions.len(), 30);
        for (j, attribution) in attributions.iter().enumerate() {
            assert_eq!(attribution["feature"], format!("f{j}"));
            assert_eq!(
                number(&attribution["value"]),
                number(&example_rows()[index][j])
            );
            assert!(number(&attribution["attribution"]).is_finite());
            assert!(number(&attribution["stderr"]) >= 0.0);
        }
        let sum: f64 = attributions.iter().map(|a| number(&a["attribution"])).sum();
        let (prediction, base) = (number(&row["prediction"]), number(&row["base_value"]));
        assert!(number(&row["efficiency_gap"]) < 1e-5, "{row}");
        assert!(
            (sum - (prediction - base)).abs() < 1e-5,
            "{sum} vs {prediction} - {base}"
        );
        assert!(number(&row["base_stderr"]) > 0.0);
    }
    eprintln!("explained 2 rows × 200 samples × 31 in {took:?}");

    // The same seed, the same answer; the class named explains both rows' same probability.
    let again = explained(
        h,
        json!({"inputs": example_rows(), "samples": 200, "seed": 1}),
    )
    .await;
    assert_eq!(again["rows"], answer["rows"]);
    let class_one = explained(
        h,
        json!({"inputs": example_rows(), "samples": 50, "seed": 2, "class": 1}),
    )
    .await;
    assert_eq!(class_one["output"], "probability of class 1");
    assert_eq!(class_one["base_value"], class_one["rows"][1]["base_value"]);
    let complement = number(&recorded["probabilities"][1][1]);
    assert!((number(&class_one["rows"][1]["prediction"]) - complement).abs() < 1e-6);
    // Named columns, as /invocations takes them (the reference names them f0..f29; the
    // model's tensor signature keeps their order).
    let split = explained(
        h,
        json!({"dataframe_split": {"data": example_rows()}, "samples": 50, "seed": 2, "class": 1}),
    )
    .await;
    assert_eq!(split["rows"], class_one["rows"]);

    // Background rows instead of the reference: against the row itself every feature is
    // worth nothing.
    let row0 = example_rows()[0].clone();
    let itself = explained(
        h,
        json!({"inputs": [row0.clone()], "background": [row0.clone()], "samples": 10}),
    )
    .await;
    assert_eq!(itself["background"], "rows");
    let only = &itself["rows"][0];
    // Up to the runtime's rounding, which may differ between batch sizes.
    assert!((number(&only["base_value"]) - number(&only["prediction"])).abs() < 1e-6);
    assert!(
        only["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| { number(&a["attribution"]).abs() < 1e-6 && number(&a["stderr"]) < 1e-6 }),
        "{only}"
    );
    assert!(
        itself["seed"].as_u64().is_some(),
        "a drawn seed is answered"
    );

    // Limits, refused before any model runs.
    let many_rows: Vec<Value> = (0..101).map(|_| row0.clone()).collect();
    let hundred: Vec<Value> = (0..100).map(|_| row0.clone()).collect();
    for (body, code, needle) in [
        (
            json!({"inputs": example_rows(), "samples": 2_001}),
            INVALID,
            "samples must be from 2",
        ),
        (
            json!({"inputs": example_rows(), "samples": 1}),
            INVALID,
            "samples must be from 2",
        ),
        (json!({"inputs": many_rows}), INVALID, "at most 100 rows"),
        (
            json!({"inputs": hundred, "samples": 1_000}),
            INVALID,
            "lower samples to at most 645",
        ),
        (
            json!({"inputs": example_rows(), "class": 5}),
            INVALID,
            "0 to 1",
        ),
        (
            json!({"inputs": example_rows(), "variant": "candidate"}),
            INVALID,
            "no rollout running",
        ),
        (
            json!({"inputs": example_rows(), "variant": "blue"}),
            INVALID,
            "'stable' or 'candidate'",
        ),
        (json!({"inputs": [[1.0, 2.0]]}), INVALID, "30"),
        (
            json!({"inputs": example_rows(), "background": [[1.0, 2.0]]}),
            INVALID,
            "background",
        ),
        (
            json!({"inputs": example_rows(), "class": [1]}),
            INVALID,
            "a class",
        ),
        (
            json!({"samples": 10}),
            "BAD_REQUEST",
            "exactly one of the input fields",
        ),
    ] {
        let raw = explain(h, &body).await;
        refused(&raw, 400, code, needle);
    }
    let csv = h
        .send(
            Method::POST,
            &explain_path(),
            &[],
            b"a,b\n1,2\n".to_vec(),
            Some("text/csv"),
        )
        .await;
    assert_eq!(csv.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown = h
        .invoke(
            "/deployments/no-such/explain",
            &[],
            &json!({"inputs": example_rows()}),
        )
        .await;
    refused(&unknown, 404, "RESOURCE_DOES_NOT_EXIST", "does not exist");
}
