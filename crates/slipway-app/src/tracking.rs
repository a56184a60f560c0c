//! Tracking use-cases: experiments, runs, logging, history and search.

use slipway_core::auth::ResourceKind;
use slipway_core::paging::{Page, PageToken};
use slipway_core::ports::{ArtifactLocation, HistoryCursor, HistoryPage, SearchQuery};
use slipway_core::search::{
    MAX_EXPERIMENT_IDS, MAX_ORDER_BY_KEYS, SearchEntity, parse_filter, parse_order_by,
};
use slipway_core::tracking::{
    Batch, DatasetInput, Experiment, ExperimentId, Metric, ModelOutput, NewRun, Run, RunId,
    RunInfo, RunUpdate, Tag, ViewType,
};
use slipway_core::validate::{self, MAX_EXPERIMENT_NAME_LENGTH};
use slipway_core::{Error, Result};

use crate::{App, distinct_keys, keys, max_results, now_ms};
use serde_json::json;

pub const SEARCH_RUNS_DEFAULT: usize = 1000;
pub const SEARCH_RUNS_MAX: usize = 50_000;
pub const SEARCH_EXPERIMENTS_DEFAULT: usize = 1000;
pub const SEARCH_EXPERIMENTS_MAX: usize = 50_000;
/// The page size of a history read without `max_results`: MLflow answers the whole history
/// then, which the API streams from pages of this size (mlflow/mlflow#23702).
pub const HISTORY_DEFAULT: usize = 25_000;
pub const HISTORY_MAX: usize = 100_000;

/// The parsed, defaulted form of a search request.
pub(crate) fn build_query(
    entity: SearchEntity,
    filter: Option<&str>,
    order_by: &[String],
    view_type: ViewType,
    max_results: usize,
    page_token: Option<&str>,
) -> Result<SearchQuery> {
    let filter = match filter {
        Some(text) => parse_filter(entity, text)?,
        None => None,
    };
    if order_by.len() > MAX_ORDER_BY_KEYS {
        return Err(Error::invalid(format!(
            "Invalid value for parameter 'order_by': {} clauses, more than the limit of \
             {MAX_ORDER_BY_KEYS}",
            order_by.len()
        )));
    }
    let order_by = order_by
        .iter()
        .filter(|clause| !clause.trim().is_empty())
        .map(|clause| parse_order_by(entity, clause))
        .collect::<Result<Vec<_>>>()?;
    Ok(SearchQuery {
        filter,
        order_by,
        view_type,
        max_results,
        offset: PageToken::decode(page_token)?.offset,
    })
}

/// Refuses more experiment ids than one search takes.
pub(crate) fn check_experiment_ids(count: usize) -> Result<()> {
    if count > MAX_EXPERIMENT_IDS {
        return Err(Error::invalid(format!(
            "Invalid value for parameter 'experiment_ids': {count} ids, more than the limit of \
             {MAX_EXPERIMENT_IDS}; split the search"
        )));
    }
    Ok(())
}

fn validate_tags(tags: &mut [Tag]) -> Result<()> {
    for tag in tags.iter_mut() {
        validate::entity_key("key", &tag.key)?;
        tag.value = validate::truncate_value(
            std::mem::take(&mut tag.value),
            validate::MAX_TAG_VALUE_LENGTH,
        );
    }
    Ok(())
}

pub struct SearchRuns<'a> {
    pub experiment_ids: Vec<ExperimentId>,
    pub filter: Option<&'a str>,
    pub view_type: ViewType,
    pub max_results: Option<i64>,
    pub order_by: &'a [String],
    pub page_token: Option<&'a str>,
}

impl App {
    #[tracing::instrument(skip(self, tags), fields(experiment.name = %name))]
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<String>,
        mut tags: Vec<Tag>,
    ) -> Result<ExperimentId> {
        validate::name("name", name, MAX_EXPERIMENT_NAME_LENGTH)?;
        validate_tags(&mut tags)?;
        let location = match artifact_location.filter(|location| !location.trim().is_empty()) {
            Some(location) => ArtifactLocation::Explicit(location),
            None => ArtifactLocation::UnderRoot(self.settings.default_artifact_root.clone()),
        };
        self.audited(
            "experiments.create",
            "experiment",
            json!({ "name": name, "tags": keys(&tags) }),
        )
        .create_experiment(name, location, &tags, now_ms())
        .await
    }

    pub async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.store.get_experiment(id).await
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        if name.is_empty() {
            return Err(validate::missing("experiment_name"));
        }
        self.store.get_experiment_by_name(name).await
    }

    pub async fn search_experiments(
        &self,
        filter: Option<&str>,
        order_by: &[String],
        view_type: ViewType,
        requested_max: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<Experiment>> {
        let max = max_results(
            requested_max,
            SEARCH_EXPERIMENTS_DEFAULT,
            SEARCH_EXPERIMENTS_MAX,
        )?;
        let query = build_query(
            SearchEntity::Experiments,
            filter,
            order_by,
            view_type,
            max,
            page_token,
        )?;
        let mut page = self.store.search_experiments(&query).await?;
        page.items.retain(|experiment| {
            !self.hides(
                ResourceKind::Experiment,
                &experiment.experiment_id.to_string(),
            )
        });
        Ok(page)
    }

    pub async fn delete_experiment(&self, id: ExperimentId) -> Result<()> {
        self.audited("experiments.delete", format!("experiment:{id}"), json!({}))
            .delete_experiment(id, now_ms())
            .await
    }

    pub async fn restore_experiment(&self, id: ExperimentId) -> Result<()> {
        self.audited("experiments.restore", format!("experiment:{id}"), json!({}))
            .restore_experiment(id, now_ms())
            .await
    }

    pub async fn rename_experiment(&self, id: ExperimentId, new_name: &str) -> Result<()> {
        validate::name("new_name", new_name, MAX_EXPERIMENT_NAME_LENGTH)?;
        let before = self.store.get_experiment(id).await?.name;
        self.audited(
            "experiments.rename",
            format!("experiment:{id}"),
            json!({ "before": { "name": before }, "after": { "name": new_name } }),
        )
        .rename_experiment(id, new_name, now_ms())
        .await
    }

    pub async fn set_experiment_tag(&self, id: ExperimentId, tag: Tag) -> Result<()> {
        let mut tags = [tag];
        validate_tags(&mut tags)?;
        let [tag] = tags;
        self.audited(
            "experiments.set_tag",
            format!("experiment:{id}"),
            json!({ "key": tag.key }),
        )
        .set_experiment_tag(id, &tag)
        .await
    }

    pub async fn delete_experiment_tag(&self, id: ExperimentId, key: &str) -> Result<()> {
        self.audited(
            "experiments.delete_tag",
            format!("experiment:{id}"),
            json!({ "key": key }),
        )
        .delete_experiment_tag(id, key)
        .await
    }

    /// Creates a run. The name comes from the request, else from an `mlflow.runName` tag, else
    /// is made up, as MLflow does.
    #[tracing::instrument(skip(self, tags))]
    pub async fn create_run(
        &self,
        experiment_id: ExperimentId,
        user_id: Option<String>,
        run_name: Option<String>,
        start_time: Option<i64>,
        mut tags: Vec<Tag>,
    ) -> Result<Run> {
        validate_tags(&mut tags)?;
        let run_name = run_name
            .filter(|name| !name.is_empty())
            .or_else(|| {
                tags.iter()
                    .find(|tag| tag.key == "mlflow.runName" && !tag.value.is_empty())
                    .map(|tag| tag.value.clone())
            })
            .unwrap_or_else(crate::names::random_run_name);
        validate::max_len("run_name", &run_name, validate::MAX_TAG_VALUE_LENGTH)?;
        let run_id = RunId::generate();
        self.audited(
            "runs.create",
            format!("run:{run_id}"),
            json!({ "experiment_id": experiment_id.to_string(), "run_name": run_name }),
        )
        .create_run(NewRun {
            run_id,
            experiment_id,
            user_id: user_id.unwrap_or_default(),
            run_name,
            start_time: start_time.unwrap_or(0),
            tags,
            artifact_uri_suffix: "artifacts".to_owned(),
        })
        .await
    }

    /// A run another tracking server made, under its id, name, user and start time, so that
    /// `runs:/` URIs written against it still resolve (`slipway import mlflow`). Audited as
    /// `runs.import`; the rest of the run goes through the usual use-cases.
    pub async fn import_run(
        &self,
        run_id: RunId,
        experiment_id: ExperimentId,
        user_id: String,
        run_name: String,
        start_time: i64,
        mut tags: Vec<Tag>,
    ) -> Result<Run> {
        validate_tags(&mut tags)?;
        validate::max_len("run_name", &run_name, validate::MAX_TAG_VALUE_LENGTH)?;
        self.audited(
            "runs.import",
            format!("run:{run_id}"),
            json!({ "experiment_id": experiment_id.to_string(), "run_name": run_name }),
        )
        .create_run(NewRun {
            run_id,
            experiment_id,
            user_id,
            run_name,
            start_time,
            tags,
            artifact_uri_suffix: "artifacts".to_owned(),
        })
        .await
    }

    pub async fn get_run(&self, run_id: &RunId) -> Result<Run> {
        self.store.get_run(run_id).await
    }

    pub async fn update_run(&self, run_id: &RunId, update: RunUpdate) -> Result<RunInfo> {
        if let Some(name) = &update.run_name {
            validate::max_len("run_name", name, validate::MAX_TAG_VALUE_LENGTH)?;
        }
        self.audited(
            "runs.update",
            format!("run:{run_id}"),
            json!({
                "status": update.status.map(|status| status.as_str()),
                "end_time": update.end_time,
                "run_name": update.run_name,
            }),
        )
        .update_run(run_id, update)
        .await
    }

    pub async fn delete_run(&self, run_id: &RunId) -> Result<()> {
        self.audited("runs.delete", format!("run:{run_id}"), json!({}))
            .delete_run(run_id, now_ms())
            .await
    }

    pub async fn restore_run(&self, run_id: &RunId) -> Result<()> {
        self.audited("runs.restore", format!("run:{run_id}"), json!({}))
            .restore_run(run_id)
            .await
    }

    /// Validates a batch against MLflow's limits and rules, then writes it all or nothing.
    #[tracing::instrument(skip(self, batch), fields(metrics = batch.metrics.len(), params = batch.params.len(), tags = batch.tags.len()))]
    pub async fn log_batch(&self, run_id: &RunId, mut batch: Batch) -> Result<()> {
        if batch.metrics.len() > validate::MAX_METRICS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} metrics. Got {} metrics. Please split up metrics across multiple requests and try again.",
                validate::MAX_METRICS_PER_BATCH,
                batch.metrics.len()
            )));
        }
        if batch.params.len() > validate::MAX_PARAMS_TAGS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} params. Got {} params. Please split up params across multiple requests and try again.",
                validate::MAX_PARAMS_TAGS_PER_BATCH,
                batch.params.len()
            )));
        }
        if batch.tags.len() > validate::MAX_PARAMS_TAGS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} tags. Got {} tags. Please split up tags across multiple requests and try again.",
                validate::MAX_PARAMS_TAGS_PER_BATCH,
                batch.tags.len()
            )));
        }
        let total = batch.metrics.len() + batch.params.len() + batch.tags.len();
        if total > validate::MAX_ENTITIES_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} metrics, params, and tags in total. Got {total} entities. Please split up the request and try again.",
                validate::MAX_ENTITIES_PER_BATCH
            )));
        }
        for metric in &batch.metrics {
            validate::entity_key("metrics[].key", &metric.key)?;
        }
        for param in batch.params.iter_mut() {
            validate::entity_key("params[].key", &param.key)?;
            param.value = validate::truncate_value(
                std::mem::take(&mut param.value),
                validate::MAX_PARAM_VALUE_LENGTH,
            );
        }
        validate_tags(&mut batch.tags)?;
        if batch.is_empty() {
            // Still tell a missing run apart from an empty request.
            self.store.get_run(run_id).await?;
            return Ok(());
        }
        let summary = json!({
            "metrics": batch.metrics.len(),
            "metric_keys": distinct_keys(batch.metrics.iter().map(|m| m.key.as_str())),
            "params": keys(&batch.params),
            "tags": keys(&batch.tags),
        });
        self.audited("runs.log_batch", format!("run:{run_id}"), summary)
            .log_batch(run_id, batch)
            .await
    }

    pub async fn log_metric(&self, run_id: &RunId, metric: Metric) -> Result<()> {
        self.log_batch(
            run_id,
            Batch {
                metrics: vec![metric],
                ..Batch::default()
            },
        )
        .await
    }

    pub async fn log_param(&self, run_id: &RunId, param: Tag) -> Result<()> {
        self.log_batch(
            run_id,
            Batch {
                params: vec![param],
                ..Batch::default()
            },
        )
        .await
    }

    pub async fn set_run_tag(&self, run_id: &RunId, tag: Tag) -> Result<()> {
        self.log_batch(
            run_id,
            Batch {
                tags: vec![tag],
                ..Batch::default()
            },
        )
        .await
    }

    pub async fn delete_run_tag(&self, run_id: &RunId, key: &str) -> Result<()> {
        self.audited(
            "runs.delete_tag",
            format!("run:{run_id}"),
            json!({ "key": key }),
        )
        .delete_run_tag(run_id, key)
        .await
    }

    /// `Ok(None)` for an unknown run: MLflow answers an empty history there, and clients rely on it.
    pub async fn get_metric_history(
        &self,
        run_id: &RunId,
        key: &str,
        requested_max: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Option<HistoryPage>> {
        let max = max_results(requested_max, HISTORY_DEFAULT, HISTORY_MAX)?;
        let cursor = HistoryCursor::decode(page_token)?;
        // The bulk-interval route names many runs at once, so its access rule cannot scope
        // them; a caller with hidden experiments is checked here, run by run.
        if !self.caller.hidden.is_empty() {
            match self.store.get_run(run_id).await {
                Ok(run)
                    if self.hides(
                        ResourceKind::Experiment,
                        &run.info.experiment_id.to_string(),
                    ) =>
                {
                    return Err(Error::permission_denied(format!(
                        "user '{}' has NO_PERMISSIONS on the experiment of run {run_id}",
                        self.caller.actor
                    )));
                }
                _ => {}
            }
        }
        self.store
            .get_metric_history(run_id, key, cursor, max)
            .await
    }

    pub async fn search_runs(&self, request: SearchRuns<'_>) -> Result<Page<Run>> {
        check_experiment_ids(request.experiment_ids.len())?;
        let max = max_results(request.max_results, SEARCH_RUNS_DEFAULT, SEARCH_RUNS_MAX)?;
        let query = build_query(
            SearchEntity::Runs,
            request.filter,
            request.order_by,
            request.view_type,
            max,
            request.page_token,
        )?;
        let experiment_ids: Vec<ExperimentId> = request
            .experiment_ids
            .into_iter()
            .filter(|id| !self.hides(ResourceKind::Experiment, &id.to_string()))
            .collect();
        self.store.search_runs(&experiment_ids, &query).await
    }

    pub async fn log_inputs(
        &self,
        run_id: &RunId,
        datasets: Vec<DatasetInput>,
        model_ids: Vec<String>,
    ) -> Result<()> {
        for input in &datasets {
            let dataset = &input.dataset;
            validate::name(
                "dataset.name",
                &dataset.name,
                validate::MAX_DATASET_NAME_LENGTH,
            )?;
            validate::name(
                "dataset.digest",
                &dataset.digest,
                validate::MAX_DATASET_DIGEST_LENGTH,
            )?;
            validate::name(
                "dataset.source_type",
                &dataset.source_type,
                validate::MAX_DATASET_NAME_LENGTH,
            )?;
            validate::max_len(
                "dataset.source",
                &dataset.source,
                validate::MAX_DATASET_SOURCE_LENGTH,
            )?;
            if let Some(schema) = &dataset.schema {
                validate::max_len(
                    "dataset.schema",
                    schema,
                    validate::MAX_DATASET_SCHEMA_LENGTH,
                )?;
            }
            if let Some(profile) = &dataset.profile {
                validate::max_len(
                    "dataset.profile",
                    profile,
                    validate::MAX_DATASET_PROFILE_LENGTH,
                )?;
            }
            for tag in &input.tags {
                validate::name("input tag key", &tag.key, validate::MAX_ENTITY_KEY_LENGTH)?;
                validate::max_len(
                    "input tag value",
                    &tag.value,
                    validate::MAX_INPUT_TAG_VALUE_LENGTH,
                )?;
            }
        }
        let summary = json!({
            "datasets": datasets
                .iter()
                .map(|input| json!({ "name": input.dataset.name, "digest": input.dataset.digest }))
                .collect::<Vec<_>>(),
            "models": model_ids,
        });
        self.audited("runs.log_inputs", format!("run:{run_id}"), summary)
            .log_inputs(run_id, datasets, model_ids)
            .await
    }

    pub async fn log_outputs(&self, run_id: &RunId, models: Vec<ModelOutput>) -> Result<()> {
        let summary = json!({
            "models": models.iter().map(|model| model.model_id.as_str()).collect::<Vec<_>>(),
        });
        self.audited("runs.log_outputs", format!("run:{run_id}"), summary)
            .log_outputs(run_id, models)
            .await
    }
}
