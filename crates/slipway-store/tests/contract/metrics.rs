//! Metrics: history order, idempotence, NaN and infinities, the latest value, keyset paging.

use slipway_core::ports::HistoryCursor;
use slipway_core::tracking::{Metric, RunId};

use crate::common::{
    Store, create_experiment, create_run, latest, log, metric, metrics_batch, point,
};

contract!(metric_history_order_sqlite, metric_history_order_postgres => case_metric_history_order);
contract!(metric_points_are_idempotent_sqlite, metric_points_are_idempotent_postgres => case_metric_points_are_idempotent);
contract!(metric_latest_value_sqlite, metric_latest_value_postgres => case_metric_latest_value);
contract!(metric_nan_and_infinity_sqlite, metric_nan_and_infinity_postgres => case_metric_nan_and_infinity);
contract!(metric_history_paging_sqlite, metric_history_paging_postgres => case_metric_history_paging);
contract!(metric_history_paging_ties_sqlite, metric_history_paging_ties_postgres => case_metric_history_paging_ties);

async fn history(store: &Store, run_id: &RunId, key: &str) -> Vec<Metric> {
    let page = store
        .get_metric_history(run_id, key, HistoryCursor::default(), 100_000)
        .await
        .unwrap()
        .expect("the run exists");
    assert!(page.next.is_none());
    page.metrics
}

async fn case_metric_history_order(store: &Store) {
    let experiment = create_experiment(store, "history").await;
    let run_id = create_run(store, experiment, "h", 1).await;
    // Logged out of order, over several batches: (value, timestamp, step).
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("loss", 0.5, 300, 1),
            metric("loss", 0.9, 100, 5),
            metric("loss", 0.7, 200, 0),
        ]),
    )
    .await;
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("loss", 0.6, 200, 0),
            metric("loss", 0.4, 300, 0),
            metric("acc", 0.1, 50, 0),
        ]),
    )
    .await;
    let points: Vec<(i64, i64, f64)> = history(store, &run_id, "loss")
        .await
        .iter()
        .map(|m| (m.timestamp, m.step, m.value))
        .collect();
    assert_eq!(
        points,
        vec![
            (100, 5, 0.9),
            (200, 0, 0.6),
            (200, 0, 0.7),
            (300, 0, 0.4),
            (300, 1, 0.5),
        ],
        "ordered by timestamp, then step, then value"
    );
    let loss = history(store, &run_id, "loss").await;
    assert!(loss.iter().all(|m| m.key == "loss"));
    assert!(loss.iter().all(|m| m.model_id.is_none()));
    assert_eq!(history(store, &run_id, "acc").await.len(), 1);
    // A key never logged: an empty history, not an error.
    assert!(history(store, &run_id, "never").await.is_empty());
    // An unknown run: None.
    assert_eq!(
        store
            .get_metric_history(&RunId::generate(), "loss", HistoryCursor::default(), 10)
            .await
            .unwrap(),
        None
    );
    // Extreme values keep every bit.
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("precise", 0.1 + 0.2, 1, 0),
            metric("precise", f64::MIN_POSITIVE, 2, 0),
            metric("precise", -1.0e300, 3, 0),
            metric("precise", 123_456_789.123_456_78, 4, i64::MAX),
            metric("precise", -0.0, 5, -3),
        ]),
    )
    .await;
    let precise: Vec<(i64, i64, u64)> = history(store, &run_id, "precise")
        .await
        .iter()
        .map(|m| (m.timestamp, m.step, m.value.abs().to_bits()))
        .collect();
    assert_eq!(
        precise,
        vec![
            (1, 0, (0.1f64 + 0.2).to_bits()),
            (2, 0, f64::MIN_POSITIVE.to_bits()),
            (3, 0, 1.0e300f64.to_bits()),
            (4, i64::MAX, 123_456_789.123_456_78f64.to_bits()),
            (5, -3, 0.0f64.to_bits()),
        ]
    );
    let signs: Vec<bool> = history(store, &run_id, "precise")
        .await
        .iter()
        .take(3)
        .map(|m| m.value.is_sign_negative())
        .collect();
    assert_eq!(signs, vec![false, false, true]);
}

async fn case_metric_points_are_idempotent(store: &Store) {
    let experiment = create_experiment(store, "idempotent").await;
    let run_id = create_run(store, experiment, "i", 1).await;
    let points = vec![
        metric("m", 1.0, 10, 0),
        metric("m", 2.0, 20, 1),
        metric("m", f64::NAN, 30, 2),
        metric("m", f64::INFINITY, 40, 3),
    ];
    log(store, &run_id, metrics_batch(points.clone())).await;
    // A retried batch changes nothing.
    log(store, &run_id, metrics_batch(points.clone())).await;
    // Duplicates inside one batch collapse too.
    log(
        store,
        &run_id,
        metrics_batch(vec![metric("m", 1.0, 10, 0), metric("m", 1.0, 10, 0)]),
    )
    .await;
    let stored = history(store, &run_id, "m").await;
    assert_eq!(
        stored.iter().map(point).collect::<Vec<_>>(),
        points.iter().map(point).collect::<Vec<_>>()
    );
    // Same timestamp and step, another value: a distinct point.
    log(store, &run_id, metrics_batch(vec![metric("m", 1.5, 10, 0)])).await;
    assert_eq!(history(store, &run_id, "m").await.len(), 5);
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(run.data.metrics.len(), 1);
    assert_eq!(latest(&run, "m").unwrap().value, f64::INFINITY);
}

async fn case_metric_latest_value(store: &Store) {
    let experiment = create_experiment(store, "latest").await;
    let run_id = create_run(store, experiment, "l", 1).await;
    // The latest point is the greatest (step, timestamp, value), whatever the logging order.
    log(
        store,
        &run_id,
        metrics_batch(vec![metric("m", 9.0, 200, 1)]),
    )
    .await;
    log(
        store,
        &run_id,
        metrics_batch(vec![metric("m", 1.0, 50, 3), metric("m", 5.0, 100, 2)]),
    )
    .await;
    log(store, &run_id, metrics_batch(vec![metric("m", 2.0, 50, 3)])).await;
    // An older timestamp at the top step, a lower step with a newer timestamp and a bigger
    // value, a smaller value at the same (step, timestamp): none of these is newer.
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("m", 100.0, 10, 3),
            metric("m", 100.0, 999, 2),
            metric("m", 1.5, 50, 3),
        ]),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    let m = latest(&run, "m").unwrap();
    assert_eq!((m.value, m.timestamp, m.step), (2.0, 50, 3));

    // A later timestamp at the same step wins over a bigger value.
    log(
        store,
        &run_id,
        metrics_batch(vec![metric("m", -7.0, 51, 3)]),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    let m = latest(&run, "m").unwrap();
    assert_eq!((m.value, m.timestamp, m.step), (-7.0, 51, 3));

    // Within one batch, the newest point of each key is found regardless of its position.
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("a", 1.0, 1, 10),
            metric("b", 1.0, 1, 0),
            metric("a", 3.0, 1, 30),
            metric("b", 2.0, 5, 0),
            metric("a", 2.0, 1, 20),
        ]),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    let a = latest(&run, "a").unwrap();
    assert_eq!((a.value, a.timestamp, a.step), (3.0, 1, 30));
    let b = latest(&run, "b").unwrap();
    assert_eq!((b.value, b.timestamp, b.step), (2.0, 5, 0));
    // One latest value per key, sorted by key.
    let keys: Vec<&str> = run.data.metrics.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, vec!["a", "b", "m"]);

    // Negative steps are ordinary steps.
    log(
        store,
        &run_id,
        metrics_batch(vec![metric("neg", 1.0, 100, -5), metric("neg", 2.0, 1, -1)]),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    let neg = latest(&run, "neg").unwrap();
    assert_eq!((neg.value, neg.timestamp, neg.step), (2.0, 1, -1));

    // Each run has its own latest values.
    let other = create_run(store, experiment, "o", 2).await;
    log(store, &other, metrics_batch(vec![metric("m", 0.0, 1, 0)])).await;
    assert_eq!(
        latest(&store.get_run(&other).await.unwrap(), "m")
            .unwrap()
            .value,
        0.0
    );
    assert_eq!(
        latest(&store.get_run(&run_id).await.unwrap(), "m")
            .unwrap()
            .value,
        -7.0
    );
}

async fn case_metric_nan_and_infinity(store: &Store) {
    let experiment = create_experiment(store, "nan").await;
    let run_id = create_run(store, experiment, "n", 1).await;
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("weird", f64::NAN, 1, 0),
            metric("weird", f64::INFINITY, 2, 1),
            metric("weird", f64::NEG_INFINITY, 3, 2),
            metric("nan-last", 5.0, 1, 0),
            metric("nan-last", f64::NAN, 2, 1),
            metric("inf-last", 1.0, 1, 0),
            metric("inf-last", f64::INFINITY, 1, 1),
        ]),
    )
    .await;
    let weird = history(store, &run_id, "weird").await;
    assert_eq!(weird.len(), 3);
    assert!(weird[0].value.is_nan());
    assert_eq!(weird[1].value, f64::INFINITY);
    assert_eq!(weird[2].value, f64::NEG_INFINITY);
    assert_eq!(
        weird
            .iter()
            .map(|m| (m.timestamp, m.step))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 1), (3, 2)]
    );

    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(latest(&run, "weird").unwrap().value, f64::NEG_INFINITY);
    let nan_last = latest(&run, "nan-last").unwrap();
    assert!(nan_last.value.is_nan(), "{nan_last:?}");
    assert_eq!((nan_last.timestamp, nan_last.step), (2, 1));
    assert_eq!(latest(&run, "inf-last").unwrap().value, f64::INFINITY);

    // At the same (step, timestamp), NaN ranks above every number, infinity included.
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("tie", 3.0, 5, 5),
            metric("tie", f64::NAN, 5, 5),
            metric("tie", f64::INFINITY, 5, 5),
        ]),
    )
    .await;
    let tie = latest(&store.get_run(&run_id).await.unwrap(), "tie")
        .unwrap()
        .clone();
    assert!(tie.value.is_nan(), "{tie:?}");
    // Logged in the other order, across batches.
    log(
        store,
        &run_id,
        metrics_batch(vec![metric("tie2", f64::NAN, 5, 5)]),
    )
    .await;
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("tie2", f64::INFINITY, 5, 5),
            metric("tie2", 1.0, 5, 5),
        ]),
    )
    .await;
    let tie2 = latest(&store.get_run(&run_id).await.unwrap(), "tie2")
        .unwrap()
        .clone();
    assert!(tie2.value.is_nan(), "{tie2:?}");
    // NaN and 0.0 at the same point are two distinct points.
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("zero", 0.0, 1, 1),
            metric("zero", f64::NAN, 1, 1),
        ]),
    )
    .await;
    let zero = history(store, &run_id, "zero").await;
    assert_eq!(zero.len(), 2);
    assert_eq!(zero.iter().filter(|m| m.value.is_nan()).count(), 1);
    assert_eq!(zero.iter().filter(|m| m.value == 0.0).count(), 1);
}

/// A deterministic pseudo-random sequence (64-bit LCG), so the test needs no extra crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

async fn case_metric_history_paging(store: &Store) {
    let experiment = create_experiment(store, "paging").await;
    let run_id = create_run(store, experiment, "big", 1).await;
    // 10,000 distinct points with many ties on timestamp and on (timestamp, step), so the
    // keyset has to break ties by step and by value.
    let mut rng = Lcg(42);
    let mut points: Vec<(i64, i64, f64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while points.len() < 10_000 {
        let timestamp = 1_700_000_000_000 + (rng.next() % 2_000) as i64;
        let step = (rng.next() % 5) as i64;
        let value = (rng.next() % 1_000) as f64 / 8.0 - 60.0;
        if seen.insert((timestamp, step, value.to_bits())) {
            points.push((timestamp, step, value));
        }
    }
    for chunk in points.chunks(1_000) {
        log(
            store,
            &run_id,
            metrics_batch(
                chunk
                    .iter()
                    .map(|(timestamp, step, value)| metric("series", *value, *timestamp, *step))
                    .collect(),
            ),
        )
        .await;
    }
    let mut expected = points.clone();
    expected.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.total_cmp(&b.2)));

    let mut read: Vec<(i64, i64, f64)> = Vec::new();
    let mut cursor = HistoryCursor::default();
    let mut pages = 0;
    loop {
        let page = store
            .get_metric_history(&run_id, "series", cursor, 1_000)
            .await
            .unwrap()
            .expect("the run exists");
        pages += 1;
        assert!(page.metrics.len() <= 1_000);
        read.extend(page.metrics.iter().map(|m| (m.timestamp, m.step, m.value)));
        match page.next {
            Some(next) => {
                assert_eq!(
                    page.metrics.len(),
                    1_000,
                    "only full pages have a next page"
                );
                // Through its wire form, as a client hands it back.
                cursor = HistoryCursor::decode(Some(&next.encode())).unwrap();
                assert_eq!(cursor, next);
            }
            None => break,
        }
        assert!(pages <= 11, "paging does not end");
    }
    assert_eq!(pages, 10, "10,000 points in pages of 1,000");
    assert_eq!(read.len(), 10_000);
    assert_eq!(read, expected, "every point exactly once, in order");

    // Uneven pages end with a short page and no cursor.
    let mut sizes = Vec::new();
    let mut cursor = HistoryCursor::default();
    loop {
        let page = store
            .get_metric_history(&run_id, "series", cursor, 3_000)
            .await
            .unwrap()
            .unwrap();
        sizes.push(page.metrics.len());
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
        assert!(sizes.len() <= 5, "paging does not end");
    }
    assert_eq!(sizes, vec![3_000, 3_000, 3_000, 1_000]);

    // The latest value of the series is its greatest (step, timestamp, value).
    let newest = points
        .iter()
        .copied()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)).then(a.2.total_cmp(&b.2)))
        .unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    let m = latest(&run, "series").unwrap();
    assert_eq!((m.timestamp, m.step, m.value), newest);
}

async fn case_metric_history_paging_ties(store: &Store) {
    let experiment = create_experiment(store, "ties").await;
    let run_id = create_run(store, experiment, "t", 1).await;
    // Same timestamp and step, values around zero, NaN and infinities among them.
    log(
        store,
        &run_id,
        metrics_batch(vec![
            metric("t", 1.0, 7, 7),
            metric("t", f64::NAN, 7, 7),
            metric("t", -1.0, 7, 7),
            metric("t", 0.0, 7, 7),
            metric("t", f64::INFINITY, 7, 7),
            metric("t", f64::NEG_INFINITY, 7, 7),
            metric("t", 0.5, 8, 0),
            metric("t", 0.5, 6, 9),
        ]),
    )
    .await;
    let all = history(store, &run_id, "t").await;
    assert_eq!(all.len(), 8);
    // Pages of one point walk the same sequence, each point once.
    let mut walked = Vec::new();
    let mut cursor = HistoryCursor::default();
    for _ in 0..20 {
        let page = store
            .get_metric_history(&run_id, "t", cursor, 1)
            .await
            .unwrap()
            .unwrap();
        walked.extend(page.metrics.iter().map(point));
        match page.next {
            Some(next) => cursor = HistoryCursor::decode(Some(&next.encode())).unwrap(),
            None => break,
        }
    }
    assert_eq!(walked, all.iter().map(point).collect::<Vec<_>>());
    // Numbers in order by value within the tie; timestamps order first.
    assert_eq!((all[0].timestamp, all[0].step), (6, 9));
    assert_eq!((all[7].timestamp, all[7].step), (8, 0));
    let numbers: Vec<f64> = all[1..7]
        .iter()
        .map(|m| m.value)
        .filter(|v| !v.is_nan())
        .collect();
    assert_eq!(
        numbers,
        vec![f64::NEG_INFINITY, -1.0, 0.0, 1.0, f64::INFINITY]
    );
}
