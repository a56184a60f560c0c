//! LoggedModel use-cases (MLflow 3).

use slipway_core::logged_model::{
    LoggedModel, LoggedModelStatus, NewLoggedModel, generate_logged_model_id,
};
use slipway_core::paging::Page;
use slipway_core::search::SearchEntity;
use slipway_core::tracking::{ExperimentId, Tag, ViewType};
use slipway_core::{Result, validate};

use crate::tracking::build_query;
use crate::{App, keys, max_results, now_ms};
use serde_json::json;

pub const SEARCH_DEFAULT: usize = 100;
pub const SEARCH_MAX: usize = 10_000;

fn check_pairs(pairs: &[Tag], field: &str) -> Result<()> {
    for pair in pairs {
        validate::entity_key(field, &pair.key)?;
    }
    Ok(())
}

impl App {
    pub async fn create_logged_model(
        &self,
        experiment_id: ExperimentId,
        name: Option<String>,
        model_type: Option<String>,
        source_run_id: Option<String>,
        params: Vec<Tag>,
        tags: Vec<Tag>,
    ) -> Result<LoggedModel> {
        check_pairs(&params, "params[].key")?;
        check_pairs(&tags, "tags[].key")?;
        let name = name
            .filter(|name| !name.is_empty())
            .unwrap_or_else(crate::names::random_run_name);
        let model_id = generate_logged_model_id();
        let summary = json!({
            "experiment_id": experiment_id.to_string(),
            "name": name,
            "source_run_id": source_run_id,
            "params": keys(&params),
            "tags": keys(&tags),
        });
        self.audited(
            "logged_models.create",
            format!("logged_model:{model_id}"),
            summary,
        )
        .create_logged_model(
            NewLoggedModel {
                model_id,
                experiment_id,
                name,
                model_type,
                source_run_id,
                params,
                tags,
            },
            &self.settings.default_artifact_root,
            now_ms(),
        )
        .await
    }

    /// A logged model another tracking server made, under its id and creation time, so that
    /// `models:/m-...` URIs written against it still resolve (`slipway import mlflow`).
    /// Audited as `logged_models.import`.
    pub async fn import_logged_model(
        &self,
        model: NewLoggedModel,
        created_ms: i64,
    ) -> Result<LoggedModel> {
        check_pairs(&model.params, "params[].key")?;
        check_pairs(&model.tags, "tags[].key")?;
        let model_id = slipway_core::logged_model::parse_logged_model_id(&model.model_id)?;
        let summary = json!({
            "experiment_id": model.experiment_id.to_string(),
            "name": model.name,
            "source_run_id": model.source_run_id,
        });
        self.audited(
            "logged_models.import",
            format!("logged_model:{model_id}"),
            summary,
        )
        .create_logged_model(
            model,
            &self.settings.default_artifact_root,
            if created_ms > 0 { created_ms } else { now_ms() },
        )
        .await
    }

    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        self.store.get_logged_model(model_id).await
    }

    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        self.audited(
            "logged_models.finalize",
            format!("logged_model:{model_id}"),
            json!({ "status": format!("{status:?}") }),
        )
        .finalize_logged_model(model_id, status, now_ms())
        .await
    }

    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        self.audited(
            "logged_models.delete",
            format!("logged_model:{model_id}"),
            json!({}),
        )
        .delete_logged_model(model_id, now_ms())
        .await
    }

    pub async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: Vec<Tag>,
    ) -> Result<LoggedModel> {
        check_pairs(&tags, "tags[].key")?;
        self.audited(
            "logged_models.set_tags",
            format!("logged_model:{model_id}"),
            json!({ "tags": keys(&tags) }),
        )
        .set_logged_model_tags(model_id, &tags, now_ms())
        .await
    }

    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        self.audited(
            "logged_models.delete_tag",
            format!("logged_model:{model_id}"),
            json!({ "key": key }),
        )
        .delete_logged_model_tag(model_id, key)
        .await
    }

    pub async fn log_logged_model_params(&self, model_id: &str, params: Vec<Tag>) -> Result<()> {
        check_pairs(&params, "params[].key")?;
        self.audited(
            "logged_models.log_params",
            format!("logged_model:{model_id}"),
            json!({ "params": keys(&params) }),
        )
        .log_logged_model_params(model_id, &params)
        .await
    }

    pub async fn search_logged_models(
        &self,
        experiment_ids: Vec<ExperimentId>,
        filter: Option<&str>,
        order_by: &[String],
        requested_max: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<LoggedModel>> {
        crate::tracking::check_experiment_ids(experiment_ids.len())?;
        let max = max_results(requested_max, SEARCH_DEFAULT, SEARCH_MAX)?;
        let query = build_query(
            SearchEntity::LoggedModels,
            filter,
            order_by,
            ViewType::ActiveOnly,
            max,
            page_token,
        )?;
        // An empty list means every experiment to the store; a caller whose list was all
        // hidden experiments gets nothing, not everything.
        let visible: Vec<ExperimentId> = experiment_ids
            .iter()
            .copied()
            .filter(|id| {
                !self.hides(
                    slipway_core::auth::ResourceKind::Experiment,
                    &id.to_string(),
                )
            })
            .collect();
        if visible.is_empty() && !experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut page = self.store.search_logged_models(&visible, &query).await?;
        page.items.retain(|model| {
            !self.hides(
                slipway_core::auth::ResourceKind::Experiment,
                &model.experiment_id.to_string(),
            )
        });
        Ok(page)
    }
}
