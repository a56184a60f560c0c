//! Schema set-up, experiments, their tags, lifecycle and search.

use slipway_core::Error;
use slipway_core::ports::{ArtifactLocation, SearchQuery};
use slipway_core::search::SearchEntity;
use slipway_core::tracking::{ExperimentId, LifecycleStage, RunStatus, ViewType};

use crate::common::{
    ROOT, Store, create_experiment, create_experiment_at, create_run, next_offset, open, query,
    strings, tag,
};

contract!(uri: schema_is_idempotent_sqlite, schema_is_idempotent_postgres => case_schema_is_idempotent);
contract!(default_experiment_sqlite, default_experiment_postgres => case_default_experiment);
contract!(experiment_create_get_sqlite, experiment_create_get_postgres => case_experiment_create_get);
contract!(experiment_rename_sqlite, experiment_rename_postgres => case_experiment_rename);
contract!(experiment_tags_sqlite, experiment_tags_postgres => case_experiment_tags);
contract!(experiment_delete_restore_sqlite, experiment_delete_restore_postgres => case_experiment_delete_restore);
contract!(experiment_search_sqlite, experiment_search_postgres => case_experiment_search);
contract!(experiment_search_paging_and_views_sqlite, experiment_search_paging_and_views_postgres => case_experiment_search_paging_and_views);

async fn case_schema_is_idempotent(uri: &str) {
    let first = open(uri).await;
    let store: Store = std::sync::Arc::new(first.clone());
    let id = create_experiment(&store, "survives-reopen").await;
    assert_eq!(
        id,
        ExperimentId::new(1),
        "the first user experiment gets id 1"
    );

    // A second store on the same database, while the first is still open: migrations and the
    // Default experiment are idempotent.
    let second = open(uri).await;
    let reopened: Store = std::sync::Arc::new(second.clone());
    let experiment = reopened
        .get_experiment_by_name("survives-reopen")
        .await
        .unwrap();
    assert_eq!(experiment.experiment_id, id);
    let all = reopened
        .search_experiments(&SearchQuery {
            view_type: ViewType::All,
            ..query(SearchEntity::Experiments, "", &[])
        })
        .await
        .unwrap();
    let mut ids: Vec<i64> = all.items.iter().map(|e| e.experiment_id.get()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![0, 1],
        "exactly one Default experiment after reopening"
    );

    // New ids continue after the existing ones.
    let next = create_experiment(&reopened, "after-reopen").await;
    assert_eq!(next, ExperimentId::new(2));
    second.close().await;
    first.close().await;

    // And once more after both were closed.
    let third = open(uri).await;
    let store: Store = std::sync::Arc::new(third.clone());
    assert_eq!(
        store
            .get_experiment(ExperimentId::DEFAULT)
            .await
            .unwrap()
            .name,
        "Default"
    );
    assert_eq!(
        store
            .get_experiment_by_name("after-reopen")
            .await
            .unwrap()
            .experiment_id,
        next
    );
    third.close().await;
}

async fn case_default_experiment(store: &Store) {
    let default = store.get_experiment(ExperimentId::DEFAULT).await.unwrap();
    assert_eq!(default.experiment_id, ExperimentId::new(0));
    assert_eq!(default.name, "Default");
    assert_eq!(default.artifact_location, "mlflow-artifacts:/0");
    assert_eq!(default.lifecycle_stage, LifecycleStage::Active);
    assert!(default.tags.is_empty());
    assert_eq!(
        store.get_experiment_by_name("Default").await.unwrap(),
        default
    );
    // Runs can be created in it right away.
    let run = create_run(store, ExperimentId::DEFAULT, "in-default", 5).await;
    assert_eq!(
        store.get_run(&run).await.unwrap().info.artifact_uri,
        format!("mlflow-artifacts:/0/{run}/artifacts")
    );
    // It cannot be deleted.
    assert_err!(
        store.delete_experiment(ExperimentId::DEFAULT, 10).await,
        Error::InvalidParameter(_)
    );
    assert_eq!(
        store
            .get_experiment(ExperimentId::DEFAULT)
            .await
            .unwrap()
            .lifecycle_stage,
        LifecycleStage::Active
    );
}

async fn case_experiment_create_get(store: &Store) {
    let id = store
        .create_experiment(
            "exp-a",
            ArtifactLocation::UnderRoot(ROOT.into()),
            &[tag("k2", "v2"), tag("k1", "v1")],
            1_234,
        )
        .await
        .unwrap();
    assert!(id.get() > 0);
    let experiment = store.get_experiment(id).await.unwrap();
    assert_eq!(experiment.experiment_id, id);
    assert_eq!(experiment.name, "exp-a");
    assert_eq!(
        experiment.artifact_location,
        format!("mlflow-artifacts:/{id}")
    );
    assert_eq!(experiment.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(experiment.creation_time, 1_234);
    assert_eq!(experiment.last_update_time, 1_234);
    assert_eq!(experiment.tags, vec![tag("k1", "v1"), tag("k2", "v2")]);
    assert_eq!(
        store.get_experiment_by_name("exp-a").await.unwrap(),
        experiment
    );

    // A root with a trailing slash does not double it.
    let under = store
        .create_experiment(
            "exp-root",
            ArtifactLocation::UnderRoot("s3://bucket/root/".into()),
            &[],
            1_300,
        )
        .await
        .unwrap();
    assert_ne!(under, id);
    assert_eq!(
        store.get_experiment(under).await.unwrap().artifact_location,
        format!("s3://bucket/root/{under}")
    );

    // An explicit location is kept verbatim.
    let explicit = store
        .create_experiment(
            "exp-explicit",
            ArtifactLocation::Explicit("file:///tmp/somewhere/else".into()),
            &[],
            1_400,
        )
        .await
        .unwrap();
    let experiment = store.get_experiment(explicit).await.unwrap();
    assert_eq!(experiment.artifact_location, "file:///tmp/somewhere/else");
    assert!(experiment.tags.is_empty());
    // Runs of that experiment live under it.
    let run = create_run(store, explicit, "r", 1).await;
    assert_eq!(
        store.get_run(&run).await.unwrap().info.artifact_uri,
        format!("file:///tmp/somewhere/else/{run}/artifacts")
    );

    // Duplicate names are refused, whatever the location, and leave nothing behind.
    assert_err!(
        store
            .create_experiment(
                "exp-a",
                ArtifactLocation::UnderRoot(ROOT.into()),
                &[],
                2_000
            )
            .await,
        Error::AlreadyExists(_)
    );
    assert_err!(
        store
            .create_experiment(
                "exp-a",
                ArtifactLocation::Explicit("file:///x".into()),
                &[tag("leak", "1")],
                2_000
            )
            .await,
        Error::AlreadyExists(_)
    );
    let original = store.get_experiment_by_name("exp-a").await.unwrap();
    assert_eq!(original.experiment_id, id);
    assert_eq!(original.tags, vec![tag("k1", "v1"), tag("k2", "v2")]);
    let all = store
        .search_experiments(&SearchQuery {
            view_type: ViewType::All,
            ..query(SearchEntity::Experiments, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(
        all.items.len(),
        4,
        "Default + exp-a + exp-root + exp-explicit"
    );

    // Missing experiments.
    assert_err!(
        store.get_experiment(ExperimentId::new(987_654)).await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_experiment_by_name("no-such-experiment").await,
        Error::NotFound(_)
    );
    // Names are exact, not case-folded.
    assert_err!(
        store.get_experiment_by_name("EXP-A").await,
        Error::NotFound(_)
    );
}

async fn case_experiment_rename(store: &Store) {
    let id = create_experiment_at(store, "before", 1_000).await;
    let other = create_experiment_at(store, "taken", 1_000).await;
    store.rename_experiment(id, "after", 2_000).await.unwrap();
    let experiment = store.get_experiment(id).await.unwrap();
    assert_eq!(experiment.name, "after");
    assert_eq!(experiment.last_update_time, 2_000);
    assert_eq!(experiment.creation_time, 1_000);
    // The artifact location keeps the id, not the name.
    assert_eq!(
        experiment.artifact_location,
        format!("mlflow-artifacts:/{id}")
    );
    assert_eq!(
        store
            .get_experiment_by_name("after")
            .await
            .unwrap()
            .experiment_id,
        id
    );
    assert_err!(
        store.get_experiment_by_name("before").await,
        Error::NotFound(_)
    );

    // Onto a taken name: refused, nothing changes.
    assert_err!(
        store.rename_experiment(id, "taken", 3_000).await,
        Error::AlreadyExists(_)
    );
    let experiment = store.get_experiment(id).await.unwrap();
    assert_eq!(experiment.name, "after");
    assert_eq!(experiment.last_update_time, 2_000);
    assert_eq!(store.get_experiment(other).await.unwrap().name, "taken");

    // The old name is free again.
    let reused = create_experiment(store, "before").await;
    assert_ne!(reused, id);

    assert_err!(
        store
            .rename_experiment(ExperimentId::new(424_242), "ghost", 4_000)
            .await,
        Error::NotFound(_)
    );

    // A deleted experiment cannot be renamed.
    store.delete_experiment(other, 5_000).await.unwrap();
    assert_err!(
        store
            .rename_experiment(other, "renamed-while-deleted", 6_000)
            .await,
        Error::InvalidParameter(_)
    );
    assert_eq!(store.get_experiment(other).await.unwrap().name, "taken");
}

async fn case_experiment_tags(store: &Store) {
    let id = create_experiment(store, "tagged").await;
    store.set_experiment_tag(id, &tag("b", "1")).await.unwrap();
    store.set_experiment_tag(id, &tag("a", "2")).await.unwrap();
    assert_eq!(
        store.get_experiment(id).await.unwrap().tags,
        vec![tag("a", "2"), tag("b", "1")]
    );
    // Overwrite.
    store
        .set_experiment_tag(id, &tag("b", "overwritten"))
        .await
        .unwrap();
    assert_eq!(
        store.get_experiment(id).await.unwrap().tags,
        vec![tag("a", "2"), tag("b", "overwritten")]
    );
    // Delete.
    store.delete_experiment_tag(id, "a").await.unwrap();
    assert_eq!(
        store.get_experiment(id).await.unwrap().tags,
        vec![tag("b", "overwritten")]
    );
    assert_err!(
        store.delete_experiment_tag(id, "a").await,
        Error::NotFound(_)
    );
    assert_err!(
        store.delete_experiment_tag(id, "never-set").await,
        Error::NotFound(_)
    );
    // Tags belong to one experiment only.
    let other = create_experiment(store, "untagged").await;
    assert!(store.get_experiment(other).await.unwrap().tags.is_empty());
    assert_err!(
        store.delete_experiment_tag(other, "b").await,
        Error::NotFound(_)
    );
    // Missing experiment.
    assert_err!(
        store
            .set_experiment_tag(ExperimentId::new(55_555), &tag("x", "y"))
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .delete_experiment_tag(ExperimentId::new(55_555), "x")
            .await,
        Error::NotFound(_)
    );
    // A deleted experiment's tags are frozen.
    store.delete_experiment(id, 9_000).await.unwrap();
    assert_err!(
        store.set_experiment_tag(id, &tag("late", "1")).await,
        Error::InvalidParameter(_)
    );
    assert_err!(
        store.delete_experiment_tag(id, "b").await,
        Error::InvalidParameter(_)
    );
    assert_eq!(
        store.get_experiment(id).await.unwrap().tags,
        vec![tag("b", "overwritten")]
    );
}

async fn case_experiment_delete_restore(store: &Store) {
    let id = create_experiment_at(store, "doomed", 1_000).await;
    let keep = create_experiment_at(store, "bystander", 1_000).await;
    let run_a = create_run(store, id, "a", 10).await;
    let run_b = create_run(store, id, "b", 20).await;
    let bystander_run = create_run(store, keep, "c", 30).await;

    store.delete_experiment(id, 5_000).await.unwrap();
    let experiment = store.get_experiment(id).await.unwrap();
    assert_eq!(experiment.lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(experiment.last_update_time, 5_000);
    // Still found by name, as in MLflow.
    assert_eq!(
        store
            .get_experiment_by_name("doomed")
            .await
            .unwrap()
            .experiment_id,
        id
    );
    for run in [&run_a, &run_b] {
        assert_eq!(
            store.get_run(run).await.unwrap().info.lifecycle_stage,
            LifecycleStage::Deleted,
            "runs are deleted with their experiment"
        );
    }
    assert_eq!(
        store
            .get_run(&bystander_run)
            .await
            .unwrap()
            .info
            .lifecycle_stage,
        LifecycleStage::Active
    );
    assert_eq!(
        store.get_experiment(keep).await.unwrap().lifecycle_stage,
        LifecycleStage::Active
    );
    // No new runs in a deleted experiment.
    assert_err!(
        store
            .create_run(crate::common::new_run(id, "late", 40))
            .await,
        Error::InvalidParameter(_)
    );
    // Search by view type.
    let active_runs = store
        .search_runs(&[id], &query(SearchEntity::Runs, "", &[]))
        .await
        .unwrap();
    assert!(active_runs.items.is_empty());
    let deleted_runs = store
        .search_runs(
            &[id],
            &SearchQuery {
                view_type: ViewType::DeletedOnly,
                ..query(SearchEntity::Runs, "", &[])
            },
        )
        .await
        .unwrap();
    assert_eq!(
        crate::common::run_names(&deleted_runs),
        strings(&["b", "a"])
    );

    store.restore_experiment(id, 6_000).await.unwrap();
    let experiment = store.get_experiment(id).await.unwrap();
    assert_eq!(experiment.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(experiment.last_update_time, 6_000);
    for run in [&run_a, &run_b] {
        let run = store.get_run(run).await.unwrap();
        assert_eq!(run.info.lifecycle_stage, LifecycleStage::Active);
        assert_eq!(run.info.status, RunStatus::Running);
    }
    // Usable again.
    create_run(store, id, "after-restore", 50).await;

    assert_err!(
        store.delete_experiment(ExperimentId::new(31_337), 1).await,
        Error::NotFound(_)
    );
    assert_err!(
        store.restore_experiment(ExperimentId::new(31_337), 1).await,
        Error::NotFound(_)
    );
}

/// Four experiments created at 100..400 (plus Default, created "now"):
/// alpha-01 {team=red}, alpha-02 {team=blue}, beta-01 {team=red, env=prod}, beta-02 {}.
async fn seed_experiments(store: &Store) -> [ExperimentId; 4] {
    let mut ids = Vec::new();
    for (index, (name, tags)) in [
        ("alpha-01", vec![tag("team", "red")]),
        ("alpha-02", vec![tag("team", "blue")]),
        ("beta-01", vec![tag("team", "red"), tag("env", "prod")]),
        ("beta-02", vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(
            store
                .create_experiment(
                    name,
                    ArtifactLocation::UnderRoot(ROOT.into()),
                    &tags,
                    100 * (index as i64 + 1),
                )
                .await
                .unwrap(),
        );
    }
    ids.try_into().unwrap()
}

async fn experiment_names(store: &Store, filter: &str, order_by: &[&str]) -> Vec<String> {
    let page = store
        .search_experiments(&query(SearchEntity::Experiments, filter, order_by))
        .await
        .unwrap_or_else(|e| panic!("search_experiments {filter:?} {order_by:?}: {e:?}"));
    assert!(page.next_page_token.is_none());
    page.items.into_iter().map(|e| e.name).collect()
}

async fn case_experiment_search(store: &Store) {
    let [a1, a2, _b1, b2] = seed_experiments(store).await;

    // Default order: newest first (Default was created with the wall clock, so it is newest).
    assert_eq!(
        experiment_names(store, "", &[]).await,
        strings(&["Default", "beta-02", "beta-01", "alpha-02", "alpha-01"])
    );
    // Tags come with the results.
    let page = store
        .search_experiments(&query(SearchEntity::Experiments, "name = 'beta-01'", &[]))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].tags,
        vec![tag("env", "prod"), tag("team", "red")]
    );

    // Name filters.
    assert_eq!(
        experiment_names(store, "name LIKE 'alpha%'", &[]).await,
        strings(&["alpha-02", "alpha-01"])
    );
    assert_eq!(
        experiment_names(store, "name LIKE '%-01'", &[]).await,
        strings(&["beta-01", "alpha-01"])
    );
    assert_eq!(
        experiment_names(store, "name LIKE 'Alpha%'", &[]).await,
        Vec::<String>::new(),
        "LIKE is case-sensitive"
    );
    assert_eq!(
        experiment_names(store, "name ILIKE 'ALPHA%'", &[]).await,
        strings(&["alpha-02", "alpha-01"]),
        "ILIKE is case-insensitive"
    );
    assert_eq!(
        experiment_names(store, "name = 'alpha-02'", &[]).await,
        strings(&["alpha-02"])
    );
    assert_eq!(
        experiment_names(store, "name != 'Default' AND name != 'beta-01'", &[]).await,
        strings(&["beta-02", "alpha-02", "alpha-01"])
    );

    // Tag filters.
    assert_eq!(
        experiment_names(store, "tags.team = 'red'", &[]).await,
        strings(&["beta-01", "alpha-01"])
    );
    assert_eq!(
        experiment_names(store, "tags.team != 'red'", &[]).await,
        strings(&["alpha-02"]),
        "!= needs the tag to exist"
    );
    assert_eq!(
        experiment_names(store, "tags.team = 'red' AND tags.env = 'prod'", &[]).await,
        strings(&["beta-01"])
    );
    assert_eq!(
        experiment_names(store, "tags.team LIKE 'b%'", &[]).await,
        strings(&["alpha-02"])
    );
    assert_eq!(
        experiment_names(store, "tags.env IS NULL AND name LIKE '%-0%'", &[]).await,
        strings(&["beta-02", "alpha-02", "alpha-01"])
    );
    assert_eq!(
        experiment_names(store, "tags.team IS NOT NULL", &[]).await,
        strings(&["beta-01", "alpha-02", "alpha-01"])
    );

    // experiment_id IN / NOT IN / =.
    assert_eq!(
        experiment_names(store, &format!("experiment_id IN ('{a1}', '{b2}')"), &[]).await,
        strings(&["beta-02", "alpha-01"])
    );
    assert_eq!(
        experiment_names(
            store,
            &format!("experiment_id NOT IN ('{a1}', '{b2}', '0')"),
            &[]
        )
        .await,
        strings(&["beta-01", "alpha-02"])
    );
    assert_eq!(
        experiment_names(store, &format!("experiment_id = '{a2}'"), &[]).await,
        strings(&["alpha-02"])
    );

    // OR and parentheses.
    assert_eq!(
        experiment_names(
            store,
            "name = 'alpha-01' OR (tags.team = 'red' AND name LIKE 'beta%')",
            &[]
        )
        .await,
        strings(&["beta-01", "alpha-01"])
    );

    // Creation time.
    assert_eq!(
        experiment_names(store, "creation_time >= 200 AND creation_time < 400", &[]).await,
        strings(&["beta-01", "alpha-02"])
    );

    // Ordering.
    assert_eq!(
        experiment_names(store, "name != 'Default'", &["name ASC"]).await,
        strings(&["alpha-01", "alpha-02", "beta-01", "beta-02"])
    );
    assert_eq!(
        experiment_names(store, "name != 'Default'", &["name DESC"]).await,
        strings(&["beta-02", "beta-01", "alpha-02", "alpha-01"])
    );
    assert_eq!(
        experiment_names(store, "", &["creation_time ASC"]).await,
        strings(&["alpha-01", "alpha-02", "beta-01", "beta-02", "Default"])
    );
    assert_eq!(
        experiment_names(store, "name LIKE '%-0%'", &["experiment_id DESC"]).await,
        strings(&["beta-02", "beta-01", "alpha-02", "alpha-01"])
    );
}

async fn case_experiment_search_paging_and_views(store: &Store) {
    let [_a1, a2, _b1, _b2] = seed_experiments(store).await;

    // 5 active experiments in pages of 2: 2 + 2 + 1, tokens only while more exist.
    let mut seen = Vec::new();
    let mut offset = 0;
    let mut pages = Vec::new();
    loop {
        let page = store
            .search_experiments(&SearchQuery {
                max_results: 2,
                offset,
                ..query(SearchEntity::Experiments, "", &[])
            })
            .await
            .unwrap();
        pages.push(page.items.len());
        seen.extend(page.items.iter().map(|e| e.name.clone()));
        match next_offset(&page) {
            Some(next) => {
                assert_eq!(next, offset + 2);
                offset = next;
            }
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(
        seen,
        strings(&["Default", "beta-02", "beta-01", "alpha-02", "alpha-01"])
    );
    // Exactly max_results rows: no next page.
    let page = store
        .search_experiments(&SearchQuery {
            max_results: 5,
            ..query(SearchEntity::Experiments, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(page.next_page_token.is_none());
    let page = store
        .search_experiments(&SearchQuery {
            max_results: 4,
            ..query(SearchEntity::Experiments, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    assert_eq!(next_offset(&page), Some(4));
    // Past the end: an empty page, no token.
    let page = store
        .search_experiments(&SearchQuery {
            max_results: 2,
            offset: 50,
            ..query(SearchEntity::Experiments, "", &[])
        })
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert!(page.next_page_token.is_none());

    // View types.
    store.delete_experiment(a2, 9_000).await.unwrap();
    let names = |view_type| {
        let query = SearchQuery {
            view_type,
            ..query(SearchEntity::Experiments, "", &[])
        };
        async move {
            store
                .search_experiments(&query)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(ViewType::ActiveOnly).await,
        strings(&["Default", "beta-02", "beta-01", "alpha-01"])
    );
    assert_eq!(names(ViewType::DeletedOnly).await, strings(&["alpha-02"]));
    let all = names(ViewType::All).await;
    assert_eq!(
        all,
        strings(&["Default", "beta-02", "beta-01", "alpha-02", "alpha-01"])
    );
    // Filters combine with the view.
    let page = store
        .search_experiments(&SearchQuery {
            view_type: ViewType::DeletedOnly,
            ..query(SearchEntity::Experiments, "tags.team = 'blue'", &[])
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].lifecycle_stage, LifecycleStage::Deleted);
}
