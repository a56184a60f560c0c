//! Release gates: results stored newest first with the version's gate tags written in the same
//! write, following renames and deletes; policies keep their gate requirement.

use std::collections::BTreeMap;

use slipway_core::Error;
use slipway_core::gate::{NewGateRecord, RulesSource};
use slipway_core::promotion::PromotionPolicy;

use crate::common::{Store, version_of};

contract!(gate_results_mirror_tags_and_follow_the_version_sqlite, gate_results_mirror_tags_and_follow_the_version_postgres => case_gate_results_mirror_tags_and_follow_the_version);
contract!(policy_keeps_its_gate_requirement_sqlite, policy_keeps_its_gate_requirement_postgres => case_policy_keeps_its_gate_requirement);

fn gate(model: &str, version: i64, passed: bool) -> NewGateRecord {
    NewGateRecord {
        model_name: model.into(),
        version,
        champion_version: Some(1),
        passed,
        data_uri: "runs:/abc/holdout.csv".into(),
        data_sha256: "ab".repeat(32),
        rules: vec!["f1 >= champion - 0.01".into()],
        rules_source: RulesSource::Default,
        run_id: Some("r1".into()),
        metrics: BTreeMap::from([("f1".to_owned(), 0.9), ("nan".to_owned(), f64::NAN)]),
        report: r#"{"passed": true}"#.into(),
        created_at: 5_000,
        created_by: "ci".into(),
    }
}

fn tag(store_version: &slipway_core::registry::ModelVersion, key: &str) -> Option<String> {
    store_version
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.clone())
}

async fn case_gate_results_mirror_tags_and_follow_the_version(store: &Store) {
    let v1 = version_of(store, "churn").await;
    let v2 = version_of(store, "churn").await;
    let first = store.put_gate(gate("churn", v2, false)).await.unwrap();
    let second = store.put_gate(gate("churn", v2, true)).await.unwrap();
    assert!(second.id > first.id);
    assert!(second.passed && !first.passed);
    assert_eq!(second.metrics.get("f1"), Some(&0.9));
    assert!(!second.metrics.contains_key("nan"), "NaN is left out");
    assert_eq!(second.rules_source, RulesSource::Default);
    let version = store.get_model_version("churn", v2).await.unwrap();
    assert_eq!(
        tag(&version, "slipway.gate.status").as_deref(),
        Some("passed")
    );
    assert_eq!(
        tag(&version, "slipway.gate.id"),
        Some(second.id.to_string())
    );
    assert_eq!(tag(&version, "slipway.gate.run_id").as_deref(), Some("r1"));
    let listed = store.list_gates("churn", Some(v2), 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![second.id, first.id]
    );
    assert!(
        store
            .list_gates("churn", Some(v1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_err!(
        store.put_gate(gate("churn", 99, true)).await,
        Error::NotFound(_)
    );

    store
        .rename_registered_model("churn", "churn2", 2_000)
        .await
        .unwrap();
    assert_eq!(store.list_gates("churn2", None, 10).await.unwrap().len(), 2);
    assert!(
        store
            .list_gates("churn", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_model_version("churn2", v2).await.unwrap();
    assert!(
        store
            .list_gates("churn2", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_err!(store.get_gate(second.id).await, Error::NotFound(_));
}

async fn case_policy_keeps_its_gate_requirement(store: &Store) {
    version_of(store, "fraud").await;
    let policy = PromotionPolicy {
        model_name: "fraud".into(),
        protected_aliases: vec!["production".into()],
        protected_stages: vec![],
        required_approvals: 1,
        checks: None,
        max_unapproved_weight: 10,
        require_gate: true,
        gate_rules: Some(vec!["f1 >= 0.8".into(), "latency_p99_ms <= 20".into()]),
        gate_data: Some("runs:/abc/holdout.csv".into()),
        gate_data_sha256: Some("cd".repeat(32)),
        updated_at: 1,
        updated_by: "admin".into(),
    };
    store.set_policy(policy.clone()).await.unwrap();
    assert_eq!(
        store.get_policy("fraud").await.unwrap(),
        Some(policy.clone())
    );
    let plain = PromotionPolicy {
        require_gate: false,
        gate_rules: None,
        gate_data: None,
        gate_data_sha256: None,
        ..policy
    };
    store.set_policy(plain.clone()).await.unwrap();
    assert_eq!(store.get_policy("fraud").await.unwrap(), Some(plain));
}
