//! MLflow 3 LoggedModels: lifecycle, tags, params, metrics and search.

use slipway_core::Error;
use slipway_core::logged_model::{
    LoggedModel, LoggedModelStatus, NewLoggedModel, generate_logged_model_id,
};
use slipway_core::ports::SearchQuery;
use slipway_core::search::SearchEntity;
use slipway_core::tracking::{ExperimentId, Metric};

use crate::common::{
    ROOT, Store, create_experiment, create_run, log, metric, metrics_batch, next_offset, param,
    query, strings, tag,
};

contract!(logged_model_lifecycle_sqlite, logged_model_lifecycle_postgres => case_logged_model_lifecycle);
contract!(logged_model_metrics_sqlite, logged_model_metrics_postgres => case_logged_model_metrics);
contract!(logged_model_search_sqlite, logged_model_search_postgres => case_logged_model_search);
contract!(
    logged_model_search_order_by_metric_sqlite, logged_model_search_order_by_metric_postgres => case_logged_model_search_order_by_metric
);

fn new_model(experiment_id: ExperimentId, name: &str) -> NewLoggedModel {
    NewLoggedModel {
        model_id: generate_logged_model_id(),
        experiment_id,
        name: name.into(),
        model_type: None,
        source_run_id: None,
        params: Vec::new(),
        tags: Vec::new(),
    }
}

async fn create_model(store: &Store, model: NewLoggedModel, now: i64) -> LoggedModel {
    store
        .create_logged_model(model, ROOT, now)
        .await
        .unwrap_or_else(|e| panic!("creating a logged model: {e:?}"))
}

async fn case_logged_model_lifecycle(store: &Store) {
    let experiment = create_experiment(store, "models").await;
    let run_id = create_run(store, experiment, "trainer", 1).await;
    let model_id = generate_logged_model_id();
    let created = create_model(
        store,
        NewLoggedModel {
            model_id: model_id.clone(),
            experiment_id: experiment,
            name: "classifier".into(),
            model_type: Some("sklearn".into()),
            source_run_id: Some(run_id.as_str().to_owned()),
            params: vec![param("alpha", "0.5")],
            tags: vec![tag("owner", "me")],
        },
        1_000,
    )
    .await;
    assert_eq!(created.model_id, model_id);
    assert_eq!(created.experiment_id, experiment);
    assert_eq!(created.name, "classifier");
    assert_eq!(created.status, LoggedModelStatus::Pending);
    assert_eq!(created.creation_timestamp, 1_000);
    assert_eq!(created.last_updated_timestamp, 1_000);
    assert_eq!(created.model_type.as_deref(), Some("sklearn"));
    assert_eq!(created.source_run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(
        created.artifact_uri,
        format!("mlflow-artifacts:/{experiment}/models/{model_id}/artifacts")
    );
    assert_eq!(created.tags, vec![tag("owner", "me")]);
    assert_eq!(created.params, vec![param("alpha", "0.5")]);
    assert!(created.metrics.is_empty());
    assert!(created.registrations.is_empty());
    assert_eq!(store.get_logged_model(&model_id).await.unwrap(), created);

    // Finalize.
    let ready = store
        .finalize_logged_model(&model_id, LoggedModelStatus::Ready, 2_000)
        .await
        .unwrap();
    assert_eq!(ready.status, LoggedModelStatus::Ready);
    assert_eq!(ready.last_updated_timestamp, 2_000);
    assert_eq!(ready.creation_timestamp, 1_000);
    assert_eq!(store.get_logged_model(&model_id).await.unwrap(), ready);

    // Tags: set (overwrite + new), delete, delete missing.
    let tagged = store
        .set_logged_model_tags(
            &model_id,
            &[tag("owner", "you"), tag("stage", "dev")],
            2_500,
        )
        .await
        .unwrap();
    assert_eq!(tagged.tags, vec![tag("owner", "you"), tag("stage", "dev")]);
    assert_eq!(tagged.last_updated_timestamp, 2_500);
    store
        .delete_logged_model_tag(&model_id, "stage")
        .await
        .unwrap();
    assert_eq!(
        store.get_logged_model(&model_id).await.unwrap().tags,
        vec![tag("owner", "you")]
    );
    assert_err!(
        store.delete_logged_model_tag(&model_id, "stage").await,
        Error::NotFound(_)
    );

    // Params.
    store
        .log_logged_model_params(&model_id, &[param("beta", "2")])
        .await
        .unwrap();
    assert_eq!(
        store.get_logged_model(&model_id).await.unwrap().params,
        vec![param("alpha", "0.5"), param("beta", "2")]
    );

    // A model of an explicit-location experiment lives under that location.
    let explicit = store
        .create_experiment(
            "explicit-models",
            slipway_core::ports::ArtifactLocation::Explicit("s3://bucket/exp".into()),
            &[],
            1,
        )
        .await
        .unwrap();
    let there = create_model(store, new_model(explicit, "there"), 5).await;
    assert_eq!(
        there.artifact_uri,
        format!("s3://bucket/exp/models/{}/artifacts", there.model_id)
    );

    // Delete: gone for every operation.
    store.delete_logged_model(&model_id, 3_000).await.unwrap();
    assert_err!(store.get_logged_model(&model_id).await, Error::NotFound(_));
    assert_err!(
        store
            .finalize_logged_model(&model_id, LoggedModelStatus::Failed, 3_100)
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .set_logged_model_tags(&model_id, &[tag("a", "b")], 3_100)
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store.delete_logged_model(&model_id, 3_200).await,
        Error::NotFound(_)
    );
    // The other model is untouched.
    assert_eq!(
        store.get_logged_model(&there.model_id).await.unwrap(),
        there
    );

    // Missing ids and experiments.
    assert_err!(
        store
            .get_logged_model("m-00000000000000000000000000000000")
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .create_logged_model(new_model(ExperimentId::new(909_090), "x"), ROOT, 1)
            .await,
        Error::NotFound(_)
    );
}

async fn case_logged_model_metrics(store: &Store) {
    let experiment = create_experiment(store, "model-metrics").await;
    let run_id = create_run(store, experiment, "trainer", 1).await;
    let model = create_model(store, new_model(experiment, "scored"), 10).await;
    let other = create_model(store, new_model(experiment, "unscored"), 11).await;
    let with_model = |key: &str, value: f64, timestamp: i64, step: i64| Metric {
        model_id: Some(model.model_id.clone()),
        dataset_name: Some("eval-set".into()),
        dataset_digest: Some("d1g3st".into()),
        ..metric(key, value, timestamp, step)
    };
    log(
        store,
        &run_id,
        metrics_batch(vec![
            with_model("acc", 0.9, 100, 1),
            with_model("loss", 0.25, 100, 1),
            metric("run-only", 1.0, 100, 1),
        ]),
    )
    .await;
    // Retried: nothing doubles.
    log(
        store,
        &run_id,
        metrics_batch(vec![with_model("acc", 0.9, 100, 1)]),
    )
    .await;

    let fetched = store.get_logged_model(&model.model_id).await.unwrap();
    let mut got: Vec<(String, f64, i64, i64)> = fetched
        .metrics
        .iter()
        .map(|m| (m.key.clone(), m.value, m.timestamp, m.step))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("acc".to_owned(), 0.9, 100, 1),
            ("loss".to_owned(), 0.25, 100, 1)
        ]
    );
    for metric in &fetched.metrics {
        assert_eq!(metric.model_id.as_deref(), Some(model.model_id.as_str()));
        assert_eq!(metric.dataset_name.as_deref(), Some("eval-set"));
        assert_eq!(metric.dataset_digest.as_deref(), Some("d1g3st"));
    }
    assert!(
        store
            .get_logged_model(&other.model_id)
            .await
            .unwrap()
            .metrics
            .is_empty()
    );

    // The run sees them as its own metrics too, with the model id in the history.
    let run = store.get_run(&run_id).await.unwrap();
    let keys: Vec<&str> = run.data.metrics.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, vec!["acc", "loss", "run-only"]);
    let history = store
        .get_metric_history(
            &run_id,
            "acc",
            slipway_core::ports::HistoryCursor::default(),
            10,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history.metrics.len(), 1);
    assert_eq!(
        history.metrics[0].model_id.as_deref(),
        Some(model.model_id.as_str())
    );
    assert_eq!(history.metrics[0].dataset_name.as_deref(), Some("eval-set"));
    assert_eq!(history.metrics[0].dataset_digest.as_deref(), Some("d1g3st"));
}

/// alpha (created 100, acc 0.5, type sklearn, p=x, t=v), beta (200, acc 0.9, type pytorch,
/// p=y), gamma (300, no metrics, type sklearn, t=v); delta in another experiment; epsilon
/// deleted.
async fn seed_models(store: &Store) -> (ExperimentId, ExperimentId) {
    let experiment = create_experiment(store, "model-search").await;
    let elsewhere = create_experiment(store, "model-search-elsewhere").await;
    let run_id = create_run(store, experiment, "trainer", 1).await;
    let specs = [
        ("alpha", 100, Some(0.5), "sklearn", Some("x"), Some("v")),
        ("beta", 200, Some(0.9), "pytorch", Some("y"), None),
        ("gamma", 300, None, "sklearn", None, Some("v")),
    ];
    for (name, created, acc, model_type, p, t) in specs {
        let model = create_model(
            store,
            NewLoggedModel {
                model_type: Some(model_type.into()),
                source_run_id: Some(run_id.as_str().to_owned()),
                params: p.map(|p| vec![param("p", p)]).unwrap_or_default(),
                tags: t.map(|t| vec![tag("t", t)]).unwrap_or_default(),
                ..new_model(experiment, name)
            },
            created,
        )
        .await;
        if let Some(acc) = acc {
            log(
                store,
                &run_id,
                metrics_batch(vec![
                    Metric {
                        model_id: Some(model.model_id.clone()),
                        ..metric("acc", acc - 1.0, 1, 0)
                    },
                    Metric {
                        model_id: Some(model.model_id.clone()),
                        ..metric("acc", acc, 2, 1)
                    },
                ]),
            )
            .await;
        }
    }
    create_model(store, new_model(elsewhere, "delta"), 400).await;
    let deleted = create_model(store, new_model(experiment, "epsilon"), 500).await;
    store
        .delete_logged_model(&deleted.model_id, 600)
        .await
        .unwrap();
    (experiment, elsewhere)
}

async fn model_names(
    store: &Store,
    experiments: &[ExperimentId],
    filter: &str,
    order_by: &[&str],
) -> Vec<String> {
    let page = store
        .search_logged_models(
            experiments,
            &query(SearchEntity::LoggedModels, filter, order_by),
        )
        .await
        .unwrap_or_else(|e| panic!("search_logged_models {filter:?} {order_by:?}: {e:?}"));
    assert!(page.next_page_token.is_none());
    page.items.into_iter().map(|m| m.name).collect()
}

async fn case_logged_model_search(store: &Store) {
    let (experiment, elsewhere) = seed_models(store).await;
    let e = [experiment];
    let cases: &[(&str, &[&str], &[&str])] = &[
        // Newest first by default; deleted models never appear.
        ("", &[], &["gamma", "beta", "alpha"]),
        ("name = 'beta'", &[], &["beta"]),
        ("name LIKE '%a'", &[], &["gamma", "beta", "alpha"]),
        ("name IN ('alpha', 'gamma')", &[], &["gamma", "alpha"]),
        ("model_type = 'sklearn'", &[], &["gamma", "alpha"]),
        ("params.p = 'x'", &[], &["alpha"]),
        ("tags.t = 'v'", &[], &["gamma", "alpha"]),
        ("metrics.acc > 0.6", &[], &["beta"]),
        ("metrics.acc >= 0.5", &[], &["beta", "alpha"]),
        ("creation_time >= 200", &[], &["gamma", "beta"]),
        (
            "tags.t = 'v' AND model_type = 'sklearn'",
            &[],
            &["gamma", "alpha"],
        ),
        (
            "params.p = 'y' OR tags.t = 'v'",
            &[],
            &["gamma", "beta", "alpha"],
        ),
        ("", &["name ASC"], &["alpha", "beta", "gamma"]),
        ("", &["name DESC"], &["gamma", "beta", "alpha"]),
        ("", &["creation_time ASC"], &["alpha", "beta", "gamma"]),
        ("metrics.acc > 0", &["metrics.acc DESC"], &["beta", "alpha"]),
        ("metrics.acc > 0", &["metrics.acc ASC"], &["alpha", "beta"]),
    ];
    for (filter, order_by, expected) in cases {
        assert_eq!(
            model_names(store, &e, filter, order_by).await,
            strings(expected),
            "filter {filter:?} order_by {order_by:?}"
        );
    }
    // Results carry their data.
    let page = store
        .search_logged_models(
            &e,
            &query(SearchEntity::LoggedModels, "name = 'alpha'", &[]),
        )
        .await
        .unwrap();
    assert_eq!(page.items[0].params, vec![param("p", "x")]);
    assert_eq!(page.items[0].tags, vec![tag("t", "v")]);
    assert_eq!(page.items[0].metrics.len(), 2);

    // Experiments scope the search.
    assert_eq!(
        model_names(store, &[elsewhere], "", &[]).await,
        strings(&["delta"])
    );
    assert_eq!(
        model_names(store, &[experiment, elsewhere], "", &[]).await,
        strings(&["delta", "gamma", "beta", "alpha"])
    );

    // Paging.
    let first = store
        .search_logged_models(
            &e,
            &SearchQuery {
                max_results: 2,
                ..query(SearchEntity::LoggedModels, "", &[])
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let offset = next_offset(&first).expect("a second page");
    let second = store
        .search_logged_models(
            &e,
            &SearchQuery {
                max_results: 2,
                offset,
                ..query(SearchEntity::LoggedModels, "", &[])
            },
        )
        .await
        .unwrap();
    assert!(second.next_page_token.is_none());
    let names: Vec<String> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(names, strings(&["gamma", "beta", "alpha"]));
}

/// Ordering by a metric puts the models lacking it last, in both directions, on both backends
/// (as search_runs does).
async fn case_logged_model_search_order_by_metric(store: &Store) {
    let (experiment, _) = seed_models(store).await;
    assert_eq!(
        model_names(store, &[experiment], "", &["metrics.acc DESC"]).await,
        strings(&["beta", "alpha", "gamma"])
    );
    assert_eq!(
        model_names(store, &[experiment], "", &["metrics.acc ASC"]).await,
        strings(&["alpha", "beta", "gamma"])
    );
}
