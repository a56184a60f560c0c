//! The audit log: entries commit and roll back with their change, the chain verifies under
//! concurrent writers, the table refuses UPDATE and DELETE, and tampering behind the store's
//! back (triggers dropped) is caught by the chain.

use slipway_core::Error;
use slipway_core::audit::{AuditEvent, AuditRecord, ChainVerifier, GENESIS_HASH, Outcome};
use slipway_core::ports::AuditFilter;
use sqlx::{Connection, Executor};

use crate::common::{Store, create_experiment, create_run, metric, metrics_batch, open};

contract!(entries_alone_and_with_writes_interleave_in_one_chain_sqlite, entries_alone_and_with_writes_interleave_in_one_chain_postgres => case_entries_alone_and_with_writes_interleave_in_one_chain);
contract!(entries_follow_their_change_sqlite, entries_follow_their_change_postgres => case_entries_follow_their_change);
contract!(chain_holds_under_concurrent_writers_sqlite, chain_holds_under_concurrent_writers_postgres => case_chain_holds_under_concurrent_writers);
contract!(uri: append_only_and_tamper_evident_sqlite, append_only_and_tamper_evident_postgres => case_append_only_and_tamper_evident);

fn event(action: &str, resource: &str) -> AuditEvent {
    AuditEvent {
        actor: "alice".into(),
        action: action.into(),
        resource: resource.into(),
        request_id: Some("req-1".into()),
        outcome: Outcome::Ok,
        summary: "{\"k\":1}".into(),
    }
}

async fn all_entries(store: &Store) -> Vec<AuditRecord> {
    store
        .read_audit(&AuditFilter::default(), 0, 100_000)
        .await
        .unwrap()
}

async fn verify(store: &Store) -> Result<u64, slipway_core::audit::ChainBreak> {
    let (head_seq, head_hash) = store.audit_head().await.unwrap();
    let mut verifier = ChainVerifier::default();
    for entry in all_entries(store).await {
        verifier.check(&entry)?;
    }
    verifier.finish(head_seq, &head_hash)
}

async fn case_entries_follow_their_change(store: &Store) {
    assert_eq!(
        store.audit_head().await.unwrap(),
        (0, GENESIS_HASH.to_owned())
    );
    let experiment = create_experiment(store, "audited").await;
    let run = create_run(store, experiment, "r", 1).await;

    store
        .audited(event("runs.log_batch", &format!("run:{run}")))
        .log_batch(&run, metrics_batch(vec![metric("m", 1.0, 1, 0)]))
        .await
        .unwrap();
    // A refused change leaves no entry.
    let missing = slipway_core::tracking::RunId::generate();
    assert_err!(
        store
            .audited(event("runs.log_batch", &format!("run:{missing}")))
            .log_batch(&missing, metrics_batch(vec![metric("m", 1.0, 1, 0)]))
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .audited(event("registry.delete_model", "registered_model:ghost"))
            .delete_registered_model("ghost")
            .await,
        Error::NotFound(_)
    );
    // Writes through the plain handle are not audited (use-cases always use an audited one).
    store
        .log_batch(&run, metrics_batch(vec![metric("m", 2.0, 2, 1)]))
        .await
        .unwrap();
    // Writes of every kind carry their entry: the sqlx path (registry) and the identity path.
    store
        .audited(event("registry.create_model", "registered_model:m"))
        .create_registered_model("m", None, &[], 5)
        .await
        .unwrap();
    let denied = store
        .append_audit(AuditEvent {
            outcome: Outcome::Denied,
            ..event("request.denied", "route:POST /x")
        })
        .await
        .unwrap();
    assert_eq!(denied.seq, 3);

    let entries = all_entries(store).await;
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("runs.log_batch", "ok"),
            ("registry.create_model", "ok"),
            ("request.denied", "denied")
        ]
    );
    assert_eq!(entries[0].resource, format!("run:{run}"));
    assert_eq!(entries[0].request_id.as_deref(), Some("req-1"));
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    assert_eq!(verify(store).await, Ok(3));

    let filtered = store
        .read_audit(
            &AuditFilter {
                resource: Some("registered_model:m".into()),
                ..AuditFilter::default()
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    let paged = store
        .read_audit(&AuditFilter::default(), 1, 1)
        .await
        .unwrap();
    assert_eq!(paged[0].seq, 2);
    // Newest first, for people reading the log: from the end, then before a given entry.
    let newest: Vec<i64> = store
        .read_audit_newest(&AuditFilter::default(), None, 2)
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.seq)
        .collect();
    assert_eq!(newest, [3, 2]);
    let older: Vec<i64> = store
        .read_audit_newest(&AuditFilter::default(), Some(2), 10)
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.seq)
        .collect();
    assert_eq!(older, [1]);
    let by_actor = store
        .read_audit(
            &AuditFilter {
                actor: Some("bob".into()),
                ..AuditFilter::default()
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert!(by_actor.is_empty());
}

async fn case_chain_holds_under_concurrent_writers(store: &Store) {
    let experiment = create_experiment(store, "busy").await;
    let mut runs = Vec::new();
    for index in 0..8 {
        runs.push(create_run(store, experiment, &format!("r{index}"), 1).await);
    }
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let store = store.clone();
        let run = runs[writer % runs.len()].clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..10 {
                store
                    .audited(event("runs.log_batch", &format!("run:{run}")))
                    .log_batch(
                        &run,
                        metrics_batch(vec![metric(
                            "m",
                            step as f64,
                            1,
                            writer as i64 * 100 + step,
                        )]),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(verify(store).await, Ok(320));
}

/// A raw connection that goes around the store, as someone with database access would.
async fn raw(uri: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = if let Some(path) = uri.strip_prefix("sqlite:///") {
        format!("sqlite:///{path}")
    } else {
        uri.to_owned()
    };
    sqlx::AnyConnection::connect(&url).await.unwrap()
}

async fn case_append_only_and_tamper_evident(uri: &str) {
    let sql = open(uri).await;
    let postgres = slipway_core::ports::MetadataStore::backend_name(&sql) == "postgresql";
    let store: Store = std::sync::Arc::new(sql.clone());
    for index in 0..5 {
        store
            .append_audit(event("test.append", &format!("thing:{index}")))
            .await
            .unwrap();
    }
    assert_eq!(verify(&store).await, Ok(5));

    let mut conn = raw(uri).await;
    for statement in [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 5",
    ] {
        let error = conn.execute(statement).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    if postgres {
        let error = conn.execute("TRUNCATE audit_log").await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    } else {
        let error = conn
            .execute(
                "INSERT OR REPLACE INTO audit_log SELECT seq, time_ms, 'mallory', action, resource, \
                 request_id, outcome, summary, prev_hash, hash FROM audit_log WHERE seq = 2",
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    assert_eq!(verify(&store).await, Ok(5));

    // Someone who drops the protection can edit, but not unnoticed.
    let drop_triggers = if postgres {
        "ALTER TABLE audit_log DISABLE TRIGGER USER"
    } else {
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
         DROP TRIGGER audit_log_append_at_end"
    };
    conn.execute(drop_triggers).await.unwrap();
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
        .await
        .unwrap();
    let broken = verify(&store).await.unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    conn.execute("UPDATE audit_log SET actor = 'alice' WHERE seq = 3")
        .await
        .unwrap();
    assert_eq!(verify(&store).await, Ok(5));

    // Cutting entries off the end is caught by the head.
    conn.execute("DELETE FROM audit_log WHERE seq = 5")
        .await
        .unwrap();
    let broken = verify(&store).await.unwrap_err();
    assert_eq!(broken.seq, 5, "{broken}");
    assert!(broken.reason.contains("removed from the end"), "{broken}");

    // A deletion in the middle breaks the link of the entry after it.
    conn.execute("DELETE FROM audit_log WHERE seq = 2")
        .await
        .unwrap();
    assert_eq!(verify(&store).await.unwrap_err().seq, 3);
    sql.close().await;
}

/// Entries that go with no change (refusals, uploads' records) and entries that go with a write
/// arrive at once, and on SQLite share one grouped transaction: one chain, nothing refused.
async fn case_entries_alone_and_with_writes_interleave_in_one_chain(store: &Store) {
    let experiment = crate::common::create_experiment(store, "interleaved").await;
    let run = crate::common::create_run(store, experiment, "r", 1).await;
    let mut tasks = Vec::new();
    for index in 0..60 {
        let (store, run) = (store.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            match index % 3 {
                // Writes on both of the SQLite writer's connections.
                0 => store
                    .audited(event("registry.create_model", &format!("m{index}")))
                    .create_registered_model(&format!("m{index}"), None, &[], 1)
                    .await
                    .map(|_| ()),
                1 => {
                    store
                        .audited(event("runs.log_batch", &format!("run:{run}")))
                        .log_batch(
                            &run,
                            slipway_core::tracking::Batch {
                                metrics: vec![slipway_core::tracking::Metric::new(
                                    "m", 1.0, index, index,
                                )],
                                ..Default::default()
                            },
                        )
                        .await
                }
                _ => store
                    .append_audit(event("request.denied", &format!("route:{index}")))
                    .await
                    .map(|_| ()),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(verify(store).await, Ok(60));
}
