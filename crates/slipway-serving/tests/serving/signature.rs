//! The MLflow fixture folder's signature agrees with its ONNX model: a request checked
//! against one fits the other.
//!
//! Needs libonnxruntime (`scripts/fetch-onnxruntime.sh`); without it the test says so and
//! passes, except with `CI=true`, where a missing runtime is a failure.

use std::path::PathBuf;

use slipway_serving::{OnnxModel, Runtime, load_signature};

#[test]
fn the_mlflow_fixture_signature_matches_its_model() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/mlflow_logreg_breast_cancer");
    let signature = load_signature(&folder)
        .unwrap()
        .expect("the fixture has a signature");
    let runtime = match Runtime::load(None) {
        Ok(runtime) => runtime,
        Err(error) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!in_ci, "CI=true and ONNX Runtime is unavailable: {error}");
            eprintln!("SKIPPED: this test needs ONNX Runtime: {error}");
            return;
        }
    };
    let model = OnnxModel::load(&runtime, &folder.join("model.onnx"), 1).unwrap();
    let rows = vec![vec![0.5_f32; 30]; 2];
    signature.check_unnamed_rows(&rows).unwrap();
    assert_eq!(
        signature.row_width().unwrap(),
        Some(model.check_rows(&rows).unwrap())
    );
    let outputs = model.predict_rows(&rows).unwrap();
    let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);
}
