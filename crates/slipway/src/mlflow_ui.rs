//! `slipway server --mlflow-ui DIR`: MLflow's own web UI (the static build inside the `mlflow`
//! wheel, `mlflow/server/js/build`) served at `/mlflow/` against slipway's API, for teams used
//! to it. The UI asks for paths relative to its page (`ajax-api/2.0/mlflow/...`,
//! `get-artifact`, `graphql`); those under `/mlflow/` are handed to the server's own routes
//! with the prefix taken off, so they meet the same access rules as any other request.
//!
//! MLflow 3's UI reads experiments and runs through MLflow's GraphQL endpoint. slipway has no
//! GraphQL engine: the four operations the UI sends (`MlflowGetExperimentQuery`, `GetRun`,
//! `SearchRuns`, `GetMetricHistoryBulkInterval`) are answered by calling the REST routes they
//! mirror, as the same caller, and renaming the fields to GraphQL's camelCase. Any other
//! operation gets a GraphQL error naming it.

use std::path::{Path, PathBuf};

use anyhow::bail;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};

/// The largest GraphQL request body read.
const MAX_GRAPHQL_BODY: usize = 1024 * 1024;

/// Where MLflow's UI is mounted.
pub const PREFIX: &str = "/mlflow";

/// Paths the UI calls relative to its page, which are the server's own under `/`.
const API_PATHS: [&str; 5] = [
    "/ajax-api/",
    "/get-artifact",
    "/model-versions/get-artifact",
    "/graphql",
    "/api/",
];

/// Checks that `dir` is MLflow's UI build (its `index.html` and `static-files`-relative assets).
pub fn check(dir: &Path) -> anyhow::Result<PathBuf> {
    let index = dir.join("index.html");
    let text = std::fs::read_to_string(&index).map_err(|e| {
        anyhow::anyhow!(
            "--mlflow-ui {}: no index.html there ({e}); give the build inside the mlflow wheel, e.g. \
             $(python -c 'import mlflow, os; print(os.path.join(os.path.dirname(mlflow.__file__), \"server\", \"js\", \"build\"))')",
            dir.display()
        )
    })?;
    if !text.contains("static-files/") {
        bail!(
            "--mlflow-ui {}: index.html is not MLflow's UI build (it loads nothing from static-files/)",
            dir.display()
        );
    }
    Ok(dir.to_path_buf())
}

/// The UI's own routes: its page and its assets, read from `dir` (ServeDir keeps every path
/// inside it).
pub fn routes(dir: &Path) -> Router {
    Router::new()
        .route(PREFIX, get(|| async { Redirect::permanent("/mlflow/") }))
        .route_service(
            &format!("{PREFIX}/"),
            ServeFile::new(dir.join("index.html")),
        )
        .nest_service(&format!("{PREFIX}/static-files"), ServeDir::new(dir))
}

/// The UI's API calls (`/mlflow/ajax-api/...`) as the server's own (`/ajax-api/...`).
fn unprefixed(uri: &Uri) -> Option<Uri> {
    let rest = uri.path().strip_prefix(PREFIX)?;
    if !API_PATHS.iter().any(|p| rest.starts_with(p)) {
        return None;
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    path_and_query.parse().ok()
}

/// `router` with the UI's API calls rewritten before routing, and its GraphQL answered.
pub fn wrap(router: Router) -> Router {
    let service = tower::service_fn(move |mut request: Request| {
        let router = router.clone();
        async move {
            if request.method() == Method::POST && request.uri().path() == "/mlflow/graphql" {
                return Ok::<_, std::convert::Infallible>(graphql(router, request).await);
            }
            if let Some(uri) = unprefixed(request.uri()) {
                *request.uri_mut() = uri;
            }
            router.oneshot(request).await
        }
    });
    Router::new().fallback_service(service)
}

/// `snake_case` keys as GraphQL's `camelCase`, all the way down; `run_uuid` stays `runUuid`.
fn camel(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let mut out = String::with_capacity(key.len());
                    let mut upper = false;
                    for c in key.chars() {
                        if c == '_' {
                            upper = true;
                        } else if upper {
                            out.extend(c.to_uppercase());
                            upper = false;
                        } else {
                            out.push(c);
                        }
                    }
                    (out, camel(value))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel).collect()),
        other => other,
    }
}

/// REST leaves out empty lists; GraphQL answers them empty, and the UI reads them.
fn with_lists(mut value: Value, paths: &[&[&str]]) -> Value {
    for path in paths {
        let mut at = &mut value;
        for key in &path[..path.len() - 1] {
            if !at[*key].is_object() {
                at[*key] = json!({});
            }
            at = &mut at[*key];
        }
        let last = path[path.len() - 1];
        if !at[last].is_array() {
            at[last] = json!([]);
        }
    }
    value
}

fn run_lists(run: Value) -> Value {
    let mut run = with_lists(
        run,
        &[
            &["data", "metrics"],
            &["data", "params"],
            &["data", "tags"],
            &["inputs", "datasetInputs"],
            &["inputs", "modelInputs"],
            &["outputs", "modelOutputs"],
        ],
    );
    if let Some(inputs) = run["inputs"]["datasetInputs"].as_array_mut() {
        for input in inputs {
            *input = with_lists(input.take(), &[&["tags"]]);
        }
    }
    run
}

/// GraphQL's `camelCase` input as the REST API's `snake_case`.
fn snake(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let mut out = String::with_capacity(key.len() + 4);
                    for c in key.chars() {
                        if c.is_ascii_uppercase() {
                            out.push('_');
                            out.push(c.to_ascii_lowercase());
                        } else {
                            out.push(c);
                        }
                    }
                    (out, snake(value))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(snake).collect()),
        other => other.clone(),
    }
}

/// Calls one of the server's REST routes as the GraphQL request's caller (its cookie or
/// Authorization header, its connection).
async fn call(
    router: &Router,
    from: &axum::http::request::Parts,
    method: Method,
    uri: &str,
    body: Option<&Value>,
) -> Result<Value, Value> {
    let mut request = Request::builder().method(method).uri(uri);
    for name in [header::COOKIE, header::AUTHORIZATION] {
        if let Some(value) = from.headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    };
    let Ok(mut request) = request else {
        return Err(json!({"code": "INTERNAL_ERROR", "message": "could not build the request"}));
    };
    // The caller's connection (its address and any client certificate) goes along.
    *request.extensions_mut() = from.extensions.clone();
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let ok = response.status().is_success();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if ok {
        Ok(value)
    } else {
        Err(json!({
            "code": value["error_code"].as_str().unwrap_or("INTERNAL_ERROR"),
            "message": value["message"].as_str().unwrap_or("the request failed"),
        }))
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::remote::urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn graphql(router: Router, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_GRAPHQL_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return graphql_error("the GraphQL request is over 1 MiB or unreadable"),
    };
    let Ok(request) = serde_json::from_slice::<Value>(&bytes) else {
        return graphql_error("the GraphQL request is not JSON");
    };
    let operation = request["operationName"].as_str().unwrap_or("");
    let variables = &request["variables"];
    let answer = |field: &str, result: Result<Value, Value>| {
        let data = match result {
            Ok(value) => value,
            Err(api_error) => json!({ "apiError": api_error }),
        };
        axum::Json(json!({ "data": { field: data } })).into_response()
    };
    match operation {
        "MlflowGetExperimentQuery" => {
            let id = variables["input"]["experimentId"].as_str().unwrap_or("");
            let result = call(
                &router,
                &parts,
                Method::GET,
                &format!(
                    "/ajax-api/2.0/mlflow/experiments/get?{}",
                    query(&[("experiment_id", id)])
                ),
                None,
            )
            .await
            .map(|v| json!({ "apiError": null, "experiment": with_lists(camel(v["experiment"].clone()), &[&["tags"]]) }));
            answer("mlflowGetExperiment", result)
        }
        "GetRun" => {
            let id = variables["data"]["runId"].as_str().unwrap_or("");
            let result = match call(
                &router,
                &parts,
                Method::GET,
                &format!("/ajax-api/2.0/mlflow/runs/get?{}", query(&[("run_id", id)])),
                None,
            )
            .await
            {
                Ok(run) => {
                    let mut run = run_lists(camel(run["run"].clone()));
                    run["experiment"] = experiment(
                        &router,
                        &parts,
                        run["info"]["experimentId"].as_str().unwrap_or(""),
                    )
                    .await;
                    run["modelVersions"] = versions(&router, &parts, id).await;
                    Ok(json!({ "apiError": null, "run": run }))
                }
                Err(e) => Err(e),
            };
            answer("mlflowGetRun", result)
        }
        "SearchRuns" => {
            let body = snake(&variables["data"]);
            let result = match call(
                &router,
                &parts,
                Method::POST,
                "/ajax-api/2.0/mlflow/runs/search",
                Some(&body),
            )
            .await
            {
                Ok(found) => {
                    let mut experiments = std::collections::HashMap::new();
                    let mut runs = Vec::new();
                    for run in found["runs"].as_array().cloned().unwrap_or_default() {
                        let mut run = run_lists(camel(run));
                        let id = run["info"]["experimentId"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned();
                        if !experiments.contains_key(&id) {
                            let fetched = experiment(&router, &parts, &id).await;
                            experiments.insert(id.clone(), fetched);
                        }
                        run["experiment"] = experiments[&id].clone();
                        run["modelVersions"] = json!([]);
                        runs.push(run);
                    }
                    Ok(
                        json!({ "apiError": null, "runs": runs, "nextPageToken": found["next_page_token"] }),
                    )
                }
                Err(e) => Err(e),
            };
            answer("mlflowSearchRuns", result)
        }
        "GetMetricHistoryBulkInterval" => {
            let data = &variables["data"];
            let mut pairs: Vec<(&str, String)> = Vec::new();
            for run in data["runIds"].as_array().into_iter().flatten() {
                pairs.push(("run_ids", run.as_str().unwrap_or("").to_owned()));
            }
            pairs.push((
                "metric_key",
                data["metricKey"].as_str().unwrap_or("").to_owned(),
            ));
            for (graph, rest) in [
                ("startStep", "start_step"),
                ("endStep", "end_step"),
                ("maxResults", "max_results"),
            ] {
                if let Some(v) = data[graph].as_i64() {
                    pairs.push((rest, v.to_string()));
                }
            }
            let q = pairs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>();
            let result = call(&router, &parts, Method::GET, &format!("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{}", query(&q)), None)
                .await
                .map(|v| json!({ "__typename": "MlflowGetMetricHistoryBulkIntervalResponse", "apiError": null, "metrics": with_lists(camel(v.clone()), &[&["metrics"]])["metrics"] }));
            answer("mlflowGetMetricHistoryBulkInterval", result)
        }
        other => graphql_error(&format!(
            "slipway answers MLflow's UI only for MlflowGetExperimentQuery, GetRun, SearchRuns and GetMetricHistoryBulkInterval, not {other:?}"
        )),
    }
}

async fn experiment(router: &Router, parts: &axum::http::request::Parts, id: &str) -> Value {
    call(
        router,
        parts,
        Method::GET,
        &format!(
            "/ajax-api/2.0/mlflow/experiments/get?{}",
            query(&[("experiment_id", id)])
        ),
        None,
    )
    .await
    .map(|v| with_lists(camel(v["experiment"].clone()), &[&["tags"]]))
    .unwrap_or(Value::Null)
}

async fn versions(router: &Router, parts: &axum::http::request::Parts, run_id: &str) -> Value {
    let filter = format!("run_id = '{}'", run_id.replace('\'', ""));
    call(
        router,
        parts,
        Method::GET,
        &format!(
            "/ajax-api/2.0/mlflow/model-versions/search?{}",
            query(&[("filter", &filter)])
        ),
        None,
    )
    .await
    .map(|v| camel(v["model_versions"].clone()))
    .ok()
    .filter(|v| v.is_array())
    .unwrap_or_else(|| json!([]))
}

fn graphql_error(message: &str) -> Response {
    axum::Json(json!({ "errors": [{ "message": message }] })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_uis_api_calls_lose_the_prefix() {
        let uri: Uri = "/mlflow/ajax-api/2.0/mlflow/runs/get?run_id=abc"
            .parse()
            .unwrap();
        assert_eq!(
            unprefixed(&uri).unwrap().to_string(),
            "/ajax-api/2.0/mlflow/runs/get?run_id=abc"
        );
        let page: Uri = "/mlflow/static-files/static/js/main.js".parse().unwrap();
        assert!(unprefixed(&page).is_none());
        let other: Uri = "/ajax-api/2.0/mlflow/runs/get".parse().unwrap();
        assert!(unprefixed(&other).is_none());
        let sneaky: Uri = "/mlflowx/ajax-api/2.0".parse().unwrap();
        assert!(unprefixed(&sneaky).is_none());
    }

    #[test]
    fn fields_are_renamed_both_ways() {
        let rest = json!({"run_info": {"run_uuid": "a", "start_time": 1}, "tags": [{"key": "k"}]});
        assert_eq!(
            camel(rest),
            json!({"runInfo": {"runUuid": "a", "startTime": 1}, "tags": [{"key": "k"}]})
        );
        assert_eq!(
            snake(&json!({"experimentIds": ["1"], "maxResults": 5})),
            json!({"experiment_ids": ["1"], "max_results": 5})
        );
    }

    #[test]
    fn a_folder_that_is_not_the_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            check(dir.path())
                .unwrap_err()
                .to_string()
                .contains("no index.html")
        );
        std::fs::write(dir.path().join("index.html"), "<html></html>").unwrap();
        assert!(
            check(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not MLflow's UI")
        );
        std::fs::write(
            dir.path().join("index.html"),
            "<script src=\"static-files/static/js/main.js\"></script>",
        )
        .unwrap();
        assert!(check(dir.path()).is_ok());
    }
}
