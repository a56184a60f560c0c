//! Concurrent writers and readers: no error at all (on SQLite, no "database is locked"), and
//! every write is there afterwards.

use std::sync::Arc;

use slipway_core::Error;
use slipway_core::ports::{ArtifactLocation, HistoryCursor, SearchQuery};
use slipway_core::search::SearchEntity;
use slipway_core::tracking::RunId;

use crate::common::{
    Store, batch, create_experiment, latest, metric, new_run, param, query, tag, value_of,
};

contract!(concurrent_writers_sqlite, concurrent_writers_postgres => case_concurrent_writers);
contract!(concurrent_registrations_sqlite, concurrent_registrations_postgres => case_concurrent_registrations);
contract!(concurrent_failures_stay_isolated_sqlite, concurrent_failures_stay_isolated_postgres => case_concurrent_failures_stay_isolated);
contract!(concurrent_duplicate_names_sqlite, concurrent_duplicate_names_postgres => case_concurrent_duplicate_names);

const TASKS: usize = 32;
const BATCHES: i64 = 20;

async fn case_concurrent_writers(store: &Store) {
    let experiment = create_experiment(store, "concurrency").await;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            let run = store
                .create_run(new_run(experiment, &format!("task-{task:02}"), task as i64))
                .await
                .map_err(|e| format!("task {task}: create_run: {e:?}"))?;
            let run_id = run.info.run_id;
            for j in 0..BATCHES {
                store
                    .log_batch(
                        &run_id,
                        batch(
                            vec![
                                metric("m", j as f64, 1_000 + j, j),
                                metric("task", task as f64, 1_000 + j, j),
                            ],
                            vec![param(&format!("p{j:02}"), &j.to_string())],
                            vec![tag("last", &j.to_string())],
                        ),
                    )
                    .await
                    .map_err(|e| format!("task {task}: log_batch {j}: {e:?}"))?;
                // Readers run beside the writers.
                let seen = store
                    .get_run(&run_id)
                    .await
                    .map_err(|e| format!("task {task}: get_run {j}: {e:?}"))?;
                if seen.data.params.len() != j as usize + 1 {
                    return Err(format!(
                        "task {task}: after batch {j} the run shows {} params",
                        seen.data.params.len()
                    ));
                }
            }
            Ok::<RunId, String>(run_id)
        }));
    }
    let mut errors = Vec::new();
    let mut runs = Vec::new();
    for handle in handles {
        match handle.await.expect("task panicked") {
            Ok(run_id) => runs.push(run_id),
            Err(error) => errors.push(error),
        }
    }
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    assert_eq!(runs.len(), TASKS);

    for (task, run_id) in runs.iter().enumerate() {
        let run = store.get_run(run_id).await.unwrap();
        assert_eq!(run.info.run_name, format!("task-{task:02}"));
        assert_eq!(run.data.params.len(), BATCHES as usize);
        assert_eq!(value_of(&run.data.tags, "last"), Some("19"));
        let m = latest(&run, "m").unwrap();
        assert_eq!((m.value, m.step), (19.0, 19));
        assert_eq!(latest(&run, "task").unwrap().value, task as f64);
        let history = store
            .get_metric_history(run_id, "m", HistoryCursor::default(), 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(history.metrics.len(), BATCHES as usize);
        let steps: Vec<i64> = history.metrics.iter().map(|m| m.step).collect();
        assert_eq!(steps, (0..BATCHES).collect::<Vec<_>>());
    }
    let page = store
        .search_runs(
            &[experiment],
            &SearchQuery {
                max_results: 100,
                ..query(SearchEntity::Runs, "metrics.m = 19", &[])
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), TASKS);
}

/// Concurrent registrations of one model never hand out the same version number.
async fn case_concurrent_registrations(store: &Store) {
    store
        .create_registered_model("contended", None, &[], 1)
        .await
        .unwrap();
    let mut handles = Vec::new();
    for task in 0..16 {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for _ in 0..4 {
                let version = store
                    .create_model_version(
                        slipway_core::registry::NewModelVersion::new(
                            "contended",
                            format!("s3://bucket/{task}"),
                        ),
                        10,
                    )
                    .await
                    .map_err(|e| format!("task {task}: {e:?}"))?;
                versions.push(version.version);
            }
            Ok::<Vec<i64>, String>(versions)
        }));
    }
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for handle in handles {
        match handle.await.expect("task panicked") {
            Ok(versions) => all.extend(versions),
            Err(error) => errors.push(error),
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    all.sort_unstable();
    assert_eq!(all, (1..=64).collect::<Vec<i64>>());
}

/// Failing log-batches interleaved with good ones (on SQLite they share group commits): each
/// failure reports its own InvalidParameter and leaves nothing, each success is complete.
async fn case_concurrent_failures_stay_isolated(store: &Store) {
    let experiment = create_experiment(store, "isolation").await;
    let mut handles = Vec::new();
    for task in 0..16 {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            let run_id = store
                .create_run(new_run(experiment, &format!("iso-{task:02}"), task))
                .await
                .map_err(|e| format!("task {task}: create_run: {e:?}"))?
                .info
                .run_id;
            store
                .log_batch(&run_id, batch(vec![], vec![param("fixed", "1")], vec![]))
                .await
                .map_err(|e| format!("task {task}: first batch: {e:?}"))?;
            for j in 0..10i64 {
                let good = batch(
                    vec![metric("good", j as f64, j, j)],
                    vec![param(&format!("g{j}"), "ok")],
                    vec![tag(&format!("good-{j}"), "yes")],
                );
                let bad = batch(
                    vec![metric("bad", j as f64, j, j)],
                    vec![param(&format!("b{j}"), "no"), param("fixed", "2")],
                    vec![tag(&format!("bad-{j}"), "yes")],
                );
                // Send both at once so they can land in the same group.
                let (good, bad) = tokio::join!(
                    store.log_batch(&run_id, good),
                    store.log_batch(&run_id, bad)
                );
                good.map_err(|e| format!("task {task}: good batch {j}: {e:?}"))?;
                match bad {
                    Err(Error::InvalidParameter(_)) => {}
                    other => {
                        return Err(format!(
                            "task {task}: bad batch {j}: expected InvalidParameter, got {other:?}"
                        ));
                    }
                }
            }
            Ok::<RunId, String>(run_id)
        }));
    }
    let mut errors = Vec::new();
    let mut runs = Vec::new();
    for handle in handles {
        match handle.await.expect("task panicked") {
            Ok(run_id) => runs.push(run_id),
            Err(error) => errors.push(error),
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    for run_id in &runs {
        let run = store.get_run(run_id).await.unwrap();
        assert_eq!(value_of(&run.data.params, "fixed"), Some("1"));
        assert_eq!(run.data.params.len(), 11, "{:?}", run.data.params);
        assert!(run.data.params.iter().all(|p| !p.key.starts_with('b')));
        assert!(run.data.tags.iter().all(|t| !t.key.starts_with("bad")));
        assert_eq!(
            run.data
                .tags
                .iter()
                .filter(|t| t.key.starts_with("good"))
                .count(),
            10
        );
        assert!(latest(&run, "bad").is_none());
        assert_eq!(latest(&run, "good").unwrap().value, 9.0);
        let history = store
            .get_metric_history(run_id, "good", HistoryCursor::default(), 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(history.metrics.len(), 10);
    }
}

/// Racing creations of one name: exactly one wins, the others get AlreadyExists.
async fn case_concurrent_duplicate_names(store: &Store) {
    let mut handles = Vec::new();
    for task in 0..12 {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            let experiment = store
                .create_experiment(
                    "race",
                    ArtifactLocation::UnderRoot("mlflow-artifacts:".into()),
                    &[tag("winner", &task.to_string())],
                    1,
                )
                .await;
            let model = store
                .create_registered_model("race", None, &[tag("winner", &task.to_string())], 1)
                .await;
            (experiment.map(|_| ()), model.map(|_| ()))
        }));
    }
    let mut experiments_ok = 0;
    let mut models_ok = 0;
    for handle in handles {
        let (experiment, model) = handle.await.expect("task panicked");
        match experiment {
            Ok(()) => experiments_ok += 1,
            Err(Error::AlreadyExists(_)) => {}
            Err(other) => panic!("create_experiment: {other:?}"),
        }
        match model {
            Ok(()) => models_ok += 1,
            Err(Error::AlreadyExists(_)) => {}
            Err(other) => panic!("create_registered_model: {other:?}"),
        }
    }
    assert_eq!(experiments_ok, 1);
    assert_eq!(models_ok, 1);
    // The winner's tag is there, and only one.
    let experiment = store.get_experiment_by_name("race").await.unwrap();
    assert_eq!(experiment.tags.len(), 1);
    let model = store.get_registered_model("race").await.unwrap();
    assert_eq!(model.tags.len(), 1);
}
