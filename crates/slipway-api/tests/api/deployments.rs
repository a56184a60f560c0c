//! Managed deployments over HTTP with the real ONNX Runtime and the fixture models: the MLflow
//! breast-cancer folder registered as versions 1 and 2 of one model, and the iris model (4
//! features, so it fails on breast-cancer rows) as version 3, and the breast-cancer model with
//! its predictions inverted as version 4. The data plane is synced, its
//! measurements reported and the controller ticked by hand, so each step is explicit and no
//! background loop races the assertions.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_api::Deployments;
use slipway_app::{App, AppSettings};
use slipway_artifacts::ObjectArtifactStore;
use slipway_core::deployment::{WindowStats, route_hash, routes_to_candidate};
use slipway_monitor::live::{CHUNK_CONFIG, Feature, REFERENCE_CONFIG, Schema, Summary};
use slipway_monitor::{ColumnType, RawValue};
use slipway_plane::plane::PlaneConfig;
use slipway_plane::scoring::Limits;
use slipway_store::{BackendUri, SqlStore, StoreOptions};
use tower::ServiceExt;

use crate::common::{API, PROXY, Raw, assert_error, kv, qs};

const NATIVE: &str = "/api/slipway/v1";
const MODEL: &str = "cancer";
const NAME: &str = "clf";
/// The analysis interval every rollout here uses (the smallest the rules accept).
const INTERVAL: Duration = Duration::from_millis(100);
/// How long a test may drive a rollout before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// `on_both_backends!(case: x_sqlite, x_postgres)`: `case(&Harness)` on a fresh SQLite file and
/// on a fresh PostgreSQL database (skipped with a notice when unreachable, a failure in CI).
macro_rules! on_both_backends {
    ($case:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            if let Some(h) = Harness::start(Backend::Sqlite, PlaneConfig::default()).await {
                $case(&h).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            if let Some(h) = Harness::start(Backend::Postgres, PlaneConfig::default()).await {
                $case(&h).await;
            }
        }
    };
}

on_both_backends!(case_serves_the_stable_version: serves_the_stable_version_sqlite, serves_the_stable_version_postgres);
on_both_backends!(case_failing_candidate_rolls_back: failing_candidate_rolls_back_sqlite, failing_candidate_rolls_back_postgres);
on_both_backends!(case_good_candidate_is_promoted: good_candidate_is_promoted_sqlite, good_candidate_is_promoted_postgres);
on_both_backends!(case_prediction_log: prediction_log_sqlite, prediction_log_postgres);
on_both_backends!(case_sealed_log_and_retention: sealed_log_and_retention_sqlite, sealed_log_and_retention_postgres);
on_both_backends!(case_idle_canary_waits: idle_canary_waits_sqlite, idle_canary_waits_postgres);
on_both_backends!(case_shadow_never_answers: shadow_never_answers_sqlite, shadow_never_answers_postgres);
on_both_backends!(case_sticky_routing: sticky_routing_sqlite, sticky_routing_postgres);

/// The delivery report's tests, on this harness (`delivery.rs` beside this file).
#[path = "delivery.rs"]
mod delivery;

/// Explanations' tests, on this harness (`explain.rs` beside this file).
#[path = "explain.rs"]
mod explain;

enum Backend {
    Sqlite,
    Postgres,
}

/// One app over its own database and artifact folder, with its deployments' controller and
/// data plane, and the fixture models registered.
struct Harness {
    router: Router,
    app: App,
    deployments: Deployments,
    /// The artifact store's folder (a test may change files behind the server's back).
    dir: tempfile::TempDir,
    /// The test's database, dropped (and removed) with the harness.
    _db: Box<dyn std::any::Any + Send + Sync>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `{"inputs": [two breast-cancer rows]}`, as `mlflow models serve` takes it.
fn example() -> Value {
    read_json(fixtures().join("mlflow_logreg_breast_cancer/serving_input_example.json"))
}

/// `rows` breast-cancer rows: the eight sample rows, over and over.
fn rows(count: usize) -> Value {
    let samples = read_json(fixtures().join("logreg_breast_cancer.samples.json"));
    let sample_rows = samples["inputs"].as_array().expect("inputs").clone();
    json!(
        sample_rows
            .into_iter()
            .cycle()
            .take(count)
            .collect::<Vec<_>>()
    )
}

/// `value` with every number replaced by null, and the numbers in the order met.
fn skeleton(value: &Value, numbers: &mut Vec<f64>) -> Value {
    match value {
        Value::Number(number) => {
            numbers.push(number.as_f64().unwrap_or(f64::NAN));
            Value::Null
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| skeleton(v, numbers)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, v)| (key.clone(), skeleton(v, numbers)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The same JSON but for numbers, which may differ by the fixtures' tolerance (1e-4).
fn close(a: &Value, b: &Value) -> bool {
    let (mut a_numbers, mut b_numbers) = (Vec::new(), Vec::new());
    skeleton(a, &mut a_numbers) == skeleton(b, &mut b_numbers)
        && a_numbers
            .iter()
            .zip(&b_numbers)
            .all(|(x, y)| (x - y).abs() <= 1e-4)
}

/// The answer onnxruntime recorded for the example's rows (samples 0 and 1): labels [1, 0] and
/// their probabilities, as MLflow's scoring protocol returns them.
fn recorded() -> Value {
    let samples = read_json(fixtures().join("logreg_breast_cancer.samples.json"));
    let probabilities = &samples["outputs"]["probabilities"];
    json!({
        "label": [1, 0],
        "probabilities": [probabilities[0], probabilities[1]],
    })
}

fn assert_recorded(context: &str, predictions: &Value) {
    assert_eq!(
        predictions["label"],
        json!([1, 0]),
        "{context}: {predictions}"
    );
    assert!(
        close(predictions, &recorded()),
        "{context}: {predictions} vs {}",
        recorded()
    );
}

fn header_of<'a>(raw: &'a Raw, name: &str) -> &'a str {
    raw.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The variant and model version a response says answered it.
fn answered_by(raw: &Raw) -> (&str, &str) {
    (
        header_of(raw, "x-slipway-variant"),
        header_of(raw, "x-slipway-model-version"),
    )
}

/// The V2 request for the example's rows.
fn v2_example() -> Value {
    json!({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": example()["inputs"]}]})
}

/// A V2 answer's output called `name`.
fn v2_output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .and_then(|outputs| outputs.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output {name}: {body}"))
}

/// The sum of the samples of `name` whose labels include every `key="value"` given; `None`
/// when no sample matches.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("a sample without a value: {line}"))
        })
        .reduce(|sum, value| sum + value)
}

impl Harness {
    /// `None` (after saying why) when ONNX Runtime or PostgreSQL is missing outside CI.
    async fn start(backend: Backend, config: PlaneConfig) -> Option<Harness> {
        if let Err(error) = slipway_serving::Runtime::load(None) {
            assert!(
                !slipway_testkit::in_ci(),
                "CI=true and ONNX Runtime is unavailable: {error}"
            );
            eprintln!("SKIPPED: the deployment tests need ONNX Runtime: {error}");
            return None;
        }
        let (uri, db): (String, Box<dyn std::any::Any + Send + Sync>) = match backend {
            Backend::Sqlite => {
                let db = slipway_testkit::SqliteDatabase::create();
                (db.uri.clone(), Box::new(db))
            }
            Backend::Postgres => {
                let db = slipway_testkit::PgDatabase::create().await?;
                (db.uri.clone(), Box::new(db))
            }
        };
        let store = SqlStore::open(
            &BackendUri::parse(&uri).expect("parsing the store URI"),
            StoreOptions::default(),
        )
        .await
        .expect("opening the store");
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        let artifacts = ObjectArtifactStore::local(dir.path()).expect("opening the artifacts");
        let app = App::new(Arc::new(store), Arc::new(artifacts), AppSettings::default());
        let deployments = Deployments::new(
            &app,
            PlaneConfig {
                sessions: 2,
                ..config
            },
        );
        let harness = Harness {
            router: slipway_api::router_with(app.clone(), deployments.clone()),
            app,
            deployments,
            dir,
            _db: db,
        };
        harness.register_fixture_models().await;
        Some(harness)
    }

    /// A harness on SQLite whose data plane has these limits, serving [`NAME`] with these
    /// settings.
    async fn deployed(limits: Limits, settings: Value) -> Option<Harness> {
        let harness = Harness::start(
            Backend::Sqlite,
            PlaneConfig {
                limits,
                ..PlaneConfig::default()
            },
        )
        .await?;
        harness.deploy(settings).await;
        Some(harness)
    }

    /// Sends one request; every response must carry an `x-request-id`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Raw {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(builder.body(Body::from(body)).expect("building a request"))
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers: HeaderMap = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("reading a response body")
            .to_bytes()
            .to_vec();
        assert!(
            headers.get("x-request-id").is_some_and(|v| !v.is_empty()),
            "{method} {path}: no x-request-id (status {status})"
        );
        Raw {
            status,
            headers,
            body,
        }
    }

    async fn send_json(&self, method: &str, path: &str, body: Option<&Value>) -> Raw {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        match body {
            Some(body) => {
                let bytes = serde_json::to_vec(body).expect("encoding a body");
                self.send(method, path, &[], bytes, Some("application/json"))
                    .await
            }
            None => self.send(method, path, &[], Vec::new(), None).await,
        }
    }

    /// A control-plane call that must answer 200; the JSON body.
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let raw = self.send_json(method, path, body.as_ref()).await;
        let value = raw.json();
        assert_eq!(
            raw.status,
            StatusCode::OK,
            "{method} {path} {body:?} -> {value}"
        );
        value
    }

    /// A scoring request with JSON `body` and extra headers.
    async fn invoke(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Raw {
        let bytes = serde_json::to_vec(body).expect("encoding a body");
        self.send(Method::POST, path, headers, bytes, Some("application/json"))
            .await
    }

    /// The example through MLflow's scoring protocol; must answer 200 with the recorded
    /// predictions.
    async fn predict(&self, headers: &[(&str, &str)]) -> Raw {
        let raw = self
            .invoke(
                &format!("/deployments/{NAME}/invocations"),
                headers,
                &example(),
            )
            .await;
        assert_eq!(raw.status, StatusCode::OK, "{headers:?}: {:?}", raw.json());
        assert_recorded(&format!("{headers:?}"), &raw.json()["predictions"]);
        raw
    }

    /// The example through V2's versioned path.
    async fn infer_version(&self, version: &str) -> Raw {
        self.invoke(
            &format!("/v2/models/{NAME}/versions/{version}/infer"),
            &[],
            &v2_example(),
        )
        .await
    }

    async fn upload(&self, path: &str, file: PathBuf) {
        let bytes =
            std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let raw = self
            .send(Method::PUT, &format!("{PROXY}/{path}"), &[], bytes, None)
            .await;
        assert_eq!(raw.status, StatusCode::OK, "uploading {path}");
    }

    async fn create_version(&self, source: &str) {
        self.ok(
            "POST",
            &format!("{API}/model-versions/create"),
            Some(json!({ "name": MODEL, "source": source })),
        )
        .await;
    }

    /// Versions 1 and 2: the MLflow folder (MLmodel + model.onnx); version 3: the iris model,
    /// which takes 4 features; version 4: the breast-cancer model inverted (answers, always
    /// the other class); `@production` on version 1.
    async fn register_fixture_models(&self) {
        let experiment = self
            .ok(
                "POST",
                &format!("{API}/experiments/create"),
                Some(json!({ "name": "deployments" })),
            )
            .await;
        let run = self
            .ok(
                "POST",
                &format!("{API}/runs/create"),
                Some(json!({ "experiment_id": experiment["experiment_id"] })),
            )
            .await;
        let root = run["run"]["info"]["artifact_uri"]
            .as_str()
            .expect("artifact_uri")
            .to_owned();
        let proxied = root
            .strip_prefix("mlflow-artifacts:/")
            .expect("a proxied artifact root");
        for file in ["MLmodel", "model.onnx"] {
            self.upload(
                &format!("{proxied}/cancer/{file}"),
                fixtures().join("mlflow_logreg_breast_cancer").join(file),
            )
            .await;
        }
        self.upload(
            &format!("{proxied}/iris/iris_logreg.onnx"),
            fixtures().join("iris_logreg.onnx"),
        )
        .await;
        // The breast-cancer model with its coefficients negated: the other class on every row.
        self.upload(
            &format!("{proxied}/inverted/MLmodel"),
            fixtures().join("mlflow_logreg_breast_cancer/MLmodel"),
        )
        .await;
        self.upload(
            &format!("{proxied}/inverted/model.onnx"),
            fixtures()
                .join("../candidates")
                .join("logreg_breast_cancer_inverted.onnx"),
        )
        .await;
        self.ok(
            "POST",
            &format!("{API}/registered-models/create"),
            Some(json!({ "name": MODEL })),
        )
        .await;
        for source in ["cancer", "cancer", "iris", "inverted"] {
            self.create_version(&format!("{root}/{source}")).await;
        }
        self.ok(
            "POST",
            &format!("{API}/registered-models/alias"),
            Some(json!({ "name": MODEL, "alias": "production", "version": "1" })),
        )
        .await;
    }

    /// Creates deployment [`NAME`] on `@production` with these settings and loads it.
    async fn deploy(&self, settings: Value) -> Value {
        let created = self
            .ok(
                "POST",
                &format!("{NATIVE}/deployments"),
                Some(json!({
                    "name": NAME,
                    "model_uri": format!("models:/{MODEL}@production"),
                    "settings": settings,
                })),
            )
            .await;
        self.sync().await;
        created["deployment"].clone()
    }

    /// Starts a rollout of `body` (candidate, strategy, steps, analysis) and loads it.
    async fn roll_out(&self, body: Value) -> Value {
        let started = self
            .ok(
                "POST",
                &format!("{NATIVE}/deployments/{NAME}/rollout"),
                Some(body),
            )
            .await;
        self.sync().await;
        started["deployment"].clone()
    }

    /// [`Harness::roll_out`], then a tick that opens the controller's window for the first
    /// stage (measurements reported before it are not counted).
    async fn start_rollout(&self, body: Value) -> Value {
        let started = self.roll_out(body).await;
        self.tick().await;
        started
    }

    /// Loads what changed; the deployment must be served afterwards.
    async fn sync(&self) {
        let plane = &self.deployments.plane;
        plane.sync().await.expect("syncing the data plane");
        assert_eq!(plane.not_ready_reason(NAME), None, "not loaded");
    }

    async fn tick(&self) {
        self.deployments
            .controller
            .tick()
            .await
            .expect("a controller tick");
    }

    async fn deployment(&self) -> Value {
        self.ok("GET", &format!("{NATIVE}/deployments/{NAME}"), None)
            .await["deployment"]
            .clone()
    }

    async fn events(&self) -> Vec<Value> {
        self.ok("GET", &format!("{NATIVE}/deployments/{NAME}/events"), None)
            .await["events"]
            .as_array()
            .expect("events")
            .clone()
    }

    async fn metrics(&self) -> String {
        let raw = self.send_json("GET", "/metrics", None).await;
        assert_eq!(raw.status, StatusCode::OK);
        String::from_utf8(raw.body).expect("metrics are text")
    }

    /// The sum of `/metrics` samples of `name` with these labels (see [`metric`]); panics,
    /// showing the whole text, unless `expected` holds for it.
    async fn assert_metric(&self, name: &str, labels: &[(&str, &str)], expected: fn(f64) -> bool) {
        let text = self.metrics().await;
        let value = metric(&text, name, labels);
        assert!(
            value.is_some_and(expected),
            "{name} {labels:?} = {value:?}\n{text}"
        );
    }

    async fn version_tag(&self, version: &str) -> Option<String> {
        let got = self
            .ok(
                "GET",
                &format!(
                    "{API}/model-versions/get{}",
                    qs(&[("name", MODEL), ("version", version)])
                ),
                None,
            )
            .await;
        kv(
            &got["model_version"]["tags"],
            &format!("slipway.deployment.{NAME}"),
        )
        .map(str::to_owned)
    }

    /// Rounds of traffic (`requests` examples, each response passed to `check`), a report, an
    /// analysis interval and a tick, until `done` holds for the deployment; returns it.
    async fn drive(
        &self,
        requests: usize,
        check: impl Fn(&Raw),
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.sync().await;
            for _ in 0..requests {
                check(&self.predict(&[]).await);
            }
            self.deployments.plane.report().await;
            tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
            self.tick().await;
            let deployment = self.deployment().await;
            if done(&deployment) {
                return deployment;
            }
            assert!(
                Instant::now() < deadline,
                "gave up after {PATIENCE:?}: {deployment}\nevents: {:?}",
                self.events().await
            );
        }
    }
}

fn state(deployment: &Value) -> &str {
    deployment["rollout"]["state"]["state"]
        .as_str()
        .unwrap_or("none")
}

fn canary(candidate: &str, steps: Value, analysis: Value) -> Value {
    json!({
        "candidate_uri": format!("models:/{MODEL}/{candidate}"),
        "strategy": "canary",
        "steps": steps,
        "analysis": analysis,
    })
}

/// A canary of one step: half the traffic, analysed every [`INTERVAL`] from 10 samples.
fn half_canary(candidate: &str) -> Value {
    canary(
        candidate,
        json!([{"weight": 50, "duration_ms": 0}]),
        quick_analysis(),
    )
}

fn quick_analysis() -> Value {
    json!({ "interval_ms": INTERVAL.as_millis() as u64, "min_samples": 10 })
}

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

async fn case_serves_the_stable_version(h: &Harness) {
    let created = h.deploy(json!({})).await;
    assert_eq!(created["name"], NAME);
    assert_eq!(created["model_name"], MODEL);
    assert_eq!(created["alias"], "production");
    assert_eq!(created["stable_version"], "1");
    assert_eq!(created["revision"], 1);
    assert_eq!(h.version_tag("1").await.as_deref(), Some("stable"));

    let answer = h.predict(&[]).await;
    assert_eq!(answered_by(&answer), ("stable", "1"));

    let v2 = h
        .invoke(&format!("/v2/models/{NAME}/infer"), &[], &v2_example())
        .await;
    assert_eq!(v2.status, StatusCode::OK, "{:?}", v2.json());
    assert_eq!(answered_by(&v2), ("stable", "1"));
    let body = v2.json();
    assert_eq!(body["model_name"], NAME);
    assert_eq!(v2_output(&body, "label")["data"], json!([1, 0]), "{body}");
    let probabilities = v2_output(&body, "probabilities");
    assert_eq!(probabilities["shape"], json!([2, 2]));
    let flat: Vec<Value> = recorded()["probabilities"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row.as_array().expect("a row").clone())
        .collect();
    assert!(close(&probabilities["data"], &json!(flat)), "{body}");

    let metadata = h.ok("GET", &format!("/v2/models/{NAME}"), None).await;
    assert_eq!(metadata["versions"], json!(["1"]));
    let ping = h
        .send_json("GET", &format!("/deployments/{NAME}/ping"), None)
        .await;
    assert_eq!(ping.status, StatusCode::OK);
}

/// Behind a load balancer a deployment is created through one server and its traffic reaches
/// another: that server's plane, asked for a name it does not know, reads the specs at once
/// rather than answer 404 until its next periodic sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_made_through_another_server_is_served_at_once() {
    let Some(h) = Harness::start(Backend::Sqlite, PlaneConfig::default()).await else {
        return;
    };
    let other = Deployments::new(&h.app, PlaneConfig::default());
    let created = slipway_api::router_with(h.app.clone(), other)
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri(format!("{NATIVE}/deployments"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::to_vec(&json!({
                        "name": NAME,
                        "model_uri": format!("models:/{MODEL}@production"),
                    }))
                    .expect("encoding"),
                ))
                .expect("a request"),
        )
        .await
        .expect("the router is infallible");
    assert_eq!(created.status(), StatusCode::OK);
    // This server's plane has not synced since (nothing runs its loop here).
    assert!(h.deployments.plane.get(NAME).is_none());
    let answer = h.predict(&[]).await;
    assert_eq!(answered_by(&answer), ("stable", "1"));
    // A name no server knows is still a 404.
    let missing = h
        .invoke("/deployments/nope/invocations", &[], &example())
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// A scoring error in MLflow's format: status, code, and a message containing `needle`.
fn assert_mlflow_error(raw: &Raw, status: u16, code: &str, needle: &str) {
    let message = assert_error("invocations", raw.status, &raw.json(), status, code);
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

/// A V2 error: status and a non-empty `error` string.
fn assert_v2_error(context: &str, raw: &Raw, status: StatusCode) {
    let body = raw.json();
    assert_eq!(raw.status, status, "{context}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{context}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_the_protocols_errors() {
    let Some(h) = Harness::deployed(
        Limits {
            max_body_bytes: 16 * 1024,
            max_rows: 20,
            ..Limits::default()
        },
        json!({}),
    )
    .await
    else {
        return;
    };
    let invocations = format!("/deployments/{NAME}/invocations");
    let infer = format!("/v2/models/{NAME}/infer");

    let unknown = h
        .invoke("/deployments/nope/invocations", &[], &example())
        .await;
    assert_mlflow_error(&unknown, 404, "RESOURCE_DOES_NOT_EXIST", "nope");
    let unknown = h.invoke("/v2/models/nope/infer", &[], &v2_example()).await;
    assert_v2_error("unknown V2 model", &unknown, StatusCode::NOT_FOUND);

    let malformed = h
        .send(
            Method::POST,
            &invocations,
            &[],
            b"{\"inputs\": [[1, 2".to_vec(),
            Some("application/json"),
        )
        .await;
    assert_mlflow_error(&malformed, 400, "BAD_REQUEST", "valid JSON");

    let narrow = h
        .invoke(&invocations, &[], &json!({"inputs": [[1.0, 2.0, 3.0]]}))
        .await;
    assert_mlflow_error(&narrow, 400, "INVALID_PARAMETER_VALUE", "takes 30");

    let form = h
        .send(
            Method::POST,
            &invocations,
            &[],
            b"a=1".to_vec(),
            Some("application/x-www-form-urlencoded"),
        )
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        String::from_utf8_lossy(&form.body).contains("content types"),
        "{:?}",
        String::from_utf8_lossy(&form.body)
    );

    // 256 rows are about 100 KB of JSON, over the 16 KiB limit.
    let big = h
        .invoke(&invocations, &[], &json!({ "inputs": rows(256) }))
        .await;
    assert_mlflow_error(&big, 413, "INVALID_PARAMETER_VALUE", "limit");
    let big_v2 = h
        .invoke(
            &infer,
            &[],
            &json!({"inputs": [{"name": "input", "shape": [256, 30], "datatype": "FP32", "data": rows(256)}]}),
        )
        .await;
    assert_v2_error("oversized V2", &big_v2, StatusCode::PAYLOAD_TOO_LARGE);
    // 21 rows fit the body limit but not the row limit.
    let many = h
        .invoke(&invocations, &[], &json!({ "inputs": rows(21) }))
        .await;
    assert_mlflow_error(&many, 413, "INVALID_PARAMETER_VALUE", "--max-rows");
    let many_v2 = h
        .invoke(
            &infer,
            &[],
            &json!({"inputs": [{"name": "input", "shape": [21, 30], "datatype": "FP32", "data": rows(21)}]}),
        )
        .await;
    assert_v2_error("too many V2 rows", &many_v2, StatusCode::PAYLOAD_TOO_LARGE);
    let overflow = h
        .invoke(
            &invocations,
            &[],
            &json!({"dataframe_records": [{"a": 1e39}]}),
        )
        .await;
    assert_mlflow_error(&overflow, 400, "INVALID_PARAMETER_VALUE", "out of range");

    let data = example()["inputs"].clone();
    for (what, request) in [
        (
            "shape",
            json!({"inputs": [{"name": "input", "shape": [3, 30], "datatype": "FP32", "data": data}]}),
        ),
        (
            "datatype",
            json!({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "BYTES", "data": data}]}),
        ),
        (
            "width",
            json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
        ),
    ] {
        let raw = h.invoke(&infer, &[], &request).await;
        assert_v2_error(what, &raw, StatusCode::BAD_REQUEST);
    }
    let not_served = h.infer_version("2").await;
    assert_v2_error(
        "version 2 is not served",
        &not_served,
        StatusCode::NOT_FOUND,
    );

    // Forcing a variant: a candidate needs a rollout; anything else is refused.
    let no_candidate = h
        .invoke(
            &invocations,
            &[("x-slipway-variant", "candidate")],
            &example(),
        )
        .await;
    assert_mlflow_error(&no_candidate, 400, "INVALID_PARAMETER_VALUE", "no rollout");
    let no_candidate_v2 = h
        .invoke(&infer, &[("x-slipway-variant", "candidate")], &v2_example())
        .await;
    assert_v2_error(
        "forced candidate",
        &no_candidate_v2,
        StatusCode::BAD_REQUEST,
    );
    let garbage = h
        .invoke(&invocations, &[("x-slipway-variant", "blue")], &example())
        .await;
    assert_mlflow_error(&garbage, 400, "INVALID_PARAMETER_VALUE", "'blue'");
    let forced_stable = h.predict(&[("x-slipway-variant", "stable")]).await;
    assert_eq!(answered_by(&forced_stable), ("stable", "1"));

    // None of these were the model's fault.
    h.assert_metric(
        "slipway_serving_variant_requests_total",
        &[("deployment", NAME), ("outcome", "error")],
        |n| n == 0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_and_recovers() {
    let Some(h) = Harness::deployed(
        Limits {
            max_in_flight: 1,
            ..Limits::default()
        },
        json!({}),
    )
    .await
    else {
        return;
    };
    let h = Arc::new(h);
    // 2,048 rows a request: tens of milliseconds of parsing and inference each, so that
    // concurrent requests overlap.
    let heavy = Arc::new(json!({ "inputs": rows(2048) }));
    let path = format!("/deployments/{NAME}/invocations");
    let deadline = Instant::now() + PATIENCE;
    let mut shed = None;
    while shed.is_none() {
        assert!(Instant::now() < deadline, "no request was ever shed");
        let burst: Vec<_> = (0..16)
            .map(|_| {
                let (h, heavy, path) = (h.clone(), heavy.clone(), path.clone());
                tokio::spawn(async move { h.invoke(&path, &[], &heavy).await })
            })
            .collect();
        for handle in burst {
            let raw = handle.await.expect("a request task");
            match raw.status {
                StatusCode::OK => {}
                StatusCode::SERVICE_UNAVAILABLE => shed = Some(raw),
                other => panic!("{other}: {:?}", raw.json()),
            }
        }
    }
    let shed = shed.expect("a shed request");
    assert_eq!(header_of(&shed, "retry-after"), "1");
    assert_error(
        "shed",
        shed.status,
        &shed.json(),
        503,
        "TEMPORARILY_UNAVAILABLE",
    );
    h.assert_metric(
        "slipway_serving_deployment_requests_total",
        &[("deployment", NAME), ("outcome", "shed")],
        |n| n >= 1.0,
    )
    .await;
    // The burst is over: the permit came back.
    let answer = h.predict(&[]).await;
    assert_eq!(answered_by(&answer), ("stable", "1"));
    let heavy_alone = h.invoke(&path, &[], &heavy).await;
    assert_eq!(heavy_alone.status, StatusCode::OK);
}

/// A deployment served by one ONNX session (two places at the model) with room for 64
/// requests in flight, a body of 2,048 rows (tens of milliseconds of parsing and inference,
/// so concurrent requests overlap) and the path to send it to.
async fn one_session_deployment(
    max_queue_wait: Duration,
) -> Option<(Arc<Harness>, Arc<serde_json::Value>, String)> {
    let h = Harness::start(
        Backend::Sqlite,
        PlaneConfig {
            limits: Limits {
                max_in_flight: 64,
                max_queue_wait,
                ..Limits::default()
            },
            sessions: 1,
            ..PlaneConfig::default()
        },
    )
    .await?;
    h.deploy(json!({})).await;
    let heavy = Arc::new(json!({ "inputs": rows(2048) }));
    Some((
        Arc::new(h),
        heavy,
        format!("/deployments/{NAME}/invocations"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_waited_its_limit_for_the_model_is_shed_not_queued() {
    // Room for every request in flight, one session, and a 1 ms wait at most: requests of
    // 2,048 rows that overlap cannot all get the session in time, so some are shed by the
    // time they waited, which a count of requests in flight would never do.
    let Some((h, heavy, path)) = one_session_deployment(Duration::from_millis(1)).await else {
        return;
    };
    let deadline = Instant::now() + PATIENCE;
    let (mut answered, mut late) = (0, None);
    while late.is_none() || answered == 0 {
        assert!(
            Instant::now() < deadline,
            "{answered} answered, shed: {}",
            late.is_some()
        );
        let burst: Vec<_> = (0..16)
            .map(|_| {
                let (h, heavy, path) = (h.clone(), heavy.clone(), path.clone());
                tokio::spawn(async move { h.invoke(&path, &[], &heavy).await })
            })
            .collect();
        for handle in burst {
            let raw = handle.await.expect("a request task");
            match raw.status {
                StatusCode::OK => answered += 1,
                StatusCode::SERVICE_UNAVAILABLE => late = Some(raw),
                other => panic!("{other}: {:?}", raw.json()),
            }
        }
    }
    let late = late.expect("a shed request");
    assert_eq!(header_of(&late, "retry-after"), "1");
    assert_error(
        "late",
        late.status,
        &late.json(),
        503,
        "TEMPORARILY_UNAVAILABLE",
    );
    let message = late.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("waited its limit"), "{message}");
    h.assert_metric(
        "slipway_serving_deployment_requests_total",
        &[("deployment", NAME), ("outcome", "shed")],
        |n| n >= 1.0,
    )
    .await;
    // Nothing is left waiting: alone, a request gets the session at once.
    let alone = h.invoke(&path, &[], &heavy).await;
    assert_eq!(alone.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_door_lets_in_only_what_the_model_answers_soon() {
    // One session (two places, so 16 requests in flight) and an in-flight limit of 64: 48
    // clients sending requests of 2,048 rows back to back are refused past what the places
    // answer soon, though the in-flight limit has room for them.
    let Some((h, heavy, path)) = one_session_deployment(Limits::default().max_queue_wait).await
    else {
        return;
    };
    let stop = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let (h, heavy, path) = (h.clone(), heavy.clone(), path.clone());
            tokio::spawn(async move {
                let (mut answered, mut at_the_door) = (0usize, 0usize);
                while Instant::now() < stop {
                    let raw = h.invoke(&path, &[], &heavy).await;
                    match raw.status {
                        StatusCode::OK => answered += 1,
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert_eq!(header_of(&raw, "retry-after"), "1");
                            let message = raw.json()["message"].as_str().unwrap_or("").to_owned();
                            if message.contains("more requests arrive than its model answers") {
                                at_the_door += 1;
                            }
                        }
                        other => panic!("{other}: {:?}", raw.json()),
                    }
                }
                (answered, at_the_door)
            })
        })
        .collect();
    let (mut answered, mut at_the_door) = (0, 0);
    for client in clients {
        let (a, d) = client.await.expect("a client task");
        answered += a;
        at_the_door += d;
    }
    assert!(answered > 0, "nothing answered");
    assert!(
        at_the_door > 0,
        "{answered} answered, none refused at the door past the model's places"
    );
    // The overload is over: alone, a request is answered.
    let alone = h.invoke(&path, &[], &heavy).await;
    assert_eq!(alone.status, StatusCode::OK);
}

/// Writes one HTTP/1.1 request on `stream` and reads its answer: the status, or `None` when
/// the server closed the connection instead of answering.
async fn exchange(stream: &mut tokio::net::TcpStream, path: &str, body: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: slipway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (mut reader, mut writer) = stream.split();
    // Written while the answer is read: a server that answers before reading the body must
    // not block the writer on a full socket buffer.
    let write = async {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(body).await;
    };
    let read = async {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                let status = head.split(' ').nth(1)?.parse::<u16>().ok()?;
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while seen.len() < end + 4 + length {
                    let n = reader.read(&mut buffer).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                }
                return Some(status);
            }
            let n = reader.read(&mut buffer).await.ok()?;
            if n == 0 {
                return None;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
    };
    let ((), status) = tokio::join!(write, read);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shed_request_leaves_its_connection_usable() {
    // One request in flight, held 300 ms by a micro-batch waiting for company: a request
    // that arrives meanwhile is shed before its body is read.
    let Some(h) = Harness::deployed(
        Limits {
            max_in_flight: 1,
            ..Limits::default()
        },
        json!({ "batch_max_rows": 100000, "batch_max_wait_ms": 300 }),
    )
    .await
    else {
        return;
    };
    let h = Arc::new(h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(axum::serve(listener, h.router.clone()).into_future());
    let path = format!("/deployments/{NAME}/invocations");
    // 4,096 rows, about 2 MB: more than one read, so the server cannot drain it by chance.
    let big = json!({ "inputs": rows(4096) }).to_string().into_bytes();
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("a connection");
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no request was ever shed");
        let holder = {
            let (h, path) = (h.clone(), path.clone());
            tokio::spawn(async move { h.invoke(&path, &[], &json!({ "inputs": rows(1) })).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = exchange(&mut stream, &path, &big).await;
        assert_eq!(holder.await.expect("the holder").status, StatusCode::OK);
        match status {
            Some(503) => break,
            Some(200) => continue,
            other => panic!("the first request got {other:?}"),
        }
    }
    // The same connection takes the next request.
    let again = exchange(&mut stream, &path, &big).await;
    assert_eq!(
        again,
        Some(200),
        "the connection of a shed request must stay usable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_over_the_timeout_gets_504_and_the_deployment_recovers() {
    // A micro-batch that waits 300 ms for company, behind a 50 ms timeout: the request is
    // late whatever the machine's speed.
    let Some(h) = Harness::deployed(
        Limits {
            timeout: Duration::from_millis(50),
            ..Limits::default()
        },
        json!({ "batch_max_rows": 1000, "batch_max_wait_ms": 300 }),
    )
    .await
    else {
        return;
    };
    let heavy = json!({ "inputs": rows(1) });
    let path = format!("/deployments/{NAME}/invocations");
    let late = h.invoke(&path, &[], &heavy).await;
    assert_error(
        "timeout",
        late.status,
        &late.json(),
        504,
        "DEADLINE_EXCEEDED",
    );
    h.assert_metric(
        "slipway_serving_deployment_requests_total",
        &[("deployment", NAME), ("outcome", "timeout")],
        |n| n >= 1.0,
    )
    .await;
    // Its permit and in-flight count came back.
    h.assert_metric(
        "slipway_serving_deployment_in_flight_requests",
        &[("deployment", NAME)],
        |n| n == 0.0,
    )
    .await;
}

async fn case_sticky_routing(h: &Harness) {
    h.deploy(json!({})).await;
    // No ticks: the rollout stays at its first stage, 50 %.
    let started = h.roll_out(half_canary("2")).await;
    assert_eq!(started["traffic"]["weight"], 50);
    assert_eq!(h.version_tag("2").await.as_deref(), Some("candidate"));
    h.assert_metric(
        "slipway_serving_candidate_weight_percent",
        &[("deployment", NAME)],
        |n| n == 50.0,
    )
    .await;

    let expected = |key: &str| {
        if routes_to_candidate(route_hash(key.as_bytes()), 50) {
            ("candidate", "2")
        } else {
            ("stable", "1")
        }
    };
    let first = h.predict(&[("x-slipway-route-key", "user-7")]).await;
    let pinned = answered_by(&first);
    assert_eq!(pinned, expected("user-7"));
    for _ in 0..20 {
        let again = h.predict(&[("x-slipway-route-key", "user-7")]).await;
        assert_eq!(answered_by(&again), pinned);
    }
    let mut to_candidate = 0;
    for user in 0..200 {
        let key = format!("user-{user}");
        let answer = h.predict(&[("x-slipway-route-key", &key)]).await;
        assert_eq!(answered_by(&answer), expected(&key), "{key}");
        if answered_by(&answer).0 == "candidate" {
            to_candidate += 1;
        }
    }
    assert!((50..=150).contains(&to_candidate), "{to_candidate} of 200");

    let forced = h.predict(&[("x-slipway-variant", "candidate")]).await;
    assert_eq!(answered_by(&forced), ("candidate", "2"));
    let forced = h
        .predict(&[
            ("x-slipway-variant", "stable"),
            ("x-slipway-route-key", "user-7"),
        ])
        .await;
    assert_eq!(answered_by(&forced), ("stable", "1"));

    for (version, variant) in [("2", "candidate"), ("1", "stable")] {
        let raw = h.infer_version(version).await;
        assert_eq!(raw.status, StatusCode::OK, "{:?}", raw.json());
        assert_eq!(answered_by(&raw), (variant, version));
        let body = raw.json();
        assert_eq!(v2_output(&body, "label")["data"], json!([1, 0]), "{body}");
    }
    let metadata = h.ok("GET", &format!("/v2/models/{NAME}"), None).await;
    assert_eq!(metadata["versions"], json!(["1", "2"]));
}

async fn case_failing_candidate_rolls_back(h: &Harness) {
    h.deploy(json!({})).await;
    // Five samples: the five failures that open the circuit (the requests it diverts
    // afterwards are not the candidate's errors and make up no sample).
    h.start_rollout(canary(
        "3",
        json!([{"weight": 50, "duration_ms": 0}]),
        json!({ "interval_ms": INTERVAL.as_millis() as u64, "min_samples": 5 }),
    ))
    .await;

    // Half the traffic goes to version 3, which cannot read these rows: the stable answers
    // every one of them. Route keys make the split the same on every run.
    let keys: Vec<String> = (0..30).map(|user| format!("user-{user}")).collect();
    let to_candidate = keys
        .iter()
        .filter(|key| routes_to_candidate(route_hash(key.as_bytes()), 50))
        .count();
    assert!(
        to_candidate >= 5,
        "{to_candidate} of 30 keys reach the candidate"
    );
    for key in &keys {
        let answer = h.predict(&[("x-slipway-route-key", key)]).await;
        assert_eq!(answered_by(&answer), ("stable", "1"));
    }
    h.assert_metric(
        "slipway_serving_variant_requests_total",
        &[
            ("deployment", NAME),
            ("variant", "candidate"),
            ("model_version", "3"),
            ("outcome", "fallback"),
        ],
        |n| n >= 1.0,
    )
    .await;
    // Five failures in a row (the default) open the candidate's circuit.
    h.assert_metric(
        "slipway_serving_circuit_state",
        &[("deployment", NAME), ("variant", "candidate")],
        |n| n == 1.0,
    )
    .await;

    let ended = h
        .drive(
            20,
            |raw| assert_eq!(answered_by(raw).0, "stable"),
            |d| state(d) != "progressing",
        )
        .await;
    assert_eq!(state(&ended), "rolled_back", "{ended}");
    assert_eq!(ended["stable_version"], "1");
    assert_eq!(ended["traffic"]["weight"], 0);
    let events = h.events().await;
    let rolled_back = events_of(&events, "rolled_back");
    assert_eq!(rolled_back.len(), 1, "{events:?}");
    assert_eq!(rolled_back[0]["detail"]["rule"], "error_rate", "{events:?}");
    assert_eq!(rolled_back[0]["detail"]["candidate_version"], "3");
    assert_eq!(h.version_tag("3").await.as_deref(), Some("rolled_back"));
    assert_eq!(h.version_tag("1").await.as_deref(), Some("stable"));
    let audit = h
        .ok(
            "GET",
            &format!(
                "{NATIVE}/audit{}",
                qs(&[("resource", &format!("deployment:{NAME}"))])
            ),
            None,
        )
        .await;
    let rollbacks: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["action"] == "deployments.rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1, "{audit}");
    // The analysis decided, not a person.
    assert_eq!(rollbacks[0]["actor"], "slipway-controller", "{audit}");

    // Back to stable only: the candidate cannot be forced any more.
    h.sync().await;
    let refused = h
        .invoke(
            &format!("/deployments/{NAME}/invocations"),
            &[("x-slipway-variant", "candidate")],
            &example(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    h.assert_metric(
        "slipway_serving_circuit_state",
        &[("deployment", NAME), ("variant", "candidate")],
        |n| n == 0.0,
    )
    .await;
}

async fn case_good_candidate_is_promoted(h: &Harness) {
    h.deploy(json!({})).await;
    // Version 2 is the same model: no error, no shift. The latency ratio is loosened because
    // a debug build on two busy cores has millisecond hiccups that are not the candidate's.
    h.start_rollout(canary(
        "2",
        json!([{"weight": 50, "duration_ms": 0}, {"weight": 100, "duration_ms": 300}]),
        json!({ "interval_ms": 100, "min_samples": 10, "max_p99_ratio": 50.0 }),
    ))
    .await;
    let promoted = h
        .drive(
            30,
            |_| {},
            |d| d["rollout"]["stage"] == 1 || state(d) != "progressing",
        )
        .await;
    assert_eq!(state(&promoted), "progressing", "{promoted}");
    assert_eq!(promoted["traffic"]["weight"], 100);
    let promoted = h.drive(30, |_| {}, |d| state(d) != "progressing").await;
    assert_eq!(state(&promoted), "succeeded", "{promoted}");
    assert_eq!(promoted["stable_version"], "2");
    assert_eq!(promoted["previous_version"], "1");

    let alias = h
        .ok(
            "GET",
            &format!(
                "{API}/registered-models/alias{}",
                qs(&[("name", MODEL), ("alias", "production")])
            ),
            None,
        )
        .await;
    assert_eq!(alias["model_version"]["version"], "2");
    assert_eq!(h.version_tag("2").await.as_deref(), Some("stable"));
    assert_eq!(h.version_tag("1").await.as_deref(), Some("previous"));

    // The last stage lasted its duration, and passed an analysis before the promotion.
    let events = h.events().await;
    let stage = events_of(&events, "stage");
    let done = events_of(&events, "promoted");
    assert_eq!((stage.len(), done.len()), (1, 1), "{events:?}");
    let lasted =
        done[0]["time_ms"].as_i64().expect("time") - stage[0]["time_ms"].as_i64().expect("time");
    assert!(lasted >= 300, "the last stage lasted {lasted} ms");
    let passed_after_stage = events.iter().any(|e| {
        e["kind"] == "analysis"
            && e["seq"].as_i64() > stage[0]["seq"].as_i64()
            && e["detail"]["verdict"]["verdict"] == "pass"
    });
    assert!(passed_after_stage, "{events:?}");
    assert!(events_of(&events, "rolled_back").is_empty());

    h.sync().await;
    let answer = h.predict(&[]).await;
    assert_eq!(answered_by(&answer), ("stable", "2"));

    // A rollback with no rollout running says what it did (the alias moved back from 2 to
    // 1), not the story of the rollout that promoted 2.
    let rolled = h
        .ok(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/rollback"),
            Some(json!({})),
        )
        .await;
    let done = &rolled["rollback"];
    assert_eq!(done["rollout_id"], Value::Null, "{rolled}");
    assert_eq!(
        (&done["from_version"], &done["to_version"], &done["alias"]),
        (&json!("2"), &json!("1"), &json!("production")),
        "{rolled}"
    );
    assert_eq!(rolled["deployment"]["stable_version"], "1");
}

async fn case_idle_canary_waits(h: &Harness) {
    h.deploy(json!({})).await;
    let started = h.start_rollout(half_canary("2")).await;
    for _ in 0..5 {
        tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
        h.deployments.plane.report().await;
        h.tick().await;
    }
    let waiting = h.deployment().await;
    assert_eq!(state(&waiting), "progressing", "{waiting}");
    assert_eq!(waiting["rollout"]["stage"], 0);
    assert_eq!(waiting["rollout"]["stage_passed"], false);
    // Waiting for samples changes nothing the data plane acts on: no new revision.
    assert_eq!(waiting["revision"], started["revision"]);
    // Every analysis re-read the same growing window and found the same rules waiting: one
    // event stands for the run, with its count and its first and last time.
    let events = h.events().await;
    let analyses = events_of(&events, "analysis");
    assert_eq!(analyses.len(), 1, "{events:?}");
    let run = analyses[0];
    assert_eq!(run["detail"]["verdict"]["verdict"], "inconclusive", "{run}");
    assert!(run["count"].as_i64().expect("a count") >= 3, "{run}");
    assert!(
        run["last_time_ms"].as_i64() > run["time_ms"].as_i64(),
        "{run}"
    );
    for kind in ["rolled_back", "stage", "promoted"] {
        assert!(events_of(&events, kind).is_empty(), "{kind}: {events:?}");
    }
}

async fn case_shadow_never_answers(h: &Harness) {
    h.deploy(json!({})).await;
    let baseline = h.predict(&[]).await.json();
    h.start_rollout(json!({
        "candidate_uri": format!("models:/{MODEL}/3"),
        "strategy": "shadow",
        "mirror_percent": 100,
        "analysis": quick_analysis(),
    }))
    .await;
    let ended = h
        .drive(
            20,
            |raw| {
                assert_eq!(answered_by(raw), ("stable", "1"));
                assert_eq!(raw.json(), baseline);
            },
            |d| state(d) != "progressing",
        )
        .await;
    assert_eq!(state(&ended), "rolled_back", "{ended}");
    let events = h.events().await;
    let rolled_back = events_of(&events, "rolled_back");
    assert_eq!(rolled_back.len(), 1, "{events:?}");
    let rule = rolled_back[0]["detail"]["rule"].as_str().unwrap_or("");
    assert!(["error_rate", "agreement"].contains(&rule), "{events:?}");
    h.assert_metric(
        "slipway_serving_mirrored_requests_total",
        &[("deployment", NAME), ("outcome", "error")],
        |n| n >= 1.0,
    )
    .await;
}

async fn case_prediction_log(h: &Harness) {
    h.deploy(json!({ "log_sample": 1.0 })).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(h.deployments.plane.clone().run(async move {
        let _ = stopped.await;
    }));
    let mut request_ids = Vec::new();
    for _ in 0..5 {
        let answer = h.predict(&[]).await;
        request_ids.push(header_of(&answer, "x-request-id").to_owned());
    }
    // A large request is logged by its first 100 rows, marked as truncated.
    let row = example()["inputs"][0].clone();
    let big = json!({ "inputs": vec![row.clone(); 150] });
    let answer = h
        .invoke(&format!("/deployments/{NAME}/invocations"), &[], &big)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let big_id = header_of(&answer, "x-request-id").to_owned();
    // Stopping flushes the queue into the store.
    stop.send(()).expect("the plane runs");
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the plane stops")
        .expect("the plane's task");

    let path = format!("{NATIVE}/deployments/{NAME}/predictions");
    let all = h.ok("GET", &path, None).await;
    let mut records = all["predictions"].as_array().expect("predictions").clone();
    let big_at = records
        .iter()
        .position(|r| r["request_id"] == big_id.as_str())
        .expect("the large request is logged");
    let truncated = records.remove(big_at);
    assert_eq!(truncated["inputs"]["truncated"], true, "{truncated}");
    assert_eq!(truncated["inputs"]["total_rows"], 150);
    assert!(close(&truncated["inputs"]["rows"], &json!(vec![row; 100])));
    assert_eq!(
        truncated["outputs"]["label"].as_array().map(Vec::len),
        Some(100),
        "{truncated}"
    );
    assert_eq!(records.len(), 5, "{all}");
    let mut logged: Vec<String> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap_or("").to_owned())
        .collect();
    logged.sort();
    request_ids.sort();
    assert_eq!(logged, request_ids);
    for record in records {
        assert_eq!(record["deployment"], NAME);
        assert_eq!(record["variant"], "stable");
        assert_eq!(record["model_version"], "1");
        assert!(close(&record["inputs"], &example()["inputs"]), "{record}");
        assert_recorded("logged outputs", &record["outputs"]);
    }
    assert_eq!(all["next_after"], Value::Null);

    // Paging by id.
    let first = h
        .ok("GET", &format!("{path}{}", qs(&[("limit", "2")])), None)
        .await;
    assert_eq!(first["predictions"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["next_after"], all["predictions"][1]["id"]);
    let after = first["next_after"]
        .as_i64()
        .expect("next_after")
        .to_string();
    let rest = h
        .ok("GET", &format!("{path}{}", qs(&[("after", &after)])), None)
        .await;
    assert_eq!(
        rest["predictions"],
        json!(all["predictions"].as_array().unwrap()[2..])
    );
}

/// A route key that the 50 % split sends to the candidate.
fn candidate_key() -> String {
    (0..)
        .map(|user| format!("user-{user}"))
        .find(|key| routes_to_candidate(route_hash(key.as_bytes()), 50))
        .expect("some key reaches the candidate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_request_does_not_hold_the_half_open_trial() {
    let Some(h) = Harness::deployed(
        Limits::default(),
        json!({ "breaker_failures": 1, "breaker_cooldown_ms": 100 }),
    )
    .await
    else {
        return;
    };
    // Version 3 reads 4 features: it fails on breast-cancer rows and answers iris rows.
    h.roll_out(half_canary("3")).await;
    let key = candidate_key();
    let route = [("x-slipway-route-key", key.as_str())];
    let invocations = format!("/deployments/{NAME}/invocations");
    let iris = json!({ "inputs": [[5.1, 3.5, 1.4, 0.2]] });

    // One failure opens the circuit; the stable answers.
    let answer = h.predict(&route).await;
    assert_eq!(answered_by(&answer), ("stable", "1"));
    // Open: the candidate's traffic goes to the stable, which cannot read iris rows.
    let open = h.invoke(&invocations, &route, &iris).await;
    assert_mlflow_error(&open, 400, "INVALID_PARAMETER_VALUE", "takes 30");
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Half-open: the trial goes to a request the client got wrong. It tells nothing about
    // the candidate, so it must not keep the circuit from ever trying the candidate again.
    let malformed = h
        .send(
            Method::POST,
            &invocations,
            &route,
            b"{\"inputs\": [[1".to_vec(),
            Some("application/json"),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let raw = h.invoke(&invocations, &route, &iris).await;
        if raw.status == StatusCode::OK && answered_by(&raw) == ("candidate", "3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the candidate never got its trial after a malformed request: {} {:?} {}",
            raw.status,
            answered_by(&raw),
            String::from_utf8_lossy(&raw.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waiting for a promotion's approval, the candidate still serves its share: a failing
/// analysis then rolls back and withdraws the request, instead of waiting for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failure_while_waiting_for_approval_rolls_back_and_withdraws_the_request() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    h.ok(
        "PUT",
        &format!("{NATIVE}/policies/{MODEL}"),
        Some(json!({ "protected_aliases": ["production"], "required_approvals": 1 })),
    )
    .await;
    h.start_rollout(canary(
        "2",
        json!([{"weight": 50, "duration_ms": 0}]),
        json!({ "interval_ms": 100, "min_samples": 10, "max_p99_ratio": 50.0 }),
    ))
    .await;
    let waiting = h.drive(30, |_| {}, |d| state(d) != "progressing").await;
    assert_eq!(state(&waiting), "awaiting_approval", "{waiting}");
    let promotion = waiting["rollout"]["state"]["promotion_id"]
        .as_i64()
        .expect("a promotion id");
    // The candidate starts failing: a replica reports every request of the window as an error.
    let rollout = &waiting["rollout"];
    let mut failing = WindowStats::default();
    failing.candidate.requests = 50;
    failing.candidate.errors = 50;
    failing.stable.requests = 50;
    for _ in 0..50 {
        failing.stable.latency.record(300);
    }
    let report = json!({
        "rollout_id": rollout["id"],
        "stage": rollout["stage"],
        "stats": failing,
    });
    let accepted = h
        .ok(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/reports"),
            Some(report),
        )
        .await;
    assert_eq!(accepted["accepted"], true);
    tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
    h.tick().await;
    let ended = h.deployment().await;
    assert_eq!(state(&ended), "rolled_back", "{ended}");
    let reason = ended["rollout"]["state"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("waiting for approval") && reason.contains("error_rate"),
        "{reason}"
    );
    let request = h
        .ok("GET", &format!("{NATIVE}/promotions/{promotion}"), None)
        .await;
    assert_eq!(request["promotion"]["state"], "rejected", "{request}");
    assert_eq!(h.version_tag("2").await.as_deref(), Some("rolled_back"));
}

/// Reports count only for the stage running now: a forged (or confused) report of a future
/// stage is refused and leaves the live window alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_of_another_stage_are_not_counted() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    let started = h.start_rollout(half_canary("2")).await;
    let rollout = &started["rollout"];
    let mut stats = WindowStats::default();
    stats.candidate.requests = 10;
    stats.candidate.errors = 10;
    let path = format!("{NATIVE}/deployments/{NAME}/reports");
    for (rollout_id, stage) in [(rollout["id"].clone(), json!(7)), (json!(99), json!(0))] {
        let answer = h
            .ok(
                "POST",
                &path,
                Some(json!({ "rollout_id": rollout_id, "stage": stage, "stats": stats })),
            )
            .await;
        assert_eq!(answer["accepted"], false, "{rollout_id} {stage}");
    }
    h.tick().await;
    let window = &h.deployment().await["window"];
    assert_eq!(window["stage"], 0, "{window}");
    assert_eq!(window["stats"]["candidate"]["requests"], 0, "{window}");
    let answer = h
        .ok(
            "POST",
            &path,
            Some(json!({ "rollout_id": rollout["id"], "stage": rollout["stage"], "stats": stats })),
        )
        .await;
    assert_eq!(answer["accepted"], true);
}

/// Sets [`MODEL`]'s policy: `@production` protected, one approval, `extra` on top.
async fn protect(h: &Harness, extra: Value) {
    let mut policy = json!({ "protected_aliases": ["production"], "required_approvals": 1 });
    for (key, value) in extra.as_object().expect("an object") {
        policy[key] = value.clone();
    }
    h.ok("PUT", &format!("{NATIVE}/policies/{MODEL}"), Some(policy))
        .await;
}

/// How many of `count` examples the candidate answered.
async fn candidate_answers(h: &Harness, count: usize) -> usize {
    h.sync().await;
    let mut candidate = 0;
    for _ in 0..count {
        let raw = h.predict(&[]).await;
        if answered_by(&raw).0 == "candidate" {
            candidate += 1;
        }
    }
    candidate
}

/// A protected deployment's candidate answers at most the policy's share of live traffic until
/// its promotion is approved: a single 100 % step runs at the cap, and so does the wait for
/// approval after every stage passed (which used to leave the candidate at 100 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unapproved_candidate_of_a_protected_deployment_stays_under_the_cap() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    protect(&h, json!({ "max_unapproved_weight": 10 })).await;
    let started = h
        .start_rollout(canary(
            "2",
            json!([{"weight": 100, "duration_ms": 0}]),
            json!({ "interval_ms": 100, "min_samples": 10, "max_p99_ratio": 50.0 }),
        ))
        .await;
    assert_eq!(started["rollout"]["unapproved_weight_cap"], 10, "{started}");
    let live = h.deployment().await;
    assert_eq!(live["traffic"]["weight"], 10, "{live}");
    let answered = candidate_answers(&h, 200).await;
    assert!(
        (1..=50).contains(&answered),
        "the candidate answered {answered} of 200 at a 10 % cap"
    );
    let waiting = h.drive(30, |_| {}, |d| state(d) != "progressing").await;
    assert_eq!(state(&waiting), "awaiting_approval", "{waiting}");
    assert_eq!(waiting["traffic"]["weight"], 10, "{waiting}");
    let answered = candidate_answers(&h, 200).await;
    assert!(
        answered <= 50,
        "waiting for approval, the candidate answered {answered} of 200"
    );
    let events = h.events().await;
    let started = events_of(&events, "rollout_started");
    assert_eq!(
        started[0]["detail"]["protected"]["unapproved_weight_cap"], 10,
        "{events:?}"
    );
}

/// A candidate whose source run fails the policy's checks gets no live traffic at all before
/// approval (a shadow or a preview can still compare it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_failing_the_policy_checks_gets_no_live_traffic() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    protect(&h, json!({ "checks": "metrics.auc >= 0.9" })).await;
    let started = h.start_rollout(half_canary("2")).await;
    assert_eq!(started["rollout"]["unapproved_weight_cap"], 0, "{started}");
    assert_eq!(h.deployment().await["traffic"]["weight"], 0);
    assert_eq!(candidate_answers(&h, 100).await, 0);
    // Nor can a caller ask for it by header or by V2's versioned path.
    let forced = h
        .invoke(
            &format!("/deployments/{NAME}/invocations"),
            &[("x-slipway-variant", "candidate")],
            &example(),
        )
        .await;
    assert_mlflow_error(
        &forced,
        403,
        "PERMISSION_DENIED",
        "failed its promotion policy",
    );
    let versioned = h.infer_version("2").await;
    assert_eq!(versioned.status, StatusCode::FORBIDDEN);
    // The stable still answers when asked by name.
    assert_eq!(h.infer_version("1").await.status, StatusCode::OK);
}

/// Deleting a protected deployment and re-creating it under the same name on an unapproved
/// version is refused (and audited); following the protected alias again works, and an
/// admin's explicit override is recorded as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_protected_deployment_cannot_come_back_unprotected() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    protect(&h, json!({})).await;
    h.ok("DELETE", &format!("{NATIVE}/deployments/{NAME}"), None)
        .await;
    let pinned = json!({ "name": NAME, "model_uri": format!("models:/{MODEL}/3") });
    let refused = h
        .send_json("POST", &format!("{NATIVE}/deployments"), Some(&pinned))
        .await;
    assert_mlflow_error(&refused, 403, "PERMISSION_DENIED", "--override-reason");
    assert!(
        refused.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("models:/cancer@production")),
        "{:?}",
        refused.json()
    );
    // Another alias that the policy does not protect is no way around it either.
    let staging = json!({ "name": NAME, "model_uri": format!("models:/{MODEL}@staging") });
    h.ok(
        "POST",
        &format!("{API}/registered-models/alias"),
        Some(json!({ "name": MODEL, "alias": "staging", "version": "3" })),
    )
    .await;
    let refused = h
        .send_json("POST", &format!("{NATIVE}/deployments"), Some(&staging))
        .await;
    assert_mlflow_error(&refused, 403, "PERMISSION_DENIED", "protects");

    // Following the protected alias again is the ordinary way back.
    h.deploy(json!({})).await;
    h.ok("DELETE", &format!("{NATIVE}/deployments/{NAME}"), None)
        .await;
    // An admin may override, on the record.
    let mut overridden = pinned.clone();
    overridden["override_reason"] = json!("incident 42: serve v3 while @production is fixed");
    let created = h
        .ok("POST", &format!("{NATIVE}/deployments"), Some(overridden))
        .await;
    assert_eq!(created["deployment"]["stable_version"], "3");
    let audit = h
        .ok(
            "GET",
            &format!(
                "{NATIVE}/audit{}",
                qs(&[("resource", &format!("deployment:{NAME}"))])
            ),
            None,
        )
        .await;
    let entries = audit["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"deployments.override")
            && actions.contains(&"deployments.protected_change"),
        "{actions:?}"
    );
    let overrides: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "deployments.override")
        .collect();
    assert!(
        overrides[0]["summary"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("incident 42")),
        "{overrides:?}"
    );
}

/// A registered version's files are what was approved: uploads and deletes under them are
/// refused (and audited), its digest tag is the server's alone, lineage shows the manifest, and
/// a file changed behind the server's back is refused at load, never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registered_versions_files_cannot_change() {
    let Some(h) = Harness::start(Backend::Sqlite, PlaneConfig::default()).await else {
        return;
    };
    let version = h
        .ok(
            "GET",
            &format!(
                "{API}/model-versions/get{}",
                qs(&[("name", MODEL), ("version", "2")])
            ),
            None,
        )
        .await;
    let digest = kv(&version["model_version"]["tags"], "slipway.content_digest")
        .expect("a content digest tag")
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let source = version["model_version"]["source"].as_str().expect("source");
    let folder = source
        .strip_prefix("mlflow-artifacts:/")
        .expect("a proxied source")
        .to_owned();
    let run_root = folder.trim_end_matches("/cancer").to_owned();

    // Through the API: no overwrite, no delete of the file, its folder or the run's root.
    let tampered = b"not the approved model".to_vec();
    let put = h
        .send(
            Method::PUT,
            &format!("{PROXY}/{folder}/model.onnx"),
            &[],
            tampered.clone(),
            None,
        )
        .await;
    assert_mlflow_error(&put, 403, "PERMISSION_DENIED", "may not change");
    let added = h
        .send(
            Method::PUT,
            &format!("{PROXY}/{folder}/extra.onnx"),
            &[],
            tampered.clone(),
            None,
        )
        .await;
    assert_eq!(
        added.status,
        StatusCode::FORBIDDEN,
        "adding a file changes the folder too"
    );
    for path in [
        format!("{folder}/model.onnx"),
        folder.clone(),
        run_root.clone(),
    ] {
        let deleted = h
            .send(
                Method::DELETE,
                &format!("{PROXY}/{path}"),
                &[],
                Vec::new(),
                None,
            )
            .await;
        assert_eq!(deleted.status, StatusCode::FORBIDDEN, "DELETE {path}");
    }
    // Elsewhere in the same run, writing goes on as before.
    let elsewhere = h
        .send(
            Method::PUT,
            &format!("{PROXY}/{run_root}/notes/a.txt"),
            &[],
            b"ok".to_vec(),
            None,
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    // A prefix that is not a folder boundary is another path.
    let sibling = h
        .send(
            Method::PUT,
            &format!("{PROXY}/{folder}-v2/model.onnx"),
            &[],
            b"ok".to_vec(),
            None,
        )
        .await;
    assert_eq!(sibling.status, StatusCode::OK);

    // The digest tag is the server's.
    let forged = h
        .send_json(
            "POST",
            &format!("{API}/model-versions/set-tag"),
            Some(&json!({ "name": MODEL, "version": "2", "key": "slipway.content_digest", "value": "sha256:00" })),
        )
        .await;
    assert_mlflow_error(
        &forged,
        400,
        "INVALID_PARAMETER_VALUE",
        "written by slipway",
    );

    // Lineage and the content route show the same manifest.
    let lineage = h
        .ok(
            "GET",
            &format!(
                "{NATIVE}/lineage{}",
                qs(&[("name", MODEL), ("version", "2")])
            ),
            None,
        )
        .await;
    assert_eq!(
        lineage["lineage"]["model_version"]["content_digest"],
        digest.as_str()
    );
    // The version's tags come along (where a converted version came from is one of them).
    assert_eq!(
        lineage["lineage"]["model_version"]["tags"]["slipway.content_digest"],
        digest.as_str()
    );
    let files = lineage["lineage"]["model_version"]["files"]
        .as_array()
        .expect("files");
    let names: Vec<&str> = files.iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(names, ["MLmodel", "model.onnx"], "{files:?}");
    let content = h
        .ok(
            "GET",
            &format!(
                "{NATIVE}/model-versions/content{}",
                qs(&[("name", MODEL), ("version", "2")])
            ),
            None,
        )
        .await;
    assert_eq!(content["content_digest"], digest.as_str());

    // Behind the server's back (a shared disk, a bucket): the load refuses the changed file.
    let on_disk = h.dir.path().join(&folder).join("model.onnx");
    std::fs::write(&on_disk, &tampered).expect("tampering with the file");
    h.ok(
        "POST",
        &format!("{NATIVE}/deployments"),
        Some(json!({ "name": "pinned", "model_uri": format!("models:/{MODEL}/2") })),
    )
    .await;
    let plane = &h.deployments.plane;
    plane.sync().await.expect("syncing the data plane");
    let reason = plane.not_ready_reason("pinned").unwrap_or_default();
    assert!(
        reason.contains("changed since the version was registered"),
        "{reason:?}"
    );
    let refused = h
        .invoke("/deployments/pinned/invocations", &[], &example())
        .await;
    assert!(
        refused.status.is_server_error() || refused.status == StatusCode::NOT_FOUND,
        "a changed model must not answer: {}",
        refused.status
    );
}

/// One breast-cancer sample row (see `logreg_breast_cancer.samples.json`: rows 0, 3 and 5 are
/// class 1, the others class 0) as an MLflow request.
fn sample_row(index: usize) -> Value {
    let samples = read_json(fixtures().join("logreg_breast_cancer.samples.json"));
    json!({ "inputs": [samples["inputs"][index].clone()] })
}

/// Waits for the re-scorings spawned by the requests just sent (they run after the answer).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A candidate that answers every request, fast and without error, but predicts the other
/// class on every row. Its label frequencies alone are a modest shift; re-scored on the stable,
/// its rows agree on none and the agreement rule rolls it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inverted_candidate_is_rolled_back_by_the_rescore_agreement() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    h.start_rollout(canary(
        "4",
        json!([{"weight": 50, "duration_ms": 0}]),
        json!({
            "interval_ms": INTERVAL.as_millis() as u64,
            "min_samples": 10,
            "max_p99_ratio": 50.0,
            // Only the row-by-row comparison is judged here.
            "max_prediction_shift": null,
            "rescore_percent": 50,
            "rescore_min_samples": 10,
        }),
    ))
    .await;
    let invocations = format!("/deployments/{NAME}/invocations");
    let deadline = Instant::now() + PATIENCE;
    let mut rounds = 0;
    let ended = loop {
        h.sync().await;
        for i in 0..16 {
            let raw = h.invoke(&invocations, &[], &sample_row(i % 8)).await;
            assert_eq!(raw.status, StatusCode::OK, "{:?}", raw.json());
            if answered_by(&raw).0 == "candidate" {
                // Answered, and wrong: the inverted label.
                let expected = [1, 0, 0, 1, 0, 1, 0, 0][i % 8];
                assert_eq!(raw.json()["predictions"]["label"], json!([1 - expected]));
            }
        }
        settle().await;
        h.deployments.plane.report().await;
        tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
        h.tick().await;
        rounds += 1;
        let deployment = h.deployment().await;
        if state(&deployment) != "progressing" {
            break deployment;
        }
        assert!(Instant::now() < deadline, "{deployment}");
    };
    assert_eq!(state(&ended), "rolled_back", "{ended}");
    assert!(rounds <= 5, "took {rounds} rounds");
    let events = h.events().await;
    let rolled_back = events_of(&events, "rolled_back");
    assert_eq!(rolled_back.len(), 1, "{events:?}");
    assert_eq!(
        rolled_back[0]["detail"]["rule"], "rescore_agreement",
        "{events:?}"
    );
    // The reason names the rule and the numbers it used; the measurements are attached.
    let reason = rolled_back[0]["detail"]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("rescore_agreement: agreement 0.0000 (0 of"),
        "{reason}"
    );
    assert!(reason.contains("binomial p="), "{reason}");
    let measured = rolled_back[0]["detail"]["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .find(|m| m["rule"] == "rescore_agreement")
        .expect("the agreement rule's measurement");
    assert!(
        measured["p_value"].as_f64().expect("p") < 0.01,
        "{measured}"
    );
    h.assert_metric(
        "slipway_serving_rescored_requests_total",
        &[("deployment", NAME), ("outcome", "compared")],
        |n| n >= 5.0,
    )
    .await;
}

/// A blue-green preview of a candidate identical to the stable, tested with forced requests
/// whose rows (class 1 only) differ from the live traffic's (class 0 only). Judged on the same
/// rows on both variants, it passes and is promoted; forced rows against other, live rows
/// would read as a total shift.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identical_candidate_passes_a_preview_tested_on_other_rows() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    h.start_rollout(json!({
        "candidate_uri": format!("models:/{MODEL}/2"),
        "strategy": "blue-green",
        "preview_ms": 300,
        "analysis": {
            "interval_ms": INTERVAL.as_millis() as u64,
            "min_samples": 10,
            "max_p99_ratio": 50.0,
            "rescore_min_samples": 10,
        },
    }))
    .await;
    let invocations = format!("/deployments/{NAME}/invocations");
    let deadline = Instant::now() + PATIENCE;
    let ended = loop {
        h.sync().await;
        for _ in 0..12 {
            let live = h.invoke(&invocations, &[], &sample_row(1)).await;
            assert_eq!(answered_by(&live).0, "stable");
            let forced = h
                .invoke(
                    &invocations,
                    &[("x-slipway-variant", "candidate")],
                    &sample_row(0),
                )
                .await;
            assert_eq!(answered_by(&forced), ("candidate", "2"));
        }
        settle().await;
        h.deployments.plane.report().await;
        tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
        h.tick().await;
        let deployment = h.deployment().await;
        if state(&deployment) != "progressing" {
            break deployment;
        }
        assert!(Instant::now() < deadline, "{deployment}");
    };
    let events = h.events().await;
    assert_eq!(state(&ended), "succeeded", "{ended}\n{events:?}");
    let passed = events_of(&events, "analysis")
        .into_iter()
        .find(|e| e["detail"]["verdict"]["verdict"] == "pass")
        .expect("a passed analysis");
    let shift = passed["detail"]["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .find(|m| m["rule"] == "prediction_shift")
        .expect("the shift rule");
    assert_eq!(shift["basis"], "same_rows", "{shift}");
    assert_eq!(shift["candidate"], 0.0, "{shift}");
    let detail = passed["detail"]["verdict"]["detail"]
        .as_str()
        .expect("detail");
    assert!(detail.contains("prediction_shift: "), "{detail}");
    assert!(detail.contains("rescore_agreement: "), "{detail}");
}

/// Requests an open circuit turns away from the candidate are counted as diverted: not its
/// errors, and no samples, so five failures do not make up a minimum of ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_diverted_by_an_open_circuit_are_not_candidate_errors() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    h.start_rollout(half_canary("3")).await;
    let keys: Vec<String> = (0..60)
        .map(|user| format!("user-{user}"))
        .filter(|key| routes_to_candidate(route_hash(key.as_bytes()), 50))
        .take(20)
        .collect();
    assert_eq!(keys.len(), 20);
    for key in &keys {
        let answer = h.predict(&[("x-slipway-route-key", key)]).await;
        assert_eq!(answered_by(&answer), ("stable", "1"));
    }
    h.deployments.plane.report().await;
    let window = h
        .deployments
        .controller
        .live_window(NAME)
        .expect("a window");
    let candidate = &window.stats.candidate;
    // The default breaker opens after five failures; the other fifteen were diverted.
    assert_eq!(
        (candidate.requests, candidate.errors, candidate.diverted),
        (5, 5, 15),
        "{candidate:?}"
    );
    tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
    h.tick().await;
    let waiting = h.deployment().await;
    assert_eq!(state(&waiting), "progressing", "{waiting}");
    let events = h.events().await;
    let analysis = events_of(&events, "analysis");
    let reason = analysis
        .last()
        .and_then(|a| a["detail"]["verdict"]["reason"].as_str())
        .expect("an inconclusive analysis");
    assert!(reason.contains("error_rate: 5 of 10"), "{reason}");
    assert!(reason.contains("15 more diverted"), "{reason}");
    h.assert_metric(
        "slipway_serving_variant_requests_total",
        &[
            ("deployment", NAME),
            ("variant", "candidate"),
            ("outcome", "circuit_open"),
        ],
        |n| n == 15.0,
    )
    .await;
}

/// The reported case: a single 100 % step. The stable answers no live traffic, so the latency
/// ratio has nothing to divide by; it used to wait for stable samples that never came while
/// the candidate answered thousands of requests. It is not applicable there, and the candidate
/// is judged on its error rate and on its rows re-scored on the stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_full_step_reaches_a_decision() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    h.start_rollout(canary(
        "2",
        json!([{"weight": 100, "duration_ms": 0}]),
        json!({ "interval_ms": 100, "min_samples": 10, "rescore_min_samples": 10 }),
    ))
    .await;
    let ended = h
        .drive(
            30,
            |raw| assert_eq!(answered_by(raw), ("candidate", "2")),
            |d| state(d) != "progressing",
        )
        .await;
    let events = h.events().await;
    assert_eq!(state(&ended), "succeeded", "{ended}\n{events:?}");
    let passed = events_of(&events, "analysis")
        .into_iter()
        .find(|e| e["detail"]["verdict"]["verdict"] == "pass")
        .expect("a passed analysis");
    let ratio = passed["detail"]["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .find(|m| m["rule"] == "latency_p90_ratio" || m["rule"] == "latency_p99_ratio")
        .expect("the latency ratio");
    assert_eq!(ratio["result"], "not_applicable", "{ratio}");
    assert!(
        ratio["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no live traffic at 100 %")),
        "{ratio}"
    );
}

/// A rollout whose stage cannot gather its samples (nobody sends traffic) stops at its
/// progress deadline: rolled back by default, with an event saying what it waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starved_rollout_rolls_back_at_its_progress_deadline() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    let mut body = half_canary("2");
    body["progress_deadline_ms"] = json!(300);
    let started = h.start_rollout(body).await;
    assert_eq!(started["rollout"]["progress_deadline_ms"], 300);
    assert_eq!(started["rollout"]["on_deadline"], "rollback");
    let ended = tick_until_settled(&h).await;
    assert_eq!(state(&ended), "rolled_back", "{ended}");
    let events = h.events().await;
    let rolled_back = events_of(&events, "rolled_back");
    assert_eq!(rolled_back.len(), 1, "{events:?}");
    let reason = rolled_back[0]["detail"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("progress deadline: stage 1 of 1 (50% live)"),
        "{reason}"
    );
    assert!(
        reason.contains("waiting for traffic: error_rate: 0 of 10"),
        "{reason}"
    );
    assert!(
        rolled_back[0]["detail"]["measurements"].is_array(),
        "{events:?}"
    );
    assert_eq!(h.version_tag("2").await.as_deref(), Some("rolled_back"));
    h.sync().await;
    assert_eq!(answered_by(&h.predict(&[]).await), ("stable", "1"));
}

/// ... or paused when the rollout says so: the split holds, and a person decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starved_rollout_set_to_pause_waits_for_a_person_at_its_deadline() {
    let Some(h) = Harness::deployed(Limits::default(), json!({})).await else {
        return;
    };
    let mut body = half_canary("2");
    body["progress_deadline_ms"] = json!(300);
    body["on_deadline"] = json!("pause");
    h.start_rollout(body).await;
    let paused = tick_until_settled(&h).await;
    assert_eq!(state(&paused), "paused", "{paused}");
    assert_eq!(paused["traffic"]["weight"], 50, "{paused}");
    let events = h.events().await;
    let pause = events_of(&events, "paused");
    assert_eq!(pause.len(), 1, "{events:?}");
    assert!(
        pause[0]["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("progress deadline")),
        "{events:?}"
    );
    assert!(
        pause[0]["detail"]["next"]
            .as_str()
            .is_some_and(|n| n.contains(&format!("slipway deploy promote {NAME}"))),
        "{events:?}"
    );
    // Paused stays paused: more ticks decide nothing on their own.
    for _ in 0..3 {
        tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
        h.tick().await;
    }
    assert_eq!(state(&h.deployment().await), "paused");
    let promoted = h
        .ok(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/promote"),
            Some(json!({})),
        )
        .await;
    assert_eq!(state(&promoted["deployment"]), "succeeded", "{promoted}");

    // A deadline no analysis could meet, or an unknown action, is refused with what to fix.
    let mut too_short = half_canary("1");
    too_short["progress_deadline_ms"] = json!(50);
    let refused = h
        .send_json(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/rollout"),
            Some(&too_short),
        )
        .await;
    assert_mlflow_error(
        &refused,
        400,
        "INVALID_PARAMETER_VALUE",
        "at least the analysis interval",
    );
    let mut unknown = half_canary("1");
    unknown["on_deadline"] = json!("wait");
    let refused = h
        .send_json(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/rollout"),
            Some(&unknown),
        )
        .await;
    assert_mlflow_error(
        &refused,
        400,
        "INVALID_PARAMETER_VALUE",
        "use rollback or pause",
    );
}

/// Ticks, an analysis interval apart and with no traffic, until the rollout stops progressing.
async fn tick_until_settled(h: &Harness) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        tokio::time::sleep(INTERVAL + Duration::from_millis(20)).await;
        h.deployments.plane.report().await;
        h.tick().await;
        let deployment = h.deployment().await;
        if state(&deployment) != "progressing" {
            return deployment;
        }
        assert!(Instant::now() < deadline, "{deployment}");
    }
}

on_both_backends!(case_monitoring_windows: monitoring_windows_sqlite, monitoring_windows_postgres);

/// A reference for the breast-cancer model: its 30 features, numerical, and a class.
fn monitoring_reference(rows: usize, shift: f32) -> (Schema, Summary) {
    let schema = Schema {
        features: (0..30)
            .map(|i| Feature {
                name: format!("f{i}"),
                column_type: ColumnType::Numerical,
            })
            .collect(),
        prediction: Some(Feature {
            name: "prediction".into(),
            column_type: ColumnType::Categorical,
        }),
    };
    let summary = monitoring_summary(&schema, rows, shift, 0, REFERENCE_CONFIG, 1);
    (schema, summary)
}

/// A summary of `rows` rows ending at `end_ms`: the fixture's rows with noise, plus `shift`.
fn monitoring_summary(
    schema: &Schema,
    rows: usize,
    shift: f32,
    end_ms: i64,
    config: slipway_monitor::ProfileConfig,
    seed: u64,
) -> Summary {
    let base = read_json(fixtures().join("logreg_breast_cancer.samples.json"))["inputs"].clone();
    let base: Vec<Vec<f32>> = serde_json::from_value(base).expect("rows");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut summary = Summary::new(schema, config, end_ms);
    for i in 0..rows {
        let row: Vec<f32> = base[i % base.len()]
            .iter()
            .map(|v| v * (0.9 + 0.2 * rng.f32()) + shift * v.abs().max(1.0))
            .collect();
        summary.push_row(&row);
        summary.push_prediction(RawValue::Int(i64::from(rng.bool())));
    }
    summary.touch(end_ms);
    summary
}

async fn case_monitoring_windows(h: &Harness) {
    h.deploy(json!({"monitor_window_ms": 60_000})).await;
    let (schema, reference) = monitoring_reference(2_000, 0.0);
    // Summaries are refused until the version has a reference.
    // What the monitor reads of a deployment: its name, model and window settings.
    let spec = slipway_core::deployment::Deployment {
        name: NAME.into(),
        model_name: MODEL.into(),
        alias: Some("production".into()),
        stable_version: "1".into(),
        previous_version: None,
        settings: slipway_core::deployment::ServingSettings {
            monitor: slipway_core::monitoring::MonitorSettings {
                window_ms: 60_000,
                window_rows: 0,
            },
            ..Default::default()
        },
        rollout: None,
        revision: 1,
        created_ms: 0,
        created_by: "test".into(),
        updated_ms: 0,
    };
    let early = monitoring_summary(&schema, 10, 0.0, 1_000, CHUNK_CONFIG, 2);
    let refused = h.deployments.monitor.record(&spec, 1, early, "test").await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no monitoring reference")),
        "{refused:?}"
    );
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
    let record = |rows: usize, shift: f32, end_ms: i64, seed: u64| {
        let summary = monitoring_summary(&schema, rows, shift, end_ms, CHUNK_CONFIG, seed);
        let spec = spec.clone();
        async move {
            h.deployments
                .monitor
                .record(&spec, 1, summary, "test")
                .await
                .expect("recorded")
        }
    };
    // Time windows of a minute, aligned: two summaries in [0, 60 s), then one in [60 s, 120 s)
    // closes the first; a summary from before the open window is late.
    record(100, 0.0, 10_000, 3).await;
    record(150, 0.0, 30_000, 4).await;
    record(200, 0.5, 70_000, 5).await;
    record(50, 0.0, 50_000, 6).await;
    let status = h
        .ok(
            "GET",
            &format!("{NATIVE}/deployments/{NAME}/monitoring"),
            None,
        )
        .await;
    let windows = status["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 1, "{status}");
    assert_eq!(
        (
            windows[0]["start_ms"].as_i64(),
            windows[0]["end_ms"].as_i64(),
            windows[0]["rows"].as_u64()
        ),
        (Some(0), Some(30_000), Some(250)),
        "the window ends at its last row"
    );
    let first = &windows[0]["report"]["report"]["features"]["dataset"];
    assert_eq!(first["dataset_drift"], false, "{first}");
    assert_eq!(windows[0]["report"]["sources"], json!({"test": 250}));
    assert_eq!(
        h.deployments
            .monitor
            .counters
            .late
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The tick closes the open window once its end and the grace have passed.
    let live = [(NAME.to_owned(), 1)];
    h.deployments.monitor.close_due(120_000, &live).await;
    assert_eq!(
        h.ok(
            "GET",
            &format!("{NATIVE}/deployments/{NAME}/monitoring"),
            None
        )
        .await["windows"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "not before the grace"
    );
    h.deployments.monitor.close_due(126_000, &live).await;
    let status = h
        .ok(
            "GET",
            &format!("{NATIVE}/deployments/{NAME}/monitoring"),
            None,
        )
        .await;
    let shifted = &status["windows"][0];
    assert_eq!(shifted["rows"], 200);
    assert_eq!(
        shifted["report"]["report"]["features"]["dataset"]["dataset_drift"], true,
        "{shifted}"
    );
    // On /metrics, the latest window of the deployment.
    let metrics = h.send_json("GET", "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert_eq!(
        metric(
            &text,
            "slipway_monitor_dataset_drift",
            &[("deployment", NAME), ("version", "1")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "slipway_monitor_windows_total 2"),
        "{text}"
    );

    // Row windows: 120 rows close one at once, whatever its time.
    let mut by_rows = spec.clone();
    by_rows.settings.monitor.window_rows = 120;
    let summary = monitoring_summary(&schema, 60, 0.0, 200_000, CHUNK_CONFIG, 7);
    h.deployments
        .monitor
        .record(&by_rows, 1, summary, "a")
        .await
        .expect("recorded");
    let summary = monitoring_summary(&schema, 60, 0.0, 201_000, CHUNK_CONFIG, 8);
    h.deployments
        .monitor
        .record(&by_rows, 1, summary, "b")
        .await
        .expect("recorded");
    let status = h
        .ok(
            "GET",
            &format!("{NATIVE}/deployments/{NAME}/monitoring?limit=1"),
            None,
        )
        .await;
    assert_eq!(status["windows"][0]["rows"], 120, "{status}");
    assert_eq!(
        status["windows"][0]["report"]["sources"],
        json!({"a": 60, "b": 60})
    );
    assert!(
        status["next_before"].is_i64(),
        "more windows behind: {status}"
    );

    // A summary of another shape, or from a replica whose limits exceed the server's, is refused.
    let mut narrow = monitoring_summary(&schema, 10, 0.0, 210_000, CHUNK_CONFIG, 9);
    narrow.features.pop();
    let raw = h
        .send_json(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/monitoring/summaries"),
            Some(&json!({"version": "1", "summary": narrow})),
        )
        .await;
    assert_mlflow_error(&raw, 400, "INVALID_PARAMETER_VALUE", "feature columns");
    let raw = h
        .send_json(
            "POST",
            &format!("{NATIVE}/deployments/{NAME}/monitoring/summaries"),
            Some(&json!({"version": "7", "summary": narrow})),
        )
        .await;
    assert_mlflow_error(&raw, 400, "INVALID_PARAMETER_VALUE", "does not serve");
}

on_both_backends!(case_alert_rules_fire_resolve_and_survive_a_restart: alert_rules_fire_resolve_and_survive_a_restart_sqlite, alert_rules_fire_resolve_and_survive_a_restart_postgres);

/// Keeps what the alerter hands to receivers.
#[derive(Default)]
struct RecordingSink(std::sync::Mutex<Vec<slipway_core::alerting::Notification>>);

#[async_trait::async_trait]
impl slipway_core::ports::AlertSink for RecordingSink {
    async fn deliver(
        &self,
        notification: &slipway_core::alerting::Notification,
    ) -> Result<(), String> {
        self.0.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

impl RecordingSink {
    /// The notifications so far, once delivery tasks had a moment to run.
    async fn seen(&self) -> Vec<slipway_core::alerting::Notification> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.lock().unwrap().clone()
    }
}

fn traffic(requests: u64, errors: u64) -> slipway_core::deployment::ServingStats {
    let mut stats = slipway_core::deployment::ServingStats::default();
    for i in 0..requests {
        stats.record(if i < errors { 503 } else { 200 }, 2_000);
    }
    stats
}

async fn case_alert_rules_fire_resolve_and_survive_a_restart(h: &Harness) {
    use slipway_app::alerting::{Alerter, ServingLog};
    use slipway_core::alerting::AlertState;
    h.deploy(json!({})).await;
    // A rules file with a mistake is refused whole, saying where.
    let refused = h
        .send_json(
            "PUT",
            &format!("{NATIVE}/alerts/config"),
            Some(&json!({"config": {"rules": [{"alert": "A", "expr": "error_rate >> 1"}]}})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.json()
    );
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("error_rate >> 1")
    );
    let config = json!({
        "receivers": [
            {"name": "hook", "webhook": {"url": "http://127.0.0.1:9/hook"}},
            {"name": "am", "alertmanager": {"url": "http://127.0.0.1:9"}}
        ],
        "rules": [{
            "alert": "HighErrorRate", "deployment": NAME, "expr": "error_rate > 0.1",
            "window": "1m", "for": "30s", "min_samples": 10, "severity": "critical",
            "summary": "{{ deployment }} answers {{ value }} of requests with 5xx",
            "runbook_url": "https://runbooks.example/errors", "receivers": ["hook"]
        }]
    });
    let applied = h
        .ok(
            "PUT",
            &format!("{NATIVE}/alerts/config"),
            Some(json!({"config": config})),
        )
        .await;
    assert_eq!(applied["revision"], 1);
    assert_eq!(
        applied["diff"]["rules_added"],
        json!([format!("HighErrorRate@{NAME}")])
    );
    // Applying a stale revision is refused; the same file again changes nothing.
    let stale = h
        .send_json(
            "PUT",
            &format!("{NATIVE}/alerts/config"),
            Some(&json!({"config": config, "expected_revision": 0})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST, "{}", stale.json());
    for revision in [i64::MAX, -1] {
        let odd = h
            .send_json(
                "PUT",
                &format!("{NATIVE}/alerts/config"),
                Some(&json!({"config": {}, "expected_revision": revision})),
            )
            .await;
        assert_eq!(
            odd.status,
            StatusCode::BAD_REQUEST,
            "{revision}: {}",
            odd.json()
        );
    }
    let silence_forever = h
        .send_json(
            "POST",
            &format!("{NATIVE}/alerts/silences"),
            Some(&json!({"matchers": ["a=b"], "starts_ms": i64::MIN, "ends_ms": i64::MAX, "comment": "c"})),
        )
        .await;
    assert_eq!(
        silence_forever.status,
        StatusCode::BAD_REQUEST,
        "{}",
        silence_forever.json()
    );
    let again = h
        .ok(
            "PUT",
            &format!("{NATIVE}/alerts/config"),
            Some(json!({"config": config, "dry_run": true})),
        )
        .await;
    assert_eq!(again["changed"], false);
    let rules = h.ok("GET", &format!("{NATIVE}/alerts/rules"), None).await;
    assert_eq!(
        rules["receivers"],
        json!([{"name": "hook", "kind": "webhook"}, {"name": "am", "kind": "alertmanager"}])
    );

    let start = slipway_app::now_ms();
    let t0 = start + 120_000;
    let sink = Arc::new(RecordingSink::default());
    let alerter = Alerter::new(&h.app, Arc::new(ServingLog::new(start)));
    alerter.set_sink(sink.clone(), "http://slipway.example");
    alerter
        .serving()
        .record(NAME, &traffic(100, 30), t0 - 5_000);
    let mut transitions = alerter.subscribe();

    alerter.evaluate(t0).await.unwrap();
    let active = alerter.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].state, AlertState::Pending, "for 30s first");
    assert_eq!(active[0].value, Some(0.3));
    assert!(
        sink.seen().await.is_empty(),
        "nobody is told of a pending alert"
    );

    alerter.evaluate(t0 + 31_000).await.unwrap();
    let firing = alerter.active();
    assert_eq!(firing[0].state, AlertState::Firing);
    assert_eq!(
        firing[0].annotations["summary"],
        format!("{NAME} answers 0.3000 of requests with 5xx")
    );
    let seen = sink.seen().await;
    assert_eq!(seen.len(), 1, "only the rule's receiver hears it");
    assert_eq!(seen[0].receiver.name, "hook");
    assert_eq!(seen[0].status, AlertState::Firing);
    assert_eq!(seen[0].alerts[0].labels["severity"], "critical");
    assert_eq!(seen[0].external_url, "http://slipway.example");
    // What acts on alerts (retraining) hears the transition, with the stored alert's id.
    let heard = transitions.try_recv().expect("the firing was published");
    assert_eq!(heard.transition, slipway_core::alerting::Transition::Fired);
    assert!(heard.alert.id > 0);
    // Still firing: deduplicated, nobody is told twice within the repeat interval.
    alerter.evaluate(t0 + 40_000).await.unwrap();
    assert_eq!(sink.seen().await.len(), 1);

    // A restarted server picks the firing alert up from the store: no second firing.
    let restarted = Alerter::new(&h.app, Arc::new(ServingLog::new(start)));
    restarted.set_sink(sink.clone(), "http://slipway.example");
    restarted
        .serving()
        .record(NAME, &traffic(100, 30), t0 + 40_000);
    restarted.evaluate(t0 + 45_000).await.unwrap();
    assert_eq!(restarted.active()[0].state, AlertState::Firing);
    assert_eq!(sink.seen().await.len(), 1);
    // The errors age out of the window: no data, and the alert resolves.
    restarted.evaluate(t0 + 200_000).await.unwrap();
    assert!(restarted.active().is_empty());
    let seen = sink.seen().await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].status, AlertState::Resolved);
    assert_eq!(seen[1].alerts[0].fingerprint, seen[0].alerts[0].fingerprint);

    let listed = h
        .ok("GET", &format!("{NATIVE}/alerts?state=resolved"), None)
        .await;
    assert_eq!(listed["resolved"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        listed["resolved"][0]["labels"]["alertname"],
        "HighErrorRate"
    );
    let audit = h
        .ok(
            "GET",
            &format!("{NATIVE}/audit?resource=deployment:{NAME}"),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("alerts."))
        .collect();
    assert_eq!(
        actions,
        ["alerts.firing", "alerts.resolved"],
        "one of each, in order"
    );

    // Silences: a matcher of != alone is refused; one is created, listed and expired.
    let loose = h
        .send_json(
            "POST",
            &format!("{NATIVE}/alerts/silences"),
            Some(&json!({"matchers": ["deployment!=x"], "ends_ms": t0, "comment": "c"})),
        )
        .await;
    assert_eq!(loose.status, StatusCode::BAD_REQUEST, "{}", loose.json());
    let created = h
        .ok(
            "POST",
            &format!("{NATIVE}/alerts/silences"),
            Some(json!({"matchers": ["alertname=HighErrorRate"], "ends_ms": t0, "comment": "deploying a fix"})),
        )
        .await;
    let id = created["silence"]["id"].as_i64().unwrap();
    let listed = h
        .ok("GET", &format!("{NATIVE}/alerts/silences"), None)
        .await;
    assert_eq!(
        listed["silences"][0]["matchers"],
        json!(["alertname=HighErrorRate"])
    );
    h.ok("DELETE", &format!("{NATIVE}/alerts/silences/{id}"), None)
        .await;
    let listed = h
        .ok("GET", &format!("{NATIVE}/alerts/silences"), None)
        .await;
    assert_eq!(listed["silences"], json!([]));

    // A silenced alert still fires and is recorded; it is only held back.
    h.ok(
        "POST",
        &format!("{NATIVE}/alerts/silences"),
        Some(json!({"matchers": ["alertname=HighErrorRate"], "ends_ms": t0 + 3_600_000, "comment": "load test"})),
    )
    .await;
    let quiet = Arc::new(RecordingSink::default());
    let third = Alerter::new(&h.app, Arc::new(ServingLog::new(start)));
    third.set_sink(quiet.clone(), "http://slipway.example");
    third.serving().record(NAME, &traffic(50, 50), t0 + 300_000);
    third.evaluate(t0 + 301_000).await.unwrap();
    third.evaluate(t0 + 340_000).await.unwrap();
    assert_eq!(third.active()[0].state, AlertState::Firing);
    assert!(quiet.seen().await.is_empty());
    assert!(
        third
            .counters
            .notifications_silenced
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // Removing the rule resolves its alert rather than leaving it firing forever.
    h.ok(
        "PUT",
        &format!("{NATIVE}/alerts/config"),
        Some(json!({"config": {"receivers": config["receivers"]}})),
    )
    .await;
    third.evaluate(t0 + 345_000).await.unwrap();
    assert!(third.active().is_empty());
    let firing = h
        .ok("GET", &format!("{NATIVE}/alerts?state=firing"), None)
        .await;
    assert_eq!(firing["alerts"], json!([]));
}

on_both_backends!(case_triggers_fire_on_schedules_and_alerts_and_check_workers: triggers_fire_on_schedules_and_alerts_and_check_workers_sqlite, triggers_fire_on_schedules_and_alerts_and_check_workers_postgres);

async fn case_triggers_fire_on_schedules_and_alerts_and_check_workers(h: &Harness) {
    use slipway_app::alerting::{Alerter, ServingLog};
    use slipway_app::retrain::Retrainer;
    h.deploy(json!({})).await;
    let trigger = json!({
        "name": "nightly", "model": MODEL, "deployment": NAME,
        "pipeline": "churn/pipeline.yml", "model_path": "model",
        "gate": {"label": "y"},
        "on": {"schedule": "* * * * *", "alerts": ["HighErrorRate"]},
        "cooldown": "1h", "max_per_day": 2,
    });
    let applied = h
        .ok(
            "PUT",
            &format!("{NATIVE}/triggers"),
            Some(json!({"config": {"triggers": [trigger]}})),
        )
        .await;
    assert_eq!(applied["diff"]["added"], json!(["nightly"]));
    // A canary that is not a rollout request is refused now, not when the trigger fires.
    let mut bad = trigger.clone();
    bad["rollout"] = json!({"steps": "fast"});
    let refused = h
        .send_json(
            "PUT",
            &format!("{NATIVE}/triggers"),
            Some(&json!({"config": {"triggers": [bad]}})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.json()
    );

    // A schedule fires at its next minute, once.
    let retrainer = Retrainer::new(&h.app);
    let t0 = slipway_app::now_ms();
    retrainer.tick_at(t0).await.unwrap();
    let none = h.ok("GET", &format!("{NATIVE}/retrains"), None).await;
    assert_eq!(none["retrains"], json!([]), "a schedule first seen waits");
    // Ticks a second and two past the next minute: that minute is due once, and the one
    // after it is not yet.
    let minute = slipway_core::retrain::next_fire(
        &slipway_core::retrain::parse_schedule("* * * * *").unwrap(),
        t0,
    )
    .unwrap();
    retrainer.tick_at(minute + 1_000).await.unwrap();
    retrainer.tick_at(minute + 2_000).await.unwrap();
    let fired = h.ok("GET", &format!("{NATIVE}/retrains"), None).await;
    let fired = fired["retrains"].as_array().unwrap().clone();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["state"], "queued");
    assert_eq!(fired[0]["cause"]["kind"], "schedule");
    assert_eq!(fired[0]["requested_by"], "slipway-triggers");

    // Leadership moved: the new leader's retrainer counts from before it led. A due time the
    // old leader fired already is not fired again...
    let successor = Retrainer::new(&h.app);
    successor.reset(Some(t0));
    successor.tick_at(minute + 3_000).await.unwrap();
    successor.tick_at(minute + 4_000).await.unwrap();
    let again = h.ok("GET", &format!("{NATIVE}/retrains"), None).await;
    assert_eq!(again["retrains"].as_array().unwrap().len(), 1, "{again}");
    // ...and one that came due while no server led still fires (skipped here: the model has
    // a retrain under way), where a schedule first seen now would wait for the next minute.
    let late = Retrainer::new(&h.app);
    late.reset(Some(minute + 1));
    late.tick_at(minute + 61_000).await.unwrap();
    late.tick_at(minute + 62_000).await.unwrap();
    let caught = h.ok("GET", &format!("{NATIVE}/retrains"), None).await;
    let caught = caught["retrains"].as_array().unwrap().clone();
    assert_eq!(caught.len(), 2, "{caught:?}");
    assert_eq!(caught[0]["cause"]["kind"], "schedule");
    assert_eq!(caught[0]["cause"]["due_ms"], json!(minute + 60_000));
    assert_eq!(caught[0]["state"], "skipped");

    // An alert the trigger listens for fires it too: skipped, the model has a retrain already.
    h.ok(
        "PUT",
        &format!("{NATIVE}/alerts/config"),
        Some(json!({"config": {"rules": [{
            "alert": "HighErrorRate", "deployment": NAME, "expr": "error_rate > 0.1",
            "window": "1m", "min_samples": 10,
        }]}})),
    )
    .await;
    let start = slipway_app::now_ms();
    let alerter = Alerter::new(&h.app, Arc::new(ServingLog::new(start)));
    // A window the log watched whole: after its start.
    alerter
        .serving()
        .record(NAME, &traffic(100, 30), start + 115_000);
    let mut transitions = alerter.subscribe();
    alerter.evaluate(start + 120_000).await.unwrap();
    let heard = transitions.try_recv().expect("the firing was published");
    retrainer.on_alert(&heard).await.unwrap();
    let all = h.ok("GET", &format!("{NATIVE}/retrains"), None).await;
    let skipped = &all["retrains"][0];
    assert_eq!(skipped["state"], "skipped");
    assert_eq!(skipped["cause"]["kind"], "alert");
    assert_eq!(skipped["cause"]["alert"], "HighErrorRate");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("one retrain at a time")
    );

    // A worker claims it; what it reports is checked against the server's records.
    let claimed = h
        .ok("POST", &format!("{NATIVE}/retrains/claim"), None)
        .await;
    let id = claimed["retrain"]["id"].as_i64().unwrap();
    assert_eq!(claimed["trigger"]["name"], "nightly");
    let progress = format!("{NATIVE}/retrains/{id}/progress");
    let no_version = h
        .send_json("POST", &progress, Some(&json!({"version": 99})))
        .await;
    assert_eq!(
        no_version.status,
        StatusCode::NOT_FOUND,
        "{}",
        no_version.json()
    );
    let no_gate = h
        .send_json(
            "POST",
            &progress,
            Some(&json!({"version": 1, "gate_id": 5})),
        )
        .await;
    assert_eq!(no_gate.status, StatusCode::NOT_FOUND, "{}", no_gate.json());
    let unproven = h
        .send_json(
            "POST",
            &progress,
            Some(&json!({"state": "promoted", "version": 1})),
        )
        .await;
    assert_eq!(
        unproven.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unproven.json()
    );
    let backwards = h
        .send_json("POST", &progress, Some(&json!({"state": "queued"})))
        .await;
    assert_eq!(
        backwards.status,
        StatusCode::BAD_REQUEST,
        "{}",
        backwards.json()
    );
    let failed = h
        .ok(
            "POST",
            &progress,
            Some(json!({"state": "failed", "reason": "the pipeline broke"})),
        )
        .await;
    assert_eq!(failed["retrain"]["state"], "failed");
    let odd_id = h
        .send_json("GET", &format!("{NATIVE}/retrains/x1"), None)
        .await;
    assert_eq!(odd_id.status, StatusCode::BAD_REQUEST);
    // Manual firing: the cooldown since the schedule's start refuses it.
    let manual = h
        .ok(
            "POST",
            &format!("{NATIVE}/triggers/nightly/fire"),
            Some(json!({"reason": "test"})),
        )
        .await;
    assert_eq!(manual["retrain"]["state"], "skipped");
    assert!(
        manual["retrain"]["reason"]
            .as_str()
            .unwrap()
            .contains("cooldown")
    );
}

/// With a master key the log is sealed in the store and opens through the app; past the
/// deployment's retention it is deleted in an audited batch; without the key it is refused
/// by name and nothing is written in clear.
async fn case_sealed_log_and_retention(h: &Harness) {
    use slipway_app::sealing::{MasterKey, Sealing};
    use slipway_core::deployment::{PredictionRecord, Variant};

    h.deploy(json!({ "log_sample": 1.0, "prediction_retention_ms": 60_000 }))
        .await;
    let store = h.app.store().clone();
    let master = MasterKey::parse(&MasterKey::generate().unwrap()).unwrap();
    let sealing = Sealing::open(store.as_ref(), Some(master)).await.unwrap();
    let app = h.app.clone().with_sealing(Arc::new(sealing));
    let now = slipway_app::now_ms();
    let record = |request: &str, age_ms: i64| PredictionRecord {
        id: 0,
        deployment: NAME.into(),
        request_id: request.into(),
        time_ms: now - age_ms,
        variant: Variant::Stable,
        model_version: "1".into(),
        inputs: json!([[1.5, 2.5]]),
        outputs: json!({ "label": [1] }),
        latency_us: 10,
    };
    // A replica whose clock runs an hour ahead logs first: it must not hold up the rest.
    app.append_predictions(vec![
        record("ahead", -3_600_000),
        record("old-1", 120_000),
        record("old-2", 90_000),
        record("new", 1_000),
    ])
    .await
    .unwrap();
    // A label that never met a logged prediction ages out too.
    store
        .put_labels(NAME, vec![("unlogged".into(), json!(1))], now - 120_000)
        .await
        .unwrap();
    let stored = store.read_predictions(NAME, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 4);
    for record in &stored {
        assert!(record.inputs.get("$sealed").is_some(), "{record:?}");
        assert!(record.outputs.get("$sealed").is_some(), "{record:?}");
    }
    let opened = app.read_predictions(NAME, 0, 10).await.unwrap();
    assert!(
        opened
            .iter()
            .all(|r| r.inputs == json!([[1.5, 2.5]]) && r.outputs == json!({ "label": [1] }))
    );

    assert_eq!(app.expire_predictions().await.unwrap(), 2);
    let left = app.read_predictions(NAME, 0, 10).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|r| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["ahead", "new"]
    );
    // Nothing more is due, and a sweep with nothing to do leaves no entry.
    assert_eq!(app.expire_predictions().await.unwrap(), 0);
    let audit = app
        .audit_log(
            &slipway_core::ports::AuditFilter::default(),
            Some(10_000),
            None,
        )
        .await
        .unwrap()
        .entries;
    let expired: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "deployments.predictions.expire")
        .collect();
    assert_eq!(expired.len(), 1, "{audit:?}");
    assert!(
        expired[0].summary.contains("\"predictions\":2"),
        "{expired:?}"
    );
    assert!(expired[0].summary.contains("\"labels\":1"), "{expired:?}");
    assert!(audit.iter().any(|e| e.action == "keys.data_key.create"));
    assert!(
        audit
            .iter()
            .any(|e| e.action == "deployments.predictions.read")
    );

    let locked = h
        .app
        .clone()
        .with_sealing(Arc::new(Sealing::open(store.as_ref(), None).await.unwrap()));
    assert!(locked.sealing().locked());
    let refused = locked.read_predictions(NAME, 0, 10).await.unwrap_err();
    assert!(
        refused.to_string().contains("--encryption-key"),
        "{refused}"
    );
    locked
        .append_predictions(vec![record("dropped", 0)])
        .await
        .unwrap();
    assert_eq!(store.read_predictions(NAME, 0, 10).await.unwrap().len(), 2);
}

on_both_backends!(case_slo_budget_and_burn_alerts: slo_budget_and_burn_alerts_sqlite, slo_budget_and_burn_alerts_postgres);

/// A deployment's SLO is measured on the serving minutes the evaluator stores: a burst of
/// errors spends the budget, the fast-burn rule fires on `slo_burn(availability)`, and the
/// status says how much is left.
async fn case_slo_budget_and_burn_alerts(h: &Harness) {
    use slipway_app::alerting::{Alerter, ServingLog};
    use slipway_core::alerting::AlertState;
    // A latency threshold between the histogram's bounds could not be counted exactly.
    let refused = h
        .send_json(
            "POST",
            &format!("{NATIVE}/deployments"),
            Some(&json!({
                "name": NAME,
                "model_uri": format!("models:/{MODEL}@production"),
                "settings": {"slo": {"availability": 0.999,
                             "latency": {"threshold_ms": 300.0, "objective": 0.99}}},
            })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("200, 500"),
        "{}",
        refused.json()
    );
    h.deploy(json!({"slo": {"availability": 0.999,
                            "latency": {"threshold_ms": 200.0, "objective": 0.99}}}))
        .await;
    h.ok(
        "PUT",
        &format!("{NATIVE}/alerts/config"),
        Some(json!({"config": {"rules": [{
            "alert": "SLOFastBurn", "deployment": NAME,
            "expr": "slo_burn(availability) > 14.4", "window": "1h", "min_samples": 10,
        }]}})),
    )
    .await;
    let start = slipway_app::now_ms();
    let alerter = Alerter::new(&h.app, Arc::new(ServingLog::new(start)));
    alerter.serving().record(NAME, &traffic(1_000, 0), start);
    alerter.evaluate(start + 1_000).await.unwrap();
    assert!(alerter.active().is_empty(), "{:?}", alerter.active());
    let status = h
        .ok("GET", &format!("{NATIVE}/deployments/{NAME}/slo"), None)
        .await;
    let availability = &status["objectives"][0];
    assert_eq!(availability["kind"], "availability");
    assert_eq!(availability["requests"], 1_000);
    assert_eq!(availability["budget_remaining"], 1.0);

    // A burst: half of 200 requests fail. Over the last hour and the last 5 minutes the
    // budget burns at (100 / 1,200) / 0.001 = 83 times the sustainable rate.
    alerter
        .serving()
        .record(NAME, &traffic(200, 100), start + 2_000);
    alerter.evaluate(start + 3_000).await.unwrap();
    let active = alerter.active();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].name(), "SLOFastBurn");
    assert_eq!(active[0].state, AlertState::Firing);
    let burn = active[0].value.unwrap();
    assert!((burn - 100.0 / 1_200.0 / 0.001).abs() < 1e-6, "{burn}");

    let status = h
        .ok("GET", &format!("{NATIVE}/deployments/{NAME}/slo"), None)
        .await;
    let availability = &status["objectives"][0];
    assert_eq!(availability["requests"], 1_200);
    assert_eq!(availability["bad"], 100);
    let left = availability["budget_remaining"].as_f64().unwrap();
    assert!((left - (1.0 - 100.0 / 1.2)).abs() < 1e-6, "{left}");
    let fast = &availability["burn_rates"][0];
    assert_eq!(
        (fast["window"].as_str(), fast["burning"].as_bool()),
        (Some("1h"), Some(true))
    );
    // Every request took 2 ms: the latency objective is untouched.
    let latency = &status["objectives"][1];
    assert_eq!(
        (latency["kind"].as_str(), latency["bad"].as_u64()),
        (Some("latency"), Some(0))
    );
    assert_eq!(latency["threshold_ms"], 200.0);
}

on_both_backends!(case_state_is_exported_as_documents: state_is_exported_as_documents_sqlite, state_is_exported_as_documents_postgres);

/// Every kind of object comes out as a document in the shape its API takes, ordered the way
/// they depend on each other.
async fn case_state_is_exported_as_documents(h: &Harness) {
    h.deploy(
        json!({"log_sample": 0.5, "prediction_retention_ms": 86_400_000,
                    "slo": {"availability": 0.999}}),
    )
    .await;
    h.ok(
        "PUT",
        &format!("{NATIVE}/policies/{MODEL}"),
        Some(json!({"protected_aliases": ["production"], "required_approvals": 2})),
    )
    .await;
    h.ok(
        "PUT",
        &format!("{NATIVE}/alerts/config"),
        Some(json!({"config": {
            "receivers": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
            "rules": [
                {"alert": "Errors", "deployment": NAME, "expr": "error_rate > 0.1", "window": "1m"},
                {"alert": "Errors", "deployment": "other", "expr": "error_rate > 0.5", "window": "1m"},
                {"alert": "FastBurn", "deployment": NAME, "expr": "slo_burn(availability) > 14.4",
                 "window": "1h"},
            ],
        }})),
    )
    .await;
    h.app
        .create_user("alice", slipway_core::auth::Role::Viewer, None)
        .await
        .unwrap();
    h.ok(
        "PUT",
        &format!("{NATIVE}/permissions"),
        Some(json!({"user": "alice", "resource_type": "registered_model",
                    "resource_id": MODEL, "permission": "EDIT"})),
    )
    .await;

    let state = h.ok("GET", &format!("{NATIVE}/state"), None).await;
    let documents = state["documents"].as_array().unwrap();
    let keys: Vec<String> = documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            format!("Policy/{MODEL}"),
            format!("Deployment/{NAME}"),
            format!("SLO/{NAME}"),
            "AlertReceiver/oncall".to_owned(),
            format!("AlertRule/Errors-{NAME}"),
            "AlertRule/Errors-other".to_owned(),
            "AlertRule/FastBurn".to_owned(),
            format!("Permission/alice-registered_model-{MODEL}"),
        ]
    );
    assert!(documents.iter().all(|d| d["apiVersion"] == "slipway/v1"));
    let by_key = |key: &str| &documents[keys.iter().position(|k| k == key).unwrap()]["spec"];
    let deployment = by_key(&format!("Deployment/{NAME}"));
    assert_eq!(deployment["model"], format!("models:/{MODEL}@production"));
    assert_eq!(deployment["settings"]["log_sample"], 0.5);
    assert_eq!(
        deployment["settings"]["prediction_retention_ms"],
        86_400_000
    );
    assert_eq!(by_key(&format!("SLO/{NAME}"))["availability"], 0.999);
    let policy = by_key(&format!("Policy/{MODEL}"));
    assert_eq!(policy["protected_aliases"], json!(["production"]));
    assert_eq!(policy["required_approvals"], 2);
    assert_eq!(
        by_key("AlertReceiver/oncall"),
        &json!({"webhook": {"url": "http://127.0.0.1:9/hook"}})
    );
    assert_eq!(
        by_key("AlertRule/FastBurn")["expr"],
        "slo_burn(availability) > 14.4"
    );
    assert_eq!(
        by_key(&format!("Permission/alice-registered_model-{MODEL}")),
        &json!({"user": "alice", "registered_model": MODEL, "permission": "EDIT"})
    );
}

on_both_backends!(case_deployments_and_slos_are_applied_from_documents: deployments_and_slos_are_applied_from_documents_sqlite, deployments_and_slos_are_applied_from_documents_postgres);

/// `apply` creates a deployment with its SLO, changes and removes the SLO, refuses to change
/// the model (a rollout's job) and leaves a deployment it no longer names in place.
async fn case_deployments_and_slos_are_applied_from_documents(h: &Harness) {
    let deployment = |log_sample: f64| {
        json!({"apiVersion": "slipway/v1", "kind": "Deployment", "metadata": {"name": NAME},
               "spec": {"model": format!("models:/{MODEL}@production"),
                        "settings": {"log_sample": log_sample}}})
    };
    let slo = |availability: f64| {
        json!({"apiVersion": "slipway/v1", "kind": "SLO", "metadata": {"name": NAME},
               "spec": {"availability": availability}})
    };
    let apply = |documents: Vec<Value>| async move {
        h.send_json(
            "POST",
            &format!("{NATIVE}/state/apply"),
            Some(&json!({ "documents": documents })),
        )
        .await
    };
    let actions = |answer: &Raw| -> Vec<String> {
        answer.json()["plan"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["action"].as_str().unwrap(),
                    c["key"].as_str().unwrap()
                )
            })
            .collect()
    };
    let created = apply(vec![deployment(0.5), slo(0.999)]).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json());
    assert_eq!(
        actions(&created),
        [
            format!("create Deployment/{NAME}"),
            format!("create SLO/{NAME}")
        ]
    );
    let live = h.app.get_deployment(NAME).await.unwrap();
    assert_eq!(live.settings.log_sample, 0.5);
    assert_eq!(
        live.settings.slo.as_ref().unwrap().availability,
        Some(0.999)
    );

    let again = apply(vec![deployment(0.5), slo(0.999)]).await;
    assert_eq!(actions(&again), Vec::<String>::new(), "{}", again.json());

    // A retraining trigger goes through the triggers' own checks, and comes and goes.
    let trigger = json!({"apiVersion": "slipway/v1", "kind": "Trigger",
        "metadata": {"name": "nightly"},
        "spec": {"model": MODEL, "deployment": NAME, "pipeline": "churn/pipeline.yml",
                 "model_path": "model", "gate": {"label": "y"},
                 "on": {"schedule": "0 3 * * *"}}});
    let with_trigger = apply(vec![deployment(0.5), slo(0.999), trigger.clone()]).await;
    assert_eq!(
        actions(&with_trigger),
        ["create Trigger/nightly"],
        "{}",
        with_trigger.json()
    );
    let triggers = h.app.trigger_config().await.unwrap().config.triggers;
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].name, "nightly");
    let mut wrong = trigger;
    wrong["spec"]["pipeline"] = json!("../outside.yml");
    let refused = apply(vec![deployment(0.5), slo(0.999), wrong]).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.json()
    );
    let without = apply(vec![deployment(0.5), slo(0.999)]).await;
    assert_eq!(actions(&without), ["delete Trigger/nightly"]);
    assert!(
        h.app
            .trigger_config()
            .await
            .unwrap()
            .config
            .triggers
            .is_empty()
    );
    let changed = apply(vec![deployment(0.5), slo(0.99)]).await;
    assert_eq!(actions(&changed), [format!("update SLO/{NAME}")]);
    assert_eq!(
        h.app
            .get_deployment(NAME)
            .await
            .unwrap()
            .settings
            .slo
            .unwrap()
            .availability,
        Some(0.99)
    );
    // The SLO no longer named: removed, the deployment's settings kept.
    let removed = apply(vec![deployment(0.5)]).await;
    assert_eq!(actions(&removed), [format!("delete SLO/{NAME}")]);
    let live = h.app.get_deployment(NAME).await.unwrap();
    assert!(live.settings.slo.is_none() && live.settings.log_sample == 0.5);

    // The model changes through a rollout only.
    let mut other = deployment(0.5);
    other["spec"]["model"] = json!(format!("models:/{MODEL}/1"));
    let refused = apply(vec![other]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("--candidate"),
        "{}",
        refused.json()
    );
    // A managed deployment left out of the files is kept, and the plan says how to delete it.
    let kept = apply(vec![]).await;
    assert_eq!(actions(&kept), [format!("keep Deployment/{NAME}")]);
    assert!(h.app.get_deployment(NAME).await.is_ok());
}
