//! Every fixture model (`tests/fixtures/models`, scikit-learn exported by skl2onnx) gives the
//! outputs onnxruntime recorded for its sample rows: labels exactly, numbers within 1e-5.
//!
//! Needs libonnxruntime (`scripts/fetch-onnxruntime.sh`); without it the test says so and
//! passes, except with `CI=true`, where a missing runtime is a failure.

use std::path::PathBuf;

use serde_json::Value;
use slipway_serving::model::OnnxModel;
use slipway_serving::{OutputValue, Runtime};

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

fn runtime() -> Option<Runtime> {
    match Runtime::load(None) {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!in_ci, "CI=true and ONNX Runtime is unavailable: {error}");
            eprintln!("SKIPPED: the ONNX fixture tests need ONNX Runtime: {error}");
            None
        }
    }
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= TOLERANCE
}

/// Compares one output with its recorded values; returns what differs.
fn compare(name: &str, actual: &OutputValue, expected: &Value) -> Result<(), String> {
    let rows = expected.as_array().ok_or("recorded output is not a list")?;
    match actual {
        OutputValue::I64 { data, .. } => {
            let want: Vec<i64> = rows.iter().filter_map(Value::as_i64).collect();
            (data == &want)
                .then_some(())
                .ok_or_else(|| format!("{name}: labels {data:?}, recorded {want:?}"))
        }
        OutputValue::F32 { data, .. } => {
            let want: Vec<f64> = rows
                .iter()
                .flat_map(|row| match row {
                    Value::Array(values) => values.iter().filter_map(Value::as_f64).collect(),
                    value => value.as_f64().into_iter().collect::<Vec<_>>(),
                })
                .collect();
            if data.len() != want.len() {
                return Err(format!(
                    "{name}: {} values, recorded {}",
                    data.len(),
                    want.len()
                ));
            }
            match data
                .iter()
                .zip(&want)
                .position(|(a, e)| !close(f64::from(*a), *e))
            {
                None => Ok(()),
                Some(i) => Err(format!("{name}[{i}]: {} vs recorded {}", data[i], want[i])),
            }
        }
        OutputValue::Maps(maps) => {
            if maps.len() != rows.len() {
                return Err(format!(
                    "{name}: {} rows, recorded {}",
                    maps.len(),
                    rows.len()
                ));
            }
            for (index, (map, row)) in maps.iter().zip(rows).enumerate() {
                let row = row.as_object().ok_or("recorded row is not an object")?;
                if map.len() != row.len() {
                    return Err(format!(
                        "{name}[{index}]: keys {:?} vs {:?}",
                        map.keys(),
                        row.keys()
                    ));
                }
                for (key, value) in row {
                    let actual = map
                        .get(key)
                        .ok_or_else(|| format!("{name}[{index}]: no key {key}"))?;
                    if !close(f64::from(*actual), value.as_f64().unwrap_or(f64::NAN)) {
                        return Err(format!("{name}[{index}][{key}]: {actual} vs {value}"));
                    }
                }
            }
            Ok(())
        }
        OutputValue::F64 { .. } => Err(format!("{name}: unexpected float64 output")),
    }
}

#[test]
fn every_fixture_reproduces_its_recorded_outputs() {
    let Some(runtime) = runtime() else {
        return;
    };
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("manifest.json")).expect("reading the manifest"),
    )
    .expect("parsing the manifest");
    let models = manifest["models"].as_object().expect("a models object");
    assert_eq!(models.len(), 8, "all eight fixtures are listed");
    let mut failures = Vec::new();
    for (name, entry) in models {
        let model = OnnxModel::load(
            &runtime,
            &fixtures().join(entry["file"].as_str().unwrap()),
            1,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let samples: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{name}.samples.json"))).unwrap(),
        )
        .unwrap();
        let rows: Vec<Vec<f32>> = samples["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect();
        let outputs = model
            .predict_rows(&rows)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let recorded = samples["outputs"].as_object().unwrap();
        assert_eq!(outputs.len(), recorded.len(), "{name}: output count");
        for output in &outputs {
            let expected = &recorded[&output.name];
            if let Err(difference) = compare(&output.name, &output.value, expected) {
                failures.push(format!("{name}: {difference}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_rows_are_refused_with_a_clear_message() {
    let Some(runtime) = runtime() else {
        return;
    };
    let model = OnnxModel::load(&runtime, &fixtures().join("iris_logreg.onnx"), 1).unwrap();
    assert_eq!(model.inputs()[0].name, "input");
    assert_eq!(model.inputs()[0].shape, vec![-1, 4]);
    let error = model.predict_rows(&[vec![1.0, 2.0, 3.0]]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("takes 4 features per row, got 3"),
        "{error}"
    );
    let error = model
        .predict_rows(&[vec![1.0; 4], vec![1.0; 5]])
        .unwrap_err();
    assert!(error.to_string().contains("row 1 has 5 values"), "{error}");
    assert!(model.predict_rows(&[]).is_err());
}

#[test]
fn a_missing_library_names_the_fix() {
    // Only meaningful before any load in this process: tests run in threads of one process, so
    // check the message through the error type directly.
    let error = slipway_serving::RuntimeError::Missing {
        path: PathBuf::from("/nowhere/libonnxruntime.so"),
    };
    let message = error.to_string();
    assert!(
        message.contains("scripts/fetch-onnxruntime.sh"),
        "{message}"
    );
    assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
}

/// A signature is kept next to its graph only when it names its columns, and refused when its
/// width disagrees with the graph's.
#[test]
fn signatures_are_fitted_to_their_graph() {
    use slipway_serving::signature::Signature;
    let Some(runtime) = runtime() else {
        return;
    };
    let folder = fixtures().join("mlflow_logreg_breast_cancer");
    let model = OnnxModel::load(&runtime, &folder.join("model.onnx"), 1).expect("loading");
    let columns = |count: usize| {
        let list: Vec<String> = (0..count)
            .map(|i| format!(r#"{{"type": "double", "name": "c{i}"}}"#))
            .collect();
        format!("signature:\n  inputs: '[{}]'\n", list.join(", "))
    };
    let parse = |text: &str| Signature::from_mlmodel(text).unwrap().unwrap();
    // The fixture's own tensor signature agrees with the graph and adds nothing per request.
    let own = std::fs::read_to_string(folder.join("MLmodel")).unwrap();
    assert!(parse(&own).fitted_to(&model).unwrap().is_none());
    assert!(parse(&columns(30)).fitted_to(&model).unwrap().is_some());
    let error = parse(&columns(2)).fitted_to(&model).unwrap_err();
    assert!(
        error.contains("2 values per row") && error.contains("30"),
        "{error}"
    );
}
