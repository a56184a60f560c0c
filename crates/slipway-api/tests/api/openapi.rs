//! The OpenAPI document at `/api/slipway/v1/openapi.json`: generated from the route tables, it
//! lists exactly the routes the server has (those of `access::route_rules`), each with what a
//! client needs to call it. schemathesis checks the live server against it (tests/e2e).

use std::collections::{BTreeSet, HashSet};

use axum::http::{Method, StatusCode};
use serde_json::Value;
use slipway_api::access::route_rules;
use slipway_api::openapi::{PATH, openapi_path};

use crate::common;

async fn document() -> Value {
    let s = common::server().await;
    // Served without credentials, even where auth is on (the route is public).
    let raw = s.send(Method::GET, PATH, Vec::new(), None).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(
        raw.headers.get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    raw.json()
}

fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((method.to_ascii_uppercase(), path.clone(), operation));
        }
    }
    found
}

fn operation<'d>(document: &'d Value, method: &str, path: &str) -> &'d Value {
    let operation = &document["paths"][path][method.to_ascii_lowercase()];
    assert!(operation.is_object(), "no {method} {path} in the document");
    operation
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_server() {
    let document = document().await;
    assert_eq!(document["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = operations(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let routes: BTreeSet<(String, String)> = route_rules()
        .into_iter()
        .map(|route| (route.method.to_string(), openapi_path(&route.path)))
        .collect();
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without an operation: {missing:?}; operations without a route: {extra:?}"
    );
    assert_eq!(
        documented.len(),
        route_rules().len(),
        "one operation per route"
    );
    assert!(documented.contains(&("GET".to_owned(), PATH.to_owned())));
}

#[tokio::test]
async fn every_operation_has_an_id_a_tag_security_and_error_responses() {
    let document = document().await;
    let public: HashSet<(String, String)> = route_rules()
        .into_iter()
        .filter(|route| route.public)
        .map(|route| (route.method.to_string(), openapi_path(&route.path)))
        .collect();
    let tags = [
        "mlflow",
        "native",
        "artifacts",
        "scoring",
        "v2",
        "deployments",
        "server",
    ];
    let mut ids = HashSet::new();
    for (method, path, operation) in operations(&document) {
        let at = format!("{method} {path}");
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty() && ids.insert(id.to_owned()),
            "{at}: id {id:?} missing or repeated"
        );
        let tag = operation["tags"][0].as_str().unwrap_or_default();
        assert!(tags.contains(&tag), "{at}: tag {tag:?}");
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{at}: no success response");
        let is_public = public.contains(&(method.clone(), path.clone()));
        if is_public {
            assert_eq!(operation["security"], serde_json::json!([]), "{at}");
            assert!(!responses.contains_key("401"), "{at}");
        } else {
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|scheme| scheme.as_object().unwrap().keys())
                .map(String::as_str)
                .collect();
            assert_eq!(schemes, ["bearer", "basic"], "{at}");
            for status in ["400", "401", "403", "404"] {
                // V2 answers in its own error body past the access check.
                let schema = if tag == "v2" && (status == "400" || status == "404") {
                    "#/components/schemas/V2Error"
                } else {
                    "#/components/schemas/Error"
                };
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"], schema,
                    "{at}: {status}"
                );
            }
        }
        if ["POST", "PUT", "PATCH"].contains(&method.as_str()) {
            assert!(responses.contains_key("413"), "{at}: no 413");
        }
        // Path parameters are declared, required, under their route's names.
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            let declared = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
            assert!(declared, "{at}: path parameter {name} is not declared");
        }
    }
    for scheme in ["bearer", "basic"] {
        assert_eq!(
            document["components"]["securitySchemes"][scheme]["type"],
            "http"
        );
    }
    let error = &document["components"]["schemas"]["Error"];
    assert_eq!(
        error["required"],
        serde_json::json!(["error_code", "message"])
    );
}

#[tokio::test]
async fn request_schemas_come_from_the_request_messages() {
    let document = document().await;
    // A JSON body: the message's fields, unknown fields refused as the server refuses them.
    let create = operation(&document, "POST", "/api/2.0/mlflow/experiments/create");
    let schema = &create["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["additionalProperties"], false, "{schema}");
    let properties = schema["properties"].as_object().unwrap();
    let names: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["name", "artifact_location", "tags"]));
    assert_eq!(create["tags"][0], "mlflow");
    // Nested messages are components.
    let log_batch = operation(&document, "POST", "/api/2.0/mlflow/runs/log-batch");
    let batch = log_batch["requestBody"]["content"]["application/json"]["schema"].to_string();
    assert!(batch.contains("#/components/schemas/MetricIn"), "{batch}");
    assert!(document["components"]["schemas"]["MetricIn"].is_object());
    // A GET message: the same fields as query parameters; repeated fields as arrays.
    let search = operation(&document, "GET", "/api/2.0/mlflow/registered-models/search");
    let parameters = search["parameters"].as_array().unwrap();
    let query: BTreeSet<&str> = parameters
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        query.contains("filter") && query.contains("max_results"),
        "{query:?}"
    );
    let order_by = parameters.iter().find(|p| p["name"] == "order_by").unwrap();
    assert_eq!(order_by["schema"]["type"], "array");
    // The data plane documents its load-shedding statuses; the wildcard artifact path is a
    // plain parameter.
    let invocations = operation(&document, "POST", "/deployments/{name}/invocations");
    assert_eq!(invocations["tags"][0], "scoring");
    for status in ["413", "429", "503"] {
        assert!(invocations["responses"][status].is_object(), "{status}");
    }
    let download = operation(
        &document,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/{path}",
    );
    assert_eq!(download["tags"][0], "artifacts");
    // Public routes need no credentials.
    let health = operation(&document, "GET", "/health");
    assert_eq!(health["security"], serde_json::json!([]));
    let deployments = operation(&document, "POST", "/api/slipway/v1/deployments");
    assert_eq!(deployments["tags"][0], "deployments");
}

// What schemathesis found, each pinned here.

/// A deployment that does not exist is a 404 on `/ping`, as on `/invocations`: it answered 503
/// (a server error, which clients retry) in plain text, outside the document.
#[tokio::test]
async fn ping_of_an_unknown_deployment_is_a_404_in_the_error_format() {
    let s = common::server().await;
    let (status, body) = s
        .call("GET", "/deployments/no-such-deployment/ping", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error_code"], "RESOURCE_DOES_NOT_EXIST", "{body}");
}

/// A method a data-plane route does not have is a 405, as on the API routes: it was refused
/// with 403 "this route has no access rule" and logged as a server bug.
#[tokio::test]
async fn a_wrong_method_on_a_data_plane_route_is_a_405() {
    let s = common::server().await;
    for (method, path) in [
        ("PUT", "/deployments/x/ping"),
        ("DELETE", "/deployments/x/invocations"),
        ("POST", "/v2/health/ready"),
    ] {
        let (status, body) = s.call(method, path, Some(serde_json::json!({}))).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(body["error_code"], "BAD_REQUEST", "{method} {path}: {body}");
    }
}
