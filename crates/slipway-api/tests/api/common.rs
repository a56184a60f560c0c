//! Helpers for the HTTP-level tests: a fresh app per test (SQLite + a local artifact folder,
//! wired as the binary's `serve` does) driven with `tower::ServiceExt::oneshot`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_app::{App, AppSettings};
use slipway_artifacts::ObjectArtifactStore;
use slipway_store::{BackendUri, SqlStore, StoreOptions};
use slipway_testkit::SqliteDatabase;
use tower::ServiceExt;

pub const API: &str = "/api/2.0/mlflow";
pub const PROXY: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// One app over its own database and artifact folder; both are removed on drop.
pub struct TestServer {
    pub router: Router,
    /// A folder next to (outside) the artifact root: traversal must never reach it.
    pub outside: PathBuf,
    _db: SqliteDatabase,
    _dir: tempfile::TempDir,
}

pub async fn server() -> TestServer {
    let db = SqliteDatabase::create();
    let uri = BackendUri::parse(&db.uri).expect("parsing the SQLite URI");
    let store = SqlStore::open(&uri, StoreOptions::default())
        .await
        .expect("opening the SQLite store");
    let dir = tempfile::tempdir().expect("creating a temporary folder");
    let artifact_root = dir.path().join("artifacts");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&artifact_root).expect("creating the artifact root");
    std::fs::create_dir_all(&outside).expect("creating the outside folder");
    let artifacts = ObjectArtifactStore::local(&artifact_root).expect("opening the artifact store");
    let app = App::new(Arc::new(store), Arc::new(artifacts), AppSettings::default());
    TestServer {
        router: slipway_api::router(app),
        outside,
        _db: db,
        _dir: dir,
    }
}

/// A raw response: status, headers and the whole body.
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    /// The body as JSON; panics (with the body) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}), status {}: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a valid method")
}

impl TestServer {
    /// Sends one request. Every response must carry an `x-request-id` header.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Raw {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path_and_query);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = builder.body(Body::from(body)).expect("building a request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("reading the response body")
            .to_bytes()
            .to_vec();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            !request_id.is_empty(),
            "{method} {path_and_query}: response without an x-request-id header (status {status})"
        );
        Raw {
            status,
            headers,
            body,
        }
    }

    /// The `check`-style call: a JSON body (or none) with `application/json`; the answer as
    /// JSON. A 5xx is never acceptable here unless the caller asked for it, so the status is
    /// returned for the caller to assert.
    pub async fn call(
        &self,
        method_name: &str,
        path_and_query: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("encoding a body"))
            .unwrap_or_default();
        // As a client sends them: every body-carrying method declares JSON (a POST without a
        // content type is refused, as MLflow refuses it).
        let content_type = if bytes.is_empty() && method_name == "GET" {
            None
        } else {
            Some("application/json")
        };
        let raw = self
            .send(method(method_name), path_and_query, bytes, content_type)
            .await;
        let value = if raw.body.is_empty() {
            json!({})
        } else {
            raw.json()
        };
        (raw.status, value)
    }

    /// A call that must succeed with 200; returns the JSON body.
    pub async fn ok(&self, method_name: &str, path_and_query: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method_name, path_and_query, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{method_name} {path_and_query} {body:?} -> {value}"
        );
        assert!(value.is_object(), "responses are JSON objects: {value}");
        value
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        self.ok("GET", &format!("{API}{path}{}", qs(query)), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.ok("POST", &format!("{API}{path}"), Some(body)).await
    }

    /// A call that must fail with `status` and a JSON MLflow error `code`; returns the message.
    pub async fn fails(
        &self,
        method_name: &str,
        path_and_query: &str,
        body: Option<Value>,
        status: u16,
        code: &str,
    ) -> String {
        let (got, value) = self.call(method_name, path_and_query, body.clone()).await;
        assert_error(
            &format!("{method_name} {path_and_query} {body:?}"),
            got,
            &value,
            status,
            code,
        )
    }

    // ---------- fixtures ----------

    pub async fn create_experiment(&self, name: &str) -> String {
        let body = self
            .post("/experiments/create", json!({ "name": name }))
            .await;
        body["experiment_id"]
            .as_str()
            .expect("experiment_id is a string")
            .to_owned()
    }

    pub async fn create_run(&self, experiment_id: &str) -> String {
        let body = self
            .post(
                "/runs/create",
                json!({ "experiment_id": experiment_id, "start_time": 1_700_000_000_000_i64 }),
            )
            .await;
        body["run"]["info"]["run_id"]
            .as_str()
            .expect("run_id is a string")
            .to_owned()
    }

    pub async fn create_model(&self, name: &str) {
        self.post("/registered-models/create", json!({ "name": name }))
            .await;
    }

    /// A version whose source is the `model` folder of the run's artifacts.
    pub async fn create_version(&self, name: &str, run_id: &str) -> String {
        let run = self.get("/runs/get", &[("run_id", run_id)]).await;
        let root = run["run"]["info"]["artifact_uri"]
            .as_str()
            .expect("artifact_uri is a string");
        let body = self
            .post(
                "/model-versions/create",
                json!({
                    "name": name,
                    "source": format!("{root}/model"),
                    "run_id": run_id,
                }),
            )
            .await;
        body["model_version"]["version"]
            .as_str()
            .expect("version is a string")
            .to_owned()
    }

    pub async fn create_logged_model(&self, experiment_id: &str) -> String {
        let body = self
            .post(
                "/logged-models",
                json!({ "experiment_id": experiment_id, "name": "clf" }),
            )
            .await;
        body["model"]["info"]["model_id"]
            .as_str()
            .expect("model_id is a string")
            .to_owned()
    }
}

/// Asserts an MLflow error answer: the status, a JSON object with string `error_code` (equal to
/// `code`) and a non-empty string `message`. Returns the message.
pub fn assert_error(
    context: &str,
    got: StatusCode,
    body: &Value,
    status: u16,
    code: &str,
) -> String {
    assert_eq!(got.as_u16(), status, "{context}: status; body {body}");
    assert_eq!(
        body["error_code"].as_str(),
        Some(code),
        "{context}: error_code; body {body}"
    );
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: message is not a string: {body}"));
    assert!(!message.is_empty(), "{context}: empty message");
    message.to_owned()
}

/// Percent-encodes a query component (everything but unreserved characters).
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `?k=v&k2=v2` (empty when no pairs), percent-encoded.
pub fn qs(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let joined: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("?{}", joined.join("&"))
}

/// Standard base64 (for hand-made page tokens).
pub fn base64(raw: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Asserts the keys of a JSON object are exactly `expected` (order-free).
pub fn assert_keys(context: &str, value: &Value, expected: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{context}: not an object: {value}"));
    let mut got: Vec<&str> = object.keys().map(String::as_str).collect();
    got.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{context}: keys of {value}");
}

/// Whether `s` is a 32-character lowercase hex id (MLflow run ids).
pub fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `[{"key","value"}]` list -> value of `key`.
pub fn kv<'a>(list: &'a Value, key: &str) -> Option<&'a str> {
    list.as_array()?
        .iter()
        .find(|item| item["key"] == key)
        .and_then(|item| item["value"].as_str())
}
