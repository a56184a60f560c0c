//! Retraining: triggers stored whole with a revision; firings decided in the store (one active
//! retrain per model, cooldown, daily cap), claimed by one worker, moved forward only by it,
//! and failed when its lease lapses.

use std::collections::BTreeMap;

use slipway_core::Error;
use slipway_core::retrain::{
    Cause, FiredBy, RetrainProgress, RetrainState, Trigger, TriggerConfig, TriggerGate,
};

use crate::common::Store;

contract!(retrains_start_claim_and_move_forward_sqlite, retrains_start_claim_and_move_forward_postgres => case_retrains_start_claim_and_move_forward);
contract!(trigger_config_is_one_revisioned_document_sqlite, trigger_config_is_one_revisioned_document_postgres => case_trigger_config_is_one_revisioned_document);

fn trigger(name: &str, model: &str) -> Trigger {
    Trigger {
        name: name.into(),
        model: model.into(),
        deployment: Some(model.into()),
        pipeline: "pipeline.yml".into(),
        params: BTreeMap::new(),
        model_path: "model".into(),
        gate: TriggerGate {
            data: None,
            label: "y".into(),
            rules: None,
        },
        on: FiredBy::default(),
        rollout: None,
        cooldown: 600_000,
        max_per_day: 3,
    }
}

fn manual() -> Cause {
    Cause::Manual {
        reason: "test".into(),
    }
}

async fn case_retrains_start_claim_and_move_forward(store: &Store) {
    let t = trigger("nightly", "churn");
    let first = store
        .start_retrain(t.clone(), manual(), "alice", 1_000)
        .await
        .unwrap();
    assert_eq!(first.state, RetrainState::Queued);
    assert_eq!(first.requested_by, "alice");
    // The model is busy: a second firing (any trigger of the model) is recorded as skipped.
    let other = trigger("drift", "churn");
    let busy = store
        .start_retrain(other, manual(), "alice", 2_000)
        .await
        .unwrap();
    assert_eq!(busy.state, RetrainState::Skipped);
    assert!(busy.reason.unwrap().contains("one retrain at a time"));
    // Another model is not held up.
    let elsewhere = store
        .start_retrain(trigger("fraud", "fraud"), manual(), "bob", 2_000)
        .await
        .unwrap();
    assert_eq!(elsewhere.state, RetrainState::Queued);

    let claimed = store
        .claim_retrain("worker-1", 3_000, 10_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, first.id, "oldest first");
    assert_eq!(claimed.state, RetrainState::Running);
    assert_eq!(claimed.claimed_by.as_deref(), Some("worker-1"));
    let second = store
        .claim_retrain("worker-2", 3_000, 10_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, elsewhere.id);
    assert!(
        store
            .claim_retrain("worker-2", 3_000, 10_000)
            .await
            .unwrap()
            .is_none()
    );

    let update = RetrainProgress {
        pipeline_run_id: Some("run1".into()),
        version: Some(4),
        ..RetrainProgress::default()
    };
    assert_err!(
        store
            .progress_retrain(first.id, "worker-2", update.clone(), 4_000, 20_000)
            .await,
        Error::PermissionDenied(_)
    );
    let moved = store
        .progress_retrain(first.id, "worker-1", update, 4_000, 20_000)
        .await
        .unwrap();
    assert_eq!(
        (moved.version, moved.lease_until_ms),
        (Some(4), Some(20_000))
    );
    // A link of the chain is set once.
    assert_err!(
        store
            .progress_retrain(
                first.id,
                "worker-1",
                RetrainProgress {
                    version: Some(5),
                    ..RetrainProgress::default()
                },
                4_500,
                20_000
            )
            .await,
        Error::InvalidParameter(_)
    );
    let rolling = store
        .progress_retrain(
            first.id,
            "worker-1",
            RetrainProgress {
                state: Some(RetrainState::RollingOut),
                gate_id: Some(9),
                rollout_id: Some(2),
                ..RetrainProgress::default()
            },
            5_000,
            20_000,
        )
        .await
        .unwrap();
    assert_eq!((rolling.gate_id, rolling.rollout_id), (Some(9), Some(2)));
    let done = store
        .progress_retrain(
            first.id,
            "worker-1",
            RetrainProgress {
                state: Some(RetrainState::Promoted),
                ..RetrainProgress::default()
            },
            6_000,
            20_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.lease_until_ms),
        (RetrainState::Promoted, None)
    );
    // Ended stays ended.
    assert_err!(
        store
            .progress_retrain(
                first.id,
                "worker-1",
                RetrainProgress {
                    state: Some(RetrainState::RolledBack),
                    ..RetrainProgress::default()
                },
                7_000,
                20_000
            )
            .await,
        Error::InvalidParameter(_)
    );
    // The model is free, but the trigger is in its cooldown.
    let cooling = store
        .start_retrain(t, manual(), "alice", 60_000)
        .await
        .unwrap();
    assert_eq!(cooling.state, RetrainState::Skipped);
    assert!(cooling.reason.unwrap().contains("cooldown"));

    // worker-2 stops reporting: its retrain fails when the lease lapses, and frees the model.
    assert!(store.expire_retrains(9_000).await.unwrap().is_empty());
    let lapsed = store.expire_retrains(10_001).await.unwrap();
    assert_eq!(
        lapsed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![elsewhere.id]
    );
    assert_eq!(lapsed[0].state, RetrainState::Failed);
    assert!(lapsed[0].reason.as_deref().unwrap().contains("lease"));

    let listed = store.list_retrains(None, Some("churn"), 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![cooling.id, busy.id, first.id]
    );
    let by_trigger = store.list_retrains(Some("drift"), None, 10).await.unwrap();
    assert_eq!(by_trigger.len(), 1);
    assert_eq!(store.get_retrain(first.id).await.unwrap().cause, manual());
    assert_err!(store.get_retrain(999_999).await, Error::NotFound(_));
}

async fn case_trigger_config_is_one_revisioned_document(store: &Store) {
    assert!(store.get_trigger_config().await.unwrap().is_none());
    let config = TriggerConfig {
        triggers: vec![trigger("nightly", "churn")],
    };
    let stored = store
        .put_trigger_config(config.clone(), 0, "admin", 1_000)
        .await
        .unwrap();
    assert_eq!(stored.revision, 1);
    assert_err!(
        store
            .put_trigger_config(config.clone(), 0, "admin", 2_000)
            .await,
        Error::InvalidParameter(_)
    );
    let again = store
        .put_trigger_config(TriggerConfig::default(), 1, "bob", 3_000)
        .await
        .unwrap();
    assert_eq!(again.revision, 2);
    let read = store.get_trigger_config().await.unwrap().unwrap();
    assert_eq!(
        (read.config, read.updated_by),
        (TriggerConfig::default(), "bob".to_owned())
    );
}
