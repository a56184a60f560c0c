//! The OpenAPI 3.1 document of every route the server has, served at
//! `GET /api/slipway/v1/openapi.json`.
//!
//! Nothing here is written per route by hand: the operations come from the same `routes!` tables
//! the routers and the access rules are built from (each table also yields [`RouteDoc`]s: the
//! handler's name and the request message it decodes), joined with [`crate::access::route_rules`]
//! for who may call them. Request schemas are derived (`utoipa::ToSchema`) from the request
//! structs themselves, so a renamed or added field shows up in the document. A test checks that
//! the document lists exactly the routes of [`crate::access::route_rules`].
//!
//! What a route answers is described by its kind: JSON for the API routes, MLflow's
//! `{"error_code", "message"}` body for every error, and the statuses that apply (401 and 403
//! only where credentials are needed, 413 only where there is a body, 429 and 503 on the data
//! plane, which sheds load).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::openapi::{RefOr, Schema};

use crate::access::{RouteRule, Scope};

/// Where the document is served.
pub const PATH: &str = "/api/slipway/v1/openapi.json";

/// Builds a request message's schema, adding the schemas it refers to to the list.
pub(crate) type RequestSchema = fn(&mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema>;

/// One route as a `routes!` table declares it, for the document.
pub(crate) struct RouteDoc {
    pub method: Method,
    /// Relative to the table's mount point.
    pub path: &'static str,
    /// The handler as written in the table (`experiments::create`), for the operation id.
    pub handler: &'static str,
    /// The request message the handler decodes (query for GET, JSON body otherwise), if any.
    pub request: Option<RequestSchema>,
}

/// `()` for a route without a request message, `(T,)` for one that decodes `T`: how the
/// `routes!` macro turns an optional `[T]` into an optional schema.
pub(crate) trait RequestType {
    const SCHEMA: Option<RequestSchema>;
}

impl RequestType for () {
    const SCHEMA: Option<RequestSchema> = None;
}

impl<T: utoipa::ToSchema> RequestType for (T,) {
    const SCHEMA: Option<RequestSchema> = Some(schema_of::<T>);
}

fn schema_of<T: utoipa::ToSchema>(refs: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    T::schemas(refs);
    T::schema()
}

/// Every route's [`RouteDoc`] with its full path, mounted as the routers mount them.
pub(crate) fn route_docs() -> Vec<(String, RouteDoc)> {
    let mut docs = Vec::new();
    for prefix in crate::mlflow::API_PREFIXES {
        docs.extend(
            crate::mlflow::api_docs()
                .into_iter()
                .map(|doc| (format!("{prefix}{}", doc.path), doc)),
        );
    }
    for prefix in crate::mlflow::PROXY_PREFIXES {
        docs.extend(
            crate::mlflow::proxy_docs()
                .into_iter()
                .map(|doc| (format!("{prefix}{}", doc.path), doc)),
        );
    }
    docs.extend(
        crate::native::docs()
            .into_iter()
            .map(|doc| (format!("{}{}", crate::native::PREFIX, doc.path), doc)),
    );
    docs.extend(
        crate::plane_routes::plane_docs()
            .into_iter()
            .map(|doc| (doc.path.to_owned(), doc)),
    );
    docs.extend(
        crate::server_docs()
            .into_iter()
            .map(|doc| (doc.path.to_owned(), doc)),
    );
    docs
}

/// The OpenAPI path of an axum route: `{*path}` becomes `{path}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The path parameters of an axum route, in order.
fn path_params(axum_path: &str) -> Vec<&str> {
    axum_path
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

/// The group an operation belongs to, by where it is mounted.
fn tag(path: &str) -> &'static str {
    if path.contains("/mlflow-artifacts/") {
        "artifacts"
    } else if path.starts_with("/api/slipway/v1/deployments") {
        "deployments"
    } else if path.starts_with("/api/slipway/v1") {
        "native"
    } else if path.starts_with("/v2") {
        "v2"
    } else if path.starts_with("/deployments/") {
        "scoring"
    } else if path == "/metrics" {
        "server"
    } else {
        "mlflow"
    }
}

/// `experiments::create` under `/ajax-api/...` as POST: `post_ajax_experiments_create`.
fn operation_id(method: &Method, path: &str, handler: &str) -> String {
    let handler: String = handler
        .rsplit("::")
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter(|part| *part != "crate" && *part != "scoring")
        .collect::<Vec<_>>()
        .join("_");
    let ajax = if path.starts_with("/ajax-api/") {
        "ajax_"
    } else {
        ""
    };
    // Two routes of one handler and method differ by a trailing slash only.
    let slash = if path.ends_with('/') { "_dir" } else { "" };
    format!(
        "{}_{ajax}{handler}{slash}",
        method.as_str().to_ascii_lowercase()
    )
}

/// The content a successful answer of this route has.
fn success_content(path: &str, handler: &str) -> Value {
    let any = json!({});
    let object = json!({"schema": {"type": "object"}});
    match handler {
        "health" | "version" => json!({"text/plain": {"schema": {"type": "string"}}}),
        _ if path == "/metrics" => {
            json!({"application/openmetrics-text": {"schema": {"type": "string"}}})
        }
        // An artifact is whatever was uploaded; its type is guessed from its name.
        "artifacts::download" => json!({"*/*": any}),
        _ if path.ends_with("/ping") => json!({"application/json": any}),
        _ => json!({"application/json": object}),
    }
}

fn error_response(description: &str) -> Value {
    error_body(description, "Error")
}

fn error_body(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
    })
}

/// One operation of the document.
fn operation(
    method: &Method,
    path: &str,
    doc: &RouteDoc,
    rule: &RouteRule,
    refs: &mut Vec<(String, RefOr<Schema>)>,
) -> Value {
    let mut parameters: Vec<Value> = path_params(path)
        .into_iter()
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    let mut request_body = None;
    let has_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    let plane = matches!(tag(path), "scoring" | "v2");
    if let Some(schema) = doc.request {
        let schema = schema(refs);
        if *method == Method::GET {
            parameters.extend(query_parameters(&schema));
        } else {
            request_body = Some(json!({
                "required": has_body,
                "content": {"application/json": {"schema": schema}},
            }));
        }
    } else if *method == Method::PUT && doc.handler == "artifacts::upload" {
        request_body = Some(json!({
            "required": true,
            "content": {"application/octet-stream": {"schema": {}}},
        }));
    } else if plane && has_body {
        // The scoring bodies are parsed by hand (`scoring::body`): MLflow's JSON shapes and
        // CSV, or a V2 inference request.
        let mut content = json!({"application/json": {"schema": {"type": "object"}}});
        if tag(path) == "scoring" {
            content["text/csv"] = json!({"schema": {"type": "string"}});
        }
        request_body = Some(json!({"required": true, "content": content}));
    }
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "success", "content": success_content(path, doc.handler)}),
    );
    let fixed = matches!(doc.handler, "health" | "version" | "openapi");
    if !fixed {
        responses.insert(
            "400".into(),
            error_response("invalid request (MLflow's INVALID_PARAMETER_VALUE)"),
        );
        responses.insert("404".into(), error_response("no such resource"));
    }
    if !rule.public {
        responses.insert("401".into(), error_response("no or wrong credentials"));
        responses.insert(
            "403".into(),
            error_response("the caller's role or permission does not allow this"),
        );
    }
    if request_body.is_some() || has_body {
        responses.insert(
            "413".into(),
            error_response("the request body is too large"),
        );
    }
    if tag(path) == "v2" && !fixed {
        // The Open Inference Protocol's own error body, past the access check.
        for (status, about) in [
            ("400", "invalid request"),
            ("404", "no such model or version"),
        ] {
            responses.insert(status.into(), error_body(about, "V2Error"));
        }
    }
    if plane {
        let body = if tag(path) == "v2" {
            "V2Error"
        } else {
            "Error"
        };
        for (status, about) in [
            (
                "415",
                "the request's content type is not one this protocol reads",
            ),
            ("429", "too many requests in flight; retry later"),
            ("503", "the deployment is not loaded or is overloaded"),
            ("504", "the model did not answer in time"),
        ] {
            responses.insert(status.into(), error_body(about, body));
        }
        if request_body.is_some() {
            responses.insert(
                "413".into(),
                error_body("the request body is too large", body),
            );
        }
    }
    if doc.handler == "artifacts::multipart_unsupported" {
        responses.insert(
            "501".into(),
            error_response("multipart and presigned transfers are not offered"),
        );
    }
    let security = if rule.public {
        json!([])
    } else {
        json!([{"bearer": []}, {"basic": []}])
    };
    let mut operation = json!({
        "operationId": operation_id(method, path, doc.handler),
        "tags": [tag(path)],
        "description": access_text(rule),
        "security": security,
        "responses": responses,
    });
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = request_body {
        operation["requestBody"] = body;
    }
    operation
}

/// What the operation's description says about who may call it.
fn access_text(rule: &RouteRule) -> String {
    if rule.public {
        return "Open to everyone, without credentials.".to_owned();
    }
    let on = match rule.rule.scope {
        Scope::None => "",
        Scope::Experiment | Scope::ExperimentName | Scope::Run | Scope::LoggedModel => {
            " on the experiment"
        }
        Scope::ArtifactPath => " on the experiment the artifact path names",
        Scope::Model | Scope::ModelUri | Scope::Deployment | Scope::Trigger => {
            " on the registered model"
        }
    };
    format!(
        "Access: {}{on} (slipway's role and permission rules).",
        rule.rule.action.as_str()
    )
}

/// A GET message's fields as query parameters (repeated fields as repeated keys).
fn query_parameters(schema: &RefOr<Schema>) -> Vec<Value> {
    let RefOr::T(Schema::Object(object)) = schema else {
        return Vec::new();
    };
    object
        .properties
        .iter()
        .map(|(name, property)| {
            json!({
                "name": name,
                "in": "query",
                "required": object.required.contains(name),
                "schema": property,
            })
        })
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let rules: BTreeMap<(String, String), RouteRule> = crate::access::route_rules()
        .into_iter()
        .map(|rule| ((rule.method.to_string(), rule.path.clone()), rule))
        .collect();
    let mut refs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (path, doc) in route_docs() {
        let key = (doc.method.to_string(), path.clone());
        // Every documented route has a rule: the routers and the rules come from one table.
        let Some(rule) = rules.get(&key) else {
            continue;
        };
        let mut operation = operation(&doc.method, &path, &doc, rule, &mut refs);
        // A handler that answers several routes with one method gets the path in its id.
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !ids.insert(id.clone()) {
            let tail: String = path
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            operation["operationId"] = Value::String(format!("{id}{tail}"));
        }
        paths
            .entry(openapi_path(&path))
            .or_default()
            .insert(doc.method.as_str().to_ascii_lowercase(), operation);
    }
    let mut schemas: BTreeMap<String, Value> = refs
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or(Value::Null)))
        .collect();
    schemas.insert(
        "Error".to_owned(),
        json!({
            "type": "object",
            "description": "MLflow's error body; `request_id` names the server's log line of an internal error",
            "required": ["error_code", "message"],
            "properties": {
                "error_code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
        }),
    );
    schemas.insert(
        "V2Error".to_owned(),
        json!({
            "type": "object",
            "description": "the Open Inference Protocol's error body",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "slipway",
            "version": crate::VERSION,
            "description": format!(
                "MLflow's REST API (as of MLflow {}), slipway's native API, the artifact proxy, \
                 and the data plane (MLflow scoring and Open Inference Protocol V2) of managed \
                 deployments. Generated from the server's route tables.",
                crate::MLFLOW_COMPATIBLE_VERSION
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "mlflow", "description": "MLflow tracking and model registry"},
            {"name": "artifacts", "description": "MLflow's artifact proxy"},
            {"name": "native", "description": "slipway's own API: identity, governance, audit"},
            {"name": "deployments", "description": "managed deployments and rollouts"},
            {"name": "scoring", "description": "MLflow's scoring protocol, per deployment"},
            {"name": "v2", "description": "Open Inference Protocol (V2)"},
            {"name": "server", "description": "server metrics"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a slipway token (`slw_...`)"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    })
}

/// The document is the same for the life of the process; build it once.
static DOCUMENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&document()).unwrap_or_default());

/// `GET /api/slipway/v1/openapi.json`.
pub(crate) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
        .into_response()
}
