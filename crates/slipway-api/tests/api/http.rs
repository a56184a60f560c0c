//! HTTP-level tests of MLflow's REST API as slipway serves it: every route's happy path and
//! response shape (checked against the MLflow sample responses' shapes), its validation errors,
//! a data-driven table of bad requests, fuzzing of every body route, and semantics that only
//! show through HTTP (log-batch limits and atomicity, paging, NaN, the artifact proxy).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    self, API, PROXY, TestServer, assert_error, assert_keys, base64, encode, is_hex32, kv, method,
    qs, server,
};

const MISSING_RUN: &str = "00000000000000000000000000000000";
const MISSING_LM: &str = "m-00000000000000000000000000000000";

// ====================================================================================
// health, version, server-info
// ====================================================================================

#[tokio::test]
async fn health_version_and_server_info() {
    let s = server().await;
    let raw = s.send(method("GET"), "/health", vec![], None).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, b"OK");
    assert!(
        raw.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let raw = s.send(method("GET"), "/version", vec![], None).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(raw.body).unwrap(),
        slipway_api::MLFLOW_COMPATIBLE_VERSION
    );

    for prefix in ["/api/3.0", "/ajax-api/3.0"] {
        let body = s
            .ok("GET", &format!("{prefix}/mlflow/server-info"), None)
            .await;
        assert_eq!(body["store_type"], "SqlStore");
        for flag in [
            "workspaces_enabled",
            "trace_archival_enabled",
            "multipart_uploads_enabled",
            "multipart_downloads_enabled",
        ] {
            assert_eq!(body[flag], false, "{flag}: {body}");
        }
        assert!(body["features_enabled"].is_object(), "{body}");
    }
}

#[tokio::test]
async fn request_ids_are_always_the_servers() {
    let s = server().await;
    // Generated when absent (TestServer::send asserts presence on every response).
    let a = s.send(method("GET"), "/health", vec![], None).await;
    let b = s.send(method("GET"), "/health", vec![], None).await;
    assert_ne!(a.headers["x-request-id"], b.headers["x-request-id"]);
    // A caller's id is never answered as if the server had issued it, also on errors.
    for path in ["/health", "/api/2.0/mlflow/nope"] {
        let request = axum::http::Request::builder()
            .uri(path)
            .header("x-request-id", "caller-chosen-id")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(s.router.clone(), request)
            .await
            .unwrap();
        let ids: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
        assert_eq!(ids.len(), 1, "{path}: {ids:?}");
        assert_ne!(ids[0], "caller-chosen-id", "{path}");
        assert!(
            uuid::Uuid::parse_str(ids[0].to_str().unwrap()).is_ok(),
            "{path}: {ids:?}"
        );
    }
}

// ====================================================================================
// experiments
// ====================================================================================

fn assert_experiment_shape(e: &Value) {
    let id = e["experiment_id"]
        .as_str()
        .expect("experiment_id is a string");
    assert!(id.parse::<u64>().is_ok(), "decimal id: {e}");
    assert!(e["name"].is_string(), "{e}");
    assert!(e["artifact_location"].is_string(), "{e}");
    assert!(
        matches!(e["lifecycle_stage"].as_str(), Some("active" | "deleted")),
        "{e}"
    );
    assert!(e["creation_time"].is_i64(), "int64 as a number: {e}");
    assert!(e["last_update_time"].is_i64(), "int64 as a number: {e}");
}

#[tokio::test]
async fn experiment_routes() {
    let s = server().await;

    // The Default experiment exists from the start.
    let default = s.get("/experiments/get", &[("experiment_id", "0")]).await;
    assert_eq!(default["experiment"]["name"], "Default");
    assert_experiment_shape(&default["experiment"]);

    // create (sample: {"experiment_id": "117"})
    let created = s
        .post(
            "/experiments/create",
            json!({"name": "sample-exp", "tags": [{"key": "team", "value": "vision"}]}),
        )
        .await;
    assert_keys("create", &created, &["experiment_id"]);
    let id = created["experiment_id"].as_str().unwrap().to_owned();

    // get
    let got = s.get("/experiments/get", &[("experiment_id", &id)]).await;
    assert_keys("get", &got, &["experiment"]);
    let e = &got["experiment"];
    assert_experiment_shape(e);
    assert_eq!(e["experiment_id"], id.as_str());
    assert_eq!(e["name"], "sample-exp");
    assert_eq!(e["artifact_location"], format!("mlflow-artifacts:/{id}"));
    assert_eq!(e["lifecycle_stage"], "active");
    assert_eq!(e["tags"], json!([{"key": "team", "value": "vision"}]));

    // get-by-name
    let by_name = s
        .get(
            "/experiments/get-by-name",
            &[("experiment_name", "sample-exp")],
        )
        .await;
    assert_eq!(by_name["experiment"], got["experiment"]);

    // explicit artifact_location is kept
    let custom = s
        .post(
            "/experiments/create",
            json!({"name": "custom-loc", "artifact_location": "mlflow-artifacts:/elsewhere"}),
        )
        .await;
    let custom_id = custom["experiment_id"].as_str().unwrap();
    let custom = s
        .get("/experiments/get", &[("experiment_id", custom_id)])
        .await;
    assert_eq!(
        custom["experiment"]["artifact_location"],
        "mlflow-artifacts:/elsewhere"
    );

    // search, POST and GET, with a filter (sample: experiments/search)
    let found = s
        .post(
            "/experiments/search",
            json!({"filter": "name = 'sample-exp'", "max_results": 10}),
        )
        .await;
    let list = found["experiments"].as_array().expect("experiments list");
    assert_eq!(list.len(), 1, "{found}");
    assert_eq!(list[0], got["experiment"]);
    assert!(found.get("next_page_token").is_none(), "{found}");
    let found_get = s
        .get(
            "/experiments/search",
            &[("filter", "name = 'sample-exp'"), ("max_results", "10")],
        )
        .await;
    assert_eq!(found_get, found);

    // update = rename
    assert_eq!(
        s.post(
            "/experiments/update",
            json!({"experiment_id": id, "new_name": "renamed"})
        )
        .await,
        json!({})
    );
    let renamed = s.get("/experiments/get", &[("experiment_id", &id)]).await;
    assert_eq!(renamed["experiment"]["name"], "renamed");
    s.fails(
        "GET",
        &format!("{API}/experiments/get-by-name?experiment_name=sample-exp"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;

    // tags
    assert_eq!(
        s.post(
            "/experiments/set-experiment-tag",
            json!({"experiment_id": id, "key": "k", "value": "v"})
        )
        .await,
        json!({})
    );
    let tagged = s.get("/experiments/get", &[("experiment_id", &id)]).await;
    assert_eq!(kv(&tagged["experiment"]["tags"], "k"), Some("v"));
    assert_eq!(
        s.post(
            "/experiments/delete-experiment-tag",
            json!({"experiment_id": id, "key": "k"})
        )
        .await,
        json!({})
    );
    let untagged = s.get("/experiments/get", &[("experiment_id", &id)]).await;
    assert_eq!(kv(&untagged["experiment"]["tags"], "k"), None);

    // delete is soft; hidden from ACTIVE_ONLY, shown by DELETED_ONLY; restore brings it back
    assert_eq!(
        s.post("/experiments/delete", json!({"experiment_id": id}))
            .await,
        json!({})
    );
    let deleted = s.get("/experiments/get", &[("experiment_id", &id)]).await;
    assert_eq!(deleted["experiment"]["lifecycle_stage"], "deleted");
    let active = s
        .post("/experiments/search", json!({"filter": "name = 'renamed'"}))
        .await;
    assert!(
        active["experiments"]
            .as_array()
            .is_none_or(|list| list.is_empty()),
        "{active}"
    );
    let deleted_only = s
        .post(
            "/experiments/search",
            json!({"filter": "name = 'renamed'", "view_type": "DELETED_ONLY"}),
        )
        .await;
    assert_eq!(deleted_only["experiments"].as_array().unwrap().len(), 1);
    let all = s
        .post("/experiments/search", json!({"view_type": "ALL"}))
        .await;
    assert_eq!(all["experiments"].as_array().unwrap().len(), 3, "{all}");
    // the name of a deleted experiment stays reserved
    s.fails(
        "POST",
        &format!("{API}/experiments/create"),
        Some(json!({"name": "renamed"})),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    .await;
    // a run cannot be created in a deleted experiment
    s.fails(
        "POST",
        &format!("{API}/runs/create"),
        Some(json!({"experiment_id": id})),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    .await;
    assert_eq!(
        s.post("/experiments/restore", json!({"experiment_id": id}))
            .await,
        json!({})
    );
    let restored = s.get("/experiments/get", &[("experiment_id", &id)]).await;
    assert_eq!(restored["experiment"]["lifecycle_stage"], "active");

    // ids may arrive as numbers
    let numeric = s
        .post(
            "/experiments/set-experiment-tag",
            json!({"experiment_id": id.parse::<i64>().unwrap(), "key": "n", "value": "1"}),
        )
        .await;
    assert_eq!(numeric, json!({}));

    // duplicates
    let message = s
        .fails(
            "POST",
            &format!("{API}/experiments/create"),
            Some(json!({"name": "custom-loc"})),
            400,
            "RESOURCE_ALREADY_EXISTS",
        )
        .await;
    assert!(message.contains("custom-loc"), "{message}");
}

// ====================================================================================
// runs
// ====================================================================================

fn assert_run_info_shape(info: &Value) {
    let run_id = info["run_id"].as_str().expect("run_id is a string");
    assert!(is_hex32(run_id), "32-hex run id: {info}");
    assert_eq!(info["run_uuid"], info["run_id"], "run_uuid mirrors run_id");
    assert!(info["experiment_id"].is_string(), "{info}");
    assert!(info["run_name"].is_string(), "{info}");
    assert!(info["user_id"].is_string(), "{info}");
    assert!(info["start_time"].is_i64(), "{info}");
    assert!(info["artifact_uri"].is_string(), "{info}");
    assert!(
        matches!(
            info["status"].as_str(),
            Some("RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED")
        ),
        "{info}"
    );
    assert!(
        matches!(info["lifecycle_stage"].as_str(), Some("active" | "deleted")),
        "{info}"
    );
    if let Some(end) = info.get("end_time") {
        assert!(end.is_i64(), "{info}");
    }
}

fn assert_run_shape(run: &Value) {
    assert!(run["info"].is_object(), "{run}");
    assert_run_info_shape(&run["info"]);
    assert!(run["data"].is_object(), "{run}");
    if let Some(inputs) = run.get("inputs") {
        assert!(inputs.is_object(), "{run}");
    }
}

#[tokio::test]
async fn run_lifecycle_routes() {
    let s = server().await;
    let exp = s.create_experiment("runs").await;

    // create (sample: runs/create)
    let created = s
        .post(
            "/runs/create",
            json!({
                "experiment_id": exp,
                "run_name": "sample-run",
                "start_time": 1_700_000_000_000_i64,
                "tags": [{"key": "mlflow.user", "value": "alice"}],
            }),
        )
        .await;
    assert_keys("runs/create", &created, &["run"]);
    let run = &created["run"];
    assert_run_shape(run);
    let info = &run["info"];
    let id = info["run_id"].as_str().unwrap().to_owned();
    assert_eq!(info["experiment_id"], exp.as_str());
    assert_eq!(info["run_name"], "sample-run");
    assert_eq!(info["status"], "RUNNING");
    assert_eq!(info["start_time"], 1_700_000_000_000_i64);
    assert_eq!(info["lifecycle_stage"], "active");
    assert!(info.get("end_time").is_none(), "{info}");
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/{id}/artifacts")
    );
    assert_eq!(kv(&run["data"]["tags"], "mlflow.user"), Some("alice"));
    assert_eq!(
        kv(&run["data"]["tags"], "mlflow.runName"),
        Some("sample-run")
    );

    // get by run_id and by run_uuid
    let by_id = s.get("/runs/get", &[("run_id", &id)]).await;
    assert_keys("runs/get", &by_id, &["run"]);
    assert_run_shape(&by_id["run"]);
    let by_uuid = s.get("/runs/get", &[("run_uuid", &id)]).await;
    assert_eq!(by_id, by_uuid);
    let both = s
        .get("/runs/get", &[("run_id", &id), ("run_uuid", &id)])
        .await;
    assert_eq!(by_id, both);

    // update (sample: runs/update) -> {"run_info"}; run_name is mirrored into the tag
    let updated = s
        .post(
            "/runs/update",
            json!({"run_id": id, "run_uuid": id, "status": "FINISHED", "end_time": 1_700_000_001_000_i64, "run_name": "renamed"}),
        )
        .await;
    assert_keys("runs/update", &updated, &["run_info"]);
    assert_run_info_shape(&updated["run_info"]);
    assert_eq!(updated["run_info"]["status"], "FINISHED");
    assert_eq!(updated["run_info"]["end_time"], 1_700_000_001_000_i64);
    assert_eq!(updated["run_info"]["run_name"], "renamed");
    let got = s.get("/runs/get", &[("run_id", &id)]).await;
    assert_eq!(
        kv(&got["run"]["data"]["tags"], "mlflow.runName"),
        Some("renamed")
    );
    // status may also arrive as the enum number
    let numeric = s
        .post("/runs/update", json!({"run_uuid": id, "status": 4}))
        .await;
    assert_eq!(numeric["run_info"]["status"], "FAILED");

    // log-metric, log-parameter, set-tag, delete-tag (all answer {}); logging to a FINISHED
    // run is allowed
    assert_eq!(
        s.post(
            "/runs/log-metric",
            json!({"run_id": id, "run_uuid": id, "key": "acc", "value": 0.5, "timestamp": 10, "step": 1})
        )
        .await,
        json!({})
    );
    assert_eq!(
        s.post(
            "/runs/log-metric",
            json!({"run_id": id, "key": "acc", "value": "0.75", "timestamp": "11", "step": "2"})
        )
        .await,
        json!({}),
        "int64 and double as strings are accepted"
    );
    assert_eq!(
        s.post(
            "/runs/log-parameter",
            json!({"run_id": id, "run_uuid": id, "key": "lr", "value": "0.01"})
        )
        .await,
        json!({})
    );
    assert_eq!(
        s.post(
            "/runs/set-tag",
            json!({"run_uuid": id, "key": "team", "value": "vision"})
        )
        .await,
        json!({})
    );
    assert_eq!(
        s.post(
            "/runs/set-tag",
            json!({"run_id": id, "key": "gone", "value": "x"})
        )
        .await,
        json!({})
    );
    assert_eq!(
        s.post("/runs/delete-tag", json!({"run_id": id, "key": "gone"}))
            .await,
        json!({})
    );
    let got = s.get("/runs/get", &[("run_id", &id)]).await;
    let data = &got["run"]["data"];
    assert_eq!(
        data["metrics"],
        json!([{"key": "acc", "value": 0.75, "timestamp": 11, "step": 2}])
    );
    assert_eq!(data["params"], json!([{"key": "lr", "value": "0.01"}]));
    assert_eq!(kv(&data["tags"], "team"), Some("vision"));
    assert_eq!(kv(&data["tags"], "gone"), None);
    // deleting a tag that was never set is a 404
    s.fails(
        "POST",
        &format!("{API}/runs/delete-tag"),
        Some(json!({"run_id": id, "key": "never-set"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;

    // log-model appends to the history tag
    let model_json = json!({"artifact_path": "model", "flavors": {"python_function": {}}});
    assert_eq!(
        s.post(
            "/runs/log-model",
            json!({"run_id": id, "model_json": model_json.to_string()})
        )
        .await,
        json!({})
    );
    let got = s.get("/runs/get", &[("run_id", &id)]).await;
    let history: Value = serde_json::from_str(
        kv(&got["run"]["data"]["tags"], "mlflow.log-model.history").expect("history tag"),
    )
    .unwrap();
    assert_eq!(history, json!([model_json]));

    // delete / restore
    assert_eq!(
        s.post("/runs/delete", json!({"run_id": id})).await,
        json!({})
    );
    let got = s.get("/runs/get", &[("run_id", &id)]).await;
    assert_eq!(got["run"]["info"]["lifecycle_stage"], "deleted");
    // logging to a deleted run is refused
    s.fails(
        "POST",
        &format!("{API}/runs/log-parameter"),
        Some(json!({"run_id": id, "key": "other", "value": "1"})),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    .await;
    assert_eq!(
        s.post("/runs/restore", json!({"run_id": id})).await,
        json!({})
    );
    let got = s.get("/runs/get", &[("run_id", &id)]).await;
    assert_eq!(got["run"]["info"]["lifecycle_stage"], "active");

    // runs/create without experiment_id goes to the Default experiment
    let default_run = s.post("/runs/create", json!({})).await;
    assert_eq!(default_run["run"]["info"]["experiment_id"], "0");
}

/// The sample flow: log-batch + log-inputs, then runs/get compared with MLflow's answer.
#[tokio::test]
async fn log_batch_and_inputs_match_the_sample_shapes() {
    let s = server().await;
    let exp = s.create_experiment("sample").await;
    let id = s.create_run(&exp).await;
    let batch = s
        .post(
            "/runs/log-batch",
            json!({
                "run_id": id,
                "metrics": [
                    {"key": "loss", "value": 0.5, "timestamp": 1_700_000_000_100_i64, "step": 0},
                    {"key": "loss", "value": 0.25, "timestamp": 1_700_000_000_200_i64, "step": 1},
                    {"key": "nan", "value": "NaN", "timestamp": 1_700_000_000_200_i64, "step": 0},
                ],
                "params": [{"key": "lr", "value": "0.01"}],
                "tags": [{"key": "team", "value": "vision"}],
            }),
        )
        .await;
    assert_eq!(batch, json!({}));
    let inputs = s
        .post(
            "/runs/log-inputs",
            json!({
                "run_id": id,
                "datasets": [{
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                    "dataset": {"name": "train", "digest": "abc123", "source_type": "http",
                                "source": "{\"url\": \"https://example.com/train.csv\"}"},
                }],
            }),
        )
        .await;
    assert_eq!(inputs, json!({}));
    // log-inputs is idempotent per (name, digest)
    s.post(
        "/runs/log-inputs",
        json!({"run_id": id, "datasets": [{"dataset": {"name": "train", "digest": "abc123", "source_type": "http", "source": "{\"url\": \"https://example.com/train.csv\"}"}}]}),
    )
    .await;

    let got = s.get("/runs/get", &[("run_id", &id)]).await;
    let run = &got["run"];
    assert_run_shape(run);
    let mut metrics = run["data"]["metrics"].as_array().unwrap().clone();
    metrics.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    assert_eq!(
        Value::Array(metrics),
        json!([
            {"key": "loss", "value": 0.25, "timestamp": 1_700_000_000_200_i64, "step": 1},
            {"key": "nan", "value": "NaN", "timestamp": 1_700_000_000_200_i64, "step": 0},
        ])
    );
    assert_eq!(
        run["data"]["params"],
        json!([{"key": "lr", "value": "0.01"}])
    );
    assert_eq!(kv(&run["data"]["tags"], "team"), Some("vision"));
    assert_eq!(
        run["inputs"]["dataset_inputs"],
        json!([{
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
            "dataset": {"name": "train", "digest": "abc123", "source_type": "http",
                        "source": "{\"url\": \"https://example.com/train.csv\"}"},
        }])
    );
}

#[tokio::test]
async fn nan_and_infinity_round_trip() {
    let s = server().await;
    let id = s.create_run("0").await;
    for (key, sent) in [
        ("nan", json!("NaN")),
        ("inf", json!("Infinity")),
        ("neg_inf", json!("-Infinity")),
        ("big", json!(1.0e300)),
        ("tiny", json!(-2.5e-300)),
        ("zero", json!(0)),
    ] {
        s.post(
            "/runs/log-metric",
            json!({"run_id": id, "key": key, "value": sent, "timestamp": 1, "step": 0}),
        )
        .await;
        let history = s
            .get(
                "/metrics/get-history",
                &[("run_id", &id), ("metric_key", key)],
            )
            .await;
        let value = &history["metrics"][0]["value"];
        match key {
            "nan" => assert_eq!(value, "NaN"),
            "inf" => assert_eq!(value, "Infinity"),
            "neg_inf" => assert_eq!(value, "-Infinity"),
            _ => assert_eq!(value.as_f64(), sent.as_f64(), "{key}: {history}"),
        }
    }
    // also through log-batch and runs/get
    s.post(
        "/runs/log-batch",
        json!({"run_id": id, "metrics": [{"key": "b_nan", "value": "NaN", "timestamp": 2}, {"key": "b_inf", "value": "-Infinity", "timestamp": 2}]}),
    )
    .await;
    let run = s.get("/runs/get", &[("run_id", &id)]).await;
    let metrics = run["run"]["data"]["metrics"].as_array().unwrap();
    let value_of = |k: &str| {
        metrics
            .iter()
            .find(|m| m["key"] == k)
            .map(|m| m["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(value_of("b_nan"), "NaN");
    assert_eq!(value_of("b_inf"), "-Infinity");
    assert_eq!(value_of("inf"), "Infinity");
}

#[tokio::test]
async fn log_batch_limits() {
    let s = server().await;
    let id = s.create_run("0").await;
    let metrics = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"key": "m", "value": i, "timestamp": i, "step": i}))
            .collect()
    };
    let kvs = |n: usize, prefix: &str| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"key": format!("{prefix}{i}"), "value": "v"}))
            .collect()
    };
    let path = format!("{API}/runs/log-batch");
    for (body, what) in [
        (
            json!({"run_id": id, "metrics": metrics(1001)}),
            "1001 metrics",
        ),
        (json!({"run_id": id, "params": kvs(101, "p")}), "101 params"),
        (json!({"run_id": id, "tags": kvs(101, "t")}), "101 tags"),
        (
            json!({"run_id": id, "metrics": metrics(1000), "params": kvs(1, "p")}),
            "1001 entities",
        ),
    ] {
        let (status, value) = s.call("POST", &path, Some(body)).await;
        assert_error(what, status, &value, 400, "INVALID_PARAMETER_VALUE");
    }
    // nothing from the refused batches was written
    let run = s.get("/runs/get", &[("run_id", &id)]).await;
    assert!(run["run"]["data"].get("metrics").is_none(), "{run}");
    assert!(run["run"]["data"].get("params").is_none(), "{run}");
    // the limits themselves are fine
    s.post(
        "/runs/log-batch",
        json!({"run_id": id, "metrics": metrics(1000)}),
    )
    .await;
    s.post(
        "/runs/log-batch",
        json!({"run_id": id, "params": kvs(100, "p"), "tags": kvs(100, "t")}),
    )
    .await;
    let history = s
        .get(
            "/metrics/get-history",
            &[("run_id", &id), ("metric_key", "m")],
        )
        .await;
    assert_eq!(history["metrics"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn param_changes_are_refused_and_the_batch_is_all_or_nothing() {
    let s = server().await;
    let id = s.create_run("0").await;
    s.post(
        "/runs/log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.01"}),
    )
    .await;
    // the same value again is fine (idempotent)
    s.post(
        "/runs/log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.01"}),
    )
    .await;
    s.post(
        "/runs/log-batch",
        json!({"run_id": id, "params": [{"key": "lr", "value": "0.01"}]}),
    )
    .await;
    // a different value is a 400, alone or in a batch
    s.fails(
        "POST",
        &format!("{API}/runs/log-parameter"),
        Some(json!({"run_id": id, "key": "lr", "value": "0.02"})),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    .await;
    s.fails(
        "POST",
        &format!("{API}/runs/log-batch"),
        Some(json!({
            "run_id": id,
            "metrics": [{"key": "loss", "value": 1.0, "timestamp": 1, "step": 0}],
            "params": [{"key": "batch", "value": "32"}, {"key": "lr", "value": "0.02"}],
            "tags": [{"key": "t", "value": "v"}],
        })),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    .await;
    let run = s.get("/runs/get", &[("run_id", &id)]).await;
    let data = &run["run"]["data"];
    assert!(data.get("metrics").is_none(), "metric leaked: {run}");
    assert_eq!(data["params"], json!([{"key": "lr", "value": "0.01"}]));
    assert_eq!(kv(&data["tags"], "t"), None, "tag leaked: {run}");
    // a refused batch in the middle (bad metric) writes nothing either
    s.fails(
        "POST",
        &format!("{API}/runs/log-batch"),
        Some(json!({
            "run_id": id,
            "params": [{"key": "ok", "value": "1"}],
            "metrics": [{"key": "fine", "value": 1, "timestamp": 1}, {"key": "../bad", "value": 1, "timestamp": 1}],
        })),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    .await;
    let run = s.get("/runs/get", &[("run_id", &id)]).await;
    assert!(run["run"]["data"].get("metrics").is_none(), "{run}");
    assert_eq!(
        run["run"]["data"]["params"],
        json!([{"key": "lr", "value": "0.01"}])
    );
}

#[tokio::test]
async fn metric_history_pages_until_done() {
    let s = server().await;
    let id = s.create_run("0").await;
    let metrics: Vec<Value> = (0..23)
        .map(|i| json!({"key": "loss", "value": f64::from(i) / 10.0, "timestamp": 1000 + i, "step": i}))
        .collect();
    s.post("/runs/log-batch", json!({"run_id": id, "metrics": metrics}))
        .await;

    // sample: max_results=1 -> one metric and a token
    let first = s
        .get(
            "/metrics/get-history",
            &[
                ("run_id", &id),
                ("metric_key", "loss"),
                ("max_results", "1"),
            ],
        )
        .await;
    assert_eq!(
        first["metrics"],
        json!([{"key": "loss", "value": 0.0, "timestamp": 1000, "step": 0}])
    );
    assert!(first["next_page_token"].is_string(), "{first}");

    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut query = vec![
            ("run_uuid", id.as_str()),
            ("metric_key", "loss"),
            ("max_results", "5"),
        ];
        if let Some(token) = &token {
            query.push(("page_token", token.as_str()));
        }
        let page = s.get("/metrics/get-history", &query).await;
        pages += 1;
        assert!(pages <= 10, "paging does not end: {page}");
        for metric in page["metrics"].as_array().cloned().unwrap_or_default() {
            assert!(metric["timestamp"].is_i64() && metric["step"].is_i64());
            seen.push(metric["step"].as_i64().unwrap());
        }
        match page.get("next_page_token") {
            Some(next) => token = Some(next.as_str().expect("token is a string").to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, (0..23).collect::<Vec<i64>>());

    // without max_results: everything at once, no token
    let all = s
        .get(
            "/metrics/get-history",
            &[("run_id", &id), ("metric_key", "loss")],
        )
        .await;
    assert_eq!(all["metrics"].as_array().unwrap().len(), 23);
    assert!(all.get("next_page_token").is_none());
    // a key never logged -> {}
    let none = s
        .get(
            "/metrics/get-history",
            &[("run_id", &id), ("metric_key", "other")],
        )
        .await;
    assert_eq!(none, json!({}));
    // an unknown run -> 200 {} (MLflow's quirk)
    let unknown = s
        .get(
            "/metrics/get-history",
            &[("run_id", MISSING_RUN), ("metric_key", "loss")],
        )
        .await;
    assert_eq!(unknown, json!({}));
}

#[tokio::test]
async fn metric_history_bulk_interval() {
    let s = server().await;
    let a = s.create_run("0").await;
    let b = s.create_run("0").await;
    for (run, n) in [(&a, 10), (&b, 4)] {
        let metrics: Vec<Value> = (0..n)
            .map(|i| json!({"key": "loss", "value": i, "timestamp": 100 + i, "step": i}))
            .collect();
        s.post(
            "/runs/log-batch",
            json!({"run_id": run, "metrics": metrics}),
        )
        .await;
    }
    let body = s
        .ok(
            "GET",
            &format!(
                "{API}/metrics/get-history-bulk-interval?run_ids={a}&run_ids={b}&metric_key=loss&start_step=2&end_step=8"
            ),
            None,
        )
        .await;
    let metrics = body["metrics"].as_array().expect("metrics");
    let of = |run: &str| -> Vec<i64> {
        metrics
            .iter()
            .filter(|m| m["run_id"] == run)
            .map(|m| m["step"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(of(&a), vec![2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(of(&b), vec![2, 3]);
    for metric in metrics {
        assert_keys(
            "bulk metric",
            metric,
            &["key", "value", "timestamp", "step", "run_id"],
        );
    }
    // sampling keeps first and last
    let sampled = s
        .ok(
            "GET",
            &format!(
                "{API}/metrics/get-history-bulk-interval?run_ids={a}&metric_key=loss&max_results=3"
            ),
            None,
        )
        .await;
    let steps: Vec<i64> = sampled["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps.first(), Some(&0));
    assert_eq!(steps.last(), Some(&9));
}

#[tokio::test]
async fn search_runs_filters_orders_and_pages() {
    let s = server().await;
    let exp = s.create_experiment("search").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let run = s
            .post(
                "/runs/create",
                json!({"experiment_id": exp, "run_name": format!("r{i}"), "start_time": i}),
            )
            .await;
        let id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        s.post(
            "/runs/log-batch",
            json!({"run_id": id, "metrics": [{"key": "acc", "value": f64::from(i) / 10.0, "timestamp": 1}], "params": [{"key": "i", "value": i.to_string()}]}),
        )
        .await;
        ids.push(id);
    }
    let other = s.create_experiment("other").await;
    s.create_run(&other).await;

    // sample: runs/search page 1
    let page = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "attributes.run_name LIKE 'r%'", "order_by": ["attributes.run_name ASC"], "max_results": 2, "run_view_type": "ACTIVE_ONLY"}),
        )
        .await;
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["info"]["run_name"], "r0");
    assert_eq!(runs[1]["info"]["run_name"], "r1");
    for run in runs {
        assert_run_shape(run);
    }
    assert!(page["next_page_token"].is_string());

    // page to the end
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut body = json!({"experiment_ids": [exp], "order_by": ["attributes.run_name ASC"], "max_results": 2});
        if let Some(token) = &token {
            body["page_token"] = json!(token);
        }
        let page = s.post("/runs/search", body).await;
        for run in page["runs"].as_array().cloned().unwrap_or_default() {
            names.push(run["info"]["run_name"].as_str().unwrap().to_owned());
        }
        match page.get("next_page_token") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["r0", "r1", "r2", "r3", "r4"]);

    // metric filter and order
    let good = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "metrics.acc >= 0.3", "order_by": ["metrics.acc DESC"]}),
        )
        .await;
    let names: Vec<&str> = good["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["info"]["run_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r4", "r3"]);
    let by_param = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "params.i = '2' and tags.mlflow.runName = 'r2'"}),
        )
        .await;
    assert_eq!(by_param["runs"].as_array().unwrap().len(), 1);
    // slipway extends MLflow's grammar with OR and parentheses
    let either = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "metrics.acc < 0.1 OR metrics.acc > 0.35", "order_by": ["run_name"]}),
        )
        .await;
    let names: Vec<&str> = either["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["info"]["run_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r0", "r4"]);
    let grouped = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "(params.i = '1' OR params.i = '2') AND metrics.acc > 0.15"}),
        )
        .await;
    assert_eq!(grouped["runs"].as_array().unwrap().len(), 1);
    assert_eq!(grouped["runs"][0]["info"]["run_name"], "r2");
    // nothing matches -> {}
    let none = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "metrics.acc > 5"}),
        )
        .await;
    assert_eq!(none, json!({}));
    // deleted runs
    s.post("/runs/delete", json!({"run_id": ids[0]})).await;
    let deleted = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "run_view_type": "DELETED_ONLY"}),
        )
        .await;
    assert_eq!(deleted["runs"].as_array().unwrap().len(), 1);
    assert_eq!(deleted["runs"][0]["info"]["run_id"], ids[0].as_str());
    let active = s
        .post("/runs/search", json!({"experiment_ids": [exp]}))
        .await;
    assert_eq!(active["runs"].as_array().unwrap().len(), 4);
    let all = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp, other], "run_view_type": "ALL"}),
        )
        .await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 6);
    // run_id IN (...)
    let filter = format!("attributes.run_id IN ('{}', '{}')", ids[1], ids[2]);
    let picked = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": filter}),
        )
        .await;
    assert_eq!(picked["runs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn search_paging_of_experiments_models_versions_and_logged_models() {
    let s = server().await;
    let run = s.create_run("0").await;
    for i in 0..5 {
        s.create_experiment(&format!("e{i}")).await;
        s.create_model(&format!("model{i}")).await;
        s.create_version("model0", &run).await;
        s.create_logged_model("0").await;
    }
    // (method, path, body/query builder, list field, expected count)
    type Page = fn(Option<&str>) -> (String, Option<Value>);
    let cases: [(&str, Page, &str, usize); 4] = [
        (
            "experiments",
            |token| {
                let mut body = json!({"max_results": 2});
                if let Some(t) = token {
                    body["page_token"] = json!(t);
                }
                (format!("{API}/experiments/search"), Some(body))
            },
            "experiments",
            6,
        ),
        (
            "registered models",
            |token| {
                let mut q = vec![("max_results", "2")];
                if let Some(t) = token {
                    q.push(("page_token", t));
                }
                (format!("{API}/registered-models/search{}", qs(&q)), None)
            },
            "registered_models",
            5,
        ),
        (
            "model versions",
            |token| {
                let mut q = vec![("max_results", "2"), ("filter", "name = 'model0'")];
                if let Some(t) = token {
                    q.push(("page_token", t));
                }
                (format!("{API}/model-versions/search{}", qs(&q)), None)
            },
            "model_versions",
            5,
        ),
        (
            "logged models",
            |token| {
                let mut body = json!({"experiment_ids": ["0"], "max_results": 2});
                if let Some(t) = token {
                    body["page_token"] = json!(t);
                }
                (format!("{API}/logged-models/search"), Some(body))
            },
            "models",
            5,
        ),
    ];
    for (what, build, field, expected) in cases {
        let mut token: Option<String> = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (path, body) = build(token.as_deref());
            let method = if body.is_some() { "POST" } else { "GET" };
            let page = s.ok(method, &path, body).await;
            let items = page[field].as_array().cloned().unwrap_or_default();
            assert!(items.len() <= 2, "{what}: page too long: {page}");
            seen.extend(items.into_iter().map(|item| item.to_string()));
            match page.get("next_page_token") {
                Some(next) => token = Some(next.as_str().unwrap().to_owned()),
                None => break,
            }
        }
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(total, expected, "{what}: items over all pages");
        assert_eq!(seen.len(), expected, "{what}: duplicates across pages");
    }
}

// ====================================================================================
// tracking artifacts (list, presigned)
// ====================================================================================

#[tokio::test]
async fn tracking_artifact_list_and_unsupported_presigned_urls() {
    let s = server().await;
    let exp = s.create_experiment("arts").await;
    let run = s.create_run(&exp).await;
    let empty = s.get("/artifacts/list", &[("run_id", &run)]).await;
    assert_eq!(
        empty,
        json!({"root_uri": format!("mlflow-artifacts:/{exp}/{run}/artifacts")})
    );
    let put = s
        .send(
            method("PUT"),
            &format!("{PROXY}/{exp}/{run}/artifacts/dir/hello.txt"),
            b"hello\n".to_vec(),
            None,
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    // sample: artifacts/list (tracking API)
    let listed = s
        .get("/artifacts/list", &[("run_id", &run), ("path", "dir")])
        .await;
    assert_eq!(
        listed,
        json!({
            "root_uri": format!("mlflow-artifacts:/{exp}/{run}/artifacts"),
            "files": [{"path": "dir/hello.txt", "is_dir": false, "file_size": 6}],
        })
    );
    let root = s.get("/artifacts/list", &[("run_uuid", &run)]).await;
    assert_eq!(root["files"], json!([{"path": "dir", "is_dir": true}]));

    for path in ["presigned-upload-url", "presigned-download-url"] {
        s.fails(
            "POST",
            &format!("{API}/artifacts/{path}"),
            Some(json!({"run_id": run, "path": "x"})),
            501,
            "NOT_IMPLEMENTED",
        )
        .await;
    }
}

// ====================================================================================
// model registry
// ====================================================================================

fn assert_version_shape(v: &Value) {
    assert!(v["name"].is_string(), "{v}");
    let version = v["version"].as_str().expect("version is a string");
    assert!(version.parse::<u64>().is_ok(), "{v}");
    assert!(v["creation_timestamp"].is_i64(), "{v}");
    assert!(v["last_updated_timestamp"].is_i64(), "{v}");
    assert!(v["current_stage"].is_string(), "{v}");
    assert!(v["description"].is_string(), "{v}");
    assert!(v["source"].is_string(), "{v}");
    assert!(v["status"].is_string(), "{v}");
    assert!(v["run_link"].is_string(), "{v}");
}

#[tokio::test]
async fn registered_model_routes() {
    let s = server().await;
    let run = s.create_run("0").await;

    // create (sample: registered-models/create)
    let created = s
        .post(
            "/registered-models/create",
            json!({"name": "m", "tags": [{"key": "owner", "value": "ml"}], "description": "d"}),
        )
        .await;
    assert_keys("create", &created, &["registered_model"]);
    let model = &created["registered_model"];
    assert_eq!(model["name"], "m");
    assert_eq!(model["description"], "d");
    assert_eq!(model["tags"], json!([{"key": "owner", "value": "ml"}]));
    assert!(model["creation_timestamp"].is_i64());
    assert!(model["last_updated_timestamp"].is_i64());
    s.fails(
        "POST",
        &format!("{API}/registered-models/create"),
        Some(json!({"name": "m"})),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    .await;

    let version = s.create_version("m", &run).await;
    assert_eq!(version, "1");

    // get (sample: registered-models/get)
    let got = s.get("/registered-models/get", &[("name", "m")]).await;
    let model = &got["registered_model"];
    assert_eq!(model["latest_versions"].as_array().unwrap().len(), 1);
    assert_version_shape(&model["latest_versions"][0]);

    // update (PATCH)
    let updated = s
        .ok(
            "PATCH",
            &format!("{API}/registered-models/update"),
            Some(json!({"name": "m", "description": "new"})),
        )
        .await;
    assert_eq!(updated["registered_model"]["description"], "new");

    // tags
    assert_eq!(
        s.post(
            "/registered-models/set-tag",
            json!({"name": "m", "key": "k", "value": "v"})
        )
        .await,
        json!({})
    );
    let got = s.get("/registered-models/get", &[("name", "m")]).await;
    assert_eq!(kv(&got["registered_model"]["tags"], "k"), Some("v"));
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/registered-models/delete-tag"),
            Some(json!({"name": "m", "key": "k"}))
        )
        .await,
        json!({})
    );
    let got = s.get("/registered-models/get", &[("name", "m")]).await;
    assert_eq!(kv(&got["registered_model"]["tags"], "k"), None);

    // aliases (samples: alias set / get, registered-models/get aliases)
    assert_eq!(
        s.post(
            "/registered-models/alias",
            json!({"name": "m", "alias": "champion", "version": "1"})
        )
        .await,
        json!({})
    );
    let by_alias = s
        .get(
            "/registered-models/alias",
            &[("name", "m"), ("alias", "champion")],
        )
        .await;
    assert_keys("alias get", &by_alias, &["model_version"]);
    assert_version_shape(&by_alias["model_version"]);
    assert_eq!(by_alias["model_version"]["aliases"], json!(["champion"]));
    assert_eq!(by_alias["model_version"]["version"], "1");
    let got = s.get("/registered-models/get", &[("name", "m")]).await;
    assert_eq!(
        got["registered_model"]["aliases"],
        json!([{"alias": "champion", "version": "1"}])
    );
    // version as a number is accepted
    s.post(
        "/registered-models/alias",
        json!({"name": "m", "alias": "other", "version": 1}),
    )
    .await;
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/registered-models/alias"),
            Some(json!({"name": "m", "alias": "other"}))
        )
        .await,
        json!({})
    );
    let message = s
        .fails(
            "GET",
            &format!("{API}/registered-models/alias?name=m&alias=other"),
            None,
            400,
            "INVALID_PARAMETER_VALUE",
        )
        .await;
    assert!(message.contains("other"), "{message}");

    // search (GET)
    let found = s
        .get("/registered-models/search", &[("filter", "name = 'm'")])
        .await;
    assert_eq!(found["registered_models"].as_array().unwrap().len(), 1);
    assert_eq!(found["registered_models"][0]["name"], "m");
    let like = s
        .get(
            "/registered-models/search",
            &[("filter", "name LIKE 'm%'"), ("order_by", "name DESC")],
        )
        .await;
    assert_eq!(like["registered_models"].as_array().unwrap().len(), 1);

    // get-latest-versions, GET and POST
    let latest = s
        .get("/registered-models/get-latest-versions", &[("name", "m")])
        .await;
    assert_eq!(latest["model_versions"].as_array().unwrap().len(), 1);
    let latest_post = s
        .post(
            "/registered-models/get-latest-versions",
            json!({"name": "m", "stages": ["None"]}),
        )
        .await;
    assert_eq!(latest_post["model_versions"][0]["version"], "1");

    // rename carries versions along
    let renamed = s
        .post(
            "/registered-models/rename",
            json!({"name": "m", "new_name": "m2"}),
        )
        .await;
    assert_eq!(renamed["registered_model"]["name"], "m2");
    let moved = s
        .get("/model-versions/get", &[("name", "m2"), ("version", "1")])
        .await;
    assert_eq!(moved["model_version"]["name"], "m2");
    s.fails(
        "GET",
        &format!("{API}/registered-models/get?name=m"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;

    // delete
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/registered-models/delete"),
            Some(json!({"name": "m2"}))
        )
        .await,
        json!({})
    );
    s.fails(
        "GET",
        &format!("{API}/registered-models/get?name=m2"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;
    s.fails(
        "GET",
        &format!("{API}/model-versions/get?name=m2&version=1"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;
}

#[tokio::test]
async fn model_version_routes() {
    let s = server().await;
    let exp = s.create_experiment("mv").await;
    let run = s.create_run(&exp).await;
    s.create_model("m").await;
    let source = format!("mlflow-artifacts:/{exp}/{run}/artifacts/model");

    // create (sample: model-versions/create)
    let created = s
        .post(
            "/model-versions/create",
            json!({"name": "m", "source": source, "run_id": run, "tags": [{"key": "i", "value": "0"}]}),
        )
        .await;
    assert_keys("create", &created, &["model_version"]);
    let v = &created["model_version"];
    assert_version_shape(v);
    assert_eq!(v["name"], "m");
    assert_eq!(v["version"], "1");
    assert_eq!(v["current_stage"], "None");
    assert_eq!(v["description"], "");
    assert_eq!(v["source"], source.as_str());
    assert_eq!(v["run_id"], run.as_str());
    assert_eq!(v["status"], "READY");
    // The server adds the digest of the version's files (none yet here: the empty manifest).
    assert_eq!(
        v["tags"],
        json!([
            {"key": "i", "value": "0"},
            {"key": "slipway.content_digest", "value": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
        ])
    );
    assert_eq!(v["run_link"], "");

    // get, get-download-uri
    let got = s
        .get("/model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    assert_eq!(got["model_version"], created["model_version"]);
    let uri = s
        .get(
            "/model-versions/get-download-uri",
            &[("name", "m"), ("version", "1")],
        )
        .await;
    assert_eq!(uri, json!({"artifact_uri": source}));

    // update (PATCH)
    let updated = s
        .ok(
            "PATCH",
            &format!("{API}/model-versions/update"),
            Some(json!({"name": "m", "version": "1", "description": "better"})),
        )
        .await;
    assert_eq!(updated["model_version"]["description"], "better");

    // transition-stage + get-latest-versions by stage
    let staged = s
        .post(
            "/model-versions/transition-stage",
            json!({"name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": false}),
        )
        .await;
    assert_eq!(staged["model_version"]["current_stage"], "Staging");
    let v2 = s.create_version("m", &run).await;
    assert_eq!(v2, "2");
    s.post(
        "/model-versions/transition-stage",
        json!({"name": "m", "version": v2, "stage": "staging", "archive_existing_versions": "True"}),
    )
    .await;
    let old = s
        .get("/model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    assert_eq!(old["model_version"]["current_stage"], "Archived");
    let latest = s
        .post(
            "/registered-models/get-latest-versions",
            json!({"name": "m", "stages": ["Staging"]}),
        )
        .await;
    assert_eq!(latest["model_versions"].as_array().unwrap().len(), 1);
    assert_eq!(latest["model_versions"][0]["version"], "2");

    // tags
    assert_eq!(
        s.post(
            "/model-versions/set-tag",
            json!({"name": "m", "version": "1", "key": "k", "value": "v"})
        )
        .await,
        json!({})
    );
    let got = s
        .get("/model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    assert_eq!(kv(&got["model_version"]["tags"], "k"), Some("v"));
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/model-versions/delete-tag"),
            Some(json!({"name": "m", "version": "1", "key": "k"}))
        )
        .await,
        json!({})
    );
    let got = s
        .get("/model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    assert_eq!(kv(&got["model_version"]["tags"], "k"), None);

    // search (sample: model-versions/search)
    let found = s
        .get("/model-versions/search", &[("filter", "name='m'")])
        .await;
    let versions = found["model_versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    for v in versions {
        assert_version_shape(v);
    }
    let by_run = s
        .get(
            "/model-versions/search",
            &[
                ("filter", &format!("run_id = '{run}'")),
                ("order_by", "version_number ASC"),
            ],
        )
        .await;
    let numbers: Vec<&str> = by_run["model_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["1", "2"]);

    // delete; numbers are never reused
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/model-versions/delete"),
            Some(json!({"name": "m", "version": "2"}))
        )
        .await,
        json!({})
    );
    s.fails(
        "GET",
        &format!("{API}/model-versions/get?name=m&version=2"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;
    assert_eq!(s.create_version("m", &run).await, "3");
}

// ====================================================================================
// logged models
// ====================================================================================

fn assert_logged_model_shape(model: &Value) {
    let info = &model["info"];
    let id = info["model_id"].as_str().expect("model_id");
    assert!(
        id.strip_prefix("m-").is_some_and(is_hex32),
        "model id is m-<32 hex>: {model}"
    );
    assert!(info["experiment_id"].is_string(), "{model}");
    assert!(info["name"].is_string(), "{model}");
    assert!(info["creation_timestamp_ms"].is_i64(), "{model}");
    assert!(info["last_updated_timestamp_ms"].is_i64(), "{model}");
    assert!(info["artifact_uri"].is_string(), "{model}");
    assert!(
        matches!(
            info["status"].as_str(),
            Some("LOGGED_MODEL_PENDING" | "LOGGED_MODEL_READY" | "LOGGED_MODEL_UPLOAD_FAILED")
        ),
        "{model}"
    );
    assert!(model["data"].is_object(), "{model}");
}

#[tokio::test]
async fn logged_model_routes() {
    let s = server().await;
    let exp = s.create_experiment("lm").await;
    let run = s.create_run(&exp).await;

    // create (sample: logged-models (create))
    let created = s
        .post(
            "/logged-models",
            json!({"experiment_id": exp, "name": "clf", "source_run_id": run, "model_type": "classifier",
                   "tags": [{"key": "k", "value": "v"}], "params": [{"key": "alpha", "value": "0.5"}]}),
        )
        .await;
    assert_keys("create", &created, &["model"]);
    let model = &created["model"];
    assert_logged_model_shape(model);
    let id = model["info"]["model_id"].as_str().unwrap().to_owned();
    assert_eq!(model["info"]["experiment_id"], exp.as_str());
    assert_eq!(model["info"]["name"], "clf");
    assert_eq!(
        model["info"]["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/models/{id}/artifacts")
    );
    assert_eq!(model["info"]["status"], "LOGGED_MODEL_PENDING");
    assert_eq!(model["info"]["model_type"], "classifier");
    assert_eq!(model["info"]["source_run_id"], run.as_str());
    assert_eq!(model["info"]["tags"], json!([{"key": "k", "value": "v"}]));
    assert_eq!(
        model["data"]["params"],
        json!([{"key": "alpha", "value": "0.5"}])
    );

    // get
    let got = s
        .ok("GET", &format!("{API}/logged-models/{id}"), None)
        .await;
    assert_eq!(got, created);

    // finalize (PATCH)
    let finalized = s
        .ok(
            "PATCH",
            &format!("{API}/logged-models/{id}"),
            Some(json!({"model_id": id, "status": "LOGGED_MODEL_READY"})),
        )
        .await;
    assert_eq!(finalized["model"]["info"]["status"], "LOGGED_MODEL_READY");

    // tags (PATCH) and delete tag
    let tagged = s
        .ok(
            "PATCH",
            &format!("{API}/logged-models/{id}/tags"),
            Some(json!({"tags": [{"key": "stage", "value": "dev"}]})),
        )
        .await;
    assert_eq!(kv(&tagged["model"]["info"]["tags"], "stage"), Some("dev"));
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/logged-models/{id}/tags/stage"),
            None
        )
        .await,
        json!({})
    );
    let got = s
        .ok("GET", &format!("{API}/logged-models/{id}"), None)
        .await;
    assert_eq!(kv(&got["model"]["info"]["tags"], "stage"), None);

    // params
    assert_eq!(
        s.post(
            &format!("/logged-models/{id}/params"),
            json!({"model_id": id, "params": [{"key": "beta", "value": "2"}]})
        )
        .await,
        json!({})
    );
    let got = s
        .ok("GET", &format!("{API}/logged-models/{id}"), None)
        .await;
    assert_eq!(kv(&got["model"]["data"]["params"], "beta"), Some("2"));

    // metrics logged with model_id show on the model
    s.post(
        "/runs/log-metric",
        json!({"run_id": run, "key": "acc", "value": 0.9, "timestamp": 5, "step": 1, "model_id": id}),
    )
    .await;
    let got = s
        .ok("GET", &format!("{API}/logged-models/{id}"), None)
        .await;
    let metrics = got["model"]["data"]["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 1, "{got}");
    assert_eq!(metrics[0]["key"], "acc");
    assert_eq!(metrics[0]["value"], 0.9);

    // search (sample: logged-models/search)
    let found = s
        .post(
            "/logged-models/search",
            json!({"experiment_ids": [exp], "filter": "name = 'clf'", "max_results": 10}),
        )
        .await;
    let models = found["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_logged_model_shape(&models[0]);
    let ordered = s
        .post(
            "/logged-models/search",
            json!({"experiment_ids": [exp], "order_by": [{"field_name": "creation_timestamp", "ascending": false}]}),
        )
        .await;
    assert_eq!(ordered["models"].as_array().unwrap().len(), 1);

    // run inputs/outputs referencing the model
    assert_eq!(
        s.post(
            "/runs/log-inputs",
            json!({"run_id": run, "models": [{"model_id": id}]})
        )
        .await,
        json!({})
    );
    assert_eq!(
        s.post(
            "/runs/outputs",
            json!({"run_id": run, "models": [{"model_id": id, "step": 3}]})
        )
        .await,
        json!({})
    );
    let got_run = s.get("/runs/get", &[("run_id", &run)]).await;
    assert_eq!(
        got_run["run"]["inputs"]["model_inputs"],
        json!([{"model_id": id}])
    );
    assert_eq!(
        got_run["run"]["outputs"]["model_outputs"],
        json!([{"model_id": id, "step": 3}])
    );

    // artifacts/directories lists what the proxy stored under the model's root
    let put = s
        .send(
            method("PUT"),
            &format!("{PROXY}/{exp}/models/{id}/artifacts/MLmodel"),
            b"flavors: {}\n".to_vec(),
            Some("application/octet-stream"),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let listed = s
        .ok(
            "GET",
            &format!("{API}/logged-models/{id}/artifacts/directories"),
            None,
        )
        .await;
    assert_eq!(
        listed,
        json!({
            "root_uri": format!("mlflow-artifacts:/{exp}/models/{id}/artifacts"),
            "files": [{"path": "MLmodel", "is_dir": false, "file_size": 12}],
        })
    );

    // delete
    assert_eq!(
        s.ok(
            "DELETE",
            &format!("{API}/logged-models/{id}"),
            Some(json!({"model_id": id}))
        )
        .await,
        json!({})
    );
    s.fails(
        "GET",
        &format!("{API}/logged-models/{id}"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;
}

// ====================================================================================
// artifact proxy
// ====================================================================================

#[tokio::test]
async fn artifact_proxy_round_trip() {
    let s = server().await;
    let base = "1/abc/artifacts";
    // PUT (sample: mlflow-artifacts PUT), raw body, no content type
    let put = s
        .send(
            method("PUT"),
            &format!("{PROXY}/{base}/dir/hello.txt"),
            b"hello\n".to_vec(),
            None,
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    // a binary body with a non-JSON content type is fine for uploads
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let put = s
        .send(
            method("PUT"),
            &format!("{PROXY}/{base}/dir/blob.bin"),
            binary.clone(),
            Some("application/octet-stream"),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);

    // list root / dir / a file / a missing path (samples)
    let listed = s
        .ok("GET", &format!("{PROXY}{}", qs(&[("path", base)])), None)
        .await;
    assert_eq!(listed, json!({"files": [{"path": "dir", "is_dir": true}]}));
    let listed = s
        .ok(
            "GET",
            &format!("{PROXY}{}", qs(&[("path", &format!("{base}/dir"))])),
            None,
        )
        .await;
    let mut files = listed["files"].as_array().unwrap().clone();
    files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    assert_eq!(
        files,
        vec![
            json!({"path": "blob.bin", "is_dir": false, "file_size": 100_000}),
            json!({"path": "hello.txt", "is_dir": false, "file_size": 6}),
        ]
    );
    for path in [format!("{base}/dir/hello.txt"), format!("{base}/nope")] {
        let listed = s
            .ok("GET", &format!("{PROXY}{}", qs(&[("path", &path)])), None)
            .await;
        assert_eq!(listed, json!({}), "{path}");
    }
    // trailing-slash and no-path forms of the listing route
    let root = s.ok("GET", PROXY, None).await;
    assert_eq!(root, json!({"files": [{"path": "1", "is_dir": true}]}));
    let root_slash = s.ok("GET", &format!("{PROXY}/"), None).await;
    assert_eq!(root_slash, root);

    // GET (sample: mlflow-artifacts GET file)
    let got = s
        .send(
            method("GET"),
            &format!("{PROXY}/{base}/dir/hello.txt"),
            vec![],
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, b"hello\n");
    let header = |name: &str| got.headers[name].to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/plain"));
    assert_eq!(header("content-length"), "6");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(header("content-disposition").starts_with("attachment"));
    assert!(header("content-disposition").contains("hello.txt"));
    let blob = s
        .send(
            method("GET"),
            &format!("{PROXY}/{base}/dir/blob.bin"),
            vec![],
            None,
        )
        .await;
    assert_eq!(blob.status, StatusCode::OK);
    assert_eq!(blob.body, binary);

    // overwrite
    let put = s
        .send(
            method("PUT"),
            &format!("{PROXY}/{base}/dir/hello.txt"),
            b"bye".to_vec(),
            None,
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let got = s
        .send(
            method("GET"),
            &format!("{PROXY}/{base}/dir/hello.txt"),
            vec![],
            None,
        )
        .await;
    assert_eq!(got.body, b"bye");

    // GET missing -> 404 JSON
    s.fails(
        "GET",
        &format!("{PROXY}/{base}/missing.txt"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;

    // DELETE
    let deleted = s
        .send(
            method("DELETE"),
            &format!("{PROXY}/{base}/dir/hello.txt"),
            vec![],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.json(), json!({}));
    s.fails(
        "GET",
        &format!("{PROXY}/{base}/dir/hello.txt"),
        None,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    .await;

    // the ajax prefix serves the same files
    let ajax = s
        .send(
            method("GET"),
            &format!("/ajax-api/2.0/mlflow-artifacts/artifacts/{base}/dir/blob.bin"),
            vec![],
            None,
        )
        .await;
    assert_eq!(ajax.status, StatusCode::OK);
    assert_eq!(ajax.body.len(), 100_000);

    // multipart and presigned routes are refused with 501 JSON
    for (verb, path) in [
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/1/x"),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/1/x"),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/abort/1/x"),
        ("GET", "/api/2.0/mlflow-artifacts/presigned/1/x"),
    ] {
        s.fails(verb, path, None, 501, "NOT_IMPLEMENTED").await;
    }
}

#[tokio::test]
async fn artifact_proxy_refuses_path_traversal() {
    let s = server().await;
    std::fs::write(s.outside.join("secret.txt"), b"TOP-SECRET").unwrap();
    let escapes = [
        "../outside/pwned",
        "%2e%2e/outside/pwned",
        "%2E%2E/outside/pwned",
        "%2e%2e%2foutside%2fpwned",
        "a/../../outside/pwned",
        "a/%2e%2e/%2e%2e/outside/pwned",
        "..%2f..%2foutside/pwned",
        "..%5coutside%5cpwned",
        "./../outside/pwned",
        "a/./b",
        "a//b",
        "%00",
        "a%00b",
    ];
    for escape in escapes {
        let path = format!("{PROXY}/{escape}");
        let put = s.send(method("PUT"), &path, b"pwned".to_vec(), None).await;
        assert!(
            put.status.is_client_error(),
            "PUT {path}: {} {:?}",
            put.status,
            String::from_utf8_lossy(&put.body)
        );
        let body = put.json();
        assert!(body["error_code"].is_string(), "{path}: {body}");
        let secret_path = path.replace("pwned", "secret.txt");
        for verb in ["GET", "DELETE"] {
            let raw = s.send(method(verb), &secret_path, vec![], None).await;
            assert!(
                raw.status.is_client_error(),
                "{verb} {secret_path}: {}",
                raw.status
            );
            assert!(
                !String::from_utf8_lossy(&raw.body).contains("TOP-SECRET"),
                "{verb} {secret_path} leaked the file"
            );
            raw.json();
        }
        // listings with a traversing path
        let raw_path = escape.replace("pwned", "");
        let list = s
            .send(
                method("GET"),
                &format!("{PROXY}?path={raw_path}"),
                vec![],
                None,
            )
            .await;
        assert!(
            list.status.is_client_error(),
            "list {raw_path}: {} {:?}",
            list.status,
            String::from_utf8_lossy(&list.body)
        );
    }
    let list = s
        .send(
            method("GET"),
            &format!("{PROXY}{}", qs(&[("path", "../outside")])),
            vec![],
            None,
        )
        .await;
    assert!(list.status.is_client_error(), "{}", list.status);
    assert!(!String::from_utf8_lossy(&list.body).contains("secret"));

    // nothing escaped the root
    let outside: Vec<_> = std::fs::read_dir(&s.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("secret.txt")]);
    assert!(std::fs::read(s.outside.join("secret.txt")).unwrap() == b"TOP-SECRET");

    // the tracking listing and the logged-model listing refuse traversal too
    let run = s.create_run("0").await;
    let (status, body) = s
        .call(
            "GET",
            &format!(
                "{API}/artifacts/list{}",
                qs(&[("run_id", &run), ("path", "../../../outside")])
            ),
            None,
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let lm = s.create_logged_model("0").await;
    let (status, body) = s
        .call(
            "GET",
            &format!(
                "{API}/logged-models/{lm}/artifacts/directories{}",
                qs(&[("artifact_directory_path", "../../../../outside")])
            ),
            None,
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
}

#[tokio::test]
async fn artifact_proxy_file_and_directory_conflicts_are_400() {
    let s = server().await;
    let put = |path: &'static str| {
        let s = &s;
        async move {
            s.send(
                method("PUT"),
                &format!("{PROXY}/{path}"),
                b"x".to_vec(),
                None,
            )
            .await
        }
    };
    assert_eq!(put("c/file").await.status, StatusCode::OK);
    // a file where a directory is needed, and a directory where a file is wanted
    for path in ["c/file/below", "c"] {
        let raw = put(path).await;
        assert_error(path, raw.status, &raw.json(), 400, IPV);
    }
    // deleting a directory removes what is below it
    let deleted = s
        .send(method("DELETE"), &format!("{PROXY}/c"), vec![], None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    s.fails("GET", &format!("{PROXY}/c/file"), None, 404, RDNE)
        .await;
}

#[tokio::test]
async fn artifact_names_too_long_for_the_file_system_are_4xx() {
    let s = server().await;
    let run = s.create_run("0").await;
    let mut failures = Vec::new();
    for long in ["x".repeat(255), "x".repeat(256), "x".repeat(5000)] {
        for (verb, path) in [
            ("PUT", format!("{PROXY}/{long}")),
            ("GET", format!("{PROXY}/{long}")),
            ("DELETE", format!("{PROXY}/{long}")),
            ("GET", format!("{PROXY}?path={long}")),
            (
                "GET",
                format!("{API}/artifacts/list?run_id={run}&path={long}"),
            ),
        ] {
            let body = if verb == "PUT" { b"x".to_vec() } else { vec![] };
            let raw = s.send(method(verb), &path, body, None).await;
            if raw.status.is_server_error() {
                failures.push(format!(
                    "{verb} {}… ({} chars): {}",
                    &path[..60],
                    long.len(),
                    raw.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn traversing_artifact_locations_never_escape_the_root() {
    let s = server().await;
    std::fs::write(s.outside.join("secret.txt"), b"TOP-SECRET").unwrap();
    // MLflow accepts any artifact_location; what matters is that nothing is served from
    // outside the artifact root through it.
    let (status, body) = s
        .call(
            "POST",
            &format!("{API}/experiments/create"),
            Some(json!({"name": "escape", "artifact_location": "mlflow-artifacts:/../outside"})),
        )
        .await;
    if status != StatusCode::OK {
        assert_error("create", status, &body, 400, IPV);
        return;
    }
    let exp = body["experiment_id"].as_str().unwrap().to_owned();
    let run = s.create_run(&exp).await;
    let (status, body) = s
        .call("GET", &format!("{API}/artifacts/list?run_id={run}"), None)
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(!body.to_string().contains("secret"), "{body}");
    let lm = s.create_logged_model(&exp).await;
    let (status, body) = s
        .call(
            "GET",
            &format!("{API}/logged-models/{lm}/artifacts/directories"),
            None,
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(!body.to_string().contains("secret"), "{body}");
}

#[tokio::test]
async fn long_values_extreme_integers_and_the_default_experiment() {
    let s = server().await;
    let run = s.create_run("0").await;
    // param values over 6000 and tag values over 8000 characters are truncated, not refused
    s.post(
        "/runs/log-parameter",
        json!({"run_id": run, "key": "p", "value": "v".repeat(7000)}),
    )
    .await;
    s.post(
        "/runs/set-tag",
        json!({"run_id": run, "key": "t", "value": "w".repeat(9000)}),
    )
    .await;
    let got = s.get("/runs/get", &[("run_id", &run)]).await;
    assert_eq!(
        kv(&got["run"]["data"]["params"], "p").map(str::len),
        Some(6000)
    );
    assert_eq!(
        kv(&got["run"]["data"]["tags"], "t").map(str::len),
        Some(8000)
    );
    // int64 extremes round-trip as JSON numbers
    s.post(
        "/runs/log-metric",
        json!({"run_id": run, "key": "x", "value": 1, "timestamp": i64::MAX, "step": i64::MIN}),
    )
    .await;
    let history = s
        .get(
            "/metrics/get-history",
            &[("run_id", &run), ("metric_key", "x")],
        )
        .await;
    assert_eq!(history["metrics"][0]["timestamp"], i64::MAX);
    assert_eq!(history["metrics"][0]["step"], i64::MIN);
    // keys of exactly 250 characters are fine
    s.post(
        "/runs/set-tag",
        json!({"run_id": run, "key": "k".repeat(250), "value": "v"}),
    )
    .await;
    // the Default experiment cannot be deleted
    s.fails(
        "POST",
        &format!("{API}/experiments/delete"),
        Some(json!({"experiment_id": "0"})),
        400,
        IPV,
    )
    .await;
}

// ====================================================================================
// /ajax-api prefix
// ====================================================================================

#[tokio::test]
async fn ajax_prefix_serves_the_same_routes() {
    let s = server().await;
    let created = s
        .ok(
            "POST",
            "/ajax-api/2.0/mlflow/experiments/create",
            Some(json!({"name": "ajax"})),
        )
        .await;
    let id = created["experiment_id"].as_str().unwrap();
    let api = s.get("/experiments/get", &[("experiment_id", id)]).await;
    let ajax = s
        .ok(
            "GET",
            &format!("/ajax-api/2.0/mlflow/experiments/get?experiment_id={id}"),
            None,
        )
        .await;
    assert_eq!(api, ajax);
    let searched = s
        .ok(
            "POST",
            "/ajax-api/2.0/mlflow/runs/search",
            Some(json!({"experiment_ids": [id]})),
        )
        .await;
    assert_eq!(searched, json!({}));
    let (status, body) = s
        .call(
            "GET",
            "/ajax-api/2.0/mlflow/runs/get?run_id=00000000000000000000000000000000",
            None,
        )
        .await;
    assert_error(
        "ajax runs/get",
        status,
        &body,
        404,
        "RESOURCE_DOES_NOT_EXIST",
    );
}

// ====================================================================================
// data-driven error table
// ====================================================================================

/// One bad request and what it must answer. `{run}`, `{exp}`, `{lm}` in path and body are the
/// fixtures' ids; `{long}` is a 251-character key; `{missing_run}` and `{missing_lm}` are
/// well-formed ids of nothing.
///
/// `status` 0 means "any 4xx with an MLflow error body" (the exact status is a judgement call,
/// e.g. MLflow itself differs between stores); 1 means "anything below 500 with a JSON object".
/// `missing` rows must answer MLflow's "Missing value for required parameter '<field>'"
/// (nested fields may carry a prefix such as `metrics[].`).
struct Case {
    method: &'static str,
    path: &'static str,
    body: &'static str,
    status: u16,
    code: &'static str,
    message: &'static str,
    missing: bool,
}

const IPV: &str = "INVALID_PARAMETER_VALUE";
const RDNE: &str = "RESOURCE_DOES_NOT_EXIST";
const RAE: &str = "RESOURCE_ALREADY_EXISTS";

const fn c(
    method: &'static str,
    path: &'static str,
    body: &'static str,
    status: u16,
    code: &'static str,
    message: &'static str,
) -> Case {
    Case {
        method,
        path,
        body,
        status,
        code,
        message,
        missing: false,
    }
}

const fn missing(
    method: &'static str,
    path: &'static str,
    body: &'static str,
    field: &'static str,
) -> Case {
    Case {
        method,
        path,
        body,
        status: 400,
        code: IPV,
        message: field,
        missing: true,
    }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- experiments
    missing("GET", "/experiments/get-by-name", "", "experiment_name"),
    c("GET", "/experiments/get-by-name?experiment_name=nope", "", 404, RDNE, ""),
    missing("POST", "/experiments/create", "{}", "name"),
    missing("POST", "/experiments/create", r#"{"name": ""}"#, "name"),
    c("POST", "/experiments/create", r#"{"name": "fixture-exp"}"#, 400, RAE, "fixture-exp"),
    c("POST", "/experiments/create", r#"{"name": 5}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": {"a": 1}}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": ["x"]}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "x", "bogus": 1}"#, 400, IPV, "bogus"),
    c("POST", "/experiments/create", r#"{"name": "{name501}"}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "x", "tags": "t"}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "x", "tags": [{"key": "k", "value": "v", "extra": 1}]}"#, 400, IPV, ""),
    missing("POST", "/experiments/create", r#"{"name": "x", "tags": [{"value": "v"}]}"#, "tags.key"),
    missing("GET", "/experiments/get", "", "experiment_id"),
    missing("GET", "/experiments/get?experiment_id=", "", "experiment_id"),
    c("GET", "/experiments/get?experiment_id=999999", "", 404, RDNE, ""),
    c("GET", "/experiments/get?experiment_id=abc", "", 400, IPV, ""),
    c("GET", "/experiments/get?experiment_id=-1", "", 400, IPV, ""),
    c("GET", "/experiments/get?experiment_id=99999999999999999999999", "", 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"max_results": 1000000000}"#, 400, IPV, "max_results"),
    c("POST", "/experiments/search", r#"{"max_results": -1}"#, 400, IPV, "max_results"),
    c("POST", "/experiments/search", r#"{"max_results": 0}"#, 400, IPV, "max_results"),
    c("POST", "/experiments/search", r#"{"max_results": "ten"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"max_results": 1.5}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"max_results": 1e300}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"max_results": 99999999999999999999}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"page_token": "not base64!"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"page_token": "{b64_hello}"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"page_token": "{b64_negative}"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"page_token": "{b64_string_offset}"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"view_type": "BOGUS"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"view_type": 7}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"filter": "name = "}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"filter": "bogus_attr = 'x'"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"filter": "(name = 'x'"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"filter": "name = 'x' OR"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"filter": "name = 'x' AND AND name = 'y'"}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"order_by": ["nope DESC"]}"#, 400, IPV, ""),
    c("POST", "/experiments/search", r#"{"order_by": ["name SIDEWAYS"]}"#, 400, IPV, ""),
    // a repeated field must be a JSON array in a body (protobuf's JSON parser agrees)
    c("POST", "/experiments/search", r#"{"order_by": "name"}"#, 400, IPV, ""),
    c("GET", "/experiments/search?max_results=-5", "", 400, IPV, "max_results"),
    c("GET", "/experiments/search?page_token=%25%25%25", "", 400, IPV, ""),
    missing("POST", "/experiments/delete", "{}", "experiment_id"),
    c("POST", "/experiments/delete", r#"{"experiment_id": "999999"}"#, 404, RDNE, ""),
    c("POST", "/experiments/delete", r#"{"experiment_id": {"id": 1}}"#, 400, IPV, ""),
    missing("POST", "/experiments/restore", "{}", "experiment_id"),
    c("POST", "/experiments/restore", r#"{"experiment_id": "999999"}"#, 404, RDNE, ""),
    missing("POST", "/experiments/update", "{}", "experiment_id"),
    c("POST", "/experiments/update", r#"{"experiment_id": "999999", "new_name": "x"}"#, 404, RDNE, ""),
    c("POST", "/experiments/update", r#"{"experiment_id": "{exp}", "new_name": "Default"}"#, 400, RAE, ""),
    missing("POST", "/experiments/set-experiment-tag", r#"{"key": "k", "value": "v"}"#, "experiment_id"),
    missing("POST", "/experiments/set-experiment-tag", r#"{"experiment_id": "{exp}", "value": "v"}"#, "key"),
    missing("POST", "/experiments/set-experiment-tag", r#"{"experiment_id": "{exp}", "key": "k"}"#, "value"),
    c("POST", "/experiments/set-experiment-tag", r#"{"experiment_id": "999999", "key": "k", "value": "v"}"#, 404, RDNE, ""),
    c("POST", "/experiments/set-experiment-tag", r#"{"experiment_id": "{exp}", "key": "{long}", "value": "v"}"#, 400, IPV, ""),
    missing("POST", "/experiments/delete-experiment-tag", r#"{"experiment_id": "{exp}"}"#, "key"),
    missing("POST", "/experiments/delete-experiment-tag", r#"{"key": "k"}"#, "experiment_id"),

    // ---- runs
    c("POST", "/runs/create", r#"{"experiment_id": "999999"}"#, 404, RDNE, ""),
    c("POST", "/runs/create", r#"{"experiment_id": "abc"}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"start_time": "yesterday"}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"start_time": 1.5}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"start_time": {"ms": 1}}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"tags": "t"}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"tags": [{"key": "..", "value": "v"}]}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"tags": [{"key": "{long}", "value": "v"}]}"#, 400, IPV, ""),
    c("POST", "/runs/create", r#"{"user": "x"}"#, 400, IPV, "user"),
    missing("GET", "/runs/get", "", "run_id"),
    c("GET", "/runs/get?run_id={missing_run}", "", 404, RDNE, "{missing_run}"),
    c("GET", "/runs/get?run_uuid={missing_run}", "", 404, RDNE, ""),
    c("GET", "/runs/get?run_id=..%2F..%2Fetc", "", 400, IPV, ""),
    missing("POST", "/runs/update", "{}", "run_id"),
    c("POST", "/runs/update", r#"{"run_id": "{missing_run}", "status": "FINISHED"}"#, 404, RDNE, ""),
    c("POST", "/runs/update", r#"{"run_id": "{run}", "status": "BOGUS"}"#, 400, IPV, ""),
    c("POST", "/runs/update", r#"{"run_id": "{run}", "end_time": "later"}"#, 400, IPV, ""),
    missing("POST", "/runs/delete", "{}", "run_id"),
    c("POST", "/runs/delete", r#"{"run_id": "{missing_run}"}"#, 404, RDNE, ""),
    c("POST", "/runs/delete", r#"{"run_id": 12}"#, 400, IPV, ""),
    missing("POST", "/runs/restore", "{}", "run_id"),
    c("POST", "/runs/restore", r#"{"run_id": "{missing_run}"}"#, 404, RDNE, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}"}"#, 400, IPV, "Missing value for required parameter 'key'"),
    missing("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "timestamp": 1}"#, "value"),
    missing("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "value": 1}"#, "timestamp"),
    missing("POST", "/runs/log-metric", r#"{"key": "k", "value": 1, "timestamp": 1}"#, "run_id"),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "value": "abc", "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "value": {"v": 1}, "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "value": 1, "timestamp": "now"}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "value": 1, "timestamp": 1, "step": 0.5}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "..", "value": 1, "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "a/../b", "value": 1, "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "/abs", "value": 1, "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "{long}", "value": 1, "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "bad;key", "value": 1, "timestamp": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{missing_run}", "key": "k", "value": 1, "timestamp": 1}"#, 404, RDNE, ""),
    missing("POST", "/runs/log-parameter", r#"{"run_id": "{run}", "value": "v"}"#, "key"),
    missing("POST", "/runs/log-parameter", r#"{"run_id": "{run}", "key": "k"}"#, "value"),
    c("POST", "/runs/log-parameter", r#"{"run_id": "{run}", "key": "k", "value": 1}"#, 400, IPV, ""),
    c("POST", "/runs/log-parameter", r#"{"run_id": "{run}", "key": "..", "value": "v"}"#, 400, IPV, ""),
    c("POST", "/runs/log-parameter", r#"{"run_id": "{missing_run}", "key": "k", "value": "v"}"#, 404, RDNE, ""),
    missing("POST", "/runs/set-tag", r#"{"run_id": "{run}", "value": "v"}"#, "key"),
    missing("POST", "/runs/set-tag", r#"{"run_id": "{run}", "key": "k"}"#, "value"),
    c("POST", "/runs/set-tag", r#"{"run_id": "{missing_run}", "key": "k", "value": "v"}"#, 404, RDNE, ""),
    c("POST", "/runs/set-tag", r#"{"run_id": "{run}", "key": "{long}", "value": "v"}"#, 400, IPV, ""),
    missing("POST", "/runs/delete-tag", r#"{"run_id": "{run}"}"#, "key"),
    missing("POST", "/runs/delete-tag", r#"{"key": "k"}"#, "run_id"),
    c("POST", "/runs/delete-tag", r#"{"run_id": "{run}", "key": "never"}"#, 404, RDNE, ""),
    c("POST", "/runs/delete-tag", r#"{"run_id": "{missing_run}", "key": "k"}"#, 404, RDNE, ""),
    missing("POST", "/runs/log-batch", "{}", "run_id"),
    c("POST", "/runs/log-batch", r#"{"run_id": "{missing_run}", "params": [{"key": "a", "value": "b"}]}"#, 404, RDNE, ""),
    c("POST", "/runs/log-batch", r#"{"run_id": "{run}", "metrics": {"key": "a"}}"#, 400, IPV, ""),
    missing("POST", "/runs/log-batch", r#"{"run_id": "{run}", "metrics": [{"key": "a", "timestamp": 1}]}"#, "value"),
    missing("POST", "/runs/log-batch", r#"{"run_id": "{run}", "metrics": [{"value": 1, "timestamp": 1}]}"#, "key"),
    missing("POST", "/runs/log-batch", r#"{"run_id": "{run}", "params": [{"value": "1"}]}"#, "key"),
    c("POST", "/runs/log-batch", r#"{"run_id": "{run}", "metrics": [{"key": "a", "value": 1, "timestamp": 1, "color": "red"}]}"#, 400, IPV, ""),
    c("POST", "/runs/log-batch", r#"{"run_id": "{run}", "params": [{"key": "{long}", "value": "1"}]}"#, 400, IPV, ""),
    c("POST", "/runs/log-batch", r#"{"run_id": "{run}", "params": [{"key": "dup", "value": "1"}, {"key": "dup", "value": "2"}]}"#, 400, IPV, ""),
    missing("POST", "/runs/log-model", r#"{"run_id": "{run}"}"#, "model_json"),
    c("POST", "/runs/log-model", r#"{"run_id": "{run}", "model_json": "not json"}"#, 400, IPV, ""),
    c("POST", "/runs/log-model", r#"{"run_id": "{missing_run}", "model_json": "{}"}"#, 404, RDNE, ""),
    missing("POST", "/runs/log-inputs", "{}", "run_id"),
    missing("POST", "/runs/log-inputs", r#"{"run_id": "{run}", "datasets": [{"tags": []}]}"#, "dataset"),
    missing("POST", "/runs/log-inputs", r#"{"run_id": "{run}", "datasets": [{"dataset": {"digest": "d", "source_type": "s", "source": "x"}}]}"#, "name"),
    c("POST", "/runs/log-inputs", r#"{"run_id": "{missing_run}", "datasets": []}"#, 404, RDNE, ""),
    missing("POST", "/runs/outputs", "{}", "run_id"),
    missing("POST", "/runs/outputs", r#"{"run_id": "{run}", "models": [{"model_id": "{lm}"}]}"#, "step"),
    c("POST", "/runs/search", r#"{"filter": "metrics.acc > 'x'"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "params.lr = 0.1"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "params.lr > '0.1'"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "(metrics.acc > 1"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "metrics.acc > 1)"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "attributes.bogus = 'x'"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "nonsense.key = 'x'"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "metrics.acc >"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "metrics.acc > 1 AND"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "metrics.acc > 1 OR"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "OR metrics.acc > 1"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "()"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "((metrics.acc > 1)"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "tags.t = 'unterminated"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": "params.p IN ('a')"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"filter": 5}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"order_by": ["metrics.acc SIDEWAYS"]}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"order_by": ["bogus.acc"]}"#, 400, IPV, ""),
    // MLflow refuses an empty order_by entry; ignoring it is harmless
    c("POST", "/runs/search", r#"{"order_by": [""]}"#, 1, "", ""),
    c("POST", "/runs/search", r#"{"order_by": [5]}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"run_view_type": "BOGUS"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"max_results": 1000000000}"#, 400, IPV, "max_results"),
    c("POST", "/runs/search", r#"{"max_results": -1}"#, 400, IPV, "max_results"),
    c("POST", "/runs/search", r#"{"page_token": "not base64!"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"page_token": "{b64_hello}"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"page_token": "{b64_negative}"}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"page_token": "{b64_huge}"}"#, 1, "", ""),
    c("POST", "/runs/search", r#"{"experiment_ids": ["abc"]}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"experiment_ids": [{"id": 1}]}"#, 400, IPV, ""),
    c("POST", "/runs/search", r#"{"experiment_ids": "0"}"#, 400, IPV, ""),
    c("GET", "/registered-models/search?order_by=name", "", 200, "", ""),
    missing("GET", "/metrics/get-history?run_id={run}", "", "metric_key"),
    missing("GET", "/metrics/get-history?metric_key=m", "", "run_id"),
    c("GET", "/metrics/get-history?run_id={missing_run}&metric_key=m", "", 200, "", ""),
    c("GET", "/metrics/get-history?run_id={run}&metric_key=m&max_results=-1", "", 400, IPV, "max_results"),
    c("GET", "/metrics/get-history?run_id={run}&metric_key=m&max_results=1000000000", "", 400, IPV, "max_results"),
    c("GET", "/metrics/get-history?run_id={run}&metric_key=m&max_results=abc", "", 400, IPV, ""),
    c("GET", "/metrics/get-history?run_id={run}&metric_key=m&page_token=garbage!", "", 400, IPV, ""),
    c("GET", "/metrics/get-history?run_id={run}&metric_key=m&page_token={b64_negative}", "", 400, IPV, ""),
    missing("GET", "/metrics/get-history-bulk-interval?run_ids={run}", "", "metric_key"),
    missing("GET", "/metrics/get-history-bulk-interval?metric_key=m", "", "run_ids"),
    c("GET", "/metrics/get-history-bulk-interval?run_ids={run}&metric_key=m&start_step=x", "", 400, IPV, ""),
    c("GET", "/metrics/get-history-bulk-interval?run_ids={run}&metric_key=m&max_results=-7", "", 200, "", ""),
    missing("GET", "/artifacts/list", "", "run_id"),
    c("GET", "/artifacts/list?run_id={missing_run}", "", 404, RDNE, ""),
    c("GET", "/artifacts/list?run_id={run}&page_token=x", "", 400, IPV, ""),
    c("GET", "/artifacts/list?run_id={run}&path=..%2F..", "", 400, IPV, ""),

    // ---- registered models
    missing("POST", "/registered-models/create", "{}", "name"),
    c("POST", "/registered-models/create", r#"{"name": "fixture-model"}"#, 400, RAE, "fixture-model"),
    c("POST", "/registered-models/create", r#"{"name": "{name501}"}"#, 400, IPV, ""),
    c("POST", "/registered-models/create", r#"{"name": 3}"#, 400, IPV, ""),
    missing("POST", "/registered-models/rename", r#"{"new_name": "x"}"#, "name"),
    missing("POST", "/registered-models/rename", r#"{"name": "fixture-model"}"#, "new_name"),
    c("POST", "/registered-models/rename", r#"{"name": "nope", "new_name": "x"}"#, 404, RDNE, ""),
    c("POST", "/registered-models/rename", r#"{"name": "fixture-model", "new_name": "other-model"}"#, 400, RAE, ""),
    missing("PATCH", "/registered-models/update", "{}", "name"),
    c("PATCH", "/registered-models/update", r#"{"name": "nope", "description": "d"}"#, 404, RDNE, ""),
    missing("DELETE", "/registered-models/delete", "{}", "name"),
    c("DELETE", "/registered-models/delete", r#"{"name": "nope"}"#, 404, RDNE, ""),
    missing("GET", "/registered-models/get", "", "name"),
    c("GET", "/registered-models/get?name=nope", "", 404, RDNE, ""),
    c("GET", "/registered-models/search?max_results=1000000000", "", 400, IPV, "max_results"),
    c("GET", "/registered-models/search?max_results=-1", "", 400, IPV, "max_results"),
    c("GET", "/registered-models/search?max_results=x", "", 400, IPV, ""),
    c("GET", "/registered-models/search?page_token=bad!", "", 400, IPV, ""),
    c("GET", "/registered-models/search?page_token={b64_negative}", "", 400, IPV, ""),
    c("GET", "/registered-models/search?filter=name%20%3D", "", 400, IPV, ""),
    c("GET", "/registered-models/search?filter=bogus%20%3D%20'x'", "", 400, IPV, ""),
    c("GET", "/registered-models/search?order_by=bogus%20DESC", "", 400, IPV, ""),
    missing("POST", "/registered-models/get-latest-versions", "{}", "name"),
    c("POST", "/registered-models/get-latest-versions", r#"{"name": "nope"}"#, 404, RDNE, ""),
    c("GET", "/registered-models/get-latest-versions?name=nope", "", 404, RDNE, ""),
    missing("POST", "/registered-models/set-tag", r#"{"name": "fixture-model", "value": "v"}"#, "key"),
    missing("POST", "/registered-models/set-tag", r#"{"name": "fixture-model", "key": "k"}"#, "value"),
    c("POST", "/registered-models/set-tag", r#"{"name": "nope", "key": "k", "value": "v"}"#, 404, RDNE, ""),
    c("POST", "/registered-models/set-tag", r#"{"name": "fixture-model", "key": "{long}", "value": "v"}"#, 400, IPV, ""),
    missing("DELETE", "/registered-models/delete-tag", r#"{"name": "fixture-model"}"#, "key"),
    c("DELETE", "/registered-models/delete-tag", r#"{"name": "nope", "key": "k"}"#, 404, RDNE, ""),
    missing("POST", "/registered-models/alias", r#"{"name": "fixture-model", "version": "1"}"#, "alias"),
    missing("POST", "/registered-models/alias", r#"{"name": "fixture-model", "alias": "a"}"#, "version"),
    c("POST", "/registered-models/alias", r#"{"name": "fixture-model", "alias": "a", "version": "99"}"#, 404, RDNE, ""),
    c("POST", "/registered-models/alias", r#"{"name": "nope", "alias": "a", "version": "1"}"#, 404, RDNE, ""),
    c("POST", "/registered-models/alias", r#"{"name": "fixture-model", "alias": "a", "version": "x"}"#, 400, IPV, ""),
    missing("DELETE", "/registered-models/alias", r#"{"alias": "a"}"#, "name"),
    missing("GET", "/registered-models/alias?name=fixture-model", "", "alias"),
    c("GET", "/registered-models/alias?name=fixture-model&alias=nope", "", 400, IPV, "nope"),
    c("GET", "/registered-models/alias?name=nope&alias=a", "", 0, "", ""),

    // ---- model versions
    missing("POST", "/model-versions/create", r#"{"source": "s"}"#, "name"),
    missing("POST", "/model-versions/create", r#"{"name": "fixture-model"}"#, "source"),
    c("POST", "/model-versions/create", r#"{"name": "nope", "source": "mlflow-artifacts:/0/x"}"#, 404, RDNE, ""),
    c("POST", "/model-versions/create", r#"{"name": "fixture-model", "source": "mlflow-artifacts:/0/x", "run_id": "{missing_run}"}"#, 1, "", ""),
    missing("PATCH", "/model-versions/update", r#"{"name": "fixture-model"}"#, "version"),
    c("PATCH", "/model-versions/update", r#"{"name": "fixture-model", "version": "99", "description": "d"}"#, 404, RDNE, ""),
    c("PATCH", "/model-versions/update", r#"{"name": "fixture-model", "version": "abc", "description": "d"}"#, 400, IPV, ""),
    missing("POST", "/model-versions/transition-stage", r#"{"name": "fixture-model", "version": "1", "archive_existing_versions": false}"#, "stage"),
    missing("POST", "/model-versions/transition-stage", r#"{"name": "fixture-model", "version": "1", "stage": "Staging"}"#, "archive_existing_versions"),
    c("POST", "/model-versions/transition-stage", r#"{"name": "fixture-model", "version": "1", "stage": "Bogus", "archive_existing_versions": false}"#, 400, IPV, ""),
    c("POST", "/model-versions/transition-stage", r#"{"name": "fixture-model", "version": "1", "stage": "Staging", "archive_existing_versions": "maybe"}"#, 400, IPV, ""),
    missing("DELETE", "/model-versions/delete", r#"{"name": "fixture-model"}"#, "version"),
    c("DELETE", "/model-versions/delete", r#"{"name": "fixture-model", "version": "99"}"#, 404, RDNE, ""),
    missing("GET", "/model-versions/get?name=fixture-model", "", "version"),
    c("GET", "/model-versions/get?name=fixture-model&version=99", "", 404, RDNE, ""),
    c("GET", "/model-versions/get?name=nope&version=1", "", 404, RDNE, ""),
    c("GET", "/model-versions/get?name=fixture-model&version=-1", "", 0, "", ""),
    c("GET", "/model-versions/get?name=fixture-model&version=abc", "", 400, IPV, ""),
    c("GET", "/model-versions/search?max_results=1000000000", "", 400, IPV, "max_results"),
    c("GET", "/model-versions/search?max_results=-1", "", 400, IPV, "max_results"),
    c("GET", "/model-versions/search?filter=name%20%3D%3D%3D%20'x'", "", 400, IPV, ""),
    c("GET", "/model-versions/search?filter=bogus%20%3D%20'x'", "", 400, IPV, ""),
    c("GET", "/model-versions/search?page_token={b64_hello}", "", 400, IPV, ""),
    c("GET", "/model-versions/search?order_by=bogus", "", 400, IPV, ""),
    missing("GET", "/model-versions/get-download-uri?name=fixture-model", "", "version"),
    c("GET", "/model-versions/get-download-uri?name=fixture-model&version=99", "", 404, RDNE, ""),
    missing("POST", "/model-versions/set-tag", r#"{"name": "fixture-model", "version": "1", "value": "v"}"#, "key"),
    c("POST", "/model-versions/set-tag", r#"{"name": "fixture-model", "version": "99", "key": "k", "value": "v"}"#, 404, RDNE, ""),
    missing("DELETE", "/model-versions/delete-tag", r#"{"name": "fixture-model", "version": "1"}"#, "key"),
    c("DELETE", "/model-versions/delete-tag", r#"{"name": "fixture-model", "version": "99", "key": "k"}"#, 404, RDNE, ""),

    // ---- logged models
    missing("POST", "/logged-models", "{}", "experiment_id"),
    c("POST", "/logged-models", r#"{"experiment_id": "999999"}"#, 404, RDNE, ""),
    c("POST", "/logged-models", r#"{"experiment_id": "{exp}", "params": [{"key": "..", "value": "v"}]}"#, 400, IPV, ""),
    c("GET", "/logged-models/{missing_lm}", "", 404, RDNE, ""),
    c("GET", "/logged-models/not%20an%20id", "", 400, IPV, ""),
    c("PATCH", "/logged-models/{lm}", "{}", 400, IPV, "status"),
    c("PATCH", "/logged-models/{lm}", r#"{"status": "BOGUS"}"#, 400, IPV, ""),
    c("PATCH", "/logged-models/{missing_lm}", r#"{"status": "LOGGED_MODEL_READY"}"#, 404, RDNE, ""),
    c("PATCH", "/logged-models/{lm}", r#"{"model_id": "m-other", "status": "LOGGED_MODEL_READY"}"#, 400, IPV, ""),
    c("DELETE", "/logged-models/{missing_lm}", "", 404, RDNE, ""),
    c("PATCH", "/logged-models/{missing_lm}/tags", r#"{"tags": [{"key": "k", "value": "v"}]}"#, 404, RDNE, ""),
    missing("PATCH", "/logged-models/{lm}/tags", r#"{"tags": [{"value": "v"}]}"#, "key"),
    c("DELETE", "/logged-models/{missing_lm}/tags/k", "", 404, RDNE, ""),
    c("POST", "/logged-models/{missing_lm}/params", r#"{"params": [{"key": "k", "value": "v"}]}"#, 404, RDNE, ""),
    c("POST", "/logged-models/{lm}/params", r#"{"params": [{"key": "{long}", "value": "v"}]}"#, 400, IPV, ""),
    c("POST", "/logged-models/search", r#"{"filter": "metrics.acc > 'x'"}"#, 400, IPV, ""),
    c("POST", "/logged-models/search", r#"{"filter": "bogus = 'x'"}"#, 400, IPV, ""),
    c("POST", "/logged-models/search", r#"{"max_results": 1000000000}"#, 400, IPV, "max_results"),
    c("POST", "/logged-models/search", r#"{"max_results": -1}"#, 400, IPV, "max_results"),
    c("POST", "/logged-models/search", r#"{"page_token": "{b64_negative}"}"#, 400, IPV, ""),
    c("POST", "/logged-models/search", r#"{"order_by": [{"ascending": true}]}"#, 400, IPV, "field_name"),
    c("POST", "/logged-models/search", r#"{"order_by": [{"field_name": "bogus"}]}"#, 400, IPV, ""),
    c("POST", "/logged-models/search", r#"{"order_by": ["name"]}"#, 400, IPV, ""),
    c("GET", "/logged-models/{lm}/artifacts/directories?page_token=x", "", 400, IPV, ""),
    c("GET", "/logged-models/{missing_lm}/artifacts/directories", "", 404, RDNE, ""),

    // ---- generic decoding: bodies and content types
    c("POST", "/experiments/create", "{", 400, IPV, ""),
    c("POST", "/experiments/create", "[]", 400, IPV, ""),
    c("POST", "/experiments/create", r#"[{"name": "x"}]"#, 400, IPV, ""),
    c("POST", "/experiments/create", "null", 400, IPV, ""),
    c("POST", "/experiments/create", "\"name\"", 400, IPV, ""),
    c("POST", "/experiments/create", "17", 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "x"} {}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "x",}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{'name': 'x'}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "x", "name": "y"}"#, 400, IPV, ""),
    c("POST", "/experiments/create", r#"{"name": "\ud800"}"#, 400, IPV, ""),
    c("POST", "/runs/log-metric", r#"{"run_id": "{run}", "key": "k", "value": NaN, "timestamp": 1}"#, 400, IPV, ""),

    // ---- routing
    c("GET", "/nope", "", 404, "ENDPOINT_NOT_FOUND", ""),
    c("POST", "/runs/nope", "{}", 404, "ENDPOINT_NOT_FOUND", ""),
    c("GET", "/runs/create", "", 405, "BAD_REQUEST", ""),
    c("DELETE", "/experiments/get", "", 405, "BAD_REQUEST", ""),
    c("POST", "/registered-models/delete", r#"{"name": "x"}"#, 405, "BAD_REQUEST", ""),
    c("PUT", "/runs/log-batch", "{}", 405, "BAD_REQUEST", ""),
];

struct Fixtures {
    exp: String,
    run: String,
    lm: String,
}

async fn table_fixtures(s: &TestServer) -> Fixtures {
    let exp = s.create_experiment("fixture-exp").await;
    let run = s.create_run(&exp).await;
    s.create_model("fixture-model").await;
    s.create_model("other-model").await;
    s.create_version("fixture-model", &run).await;
    s.post(
        "/registered-models/alias",
        json!({"name": "fixture-model", "alias": "a", "version": "1"}),
    )
    .await;
    let lm = s.create_logged_model(&exp).await;
    Fixtures { exp, run, lm }
}

fn fill(template: &str, f: &Fixtures) -> String {
    template
        .replace("{missing_run}", MISSING_RUN)
        .replace("{missing_lm}", MISSING_LM)
        .replace("{run}", &f.run)
        .replace("{exp}", &f.exp)
        .replace("{lm}", &f.lm)
        .replace("{long}", &"k".repeat(251))
        .replace("{name501}", &"n".repeat(501))
        .replace("{b64_hello}", &base64(b"hello"))
        .replace("{b64_negative}", &base64(br#"{"offset": -1}"#))
        .replace("{b64_string_offset}", &base64(br#"{"offset": "2"}"#))
        .replace(
            "{b64_huge}",
            &base64(br#"{"offset": 18446744073709551615}"#),
        )
}

#[tokio::test]
async fn error_table() {
    let s = server().await;
    let f = table_fixtures(&s).await;
    let mut failures = Vec::new();
    for case in CASES {
        let path = fill(case.path, &f);
        let path = if path.starts_with('/') && !path.starts_with("/api") {
            format!("{API}{path}")
        } else {
            path
        };
        let body = fill(case.body, &f);
        let content_type = (!body.is_empty() || case.method != "GET").then_some("application/json");
        let raw = s
            .send(
                method(case.method),
                &path,
                body.clone().into_bytes(),
                content_type,
            )
            .await;
        let context = format!("{} {path} {body}", case.method);
        let value: Value = match serde_json::from_slice(&raw.body) {
            Ok(value) => value,
            Err(_) => {
                failures.push(format!(
                    "{context}: non-JSON body, status {}: {:?}",
                    raw.status,
                    String::from_utf8_lossy(&raw.body)
                ));
                continue;
            }
        };
        let status_ok = match case.status {
            0 => raw.status.is_client_error(),
            1 => raw.status.as_u16() < 500,
            exact => raw.status.as_u16() == exact,
        };
        if !status_ok {
            failures.push(format!(
                "{context}: expected {} {}, got {} {value}",
                case.status, case.code, raw.status
            ));
            continue;
        }
        if raw.status.is_success() {
            if !value.is_object() {
                failures.push(format!("{context}: 2xx with a non-object {value}"));
            }
            continue;
        }
        if !case.code.is_empty() && value["error_code"].as_str() != Some(case.code) {
            failures.push(format!(
                "{context}: expected error_code {}, got {value}",
                case.code
            ));
            continue;
        }
        if !value["error_code"].is_string() {
            failures.push(format!("{context}: no error_code: {value}"));
            continue;
        }
        let message = value["message"].as_str().unwrap_or("");
        if message.is_empty() {
            failures.push(format!("{context}: no message: {value}"));
            continue;
        }
        let wanted = fill(case.message, &f);
        if case.missing {
            let name = message
                .strip_prefix("Missing value for required parameter '")
                .and_then(|rest| rest.split_once('\''))
                .map(|(name, _)| name);
            if !name.is_some_and(|name| name.ends_with(&wanted)) {
                failures.push(format!(
                    "{context}: expected a missing-parameter message for {wanted:?}, got {message:?}"
                ));
            }
        } else if !wanted.is_empty() && !message.contains(&wanted) {
            failures.push(format!("{context}: message {message:?} lacks {wanted:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Missing required fields answer MLflow's exact message.
#[tokio::test]
async fn missing_required_fields_use_mlflows_message() {
    let s = server().await;
    let run = s.create_run("0").await;
    for (method_name, path, body, field) in [
        ("POST", "/runs/log-metric", json!({"run_id": run}), "key"),
        ("POST", "/experiments/create", json!({}), "name"),
        ("POST", "/registered-models/create", json!({}), "name"),
        ("POST", "/runs/delete", json!({}), "run_id"),
        (
            "POST",
            "/model-versions/create",
            json!({"name": "x"}),
            "source",
        ),
    ] {
        let message = s
            .fails(method_name, &format!("{API}{path}"), Some(body), 400, IPV)
            .await;
        assert_eq!(
            message,
            format!(
                "Missing value for required parameter '{field}'. See the API docs for more information about request parameters."
            ),
            "{path}"
        );
    }
    let message = s
        .fails("GET", &format!("{API}/experiments/get"), None, 400, IPV)
        .await;
    assert!(message.starts_with("Missing value for required parameter 'experiment_id'"));
}

// ====================================================================================
// every route: bad bodies, content types, sizes
// ====================================================================================

/// Every route that reads a JSON body, with `{lm}` for a logged model id.
/// Every route that reads a JSON body (`{lm}` = a logged model id), with its message's fields
/// (the fuzzer builds bodies from them).
const BODY_ROUTES: &[(&str, &str, &[&str])] = &[
    (
        "POST",
        "/experiments/create",
        &["name", "artifact_location", "tags"],
    ),
    (
        "POST",
        "/experiments/search",
        &[
            "max_results",
            "page_token",
            "filter",
            "order_by",
            "view_type",
        ],
    ),
    ("POST", "/experiments/delete", &["experiment_id"]),
    ("POST", "/experiments/restore", &["experiment_id"]),
    (
        "POST",
        "/experiments/update",
        &["experiment_id", "new_name"],
    ),
    (
        "POST",
        "/experiments/set-experiment-tag",
        &["experiment_id", "key", "value"],
    ),
    (
        "POST",
        "/experiments/delete-experiment-tag",
        &["experiment_id", "key"],
    ),
    (
        "POST",
        "/runs/create",
        &["experiment_id", "user_id", "run_name", "start_time", "tags"],
    ),
    (
        "POST",
        "/runs/update",
        &["run_id", "run_uuid", "status", "end_time", "run_name"],
    ),
    ("POST", "/runs/delete", &["run_id"]),
    ("POST", "/runs/restore", &["run_id"]),
    (
        "POST",
        "/runs/log-metric",
        &[
            "run_id",
            "run_uuid",
            "key",
            "value",
            "timestamp",
            "step",
            "model_id",
            "dataset_name",
            "dataset_digest",
        ],
    ),
    (
        "POST",
        "/runs/log-parameter",
        &["run_id", "run_uuid", "key", "value"],
    ),
    (
        "POST",
        "/runs/set-tag",
        &["run_id", "run_uuid", "key", "value"],
    ),
    ("POST", "/runs/delete-tag", &["run_id", "key"]),
    (
        "POST",
        "/runs/search",
        &[
            "experiment_ids",
            "filter",
            "run_view_type",
            "max_results",
            "order_by",
            "page_token",
        ],
    ),
    (
        "POST",
        "/runs/log-batch",
        &["run_id", "metrics", "params", "tags"],
    ),
    ("POST", "/runs/log-model", &["run_id", "model_json"]),
    (
        "POST",
        "/runs/log-inputs",
        &["run_id", "datasets", "models"],
    ),
    ("POST", "/runs/outputs", &["run_id", "models"]),
    (
        "POST",
        "/registered-models/create",
        &["name", "tags", "description", "deployment_job_id"],
    ),
    ("POST", "/registered-models/rename", &["name", "new_name"]),
    (
        "PATCH",
        "/registered-models/update",
        &["name", "description", "deployment_job_id"],
    ),
    ("DELETE", "/registered-models/delete", &["name"]),
    (
        "POST",
        "/registered-models/get-latest-versions",
        &["name", "stages"],
    ),
    (
        "POST",
        "/registered-models/set-tag",
        &["name", "key", "value"],
    ),
    ("DELETE", "/registered-models/delete-tag", &["name", "key"]),
    (
        "POST",
        "/registered-models/alias",
        &["name", "alias", "version"],
    ),
    ("DELETE", "/registered-models/alias", &["name", "alias"]),
    (
        "POST",
        "/model-versions/create",
        &[
            "name",
            "source",
            "run_id",
            "tags",
            "run_link",
            "description",
            "model_id",
        ],
    ),
    (
        "PATCH",
        "/model-versions/update",
        &["name", "version", "description"],
    ),
    (
        "POST",
        "/model-versions/transition-stage",
        &["name", "version", "stage", "archive_existing_versions"],
    ),
    ("DELETE", "/model-versions/delete", &["name", "version"]),
    (
        "POST",
        "/model-versions/set-tag",
        &["name", "version", "key", "value"],
    ),
    (
        "DELETE",
        "/model-versions/delete-tag",
        &["name", "version", "key"],
    ),
    (
        "POST",
        "/logged-models",
        &[
            "experiment_id",
            "name",
            "model_type",
            "source_run_id",
            "params",
            "tags",
        ],
    ),
    (
        "POST",
        "/logged-models/search",
        &[
            "experiment_ids",
            "filter",
            "datasets",
            "max_results",
            "order_by",
            "page_token",
        ],
    ),
    ("PATCH", "/logged-models/{lm}", &["model_id", "status"]),
    ("DELETE", "/logged-models/{lm}", &["model_id"]),
    ("PATCH", "/logged-models/{lm}/tags", &["model_id", "tags"]),
    (
        "DELETE",
        "/logged-models/{lm}/tags/k",
        &["model_id", "tag_key"],
    ),
    (
        "POST",
        "/logged-models/{lm}/params",
        &["model_id", "params"],
    ),
];

/// Every GET route that reads its fields from the query string.
const QUERY_ROUTES: &[&str] = &[
    "/api/2.0/mlflow/experiments/get-by-name",
    "/api/2.0/mlflow/experiments/search",
    "/api/2.0/mlflow/experiments/get",
    "/api/2.0/mlflow/runs/get",
    "/api/2.0/mlflow/metrics/get-history",
    "/api/2.0/mlflow/metrics/get-history-bulk-interval",
    "/api/2.0/mlflow/artifacts/list",
    "/api/2.0/mlflow/registered-models/get",
    "/api/2.0/mlflow/registered-models/search",
    "/api/2.0/mlflow/registered-models/get-latest-versions",
    "/api/2.0/mlflow/registered-models/alias",
    "/api/2.0/mlflow/model-versions/get",
    "/api/2.0/mlflow/model-versions/search",
    "/api/2.0/mlflow/model-versions/get-download-uri",
    "/api/2.0/mlflow/logged-models/{lm}",
    "/api/2.0/mlflow/logged-models/{lm}/artifacts/directories",
    "/api/2.0/mlflow-artifacts/artifacts",
];

#[tokio::test]
async fn bad_bodies_are_400_on_every_body_route() {
    let s = server().await;
    let f = table_fixtures(&s).await;
    let deep = format!("{{\"tags\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let bad_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{".to_vec()),
        ("array", b"[]".to_vec()),
        ("array of object", b"[{}]".to_vec()),
        ("null", b"null".to_vec()),
        ("string", b"\"x\"".to_vec()),
        ("number", b"42".to_vec()),
        ("trailing", b"{} {}".to_vec()),
        ("unknown field", br#"{"zz_unknown_field": 1}"#.to_vec()),
        ("invalid utf-8", b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ("binary", vec![0, 159, 146, 150, 255]),
        ("deep nesting", deep.into_bytes()),
    ];
    let mut failures = Vec::new();
    for (verb, route, _) in BODY_ROUTES {
        let path = format!("{API}{}", fill(route, &f));
        for (what, body) in &bad_bodies {
            for content_type in [Some("application/json"), None] {
                let raw = s
                    .send(method(verb), &path, body.clone(), content_type)
                    .await;
                let value: Option<Value> = serde_json::from_slice(&raw.body).ok();
                let ok = raw.status == StatusCode::BAD_REQUEST
                    && value.as_ref().is_some_and(|v| {
                        v["error_code"] == IPV
                            && v["message"].as_str().is_some_and(|m| !m.is_empty())
                    });
                if !ok {
                    failures.push(format!(
                        "{verb} {path} [{what}, content type {content_type:?}]: {} {:?}",
                        raw.status,
                        String::from_utf8_lossy(&raw.body)
                    ));
                }
            }
        }
        // Declared non-JSON content types are refused before the body is read. MLflow answers
        // 400 INVALID_PARAMETER_VALUE ("Content-Type must be one of ['application/json']");
        // 415 would be the HTTP-purist answer. Either is fine, a 2xx or 5xx is not.
        for content_type in [
            "application/xml",
            "multipart/form-data; boundary=x",
            "image/png",
            "text/plain",
        ] {
            let raw = s
                .send(method(verb), &path, b"{}".to_vec(), Some(content_type))
                .await;
            if !is_content_type_refusal(&raw) {
                failures.push(format!(
                    "{verb} {path} [content type {content_type}]: {} {:?}",
                    raw.status,
                    String::from_utf8_lossy(&raw.body)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// 400 INVALID_PARAMETER_VALUE (MLflow's answer) or 415, with a message naming the content type.
fn is_content_type_refusal(raw: &common::Raw) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(&raw.body) else {
        return false;
    };
    let status_ok = match raw.status.as_u16() {
        400 => value["error_code"] == IPV,
        415 => value["error_code"].is_string(),
        _ => false,
    };
    status_ok
        && value["message"].as_str().is_some_and(|m| {
            m.to_ascii_lowercase().contains("content-type")
                || m.to_ascii_lowercase().contains("content type")
        })
}

#[tokio::test]
async fn json_bodies_need_a_json_content_type_in_any_spelling() {
    let s = server().await;
    for (i, content_type) in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
    ]
    .into_iter()
    .enumerate()
    {
        let raw = s
            .send(
                method("POST"),
                &format!("{API}/experiments/create"),
                format!("{{\"name\": \"ct{i}\"}}").into_bytes(),
                content_type,
            )
            .await;
        assert_eq!(
            raw.status,
            StatusCode::OK,
            "{content_type:?}: {:?}",
            String::from_utf8_lossy(&raw.body)
        );
        assert!(raw.json()["experiment_id"].is_string());
    }
    // a refused content type does not create anything
    let raw = s
        .send(
            method("POST"),
            &format!("{API}/experiments/create"),
            br#"{"name": "as-text"}"#.to_vec(),
            Some("text/plain"),
        )
        .await;
    assert!(is_content_type_refusal(&raw), "{}", raw.status);
    s.fails(
        "GET",
        &format!("{API}/experiments/get-by-name?experiment_name=as-text"),
        None,
        404,
        RDNE,
    )
    .await;
    // Without a content type, a POST, PUT or PATCH is refused as MLflow refuses it: it is
    // what a cross-site form sends. Nothing is created.
    for (verb, path, body) in [
        ("POST", "/experiments/create", r#"{"name": "no-type"}"#),
        ("POST", "/runs/search", ""),
        ("PATCH", "/registered-models/update", r#"{"name": "m"}"#),
    ] {
        let raw = s
            .send(
                method(verb),
                &format!("{API}{path}"),
                body.as_bytes().to_vec(),
                None,
            )
            .await;
        let message = assert_error(
            &format!("{verb} {path} without a content type"),
            raw.status,
            &raw.json(),
            400,
            IPV,
        );
        assert_eq!(message, "Bad Request. Content-Type header is missing.");
    }
    s.fails(
        "GET",
        &format!("{API}/experiments/get-by-name?experiment_name=no-type"),
        None,
        404,
        RDNE,
    )
    .await;
    // an empty body is an empty message
    let raw = s
        .send(
            method("POST"),
            &format!("{API}/runs/search"),
            vec![],
            Some("application/json"),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.json(), json!({}));
    // whitespace around the body is fine
    let raw = s
        .send(
            method("POST"),
            &format!("{API}/experiments/search"),
            b"  \n {\"max_results\": 1} \n".to_vec(),
            Some("application/json"),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = server().await;
    let limit = 32 * 1024 * 1024;
    // a valid JSON body just over the limit
    let mut body = b"{\"name\": \"".to_vec();
    body.resize(limit + 16, b'a');
    body.extend_from_slice(b"\"}");
    {
        let content_type = Some("application/json");
        let raw = s
            .send(
                method("POST"),
                &format!("{API}/experiments/create"),
                body.clone(),
                content_type,
            )
            .await;
        assert_eq!(
            raw.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{content_type:?}"
        );
        let value = raw.json();
        assert!(
            value["error_code"].is_string() && value["message"].is_string(),
            "{value}"
        );
    }
    // a body just under the limit is read (and refused for its content, not its size)
    let mut body = b"{\"name\": \"".to_vec();
    body.resize(limit - 1024, b'a');
    body.extend_from_slice(b"\"}");
    let raw = s
        .send(
            method("POST"),
            &format!("{API}/experiments/create"),
            body,
            Some("application/json"),
        )
        .await;
    assert_eq!(
        raw.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        String::from_utf8_lossy(&raw.body[..200.min(raw.body.len())])
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let s = server().await;
    for path in [
        "/api/2.0/mlflow/nope",
        "/api/2.0/nope",
        "/",
        "/api/2.0/mlflow/runs/get/extra",
        "/api/2.0mlflow/experiments/search-datasets",
        "/api/2.0/mlflow-artifacts/nope",
        "/api/9.0/mlflow/runs/get",
    ] {
        for verb in ["GET", "POST", "DELETE"] {
            let (status, body) = s.call(verb, path, None).await;
            assert_error(
                &format!("{verb} {path}"),
                status,
                &body,
                404,
                "ENDPOINT_NOT_FOUND",
            );
        }
    }
    // a wrong method on every known route -> 405 JSON
    for (verb, route, _) in BODY_ROUTES {
        let path = format!("{API}{}", route.replace("{lm}", MISSING_LM));
        let (status, body) = s.call("PUT", &path, None).await;
        assert_error(
            &format!("PUT {path} ({verb} route)"),
            status,
            &body,
            405,
            "BAD_REQUEST",
        );
    }
    for route in QUERY_ROUTES {
        let path = route.replace("{lm}", MISSING_LM);
        let (status, body) = s.call("PUT", &path, None).await;
        assert_error(&format!("PUT {path}"), status, &body, 405, "BAD_REQUEST");
    }
    for path in ["/health", "/version", "/api/3.0/mlflow/server-info"] {
        let (status, body) = s.call("POST", path, None).await;
        assert_error(&format!("POST {path}"), status, &body, 405, "BAD_REQUEST");
    }
}

// ====================================================================================
// fuzzing: random bytes / random JSON / random queries on every route
// ====================================================================================

mod fuzz {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use serde_json::{Value, json};

    use super::*;

    /// Field names of every request message, so random objects reach the handlers.
    const FIELDS: &[&str] = &[
        "name",
        "new_name",
        "experiment_id",
        "experiment_ids",
        "experiment_name",
        "run_id",
        "run_uuid",
        "run_ids",
        "key",
        "value",
        "timestamp",
        "step",
        "metrics",
        "params",
        "tags",
        "max_results",
        "page_token",
        "filter",
        "order_by",
        "view_type",
        "run_view_type",
        "status",
        "end_time",
        "start_time",
        "run_name",
        "user_id",
        "artifact_location",
        "model_json",
        "datasets",
        "dataset",
        "digest",
        "source_type",
        "source",
        "schema",
        "profile",
        "models",
        "model_id",
        "version",
        "alias",
        "stage",
        "stages",
        "archive_existing_versions",
        "description",
        "run_link",
        "metric_key",
        "start_step",
        "end_step",
        "path",
        "field_name",
        "ascending",
        "dataset_name",
        "dataset_digest",
        "model_type",
        "source_run_id",
        "tag_key",
        "artifact_directory_path",
        "zz_unknown",
    ];

    /// Strings that mean something to the server; `@RUN`, `@EXP`, `@LM` become fixture ids.
    const STRINGS: &[&str] = &[
        "",
        "..",
        "../x",
        "a/../b",
        "/",
        "NaN",
        "Infinity",
        "-Infinity",
        "-1",
        "0",
        "1",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999",
        "1e309",
        "True",
        "false",
        "ACTIVE_ONLY",
        "DELETED_ONLY",
        "ALL",
        "RUNNING",
        "FINISHED",
        "LOGGED_MODEL_READY",
        "Staging",
        "Production",
        "Archived",
        "None",
        "champion",
        "metrics.acc > 0.5",
        "metrics.acc > 'x'",
        "params.lr = '0.1'",
        "name LIKE '%'",
        "(",
        "'",
        "\"",
        "`",
        "name = 'a' AND",
        "attributes.run_id IN ('@RUN')",
        "metrics.acc DESC",
        "start_time ASC",
        "eyJvZmZzZXQiOiAyfQ==",
        "eyJvZmZzZXQiOiAtMX0=",
        "@RUN",
        "@EXP",
        "@LM",
        "fuzz-model",
        "m-00000000000000000000000000000000",
        "%00",
        "\u{0}",
        "\u{feff}",
        "ü😀",
        "a b:c/d.e-f_g",
    ];

    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(STRINGS).prop_map(str::to_owned),
            2 => "\\PC{0,12}",
            // Long names, kept below 240 characters: longer artifact path segments hit the
            // file-name-length bug pinned by `artifact_names_too_long_for_the_file_system_are_4xx`.
            1 => (1usize..240).prop_map(|n| "x".repeat(n)),
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            string().prop_map(Value::from),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
            1 => "[a-z_]{1,8}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Value::Array),
                btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn pick(values: &'static [&'static str]) -> BoxedStrategy<Value> {
        proptest::sample::select(values)
            .prop_map(Value::from)
            .boxed()
    }

    fn int() -> BoxedStrategy<Value> {
        prop_oneof![
            (-3i64..2_000_000_000_000).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(json!("12")),
        ]
        .boxed()
    }

    fn key_value() -> BoxedStrategy<Value> {
        (string(), string())
            .prop_map(|(k, v)| json!({"key": k, "value": v}))
            .boxed()
    }

    fn metric() -> BoxedStrategy<Value> {
        (
            string(),
            prop_oneof![pick(&["NaN", "Infinity", "-Infinity", "1.5"]), leaf()],
            int(),
            int(),
        )
            .prop_map(|(k, v, t, s)| json!({"key": k, "value": v, "timestamp": t, "step": s}))
            .boxed()
    }

    /// A plausible value for a field, or sometimes anything at all.
    fn value_for(field: &str) -> BoxedStrategy<Value> {
        let typed: BoxedStrategy<Value> = match field {
            "run_id" | "run_uuid" | "source_run_id" => pick(&["@RUN", "00000000000000000000000000000000"]),
            "experiment_id" => pick(&["@EXP", "0", "999"]),
            "model_id" => pick(&["@LM", "m-00000000000000000000000000000000"]),
            "name" => pick(&["fixture-model", "fuzz-model", "fixture-exp", "other-model"]),
            "version" => pick(&["1", "2", "99"]),
            "alias" => pick(&["a", "champion", "latest", "v1"]),
            "stage" => pick(&["Staging", "Production", "Archived", "None", "bogus"]),
            "status" => pick(&["FINISHED", "FAILED", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED", "RUNNING"]),
            "view_type" | "run_view_type" => pick(&["ACTIVE_ONLY", "DELETED_ONLY", "ALL"]),
            "source" => pick(&["runs:/@RUN/model", "models:/@LM", "mlflow-artifacts:/0/x", "/tmp/x"]),
            "filter" => pick(&["metrics.acc > 0.5", "name = 'fixture-model'", "tags.t = 'x'", "params.p = '1'", "attributes.status = 'RUNNING'", "name LIKE 'f%'"]),
            "max_results" | "timestamp" | "step" | "start_time" | "end_time" => int(),
            "value" => prop_oneof![leaf(), pick(&["NaN", "v"])].boxed(),
            "archive_existing_versions" => any::<bool>().prop_map(Value::from).boxed(),
            "tags" | "params" => vec(key_value(), 0..4).prop_map(Value::Array).boxed(),
            "metrics" => vec(metric(), 0..4).prop_map(Value::Array).boxed(),
            "experiment_ids" => vec(pick(&["@EXP", "0", "999"]), 0..3).prop_map(Value::Array).boxed(),
            "order_by" | "stages" => vec(string().prop_map(Value::from), 0..3).prop_map(Value::Array).boxed(),
            "models" => vec(
                (pick(&["@LM", "m-00000000000000000000000000000000"]), int())
                    .prop_map(|(id, step)| json!({"model_id": id, "step": step})),
                0..3,
            )
            .prop_map(Value::Array)
            .boxed(),
            "datasets" => vec(
                (string(), string(), string(), string()).prop_map(|(n, d, t, s)| {
                    json!({"dataset": {"name": n, "digest": d, "source_type": t, "source": s}, "tags": [{"key": "mlflow.data.context", "value": "train"}]})
                }),
                0..3,
            )
            .prop_map(Value::Array)
            .boxed(),
            "model_json" => pick(&["{}", "{\"artifact_path\": \"m\"}", "[]", "nope"]),
            _ => string().prop_map(Value::from).boxed(),
        };
        prop_oneof![9 => typed, 1 => json_value()].boxed()
    }

    /// Mostly objects made of the route's own fields (so requests reach the handlers);
    /// sometimes objects of any known field, any JSON at all, or raw bytes.
    fn body(fields: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
        let own = proptest::sample::subsequence(fields, 0..=fields.len())
            .prop_flat_map(|chosen| {
                chosen
                    .into_iter()
                    .map(|field| value_for(field).prop_map(move |v| (field.to_owned(), v)))
                    .collect::<Vec<_>>()
            })
            .prop_map(|pairs| {
                serde_json::to_vec(&Value::Object(pairs.into_iter().collect())).unwrap()
            });
        prop_oneof![
            8 => own,
            2 => btree_map(key(), json_value(), 0..7).prop_map(|m| {
                serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap()
            }),
            1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => vec(any::<u8>(), 0..256),
            1 => "\\PC{0,64}".prop_map(String::into_bytes),
        ]
        .boxed()
    }

    fn query() -> impl Strategy<Value = String> {
        prop_oneof![
            5 => vec((key(), string()), 0..6).prop_map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect::<Vec<_>>()
                    .join("&")
            }),
            1 => vec(any::<u8>(), 0..64).prop_map(|bytes| {
                bytes.iter().map(|b| format!("%{b:02X}")).collect::<String>()
            }),
            1 => "[a-z=&%+0-9]{0,40}",
        ]
    }

    struct Env {
        rt: tokio::runtime::Runtime,
        server: TestServer,
        /// Statuses seen, to check that the fuzzing gets past decoding into the handlers.
        statuses: std::cell::RefCell<std::collections::BTreeMap<u16, usize>>,
        run: String,
        exp: String,
        lm: String,
    }

    fn env() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (server, f) = rt.block_on(async {
            let server = server().await;
            let f = table_fixtures(&server).await;
            server.create_model("fuzz-model").await;
            (server, f)
        });
        Env {
            rt,
            server,
            statuses: Default::default(),
            run: f.run,
            exp: f.exp,
            lm: f.lm,
        }
    }

    impl Env {
        fn ids(&self, raw: Vec<u8>) -> Vec<u8> {
            match String::from_utf8(raw) {
                Ok(text) => text
                    .replace("@RUN", &self.run)
                    .replace("@EXP", &self.exp)
                    .replace("@LM", &self.lm)
                    .into_bytes(),
                Err(e) => e.into_bytes(),
            }
        }

        fn check(
            &self,
            verb: &str,
            path: &str,
            body: Vec<u8>,
            content_type: Option<&str>,
        ) -> Result<(), TestCaseError> {
            let raw =
                self.rt.block_on(
                    self.server
                        .send(method(verb), path, body.clone(), content_type),
                );
            *self
                .statuses
                .borrow_mut()
                .entry(raw.status.as_u16())
                .or_default() += 1;
            let shown = || {
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            };
            prop_assert!(
                raw.status.as_u16() < 500,
                "{} {} with body {:?} -> {} {:?}",
                verb,
                path,
                shown(),
                raw.status,
                String::from_utf8_lossy(&raw.body)
            );
            if raw.status.is_client_error() {
                let value: Value = serde_json::from_slice(&raw.body).map_err(|_| {
                    TestCaseError::fail(format!("{verb} {path}: non-JSON {} body", raw.status))
                })?;
                prop_assert!(
                    value["error_code"].is_string() && value["message"].is_string(),
                    "{} {} -> {} {}",
                    verb,
                    path,
                    raw.status,
                    value
                );
            }
            Ok(())
        }
    }

    impl Env {
        /// The fuzzing is only worth something if some requests get through decoding: require
        /// both successes and refusals.
        fn assert_reached_handlers(&self) {
            let statuses = self.statuses.borrow();
            eprintln!("statuses seen: {statuses:?}");
            let ok: usize = statuses.range(200..300).map(|(_, n)| n).sum();
            let refused: usize = statuses.range(400..500).map(|(_, n)| n).sum();
            assert!(ok > 0 && refused > 0, "statuses seen: {statuses:?}");
        }
    }

    /// `SLIPWAY_FUZZ_CASES` overrides the number of cases for a deeper run.
    fn runner(cases: u32) -> TestRunner {
        let cases = std::env::var("SLIPWAY_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases);
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    }

    #[test]
    fn random_bodies_on_every_body_route_never_5xx() {
        let env = env();
        runner(1500)
            .run(
                &(0..BODY_ROUTES.len()).prop_flat_map(|index| {
                    (Just(index), body(BODY_ROUTES[index].2), any::<bool>())
                }),
                |(index, body, with_type)| {
                    let (verb, route, _) = BODY_ROUTES[index];
                    let path = format!("{API}{}", route.replace("{lm}", &env.lm));
                    let content_type = with_type.then_some("application/json");
                    env.check(verb, &path, env.ids(body), content_type)
                },
            )
            .unwrap();
        env.assert_reached_handlers();
    }

    #[test]
    fn random_queries_on_every_get_route_never_5xx() {
        let env = env();
        runner(800)
            .run(&(0..QUERY_ROUTES.len(), query()), |(index, query)| {
                let path = QUERY_ROUTES[index].replace("{lm}", &env.lm);
                let query = String::from_utf8(env.ids(query.into_bytes())).unwrap();
                env.check("GET", &format!("{path}?{query}"), vec![], None)
            })
            .unwrap();
        env.assert_reached_handlers();
    }

    #[test]
    fn random_artifact_paths_never_5xx_nor_escape() {
        let env = env();
        let segment = prop_oneof![
            proptest::sample::select(
                &[
                    "..",
                    ".",
                    "",
                    "%2e%2e",
                    "%2E%2e",
                    "%2f",
                    "%5c",
                    "%00",
                    "a",
                    "b.txt",
                    "~",
                    "%20",
                    "outside",
                    "artifacts"
                ][..]
            )
            .prop_map(str::to_owned),
            "[a-zA-Z0-9._-]{1,8}",
        ];
        runner(400)
            .run(
                &(
                    vec(segment, 1..6),
                    proptest::sample::select(&["GET", "PUT", "DELETE"][..]),
                ),
                |(segments, verb)| {
                    let path = format!("{PROXY}/{}", segments.join("/"));
                    let body = if verb == "PUT" { b"x".to_vec() } else { vec![] };
                    env.check(verb, &path, body, None)?;
                    let entries: Vec<_> = std::fs::read_dir(&env.server.outside).unwrap().collect();
                    prop_assert!(
                        entries.is_empty(),
                        "{} {} wrote outside the root",
                        verb,
                        path
                    );
                    Ok(())
                },
            )
            .unwrap();
        env.assert_reached_handlers();
    }
}

/// Every search bounds what one request may ask of the database, with a 400 naming the limit
/// (these once reached SQLite's limits and answered 500).
#[tokio::test]
async fn oversized_searches_are_400s_naming_the_limit() {
    let s = server().await;
    let exp = s.create_experiment("bounds").await;
    let or_terms = vec!["metrics.a > 1"; 3_000].join(" OR ");
    let and_terms = vec!["name LIKE 'a%'"; 300].join(" AND ");
    let eq_terms = vec!["name = 'a'"; 300].join(" AND ");
    let in_list = |field: &str| {
        let values: Vec<String> = (0..40_000).map(|i| format!("'v{i}'")).collect();
        format!("{field} IN ({})", values.join(","))
    };
    let long = format!("tags.t = '{}'", "a".repeat(600 * 1024));
    let order_by: Vec<String> = (0..70).map(|i| format!("metrics.m{i}")).collect();
    let many_ids: Vec<String> = (1..=40_000).map(|i| i.to_string()).collect();
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "POST",
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": or_terms}),
            "comparisons",
        ),
        (
            "POST",
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": in_list("attributes.run_id")}),
            "IN lists",
        ),
        (
            "POST",
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": long}),
            "bytes long",
        ),
        (
            "POST",
            "/runs/search",
            json!({"experiment_ids": [exp], "order_by": order_by}),
            "order_by",
        ),
        (
            "POST",
            "/runs/search",
            json!({"experiment_ids": many_ids}),
            "experiment_ids",
        ),
        (
            "POST",
            "/experiments/search",
            json!({"filter": and_terms}),
            "comparisons",
        ),
        (
            "POST",
            "/experiments/search",
            json!({"order_by": vec!["name"; 70]}),
            "order_by",
        ),
        // GET filters travel in the URL, which an IN list of the limit's size outgrows; the
        // comparison limit is reachable there.
        (
            "GET",
            "/registered-models/search",
            json!({"filter": eq_terms}),
            "comparisons",
        ),
        (
            "GET",
            "/registered-models/search",
            json!({"order_by": vec!["name"; 70]}),
            "order_by",
        ),
        (
            "GET",
            "/model-versions/search",
            json!({"filter": eq_terms}),
            "comparisons",
        ),
        (
            "GET",
            "/model-versions/search",
            json!({"order_by": vec!["name"; 70]}),
            "order_by",
        ),
        (
            "POST",
            "/logged-models/search",
            json!({"experiment_ids": many_ids}),
            "experiment_ids",
        ),
        (
            "POST",
            "/logged-models/search",
            json!({"experiment_ids": [exp], "order_by": vec![json!({"field_name": "name"}); 70]}),
            "order_by",
        ),
        (
            "POST",
            "/runs/search",
            json!({"experiment_ids": [exp], "max_results": 10_000_000}),
            "max_results",
        ),
    ];
    for (verb, path, body, says) in cases {
        let (status, answer) = if verb == "GET" {
            // GET searches take their fields from the query string, repeated for lists.
            let mut pairs: Vec<(String, String)> = Vec::new();
            for (key, value) in body.as_object().unwrap() {
                match value {
                    Value::Array(items) => pairs.extend(
                        items
                            .iter()
                            .map(|item| (key.clone(), item.as_str().unwrap().to_owned())),
                    ),
                    other => pairs.push((key.clone(), other.as_str().unwrap().to_owned())),
                }
            }
            let borrowed: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            s.call("GET", &format!("{API}{path}{}", qs(&borrowed)), None)
                .await
        } else {
            s.call(verb, &format!("{API}{path}"), Some(body.clone()))
                .await
        };
        let message = assert_error(
            &format!("{verb} {path} ({says})"),
            status,
            &answer,
            400,
            IPV,
        );
        assert!(message.contains(says), "{verb} {path}: {message}");
    }
    // Within the limits the same shapes answer.
    let ok_terms = vec!["metrics.a > 1"; 150].join(" OR ");
    s.post(
        "/runs/search",
        json!({"experiment_ids": [exp], "filter": ok_terms}),
    )
    .await;
    let values: Vec<String> = (0..5_000).map(|i| format!("'v{i}'")).collect();
    s.post(
        "/runs/search",
        json!({"experiment_ids": [exp], "filter": format!("attributes.run_id IN ({})", values.join(","))}),
    )
    .await;
    let order_by: Vec<String> = (0..16).map(|i| format!("metrics.m{i}")).collect();
    s.post(
        "/runs/search",
        json!({"experiment_ids": [exp], "order_by": order_by}),
    )
    .await;
    // A page token at the largest offset SQL takes is an empty page, one beyond it a 400.
    let far = base64(format!("{{\"offset\": {}}}", i64::MAX).as_bytes());
    let page = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "page_token": far}),
        )
        .await;
    assert_eq!(page, json!({}));
    let beyond = base64(format!("{{\"offset\": {}}}", u64::MAX).as_bytes());
    s.fails(
        "POST",
        &format!("{API}/runs/search"),
        Some(json!({"experiment_ids": [exp], "page_token": beyond})),
        400,
        IPV,
    )
    .await;
}

/// Without max_results a history is whole, as MLflow answers it, however many store pages it
/// spans; with max_results it is paged.
#[tokio::test]
async fn a_history_without_max_results_is_whole() {
    let s = server().await;
    let exp = s.create_experiment("long-history").await;
    let run = s.create_run(&exp).await;
    let total = 25_000 + 1_234;
    for start in (0..total).step_by(1000) {
        let metrics: Vec<Value> = (start..(start + 1000).min(total))
            .map(|step| json!({"key": "loss", "value": step as f64, "timestamp": 1, "step": step}))
            .collect();
        s.post(
            "/runs/log-batch",
            json!({"run_id": run, "metrics": metrics}),
        )
        .await;
    }
    let whole = s
        .get(
            "/metrics/get-history",
            &[("run_id", &run), ("metric_key", "loss")],
        )
        .await;
    let points = whole["metrics"].as_array().expect("metrics");
    assert_eq!(points.len(), total);
    assert!(whole.get("next_page_token").is_none());
    let mut steps: Vec<i64> = points.iter().map(|p| p["step"].as_i64().unwrap()).collect();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(steps.len(), total);
    let paged = s
        .get(
            "/metrics/get-history",
            &[
                ("run_id", &run),
                ("metric_key", "loss"),
                ("max_results", "25000"),
            ],
        )
        .await;
    assert_eq!(paged["metrics"].as_array().map(Vec::len), Some(25_000));
    let token = paged["next_page_token"].as_str().expect("a next page");
    let rest = s
        .get(
            "/metrics/get-history",
            &[
                ("run_id", &run),
                ("metric_key", "loss"),
                ("max_results", "25000"),
                ("page_token", token),
            ],
        )
        .await;
    assert_eq!(rest["metrics"].as_array().map(Vec::len), Some(1_234));
}

/// Tracking and registry requests are counted on `/metrics` by route template and status, and
/// timed, beside the data plane's metrics in one document.
#[tokio::test]
async fn control_plane_requests_appear_on_metrics_by_route() {
    let srv = server().await;
    let experiment = srv.create_experiment("metered").await;
    let run = srv
        .post("/runs/create", json!({"experiment_id": experiment}))
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    srv.post(
        "/runs/log-batch",
        json!({"run_id": run_id, "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}]}),
    )
    .await;
    let (status, _) = srv
        .call("GET", &format!("{API}/runs/get?run_id=nope"), None)
        .await;
    assert_eq!(status, 404);
    let raw = srv.send(method("GET"), "/metrics", Vec::new(), None).await;
    assert_eq!(raw.status, 200);
    let text = String::from_utf8(raw.body).unwrap();
    for line in [
        "slipway_api_requests_total{method=\"POST\",route=\"/api/2.0/mlflow/runs/log-batch\",status=\"200\"} 1",
        "slipway_api_requests_total{method=\"GET\",route=\"/api/2.0/mlflow/runs/get\",status=\"404\"} 1",
        "slipway_api_request_duration_seconds_count{method=\"POST\",route=\"/api/2.0/mlflow/runs/log-batch\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line} in:\n{text}"
        );
    }
    // Templates, never raw paths or ids; and one document with the serving metrics in it.
    assert!(!text.contains(&run_id), "{text}");
    assert!(text.contains("slipway_serving_"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}
