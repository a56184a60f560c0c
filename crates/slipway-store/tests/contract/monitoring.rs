//! Monitoring: one reference per model version (replaced, renamed and deleted with it) and the
//! closed windows of each deployment, newest first, with per-deployment retention.

use serde_json::json;
use slipway_core::Error;
use slipway_core::monitoring::{MonitorReference, MonitorWindow};

use crate::common::{Store, version_of};

contract!(monitor_reference_follows_its_version_sqlite, monitor_reference_follows_its_version_postgres => case_monitor_reference_follows_its_version);
contract!(monitor_windows_page_newest_first_sqlite, monitor_windows_page_newest_first_postgres => case_monitor_windows_page_newest_first);

fn reference(model: &str, version: i64, rows: u64) -> MonitorReference {
    MonitorReference {
        model_name: model.into(),
        version,
        created_ms: 5_000,
        created_by: "alice".into(),
        rows,
        label_column: Some("label".into()),
        schema: json!({"features": [{"name": "x", "type": "numerical"}], "prediction": null}),
        summary: json!({"rows": rows, "values": [1.5, 2.5]}),
        performance: Some(json!({"accuracy": 0.9})),
    }
}

async fn case_monitor_reference_follows_its_version(store: &Store) {
    let v1 = version_of(store, "fraud").await;
    let v2 = version_of(store, "fraud").await;
    assert!(
        store
            .get_monitor_reference("fraud", v1)
            .await
            .unwrap()
            .is_none()
    );
    // Only a version that exists gets one.
    assert_err!(
        store
            .put_monitor_reference(reference("fraud", 99, 10))
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store.put_monitor_reference(reference("ghost", 1, 10)).await,
        Error::NotFound(_)
    );

    store
        .put_monitor_reference(reference("fraud", v1, 10))
        .await
        .unwrap();
    assert_eq!(
        store.get_monitor_reference("fraud", v1).await.unwrap(),
        Some(reference("fraud", v1, 10))
    );
    // A new one replaces the old; the other version has none.
    let mut replaced = reference("fraud", v1, 20);
    replaced.label_column = None;
    replaced.performance = None;
    let before = store.generations().await.unwrap();
    store.put_monitor_reference(replaced.clone()).await.unwrap();
    // Servers cache references: the replacement moves the generation they watch.
    let topic = slipway_core::cluster::GENERATION_MONITOR_REFERENCES;
    assert_eq!(
        store.generations().await.unwrap().get(topic).copied(),
        Some(before.get(topic).copied().unwrap_or(0) + 1)
    );
    assert_eq!(
        store.get_monitor_reference("fraud", v1).await.unwrap(),
        Some(replaced.clone())
    );
    assert!(
        store
            .get_monitor_reference("fraud", v2)
            .await
            .unwrap()
            .is_none()
    );

    // It follows a rename, and goes with its version or its model.
    store
        .put_monitor_reference(reference("fraud", v2, 30))
        .await
        .unwrap();
    store
        .rename_registered_model("fraud", "fraud2", 6_000)
        .await
        .unwrap();
    assert!(
        store
            .get_monitor_reference("fraud", v1)
            .await
            .unwrap()
            .is_none()
    );
    let renamed = store.get_monitor_reference("fraud2", v1).await.unwrap();
    assert_eq!(renamed.map(|r| r.rows), Some(20));
    store.delete_model_version("fraud2", v1).await.unwrap();
    assert!(
        store
            .get_monitor_reference("fraud2", v1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_monitor_reference("fraud2", v2)
            .await
            .unwrap()
            .is_some()
    );
    store.delete_registered_model("fraud2").await.unwrap();
    version_of(store, "fraud2").await;
    assert!(
        store
            .get_monitor_reference("fraud2", v1)
            .await
            .unwrap()
            .is_none()
            && store
                .get_monitor_reference("fraud2", v2)
                .await
                .unwrap()
                .is_none(),
        "a new model of the same name starts without the old one's references"
    );
}

fn window(deployment: &str, start_ms: i64) -> MonitorWindow {
    MonitorWindow {
        id: 0,
        deployment: deployment.into(),
        model_name: "fraud".into(),
        version: 1,
        start_ms,
        end_ms: start_ms + 1_000,
        rows: 42,
        report: json!({"features": {"dataset": {"share": 0.5}}, "start": start_ms}),
    }
}

async fn case_monitor_windows_page_newest_first(store: &Store) {
    assert!(
        store
            .monitor_windows("live", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store
                .append_monitor_window(window("live", i * 1_000))
                .await
                .unwrap(),
        );
        store
            .append_monitor_window(window("other", i))
            .await
            .unwrap();
    }
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "ids increase: {ids:?}");
    let newest = store.monitor_windows("live", None, 3).await.unwrap();
    assert_eq!(
        newest.iter().map(|w| w.start_ms).collect::<Vec<_>>(),
        [4_000, 3_000, 2_000]
    );
    assert_eq!(
        newest[0],
        MonitorWindow {
            id: ids[4],
            ..window("live", 4_000)
        }
    );
    let older = store
        .monitor_windows("live", Some(newest[2].id), 10)
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|w| w.start_ms).collect::<Vec<_>>(),
        [1_000, 0]
    );
    assert!(
        store
            .monitor_windows("other", None, 100)
            .await
            .unwrap()
            .iter()
            .all(|w| w.deployment == "other")
    );
}
