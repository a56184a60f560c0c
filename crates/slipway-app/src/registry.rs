//! Registry use-cases: registered models, versions, tags, aliases, stages.

use slipway_core::auth::ResourceKind;
use slipway_core::paging::Page;
use slipway_core::promotion::PromotionTarget;
use slipway_core::registry::{
    CONTENT_DIGEST_TAG, ModelVersion, NewModelVersion, RegisteredModel, Stage,
};
use slipway_core::search::SearchEntity;
use slipway_core::tracking::{RunId, Tag, ViewType};
use slipway_core::validate::{self, MAX_REGISTERED_MODEL_NAME_LENGTH};
use slipway_core::{Error, Result};

use crate::tracking::build_query;
use serde_json::json;

use crate::{App, keys, max_results, now_ms};

fn invalid_source(source: &str) -> Error {
    Error::invalid(format!(
        "Invalid model version source: '{}'. The source must identify the resource that contains it: \
         pass model_id with models:/<model_id> or a path inside that logged model's artifacts, or run_id \
         with runs:/<run_id>/... or a path inside that run's artifacts; local paths are not accepted",
        validate::truncate_for_message(source)
    ))
}

fn is_within(source: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    source == root
        || source
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

pub const SEARCH_MODELS_DEFAULT: usize = 100;
pub const SEARCH_MODELS_MAX: usize = 1000;
pub const SEARCH_VERSIONS_DEFAULT: usize = 10_000;
pub const SEARCH_VERSIONS_MAX: usize = 200_000;

fn model_name(field: &str, name: &str) -> Result<()> {
    validate::name(field, name, MAX_REGISTERED_MODEL_NAME_LENGTH)?;
    if name.contains('/') && name.contains("..") {
        return Err(Error::invalid(format!(
            "Invalid name '{name}' for registered model: it must not contain '..' path segments"
        )));
    }
    Ok(())
}

fn registry_tag(tag: &mut Tag) -> Result<()> {
    validate::entity_key("key", &tag.key)?;
    validate::max_len("value", &tag.value, validate::MAX_REGISTRY_TAG_VALUE_LENGTH)
}

/// Version tags only the server writes: a client that could set the digest tag could make a
/// changed model look registered.
fn client_version_tag(key: &str) -> Result<()> {
    if key == CONTENT_DIGEST_TAG {
        return Err(Error::invalid(format!(
            "tag '{CONTENT_DIGEST_TAG}' is written by slipway when a version is registered and cannot be set or deleted"
        )));
    }
    if key.starts_with(slipway_core::gate::GATE_TAG_PREFIX) {
        return Err(Error::invalid(format!(
            "tag '{key}' is written by slipway's release gates (`slipway gate`, POST /api/slipway/v1/gates) and cannot be set or deleted"
        )));
    }
    Ok(())
}

impl App {
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        mut tags: Vec<Tag>,
    ) -> Result<RegisteredModel> {
        model_name("name", name)?;
        for tag in tags.iter_mut() {
            registry_tag(tag)?;
        }
        if let Some(description) = description {
            validate::max_len("description", description, validate::MAX_DESCRIPTION_LENGTH)?;
        }
        self.audited(
            "registry.create_model",
            format!("registered_model:{name}"),
            json!({ "tags": keys(&tags) }),
        )
        .create_registered_model(name, description, &tags, now_ms())
        .await
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        model_name("name", name)?;
        self.store.get_registered_model(name).await
    }

    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel> {
        model_name("name", name)?;
        model_name("new_name", new_name)?;
        self.audited(
            "registry.rename_model",
            format!("registered_model:{name}"),
            json!({ "before": { "name": name }, "after": { "name": new_name } }),
        )
        .rename_registered_model(name, new_name, now_ms())
        .await
    }

    pub async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<RegisteredModel> {
        model_name("name", name)?;
        if let Some(description) = description {
            validate::max_len("description", description, validate::MAX_DESCRIPTION_LENGTH)?;
        }
        self.audited(
            "registry.update_model",
            format!("registered_model:{name}"),
            json!({ "description_changed": true }),
        )
        .update_registered_model(name, description, now_ms())
        .await
    }

    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        model_name("name", name)?;
        // A model whose protected aliases or stages are held goes only after they are released
        // through promotions (or its policy is deleted by an admin).
        let model = self.store.get_registered_model(name).await?;
        for alias in &model.aliases {
            self.guard(name, None, &PromotionTarget::Alias(alias.alias.clone()))
                .await?;
        }
        for version in &model.latest_versions {
            self.guard(name, None, &PromotionTarget::Stage(version.current_stage))
                .await?;
        }
        self.audited(
            "registry.delete_model",
            format!("registered_model:{name}"),
            json!({}),
        )
        .delete_registered_model(name)
        .await
    }

    pub async fn search_registered_models(
        &self,
        filter: Option<&str>,
        order_by: &[String],
        requested_max: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<RegisteredModel>> {
        let max = max_results(requested_max, SEARCH_MODELS_DEFAULT, SEARCH_MODELS_MAX)?;
        let query = build_query(
            SearchEntity::RegisteredModels,
            filter,
            order_by,
            ViewType::All,
            max,
            page_token,
        )?;
        let mut page = self.store.search_registered_models(&query).await?;
        page.items
            .retain(|model| !self.hides(ResourceKind::RegisteredModel, &model.name));
        Ok(page)
    }

    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> Result<Vec<ModelVersion>> {
        model_name("name", name)?;
        let stages = stages
            .iter()
            .map(|stage| Stage::parse(stage))
            .collect::<Result<Vec<_>>>()?;
        self.store.get_latest_versions(name, &stages).await
    }

    pub async fn set_registered_model_tag(&self, name: &str, mut tag: Tag) -> Result<()> {
        model_name("name", name)?;
        registry_tag(&mut tag)?;
        self.audited(
            "registry.set_model_tag",
            format!("registered_model:{name}"),
            json!({ "key": tag.key }),
        )
        .set_registered_model_tag(name, &tag)
        .await
    }

    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()> {
        model_name("name", name)?;
        self.audited(
            "registry.delete_model_tag",
            format!("registered_model:{name}"),
            json!({ "key": key }),
        )
        .delete_registered_model_tag(name, key)
        .await
    }

    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        model_name("name", name)?;
        validate::alias(alias)?;
        let version = validate::version_number(version)?;
        self.guard(
            name,
            Some(version),
            &PromotionTarget::Alias(alias.to_owned()),
        )
        .await?;
        let before = self.alias_target(name, alias).await?;
        self.audited(
            "registry.set_alias",
            format!("registered_model:{name}"),
            json!({ "alias": alias, "before": { "version": before }, "after": { "version": version } }),
        )
        .set_alias(name, alias, version)
        .await
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        model_name("name", name)?;
        validate::name("alias", alias, 255)?;
        self.guard(name, None, &PromotionTarget::Alias(alias.to_owned()))
            .await?;
        let before = self.alias_target(name, alias).await?;
        self.audited(
            "registry.delete_alias",
            format!("registered_model:{name}"),
            json!({ "alias": alias, "before": { "version": before }, "after": { "version": null } }),
        )
        .delete_alias(name, alias)
        .await
    }

    pub async fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        model_name("name", name)?;
        validate::name("alias", alias, 255)?;
        self.store.get_version_by_alias(name, alias).await
    }

    pub async fn create_model_version(&self, mut new: NewModelVersion) -> Result<ModelVersion> {
        model_name("name", &new.name)?;
        if new.source.is_empty() {
            return Err(validate::missing("source"));
        }
        for tag in new.tags.iter_mut() {
            registry_tag(tag)?;
            client_version_tag(&tag.key)?;
        }
        self.check_version_source(&mut new).await?;
        self.require_source_readable(
            &format!("source '{}'", validate::truncate_for_message(&new.source)),
            &new.source,
            new.run_id.as_deref(),
            new.model_id.as_deref(),
        )
        .await?;
        // A missing model is the error MLflow gives first (hashing its files would be wasted).
        self.store.get_registered_model(&new.name).await?;
        // The files as they are now are the version: hashed here, immutable from here on.
        new.content = self.content_for_source(&new.source).await?;
        if let Some(content) = &new.content {
            new.tags.push(Tag {
                key: CONTENT_DIGEST_TAG.to_owned(),
                value: content.manifest.digest(),
            });
        }
        // Lineage names who registered a version: with authentication the caller, whatever the
        // client claims; without, the client's user_id if it sent one.
        if self.auth_enabled() || new.user_id.as_deref().is_none_or(str::is_empty) {
            new.user_id = Some(self.caller.actor.clone());
        }
        let summary = json!({
            "source": new.source,
            "run_id": new.run_id,
            "model_id": new.model_id,
            "tags": keys(&new.tags),
            "content_digest": new.content.as_ref().map(|c| c.manifest.digest()),
        });
        self.audited(
            "registry.create_version",
            format!("registered_model:{}", new.name),
            summary,
        )
        .create_model_version(new, now_ms())
        .await
    }

    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        model_name("name", name)?;
        self.store
            .get_model_version(name, validate::version_number(version)?)
            .await
    }

    pub async fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: Option<&str>,
    ) -> Result<ModelVersion> {
        model_name("name", name)?;
        if let Some(description) = description {
            validate::max_len("description", description, validate::MAX_DESCRIPTION_LENGTH)?;
        }
        let version = validate::version_number(version)?;
        self.audited(
            "registry.update_version",
            format!("registered_model:{name}"),
            json!({ "version": version, "description_changed": true }),
        )
        .update_model_version(name, version, description, now_ms())
        .await
    }

    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> Result<ModelVersion> {
        model_name("name", name)?;
        let stage = Stage::parse(stage)?;
        let version = validate::version_number(version)?;
        let before = self
            .store
            .get_model_version(name, version)
            .await?
            .current_stage;
        self.guard(name, Some(version), &PromotionTarget::Stage(stage))
            .await?;
        // Moving a version out of a protected stage is as guarded as moving one in.
        if before != stage {
            self.guard(name, Some(version), &PromotionTarget::Stage(before))
                .await?;
        }
        self.audited(
            "registry.transition_stage",
            format!("registered_model:{name}"),
            json!({
                "version": version,
                "before": { "stage": before.as_str() },
                "after": { "stage": stage.as_str() },
                "archive_existing_versions": archive_existing_versions,
            }),
        )
        .transition_stage(name, version, stage, archive_existing_versions, now_ms())
        .await
    }

    pub async fn delete_model_version(&self, name: &str, version: &str) -> Result<()> {
        model_name("name", name)?;
        let version = validate::version_number(version)?;
        // Deleting a version takes its aliases and stage with it: not around a policy.
        let current = self.store.get_model_version(name, version).await?;
        for alias in &current.aliases {
            self.guard(name, None, &PromotionTarget::Alias(alias.clone()))
                .await?;
        }
        self.guard(name, None, &PromotionTarget::Stage(current.current_stage))
            .await?;
        self.audited(
            "registry.delete_version",
            format!("registered_model:{name}"),
            json!({ "version": version }),
        )
        .delete_model_version(name, version)
        .await
    }

    pub async fn search_model_versions(
        &self,
        filter: Option<&str>,
        order_by: &[String],
        requested_max: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<ModelVersion>> {
        let max = max_results(requested_max, SEARCH_VERSIONS_DEFAULT, SEARCH_VERSIONS_MAX)?;
        let query = build_query(
            SearchEntity::ModelVersions,
            filter,
            order_by,
            ViewType::All,
            max,
            page_token,
        )?;
        let mut page = self.store.search_model_versions(&query).await?;
        page.items
            .retain(|version| !self.hides(ResourceKind::RegisteredModel, &version.name));
        Ok(page)
    }

    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        mut tag: Tag,
    ) -> Result<()> {
        model_name("name", name)?;
        registry_tag(&mut tag)?;
        client_version_tag(&tag.key)?;
        let version = validate::version_number(version)?;
        self.audited(
            "registry.set_version_tag",
            format!("registered_model:{name}"),
            json!({ "version": version, "key": tag.key }),
        )
        .set_model_version_tag(name, version, &tag)
        .await
    }

    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> Result<()> {
        model_name("name", name)?;
        client_version_tag(key)?;
        let version = validate::version_number(version)?;
        self.audited(
            "registry.delete_version_tag",
            format!("registered_model:{name}"),
            json!({ "version": version, "key": key }),
        )
        .delete_model_version_tag(name, version, key)
        .await
    }

    /// A version may only point at files the named resource owns: inside the logged model's
    /// (or run's) artifacts, or `models:/<model_id>` / `runs:/<run_id>/...`. Otherwise anyone
    /// could register a version that serves another team's files, or a server-local path.
    async fn check_version_source(&self, new: &mut NewModelVersion) -> Result<()> {
        let source = new.source.as_str();
        if source.split('/').any(|segment| segment == "..") {
            return Err(invalid_source(source));
        }
        if let Some(model_id) = &new.model_id {
            let model = self.store.get_logged_model(model_id).await?;
            if source != format!("models:/{model_id}") && !is_within(source, &model.artifact_uri) {
                return Err(invalid_source(source));
            }
            if new.run_id.is_none() {
                new.run_id = model.source_run_id.clone();
            }
            return Ok(());
        }
        if let Some(run_id) = &new.run_id {
            let run = self.store.get_run(&RunId::parse(run_id)?).await?;
            let runs_uri = format!("runs:/{run_id}");
            if !is_within(source, &runs_uri) && !is_within(source, &run.info.artifact_uri) {
                return Err(invalid_source(source));
            }
            return Ok(());
        }
        let has_scheme = source.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !has_scheme || source.starts_with("file:") {
            return Err(invalid_source(source));
        }
        Ok(())
    }

    /// The version an alias points at now, `None` when unset.
    async fn alias_target(&self, name: &str, alias: &str) -> Result<Option<i64>> {
        let model = self.store.get_registered_model(name).await?;
        Ok(model
            .aliases
            .iter()
            .find(|entry| entry.alias == alias)
            .map(|entry| entry.version))
    }

    /// Where a version's files are: its source, as MLflow answers `get-download-uri`.
    pub async fn get_model_version_download_uri(
        &self,
        name: &str,
        version: &str,
    ) -> Result<String> {
        let version = self.get_model_version(name, version).await?;
        Ok(version.source)
    }
}
