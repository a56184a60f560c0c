//! Alerting: one configuration row changed by compare-and-set on its revision; alerts stored
//! when they fire, updated when they resolve, listed newest first by state and deployment;
//! silences kept after they are expired.

use std::collections::BTreeMap;

use slipway_core::Error;
use slipway_core::alerting::{Alert, AlertConfig, AlertState, Matcher, NewSilence, state};
use slipway_core::ports::AlertFilter;

use crate::common::Store;

contract!(alert_config_is_compare_and_set_sqlite, alert_config_is_compare_and_set_postgres => case_alert_config_is_compare_and_set);
contract!(alerts_fire_resolve_and_list_sqlite, alerts_fire_resolve_and_list_postgres => case_alerts_fire_resolve_and_list);
contract!(silences_expire_and_stay_sqlite, silences_expire_and_stay_postgres => case_silences_expire_and_stay);

async fn case_alert_config_is_compare_and_set(store: &Store) {
    assert!(store.get_alert_config().await.unwrap().is_none());
    let config: AlertConfig = serde_json::from_value(serde_json::json!({
        "receivers": [{"name": "am", "alertmanager": {"url": "http://127.0.0.1:9093"}}],
        "rules": [{"alert": "Drift", "expr": "drift_share >= 0.5", "runbook_url": "https://r.example/d"}]
    }))
    .unwrap();
    let first = store
        .put_alert_config(config.clone(), 0, "alice", 1_000)
        .await
        .unwrap();
    assert_eq!((first.revision, first.updated_by.as_str()), (1, "alice"));
    let read = store.get_alert_config().await.unwrap().unwrap();
    assert_eq!(read, first);
    assert_eq!(read.config, config);
    // A second writer that read revision 0 loses: nothing of its document is stored.
    let stale = assert_err!(
        store
            .put_alert_config(AlertConfig::default(), 0, "bob", 2_000)
            .await,
        Error::InvalidParameter(_)
    );
    assert!(stale.to_string().contains("changed meanwhile"), "{stale}");
    assert_eq!(
        store.get_alert_config().await.unwrap().unwrap().config,
        config
    );
    let second = store
        .put_alert_config(AlertConfig::default(), 1, "bob", 3_000)
        .await
        .unwrap();
    assert_eq!(second.revision, 2);
    assert!(
        store
            .get_alert_config()
            .await
            .unwrap()
            .unwrap()
            .config
            .rules
            .is_empty()
    );
}

fn alert(name: &str, deployment: &str, at: i64) -> Alert {
    let labels: BTreeMap<String, String> = [
        ("alertname", name),
        ("deployment", deployment),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    Alert {
        id: 0,
        fingerprint: state::fingerprint(&labels),
        labels,
        annotations: [("summary".to_owned(), format!("{deployment} drifted"))].into(),
        state: AlertState::Firing,
        value: Some(0.75),
        active_since_ms: at - 100,
        fired_ms: Some(at),
        resolved_ms: None,
        updated_ms: at,
    }
}

async fn case_alerts_fire_resolve_and_list(store: &Store) {
    let mut drift = alert("Drift", "fraud", 1_000);
    drift.id = store.save_alert(drift.clone()).await.unwrap();
    assert!(drift.id > 0);
    let mut errors = alert("Errors", "churn", 2_000);
    errors.value = None;
    errors.id = store.save_alert(errors.clone()).await.unwrap();
    let all = store
        .list_alerts(&AlertFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(all, vec![errors.clone(), drift.clone()]);

    drift.state = AlertState::Resolved;
    drift.resolved_ms = Some(5_000);
    drift.updated_ms = 5_000;
    drift.value = Some(0.1);
    assert_eq!(store.save_alert(drift.clone()).await.unwrap(), drift.id);
    let firing = store
        .list_alerts(
            &AlertFilter {
                state: Some(AlertState::Firing),
                ..AlertFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(firing, vec![errors.clone()]);
    let fraud = store
        .list_alerts(
            &AlertFilter {
                deployment: Some("fraud".into()),
                ..AlertFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(fraud, vec![drift.clone()]);
    let by_fingerprint = store
        .list_alerts(
            &AlertFilter {
                fingerprint: Some(errors.fingerprint.clone()),
                ..AlertFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(by_fingerprint, vec![errors.clone()]);
    let page = store
        .list_alerts(
            &AlertFilter {
                before_id: Some(errors.id),
                ..AlertFilter::default()
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(page, vec![drift.clone()]);
    let mut ghost = alert("Ghost", "x", 1);
    ghost.id = 999_999;
    assert_err!(store.save_alert(ghost).await, Error::NotFound(_));
}

async fn case_silences_expire_and_stay(store: &Store) {
    let silence = NewSilence {
        matchers: vec![
            Matcher::parse("alertname=Drift").unwrap(),
            Matcher::parse("deployment!=canary").unwrap(),
        ],
        starts_ms: 1_000,
        ends_ms: 10_000,
        comment: "retraining under way, ask Ana".into(),
    };
    let created = store
        .create_silence(silence.clone(), "ana", 900)
        .await
        .unwrap();
    assert_eq!(created.matchers, silence.matchers);
    assert_eq!(created.created_by, "ana");
    let later = store.create_silence(silence, "ana", 950).await.unwrap();
    let listed = store.list_silences(0, 10).await.unwrap();
    assert_eq!(listed, vec![later.clone(), created.clone()]);

    let expired = store.expire_silence(created.id, 5_000).await.unwrap();
    assert_eq!(expired.ends_ms, 5_000);
    // Expiring again changes nothing; it stays readable as history.
    assert_eq!(
        store
            .expire_silence(created.id, 7_000)
            .await
            .unwrap()
            .ends_ms,
        5_000
    );
    let active = store.list_silences(6_000, 10).await.unwrap();
    assert_eq!(active, vec![later]);
    assert_eq!(store.list_silences(0, 10).await.unwrap().len(), 2);
    assert_err!(store.expire_silence(424_242, 1).await, Error::NotFound(_));
}
