//! Runs: creation, update, lifecycle, log-batch (params, tags, atomicity) and run tags.

use slipway_core::Error;
use slipway_core::ports::HistoryCursor;
use slipway_core::tracking::{ExperimentId, LifecycleStage, NewRun, RunId, RunStatus, RunUpdate};

use crate::common::{
    Store, batch, create_experiment, create_run, latest, log, metric, new_run, param, tag, value_of,
};

contract!(run_create_get_sqlite, run_create_get_postgres => case_run_create_get);
contract!(run_update_sqlite, run_update_postgres => case_run_update);
contract!(run_delete_restore_sqlite, run_delete_restore_postgres => case_run_delete_restore);
contract!(log_batch_params_sqlite, log_batch_params_postgres => case_log_batch_params);
contract!(log_batch_all_or_nothing_sqlite, log_batch_all_or_nothing_postgres => case_log_batch_all_or_nothing);
contract!(run_tags_sqlite, run_tags_postgres => case_run_tags);
contract!(log_batch_inactive_runs_sqlite, log_batch_inactive_runs_postgres => case_log_batch_inactive_runs);

async fn case_run_create_get(store: &Store) {
    let experiment = create_experiment(store, "runs").await;
    let run_id = RunId::generate();
    let created = store
        .create_run(NewRun {
            run_id: run_id.clone(),
            experiment_id: experiment,
            user_id: "alice".into(),
            run_name: "first-run".into(),
            start_time: 1_700_000_000_123,
            tags: vec![tag("x", "y"), tag("mlflow.user", "alice")],
            artifact_uri_suffix: "artifacts".into(),
        })
        .await
        .unwrap();
    assert_eq!(created.info.run_id, run_id);
    assert_eq!(created.info.experiment_id, experiment);
    assert_eq!(created.info.run_name, "first-run");
    assert_eq!(created.info.user_id, "alice");
    assert_eq!(created.info.status, RunStatus::Running);
    assert_eq!(created.info.start_time, 1_700_000_000_123);
    assert_eq!(created.info.end_time, None);
    assert_eq!(created.info.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(
        created.info.artifact_uri,
        format!("mlflow-artifacts:/{experiment}/{run_id}/artifacts")
    );
    assert_eq!(
        value_of(&created.data.tags, "mlflow.runName"),
        Some("first-run")
    );
    assert_eq!(value_of(&created.data.tags, "x"), Some("y"));

    let fetched = store.get_run(&run_id).await.unwrap();
    assert_eq!(fetched.info, created.info);
    assert_eq!(
        fetched.data.tags,
        vec![
            tag("mlflow.runName", "first-run"),
            tag("mlflow.user", "alice"),
            tag("x", "y"),
        ],
        "tags are returned sorted by key, the run name mirrored in mlflow.runName"
    );
    assert!(fetched.data.params.is_empty());
    assert!(fetched.data.metrics.is_empty());
    assert!(fetched.inputs.dataset_inputs.is_empty());
    assert!(fetched.inputs.model_inputs.is_empty());
    assert!(fetched.outputs.is_empty());

    // Missing runs and experiments.
    assert_err!(
        store
            .get_run(&RunId::parse("0123456789abcdef0123456789abcdef").unwrap())
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .create_run(new_run(ExperimentId::new(777_777), "orphan", 1))
            .await,
        Error::NotFound(_)
    );

    // Ids imported from other stores keep working.
    let imported = RunId::parse("Imported_Run-42").unwrap();
    store
        .create_run(NewRun {
            run_id: imported.clone(),
            ..new_run(experiment, "imported", 5)
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&imported).await.unwrap().info.run_name,
        "imported"
    );
}

async fn case_run_update(store: &Store) {
    let experiment = create_experiment(store, "updates").await;
    let run_id = create_run(store, experiment, "original", 1_000).await;

    let info = store
        .update_run(
            &run_id,
            RunUpdate {
                status: Some(RunStatus::Finished),
                end_time: Some(2_000),
                run_name: Some("renamed".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.end_time, Some(2_000));
    assert_eq!(info.run_name, "renamed");
    assert_eq!(info.start_time, 1_000);
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(run.info, info);
    assert_eq!(value_of(&run.data.tags, "mlflow.runName"), Some("renamed"));
    assert_eq!(
        run.data
            .tags
            .iter()
            .filter(|t| t.key == "mlflow.runName")
            .count(),
        1
    );

    // A partial update leaves the other fields alone.
    let info = store
        .update_run(
            &run_id,
            RunUpdate {
                status: Some(RunStatus::Killed),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.status, RunStatus::Killed);
    assert_eq!(info.end_time, Some(2_000));
    assert_eq!(info.run_name, "renamed");
    let info = store
        .update_run(
            &run_id,
            RunUpdate {
                end_time: Some(3_000),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.status, RunStatus::Killed);
    assert_eq!(info.end_time, Some(3_000));
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(run.info.status, RunStatus::Killed);
    assert_eq!(run.info.end_time, Some(3_000));
    assert_eq!(run.info.run_name, "renamed");
    assert_eq!(value_of(&run.data.tags, "mlflow.runName"), Some("renamed"));

    // Every status round-trips.
    for status in RunStatus::ALL {
        let info = store
            .update_run(
                &run_id,
                RunUpdate {
                    status: Some(status),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(info.status, status);
        assert_eq!(store.get_run(&run_id).await.unwrap().info.status, status);
    }

    // Setting the mlflow.runName tag renames the run, as in MLflow.
    log(
        store,
        &run_id,
        batch(vec![], vec![], vec![tag("mlflow.runName", "by-tag")]),
    )
    .await;
    assert_eq!(
        store.get_run(&run_id).await.unwrap().info.run_name,
        "by-tag"
    );

    assert_err!(
        store
            .update_run(&RunId::generate(), RunUpdate::default())
            .await,
        Error::NotFound(_)
    );
}

async fn case_run_delete_restore(store: &Store) {
    let experiment = create_experiment(store, "lifecycle").await;
    let run_id = create_run(store, experiment, "r", 1_000).await;
    let other = create_run(store, experiment, "other", 1_000).await;

    store.delete_run(&run_id, 5_000).await.unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(run.info.lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(run.info.run_name, "r");
    assert_eq!(
        store.get_run(&other).await.unwrap().info.lifecycle_stage,
        LifecycleStage::Active
    );
    // A deleted run cannot be updated.
    assert_err!(
        store
            .update_run(
                &run_id,
                RunUpdate {
                    status: Some(RunStatus::Finished),
                    ..RunUpdate::default()
                }
            )
            .await,
        Error::InvalidParameter(_)
    );
    assert_eq!(
        store.get_run(&run_id).await.unwrap().info.status,
        RunStatus::Running
    );

    store.restore_run(&run_id).await.unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(run.info.lifecycle_stage, LifecycleStage::Active);
    store
        .update_run(
            &run_id,
            RunUpdate {
                status: Some(RunStatus::Finished),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();

    let missing = RunId::generate();
    assert_err!(store.delete_run(&missing, 1).await, Error::NotFound(_));
    assert_err!(store.restore_run(&missing).await, Error::NotFound(_));
}

async fn case_log_batch_params(store: &Store) {
    let experiment = create_experiment(store, "params").await;
    let run_id = create_run(store, experiment, "p", 1).await;
    log(
        store,
        &run_id,
        batch(
            vec![],
            vec![param("lr", "0.1"), param("layers", "3")],
            vec![],
        ),
    )
    .await;
    // The same value again is fine, alone or with new params, and duplicates within a batch
    // with the same value too.
    log(
        store,
        &run_id,
        batch(
            vec![],
            vec![
                param("lr", "0.1"),
                param("dropout", "0.5"),
                param("dropout", "0.5"),
            ],
            vec![],
        ),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.data.params,
        vec![
            param("dropout", "0.5"),
            param("layers", "3"),
            param("lr", "0.1")
        ]
    );

    // A different value is refused.
    let error = assert_err!(
        store
            .log_batch(&run_id, batch(vec![], vec![param("lr", "0.2")], vec![]))
            .await,
        Error::InvalidParameter(_)
    );
    assert!(error.to_string().contains("lr"), "{error}");
    assert_eq!(
        value_of(&store.get_run(&run_id).await.unwrap().data.params, "lr"),
        Some("0.1")
    );

    // Params of one run do not constrain another.
    let other = create_run(store, experiment, "q", 2).await;
    log(
        store,
        &other,
        batch(vec![], vec![param("lr", "0.2")], vec![]),
    )
    .await;
    assert_eq!(
        store.get_run(&other).await.unwrap().data.params,
        vec![param("lr", "0.2")]
    );

    // Long values survive intact (MLflow allows 6000 characters).
    let long = "v".repeat(6000);
    log(
        store,
        &other,
        batch(vec![], vec![param("long", &long)], vec![]),
    )
    .await;
    assert_eq!(
        value_of(&store.get_run(&other).await.unwrap().data.params, "long"),
        Some(long.as_str())
    );
}

async fn case_log_batch_all_or_nothing(store: &Store) {
    let experiment = create_experiment(store, "atomic").await;
    let run_id = create_run(store, experiment, "a", 1).await;
    log(
        store,
        &run_id,
        batch(
            vec![metric("kept", 1.0, 10, 0)],
            vec![param("lr", "0.1")],
            vec![tag("t", "before")],
        ),
    )
    .await;
    let before = store.get_run(&run_id).await.unwrap();

    // A conflicting param anywhere in the batch: nothing of the batch is written.
    assert_err!(
        store
            .log_batch(
                &run_id,
                batch(
                    vec![metric("new-metric", 5.0, 20, 1), metric("kept", 2.0, 20, 1),],
                    vec![param("fresh", "1"), param("lr", "0.2"), param("zz", "2")],
                    vec![tag("t", "after"), tag("new-tag", "x")],
                ),
            )
            .await,
        Error::InvalidParameter(_)
    );
    let after = store.get_run(&run_id).await.unwrap();
    assert_eq!(after.data, before.data, "the failed batch left no trace");
    let history = store
        .get_metric_history(&run_id, "kept", HistoryCursor::default(), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history.metrics.len(), 1);
    let history = store
        .get_metric_history(&run_id, "new-metric", HistoryCursor::default(), 100)
        .await
        .unwrap()
        .unwrap();
    assert!(history.metrics.is_empty());

    // Two different values for one key inside a single batch: also refused as a whole.
    assert_err!(
        store
            .log_batch(
                &run_id,
                batch(
                    vec![metric("other", 1.0, 30, 0)],
                    vec![param("dup", "a"), param("dup", "b")],
                    vec![tag("t2", "x")],
                ),
            )
            .await,
        Error::InvalidParameter(_)
    );
    let after = store.get_run(&run_id).await.unwrap();
    assert_eq!(after.data, before.data);

    // The run still accepts a valid batch afterwards.
    log(
        store,
        &run_id,
        batch(
            vec![metric("kept", 3.0, 40, 2)],
            vec![param("lr", "0.1"), param("fresh", "1")],
            vec![tag("t", "after")],
        ),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(latest(&run, "kept").unwrap().value, 3.0);
    assert_eq!(value_of(&run.data.params, "fresh"), Some("1"));
    assert_eq!(value_of(&run.data.tags, "t"), Some("after"));
}

async fn case_run_tags(store: &Store) {
    let experiment = create_experiment(store, "tags").await;
    let run_id = create_run(store, experiment, "t", 1).await;
    log(
        store,
        &run_id,
        batch(vec![], vec![], vec![tag("a", "1"), tag("b", "2")]),
    )
    .await;
    // Overwrite, including a later duplicate within one batch.
    log(
        store,
        &run_id,
        batch(vec![], vec![], vec![tag("a", "x"), tag("a", "3")]),
    )
    .await;
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(value_of(&run.data.tags, "a"), Some("3"));
    assert_eq!(value_of(&run.data.tags, "b"), Some("2"));

    store.delete_run_tag(&run_id, "a").await.unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(value_of(&run.data.tags, "a"), None);
    assert_eq!(value_of(&run.data.tags, "b"), Some("2"));
    assert_err!(store.delete_run_tag(&run_id, "a").await, Error::NotFound(_));
    assert_err!(
        store.delete_run_tag(&run_id, "never-set").await,
        Error::NotFound(_)
    );
    // A tag of another run does not count.
    let other = create_run(store, experiment, "u", 2).await;
    assert_err!(store.delete_run_tag(&other, "b").await, Error::NotFound(_));
    assert_eq!(
        value_of(&store.get_run(&run_id).await.unwrap().data.tags, "b"),
        Some("2")
    );
    assert_err!(
        store.delete_run_tag(&RunId::generate(), "b").await,
        Error::NotFound(_)
    );
}

async fn case_log_batch_inactive_runs(store: &Store) {
    let experiment = create_experiment(store, "inactive").await;
    let run_id = create_run(store, experiment, "d", 1).await;
    store.delete_run(&run_id, 10).await.unwrap();
    assert_err!(
        store
            .log_batch(
                &run_id,
                batch(
                    vec![metric("m", 1.0, 1, 0)],
                    vec![param("p", "1")],
                    vec![tag("t", "1")]
                )
            )
            .await,
        Error::InvalidParameter(_)
    );
    store.restore_run(&run_id).await.unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert!(run.data.metrics.is_empty());
    assert!(run.data.params.is_empty());
    assert_eq!(value_of(&run.data.tags, "t"), None);

    // Runs of a deleted experiment are deleted too.
    store.delete_experiment(experiment, 20).await.unwrap();
    assert_err!(
        store
            .log_batch(&run_id, batch(vec![metric("m", 1.0, 1, 0)], vec![], vec![]))
            .await,
        Error::InvalidParameter(_)
    );

    assert_err!(
        store
            .log_batch(
                &RunId::generate(),
                batch(vec![metric("m", 1.0, 1, 0)], vec![], vec![])
            )
            .await,
        Error::NotFound(_)
    );
}
