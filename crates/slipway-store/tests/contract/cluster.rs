//! Several servers on one store: one holder of a lease at a time, taken over only when it lapses
//! or is released, and queued reports each taken once, oldest first.

use std::collections::BTreeSet;
use std::sync::Arc;

use slipway_core::ports::MetadataStore;

use crate::common::open;

contract!(uri: one_server_holds_a_lease_at_a_time_sqlite, one_server_holds_a_lease_at_a_time_postgres => case_one_server_holds_a_lease_at_a_time);
contract!(uri: queued_reports_are_taken_once_oldest_first_sqlite, queued_reports_are_taken_once_oldest_first_postgres => case_queued_reports_are_taken_once_oldest_first);

async fn case_one_server_holds_a_lease_at_a_time(uri: &str) {
    // Two processes' stores on one database.
    let a: Arc<dyn MetadataStore> = Arc::new(open(uri).await);
    let b: Arc<dyn MetadataStore> = Arc::new(open(uri).await);
    assert!(a.get_lease("leader").await.unwrap().is_none());

    let first = a.acquire_lease("leader", "a", 60_000).await.unwrap();
    assert!(first.held_by("a"));
    assert_eq!(first.epoch, 1);
    // Held: b is told who holds it and does not get it.
    let refused = b.acquire_lease("leader", "b", 60_000).await.unwrap();
    assert!(!refused.held_by("b"));
    assert_eq!((refused.holder.as_str(), refused.epoch), ("a", 1));
    // A renewal moves the expiry, never the epoch or the time it was taken.
    let renewed = a.acquire_lease("leader", "a", 60_000).await.unwrap();
    assert_eq!(renewed.epoch, 1);
    assert_eq!(renewed.acquired_ms, first.acquired_ms);
    assert!(renewed.expires_ms >= first.expires_ms);
    // Another lease is independent.
    assert!(
        b.acquire_lease("other", "b", 60_000)
            .await
            .unwrap()
            .held_by("b")
    );

    // Released: b takes it at once, in a new epoch; a's release of b's lease does nothing.
    b.release_lease("leader", "b").await.unwrap();
    assert!(a.get_lease("leader").await.unwrap().unwrap().held_by("a"));
    a.release_lease("leader", "a").await.unwrap();
    let taken = b.acquire_lease("leader", "b", 300).await.unwrap();
    assert!(taken.held_by("b"));
    assert_eq!(taken.epoch, 2);
    a.release_lease("leader", "a").await.unwrap();
    assert!(b.get_lease("leader").await.unwrap().unwrap().held_by("b"));

    // Lapsed (b stopped renewing): a takes it.
    assert!(
        !a.acquire_lease("leader", "a", 60_000)
            .await
            .unwrap()
            .held_by("a")
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let after = a.acquire_lease("leader", "a", 60_000).await.unwrap();
    assert!(after.held_by("a"));
    assert_eq!(after.epoch, 3);

    // Many servers racing for a lapsed lease: exactly one wins.
    a.release_lease("leader", "a").await.unwrap();
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        racers.push(tokio::spawn(async move {
            let holder = format!("racer-{i}");
            store
                .acquire_lease("leader", &holder, 60_000)
                .await
                .unwrap()
                .held_by(&holder)
        }));
    }
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(a.get_lease("leader").await.unwrap().unwrap().epoch, 4);
}

async fn case_queued_reports_are_taken_once_oldest_first(uri: &str) {
    let follower: Arc<dyn MetadataStore> = Arc::new(open(uri).await);
    let leader: Arc<dyn MetadataStore> = Arc::new(open(uri).await);
    assert!(!leader.has_queued_reports().await.unwrap());
    for i in 0..5 {
        follower
            .queue_report("d", "replica:r1", format!("{{\"n\":{i}}}"), 1_000 + i)
            .await
            .unwrap();
    }
    assert!(leader.has_queued_reports().await.unwrap());
    let first = leader.take_queued_reports(2).await.unwrap();
    let bodies: Vec<&str> = first.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, ["{\"n\":0}", "{\"n\":1}"]);
    assert_eq!(first[0].deployment, "d");
    assert_eq!(first[0].source, "replica:r1");
    assert_eq!(first[0].created_ms, 1_000);
    let rest = leader.take_queued_reports(100).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert!(leader.take_queued_reports(100).await.unwrap().is_empty());
    assert!(!leader.has_queued_reports().await.unwrap());

    // Two takers at once never get the same report.
    for i in 0..200 {
        follower
            .queue_report("d", "server", format!("{i}"), i)
            .await
            .unwrap();
    }
    let takers: Vec<_> = [follower.clone(), leader.clone()]
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let taken = store.take_queued_reports(7).await.unwrap();
                    if taken.is_empty() {
                        return ids;
                    }
                    ids.extend(taken.into_iter().map(|r| r.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for taker in takers {
        all.extend(taker.await.unwrap());
    }
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unique.len(), 200);
}
