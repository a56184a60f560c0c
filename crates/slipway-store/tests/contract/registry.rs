//! The model registry: registered models, versions, tags, aliases, stages and search.

use slipway_core::Error;
use slipway_core::ports::SearchQuery;
use slipway_core::registry::{AliasVersion, ModelVersion, NewModelVersion, Stage};
use slipway_core::search::SearchEntity;

use crate::common::{Store, next_offset, query, strings, tag};

contract!(registered_model_crud_sqlite, registered_model_crud_postgres => case_registered_model_crud);
contract!(explicit_version_numbers_keep_gaps_and_are_never_reused_sqlite, explicit_version_numbers_keep_gaps_and_are_never_reused_postgres => case_explicit_version_numbers_keep_gaps_and_are_never_reused);
contract!(registered_model_rename_sqlite, registered_model_rename_postgres => case_registered_model_rename);
contract!(registered_model_delete_cascades_sqlite, registered_model_delete_cascades_postgres => case_registered_model_delete_cascades);
contract!(model_versions_sqlite, model_versions_postgres => case_model_versions);
contract!(model_version_tags_sqlite, model_version_tags_postgres => case_model_version_tags);
contract!(aliases_sqlite, aliases_postgres => case_aliases);
contract!(stages_sqlite, stages_postgres => case_stages);
contract!(search_registered_models_sqlite, search_registered_models_postgres => case_search_registered_models);
contract!(search_model_versions_sqlite, search_model_versions_postgres => case_search_model_versions);
contract!(
    search_model_versions_carry_aliases_sqlite, search_model_versions_carry_aliases_postgres => case_search_model_versions_carry_aliases
);

fn new_version(name: &str, run_id: Option<&str>) -> NewModelVersion {
    NewModelVersion {
        run_id: run_id.map(str::to_owned),
        ..NewModelVersion::new(name, format!("models:/{name}/source"))
    }
}

async fn create_model(store: &Store, name: &str, now: i64) {
    store
        .create_registered_model(name, None, &[], now)
        .await
        .unwrap_or_else(|e| panic!("creating registered model {name}: {e:?}"));
}

async fn create_version(store: &Store, name: &str, run_id: Option<&str>, now: i64) -> i64 {
    store
        .create_model_version(new_version(name, run_id), now)
        .await
        .unwrap_or_else(|e| panic!("creating a version of {name}: {e:?}"))
        .version
}

fn numbers(versions: &[ModelVersion]) -> Vec<i64> {
    versions.iter().map(|v| v.version).collect()
}

async fn case_registered_model_crud(store: &Store) {
    let created = store
        .create_registered_model(
            "model-a",
            Some("first"),
            &[tag("k2", "v2"), tag("k1", "v1")],
            1_000,
        )
        .await
        .unwrap();
    assert_eq!(created.name, "model-a");
    assert_eq!(created.description.as_deref(), Some("first"));
    assert_eq!(created.creation_timestamp, 1_000);
    assert_eq!(created.last_updated_timestamp, 1_000);
    assert_eq!(created.tags, vec![tag("k1", "v1"), tag("k2", "v2")]);
    assert!(created.latest_versions.is_empty());
    assert!(created.aliases.is_empty());
    assert_eq!(
        store.get_registered_model("model-a").await.unwrap(),
        created
    );

    // Duplicate names.
    assert_err!(
        store
            .create_registered_model("model-a", None, &[tag("leak", "1")], 2_000)
            .await,
        Error::AlreadyExists(_)
    );
    assert_eq!(
        store.get_registered_model("model-a").await.unwrap(),
        created
    );

    // Without a description.
    let bare = store
        .create_registered_model("model-bare", None, &[], 1_100)
        .await
        .unwrap();
    assert_eq!(bare.description, None);
    assert!(bare.tags.is_empty());

    // Missing.
    assert_err!(
        store.get_registered_model("no-such-model").await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_registered_model("MODEL-A").await,
        Error::NotFound(_)
    );

    // Update the description.
    let updated = store
        .update_registered_model("model-a", Some("second"), 3_000)
        .await
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("second"));
    assert_eq!(updated.last_updated_timestamp, 3_000);
    assert_eq!(updated.creation_timestamp, 1_000);
    assert_eq!(
        store.get_registered_model("model-a").await.unwrap(),
        updated
    );
    assert_err!(
        store
            .update_registered_model("no-such-model", Some("x"), 3_000)
            .await,
        Error::NotFound(_)
    );

    // Tags.
    store
        .set_registered_model_tag("model-a", &tag("k1", "changed"))
        .await
        .unwrap();
    store
        .set_registered_model_tag("model-a", &tag("k3", "v3"))
        .await
        .unwrap();
    store
        .delete_registered_model_tag("model-a", "k2")
        .await
        .unwrap();
    assert_eq!(
        store.get_registered_model("model-a").await.unwrap().tags,
        vec![tag("k1", "changed"), tag("k3", "v3")]
    );
    assert_err!(
        store.delete_registered_model_tag("model-a", "k2").await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .set_registered_model_tag("no-such-model", &tag("a", "b"))
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .delete_registered_model_tag("no-such-model", "a")
            .await,
        Error::NotFound(_)
    );
    assert!(
        store
            .get_registered_model("model-bare")
            .await
            .unwrap()
            .tags
            .is_empty()
    );
}

async fn case_registered_model_rename(store: &Store) {
    create_model(store, "old-name", 1_000).await;
    create_model(store, "taken", 1_000).await;
    create_version(store, "old-name", None, 1_100).await;
    create_version(store, "old-name", None, 1_200).await;
    store
        .set_model_version_tag("old-name", 2, &tag("vt", "1"))
        .await
        .unwrap();
    store.set_alias("old-name", "champion", 1).await.unwrap();
    store
        .set_registered_model_tag("old-name", &tag("mt", "1"))
        .await
        .unwrap();

    let renamed = store
        .rename_registered_model("old-name", "new-name", 2_000)
        .await
        .unwrap();
    assert_eq!(renamed.name, "new-name");
    assert_eq!(renamed.last_updated_timestamp, 2_000);
    assert_eq!(renamed.tags, vec![tag("mt", "1")]);
    assert_eq!(
        renamed.aliases,
        vec![AliasVersion {
            alias: "champion".into(),
            version: 1
        }]
    );
    assert_eq!(numbers(&renamed.latest_versions), vec![2]);
    assert_eq!(renamed.latest_versions[0].name, "new-name");

    assert_err!(
        store.get_registered_model("old-name").await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_model_version("old-name", 1).await,
        Error::NotFound(_)
    );
    // The versions followed, with their tags and aliases.
    let v1 = store.get_model_version("new-name", 1).await.unwrap();
    assert_eq!(v1.name, "new-name");
    assert_eq!(v1.aliases, strings(&["champion"]));
    let v2 = store.get_model_version("new-name", 2).await.unwrap();
    assert_eq!(v2.tags, vec![tag("vt", "1")]);
    assert_eq!(
        store
            .get_version_by_alias("new-name", "champion")
            .await
            .unwrap()
            .version,
        1
    );
    // Numbering continues.
    assert_eq!(create_version(store, "new-name", None, 2_100).await, 3);

    // Onto a taken name.
    assert_err!(
        store
            .rename_registered_model("new-name", "taken", 3_000)
            .await,
        Error::AlreadyExists(_)
    );
    assert_eq!(
        store.get_registered_model("new-name").await.unwrap().name,
        "new-name"
    );
    assert!(
        store
            .get_registered_model("taken")
            .await
            .unwrap()
            .latest_versions
            .is_empty()
    );
    assert_err!(
        store
            .rename_registered_model("ghost", "ghost-2", 3_000)
            .await,
        Error::NotFound(_)
    );
    // The old name is free again.
    create_model(store, "old-name", 4_000).await;
    assert_eq!(create_version(store, "old-name", None, 4_100).await, 1);
}

async fn case_registered_model_delete_cascades(store: &Store) {
    create_model(store, "doomed", 1_000).await;
    create_model(store, "bystander", 1_000).await;
    for _ in 0..2 {
        create_version(store, "doomed", Some("run-1"), 1_100).await;
    }
    create_version(store, "bystander", Some("run-1"), 1_100).await;
    store
        .set_model_version_tag("doomed", 1, &tag("vt", "1"))
        .await
        .unwrap();
    store.set_alias("doomed", "live", 2).await.unwrap();
    store
        .set_registered_model_tag("doomed", &tag("mt", "1"))
        .await
        .unwrap();

    store.delete_registered_model("doomed").await.unwrap();
    assert_err!(
        store.get_registered_model("doomed").await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_model_version("doomed", 1).await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_version_by_alias("doomed", "live").await,
        Error::NotFound(_)
    );
    let versions = store
        .search_model_versions(&query(SearchEntity::ModelVersions, "run_id = 'run-1'", &[]))
        .await
        .unwrap();
    assert_eq!(
        versions
            .items
            .iter()
            .map(|v| (v.name.as_str(), v.version))
            .collect::<Vec<_>>(),
        vec![("bystander", 1)]
    );
    assert_err!(
        store.delete_registered_model("doomed").await,
        Error::NotFound(_)
    );

    // A new model with the same name starts from scratch.
    create_model(store, "doomed", 2_000).await;
    let fresh = store.get_registered_model("doomed").await.unwrap();
    assert!(fresh.tags.is_empty());
    assert!(fresh.aliases.is_empty());
    assert!(fresh.latest_versions.is_empty());
    assert_eq!(create_version(store, "doomed", None, 2_100).await, 1);
    let v1 = store.get_model_version("doomed", 1).await.unwrap();
    assert!(v1.tags.is_empty(), "{v1:?}");
    assert!(v1.aliases.is_empty(), "{v1:?}");
    assert_eq!(create_version(store, "doomed", None, 2_200).await, 2);
    let v2 = store.get_model_version("doomed", 2).await.unwrap();
    assert!(v2.aliases.is_empty(), "{v2:?}");
    assert_err!(
        store.get_version_by_alias("doomed", "live").await,
        Error::InvalidParameter(_)
    );
}

async fn case_model_versions(store: &Store) {
    create_model(store, "m", 1_000).await;
    let first = store
        .create_model_version(
            NewModelVersion {
                name: "m".into(),
                source: "mlflow-artifacts:/1/abc/artifacts/model".into(),
                run_id: Some("abc".into()),
                run_link: Some("http://link".into()),
                description: Some("v1 desc".into()),
                tags: vec![tag("b", "2"), tag("a", "1")],
                model_id: Some("m-123".into()),
                user_id: Some("bob".into()),
                version: None,
                content: None,
            },
            1_100,
        )
        .await
        .unwrap();
    assert_eq!(first.name, "m");
    assert_eq!(first.version, 1);
    assert_eq!(first.creation_timestamp, 1_100);
    assert_eq!(first.last_updated_timestamp, 1_100);
    assert_eq!(first.source, "mlflow-artifacts:/1/abc/artifacts/model");
    assert_eq!(first.run_id.as_deref(), Some("abc"));
    assert_eq!(first.run_link.as_deref(), Some("http://link"));
    assert_eq!(first.description.as_deref(), Some("v1 desc"));
    assert_eq!(first.tags, vec![tag("a", "1"), tag("b", "2")]);
    assert_eq!(first.model_id.as_deref(), Some("m-123"));
    assert_eq!(first.user_id.as_deref(), Some("bob"));
    assert_eq!(first.current_stage, Stage::None);
    assert_eq!(first.status, "READY");
    assert!(first.aliases.is_empty());
    assert_eq!(store.get_model_version("m", 1).await.unwrap(), first);

    assert_eq!(create_version(store, "m", None, 1_200).await, 2);
    assert_eq!(create_version(store, "m", None, 1_300).await, 3);
    let v2 = store.get_model_version("m", 2).await.unwrap();
    assert_eq!(v2.run_id, None);
    assert_eq!(v2.description, None);
    assert!(v2.tags.is_empty());

    // Deleting the last version does not free its number.
    store.delete_model_version("m", 3).await.unwrap();
    assert_err!(store.get_model_version("m", 3).await, Error::NotFound(_));
    assert_err!(store.delete_model_version("m", 3).await, Error::NotFound(_));
    assert_eq!(create_version(store, "m", None, 1_400).await, 4);
    store.delete_model_version("m", 4).await.unwrap();
    store.delete_model_version("m", 2).await.unwrap();
    assert_eq!(create_version(store, "m", None, 1_500).await, 5);
    // Numbering is per model.
    create_model(store, "n", 1_000).await;
    assert_eq!(create_version(store, "n", None, 1_600).await, 1);

    // The registered model shows the newest version of each stage.
    let model = store.get_registered_model("m").await.unwrap();
    assert_eq!(numbers(&model.latest_versions), vec![5]);
    assert!(model.last_updated_timestamp >= 1_000);

    // Update.
    let updated = store
        .update_model_version("m", 1, Some("new desc"), 2_000)
        .await
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("new desc"));
    assert_eq!(updated.last_updated_timestamp, 2_000);
    assert_eq!(updated.creation_timestamp, 1_100);
    assert_eq!(updated.tags, vec![tag("a", "1"), tag("b", "2")]);
    assert_eq!(store.get_model_version("m", 1).await.unwrap(), updated);

    // Missing models and versions.
    assert_err!(store.get_model_version("m", 99).await, Error::NotFound(_));
    assert_err!(
        store.get_model_version("ghost", 1).await,
        Error::NotFound(_)
    );
    assert_err!(
        store.update_model_version("m", 99, Some("x"), 2_000).await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .create_model_version(new_version("ghost", None), 2_000)
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store.delete_model_version("ghost", 1).await,
        Error::NotFound(_)
    );
}

async fn case_model_version_tags(store: &Store) {
    create_model(store, "m", 1_000).await;
    create_version(store, "m", None, 1_100).await;
    create_version(store, "m", None, 1_200).await;
    store
        .set_model_version_tag("m", 1, &tag("k", "v"))
        .await
        .unwrap();
    store
        .set_model_version_tag("m", 1, &tag("k", "v2"))
        .await
        .unwrap();
    store
        .set_model_version_tag("m", 1, &tag("j", "w"))
        .await
        .unwrap();
    assert_eq!(
        store.get_model_version("m", 1).await.unwrap().tags,
        vec![tag("j", "w"), tag("k", "v2")]
    );
    assert!(
        store
            .get_model_version("m", 2)
            .await
            .unwrap()
            .tags
            .is_empty()
    );
    store.delete_model_version_tag("m", 1, "j").await.unwrap();
    assert_eq!(
        store.get_model_version("m", 1).await.unwrap().tags,
        vec![tag("k", "v2")]
    );
    assert_err!(
        store.delete_model_version_tag("m", 1, "j").await,
        Error::NotFound(_)
    );
    assert_err!(
        store.delete_model_version_tag("m", 2, "k").await,
        Error::NotFound(_)
    );
    assert_err!(
        store.set_model_version_tag("m", 9, &tag("k", "v")).await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .set_model_version_tag("ghost", 1, &tag("k", "v"))
            .await,
        Error::NotFound(_)
    );
    // Deleting a version drops its tags; the number is not reused, so nothing resurfaces.
    store.delete_model_version("m", 1).await.unwrap();
    assert_eq!(create_version(store, "m", None, 1_300).await, 3);
    assert!(
        store
            .get_model_version("m", 3)
            .await
            .unwrap()
            .tags
            .is_empty()
    );
}

async fn case_aliases(store: &Store) {
    create_model(store, "m", 1_000).await;
    create_version(store, "m", None, 1_100).await;
    create_version(store, "m", None, 1_200).await;
    create_version(store, "m", None, 1_300).await;

    store.set_alias("m", "champion", 1).await.unwrap();
    let by_alias = store.get_version_by_alias("m", "champion").await.unwrap();
    assert_eq!(by_alias.version, 1);
    assert_eq!(by_alias.aliases, strings(&["champion"]));
    assert_eq!(
        store.get_model_version("m", 1).await.unwrap().aliases,
        strings(&["champion"])
    );
    assert!(
        store
            .get_model_version("m", 2)
            .await
            .unwrap()
            .aliases
            .is_empty()
    );

    // Move it.
    store.set_alias("m", "champion", 2).await.unwrap();
    assert_eq!(
        store
            .get_version_by_alias("m", "champion")
            .await
            .unwrap()
            .version,
        2
    );
    assert!(
        store
            .get_model_version("m", 1)
            .await
            .unwrap()
            .aliases
            .is_empty()
    );
    // Several aliases on one version, sorted.
    store.set_alias("m", "a-prod", 2).await.unwrap();
    store.set_alias("m", "other", 3).await.unwrap();
    assert_eq!(
        store.get_model_version("m", 2).await.unwrap().aliases,
        strings(&["a-prod", "champion"])
    );
    assert_eq!(
        store.get_registered_model("m").await.unwrap().aliases,
        vec![
            AliasVersion {
                alias: "a-prod".into(),
                version: 2
            },
            AliasVersion {
                alias: "champion".into(),
                version: 2
            },
            AliasVersion {
                alias: "other".into(),
                version: 3
            },
        ]
    );

    // Delete.
    store.delete_alias("m", "champion").await.unwrap();
    assert_err!(
        store.get_version_by_alias("m", "champion").await,
        Error::InvalidParameter(_)
    );
    assert_eq!(
        store.get_model_version("m", 2).await.unwrap().aliases,
        strings(&["a-prod"])
    );
    assert_err!(
        store.get_version_by_alias("m", "never-set").await,
        Error::InvalidParameter(_)
    );
    assert_err!(
        store.get_version_by_alias("ghost", "champion").await,
        Error::NotFound(_)
    );
    // Aliases only point at existing versions.
    assert_err!(store.set_alias("m", "broken", 99).await, Error::NotFound(_));
    assert_err!(
        store.set_alias("ghost", "broken", 1).await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_version_by_alias("m", "broken").await,
        Error::InvalidParameter(_)
    );
    // Deleting a version deletes its aliases.
    store.delete_model_version("m", 2).await.unwrap();
    assert_err!(
        store.get_version_by_alias("m", "a-prod").await,
        Error::InvalidParameter(_)
    );
    assert_eq!(
        store.get_registered_model("m").await.unwrap().aliases,
        vec![AliasVersion {
            alias: "other".into(),
            version: 3
        }]
    );
    // Aliases are per model.
    create_model(store, "n", 1_000).await;
    create_version(store, "n", None, 1_100).await;
    store.set_alias("n", "other", 1).await.unwrap();
    assert_eq!(
        store
            .get_version_by_alias("m", "other")
            .await
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        store.get_version_by_alias("n", "other").await.unwrap().name,
        "n"
    );
}

async fn case_stages(store: &Store) {
    create_model(store, "m", 1_000).await;
    for now in [1_100, 1_200, 1_300, 1_400] {
        create_version(store, "m", None, now).await;
    }
    let staged = store
        .transition_stage("m", 1, Stage::Staging, false, 2_000)
        .await
        .unwrap();
    assert_eq!(staged.current_stage, Stage::Staging);
    assert_eq!(staged.last_updated_timestamp, 2_000);
    store
        .transition_stage("m", 2, Stage::Staging, false, 2_100)
        .await
        .unwrap();
    assert_eq!(
        store.get_model_version("m", 1).await.unwrap().current_stage,
        Stage::Staging,
        "without archive_existing_versions, other versions keep their stage"
    );
    store
        .transition_stage("m", 3, Stage::Production, false, 2_200)
        .await
        .unwrap();
    store
        .transition_stage("m", 4, Stage::Production, true, 2_300)
        .await
        .unwrap();
    let stage_of = |version: i64| async move {
        store
            .get_model_version("m", version)
            .await
            .unwrap()
            .current_stage
    };
    assert_eq!(stage_of(3).await, Stage::Archived, "archived by v4's move");
    assert_eq!(stage_of(4).await, Stage::Production);
    assert_eq!(stage_of(1).await, Stage::Staging, "other stages untouched");
    assert_eq!(stage_of(2).await, Stage::Staging);

    let latest = |stages: Vec<Stage>| async move {
        numbers(&store.get_latest_versions("m", &stages).await.unwrap())
    };
    assert_eq!(latest(vec![]).await, vec![2, 3, 4]);
    assert_eq!(latest(vec![Stage::Production]).await, vec![4]);
    assert_eq!(
        latest(vec![Stage::Staging, Stage::Production]).await,
        vec![2, 4]
    );
    assert_eq!(latest(vec![Stage::Archived]).await, vec![3]);
    assert_eq!(latest(vec![Stage::None]).await, Vec::<i64>::new());
    let model = store.get_registered_model("m").await.unwrap();
    let mut by_stage: Vec<(i64, Stage)> = model
        .latest_versions
        .iter()
        .map(|v| (v.version, v.current_stage))
        .collect();
    by_stage.sort_by_key(|(version, _)| *version);
    assert_eq!(
        by_stage,
        vec![
            (2, Stage::Staging),
            (3, Stage::Archived),
            (4, Stage::Production)
        ]
    );

    // Archiving existing versions when moving into Staging archives the other Staging ones.
    store
        .transition_stage("m", 1, Stage::Staging, true, 2_400)
        .await
        .unwrap();
    assert_eq!(stage_of(2).await, Stage::Archived);
    assert_eq!(stage_of(1).await, Stage::Staging);
    assert_eq!(stage_of(4).await, Stage::Production);
    assert_eq!(latest(vec![Stage::Staging]).await, vec![1]);
    assert_eq!(latest(vec![Stage::Archived]).await, vec![3]);

    // Back to None.
    store
        .transition_stage("m", 4, Stage::None, false, 2_500)
        .await
        .unwrap();
    assert_eq!(latest(vec![Stage::None]).await, vec![4]);
    assert_eq!(latest(vec![Stage::Production]).await, Vec::<i64>::new());

    // A new version starts in None and becomes the latest None.
    assert_eq!(create_version(store, "m", None, 2_600).await, 5);
    assert_eq!(latest(vec![Stage::None]).await, vec![5]);

    assert_err!(
        store
            .transition_stage("m", 99, Stage::Staging, false, 3_000)
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store
            .transition_stage("ghost", 1, Stage::Staging, false, 3_000)
            .await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_latest_versions("ghost", &[]).await,
        Error::NotFound(_)
    );
}

/// prod-alpha (created 10, team=a) v1 run R1, v2 run R2, v3 run R1;
/// prod-beta (20, team=b) v1 run R2; dev-gamma (30, team=a) v1 without a run.
async fn seed_registry(store: &Store) {
    for (name, now, team) in [
        ("prod-alpha", 10, "a"),
        ("prod-beta", 20, "b"),
        ("dev-gamma", 30, "a"),
    ] {
        store
            .create_registered_model(name, None, &[tag("team", team)], now)
            .await
            .unwrap();
    }
    let mut now = 100;
    for (name, run) in [
        ("prod-alpha", Some("R1")),
        ("prod-alpha", Some("R2")),
        ("prod-alpha", Some("R1")),
        ("prod-beta", Some("R2")),
        ("dev-gamma", None),
    ] {
        now += 10;
        create_version(store, name, run, now).await;
    }
    store
        .set_model_version_tag("prod-alpha", 2, &tag("validated", "yes"))
        .await
        .unwrap();
    store
        .set_model_version_tag("prod-beta", 1, &tag("validated", "no"))
        .await
        .unwrap();
}

async fn case_search_registered_models(store: &Store) {
    seed_registry(store).await;
    let names = |filter: &'static str, order_by: &'static [&'static str]| async move {
        let page = store
            .search_registered_models(&query(SearchEntity::RegisteredModels, filter, order_by))
            .await
            .unwrap_or_else(|e| panic!("search_registered_models {filter:?}: {e:?}"));
        assert!(page.next_page_token.is_none());
        page.items.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names("", &[]).await,
        strings(&["dev-gamma", "prod-alpha", "prod-beta"]),
        "by name by default"
    );
    assert_eq!(
        names("name LIKE 'prod-%'", &[]).await,
        strings(&["prod-alpha", "prod-beta"])
    );
    assert_eq!(names("name LIKE 'PROD-%'", &[]).await, Vec::<String>::new());
    assert_eq!(
        names("name ILIKE 'PROD-%'", &[]).await,
        strings(&["prod-alpha", "prod-beta"])
    );
    assert_eq!(
        names("name = 'prod-beta'", &[]).await,
        strings(&["prod-beta"])
    );
    assert_eq!(
        names("name != 'prod-beta'", &[]).await,
        strings(&["dev-gamma", "prod-alpha"])
    );
    assert_eq!(
        names("tags.team = 'a'", &[]).await,
        strings(&["dev-gamma", "prod-alpha"])
    );
    assert_eq!(
        names("tags.team = 'a' AND name LIKE 'prod%'", &[]).await,
        strings(&["prod-alpha"])
    );
    assert_eq!(names("tags.team = 'c'", &[]).await, Vec::<String>::new());
    assert_eq!(
        names("tags.team != 'a'", &[]).await,
        strings(&["prod-beta"])
    );
    assert_eq!(
        names("tags.`mlflow.prompt.is_prompt` != 'true'", &[]).await,
        strings(&["dev-gamma", "prod-alpha", "prod-beta"]),
        "models without the tag match !="
    );
    assert_eq!(
        names("", &["name DESC"]).await,
        strings(&["prod-beta", "prod-alpha", "dev-gamma"])
    );
    assert_eq!(
        names("", &["creation_timestamp ASC"]).await,
        strings(&["prod-alpha", "prod-beta", "dev-gamma"])
    );
    assert_eq!(
        names("", &["timestamp DESC"]).await,
        strings(&["dev-gamma", "prod-beta", "prod-alpha"])
    );

    // Results carry tags and latest versions.
    let page = store
        .search_registered_models(&query(
            SearchEntity::RegisteredModels,
            "name = 'prod-alpha'",
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(page.items[0].tags, vec![tag("team", "a")]);
    assert_eq!(numbers(&page.items[0].latest_versions), vec![3]);

    // Paging.
    let first = store
        .search_registered_models(&SearchQuery {
            max_results: 2,
            ..query(SearchEntity::RegisteredModels, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let offset = next_offset(&first).expect("a second page");
    assert_eq!(offset, 2);
    let second = store
        .search_registered_models(&SearchQuery {
            max_results: 2,
            offset,
            ..query(SearchEntity::RegisteredModels, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        vec!["prod-beta"]
    );
    assert!(second.next_page_token.is_none());
}

async fn case_search_model_versions(store: &Store) {
    seed_registry(store).await;
    let versions = |filter: &'static str, order_by: &'static [&'static str]| async move {
        let page = store
            .search_model_versions(&query(SearchEntity::ModelVersions, filter, order_by))
            .await
            .unwrap_or_else(|e| panic!("search_model_versions {filter:?}: {e:?}"));
        assert!(page.next_page_token.is_none());
        page.items
            .into_iter()
            .map(|v| format!("{}/{}", v.name, v.version))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        versions("", &[]).await,
        strings(&[
            "dev-gamma/1",
            "prod-alpha/3",
            "prod-alpha/2",
            "prod-alpha/1",
            "prod-beta/1"
        ]),
        "by name, then newest version first"
    );
    assert_eq!(
        versions("name = 'prod-alpha'", &[]).await,
        strings(&["prod-alpha/3", "prod-alpha/2", "prod-alpha/1"])
    );
    assert_eq!(
        versions("name LIKE 'prod-%' AND version_number = 1", &[]).await,
        strings(&["prod-alpha/1", "prod-beta/1"])
    );
    assert_eq!(
        versions("name ILIKE 'DEV%'", &[]).await,
        strings(&["dev-gamma/1"])
    );
    assert_eq!(
        versions("name IN ('prod-beta', 'dev-gamma')", &[]).await,
        strings(&["dev-gamma/1", "prod-beta/1"])
    );
    assert_eq!(
        versions("run_id IN ('R1')", &[]).await,
        strings(&["prod-alpha/3", "prod-alpha/1"])
    );
    assert_eq!(
        versions("run_id = 'R2'", &[]).await,
        strings(&["prod-alpha/2", "prod-beta/1"])
    );
    assert_eq!(
        versions("run_id IN ('R1', 'R2') AND name = 'prod-alpha'", &[]).await,
        strings(&["prod-alpha/3", "prod-alpha/2", "prod-alpha/1"])
    );
    assert_eq!(
        versions("version_number > 1", &[]).await,
        strings(&["prod-alpha/3", "prod-alpha/2"])
    );
    assert_eq!(
        versions("version_number >= 2 AND version_number < 3", &[]).await,
        strings(&["prod-alpha/2"])
    );
    assert_eq!(
        versions("version_number != 1", &[]).await,
        strings(&["prod-alpha/3", "prod-alpha/2"])
    );
    assert_eq!(
        versions("version_number <= 1 AND name LIKE 'prod%'", &[]).await,
        strings(&["prod-alpha/1", "prod-beta/1"])
    );
    assert_eq!(
        versions("tags.validated = 'yes'", &[]).await,
        strings(&["prod-alpha/2"])
    );
    assert_eq!(
        versions("tags.validated LIKE '%'", &[]).await,
        strings(&["prod-alpha/2", "prod-beta/1"])
    );
    // On the registry, != also matches versions without the tag (the MLflow client filters
    // prompts out with `tags.mlflow.prompt.is_prompt != 'true'`).
    assert_eq!(
        versions("tags.validated != 'yes'", &[]).await,
        strings(&["dev-gamma/1", "prod-alpha/3", "prod-alpha/1", "prod-beta/1"])
    );
    assert_eq!(
        versions("source_path = 'models:/prod-beta/source'", &[]).await,
        strings(&["prod-beta/1"])
    );
    assert_eq!(
        versions("name = 'prod-alpha'", &["version_number ASC"]).await,
        strings(&["prod-alpha/1", "prod-alpha/2", "prod-alpha/3"])
    );
    assert_eq!(
        versions("", &["creation_timestamp DESC"]).await,
        strings(&[
            "dev-gamma/1",
            "prod-beta/1",
            "prod-alpha/3",
            "prod-alpha/2",
            "prod-alpha/1"
        ])
    );
    assert_eq!(
        versions("", &["name DESC", "version_number ASC"]).await,
        strings(&[
            "prod-beta/1",
            "prod-alpha/1",
            "prod-alpha/2",
            "prod-alpha/3",
            "dev-gamma/1"
        ])
    );

    // Results carry their tags.
    let page = store
        .search_model_versions(&query(
            SearchEntity::ModelVersions,
            "tags.validated = 'yes'",
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(page.items[0].tags, vec![tag("validated", "yes")]);
    assert_eq!(page.items[0].run_id.as_deref(), Some("R2"));

    // Paging.
    let first = store
        .search_model_versions(&SearchQuery {
            max_results: 3,
            ..query(SearchEntity::ModelVersions, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(next_offset(&first), Some(3));
    let second = store
        .search_model_versions(&SearchQuery {
            max_results: 3,
            offset: 3,
            ..query(SearchEntity::ModelVersions, "", &[])
        })
        .await
        .unwrap();
    assert_eq!(second.items.len(), 2);
    assert!(second.next_page_token.is_none());
}

/// MLflow's search_model_versions returns each version with its aliases, as get does.
async fn case_search_model_versions_carry_aliases(store: &Store) {
    seed_registry(store).await;
    store.set_alias("prod-alpha", "champion", 2).await.unwrap();
    store.set_alias("prod-alpha", "backup", 2).await.unwrap();
    let page = store
        .search_model_versions(&query(
            SearchEntity::ModelVersions,
            "name = 'prod-alpha'",
            &[],
        ))
        .await
        .unwrap();
    let aliases: Vec<(i64, Vec<String>)> = page
        .items
        .iter()
        .map(|v| (v.version, v.aliases.clone()))
        .collect();
    assert_eq!(
        aliases,
        vec![
            (3, vec![]),
            (2, strings(&["backup", "champion"])),
            (1, vec![]),
        ]
    );
    assert_eq!(
        store.get_model_version("prod-alpha", 2).await.unwrap(),
        page.items[1]
    );
}

/// An import keeps MLflow's version numbers, gaps included; the counter moves past them, and a
/// number already given (or passed) is refused.
async fn case_explicit_version_numbers_keep_gaps_and_are_never_reused(store: &Store) {
    store
        .create_registered_model("imported", None, &[], 1_000)
        .await
        .unwrap();
    let numbered = |version: Option<i64>| NewModelVersion {
        version,
        ..new_version("imported", None)
    };
    let one = store
        .create_model_version(numbered(Some(1)), 1_100)
        .await
        .unwrap();
    assert_eq!(one.version, 1);
    // Version 2 was deleted at the source: 3 comes next, and the counter follows.
    let three = store
        .create_model_version(numbered(Some(3)), 1_200)
        .await
        .unwrap();
    assert_eq!(three.version, 3);
    let next = store
        .create_model_version(numbered(None), 1_300)
        .await
        .unwrap();
    assert_eq!(next.version, 4);
    for taken in [1, 2, 4] {
        assert_err!(
            store
                .create_model_version(numbered(Some(taken)), 1_400)
                .await,
            Error::AlreadyExists(_)
        );
    }
    for kept in [1, 3, 4] {
        assert_eq!(
            store
                .get_model_version("imported", kept)
                .await
                .unwrap()
                .version,
            kept
        );
    }
    assert_err!(
        store.get_model_version("imported", 2).await,
        Error::NotFound(_)
    );
}
