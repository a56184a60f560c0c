//! The delivery report over HTTP, on SQLite and PostgreSQL, from what the deployment tests'
//! harness really does: versions registered from runs, a deployment created on one, a canary
//! promoted by its analysis, a canary rolled back by it (the iris model fails on these rows),
//! traffic through the data plane (whose model runs are charged their CPU time), and an alert
//! rule that fires on that traffic and resolves. Only the clock is chosen: the report's period,
//! and the evaluation that sees the traffic's window empty. A user with `NO_PERMISSIONS` on the
//! model, on a server with authentication over the same store, sees none of it.
//!
//! A module of `deployments` (it reuses that harness and its fixture models).

use std::sync::atomic::{AtomicUsize, Ordering};

use slipway_app::identity::Secret;
use slipway_core::auth::{Permission, Resource, Role};

use super::*;

const PRICE: f64 = 0.05;
const PASSWORD: &str = "correct horse battery";
const DAY_MS: i64 = 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_report_counts_recorded_events_sqlite() {
    if let Some((h, uri)) = start(Backend::Sqlite).await {
        case_delivery_report(&h, &uri).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_report_counts_recorded_events_postgres() {
    if let Some((h, uri)) = start(Backend::Postgres).await {
        case_delivery_report(&h, &uri).await;
    }
}

/// [`Harness::start`] with a price per CPU hour; also the store's URI, for a second server.
async fn start(backend: Backend) -> Option<(Harness, String)> {
    if let Err(error) = slipway_serving::Runtime::load(None) {
        assert!(
            !slipway_testkit::in_ci(),
            "CI=true and ONNX Runtime is unavailable: {error}"
        );
        eprintln!("SKIPPED: the delivery tests need ONNX Runtime: {error}");
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
    let app = App::new(
        Arc::new(store),
        Arc::new(artifacts),
        AppSettings {
            cpu_hour_price: Some(PRICE),
            ..AppSettings::default()
        },
    );
    let deployments = Deployments::new(
        &app,
        PlaneConfig {
            sessions: 2,
            ..PlaneConfig::default()
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
    Some((harness, uri))
}

/// A run started now whose artifacts hold the breast-cancer MLflow model; registered as the
/// next version of [`MODEL`] with the run as its source. Returns (version, run's start time).
async fn version_from_a_run(h: &Harness, experiment_id: &Value) -> (String, i64) {
    let run = h
        .ok(
            "POST",
            &format!("{API}/runs/create"),
            Some(json!({ "experiment_id": experiment_id, "start_time": slipway_app::now_ms() })),
        )
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().expect("run_id");
    let root = run["run"]["info"]["artifact_uri"]
        .as_str()
        .expect("artifact_uri")
        .to_owned();
    let proxied = root
        .strip_prefix("mlflow-artifacts:/")
        .expect("a proxied artifact root");
    for file in ["MLmodel", "model.onnx"] {
        h.upload(
            &format!("{proxied}/model/{file}"),
            fixtures().join("mlflow_logreg_breast_cancer").join(file),
        )
        .await;
    }
    let created = h
        .ok(
            "POST",
            &format!("{API}/model-versions/create"),
            Some(json!({ "name": MODEL, "source": format!("{root}/model"), "run_id": run_id })),
        )
        .await;
    let version = created["model_version"]["version"]
        .as_str()
        .expect("version")
        .to_owned();
    // The start time as the tracking API reads it back, not as sent.
    let read = h
        .ok(
            "GET",
            &format!("{API}/runs/get{}", qs(&[("run_id", run_id)])),
            None,
        )
        .await;
    let start_time = read["run"]["info"]["start_time"]
        .as_i64()
        .or_else(|| read["run"]["info"]["start_time"].as_str()?.parse().ok())
        .expect("start_time");
    (version, start_time)
}

/// What the report says of these durations (integer milliseconds).
fn durations(values: &[i64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    };
    json!({
        "count": n,
        "median_ms": median,
        "mean_ms": sorted.iter().sum::<i64>() / n as i64,
        "max_ms": sorted[n - 1],
    })
}

fn approx(context: &str, got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{context}: {got} is not a number"));
    assert!(
        (got - want).abs() <= want.abs() * 1e-9,
        "{context}: {got} vs {want}"
    );
}

async fn report(h: &Harness, since: i64, until: i64) -> Value {
    h.ok(
        "GET",
        &format!("{NATIVE}/reports/delivery?since={since}&until={until}"),
        None,
    )
    .await
}

async fn case_delivery_report(h: &Harness, uri: &str) {
    let begun = slipway_app::now_ms();
    let experiment = h
        .ok(
            "POST",
            &format!("{API}/experiments/create"),
            Some(json!({ "name": "delivery" })),
        )
        .await["experiment_id"]
        .clone();
    let (first, first_start) = version_from_a_run(h, &experiment).await;
    let (second, second_start) = version_from_a_run(h, &experiment).await;
    assert_eq!((first.as_str(), second.as_str()), ("5", "6"));
    h.ok(
        "POST",
        &format!("{API}/registered-models/alias"),
        Some(json!({ "name": MODEL, "alias": "production", "version": first })),
    )
    .await;
    let sent = AtomicUsize::new(0);
    let count = |_: &Raw| {
        sent.fetch_add(1, Ordering::Relaxed);
    };

    // Deployed on `@production` (the first version), then a canary of the second version
    // (the same model: the shift rule is off and the latency ratio loose, as the rollout tests
    // that promote the stable's own model have them) promoted by its analysis.
    h.deploy(json!({})).await;
    h.start_rollout(canary(
        &second,
        json!([{"weight": 50, "duration_ms": 0}]),
        json!({
            "interval_ms": INTERVAL.as_millis() as u64, "min_samples": 10,
            "max_p99_ratio": 50.0, "max_prediction_shift": null,
        }),
    ))
    .await;
    let promoted = h.drive(30, count, |d| state(d) != "progressing").await;
    assert_eq!(state(&promoted), "succeeded", "{promoted}");
    assert_eq!(promoted["stable_version"], second.as_str());

    // The iris model (version 3) fails on every row it gets: rolled back, the stable answered.
    h.start_rollout(canary(
        "3",
        json!([{"weight": 50, "duration_ms": 0}]),
        json!({ "interval_ms": INTERVAL.as_millis() as u64, "min_samples": 5 }),
    ))
    .await;
    let rolled = h.drive(20, count, |d| state(d) != "progressing").await;
    assert_eq!(state(&rolled), "rolled_back", "{rolled}");
    assert_eq!(rolled["stable_version"], second.as_str());

    // An alert on the traffic, while the promoted version serves. Serving signals wait until
    // the server has watched a whole window (10 s from the harness's start).
    h.ok(
        "PUT",
        &format!("{NATIVE}/alerts/config"),
        Some(json!({"config": {"rules": [{
            "alert": "Busy", "deployment": NAME, "expr": "requests >= 5", "window": "10s",
        }]}})),
    )
    .await;
    let watched =
        Duration::from_millis(u64::try_from(begun + 10_500 - slipway_app::now_ms()).unwrap_or(0));
    tokio::time::sleep(watched).await;
    for _ in 0..10 {
        count(&h.predict(&[]).await);
    }
    h.deployments.plane.report().await;
    let alerter = &h.deployments.alerter;
    alerter.evaluate(slipway_app::now_ms()).await.unwrap();
    let firing = h
        .ok("GET", &format!("{NATIVE}/alerts?state=firing"), None)
        .await;
    assert_eq!(
        firing["alerts"].as_array().map(Vec::len),
        Some(1),
        "{firing}"
    );
    // The clock moves past the window: no request in it, and the alert resolves.
    let later = slipway_app::now_ms() + 30_000;
    alerter.evaluate(later).await.unwrap();
    let listed = h
        .ok("GET", &format!("{NATIVE}/alerts?state=resolved"), None)
        .await;
    let alert = listed["resolved"][0].clone();
    assert_eq!(alert["labels"]["alertname"], "Busy", "{listed}");
    let (alert_since, alert_end) = (
        alert["active_since_ms"].as_i64().expect("active_since_ms"),
        alert["resolved_ms"].as_i64().expect("resolved_ms"),
    );
    assert_eq!(alert_end, later);

    // Every request is in the store's serving minutes once the leader flushes them (each
    // evaluation does).
    h.deployments.plane.report().await;
    alerter.evaluate(later + 1).await.unwrap();
    let sent = sent.load(Ordering::Relaxed) as u64;

    let events = h.events().await;
    let one = |kind: &str| {
        let found = events_of(&events, kind);
        assert_eq!(found.len(), 1, "{kind}: {events:?}");
        found[0].clone()
    };
    let (created, promotion, rollback) = (one("created"), one("promoted"), one("rolled_back"));
    assert!(
        events_of(&events, "followed_alias").is_empty(),
        "{events:?}"
    );
    let time = |e: &Value| e["time_ms"].as_i64().expect("time_ms");
    let bad_rollout = rollback["rollout_id"].as_i64().expect("rollout_id");
    let bad_started = events
        .iter()
        .find(|e| e["kind"] == "rollout_started" && e["rollout_id"] == bad_rollout)
        .expect("the bad rollout's start")
        .clone();

    // Serving is stored per minute, and a period counts the minutes that start in it: this
    // one starts with the minute the test began in.
    let (since, until) = (begun - begun.rem_euclid(60_000), later + 1_000);
    let got = report(h, since, until).await;
    assert_eq!(
        (&got["since_ms"], &got["until_ms"], &got["cpu_hour_price"]),
        (&json!(since), &json!(until), &json!(PRICE)),
        "{got}"
    );
    let lead = [
        time(&created) - first_start,
        time(&promotion) - second_start,
    ];
    assert!(lead.iter().all(|l| *l >= 0), "{lead:?}");
    assert_eq!(
        got["changes"],
        json!([
            {"deployment": NAME, "model": MODEL, "version": first, "kind": "created",
             "time_ms": time(&created), "rollout_id": null, "lead_time_ms": lead[0],
             "failed": null},
            {"deployment": NAME, "model": MODEL, "version": second, "kind": "promoted",
             "time_ms": time(&promotion), "rollout_id": promotion["rollout_id"],
             "lead_time_ms": lead[1], "failed": "alert Busy fired"},
            {"deployment": NAME, "model": MODEL, "version": "3", "kind": "rolled_back",
             "time_ms": time(&rollback), "rollout_id": bad_rollout, "lead_time_ms": null,
             "failed": format!("rollout {bad_rollout} rolled back: {}",
                               rollback["detail"]["reason"].as_str().expect("reason"))},
        ]),
        "{got}"
    );
    assert_eq!(
        got["incidents"],
        json!([
            {"deployment": NAME, "model": MODEL, "cause": format!("rollout {bad_rollout} rolled back"),
             "start_ms": time(&bad_started), "end_ms": time(&rollback)},
            {"deployment": NAME, "model": MODEL, "cause": "alert Busy",
             "start_ms": alert_since, "end_ms": alert_end},
        ]),
        "{got}"
    );
    let overall = &got["overall"];
    assert_eq!(overall["deploys"], 2, "{overall}");
    approx(
        "deploys_per_day",
        &overall["deploys_per_day"],
        2.0 / ((until - since) as f64 / DAY_MS as f64),
    );
    assert_eq!(overall["lead_time"], durations(&lead), "{overall}");
    assert_eq!(
        (&overall["changes"], &overall["failed_changes"]),
        (&json!(3), &json!(2)),
        "{overall}"
    );
    approx(
        "change_failure_rate",
        &overall["change_failure_rate"],
        2.0 / 3.0,
    );
    assert_eq!(
        overall["time_to_restore"],
        durations(&[
            time(&rollback) - time(&bad_started),
            alert_end - alert_since
        ]),
        "{overall}"
    );
    assert_eq!(overall["open_incidents"], 0, "{overall}");
    assert_eq!(overall["requests"], sent, "{overall}");
    let cpu_seconds = overall["cpu_seconds"].as_f64().expect("cpu_seconds");
    assert!(cpu_seconds > 0.0, "{overall}");
    let per_1000 = cpu_seconds * 1e6 / sent as f64;
    approx("cpu_ms_per_1000", &overall["cpu_ms_per_1000"], per_1000);
    approx(
        "cost_per_1000",
        &overall["cost_per_1000"],
        per_1000 / 3_600_000.0 * PRICE,
    );
    assert_eq!(got["models"], json!({ MODEL: overall }), "{got}");

    // The alert, read with a period that ends before it resolved, is still open.
    let open = report(h, since, alert_since + 1).await;
    assert_eq!(open["overall"]["open_incidents"], 1, "{open}");
    assert_eq!(open["incidents"][1]["end_ms"], Value::Null, "{open}");
    // A period after everything holds nothing.
    let empty = report(h, later + 2_000, later + 60_000).await;
    assert_eq!(
        (&empty["changes"], &empty["incidents"], &empty["models"]),
        (&json!([]), &json!([]), &json!({})),
        "{empty}"
    );
    assert_eq!(empty["overall"]["deploys"], 0);
    assert_eq!(empty["overall"]["change_failure_rate"], Value::Null);
    assert_eq!(empty["overall"]["cost_per_1000"], Value::Null);
    // An empty or reversed period is refused.
    let refused = h
        .send_json(
            "GET",
            &format!("{NATIVE}/reports/delivery?since={until}&until={since}"),
            None,
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.json()
    );

    // Another server on the same store, with authentication: a viewer kept from the model
    // (`NO_PERMISSIONS`) sees none of its deployments' history, traffic or alerts; another
    // viewer sees the same report as above.
    let store = SqlStore::open(
        &BackendUri::parse(uri).expect("parsing the store URI"),
        StoreOptions::default(),
    )
    .await
    .expect("opening the store again");
    let artifacts = ObjectArtifactStore::local(h.dir.path()).expect("opening the artifacts");
    let secured = App::new(
        Arc::new(store),
        Arc::new(artifacts),
        AppSettings {
            auth_enabled: true,
            cpu_hour_price: Some(PRICE),
            ..AppSettings::default()
        },
    );
    for user in ["kept-out", "reader"] {
        secured
            .create_user(user, Role::Viewer, Some(Secret::new(PASSWORD)))
            .await
            .expect("creating a user");
    }
    secured
        .set_permission(
            "kept-out",
            Resource::registered_model(MODEL),
            Permission::NoPermissions,
        )
        .await
        .expect("setting a permission");
    let router = slipway_api::router(secured);
    let as_user = |user: &'static str| {
        let router = router.clone();
        async move {
            use base64::Engine as _;
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
            let request = Request::builder()
                .uri(format!(
                    "{NATIVE}/reports/delivery?since={since}&until={until}"
                ))
                .header(header::AUTHORIZATION, format!("Basic {credentials}"))
                .body(Body::empty())
                .expect("building a request");
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("reading a body")
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
            assert_eq!(status, StatusCode::OK, "{user}: {body}");
            body
        }
    };
    let reader = as_user("reader").await;
    assert_eq!(reader, got, "a viewer without restrictions sees it all");
    let kept_out = as_user("kept-out").await;
    assert_eq!(
        (
            &kept_out["models"],
            &kept_out["changes"],
            &kept_out["incidents"]
        ),
        (&json!({}), &json!([]), &json!([])),
        "{kept_out}"
    );
    let nothing = &kept_out["overall"];
    assert_eq!(
        (
            &nothing["deploys"],
            &nothing["changes"],
            &nothing["requests"],
            &nothing["cpu_seconds"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!(0.0)),
        "{kept_out}"
    );
}
