//! Deployments: one JSON body per row with a compare-and-set revision, their history of events
//! (kept after a delete), and the prediction log with its paging by id.

use std::future::Future;
use std::sync::Arc;

use serde_json::json;
use slipway_core::Error;
use slipway_core::deployment::{
    AnalysisRules, BreakerConfig, CanaryStep, DeadlineAction, Deployment, DeploymentEvent,
    NewDeploymentEvent, PredictionRecord, Rollout, RolloutState, ServingSettings, Strategy,
    Variant,
};

use crate::common::Store;

contract!(deployment_create_get_list_sqlite, deployment_create_get_list_postgres => case_deployment_create_get_list);
contract!(deployment_update_is_compare_and_set_sqlite, deployment_update_is_compare_and_set_postgres => case_deployment_update_is_compare_and_set);
contract!(
    deployment_concurrent_updates_one_wins_sqlite, deployment_concurrent_updates_one_wins_postgres => case_deployment_concurrent_updates_one_wins
);
contract!(
    deployment_concurrent_creates_one_wins_sqlite, deployment_concurrent_creates_one_wins_postgres => case_deployment_concurrent_creates_one_wins
);
contract!(deployment_events_append_and_page_sqlite, deployment_events_append_and_page_postgres => case_deployment_events_append_and_page);
contract!(
    deployment_events_compact_runs_sqlite, deployment_events_compact_runs_postgres => case_deployment_events_compact_runs
);
contract!(deployment_delete_keeps_events_sqlite, deployment_delete_keeps_events_postgres => case_deployment_delete_keeps_events);
contract!(prediction_log_append_and_page_sqlite, prediction_log_append_and_page_postgres => case_prediction_log_append_and_page);
contract!(deployment_bodies_round_trip_sqlite, deployment_bodies_round_trip_postgres => case_deployment_bodies_round_trip);

/// A deployment of model `fraud` at version 1, following `@production`, with no rollout.
fn deployment(name: &str, updated_ms: i64) -> Deployment {
    Deployment {
        name: name.into(),
        model_name: "fraud".into(),
        alias: Some("production".into()),
        stable_version: "1".into(),
        previous_version: None,
        settings: ServingSettings::default(),
        rollout: None,
        // Whatever the caller says: the store starts every deployment at revision 1.
        revision: 7,
        created_ms: updated_ms,
        created_by: "alice".into(),
        updated_ms,
    }
}

fn canary(weights: &[u8]) -> Strategy {
    Strategy::Canary {
        steps: weights
            .iter()
            .map(|weight| CanaryStep {
                weight: *weight,
                duration_ms: u64::from(*weight) * 1_000,
            })
            .collect(),
    }
}

fn rollout(id: i64, strategy: Strategy, rules: AnalysisRules, state: RolloutState) -> Rollout {
    Rollout {
        id,
        candidate_version: "2".into(),
        strategy,
        rules,
        state,
        stage: 1,
        stage_started_ms: 5_000,
        stage_passed: true,
        started_ms: 4_000,
        started_by: "bob".into(),
        ended_ms: None,
        unapproved_weight_cap: None,
        progress_deadline_ms: 90_000,
        on_deadline: DeadlineAction::Pause,
    }
}

fn event(kind: &str, rollout_id: Option<i64>, detail: serde_json::Value) -> NewDeploymentEvent {
    NewDeploymentEvent {
        rollout_id,
        kind: kind.into(),
        actor: "alice".into(),
        detail,
        compact_key: None,
    }
}

async fn create(store: &Store, deployment: Deployment) -> Deployment {
    let name = deployment.name.clone();
    store
        .create_deployment(
            deployment,
            event("created", None, json!({ "version": "1" })),
        )
        .await
        .unwrap_or_else(|e| panic!("creating deployment {name}: {e:?}"))
}

async fn all_events(store: &Store, name: &str) -> Vec<DeploymentEvent> {
    store
        .deployment_events(name, 0, 10_000)
        .await
        .unwrap_or_else(|e| panic!("events of {name}: {e:?}"))
}

fn kinds(events: &[DeploymentEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

async fn case_deployment_create_get_list(store: &Store) {
    assert!(store.list_deployments().await.unwrap().is_empty());
    let created = create(store, deployment("b-fraud", 1_000)).await;
    assert_eq!(created.revision, 1);
    assert_eq!(
        created,
        Deployment {
            revision: 1,
            ..deployment("b-fraud", 1_000)
        }
    );
    assert_eq!(store.get_deployment("b-fraud").await.unwrap(), created);
    let other = create(store, deployment("a-fraud", 2_000)).await;

    // Every deployment, by name.
    assert_eq!(
        store.list_deployments().await.unwrap(),
        vec![other.clone(), created.clone()]
    );

    // The creation event, at the deployment's time.
    let events = all_events(store, "b-fraud").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let first = &events[0];
    assert_eq!(first.deployment, "b-fraud");
    assert_eq!(first.kind, "created");
    assert_eq!(first.actor, "alice");
    assert_eq!(first.time_ms, 1_000);
    assert_eq!(first.rollout_id, None);
    assert_eq!(first.detail, json!({ "version": "1" }));

    // A taken name: refused, the stored one and its history untouched.
    let mut again = deployment("b-fraud", 3_000);
    again.stable_version = "9".into();
    let error = assert_err!(
        store
            .create_deployment(again, event("created", None, json!({ "leak": true })))
            .await,
        Error::AlreadyExists(_)
    );
    assert!(error.to_string().contains("b-fraud"), "{error}");
    assert_eq!(store.get_deployment("b-fraud").await.unwrap(), created);
    assert_eq!(all_events(store, "b-fraud").await, events);

    assert_err!(store.get_deployment("nope").await, Error::NotFound(_));
    assert!(all_events(store, "nope").await.is_empty());
}

async fn case_deployment_update_is_compare_and_set(store: &Store) {
    let created = create(store, deployment("fraud", 1_000)).await;
    let mut changed = created.clone();
    changed.settings.log_sample = 1.0;
    changed.updated_ms = 2_000;
    let updated = store
        .update_deployment(
            changed.clone(),
            vec![
                event("settings", None, json!({ "log_sample": 1.0 })),
                event("note", Some(3), json!(["a", 1])),
            ],
        )
        .await
        .unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(
        updated,
        Deployment {
            revision: 2,
            ..changed.clone()
        }
    );
    assert_eq!(store.get_deployment("fraud").await.unwrap(), updated);
    let events = all_events(store, "fraud").await;
    assert_eq!(kinds(&events), ["created", "settings", "note"]);
    assert_eq!(events[1].time_ms, 2_000);
    assert_eq!(events[2].rollout_id, Some(3));
    assert_eq!(events[2].detail, json!(["a", 1]));

    // A writer that read revision 1 lost the race: refused, nothing stored, no event.
    let mut stale = created.clone();
    stale.stable_version = "5".into();
    let error = assert_err!(
        store
            .update_deployment(stale, vec![event("lost", None, json!({}))])
            .await,
        Error::InvalidParameter(_)
    );
    assert!(error.to_string().contains("changed meanwhile"), "{error}");
    assert_eq!(store.get_deployment("fraud").await.unwrap(), updated);
    assert_eq!(all_events(store, "fraud").await, events);

    // From the current revision it goes through, with no events at all as well.
    let mut next = updated.clone();
    next.stable_version = "2".into();
    next.previous_version = Some("1".into());
    let third = store.update_deployment(next, Vec::new()).await.unwrap();
    assert_eq!(third.revision, 3);
    assert_eq!(store.get_deployment("fraud").await.unwrap(), third);
    assert_eq!(all_events(store, "fraud").await, events);

    // An update of a deployment that does not exist is a not-found, whatever the revision.
    assert_err!(
        store
            .update_deployment(deployment("ghost", 1), vec![event("x", None, json!({}))])
            .await,
        Error::NotFound(_)
    );
    assert!(all_events(store, "ghost").await.is_empty());
}

/// Runs `write(store, writer)` for `writers` writers at once; their results.
async fn race<Write>(
    store: &Store,
    writers: usize,
    write: impl Fn(Store, usize) -> Write,
) -> Vec<slipway_core::Result<Deployment>>
where
    Write: Future<Output = slipway_core::Result<Deployment>> + Send + 'static,
{
    let handles: Vec<_> = (0..writers)
        .map(|writer| tokio::spawn(write(Arc::clone(store), writer)))
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("a writer task"));
    }
    results
}

/// The one write that won a race; every other must have lost it as `lost` says.
fn one_winner(
    results: Vec<slipway_core::Result<Deployment>>,
    lost: impl Fn(&Error) -> bool,
) -> Deployment {
    let mut winners = Vec::new();
    for result in results {
        match result {
            Ok(saved) => winners.push(saved),
            Err(error) => assert!(lost(&error), "a write that lost the race: {error:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    winners.remove(0)
}

async fn case_deployment_concurrent_updates_one_wins(store: &Store) {
    let created = create(store, deployment("race", 1_000)).await;
    let results = race(store, 8, |store, writer| {
        let mut mine = created.clone();
        mine.stable_version = format!("{writer}");
        async move {
            store
                .update_deployment(mine, vec![event(&format!("w{writer}"), None, json!({}))])
                .await
        }
    })
    .await;
    let winner = one_winner(
        results,
        |error| matches!(error, Error::InvalidParameter(m) if m.contains("changed meanwhile")),
    );
    let stored = store.get_deployment("race").await.unwrap();
    assert_eq!(stored, winner);
    assert_eq!(stored.revision, 2);
    // Only the winner's event was appended.
    let events = all_events(store, "race").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].kind, format!("w{}", stored.stable_version));
}

async fn case_deployment_concurrent_creates_one_wins(store: &Store) {
    // A few rounds, each on a fresh name: the writers' timing differs from round to round.
    for round in 0..5 {
        let name = format!("race-{round}");
        let results = race(store, 12, |store, writer| {
            let mut mine = deployment(&name, 1_000);
            mine.stable_version = format!("{writer}");
            async move {
                store
                    .create_deployment(mine, event("created", None, json!({ "writer": writer })))
                    .await
            }
        })
        .await;
        // A lost race is a taken name, as it is for a create that comes later.
        let winner = one_winner(results, |error| matches!(error, Error::AlreadyExists(_)));
        assert_eq!(store.get_deployment(&name).await.unwrap(), winner);
        // Only the winner's event was recorded.
        let events = all_events(store, &name).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0].detail["writer"].to_string(),
            winner.stable_version
        );
    }
}

async fn case_deployment_events_append_and_page(store: &Store) {
    let created = create(store, deployment("fraud", 1_000)).await;
    create(store, deployment("other", 1_000)).await;
    let before = now_ms();
    store
        .append_deployment_events(
            "fraud",
            (0..5)
                .map(|i| event("analysis", Some(1), json!({ "i": i })))
                .collect(),
        )
        .await
        .unwrap();
    let after = now_ms();
    store
        .append_deployment_events("other", vec![event("analysis", Some(1), json!({}))])
        .await
        .unwrap();
    store
        .append_deployment_events("fraud", Vec::new())
        .await
        .unwrap();
    // No new revision: the data plane must not rebuild for a bare measurement.
    assert_eq!(store.get_deployment("fraud").await.unwrap(), created);

    let events = all_events(store, "fraud").await;
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(events.iter().all(|e| e.deployment == "fraud"));
    assert!(
        events.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "oldest first: {events:?}"
    );
    for (i, appended) in events[1..].iter().enumerate() {
        assert_eq!(appended.detail, json!({ "i": i }));
        assert_eq!(appended.rollout_id, Some(1));
        assert!(
            (before..=after).contains(&appended.time_ms),
            "{} not in {before}..={after}",
            appended.time_ms
        );
    }

    // Pages of two, each starting after the last one's seq.
    let mut paged = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = store
            .deployment_events("fraud", after_seq, 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else {
            break;
        };
        after_seq = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, events);
    assert_eq!(
        store
            .deployment_events("fraud", events[3].seq, 100)
            .await
            .unwrap(),
        events[4..].to_vec()
    );
    assert!(
        store
            .deployment_events("fraud", events[5].seq, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(all_events(store, "other").await.len(), 2);
    // The newest first, this deployment's only (another's events interleave in seq).
    let recent = store.recent_deployment_events("fraud", 3).await.unwrap();
    let mut newest: Vec<DeploymentEvent> = events[3..].to_vec();
    newest.reverse();
    assert_eq!(recent, newest);
    assert_eq!(
        store
            .recent_deployment_events("fraud", 100)
            .await
            .unwrap()
            .len(),
        6
    );
}

/// An inconclusive analysis event with this key and these waiting samples.
fn waiting(key: &str, samples: u64) -> NewDeploymentEvent {
    NewDeploymentEvent {
        compact_key: Some(key.into()),
        ..event("analysis", Some(1), json!({ "samples": samples }))
    }
}

async fn case_deployment_events_compact_runs(store: &Store) {
    create(store, deployment("compact", 1_000)).await;
    create(store, deployment("neighbour", 1_000)).await;
    let before = now_ms();
    // A run of three identical results is one event: the latest detail, a count, first and
    // last time. Another deployment's events in between do not break it.
    store
        .append_deployment_events("compact", vec![waiting("stage-0", 1)])
        .await
        .unwrap();
    store
        .append_deployment_events("neighbour", vec![waiting("stage-0", 9)])
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    store
        .append_deployment_events(
            "compact",
            vec![waiting("stage-0", 2), waiting("stage-0", 3)],
        )
        .await
        .unwrap();
    let events = all_events(store, "compact").await;
    assert_eq!(kinds(&events), ["created", "analysis"], "{events:?}");
    let run = &events[1];
    assert_eq!(run.count, 3, "{run:?}");
    assert_eq!(run.detail, json!({ "samples": 3 }));
    assert!(run.time_ms >= before, "{run:?}");
    assert!(run.last_time_ms > run.time_ms, "{run:?}");
    assert_eq!(events[0].count, 1);
    assert_eq!(events[0].last_time_ms, events[0].time_ms);

    // Another key, or any event in between (a stage change), starts a new run; events
    // without a key never merge, and an update's events compact like appended ones.
    store
        .append_deployment_events("compact", vec![waiting("stage-1", 4)])
        .await
        .unwrap();
    let current = store.get_deployment("compact").await.unwrap();
    let current = store
        .update_deployment(
            current,
            vec![event("stage", Some(1), json!({ "stage": 1 }))],
        )
        .await
        .unwrap();
    store
        .update_deployment(current, vec![waiting("stage-1", 5), waiting("stage-1", 6)])
        .await
        .unwrap();
    store
        .append_deployment_events(
            "compact",
            vec![
                event("analysis", Some(1), json!({ "samples": 7 })),
                event("analysis", Some(1), json!({ "samples": 8 })),
            ],
        )
        .await
        .unwrap();
    let events = all_events(store, "compact").await;
    let counts: Vec<(&str, i64)> = events.iter().map(|e| (e.kind.as_str(), e.count)).collect();
    assert_eq!(
        counts,
        [
            ("created", 1),
            ("analysis", 3),
            ("analysis", 1),
            ("stage", 1),
            ("analysis", 2),
            ("analysis", 1),
            ("analysis", 1),
        ],
        "{events:?}"
    );
    assert_eq!(events[4].detail, json!({ "samples": 6 }));
    let neighbour = all_events(store, "neighbour").await;
    assert_eq!(neighbour[1].count, 1, "{neighbour:?}");
}

async fn case_deployment_delete_keeps_events(store: &Store) {
    create(store, deployment("fraud", 1_000)).await;
    create(store, deployment("kept", 1_000)).await;
    store
        .delete_deployment("fraud", event("deleted", None, json!({ "by": "alice" })))
        .await
        .unwrap();
    assert_err!(store.get_deployment("fraud").await, Error::NotFound(_));
    let names: Vec<String> = store
        .list_deployments()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["kept"]);
    let events = all_events(store, "fraud").await;
    assert_eq!(kinds(&events), ["created", "deleted"]);
    assert_eq!(events[1].detail, json!({ "by": "alice" }));

    // Deleting again: not found, and the history gets no second "deleted".
    assert_err!(
        store
            .delete_deployment("fraud", event("deleted", None, json!({})))
            .await,
        Error::NotFound(_)
    );
    assert_eq!(all_events(store, "fraud").await, events);

    // The name is free again; the new deployment starts at revision 1 and its history goes on.
    let again = create(store, deployment("fraud", 9_000)).await;
    assert_eq!(again.revision, 1);
    assert_eq!(
        kinds(&all_events(store, "fraud").await),
        ["created", "deleted", "created"]
    );
}

fn record(deployment: &str, i: usize) -> PredictionRecord {
    PredictionRecord {
        id: 0,
        deployment: deployment.into(),
        request_id: format!("req-{i}"),
        time_ms: 1_000 + i as i64,
        variant: if i.is_multiple_of(3) {
            Variant::Candidate
        } else {
            Variant::Stable
        },
        model_version: format!("{}", 1 + i % 2),
        inputs: json!([[i as f64 * 0.5, -1.25, 1e-7], [0.0, 3.0, 4.5]]),
        outputs: json!({ "label": [i % 2, 1], "probabilities": [[0.25, 0.75], [0.5, 0.5]] }),
        latency_us: 100 + i as u64,
    }
}

/// Every record of a deployment, read in pages of `page` ids.
async fn read_all_predictions(store: &Store, name: &str, page: usize) -> Vec<PredictionRecord> {
    let mut all: Vec<PredictionRecord> = Vec::new();
    let mut after_id = 0;
    loop {
        let records = store
            .read_predictions(name, after_id, page)
            .await
            .unwrap_or_else(|e| panic!("reading predictions of {name}: {e:?}"));
        assert!(records.len() <= page);
        let Some(last) = records.last() else {
            return all;
        };
        after_id = last.id;
        all.extend(records);
    }
}

async fn case_prediction_log_append_and_page(store: &Store) {
    store.append_predictions(Vec::new()).await.unwrap();
    // More than two statements' worth (200 rows each), with another deployment's records
    // written in between.
    let count = 450;
    let first: Vec<PredictionRecord> = (0..count).map(|i| record("fraud", i)).collect();
    store.append_predictions(first.clone()).await.unwrap();
    store
        .append_predictions((0..3).map(|i| record("other", i)).collect())
        .await
        .unwrap();
    let second: Vec<PredictionRecord> = (count..count + 5).map(|i| record("fraud", i)).collect();
    store.append_predictions(second.clone()).await.unwrap();

    let read = read_all_predictions(store, "fraud", 100).await;
    assert_eq!(read.len(), count + 5);
    assert!(
        read.windows(2).all(|pair| pair[0].id < pair[1].id),
        "ids increase"
    );
    assert!(read.iter().all(|r| r.id > 0), "ids are assigned");
    let expected: Vec<PredictionRecord> = first.into_iter().chain(second).collect();
    for (got, want) in read.iter().zip(&expected) {
        assert_eq!(
            got,
            &PredictionRecord {
                id: got.id,
                ..want.clone()
            }
        );
    }
    // Any page size gives the same records.
    assert_eq!(read_all_predictions(store, "fraud", 7).await, read);
    assert_eq!(read_all_predictions(store, "fraud", 10_000).await, read);
    let others = read_all_predictions(store, "other", 100).await;
    assert_eq!(others.len(), 3);
    assert!(others.iter().all(|r| r.deployment == "other"));
    // A page starts strictly after the id it is given.
    let tail = store
        .read_predictions("fraud", read[count].id, 100)
        .await
        .unwrap();
    assert_eq!(tail, read[count + 1..].to_vec());
    assert!(
        store
            .read_predictions("nobody", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_deployment_bodies_round_trip(store: &Store) {
    let no_rules = AnalysisRules {
        interval_ms: 100,
        min_samples: 1,
        max_error_rate: None,
        max_p99_ms: None,
        max_p99_ratio: None,
        max_prediction_shift: None,
        min_agreement: None,
        alpha: 0.01,
        rescore_percent: 0,
        min_rescore_agreement: None,
        rescore_min_samples: 1,
        score_tolerance: 0.0,
    };
    // Floats that a lossy decimal conversion would not give back bit for bit.
    let every_rule = AnalysisRules {
        interval_ms: 123_456,
        min_samples: u64::from(u32::MAX) + 1,
        max_error_rate: Some(0.1 + 0.2),
        max_p99_ms: Some(1e-300),
        max_p99_ratio: Some(2.000_000_000_000_000_4),
        max_prediction_shift: Some(1.0 / 3.0),
        min_agreement: Some(0.9),
        alpha: 0.1 + 0.2,
        rescore_percent: 100,
        min_rescore_agreement: Some(1.0 / 3.0),
        rescore_min_samples: u64::from(u32::MAX) + 1,
        score_tolerance: 1e-300,
    };
    let strategies = [
        canary(&[5, 25, 50, 100]),
        Strategy::BlueGreen {
            preview_ms: 60_000,
            mirror_percent: 10,
            bake_ms: 0,
        },
        Strategy::Shadow {
            mirror_percent: 100,
            duration_ms: u64::MAX,
        },
    ];
    let states = [
        RolloutState::Progressing,
        RolloutState::AwaitingApproval { promotion_id: 42 },
        RolloutState::Paused {
            reason: "progress deadline: stage 1 of 1".into(),
        },
        RolloutState::Succeeded,
        RolloutState::RolledBack {
            reason: "analysis failed: error_rate: \"candidate\" 0.5 > 0.01 — ünïcode".into(),
        },
        RolloutState::Aborted {
            reason: String::new(),
        },
    ];
    let mut bodies = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let strategy = strategies[i % strategies.len()].clone();
        let rules = if i.is_multiple_of(2) {
            no_rules.clone()
        } else {
            every_rule.clone()
        };
        let mut body = deployment(&format!("body-{i}"), 1_000 + i as i64);
        body.alias = i.is_multiple_of(2).then(|| "production".into());
        body.previous_version = (!i.is_multiple_of(2)).then(|| "0".into());
        body.settings = ServingSettings {
            log_sample: 1.0 / 7.0,
            batch_max_rows: 64 * i,
            batch_max_wait_ms: 3,
            breaker: BreakerConfig {
                failures: 1 + i as u32,
                cooldown_ms: 250,
            },
            monitor: slipway_core::monitoring::MonitorSettings {
                window_ms: 60_000 * (i as u64 + 1),
                window_rows: 1_000 * i as u64,
            },
            prediction_retention_ms: 86_400_000 * i as u64,
            slo: i.is_multiple_of(2).then_some(slipway_core::slo::SloSpec {
                availability: Some(0.999),
                latency: Some(slipway_core::slo::LatencyObjective {
                    threshold_ms: 200.0,
                    objective: 0.99,
                }),
                window_days: 28,
            }),
        };
        let mut with_rollout = rollout(i as i64 + 1, strategy, rules, state.clone());
        with_rollout.ended_ms = (!state.is_active()).then_some(9_000);
        body.rollout = Some(with_rollout);
        bodies.push(body);
    }
    for body in &bodies {
        let created = create(store, body.clone()).await;
        let expected = Deployment {
            revision: 1,
            ..body.clone()
        };
        assert_eq!(created, expected);
        assert_eq!(store.get_deployment(&body.name).await.unwrap(), expected);
    }
    let listed = store.list_deployments().await.unwrap();
    assert_eq!(listed.len(), bodies.len());
    for (got, body) in listed.iter().zip(&bodies) {
        assert_eq!(got.rollout, body.rollout);
        assert_eq!(got.settings, body.settings);
    }

    // One deployment through every state by updates: each read gives back what was written.
    let mut current = store.get_deployment("body-0").await.unwrap();
    for state in states {
        let mut next = current.clone();
        if let Some(rollout) = next.rollout.as_mut() {
            rollout.state = state;
            rollout.rules = every_rule.clone();
        }
        current = store
            .update_deployment(
                next.clone(),
                vec![event("state", Some(1), json!({ "next": next }))],
            )
            .await
            .unwrap();
        assert_eq!(current.revision, next.revision + 1);
        assert_eq!(store.get_deployment("body-0").await.unwrap(), current);
        // Event details keep the JSON as given (the rollout, its rules' floats included).
        let last = all_events(store, "body-0").await.pop().unwrap();
        assert_eq!(last.detail, json!({ "next": next }));
        let decoded: Deployment = serde_json::from_value(last.detail["next"].clone()).unwrap();
        assert_eq!(decoded, next);
    }
}

contract!(labels_join_logged_predictions_sqlite, labels_join_logged_predictions_postgres => case_labels_join_logged_predictions);

async fn case_labels_join_logged_predictions(store: &Store) {
    store
        .append_predictions((0..10).map(|i| record("fraud", i)).collect())
        .await
        .unwrap();
    store
        .append_predictions(vec![record("other", 3)])
        .await
        .unwrap();
    assert_eq!(
        store.put_labels("fraud", Vec::new(), 5_000).await.unwrap(),
        0
    );
    // Two of the three name logged predictions of this deployment; `req-3` of another one
    // does not count for it.
    let matched = store
        .put_labels(
            "fraud",
            vec![
                ("req-3".into(), json!([1, 0])),
                ("req-4".into(), json!("fraud")),
                ("req-99".into(), json!(1)),
            ],
            5_000,
        )
        .await
        .unwrap();
    assert_eq!(matched, 2);
    // A later label replaces the earlier.
    store
        .put_labels("fraud", vec![("req-4".into(), json!(0))], 6_000)
        .await
        .unwrap();
    // Predictions made in [1,002, 1,006), oldest first, with their labels.
    let joined = store
        .predictions_with_labels("fraud", 1_002, 1_006, 0, 100)
        .await
        .unwrap();
    let got: Vec<(String, Option<serde_json::Value>)> = joined
        .iter()
        .map(|(r, l)| (r.request_id.clone(), l.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("req-2".into(), None),
            ("req-3".into(), Some(json!([1, 0]))),
            ("req-4".into(), Some(json!(0))),
            ("req-5".into(), None),
        ]
    );
    assert_eq!(joined[1].0.outputs, record("fraud", 3).outputs);
    assert_eq!(
        joined[1].0.inputs,
        serde_json::Value::Null,
        "inputs are not read"
    );
    // Pages: at most the limit, after an id.
    let first = store
        .predictions_with_labels("fraud", 0, 10_000, 0, 3)
        .await
        .unwrap();
    assert_eq!(first.len(), 3, "at most the limit");
    let rest = store
        .predictions_with_labels("fraud", 0, 10_000, first[2].0.id, 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 7);
    assert!(rest.iter().all(|(r, _)| r.id > first[2].0.id));
}
