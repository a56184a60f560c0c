//! MLflow's scoring protocol on the fixture models: every request format gives the recorded
//! predictions, and bad requests get MLflow's statuses and messages.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_serving::{OnnxModel, Runtime};
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

fn model_name(file: &str) -> String {
    file.trim_end_matches(".onnx").to_owned()
}

fn router(model_file: &str) -> Option<axum::Router> {
    let model = model_file;
    let runtime = match Runtime::load(None) {
        Ok(runtime) => runtime,
        Err(error) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!in_ci, "CI=true and ONNX Runtime is unavailable: {error}");
            eprintln!("SKIPPED: the scoring tests need ONNX Runtime: {error}");
            return None;
        }
    };
    let model = OnnxModel::load(&runtime, &fixtures().join(model), 2).unwrap();
    let name = model_name(model_file);
    Some(slipway_plane::scoring::scoring_router(
        Arc::new(model),
        &name,
        None,
        slipway_plane::scoring::Limits::default(),
    ))
}

fn samples(model: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("{model}.samples.json"))).unwrap(),
    )
    .unwrap()
}

async fn post(
    router: &axum::Router,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, String) {
    let mut request = Request::builder().method("POST").uri("/invocations");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = router
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| close(v, w)))
        }
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-5
        }
        (a, b) => a == b,
    }
}

#[tokio::test]
async fn every_format_gives_the_recorded_predictions() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let samples = samples("iris_logreg");
    let rows = samples["inputs"].clone();
    let expected = samples["outputs"].clone();
    let columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
    // Written by hand: the order of the keys is the order of the features, and serde_json's
    // map would sort them.
    let records = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let fields: Vec<String> = columns
                .iter()
                .zip(row.as_array().unwrap())
                .map(|(c, v)| format!("\"{c}\": {v}"))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let csv = std::iter::once(columns.join(","))
        .chain(rows.as_array().unwrap().iter().map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }))
        .collect::<Vec<_>>()
        .join("\n");
    let bodies = [
        (
            "application/json",
            json!({"dataframe_split": {"columns": columns, "data": rows}}).to_string(),
        ),
        (
            "application/json",
            format!("{{\"dataframe_records\": [{records}]}}"),
        ),
        ("application/json", json!({"instances": rows}).to_string()),
        ("application/json", json!({"inputs": rows}).to_string()),
        (
            "application/json; charset=utf-8",
            json!({"inputs": {"input": rows}, "params": {}}).to_string(),
        ),
        ("text/csv", csv),
    ];
    for (content_type, body) in bodies {
        let (status, answer) = post(&router, Some(content_type), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{content_type} {body}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert!(
            close(&answer["predictions"], &expected),
            "{body}: {answer} vs {expected}"
        );
    }
}

#[tokio::test]
async fn one_output_models_answer_a_list_and_zipmap_answers_objects() {
    let Some(router) = router("gbr_diabetes.onnx") else {
        return;
    };
    let samples = samples("gbr_diabetes");
    let (status, answer) = post(
        &router,
        Some("application/json"),
        json!({"inputs": samples["inputs"]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        close(&answer["predictions"], &samples["outputs"]["variable"]),
        "{answer}"
    );

    let router = router_or_panic("iris_logreg_zipmap.onnx");
    let samples = samples_of("iris_logreg_zipmap");
    let (status, answer) = post(
        &router,
        Some("application/json"),
        json!({"instances": samples["inputs"]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        close(&answer["predictions"], &samples["outputs"]),
        "{answer}"
    );
}

fn router_or_panic(model: &str) -> axum::Router {
    router(model).expect("ONNX Runtime loaded a moment ago")
}

fn samples_of(model: &str) -> Value {
    samples(model)
}

#[tokio::test]
async fn bad_requests_get_mlflows_statuses() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let cases: [(Option<&str>, &str, StatusCode, &str); 9] = [
        (
            Some("application/json"),
            "not json",
            StatusCode::BAD_REQUEST,
            "valid JSON",
        ),
        (
            Some("application/json"),
            "[[1,2,3,4]]",
            StatusCode::BAD_REQUEST,
            "Received a list",
        ),
        (
            Some("application/json"),
            r#"{"columns": ["a"], "data": [[1]]}"#,
            StatusCode::BAD_REQUEST,
            "exactly one of the input fields",
        ),
        (
            Some("application/json"),
            r#"{"inputs": [[1,2,3,4]], "instances": [[1,2,3,4]]}"#,
            StatusCode::BAD_REQUEST,
            "exactly one of the input fields",
        ),
        (
            Some("application/json"),
            r#"{"inputs": [[1,2,3]]}"#,
            StatusCode::BAD_REQUEST,
            "takes 4 features per row, got 3",
        ),
        (
            Some("application/json"),
            r#"{"inputs": [1,2,3,4]}"#,
            StatusCode::BAD_REQUEST,
            "not a row",
        ),
        (
            Some("application/json"),
            r#"{"inputs": [["a",2,3,4]]}"#,
            StatusCode::BAD_REQUEST,
            "expected a number",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "a=1",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only supports the following content types",
        ),
        (
            None,
            r#"{"inputs": [[1,2,3,4]]}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type is required",
        ),
    ];
    for (content_type, body, status, message) in cases {
        let (got, answer) = post(&router, content_type, body.to_owned()).await;
        assert_eq!(got, status, "{content_type:?} {body}: {answer}");
        assert!(answer.contains(message), "{body}: {answer}");
    }
    let (got, answer) = post(&router, Some("application/json; charset=latin-1"), "{}").await;
    assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(answer.contains("only supports UTF-8"));
    let json_error: Value =
        serde_json::from_str(&post(&router, Some("application/json"), "[]").await.1).unwrap();
    assert_eq!(json_error["error_code"], "BAD_REQUEST");

    let response = router
        .clone()
        .oneshot(Request::builder().uri("/ping").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn open_inference_protocol_v2() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let samples = samples("iris_logreg");
    let rows = samples["inputs"].as_array().unwrap();
    let flat: Vec<Value> = rows
        .iter()
        .flat_map(|row| row.as_array().unwrap().clone())
        .collect();

    assert_eq!(
        call(&router, "GET", "/v2/health/live", None).await.1,
        json!({"live": true})
    );
    assert_eq!(
        call(&router, "GET", "/v2/health/ready", None).await.1,
        json!({"ready": true})
    );
    let (status, metadata) = call(&router, "GET", "/v2/models/iris_logreg", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        metadata["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(metadata["outputs"][0]["datatype"], "INT64");
    let (status, ready) = call(
        &router,
        "GET",
        "/v2/models/iris_logreg/versions/3/ready",
        None,
    )
    .await;
    assert_eq!(
        (status, ready["ready"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, error) = call(&router, "GET", "/v2/models/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "Model with name nope does not exist.");

    for data in [json!(flat), json!(rows)] {
        let request = json!({"id": "42", "inputs": [{"name": "input", "shape": [8, 4], "datatype": "FP32", "data": data}]});
        let (status, answer) = call(
            &router,
            "POST",
            "/v2/models/iris_logreg/infer",
            Some(request),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["id"], "42");
        assert_eq!(answer["model_name"], "iris_logreg");
        let outputs = answer["outputs"].as_array().unwrap();
        assert_eq!(
            outputs[0],
            json!({"name": "label", "datatype": "INT64", "shape": [8], "data": samples["outputs"]["label"]})
        );
        assert_eq!(outputs[1]["shape"], json!([8, 3]));
        let recorded: Vec<Value> = samples["outputs"]["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().clone())
            .collect();
        assert!(close(&outputs[1]["data"], &json!(recorded)), "{answer}");
    }
    let only = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": rows[0]}], "outputs": [{"name": "probabilities"}]});
    let (_, answer) = call(
        &router,
        "POST",
        "/v2/models/iris_logreg/versions/1/infer",
        Some(only),
    )
    .await;
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1, "{answer}");

    let bad = [
        json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        json!({"inputs": [{"name": "input", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}),
        json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
        json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}),
        json!({"nothing": true}),
    ];
    for request in bad {
        let (status, answer) = call(
            &router,
            "POST",
            "/v2/models/iris_logreg/infer",
            Some(request.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn zipmap_outputs_are_a_probability_tensor_in_v2() {
    let Some(router) = router("iris_logreg_zipmap.onnx") else {
        return;
    };
    let samples = samples("iris_logreg_zipmap");
    let request = json!({"inputs": [{"name": "input", "shape": [8, 4], "datatype": "FP32", "data": samples["inputs"]}]});
    let (status, answer) = call(
        &router,
        "POST",
        "/v2/models/iris_logreg_zipmap/infer",
        Some(request),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let probabilities = &answer["outputs"][1];
    assert_eq!(probabilities["shape"], json!([8, 3]));
    let recorded: Vec<Value> = samples["outputs"]["output_probability"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| ["0", "1", "2"].map(|k| row[k].clone()))
        .collect();
    assert!(close(&probabilities["data"], &json!(recorded)), "{answer}");
}

#[tokio::test]
async fn overload_is_shed_with_503_and_slow_requests_time_out_with_504() {
    if router("iris_logreg.onnx").is_none() {
        return;
    }
    let runtime = Runtime::load(None).expect("loaded a moment ago");
    let load =
        || Arc::new(OnnxModel::load(&runtime, &fixtures().join("iris_logreg.onnx"), 1).unwrap());
    let body = json!({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).to_string();
    // No room at all: every inference request is shed at once, health still answers.
    let full = slipway_plane::scoring::scoring_router(
        load(),
        "iris",
        None,
        slipway_plane::scoring::Limits {
            max_in_flight: 0,
            timeout: std::time::Duration::from_secs(5),
            ..slipway_plane::scoring::Limits::default()
        },
    );
    let response = full
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/invocations")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert!(response.headers().contains_key("x-request-id"));
    let response = full
        .clone()
        .oneshot(Request::builder().uri("/ping").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A millisecond for 50,000 rows (about 1 MB of JSON to read and a batch to run): too short.
    let hurried = slipway_plane::scoring::scoring_router(
        load(),
        "iris",
        None,
        slipway_plane::scoring::Limits {
            max_in_flight: 4,
            timeout: std::time::Duration::from_millis(1),
            ..slipway_plane::scoring::Limits::default()
        },
    );
    let rows = vec![vec![5.1, 3.5, 1.4, 0.2]; 50_000];
    let big = json!({ "inputs": rows }).to_string();
    let response = hurried
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/invocations")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn metrics_count_requests_outcomes_and_batches() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let ok = json!({"inputs": [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.8, 1.8]]}).to_string();
    for body in [ok.clone(), ok, "{\"inputs\": [[1]]}".to_owned()] {
        post(&router, Some("application/json"), body).await;
    }
    let v2 = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    call(&router, "POST", "/v2/models/iris_logreg/infer", Some(v2)).await;
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "slipway_serving_requests_total{protocol=\"mlflow\",outcome=\"ok\"} 2",
        "slipway_serving_requests_total{protocol=\"mlflow\",outcome=\"client_error\"} 1",
        "slipway_serving_requests_total{protocol=\"v2\",outcome=\"ok\"} 1",
        "slipway_serving_batch_rows_count 3",
        "slipway_serving_batch_rows_sum 5.0",
        "slipway_serving_inference_duration_seconds_count 3",
        "slipway_serving_in_flight_requests 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn dataframe_records_are_aligned_by_column_name() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let body = r#"{"dataframe_records": [
        {"a": 6.0, "b": 3.0, "c": 4.8, "d": 1.8},
        {"d": 1.8, "c": 4.8, "b": 3.0, "a": 6.0}]}"#;
    let (status, answer) = post(&router, Some("application/json"), body.to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let probabilities = answer["predictions"]["probabilities"].as_array().unwrap();
    assert_eq!(
        probabilities[0], probabilities[1],
        "the same row in another key order"
    );
    for bad in [
        r#"{"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 1, "b": 2, "c": 3}]}"#,
        r#"{"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 1, "b": 2, "c": 3, "e": 4}]}"#,
    ] {
        let (status, answer) = post(&router, Some("application/json"), bad.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413_in_the_protocols_format() {
    if router("iris_logreg.onnx").is_none() {
        return;
    }
    let runtime = Runtime::load(None).expect("loaded a moment ago");
    let model =
        Arc::new(OnnxModel::load(&runtime, &fixtures().join("iris_logreg.onnx"), 1).unwrap());
    let small = slipway_plane::scoring::scoring_router(
        model,
        "iris",
        None,
        slipway_plane::scoring::Limits {
            max_body_bytes: 64,
            ..slipway_plane::scoring::Limits::default()
        },
    );
    let big = json!({"inputs": vec![[5.1, 3.5, 1.4, 0.2]; 20]}).to_string();
    let (status, answer) = post(&small, Some("application/json"), big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["error_code"],
        "INVALID_PARAMETER_VALUE"
    );
    let v2 = json!({"inputs": [{"name": "input", "shape": [20, 4], "datatype": "FP32", "data": vec![[5.1, 3.5, 1.4, 0.2]; 20]}]});
    let (status, answer) = call(&small, "POST", "/v2/models/iris/infer", Some(v2)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("--max-body")),
        "{answer}"
    );
}

/// The issue's body: 3,000,000 one-value rows, 28 MiB of JSON. Read into a `Value` tree it
/// took gigabytes; with the row limit the parse stops at row 100,001 with 413.
#[tokio::test]
async fn a_28_mib_body_is_refused_at_the_row_limit_without_being_built() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let mut body = String::with_capacity(28 << 20);
    body.push_str("{\"inputs\": [");
    for row in 0..3_000_000 {
        if row > 0 {
            body.push(',');
        }
        body.push_str("[1.25, 2]");
    }
    body.push_str("]}");
    assert!(body.len() > 28 << 20, "{}", body.len());
    let started = std::time::Instant::now();
    let (status, answer) = post(&router, Some("application/json"), body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(
        answer["message"].as_str().unwrap().contains("--max-rows"),
        "{answer}"
    );
    // Reading 100,000 rows of a debug build: well under a second; a tree of 3,000,000 took many.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Every other shape and V2 stop at the value limit with their own error format.
    let limited = |max_rows, max_values| {
        let runtime = Runtime::load(None).expect("loaded a moment ago");
        let model =
            Arc::new(OnnxModel::load(&runtime, &fixtures().join("iris_logreg.onnx"), 1).unwrap());
        slipway_plane::scoring::scoring_router(
            model,
            "iris",
            None,
            slipway_plane::scoring::Limits {
                max_rows,
                max_values,
                ..slipway_plane::scoring::Limits::default()
            },
        )
    };
    let small = limited(10, 20);
    let rows = vec![[5.1, 3.5, 1.4, 0.2]; 6];
    let records: Vec<Value> = rows
        .iter()
        .map(|r| json!({"a": r[0], "b": r[1], "c": r[2], "d": r[3]}))
        .collect();
    for body in [
        json!({"inputs": rows}),
        json!({"instances": rows}),
        json!({"inputs": {"input": rows}}),
        json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": rows}}),
        json!({"dataframe_records": records}),
    ] {
        let (status, answer) = post(&small, Some("application/json"), body.to_string()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}: {answer}");
        assert!(answer.contains("--max-values"), "{answer}");
    }
    let csv = format!("a,b,c,d\n{}", "5.1,3.5,1.4,0.2\n".repeat(6));
    let (status, answer) = post(&small, Some("text/csv"), csv).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let v2 =
        json!({"inputs": [{"name": "input", "shape": [6, 4], "datatype": "FP32", "data": rows}]});
    let (status, answer) = call(&small, "POST", "/v2/models/iris/infer", Some(v2)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("--max-values"));
    // Within both limits the same request is answered.
    let (status, answer) = post(
        &limited(10, 24),
        Some("application/json"),
        json!({"inputs": rows}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn numbers_beyond_float32_and_duplicate_keys_are_400s() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    for (body, says) in [
        (r#"{"inputs": [[5.1, 3.5, 1e39, 0.2]]}"#, "inputs[0][2]"),
        (
            r#"{"dataframe_split": {"columns": ["a","b","c","d"], "data": [[5.1, 3.5, 1.4, -1e39]]}}"#,
            "dataframe_split.data[0][3]",
        ),
        (
            r#"{"dataframe_records": [{"a": 5.1, "b": 3.5, "c": 1.4, "d": 0.2, "d": 0.3}]}"#,
            "dataframe_records[0].d",
        ),
        (
            r#"{"inputs": [[5.1, 3.5, 1.4, 0.2]], "inputs": [[5.1, 3.5, 1.4, 0.2]]}"#,
            "'inputs' appears more than once",
        ),
    ] {
        let (status, answer) = post(&router, Some("application/json"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer}");
    }
    let v2 = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 1e39]}]});
    let (status, answer) = call(&router, "POST", "/v2/models/iris_logreg/infer", Some(v2)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("inputs[0].data[3]"),
        "{answer}"
    );
}

/// `slipway serve` issues every request id itself: a client's is never answered as ours.
#[tokio::test]
async fn request_ids_are_the_servers_own() {
    let Some(router) = router("iris_logreg.onnx") else {
        return;
    };
    let request = Request::builder()
        .method("POST")
        .uri("/invocations")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "attacker")
        .body(Body::from(r#"{"inputs": [[5.1, 3.5, 1.4, 0.2]]}"#))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ids: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(
        uuid::Uuid::parse_str(ids[0].to_str().unwrap()).is_ok(),
        "{ids:?}"
    );
}
