//! Several servers on one store: one leads at a time, a follower's measurements reach the
//! leader through the store's queue, and leadership moves when the leader stops renewing or
//! resigns.

use std::sync::Arc;
use std::time::Duration;

use slipway_api::Deployments;
use slipway_app::cluster::Mode;
use slipway_app::{App, AppSettings};
use slipway_artifacts::ObjectArtifactStore;
use slipway_core::deployment::{ServingStats, WindowStats};
use slipway_store::{BackendUri, SqlStore, StoreOptions};

/// A server's deployments machinery on its own connection to `uri`.
async fn server(uri: &str, node: &str, ttl: Duration) -> Deployments {
    let store = SqlStore::open(
        &BackendUri::parse(uri).expect("parsing the URI"),
        StoreOptions::default(),
    )
    .await
    .expect("opening the store");
    let app = App::new(
        Arc::new(store),
        Arc::new(ObjectArtifactStore::in_memory()),
        AppSettings::default(),
    );
    Deployments::with_mode(
        &app,
        slipway_plane::plane::PlaneConfig::default(),
        Mode::Clustered {
            node: node.to_owned(),
            lease_ttl: ttl,
        },
    )
}

fn window(requests: u64) -> WindowStats {
    let mut stats = WindowStats::default();
    stats.stable.requests = requests;
    stats
}

async fn leadership_moves_and_reports_reach_the_leader(uri: &str) {
    let ttl = Duration::from_millis(1_500);
    let a = server(uri, "a", ttl).await;
    let b = server(uri, "b", ttl).await;
    // Before its first step a clustered server does not lead.
    assert!(!a.cluster.is_leader());
    a.cluster.step().await.unwrap();
    b.cluster.step().await.unwrap();
    assert!(a.cluster.is_leader());
    assert!(!b.cluster.is_leader());
    let status = b.cluster.status();
    assert_eq!(status.lease.as_ref().map(|l| l.holder.as_str()), Some("a"));
    assert!(!status.leader);

    // A replica's report reaching the follower is queued; the leader takes it into its window.
    let serving = ServingStats {
        requests: 10,
        ..ServingStats::default()
    };
    assert!(
        b.cluster
            .report("d", Some((1, 0, window(10))), serving.clone(), "replica:r1")
            .await
            .unwrap()
    );
    assert!(
        b.cluster
            .report("d", Some((1, 0, window(5))), serving.clone(), "server")
            .await
            .unwrap()
    );
    assert!(b.controller.live_window("d").is_none());
    assert_eq!(
        b.cluster.drain().await.unwrap(),
        0,
        "a follower takes nothing"
    );
    assert_eq!(a.cluster.drain().await.unwrap(), 2);
    let live = a.controller.live_window("d").expect("the leader's window");
    assert_eq!(live.sources["replica:r1"], 10);
    assert_eq!(live.sources["server"], 5);
    assert_eq!(live.stats.stable.requests, 15);
    assert_eq!(
        a.cluster.drain().await.unwrap(),
        0,
        "each report is taken once"
    );
    // The leader's own reports go straight to its memory.
    a.cluster
        .report("d", Some((1, 0, window(1))), serving, "server")
        .await
        .unwrap();
    assert_eq!(
        a.controller.live_window("d").unwrap().stats.stable.requests,
        16
    );

    // The leader stops renewing (it hangs, or died): by its own clock it stops leading before
    // the lease lapses, and the follower takes over once it has.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(!a.cluster.is_leader(), "a leader that did not renew stops");
    b.cluster.step().await.unwrap();
    assert!(b.cluster.is_leader());
    assert_eq!(b.cluster.status().lease.unwrap().epoch, 2);
    // The deposed leader hears it, and forgets its windows: another server's analyses follow.
    a.cluster.step().await.unwrap();
    assert!(!a.cluster.is_leader());
    assert!(a.controller.live_window("d").is_none());
    assert!(
        a.cluster
            .counters
            .transitions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );

    // A leader shutting down resigns: the other takes over at its next step, not a lease later.
    b.cluster.resign().await;
    assert!(!b.cluster.is_leader());
    a.cluster.step().await.unwrap();
    assert!(a.cluster.is_leader());
    assert_eq!(a.cluster.status().lease.unwrap().epoch, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_and_reports_reach_the_leader_sqlite() {
    let db = slipway_testkit::SqliteDatabase::create();
    leadership_moves_and_reports_reach_the_leader(&db.uri).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_and_reports_reach_the_leader_postgres() {
    let Some(db) = slipway_testkit::PgDatabase::create().await else {
        return;
    };
    leadership_moves_and_reports_reach_the_leader(&db.uri).await;
}
