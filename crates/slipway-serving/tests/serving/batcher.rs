//! The batcher on real ONNX Runtime and the fixture models (`tests/fixtures/models`): merged
//! runs answer each request exactly as a run of its own rows would (within 1e-5), batches
//! close by size and by time, one bad request or an abandoned caller harms no one else, and a
//! full queue refuses.
//!
//! Needs libonnxruntime (`scripts/fetch-onnxruntime.sh`); without it the tests say so and
//! pass, except with `CI=true`, where a missing runtime is a failure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_serving::{
    BatchConfig, BatchError, Batcher, ModelError, OnnxModel, Output, OutputValue, Runtime,
};

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
            eprintln!("SKIPPED: the batcher tests need ONNX Runtime: {error}");
            None
        }
    }
}

/// Two sessions, as a server would have; the batcher runs as many batches at once.
fn model(runtime: &Runtime, name: &str) -> Arc<OnnxModel> {
    let model = OnnxModel::load(runtime, &fixtures().join(format!("{name}.onnx")), 2)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Arc::new(model)
}

fn sample_rows(name: &str) -> Vec<Vec<f32>> {
    let samples: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{name}.samples.json"))).unwrap(),
    )
    .unwrap();
    samples["inputs"]
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
        .collect()
}

fn fixture_names() -> Vec<String> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
            .unwrap();
    manifest["models"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn config(max_batch_rows: usize, max_wait: Duration) -> BatchConfig {
    BatchConfig {
        max_batch_rows,
        max_wait,
        queue_capacity: 1024,
        concurrent_batches: 2,
    }
}

/// Awaits an answer, failing the test rather than hanging it if batches stop closing.
async fn answered<F: std::future::Future>(answer: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .expect("no answer within 60 s: a batch never closed")
}

/// What differs between a batched answer and a run of the request's rows alone.
fn difference(actual: &[Output], expected: &[Output]) -> Option<String> {
    if actual.len() != expected.len() {
        return Some(format!(
            "{} outputs, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let close = |a: f64, e: f64| (a - e).abs() <= TOLERANCE;
    for (actual, expected) in actual.iter().zip(expected) {
        let name = &expected.name;
        if actual.name != *name {
            return Some(format!("output {} where {name} was expected", actual.name));
        }
        let same = match (&actual.value, &expected.value) {
            (
                OutputValue::F32 { shape, data },
                OutputValue::F32 {
                    shape: want_shape,
                    data: want,
                },
            ) => {
                shape == want_shape
                    && data.len() == want.len()
                    && data
                        .iter()
                        .zip(want)
                        .all(|(a, e)| close(f64::from(*a), f64::from(*e)))
            }
            (
                OutputValue::F64 { shape, data },
                OutputValue::F64 {
                    shape: want_shape,
                    data: want,
                },
            ) => {
                shape == want_shape
                    && data.len() == want.len()
                    && data.iter().zip(want).all(|(a, e)| close(*a, *e))
            }
            (OutputValue::I64 { .. }, OutputValue::I64 { .. }) => actual.value == expected.value,
            (OutputValue::Maps(maps), OutputValue::Maps(want)) => {
                maps.len() == want.len()
                    && maps.iter().zip(want).all(|(map, want)| {
                        map.len() == want.len()
                            && map.iter().zip(want).all(|((k, v), (wk, wv))| {
                                k == wk && close(f64::from(*v), f64::from(*wv))
                            })
                    })
            }
            _ => false,
        };
        if !same {
            return Some(format!(
                "{name}: {:?}, alone {:?}",
                actual.value, expected.value
            ));
        }
    }
    None
}

/// Requests of one to three consecutive sample rows, each row several times over.
fn requests(rows: &[Vec<f32>]) -> Vec<Vec<Vec<f32>>> {
    (0..3 * rows.len())
        .map(|i| {
            let start = i % rows.len();
            let end = (start + 1 + i % 3).min(rows.len());
            rows[start..end].to_vec()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_what_their_own_runs_give_for_every_fixture() {
    let Some(runtime) = runtime() else {
        return;
    };
    let names = fixture_names();
    // Tensor outputs (label + probabilities, a regressor's column) and ZipMap's maps.
    assert!(names.iter().any(|n| n == "logreg_breast_cancer"));
    assert!(names.iter().any(|n| n == "iris_logreg_zipmap"));
    let mut failures = Vec::new();
    for name in &names {
        let model = model(&runtime, name);
        let batcher = Batcher::new(model.clone(), config(16, Duration::from_millis(5)));
        let requests = requests(&sample_rows(name));
        let answers: Vec<_> = requests
            .iter()
            .map(|rows| tokio::spawn(batcher.submit(rows.clone())))
            .collect();
        let mut merged = false;
        for (rows, answer) in requests.iter().zip(answers) {
            let answer = answered(answer)
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            merged |= answer.batch_requests > 1;
            assert!(answer.batch_rows >= rows.len() && answer.batch_rows <= 16);
            let alone = model.predict_rows(rows).unwrap();
            if let Some(difference) = difference(&answer.outputs, &alone) {
                failures.push(format!("{name}, rows {rows:?}: {difference}"));
            }
        }
        assert!(merged, "{name}: no request shared a batch");
        answered(batcher.shutdown()).await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_merge_into_batches() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("iris_logreg");
    let batcher = Batcher::new(
        model(&runtime, "iris_logreg"),
        BatchConfig {
            concurrent_batches: 1,
            ..config(64, Duration::from_millis(5))
        },
    );
    // All submitted at once from tasks on both workers.
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let batcher = Arc::new(batcher);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (barrier, batcher, row) = (barrier.clone(), batcher.clone(), rows[i % 8].clone());
            tokio::spawn(async move {
                barrier.wait().await;
                batcher.submit(vec![row]).await
            })
        })
        .collect();
    let (mut largest, mut reported_rows) = (0, 0);
    for task in tasks {
        let answer = answered(task).await.unwrap().unwrap();
        assert_eq!(
            answer.batch_rows, answer.batch_requests,
            "one row per request"
        );
        largest = largest.max(answer.batch_rows);
        if answer.reports_run {
            reported_rows += answer.batch_rows;
        }
    }
    assert!(largest > 1, "32 concurrent requests ran one by one");
    assert_eq!(reported_rows, 32, "each run reported once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_bounds_a_lone_requests_delay() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("logreg_breast_cancer");
    let max_wait = Duration::from_millis(50);
    let batcher = Batcher::new(
        model(&runtime, "logreg_breast_cancer"),
        config(64, max_wait),
    );
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        batcher.submit(vec![rows[0].clone()]),
    )
    .await
    .expect("a lone request waited past max_wait")
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!((answer.batch_rows, answer.batch_requests), (1, 1));
    // The batch closes at max_wait; the rest is scheduling and a microseconds-long run, with
    // room for a loaded test machine.
    assert!(
        answer.queued < max_wait + Duration::from_millis(250),
        "{answer:?}"
    );
    assert!(
        elapsed < max_wait + Duration::from_millis(500),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_a_full_batch_or_more_runs_alone_at_once() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("rf_breast_cancer");
    let model = model(&runtime, "rf_breast_cancer");
    // A window no test would wait out: only the size rule can close these batches.
    let batcher = Batcher::new(model.clone(), config(4, Duration::from_secs(600)));
    for size in [4, 8] {
        let request = rows[..size].to_vec();
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), batcher.submit(request.clone()))
            .await
            .expect("a full-size request waited for the batch window")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!((answer.batch_rows, answer.batch_requests), (size, 1));
        assert_eq!(
            difference(&answer.outputs, &model.predict_rows(&request).unwrap()),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_fails_alone() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("logreg_breast_cancer");
    let model = model(&runtime, "logreg_breast_cancer");
    let batcher = Batcher::new(model.clone(), config(64, Duration::from_millis(20)));
    let good: Vec<_> = rows
        .iter()
        .map(|row| tokio::spawn(batcher.submit(vec![row.clone()])))
        .collect();
    let narrow = tokio::spawn(batcher.submit(vec![rows[0][..29].to_vec()]));
    let ragged = tokio::spawn(batcher.submit(vec![rows[0].clone(), rows[1][..29].to_vec()]));
    let empty = tokio::spawn(batcher.submit(Vec::new()));
    let more_good: Vec<_> = rows
        .iter()
        .map(|row| tokio::spawn(batcher.submit(vec![row.clone()])))
        .collect();

    let refusal = |answer: Result<_, BatchError>| match answer {
        Err(BatchError::Model(ModelError::BadInput(message))) => message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refusal(answered(narrow).await.unwrap()),
        "input 'input' takes 30 features per row, got 29"
    );
    assert_eq!(
        refusal(answered(ragged).await.unwrap()),
        "row 1 has 29 values, the first row 30"
    );
    assert_eq!(
        refusal(answered(empty).await.unwrap()),
        "no rows to predict"
    );
    let mut merged = false;
    for (row, answer) in rows
        .iter()
        .chain(&rows)
        .zip(good.into_iter().chain(more_good))
    {
        let answer = answered(answer).await.unwrap().unwrap();
        merged |= answer.batch_requests > 1;
        let alone = model.predict_rows(std::slice::from_ref(row)).unwrap();
        assert_eq!(difference(&answer.outputs, &alone), None);
    }
    assert!(merged, "the good requests never shared a batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_callers_do_not_disturb_the_batch() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("iris_logreg_zipmap");
    let model = model(&runtime, "iris_logreg_zipmap");
    let batcher = Batcher::new(model.clone(), config(64, Duration::from_millis(30)));
    let mut kept = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let answer = batcher.submit(vec![row.clone()]);
        if index % 2 == 0 {
            // Gives up at once, as a caller whose timeout fired would.
            assert!(
                tokio::time::timeout(Duration::from_micros(1), answer)
                    .await
                    .is_err()
            );
        } else {
            kept.push((row.clone(), tokio::spawn(answer)));
        }
    }
    for (row, answer) in kept {
        let answer = answered(answer).await.unwrap().unwrap();
        assert!(
            answer.batch_requests <= 4,
            "abandoned requests ran: {answer:?}"
        );
        let alone = model.predict_rows(&[row]).unwrap();
        assert_eq!(difference(&answer.outputs, &alone), None);
    }
    // And the batcher goes on serving.
    let answer = answered(batcher.submit(vec![rows[0].clone()]))
        .await
        .unwrap();
    assert_eq!(answer.outputs, model.predict_rows(&rows[..1]).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_submitted_before_shutdown_or_drop_are_answered() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("gbr_diabetes");
    let model = model(&runtime, "gbr_diabetes");
    for shut_down in [true, false] {
        let batcher = Batcher::new(model.clone(), config(64, Duration::from_millis(100)));
        let answers: Vec<_> = rows
            .iter()
            .map(|row| tokio::spawn(batcher.submit(vec![row.clone()])))
            .collect();
        if shut_down {
            answered(batcher.shutdown()).await;
        } else {
            drop(batcher);
        }
        for (row, answer) in rows.iter().zip(answers) {
            let answer = answered(answer).await.unwrap().unwrap();
            let alone = model.predict_rows(std::slice::from_ref(row)).unwrap();
            assert_eq!(difference(&answer.outputs, &alone), None);
        }
    }
}

/// On a current-thread runtime the collector cannot run while this test's code does, so what
/// the queue holds is exact; a multi-thread runtime would race it.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_refuses_at_once() {
    let Some(runtime) = runtime() else {
        return;
    };
    let rows = sample_rows("iris_logreg");
    let batcher = Batcher::new(
        model(&runtime, "iris_logreg"),
        BatchConfig {
            queue_capacity: 3,
            ..config(64, Duration::from_millis(5))
        },
    );
    let answers: Vec<_> = (0..5)
        .map(|i| batcher.submit(vec![rows[i].clone()]))
        .collect();
    let answers = answered(futures::future::join_all(answers)).await;
    assert!(answers[..3].iter().all(Result::is_ok), "{answers:?}");
    assert!(
        answers[3..]
            .iter()
            .all(|answer| matches!(answer, Err(BatchError::Full))),
        "{answers:?}"
    );
    assert_eq!(BatchError::Full.to_string(), "the batch queue is full");
    // Drained, it takes requests again.
    assert!(
        answered(batcher.submit(vec![rows[0].clone()]))
            .await
            .is_ok()
    );
}
