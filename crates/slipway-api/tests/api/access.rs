//! Authentication and authorization over HTTP: the route x role matrix (every route the server
//! has, from the same table its routers are built from), credentials of both kinds, per-resource
//! permissions, and the slow-down of failing clients. The matrix runs on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway_api::access::route_rules;
use slipway_app::identity::Secret;
use slipway_app::{App, AppSettings};
use slipway_artifacts::ObjectArtifactStore;
use slipway_core::auth::{Permission, Resource, Role};
use slipway_store::{BackendUri, SqlStore, StoreOptions};
use tower::ServiceExt;

/// `both_backends!(x_sqlite, x_postgres => case)`: `case(uri)` on a fresh SQLite file and on a
/// fresh PostgreSQL database (skipped with a notice when unreachable, a failure in CI).
macro_rules! both_backends {
    ($sqlite:ident, $postgres:ident => $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let db = slipway_testkit::SqliteDatabase::create();
            $case(&db.uri).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(db) = slipway_testkit::PgDatabase::create().await else {
                return;
            };
            $case(&db.uri).await;
            drop(db);
        }
    };
}

const PASSWORD: &str = "correct horse battery";

struct Harness {
    app: App,
    router: Router,
    _dir: tempfile::TempDir,
}

async fn harness(uri: &str) -> Harness {
    let store = SqlStore::open(&BackendUri::parse(uri).unwrap(), StoreOptions::default())
        .await
        .expect("opening the store");
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ObjectArtifactStore::local(dir.path()).unwrap();
    let app = App::new(
        Arc::new(store),
        Arc::new(artifacts),
        AppSettings {
            auth_enabled: true,
            ..AppSettings::default()
        },
    );
    for role in Role::ALL {
        app.create_user(role.as_str(), role, Some(Secret::new(PASSWORD)))
            .await
            .unwrap();
    }
    Harness {
        router: slipway_api::router(app.clone()),
        app,
        _dir: dir,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Harness {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(authorization) = authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&body).unwrap())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value, headers)
    }

    /// A call as `user` that must answer `status`; returns the body.
    async fn expect(
        &self,
        user: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        let (got, value) = self.as_user(user, method.clone(), uri, body).await;
        assert_eq!(got, status, "{user} {method} {uri}: {value}");
        value
    }

    /// Creates an experiment as `user`; its id.
    async fn create_experiment(&self, user: &str, name: &str) -> String {
        let created = self
            .expect(
                user,
                Method::POST,
                "/api/2.0/mlflow/experiments/create",
                Some(json!({"name": name})),
                StatusCode::OK,
            )
            .await;
        created["experiment_id"].as_str().unwrap().to_owned()
    }

    /// Creates a registered model as `user`.
    async fn create_model(&self, user: &str, name: &str) {
        self.expect(
            user,
            Method::POST,
            "/api/2.0/mlflow/registered-models/create",
            Some(json!({"name": name})),
            StatusCode::OK,
        )
        .await;
    }

    async fn as_user(
        &self,
        user: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, value, _) = self
            .send(method, uri, Some(&basic(user, PASSWORD)), body)
            .await;
        (status, value)
    }
}

/// A concrete URI for a route pattern.
fn concrete(path: &str) -> String {
    path.replace("{model_id}", "m-00000000000000000000000000000000")
        .replace("{tag_key}", "k")
        .replace(
            "{*path}",
            "1/0123456789abcdef0123456789abcdef/artifacts/x.txt",
        )
        .replace("{name}", "nobody")
        .replace("{id}", "ffffffffffffffff")
}

async fn case_route_role_matrix(uri: &str) {
    let harness = harness(uri).await;
    let rules = route_rules();
    assert!(
        rules.len() > 120,
        "only {} routes in the table",
        rules.len()
    );
    let mut checked = 0;
    for route in &rules {
        let uri = concrete(&route.path);
        let body = (route.method != Method::GET).then(|| json!({}));
        let context = format!("{} {}", route.method, route.path);

        let (status, value, headers) = harness
            .send(route.method.clone(), &uri, None, body.clone())
            .await;
        if route.public {
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{context}: public route answered {status} without credentials"
            );
            continue;
        }
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{context} without credentials: {value}"
        );
        assert_eq!(value["error_code"], "UNAUTHENTICATED", "{context}: {value}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE), "{context}");

        for role in Role::ALL {
            let (status, value) = harness
                .as_user(role.as_str(), route.method.clone(), &uri, body.clone())
                .await;
            let allowed = role.permits(route.rule.action);
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{context}: {role} must be allowed ({:?}), got {status} {value}",
                    route.rule.action
                );
                // The route exists: the table and the router agree.
                assert_ne!(
                    value["error_code"], "ENDPOINT_NOT_FOUND",
                    "{context}: {value}"
                );
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{context}: {value}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{context}: {role} must be denied ({:?}), got {value}",
                    route.rule.action
                );
                assert_eq!(
                    value["error_code"], "PERMISSION_DENIED",
                    "{context}: {value}"
                );
                let message = value["message"].as_str().unwrap_or_default();
                assert!(message.contains(role.as_str()), "{context}: {message}");
            }
            checked += 1;
        }
    }
    assert!(checked > 400, "only {checked} route x role checks ran");
}

both_backends!(route_role_matrix_sqlite, route_role_matrix_postgres => case_route_role_matrix);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_basic_bearer_revoked_expired_and_malformed() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let search = "/api/2.0/mlflow/experiments/search?max_results=1";

    harness
        .expect("editor", Method::GET, search, None, StatusCode::OK)
        .await;
    let (status, value, _) = harness
        .send(
            Method::GET,
            search,
            Some(&basic("editor", "wrong password")),
            None,
        )
        .await;
    assert_eq!(
        (status, value["error_code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );
    let (status, _, _) = harness
        .send(Method::GET, search, Some(&basic("nobody", PASSWORD)), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for malformed in ["Basic !!!", "Digest abc", "Basic", "Bearer slw_nothing"] {
        let (status, value, _) = harness
            .send(Method::GET, search, Some(malformed), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{malformed}: {value}");
    }

    let issued = harness
        .app
        .create_token("viewer", None, "ci")
        .await
        .unwrap();
    let bearer = format!("Bearer {}", issued.token.expose());
    let (status, value, _) = harness.send(Method::GET, search, Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    // The token acts with its user's role.
    let (status, value, _) = harness
        .send(
            Method::POST,
            "/api/2.0/mlflow/experiments/create",
            Some(&bearer),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    let (_, whoami, _) = harness
        .send(Method::GET, "/api/slipway/v1/whoami", Some(&bearer), None)
        .await;
    assert_eq!(whoami["user"], "viewer");
    assert_eq!(whoami["role"], "viewer");

    // A wrong secret with a real token id is refused.
    let forged = format!("Bearer slw_{}_{}", issued.info.id, "0".repeat(64));
    let (status, _, _) = harness.send(Method::GET, search, Some(&forged), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Revocation takes effect at once, although the credential was cached.
    harness.app.revoke_token(&issued.info.id).await.unwrap();
    let (status, _, _) = harness.send(Method::GET, search, Some(&bearer), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An expired token is refused.
    let short = harness
        .app
        .create_token("viewer", Some(Duration::from_millis(1)), "short")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, _, _) = harness
        .send(
            Method::GET,
            search,
            Some(&format!("Bearer {}", short.token.expose())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A changed role applies to cached credentials too.
    harness
        .app
        .set_user_role("editor", Role::Viewer)
        .await
        .unwrap();
    harness
        .expect(
            "editor",
            Method::POST,
            "/api/2.0/mlflow/experiments/create",
            Some(json!({"name": "y"})),
            StatusCode::FORBIDDEN,
        )
        .await;

    // Health and version stay open for probes.
    let (status, _, _) = harness.send(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_resource_permissions_refine_roles() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let api = "/api/2.0/mlflow";
    let mut experiments = Vec::new();
    let mut runs = Vec::new();
    for name in ["granted", "other"] {
        let (_, created) = harness
            .as_user(
                "admin",
                Method::POST,
                &format!("{api}/experiments/create"),
                Some(json!({"name": name})),
            )
            .await;
        let id = created["experiment_id"].as_str().unwrap().to_owned();
        let (_, run) = harness
            .as_user(
                "admin",
                Method::POST,
                &format!("{api}/runs/create"),
                Some(json!({"experiment_id": id})),
            )
            .await;
        runs.push(run["run"]["info"]["run_id"].as_str().unwrap().to_owned());
        experiments.push(id);
    }
    harness
        .app
        .set_permission(
            "viewer",
            Resource::experiment(&experiments[0]),
            Permission::Edit,
        )
        .await
        .unwrap();
    harness
        .app
        .set_permission(
            "editor",
            Resource::experiment(&experiments[0]),
            Permission::NoPermissions,
        )
        .await
        .unwrap();
    harness
        .app
        .set_permission(
            "editor",
            Resource::registered_model("secret-model"),
            Permission::Read,
        )
        .await
        .unwrap();

    let log =
        |run: &str| json!({"run_id": run, "key": "m", "value": 1.0, "timestamp": 1, "step": 0});
    // The viewer may now write to the granted experiment's runs, and only there.
    harness
        .expect(
            "viewer",
            Method::POST,
            &format!("{api}/runs/log-metric"),
            Some(log(&runs[0])),
            StatusCode::OK,
        )
        .await;
    harness
        .expect(
            "viewer",
            Method::POST,
            &format!("{api}/runs/log-metric"),
            Some(log(&runs[1])),
            StatusCode::FORBIDDEN,
        )
        .await;
    // EDIT is not MANAGE: no deleting.
    harness
        .expect(
            "viewer",
            Method::POST,
            &format!("{api}/runs/delete"),
            Some(json!({"run_id": runs[0]})),
            StatusCode::FORBIDDEN,
        )
        .await;

    // NO_PERMISSIONS hides the experiment from an editor, by id, by name and through its runs.
    let get = format!("{api}/experiments/get?experiment_id={}", experiments[0]);
    let (status, value) = harness.as_user("editor", Method::GET, &get, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert!(
        value["message"]
            .as_str()
            .unwrap()
            .contains("NO_PERMISSIONS"),
        "{value}"
    );
    harness
        .expect(
            "editor",
            Method::GET,
            &format!("{api}/experiments/get-by-name?experiment_name=granted"),
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    harness
        .expect(
            "editor",
            Method::GET,
            &format!("{api}/runs/get?run_id={}", runs[0]),
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    harness
        .expect(
            "editor",
            Method::POST,
            &format!("{api}/runs/log-metric"),
            Some(log(&runs[1])),
            StatusCode::OK,
        )
        .await;

    // READ on a registered model: the editor may look, not register versions.
    harness
        .expect(
            "editor",
            Method::POST,
            &format!("{api}/registered-models/create"),
            Some(json!({"name": "secret-model"})),
            StatusCode::FORBIDDEN,
        )
        .await;
    harness
        .expect(
            "editor",
            Method::POST,
            &format!("{api}/registered-models/create"),
            Some(json!({"name": "open-model"})),
            StatusCode::OK,
        )
        .await;
    // Nor deploy it: a deployment writes to the model it serves.
    harness
        .expect(
            "editor",
            Method::POST,
            "/api/slipway/v1/deployments",
            Some(json!({"name": "d", "model_uri": "models:/secret-model/1"})),
            StatusCode::FORBIDDEN,
        )
        .await;
    // Nor have a worker retrain it: firing a trigger writes a version of the model it names.
    let trigger = |name: &str, model: &str| {
        json!({"name": name, "model": model, "pipeline": "p.yml", "model_path": "model",
               "gate": {"label": "y"}})
    };
    harness
        .expect(
            "admin",
            Method::PUT,
            "/api/slipway/v1/triggers",
            Some(json!({"config": {"triggers": [
                trigger("secret-retrain", "secret-model"),
                trigger("open-retrain", "open-model"),
            ]}})),
            StatusCode::OK,
        )
        .await;
    for (path, body) in [
        ("fire", json!({"reason": "r"})),
        ("data", json!({"path": "raw/", "digest": "ab12"})),
    ] {
        harness
            .expect(
                "editor",
                Method::POST,
                &format!("/api/slipway/v1/triggers/secret-retrain/{path}"),
                Some(body.clone()),
                StatusCode::FORBIDDEN,
            )
            .await;
    }
    harness
        .expect(
            "editor",
            Method::POST,
            "/api/slipway/v1/triggers/open-retrain/fire",
            Some(json!({"reason": "r"})),
            StatusCode::OK,
        )
        .await;
    harness
        .expect(
            "editor",
            Method::PUT,
            "/api/slipway/v1/triggers",
            Some(json!({"config": {"triggers": []}})),
            StatusCode::FORBIDDEN,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_clients_are_slowed_down() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let search = "/api/2.0/mlflow/experiments/search";
    let wrong = basic("viewer", "not the password");
    for _ in 0..slipway_app::identity::FREE_FAILURES {
        let (status, _, _) = harness.send(Method::GET, search, Some(&wrong), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let started = Instant::now();
    let (status, _, _) = harness.send(Method::GET, search, Some(&wrong), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the sixth failure was answered after {:?}",
        started.elapsed()
    );
    // A client that is already authenticated (cached) is not held up by the penalty.
    harness
        .expect("viewer", Method::GET, search, None, StatusCode::OK)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_manages_users_tokens_and_permissions() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let native = "/api/slipway/v1";
    let (status, value) = harness
        .as_user(
            "admin",
            Method::POST,
            &format!("{native}/users"),
            Some(json!({"name": "erin", "role": "editor", "password": "longenough"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["user"]["role"], "editor");
    assert!(!value.to_string().contains("longenough"));
    let (status, value) = harness
        .as_user(
            "admin",
            Method::POST,
            &format!("{native}/users"),
            Some(json!({"name": "erin", "role": "editor"})),
        )
        .await;
    assert_eq!(
        (status, value["error_code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("RESOURCE_ALREADY_EXISTS"))
    );
    let (status, value) = harness
        .as_user(
            "admin",
            Method::POST,
            &format!("{native}/users"),
            Some(json!({"name": "frank", "role": "root"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert!(
        value["message"]
            .as_str()
            .unwrap()
            .contains("viewer, editor, approver, admin")
    );
    harness
        .expect(
            "admin",
            Method::POST,
            &format!("{native}/users"),
            Some(json!({"name": "frank", "role": "viewer", "password": "short"})),
            StatusCode::BAD_REQUEST,
        )
        .await;

    let (status, value) = harness
        .as_user(
            "admin",
            Method::POST,
            &format!("{native}/tokens"),
            Some(json!({"user": "erin", "expires_in": "30d"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let token = value["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("slw_"));
    let (_, listed) = harness
        .as_user(
            "admin",
            Method::GET,
            &format!("{native}/tokens?user=erin"),
            None,
        )
        .await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&token[20..]),
        "a listing never shows secrets"
    );
    harness
        .expect(
            "admin",
            Method::POST,
            &format!("{native}/tokens"),
            Some(json!({"user": "erin", "expires_in": "forever"})),
            StatusCode::BAD_REQUEST,
        )
        .await;

    harness.expect("admin", Method::PUT, &format!("{native}/permissions"), Some(json!({"user": "erin", "resource_type": "experiment", "resource_id": "0", "permission": "READ"})), StatusCode::OK).await;
    let (_, value) = harness
        .as_user(
            "admin",
            Method::GET,
            &format!("{native}/permissions?user=erin"),
            None,
        )
        .await;
    assert_eq!(value["permissions"][0]["permission"], "READ");
    let (status, value, _) = harness
        .send(
            Method::GET,
            &format!("{native}/whoami"),
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["permissions"][0]["resource_id"], "0");

    let (status, value) = harness
        .as_user(
            "admin",
            Method::PATCH,
            &format!("{native}/users/erin"),
            Some(json!({"role": "approver"})),
        )
        .await;
    assert_eq!(
        (status, value["user"]["role"].as_str()),
        (StatusCode::OK, Some("approver"))
    );
    harness
        .expect(
            "admin",
            Method::DELETE,
            &format!("{native}/users/erin"),
            None,
            StatusCode::OK,
        )
        .await;
    let (status, _, _) = harness
        .send(
            Method::GET,
            &format!("{native}/whoami"),
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deleted user's tokens die with them"
    );
}

/// Promotions end to end over HTTP: protected aliases and stages refuse direct changes, a
/// request needs another user's approval and passing checks, the approval moves the alias,
/// rollback restores the previous version, lineage and the audit log tell the whole story.
async fn case_promotion_flow(uri: &str) {
    let harness = harness(uri).await;
    harness
        .app
        .create_user("approver2", Role::Approver, Some(Secret::new(PASSWORD)))
        .await
        .unwrap();
    let api = "/api/2.0/mlflow";
    let native = "/api/slipway/v1";
    let call = |user: &'static str, method: Method, path: String, body: Option<Value>| {
        let harness = &harness;
        async move { harness.as_user(user, method, &path, body).await }
    };

    // Two source runs: one good (auc 0.95), one not (auc 0.80).
    let (_, created) = call(
        "editor",
        Method::POST,
        format!("{api}/experiments/create"),
        Some(json!({"name": "fraud-exp"})),
    )
    .await;
    let experiment = created["experiment_id"].as_str().unwrap().to_owned();
    let mut runs = Vec::new();
    for auc in [0.95, 0.80] {
        let (_, run) = call(
            "editor",
            Method::POST,
            format!("{api}/runs/create"),
            Some(json!({"experiment_id": experiment})),
        )
        .await;
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        let (status, value) = call(
            "editor",
            Method::POST,
            format!("{api}/runs/log-metric"),
            Some(json!({"run_id": run_id, "key": "auc", "value": auc, "timestamp": 1, "step": 0})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{value}");
        runs.push(run_id);
    }
    let (status, value) = call(
        "editor",
        Method::POST,
        format!("{api}/registered-models/create"),
        Some(json!({"name": "fraud"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    for run in [&runs[0], &runs[1], &runs[0]] {
        let (status, value) = call(
            "editor",
            Method::POST,
            format!("{api}/model-versions/create"),
            Some(json!({"name": "fraud", "source": format!("runs:/{run}/model"), "run_id": run})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{value}");
    }

    // Without a policy an alias moves freely; set the policy (admins only).
    let (status, _) = call(
        "editor",
        Method::PUT,
        format!("{native}/policies/fraud"),
        Some(json!({"checks": "metrics.auc >= 0.9"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, value) = call(
        "admin",
        Method::PUT,
        format!("{native}/policies/fraud"),
        Some(json!({"checks": "metrics.auc >= 0.9 and"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    let (status, value) = call(
        "admin",
        Method::PUT,
        format!("{native}/policies/fraud"),
        Some(json!({"checks": "metrics.auc >= 0.9"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(
        value["policy"]["protected_aliases"],
        json!(["production", "champion"])
    );
    assert_eq!(value["policy"]["required_approvals"], 1);

    // MLflow's own routes are refused, with a message that says what to do.
    let (status, value) = call(
        "admin",
        Method::POST,
        format!("{api}/registered-models/alias"),
        Some(json!({"name": "fraud", "alias": "production", "version": "1"})),
    )
    .await;
    assert_eq!(
        (status, value["error_code"].as_str()),
        (StatusCode::FORBIDDEN, Some("PERMISSION_DENIED")),
        "{value}"
    );
    let message = value["message"].as_str().unwrap();
    assert!(
        message.contains("promotion policy")
            && message.contains("slipway promote request fraud 1 --to production"),
        "{message}"
    );
    let (status, _) = call("editor", Method::POST, format!("{api}/model-versions/transition-stage"), Some(json!({"name": "fraud", "version": "1", "stage": "Production", "archive_existing_versions": false}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call("editor", Method::POST, format!("{api}/model-versions/transition-stage"), Some(json!({"name": "fraud", "version": "1", "stage": "Staging", "archive_existing_versions": false}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        "editor",
        Method::POST,
        format!("{api}/registered-models/alias"),
        Some(json!({"name": "fraud", "alias": "candidate", "version": "2"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "unprotected aliases still move freely"
    );

    // Request; the requester cannot approve; someone else can, and the alias moves.
    let (status, value) = call(
        "approver",
        Method::POST,
        format!("{native}/promotions"),
        Some(json!({"name": "fraud", "version": "1", "alias": "production", "reason": "beats v0"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["checks"]["passed"], true);
    let first = value["promotion"]["id"].as_i64().unwrap();
    let (status, value) = call(
        "approver",
        Method::POST,
        format!("{native}/promotions/{first}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert!(
        value["message"]
            .as_str()
            .unwrap()
            .contains("cannot approve"),
        "{value}"
    );
    let (status, _) = call(
        "editor",
        Method::POST,
        format!("{native}/promotions/{first}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "editors do not approve");
    let (status, value) = call(
        "approver2",
        Method::POST,
        format!("{native}/promotions/{first}/approve"),
        Some(json!({"reason": "looked at the eval"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["promotion"]["state"], "approved");
    let (_, alias) = call(
        "viewer",
        Method::GET,
        format!("{api}/registered-models/alias?name=fraud&alias=production"),
        None,
    )
    .await;
    assert_eq!(alias["model_version"]["version"], "1");
    let (status, _) = call(
        "approver2",
        Method::POST,
        format!("{native}/promotions/{first}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a closed request takes no more decisions"
    );

    // Deleting the version or the model that holds production is refused too.
    let (status, value) = call(
        "editor",
        Method::DELETE,
        format!("{api}/model-versions/delete"),
        Some(json!({"name": "fraud", "version": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    let (status, value) = call(
        "admin",
        Method::DELETE,
        format!("{api}/registered-models/delete"),
        Some(json!({"name": "fraud"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");

    // A version whose source run fails the checks cannot be approved; it can be rejected.
    let (_, value) = call(
        "editor",
        Method::POST,
        format!("{native}/promotions"),
        Some(json!({"name": "fraud", "version": "2", "alias": "production"})),
    )
    .await;
    assert_eq!(value["checks"]["passed"], false, "{value}");
    let second = value["promotion"]["id"].as_i64().unwrap();
    let (status, value) = call(
        "approver",
        Method::POST,
        format!("{native}/promotions/{second}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert!(
        value["message"].as_str().unwrap().contains("does not pass"),
        "{value}"
    );
    let (status, _) = call(
        "approver",
        Method::POST,
        format!("{native}/promotions/{second}/reject"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a rejection needs a reason"
    );
    let (status, value) = call(
        "approver",
        Method::POST,
        format!("{native}/promotions/{second}/reject"),
        Some(json!({"reason": "auc too low"})),
    )
    .await;
    assert_eq!(
        (status, value["promotion"]["state"].as_str()),
        (StatusCode::OK, Some("rejected"))
    );

    // Version 3 goes to production; rollback brings version 1 back without an approval.
    let (_, value) = call(
        "editor",
        Method::POST,
        format!("{native}/promotions"),
        Some(json!({"name": "fraud", "version": "3", "alias": "production"})),
    )
    .await;
    let third = value["promotion"]["id"].as_i64().unwrap();
    let (status, _) = call(
        "approver",
        Method::POST,
        format!("{native}/promotions/{third}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, alias) = call(
        "viewer",
        Method::GET,
        format!("{api}/registered-models/alias?name=fraud&alias=production"),
        None,
    )
    .await;
    assert_eq!(alias["model_version"]["version"], "3");
    let (status, _) = call(
        "editor",
        Method::POST,
        format!("{native}/registered-models/rollback"),
        Some(json!({"name": "fraud", "alias": "production"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "rollback is for approvers");
    let (status, value) = call(
        "approver2",
        Method::POST,
        format!("{native}/registered-models/rollback"),
        Some(json!({"name": "fraud", "alias": "production"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(
        (
            value["change"]["previous_version"].as_i64(),
            value["change"]["version"].as_i64()
        ),
        (Some(3), Some(1))
    );
    let (_, alias) = call(
        "viewer",
        Method::GET,
        format!("{api}/registered-models/alias?name=fraud&alias=production"),
        None,
    )
    .await;
    assert_eq!(alias["model_version"]["version"], "1");

    // Lineage of version 1: its run and metric, who registered it, who approved, alias moves.
    let (status, value) = call(
        "viewer",
        Method::GET,
        format!("{native}/lineage?name=fraud&version=1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let lineage = &value["lineage"];
    assert_eq!(lineage["model_version"]["registered_by"], "editor");
    assert_eq!(lineage["run"]["info"]["run_id"], runs[0]);
    assert_eq!(lineage["run"]["data"]["metrics"][0]["key"], "auc");
    assert_eq!(
        lineage["promotions"][0]["decisions"][0]["user"],
        "approver2"
    );
    let vias: Vec<&str> = lineage["alias_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["via"].as_str().unwrap())
        .collect();
    assert_eq!(
        vias,
        [
            format!("promotion:{first}").as_str(),
            format!("promotion:{third}").as_str(),
            "rollback"
        ]
    );

    // The audit log has all of it, and the chain holds.
    let (_, value) = call(
        "admin",
        Method::GET,
        format!("{native}/audit?resource=registered_model:fraud&max_results=1000"),
        None,
    )
    .await;
    let actions: Vec<(String, String)> = value["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("policies.set", "ok"),
        ("registry.protected_change", "denied"),
        ("promotions.request", "ok"),
        ("promotions.approve", "denied"),
        ("promotions.approve", "ok"),
        ("promotions.reject", "ok"),
        ("registry.rollback_alias", "ok"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, o)| a == expected.0 && o == expected.1),
            "{expected:?} missing from {actions:?}"
        );
    }
    let (_, verify) = call("admin", Method::GET, format!("{native}/audit/verify"), None).await;
    assert_eq!(verify["intact"], true, "{verify}");
    let (status, _) = call("approver", Method::GET, format!("{native}/audit"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the audit log is for admins");
}

both_backends!(promotion_flow_sqlite, promotion_flow_postgres => case_promotion_flow);

/// Every entry of the audit log, oldest first.
async fn audit_entries(app: &App) -> Vec<slipway_core::audit::AuditRecord> {
    app.audit_log(
        &slipway_core::ports::AuditFilter::default(),
        Some(10_000),
        None,
    )
    .await
    .unwrap()
    .entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_issues_every_request_id_itself() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let search = "/api/2.0/mlflow/experiments/search";
    for authorization in [None, Some(basic("viewer", PASSWORD))] {
        let request = Request::builder()
            .uri(search)
            .header("x-request-id", "attacker")
            .header("x-request-id", "attacker-2");
        let request = match &authorization {
            Some(value) => request.header(header::AUTHORIZATION, value),
            None => request,
        };
        let response = harness
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let ours = response.headers().get_all("x-request-id");
        let ours: Vec<_> = ours
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(
            !ours[0].contains("attacker") && ours[0].len() == 36,
            "{ours:?}"
        );
        if authorization.is_none() {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let entries = audit_entries(&harness.app).await;
            let denied = entries.last().unwrap();
            assert_eq!(denied.request_id.as_deref(), Some(ours[0].as_str()));
            assert!(
                denied.summary.contains("\"client_request_id\":\"attacker"),
                "{}",
                denied.summary
            );
        } else {
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    // A write is audited under the server's id too.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/2.0/mlflow/experiments/create")
        .header("x-request-id", "attacker")
        .header(header::AUTHORIZATION, basic("editor", PASSWORD))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"name":"request-ids"}"#))
        .unwrap();
    let response = harness.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ours = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let created = audit_entries(&harness.app).await.pop().unwrap();
    assert_eq!(created.action, "experiments.create");
    assert_eq!(created.request_id.as_deref(), Some(ours.as_str()));
}

/// A failed lookup of the request's resource refuses the request: the role alone must not decide
/// for a caller whose permissions could deny it.
async fn case_failed_permission_lookups_fail_closed(uri: &str) {
    let harness = harness(uri).await;
    let created = harness
        .expect(
            "admin",
            Method::POST,
            "/api/2.0/mlflow/experiments/create",
            Some(json!({"name": "hidden-from-editor"})),
            StatusCode::OK,
        )
        .await;
    let experiment_id = created["experiment_id"].as_str().unwrap().to_owned();
    let run = harness
        .expect(
            "admin",
            Method::POST,
            "/api/2.0/mlflow/runs/create",
            Some(json!({"experiment_id": experiment_id})),
            StatusCode::OK,
        )
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    harness
        .app
        .set_permission(
            "editor",
            Resource::experiment(experiment_id.clone()),
            Permission::NoPermissions,
        )
        .await
        .unwrap();
    let update = json!({"run_id": run_id, "status": "FINISHED"});
    harness
        .expect(
            "editor",
            Method::POST,
            "/api/2.0/mlflow/runs/update",
            Some(update.clone()),
            StatusCode::FORBIDDEN,
        )
        .await;
    // Reading the run now fails (its params are gone), while the update itself needs only the
    // runs table: deciding by the editor's role would let the update through.
    slipway_testkit::execute_sql(uri, "DROP TABLE params").await;
    let body = harness
        .expect(
            "editor",
            Method::POST,
            "/api/2.0/mlflow/runs/update",
            Some(update),
            StatusCode::INTERNAL_SERVER_ERROR,
        )
        .await;
    assert_eq!(body["error_code"], "INTERNAL_ERROR", "{body}");
    let updates = audit_entries(&harness.app)
        .await
        .into_iter()
        .filter(|entry| entry.action == "runs.update")
        .count();
    assert_eq!(updates, 0);
}

both_backends!(failed_permission_lookups_fail_closed_sqlite, failed_permission_lookups_fail_closed_postgres => case_failed_permission_lookups_fail_closed);

/// A search from `client` (as the server's listener would tag it) with `authorization`.
async fn search_from(
    harness: &Harness,
    client: std::net::IpAddr,
    authorization: &str,
) -> (StatusCode, Duration) {
    let mut request = Request::builder()
        .uri("/api/2.0/mlflow/experiments/search")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            client, 40_000,
        )));
    let started = Instant::now();
    let response = harness.router.clone().oneshot(request).await.unwrap();
    (response.status(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_cost_what_wrong_secrets_cost() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let token = harness
        .app
        .create_token("viewer", None, "timing")
        .await
        .unwrap();
    let id = &token.info.id;
    let pairs = [
        (
            basic("viewer", "not the password"),
            basic("nobody-at-all", "not the password"),
        ),
        (
            format!("Bearer slw_{id}_{}", "0".repeat(64)),
            format!("Bearer slw_00000000deadbeef_{}", "0".repeat(64)),
        ),
    ];
    // Each attempt from its own address, so the failure throttle stays out of the figures.
    let mut address = 0u32;
    for (wrong_secret, unknown_name) in pairs {
        let (mut wrong_total, mut unknown_total) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..4 {
            for (authorization, total) in [
                (&wrong_secret, &mut wrong_total),
                (&unknown_name, &mut unknown_total),
            ] {
                address += 1;
                let client = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + address));
                let (status, elapsed) = search_from(&harness, client, authorization).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                *total += elapsed;
            }
        }
        assert!(
            unknown_total * 2 >= wrong_total,
            "{unknown_name:?}: unknown {unknown_total:?} vs wrong secret {wrong_total:?}"
        );
        eprintln!("unknown {unknown_total:?} vs wrong secret {wrong_total:?} (4 tries each)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_from_one_address_queue_and_others_stay_fast() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = Arc::new(harness(&db.uri).await);
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let colleague: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let wrong = basic("viewer", "not the password");
    for _ in 0..slipway_app::identity::FREE_FAILURES {
        let (status, _) = search_from(&harness, attacker, &wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Each of these waits at least the first penalty (250 ms), one after the other.
    const GUESSES: u32 = 4;
    let started = Instant::now();
    let flood: Vec<_> = (0..GUESSES)
        .map(|_| {
            let harness = harness.clone();
            let wrong = wrong.clone();
            tokio::spawn(async move { search_from(&harness, attacker, &wrong).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A login that is not cached yet, from another address, during the flood.
    let (status, colleague_took) =
        search_from(&harness, colleague, &basic("editor", PASSWORD)).await;
    assert_eq!(status, StatusCode::OK);
    let colleague_done = started.elapsed();
    for guess in flood {
        assert_eq!(guess.await.unwrap().0, StatusCode::UNAUTHORIZED);
    }
    let flood_took = started.elapsed();
    eprintln!(
        "{GUESSES} parallel guesses took {flood_took:?}; the colleague's login {colleague_took:?}"
    );
    assert!(
        flood_took >= Duration::from_millis(250) * (GUESSES - 1),
        "{GUESSES} parallel guesses were answered within {flood_took:?}"
    );
    assert!(
        colleague_took < Duration::from_secs(2) && colleague_done < flood_took,
        "the colleague's login took {colleague_took:?} (flood {flood_took:?})"
    );
}

/// A flood of uncached checks from one address holds a bounded number of waiting requests:
/// beyond them each is refused at once, and a colleague elsewhere is not slowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_checks_per_address_are_bounded() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = Arc::new(harness(&db.uri).await);
    let attacker: std::net::IpAddr = "127.0.0.4".parse().unwrap();
    let wrong = basic("viewer", "not the password");
    for _ in 0..slipway_app::identity::FREE_FAILURES {
        search_from(&harness, attacker, &wrong).await;
    }
    let flood: Vec<_> = (0..slipway_app::identity::MAX_WAITING_PER_ADDRESS + 8)
        .map(|_| {
            let harness = harness.clone();
            let wrong = wrong.clone();
            tokio::spawn(async move { search_from(&harness, attacker, &wrong).await })
        })
        .collect();
    // The queued ones wait out growing penalties one after the other; those past the bound
    // are answered while the first still waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut quick = 0;
    for guess in flood {
        if guess.is_finished() {
            let (status, took) = guess.await.unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            // Quicker than the first penalty (250 ms) any check in the queue waits out.
            if took < Duration::from_millis(250) {
                quick += 1;
            }
        } else {
            guess.abort();
        }
    }
    assert!(quick >= 8, "only {quick} of the flood were refused at once");
}

/// A request from `client` (as the server's listener would tag it); returns the status.
async fn send_from(
    harness: &Harness,
    client: std::net::IpAddr,
    method: Method,
    uri: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> StatusCode {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(authorization) = authorization {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&body).unwrap())
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body).unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            client, 40_000,
        )));
    harness
        .router
        .clone()
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

/// A flood of refused requests grows the audit log by a bounded number of entries whose counts
/// add up to the flood, and the chain stays intact.
async fn case_refusal_floods_are_summarized(uri: &str) {
    let harness = harness(uri).await;
    let flooder: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let bystander: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let search = "/api/2.0/mlflow/experiments/search";
    let before = audit_entries(&harness.app).await.len();
    const FLOOD: usize = 60;
    let wrong = basic("viewer", "not the password");
    for i in 0..FLOOD {
        // Mostly no credentials; a few wrong passwords (fewer than the throttle lets through).
        let authorization = (i % 20 == 1).then_some(wrong.as_str());
        let status = send_from(&harness, flooder, Method::GET, search, authorization, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // An editor's refused writes are counted the same way, separately.
    const DENIED: usize = 10;
    let viewer = basic("viewer", PASSWORD);
    for i in 0..DENIED {
        let body = json!({"name": format!("not-for-viewers-{i}")});
        let create = "/api/2.0/mlflow/experiments/create";
        let status = send_from(
            &harness,
            flooder,
            Method::POST,
            create,
            Some(&viewer),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Another address's single refusal shows up at once.
    let status = send_from(&harness, bystander, Method::GET, search, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let during: Vec<_> = audit_entries(&harness.app).await.split_off(before);
    assert_eq!(
        during.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["request.denied"; 3],
        "{during:#?}"
    );
    assert_eq!(
        during[2].resource,
        "route:GET /api/2.0/mlflow/experiments/search"
    );
    // Shutdown writes what the windows counted: one summary per address and kind with more.
    assert_eq!(harness.app.flush_refusals(true).await.unwrap(), 2);
    let after: Vec<_> = audit_entries(&harness.app).await.split_off(before);
    assert_eq!(after.len(), 5);
    let summaries: Vec<Value> = after
        .iter()
        .filter(|e| e.action == "request.denied.summary")
        .map(|e| {
            assert_eq!(e.resource, "client:127.0.0.2");
            assert_eq!(e.outcome, slipway_core::audit::Outcome::Denied);
            serde_json::from_str(&e.summary).unwrap()
        })
        .collect();
    let unauthenticated = summaries
        .iter()
        .find(|s| s["kind"] == "unauthenticated")
        .unwrap();
    assert_eq!(unauthenticated["count"], FLOOD - 1);
    assert_eq!(
        unauthenticated["names"],
        json!(["claimed:viewer", "unauthenticated"]),
        "{unauthenticated}"
    );
    assert!(unauthenticated["first_ms"].as_i64() <= unauthenticated["last_ms"].as_i64());
    let denied = summaries
        .iter()
        .find(|s| s["kind"] == "permission_denied")
        .unwrap();
    assert_eq!(denied["count"], DENIED - 1);
    assert_eq!(denied["names"], json!(["viewer"]));
    let report = harness.app.verify_audit(|_| {}).await.unwrap();
    assert!(report.broken.is_none(), "{report:?}");
}

both_backends!(refusal_floods_are_summarized_sqlite, refusal_floods_are_summarized_postgres => case_refusal_floods_are_summarized);

/// No confused deputy: a user with `NO_PERMISSIONS` on an experiment can neither register a
/// version whose files come from it (by run, by `runs:/` source, by artifact path) nor deploy
/// or roll out a version someone else registered from it; each refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_experiments_stay_hidden_through_the_registry_and_deployments() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let api = "/api/2.0/mlflow";
    let native = "/api/slipway/v1";
    let experiment = harness.create_experiment("admin", "secret").await;
    let run = harness
        .expect(
            "admin",
            Method::POST,
            &format!("{api}/runs/create"),
            Some(json!({"experiment_id": experiment})),
            StatusCode::OK,
        )
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let artifact_uri = run["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["m", "n"] {
        harness.create_model("admin", name).await;
    }
    harness
        .app
        .set_permission(
            "editor",
            Resource::experiment(&experiment),
            Permission::NoPermissions,
        )
        .await
        .unwrap();

    let create = format!("{api}/model-versions/create");
    for body in [
        json!({"name": "m", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        json!({"name": "m", "source": format!("runs:/{run_id}/model")}),
        json!({"name": "m", "source": format!("{artifact_uri}/model")}),
    ] {
        let refused = harness
            .expect(
                "editor",
                Method::POST,
                &create,
                Some(body.clone()),
                StatusCode::FORBIDDEN,
            )
            .await;
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("experiment {experiment}"))),
            "{body}: {refused}"
        );
    }
    // Someone who may read it registers version 1 of both models, with `n@production`.
    for name in ["m", "n"] {
        harness
            .expect(
                "admin",
                Method::POST,
                &create,
                Some(json!({"name": name, "source": format!("runs:/{run_id}/model"), "run_id": run_id})),
                StatusCode::OK,
            )
            .await;
    }
    // The editor may read the models, but not deploy what comes from the hidden experiment.
    let refused = harness
        .expect(
            "editor",
            Method::POST,
            &format!("{native}/deployments"),
            Some(json!({"name": "d", "model_uri": "models:/m/1"})),
            StatusCode::FORBIDDEN,
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("NO_PERMISSIONS")),
        "{refused}"
    );
    let audit = audit_entries(&harness.app).await;
    let denials = audit
        .iter()
        .filter(|e| e.action == "registry.source_hidden" && e.actor == "editor")
        .count();
    assert_eq!(denials, 4, "three registrations and one deployment refused");
}

/// Rollout measurements decide promotions, so only a replica's credential may report them: an
/// editor's forged report is refused (and audited), a replica's is counted under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_replicas_report_measurements() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let report = "/api/slipway/v1/deployments/missing/reports";
    let body = json!({
        "rollout_id": 1,
        "stage": 0,
        "stats": slipway_core::deployment::WindowStats::default(),
    });
    for role in ["viewer", "editor", "approver"] {
        let refused = harness
            .expect(
                role,
                Method::POST,
                report,
                Some(body.clone()),
                StatusCode::FORBIDDEN,
            )
            .await;
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains(role)),
            "{refused}"
        );
    }
    // A replica passes the access rule (the deployment itself does not exist here).
    harness
        .expect(
            "replica",
            Method::POST,
            report,
            Some(body),
            StatusCode::NOT_FOUND,
        )
        .await;
    // The first refusal from this address is written at once (the rest of its window is
    // summarized at the window's end, see `refusal_floods_are_summarized`).
    let audit = audit_entries(&harness.app).await;
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "request.denied" && e.resource.ends_with("/reports"))
        .collect();
    assert_eq!(refused.len(), 1, "{audit:?}");
    assert!(refused[0].summary.contains("only a replica"), "{refused:?}");
    // The controller keeps whose data it summed.
    let app = harness.app.clone();
    let controller = slipway_app::rollout::Controller::new(&app);
    let mut stats = slipway_core::deployment::WindowStats::default();
    stats.stable.requests = 7;
    stats.candidate.requests = 3;
    assert!(controller.record("d", 1, 0, &stats, "replica:r1"));
    assert!(controller.record("d", 1, 0, &stats, "server"));
    let window = controller.live_window("d").expect("a window");
    assert_eq!(window.sources["replica:r1"], 10);
    assert_eq!(window.sources["server"], 10);
}

/// A refusal names the request it refused. Rolling a deployment back needs an approver, yet it
/// is not approving a promotion, and the message must not say it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_request_it_refused() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let refused = harness
        .expect(
            "editor",
            Method::POST,
            "/api/slipway/v1/deployments/fraud/rollback",
            Some(json!({})),
            StatusCode::FORBIDDEN,
        )
        .await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("POST /api/slipway/v1/deployments/fraud/rollback")
            && message.contains("approver"),
        "{message}"
    );
    assert!(!message.contains("approve "), "{message}");
}

/// Registering freezes a version's folder, so a version may not be registered on an
/// experiment's (or the store's) artifact root: that would freeze every run in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_cannot_freeze_an_experiments_artifacts() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let api = "/api/2.0/mlflow";
    let experiment = harness.create_experiment("editor", "shared").await;
    harness.create_model("editor", "m").await;
    for source in [
        format!("mlflow-artifacts:/{experiment}"),
        format!("mlflow-artifacts:/{experiment}/artifacts"),
        format!("mlflow-artifacts:/{experiment}/some-run"),
    ] {
        let refused = harness
            .expect(
                "editor",
                Method::POST,
                &format!("{api}/model-versions/create"),
                Some(json!({"name": "m", "source": source})),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("artifacts")),
            "{source}: {refused}"
        );
    }
    // Uploads to the experiment's runs go on.
    let put = harness
        .send(
            Method::PUT,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/run/artifacts/a.txt"),
            Some(&basic("editor", PASSWORD)),
            None,
        )
        .await;
    assert_eq!(put.0, StatusCode::OK, "{:?}", put.1);
}

/// A request over a connection whose client certificate the TLS listener verified acts as the
/// user the certificate names, with no password; a name nobody has is refused, and a header
/// sent along is what counts, so a certificate never lends its rights to a bad password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_acts_as_the_user_it_names() {
    let db = slipway_testkit::SqliteDatabase::create();
    let harness = harness(&db.uri).await;
    let send = |user: &'static str, authorization: Option<String>, path: &'static str| {
        let router = harness.router.clone();
        async move {
            let mut builder = Request::builder().method(Method::POST).uri(path);
            if let Some(authorization) = authorization {
                builder = builder.header(header::AUTHORIZATION, authorization);
            }
            let mut request = builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"name": format!("from-{user}")}).to_string(),
                ))
                .unwrap();
            request
                .extensions_mut()
                .insert(slipway_api::access::PeerCertificate {
                    user: user.to_owned(),
                });
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let create = "/api/2.0/mlflow/experiments/create";
    let (status, body) = send("editor", None, create).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let audit = audit_entries(&harness.app).await;
    let created = audit
        .iter()
        .find(|e| e.action == "experiments.create")
        .expect("the creation is audited");
    assert_eq!(created.actor, "editor", "{created:?}");
    // The certificate's user has their role's rights, and no more.
    let (status, body) = send("viewer", None, create).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = send("nobody-by-this-name", None, create).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send("admin", Some(basic("admin", "wrong")), create).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send("viewer", Some(basic("editor", PASSWORD)), create).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
