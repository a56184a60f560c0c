//! search_runs: filters on every kind of key, OR and parentheses, ordering, paging, views.

use std::collections::HashSet;

use slipway_core::ports::SearchQuery;
use slipway_core::search::SearchEntity;
use slipway_core::tracking::{ExperimentId, RunId, RunStatus, RunUpdate, ViewType};

use crate::common::{
    Store, batch, create_experiment, create_run, dataset_input, latest, log, metric, metrics_batch,
    next_offset, param, query, run_names, search_run_names, strings, tag, value_of,
};

contract!(search_runs_metric_filters_sqlite, search_runs_metric_filters_postgres => case_search_runs_metric_filters);
contract!(search_runs_param_tag_filters_sqlite, search_runs_param_tag_filters_postgres => case_search_runs_param_tag_filters);
contract!(search_runs_attribute_filters_sqlite, search_runs_attribute_filters_postgres => case_search_runs_attribute_filters);
contract!(search_runs_dataset_filters_sqlite, search_runs_dataset_filters_postgres => case_search_runs_dataset_filters);
contract!(search_runs_or_and_parentheses_sqlite, search_runs_or_and_parentheses_postgres => case_search_runs_or_and_parentheses);
contract!(search_runs_order_by_sqlite, search_runs_order_by_postgres => case_search_runs_order_by);
contract!(search_runs_paging_sqlite, search_runs_paging_postgres => case_search_runs_paging);
contract!(search_runs_view_types_sqlite, search_runs_view_types_postgres => case_search_runs_view_types);

struct Seeded {
    experiment: ExperimentId,
    other_experiment: ExperimentId,
    /// train-a, train-b, eval-c, other, Train-e (start times 1000..5000).
    runs: Vec<RunId>,
}

/// Five runs in one experiment (newest first by default: Train-e, other, eval-c, train-b,
/// train-a) and one in another:
///
/// | run      | start | status   | metrics            | params                          | tags                     | datasets          |
/// |----------|-------|----------|--------------------|---------------------------------|--------------------------|-------------------|
/// | train-a  | 1000  | FINISHED | acc .9, loss .3    | model=cnn lr=0.01 batch=064     | team=Red env=prod grp=x  | mnist/d1 training |
/// | train-b  | 2000  | RUNNING  | acc .8             | model=rnn batch=016             | team=red grp=y           | cifar/d2 eval     |
/// | eval-c   | 3000  | FAILED   | acc .7, loss .5    | model=CNN-large batch=128       | team=blue grp=x          | mnist/d1 eval     |
/// | other    | 4000  | RUNNING  |                    | lr=0.1 batch=032                | grp=y                    |                   |
/// | Train-e  | 5000  | KILLED   |                    |                                 |                          |                   |
/// | elsewhere| 6000  | RUNNING  | acc .95            | model=cnn                       | team=red                 |                   |
async fn seed(store: &Store) -> Seeded {
    let experiment = create_experiment(store, "search").await;
    let other_experiment = create_experiment(store, "search-elsewhere").await;
    struct Spec {
        name: &'static str,
        start: i64,
        status: RunStatus,
        metrics: Vec<(&'static str, f64)>,
        params: Vec<(&'static str, &'static str)>,
        tags: Vec<(&'static str, &'static str)>,
        datasets: Vec<(&'static str, &'static str, &'static str)>,
    }
    let specs = vec![
        Spec {
            name: "train-a",
            start: 1000,
            status: RunStatus::Finished,
            metrics: vec![("acc", 0.9), ("loss", 0.3)],
            params: vec![("model", "cnn"), ("lr", "0.01"), ("batch", "064")],
            tags: vec![("team", "Red"), ("env", "prod"), ("grp", "x")],
            datasets: vec![("mnist", "d1", "training")],
        },
        Spec {
            name: "train-b",
            start: 2000,
            status: RunStatus::Running,
            metrics: vec![("acc", 0.8)],
            params: vec![("model", "rnn"), ("batch", "016")],
            tags: vec![("team", "red"), ("grp", "y")],
            datasets: vec![("cifar", "d2", "eval")],
        },
        Spec {
            name: "eval-c",
            start: 3000,
            status: RunStatus::Failed,
            metrics: vec![("acc", 0.7), ("loss", 0.5)],
            params: vec![("model", "CNN-large"), ("batch", "128")],
            tags: vec![("team", "blue"), ("grp", "x")],
            datasets: vec![("mnist", "d1", "eval")],
        },
        Spec {
            name: "other",
            start: 4000,
            status: RunStatus::Running,
            metrics: vec![],
            params: vec![("lr", "0.1"), ("batch", "032")],
            tags: vec![("grp", "y")],
            datasets: vec![],
        },
        Spec {
            name: "Train-e",
            start: 5000,
            status: RunStatus::Killed,
            metrics: vec![],
            params: vec![],
            tags: vec![],
            datasets: vec![],
        },
    ];
    let mut runs = Vec::new();
    for spec in specs {
        let run_id = create_run(store, experiment, spec.name, spec.start).await;
        // Metrics logged as a short history whose last point is the value in the table.
        let mut metrics = Vec::new();
        for (key, value) in &spec.metrics {
            metrics.push(metric(key, value - 100.0, spec.start, 0));
            metrics.push(metric(key, *value, spec.start + 1, 1));
        }
        log(
            store,
            &run_id,
            batch(
                metrics,
                spec.params.iter().map(|(k, v)| param(k, v)).collect(),
                spec.tags.iter().map(|(k, v)| tag(k, v)).collect(),
            ),
        )
        .await;
        if !spec.datasets.is_empty() {
            store
                .log_inputs(
                    &run_id,
                    spec.datasets
                        .iter()
                        .map(|(name, digest, context)| dataset_input(name, digest, Some(context)))
                        .collect(),
                    Vec::new(),
                )
                .await
                .unwrap();
        }
        if spec.status != RunStatus::Running {
            store
                .update_run(
                    &run_id,
                    RunUpdate {
                        status: Some(spec.status),
                        end_time: Some(spec.start + 500),
                        run_name: None,
                    },
                )
                .await
                .unwrap();
        }
        runs.push(run_id);
    }
    let elsewhere = create_run(store, other_experiment, "elsewhere", 6000).await;
    log(
        store,
        &elsewhere,
        batch(
            vec![metric("acc", 0.95, 6000, 1)],
            vec![param("model", "cnn")],
            vec![tag("team", "red")],
        ),
    )
    .await;
    Seeded {
        experiment,
        other_experiment,
        runs,
    }
}

async fn case_search_runs_metric_filters(store: &Store) {
    let seeded = seed(store).await;
    let e = [seeded.experiment];
    let cases: &[(&str, &[&str])] = &[
        ("metrics.acc > 0.8", &["train-a"]),
        ("metrics.acc >= 0.8", &["train-b", "train-a"]),
        ("metrics.acc < 0.8", &["eval-c"]),
        ("metrics.acc <= 0.8", &["eval-c", "train-b"]),
        ("metrics.acc = 0.7", &["eval-c"]),
        ("metrics.acc != 0.7", &["train-b", "train-a"]),
        ("metrics.loss >= 0.3", &["eval-c", "train-a"]),
        ("metrics.acc > -1000", &["eval-c", "train-b", "train-a"]),
        // Only the latest value counts: every run once logged acc - 100.
        ("metrics.acc < 0", &[]),
        ("metrics.missing > 0", &[]),
        ("metrics.acc > 0.75 AND metrics.loss < 0.4", &["train-a"]),
        ("metric.acc = 0.8", &["train-b"]),
        ("metrics.`acc` = 0.8", &["train-b"]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            search_run_names(store, &e, filter, &[]).await,
            strings(expected),
            "filter {filter}"
        );
    }
    // Results carry their data.
    let page = store
        .search_runs(&e, &query(SearchEntity::Runs, "metrics.acc > 0.85", &[]))
        .await
        .unwrap();
    let run = &page.items[0];
    assert_eq!(run.info.run_id, seeded.runs[0]);
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.info.end_time, Some(1500));
    assert_eq!(latest(run, "acc").unwrap().value, 0.9);
    assert_eq!(latest(run, "loss").unwrap().value, 0.3);
    assert_eq!(value_of(&run.data.params, "model"), Some("cnn"));
    assert_eq!(value_of(&run.data.tags, "team"), Some("Red"));
    assert_eq!(value_of(&run.data.tags, "mlflow.runName"), Some("train-a"));
    assert_eq!(run.inputs.dataset_inputs.len(), 1);
    assert_eq!(run.inputs.dataset_inputs[0].dataset.name, "mnist");

    // Across experiments.
    assert_eq!(
        search_run_names(
            store,
            &[seeded.experiment, seeded.other_experiment],
            "metrics.acc > 0.85",
            &[]
        )
        .await,
        strings(&["elsewhere", "train-a"])
    );
    assert_eq!(
        search_run_names(store, &[seeded.other_experiment], "", &[]).await,
        strings(&["elsewhere"])
    );
    assert_eq!(
        search_run_names(store, &[], "", &[]).await,
        Vec::<String>::new()
    );
}

async fn case_search_runs_param_tag_filters(store: &Store) {
    let seeded = seed(store).await;
    let e = [seeded.experiment];
    let cases: &[(&str, &[&str])] = &[
        ("params.model = 'cnn'", &["train-a"]),
        ("params.model != 'cnn'", &["eval-c", "train-b"]),
        ("params.model LIKE 'cnn%'", &["train-a"]),
        ("params.model LIKE '%n%'", &["train-b", "train-a"]),
        ("params.model LIKE '_nn'", &["train-b", "train-a"]),
        ("params.model ILIKE 'cnn%'", &["eval-c", "train-a"]),
        ("params.model ILIKE '%LARGE'", &["eval-c"]),
        ("params.model = 'CNN'", &[]),
        ("params.lr IS NULL", &["Train-e", "eval-c", "train-b"]),
        ("params.lr IS NOT NULL", &["other", "train-a"]),
        ("params.lr = '0.1'", &["other"]),
        ("tags.team = 'red'", &["train-b"]),
        ("tags.team = 'Red'", &["train-a"]),
        ("tags.team != 'red'", &["eval-c", "train-a"]),
        ("tags.team LIKE 'R%'", &["train-a"]),
        ("tags.team LIKE 'r%'", &["train-b"]),
        ("tags.team ILIKE 'r%'", &["train-b", "train-a"]),
        ("tags.team ILIKE 'RED'", &["train-b", "train-a"]),
        ("tags.team IS NULL", &["Train-e", "other"]),
        ("tags.team IS NOT NULL", &["eval-c", "train-b", "train-a"]),
        ("tags.env = 'prod' AND tags.grp = 'x'", &["train-a"]),
        ("tags.`mlflow.runName` = 'other'", &["other"]),
        (
            "tags.\"mlflow.runName\" LIKE 'train%'",
            &["train-b", "train-a"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            search_run_names(store, &e, filter, &[]).await,
            strings(expected),
            "filter {filter}"
        );
    }
}

async fn case_search_runs_attribute_filters(store: &Store) {
    let seeded = seed(store).await;
    let e = [seeded.experiment];
    let r = &seeded.runs;
    let in_list = format!("attributes.run_id IN ('{}', '{}')", r[0], r[2]);
    let not_in_list = format!("attributes.run_id NOT IN ('{}', '{}')", r[0], r[2]);
    let equal = format!("attributes.run_id = '{}'", r[3]);
    let cases: Vec<(&str, &[&str])> = vec![
        ("attributes.run_name = 'other'", &["other"]),
        ("run_name = 'other'", &["other"]),
        ("attributes.`Run name` = 'other'", &["other"]),
        (
            "attributes.run_name != 'other'",
            &["Train-e", "eval-c", "train-b", "train-a"],
        ),
        (
            "attributes.run_name LIKE 'train-%'",
            &["train-b", "train-a"],
        ),
        (
            "attributes.run_name ILIKE 'train-%'",
            &["Train-e", "train-b", "train-a"],
        ),
        ("attributes.status = 'RUNNING'", &["other", "train-b"]),
        (
            "attributes.status != 'RUNNING'",
            &["Train-e", "eval-c", "train-a"],
        ),
        ("attributes.status = 'FAILED'", &["eval-c"]),
        (
            "attributes.start_time >= 3000",
            &["Train-e", "other", "eval-c"],
        ),
        ("attributes.start_time < 2000", &["train-a"]),
        (
            "attributes.start_time > 1000 AND attributes.start_time <= 3000",
            &["eval-c", "train-b"],
        ),
        ("attributes.created = 2000", &["train-b"]),
        (
            "attributes.start_time != 2000",
            &["Train-e", "other", "eval-c", "train-a"],
        ),
        ("attributes.end_time > 2000", &["Train-e", "eval-c"]),
        (
            "attributes.user_id = 'alice'",
            &["Train-e", "other", "eval-c", "train-b", "train-a"],
        ),
        ("attributes.user_id = 'bob'", &[]),
        (&in_list, &["eval-c", "train-a"]),
        (&not_in_list, &["Train-e", "other", "train-b"]),
        (&equal, &["other"]),
        ("attributes.run_id IN ('nope')", &[]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            search_run_names(store, &e, filter, &[]).await,
            strings(expected),
            "filter {filter}"
        );
    }
}

async fn case_search_runs_dataset_filters(store: &Store) {
    let seeded = seed(store).await;
    let e = [seeded.experiment];
    let cases: &[(&str, &[&str])] = &[
        ("datasets.name = 'mnist'", &["eval-c", "train-a"]),
        ("datasets.name != 'mnist'", &["train-b"]),
        ("datasets.name LIKE 'c%'", &["train-b"]),
        (
            "datasets.name IN ('mnist', 'cifar')",
            &["eval-c", "train-b", "train-a"],
        ),
        ("datasets.digest = 'd2'", &["train-b"]),
        ("datasets.digest IN ('d1')", &["eval-c", "train-a"]),
        ("datasets.context = 'eval'", &["eval-c", "train-b"]),
        ("datasets.context = 'training'", &["train-a"]),
        (
            "datasets.name = 'mnist' AND datasets.context = 'eval'",
            &["eval-c"],
        ),
        ("datasets.name = 'imagenet'", &[]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            search_run_names(store, &e, filter, &[]).await,
            strings(expected),
            "filter {filter}"
        );
    }
}

async fn case_search_runs_or_and_parentheses(store: &Store) {
    let seeded = seed(store).await;
    let e = [seeded.experiment];
    let cases: &[(&str, &[&str])] = &[
        (
            "metrics.acc > 0.85 OR params.lr = '0.1'",
            &["other", "train-a"],
        ),
        (
            "metrics.acc > 0.85 OR metrics.acc < 0.75",
            &["eval-c", "train-a"],
        ),
        (
            "(tags.team = 'red' OR tags.team = 'blue') AND metrics.acc < 0.85",
            &["eval-c", "train-b"],
        ),
        (
            "tags.team = 'blue' OR (params.model = 'cnn' AND metrics.loss < 0.4)",
            &["eval-c", "train-a"],
        ),
        // AND binds tighter than OR.
        (
            "tags.team = 'blue' OR params.model = 'cnn' AND metrics.loss > 0.4",
            &["eval-c"],
        ),
        (
            "(tags.team = 'blue' OR params.model = 'cnn') AND metrics.loss < 0.4",
            &["train-a"],
        ),
        (
            "metrics.loss > 0 AND params.model ILIKE '%cnn%' AND tags.env = 'prod'",
            &["train-a"],
        ),
        (
            "run_name = 'other' OR run_name = 'Train-e' OR metrics.acc = 0.8",
            &["Train-e", "other", "train-b"],
        ),
        (
            "((tags.grp = 'y')) AND (params.lr IS NOT NULL OR datasets.context = 'eval')",
            &["other", "train-b"],
        ),
        (
            "attributes.status = 'KILLED' OR datasets.name = 'cifar' OR tags.env = 'prod'",
            &["Train-e", "train-b", "train-a"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            search_run_names(store, &e, filter, &[]).await,
            strings(expected),
            "filter {filter}"
        );
    }
}

async fn case_search_runs_order_by(store: &Store) {
    // Params and tags sort through their value index as in a large store, not in memory.
    slipway_store::set_sort_in_memory_runs(0);
    let seeded = seed(store).await;
    let e = [seeded.experiment];
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "",
            &[],
            &["Train-e", "other", "eval-c", "train-b", "train-a"],
        ),
        // Runs lacking the metric come last in both directions.
        (
            "",
            &["metrics.acc DESC"],
            &["train-a", "train-b", "eval-c", "Train-e", "other"],
        ),
        (
            "",
            &["metrics.acc ASC"],
            &["eval-c", "train-b", "train-a", "Train-e", "other"],
        ),
        (
            "",
            &["metrics.acc"],
            &["eval-c", "train-b", "train-a", "Train-e", "other"],
        ),
        (
            "",
            &["metrics.loss ASC"],
            &["train-a", "eval-c", "Train-e", "other", "train-b"],
        ),
        (
            "",
            &["metrics.loss DESC"],
            &["eval-c", "train-a", "Train-e", "other", "train-b"],
        ),
        (
            "",
            &["params.batch ASC"],
            &["train-b", "other", "train-a", "eval-c", "Train-e"],
        ),
        (
            "",
            &["params.batch DESC"],
            &["eval-c", "train-a", "other", "train-b", "Train-e"],
        ),
        (
            "",
            &["tags.grp ASC", "metrics.acc ASC"],
            &["eval-c", "train-a", "train-b", "other", "Train-e"],
        ),
        (
            "",
            &["tags.grp DESC", "start_time ASC"],
            &["train-b", "other", "train-a", "eval-c", "Train-e"],
        ),
        (
            "",
            &["attributes.start_time ASC"],
            &["train-a", "train-b", "eval-c", "other", "Train-e"],
        ),
        (
            "run_name != 'Train-e'",
            &["attributes.run_name DESC"],
            &["train-b", "train-a", "other", "eval-c"],
        ),
        (
            "run_name != 'Train-e'",
            &["attributes.run_name ASC"],
            &["eval-c", "other", "train-a", "train-b"],
        ),
        (
            "metrics.acc < 0.85",
            &["metrics.acc DESC"],
            &["train-b", "eval-c"],
        ),
        (
            "tags.grp = 'x' OR tags.grp = 'y'",
            &["metrics.loss DESC"],
            &["eval-c", "train-a", "other", "train-b"],
        ),
    ];
    for (filter, order_by, expected) in cases {
        assert_eq!(
            search_run_names(store, &e, filter, order_by).await,
            strings(expected),
            "filter {filter:?} order_by {order_by:?}"
        );
    }

    // Ties in the sort key fall back to start_time DESC, then run_id.
    let tied = create_experiment(store, "ties").await;
    let mut ids = Vec::new();
    for (name, start) in [("t1", 10), ("t2", 30), ("t3", 20), ("t4", 20)] {
        let run_id = create_run(store, tied, name, start).await;
        log(store, &run_id, metrics_batch(vec![metric("m", 1.0, 1, 0)])).await;
        ids.push(run_id);
    }
    let (first, second) = if ids[2].as_str() < ids[3].as_str() {
        ("t3", "t4")
    } else {
        ("t4", "t3")
    };
    assert_eq!(
        search_run_names(store, &[tied], "", &["metrics.m DESC"]).await,
        strings(&["t2", first, second, "t1"])
    );

    // NaN sorts after every number and before runs without the metric, in both directions.
    let low = create_run(store, tied, "t5", 5).await;
    log(store, &low, metrics_batch(vec![metric("m", 0.5, 1, 0)])).await;
    let nan = create_run(store, tied, "t6", 40).await;
    log(
        store,
        &nan,
        metrics_batch(vec![metric("m", f64::NAN, 1, 0)]),
    )
    .await;
    create_run(store, tied, "t7", 50).await;
    let descending = ["t2", first, second, "t1", "t5", "t6", "t7"];
    assert_eq!(
        search_run_names(store, &[tied], "", &["metrics.m DESC"]).await,
        strings(&descending)
    );
    assert_eq!(
        search_run_names(store, &[tied], "", &["metrics.m ASC"]).await,
        strings(&["t5", "t2", first, second, "t1", "t6", "t7"])
    );
    // Pages of two cross from the numbers to NaN to the missing without losing a run.
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .search_runs(
                &[tied],
                &SearchQuery {
                    max_results: 2,
                    offset,
                    ..query(SearchEntity::Runs, "", &["metrics.m DESC"])
                },
            )
            .await
            .unwrap();
        paged.extend(run_names(&page));
        match next_offset(&page) {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(paged, strings(&descending));
}

async fn case_search_runs_paging(store: &Store) {
    let experiment = create_experiment(store, "paging").await;
    let mut all_ids = HashSet::new();
    for i in 0..60 {
        // Start times repeat (20 distinct values), so paging relies on the tie-breaker.
        let run_id = create_run(store, experiment, &format!("run-{i:02}"), 1_000 + i / 3).await;
        log(
            store,
            &run_id,
            batch(
                vec![metric("m", (i % 7) as f64, 1, 0)],
                vec![param("i", &format!("{i:02}"))],
                vec![],
            ),
        )
        .await;
        all_ids.insert(run_id);
    }
    for order_by in [&[][..], &["metrics.m ASC"][..], &["params.i DESC"][..]] {
        let everything = store
            .search_runs(
                &[experiment],
                &SearchQuery {
                    max_results: 100,
                    ..query(SearchEntity::Runs, "", order_by)
                },
            )
            .await
            .unwrap();
        assert_eq!(everything.items.len(), 60);
        assert!(everything.next_page_token.is_none());

        let mut paged = Vec::new();
        let mut sizes = Vec::new();
        let mut offset = 0;
        loop {
            let page = store
                .search_runs(
                    &[experiment],
                    &SearchQuery {
                        max_results: 25,
                        offset,
                        ..query(SearchEntity::Runs, "", order_by)
                    },
                )
                .await
                .unwrap();
            sizes.push(page.items.len());
            paged.extend(page.items.iter().map(|run| run.info.run_id.clone()));
            match next_offset(&page) {
                Some(next) => offset = next,
                None => break,
            }
            assert!(sizes.len() < 10, "paging does not end");
        }
        assert_eq!(sizes, vec![25, 25, 10], "order_by {order_by:?}");
        let unique: HashSet<RunId> = paged.iter().cloned().collect();
        assert_eq!(unique.len(), 60, "every run exactly once ({order_by:?})");
        assert_eq!(unique, all_ids);
        let one_shot: Vec<RunId> = everything
            .items
            .iter()
            .map(|run| run.info.run_id.clone())
            .collect();
        assert_eq!(
            paged, one_shot,
            "pages follow the one-shot order ({order_by:?})"
        );
    }
    // Default order is start_time DESC.
    let page = store
        .search_runs(&[experiment], &query(SearchEntity::Runs, "", &[]))
        .await
        .unwrap();
    let starts: Vec<i64> = page.items.iter().map(|run| run.info.start_time).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(starts, sorted);
    // Paging with a filter.
    let page = store
        .search_runs(
            &[experiment],
            &SearchQuery {
                max_results: 5,
                ..query(SearchEntity::Runs, "metrics.m = 3", &[])
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(next_offset(&page), Some(5));
    let rest = store
        .search_runs(
            &[experiment],
            &SearchQuery {
                max_results: 5,
                offset: 5,
                ..query(SearchEntity::Runs, "metrics.m = 3", &[])
            },
        )
        .await
        .unwrap();
    // i % 7 == 3 for i in 0..60: 3, 10, 17, 24, 31, 38, 45, 52, 59.
    assert_eq!(rest.items.len(), 4);
    assert!(rest.next_page_token.is_none());
}

async fn case_search_runs_view_types(store: &Store) {
    let experiment = create_experiment(store, "views").await;
    let a = create_run(store, experiment, "a", 1).await;
    let _b = create_run(store, experiment, "b", 2).await;
    let c = create_run(store, experiment, "c", 3).await;
    store.delete_run(&a, 10).await.unwrap();
    store.delete_run(&c, 10).await.unwrap();
    let names = |view_type, filter: &'static str| {
        let query = SearchQuery {
            view_type,
            ..query(SearchEntity::Runs, filter, &[])
        };
        async move { run_names(&store.search_runs(&[experiment], &query).await.unwrap()) }
    };
    assert_eq!(names(ViewType::ActiveOnly, "").await, strings(&["b"]));
    assert_eq!(names(ViewType::DeletedOnly, "").await, strings(&["c", "a"]));
    assert_eq!(names(ViewType::All, "").await, strings(&["c", "b", "a"]));
    assert_eq!(
        names(ViewType::DeletedOnly, "run_name = 'a'").await,
        strings(&["a"])
    );
    store.restore_run(&c).await.unwrap();
    assert_eq!(names(ViewType::ActiveOnly, "").await, strings(&["c", "b"]));
    assert_eq!(names(ViewType::DeletedOnly, "").await, strings(&["a"]));
}
