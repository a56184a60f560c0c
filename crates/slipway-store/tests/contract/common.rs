//! Helpers shared by the contract cases: opening a store, building requests, reading results.

use std::sync::Arc;

use slipway_core::paging::{Page, PageToken};
use slipway_core::ports::{ArtifactLocation, MetadataStore, SearchQuery};
use slipway_core::search::{SearchEntity, parse_filter, parse_order_by};
use slipway_core::tracking::{
    Batch, Dataset, DatasetInput, ExperimentId, Metric, NewRun, Param, Run, RunId, Tag, ViewType,
};
use slipway_store::{BackendUri, SqlStore, StoreOptions};

/// What every case receives: the store behind the port, shareable with spawned tasks.
pub type Store = Arc<dyn MetadataStore>;

pub const ROOT: &str = "mlflow-artifacts:";

pub async fn open(uri: &str) -> SqlStore {
    let parsed = BackendUri::parse(uri).unwrap_or_else(|e| panic!("parsing {uri}: {e:?}"));
    SqlStore::open(&parsed, StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("opening {uri}: {e:?}"))
}

pub fn tag(key: &str, value: &str) -> Tag {
    Tag::new(key, value)
}

pub fn param(key: &str, value: &str) -> Param {
    Param::new(key, value)
}

pub fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric::new(key, value, timestamp, step)
}

pub fn batch(metrics: Vec<Metric>, params: Vec<Param>, tags: Vec<Tag>) -> Batch {
    Batch {
        metrics,
        params,
        tags,
    }
}

pub fn metrics_batch(metrics: Vec<Metric>) -> Batch {
    batch(metrics, Vec::new(), Vec::new())
}

/// An experiment under the default artifact root, created at `now`.
pub async fn create_experiment_at(store: &Store, name: &str, now: i64) -> ExperimentId {
    store
        .create_experiment(name, ArtifactLocation::UnderRoot(ROOT.into()), &[], now)
        .await
        .unwrap_or_else(|e| panic!("creating experiment {name}: {e:?}"))
}

pub async fn create_experiment(store: &Store, name: &str) -> ExperimentId {
    create_experiment_at(store, name, 1_000).await
}

pub fn new_run(experiment_id: ExperimentId, name: &str, start_time: i64) -> NewRun {
    NewRun {
        run_id: RunId::generate(),
        experiment_id,
        user_id: "alice".into(),
        run_name: name.into(),
        start_time,
        tags: Vec::new(),
        artifact_uri_suffix: "artifacts".into(),
    }
}

pub async fn create_run(
    store: &Store,
    experiment_id: ExperimentId,
    name: &str,
    start_time: i64,
) -> RunId {
    store
        .create_run(new_run(experiment_id, name, start_time))
        .await
        .unwrap_or_else(|e| panic!("creating run {name}: {e:?}"))
        .info
        .run_id
}

pub async fn log(store: &Store, run_id: &RunId, batch: Batch) {
    store
        .log_batch(run_id, batch)
        .await
        .unwrap_or_else(|e| panic!("log_batch on {run_id}: {e:?}"));
}

pub fn dataset(name: &str, digest: &str) -> Dataset {
    Dataset {
        name: name.into(),
        digest: digest.into(),
        source_type: "local".into(),
        source: format!("/data/{name}"),
        schema: None,
        profile: None,
    }
}

pub fn dataset_input(name: &str, digest: &str, context: Option<&str>) -> DatasetInput {
    DatasetInput {
        tags: context
            .map(|context| vec![tag("mlflow.data.context", context)])
            .unwrap_or_default(),
        dataset: dataset(name, digest),
    }
}

/// A query for `entity` with a filter and order_by clauses (in MLflow's text form), the active
/// view and room for 1000 results.
pub fn query(entity: SearchEntity, filter: &str, order_by: &[&str]) -> SearchQuery {
    SearchQuery {
        filter: parse_filter(entity, filter)
            .unwrap_or_else(|e| panic!("parsing filter {filter:?}: {e:?}")),
        order_by: order_by
            .iter()
            .map(|clause| {
                parse_order_by(entity, clause)
                    .unwrap_or_else(|e| panic!("parsing order_by {clause:?}: {e:?}"))
            })
            .collect(),
        view_type: ViewType::ActiveOnly,
        max_results: 1000,
        offset: 0,
    }
}

/// Where the next page starts, read from a page token as a client would send it back.
pub fn next_offset<T>(page: &Page<T>) -> Option<u64> {
    page.next_page_token.as_deref().map(|token| {
        PageToken::decode(Some(token))
            .unwrap_or_else(|e| panic!("page token {token:?} does not decode: {e:?}"))
            .offset
    })
}

pub fn run_names(page: &Page<Run>) -> Vec<String> {
    page.items
        .iter()
        .map(|run| run.info.run_name.clone())
        .collect()
}

/// Search runs of `experiments` with a filter and order_by; the names of the runs, in order.
pub async fn search_run_names(
    store: &Store,
    experiments: &[ExperimentId],
    filter: &str,
    order_by: &[&str],
) -> Vec<String> {
    let page = store
        .search_runs(experiments, &query(SearchEntity::Runs, filter, order_by))
        .await
        .unwrap_or_else(|e| panic!("search_runs {filter:?} {order_by:?}: {e:?}"));
    assert!(
        page.next_page_token.is_none(),
        "{filter:?}: unexpected next page"
    );
    run_names(&page)
}

/// The value of `key` in a list of key/value pairs.
pub fn value_of<'a>(pairs: &'a [Tag], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|pair| pair.key == key)
        .map(|pair| pair.value.as_str())
}

/// The latest value of metric `key` in a run, as get_run returns it.
pub fn latest<'a>(run: &'a Run, key: &str) -> Option<&'a Metric> {
    run.data.metrics.iter().find(|metric| metric.key == key)
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// A metric point comparable with `==` even for NaN: (timestamp, step, value bits).
pub fn point(metric: &Metric) -> (i64, i64, u64) {
    let bits = if metric.value.is_nan() {
        f64::NAN.to_bits()
    } else {
        metric.value.to_bits()
    };
    (metric.timestamp, metric.step, bits)
}

/// A new version of registered model `name` (made first if missing); its number.
pub async fn version_of(store: &Store, name: &str) -> i64 {
    if store.get_registered_model(name).await.is_err() {
        store
            .create_registered_model(name, None, &[], 1_000)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e:?}"));
    }
    store
        .create_model_version(
            slipway_core::registry::NewModelVersion::new(name, format!("models:/{name}/source")),
            1_000,
        )
        .await
        .unwrap_or_else(|e| panic!("creating a version of {name}: {e:?}"))
        .version
}
