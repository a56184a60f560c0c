//! Ports: what the use-cases need from the outside world. Adapters (`slipway-store`,
//! `slipway-artifacts`) implement them; the binary chooses which and hands them down as
//! `Arc<dyn Trait>`.

use std::pin::Pin;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditRecord};
use crate::auth::{Grant, Resource, Role, TokenCredentials, TokenInfo, User, UserCredentials};
use crate::deployment::{Deployment, DeploymentEvent, NewDeploymentEvent, PredictionRecord};
use crate::promotion::{
    AliasChange, Decision, NewPromotionRequest, PromotionPolicy, PromotionRequest, RequestState,
};
use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::logged_model::{LoggedModel, LoggedModelStatus, NewLoggedModel};
use crate::monitoring::{MonitorReference, MonitorWindow};
use crate::paging::Page;
use crate::registry::{ModelVersion, NewModelVersion, RegisteredModel, Stage};
use crate::search::{Expr, OrderBy};
use crate::tracking::{
    Batch, DatasetInput, Experiment, ExperimentId, Metric, ModelOutput, NewRun, Run, RunId,
    RunInfo, RunUpdate, Tag, ViewType,
};

/// Where a new experiment's artifacts go.
#[derive(Debug, Clone)]
pub enum ArtifactLocation {
    /// Given by the client.
    Explicit(String),
    /// `<root>/<experiment_id>`, the id being known only once the row exists.
    UnderRoot(String),
}

/// A parsed search request; limits were enforced by the use-case.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderBy>,
    pub view_type: ViewType,
    pub max_results: usize,
    pub offset: u64,
}

/// A position in a metric history, ordered as MLflow returns it: by timestamp, step, value.
/// Keyset, not offset, so a page costs the same at the end of a long series as at its start.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HistoryCursor {
    /// The last point returned: (timestamp, step, stored value, is_nan).
    pub after: Option<(i64, i64, f64, bool)>,
}

impl HistoryCursor {
    /// Opaque to clients: base64 of `timestamp:step:value-bits:is_nan`, exact for any f64.
    pub fn encode(self) -> String {
        use base64::Engine;
        let text = match self.after {
            None => String::new(),
            Some((timestamp, step, value, is_nan)) => {
                format!(
                    "{timestamp}:{step}:{:x}:{}",
                    value.to_bits(),
                    u8::from(is_nan)
                )
            }
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(raw: Option<&str>) -> Result<Self> {
        use base64::Engine;
        let Some(raw) = raw.filter(|raw| !raw.is_empty()) else {
            return Ok(HistoryCursor::default());
        };
        let bad = || {
            crate::Error::invalid(format!(
                "Invalid page token '{}' for metric history",
                crate::validate::truncate_for_message(raw)
            ))
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split(':');
        let mut next = || parts.next().ok_or_else(bad);
        let timestamp = next()?.parse::<i64>().map_err(|_| bad())?;
        let step = next()?.parse::<i64>().map_err(|_| bad())?;
        let bits = u64::from_str_radix(next()?, 16).map_err(|_| bad())?;
        let is_nan = match next()? {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(HistoryCursor {
            after: Some((timestamp, step, f64::from_bits(bits), is_nan)),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub metrics: Vec<Metric>,
    /// Present when more points exist after the last one returned.
    pub next: Option<HistoryCursor>,
}

/// Metadata of experiments, runs, logged models and the registry. Both backends (SQLite and
/// PostgreSQL) must pass the same contract suite (`slipway-store/tests/contract.rs`).
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Which backend this is, for logs and `/server-info` (`sqlite`, `postgresql`).
    fn backend_name(&self) -> &'static str;

    // --- experiments ---
    async fn create_experiment(
        &self,
        name: &str,
        artifact_location: ArtifactLocation,
        tags: &[Tag],
        now_ms: i64,
    ) -> Result<ExperimentId>;
    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment>;
    async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment>;
    async fn search_experiments(&self, query: &SearchQuery) -> Result<Page<Experiment>>;
    /// Soft delete; the experiment's runs are soft-deleted with it, as in MLflow's SQL store.
    async fn delete_experiment(&self, id: ExperimentId, now_ms: i64) -> Result<()>;
    async fn restore_experiment(&self, id: ExperimentId, now_ms: i64) -> Result<()>;
    async fn rename_experiment(&self, id: ExperimentId, new_name: &str, now_ms: i64) -> Result<()>;
    async fn set_experiment_tag(&self, id: ExperimentId, tag: &Tag) -> Result<()>;
    async fn delete_experiment_tag(&self, id: ExperimentId, key: &str) -> Result<()>;

    // --- runs ---
    async fn create_run(&self, run: NewRun) -> Result<Run>;
    async fn get_run(&self, run_id: &RunId) -> Result<Run>;
    async fn update_run(&self, run_id: &RunId, update: RunUpdate) -> Result<RunInfo>;
    async fn delete_run(&self, run_id: &RunId, now_ms: i64) -> Result<()>;
    async fn restore_run(&self, run_id: &RunId) -> Result<()>;
    /// All-or-nothing: params are immutable, the run must be active, identical metric points are
    /// idempotent (a retried request changes nothing).
    async fn log_batch(&self, run_id: &RunId, batch: Batch) -> Result<()>;
    async fn delete_run_tag(&self, run_id: &RunId, key: &str) -> Result<()>;
    /// `None` when the run does not exist (MLflow answers an empty history, not 404).
    async fn get_metric_history(
        &self,
        run_id: &RunId,
        key: &str,
        cursor: HistoryCursor,
        max_results: usize,
    ) -> Result<Option<HistoryPage>>;
    async fn search_runs(
        &self,
        experiment_ids: &[ExperimentId],
        query: &SearchQuery,
    ) -> Result<Page<Run>>;
    async fn log_inputs(
        &self,
        run_id: &RunId,
        datasets: Vec<DatasetInput>,
        model_ids: Vec<String>,
    ) -> Result<()>;
    async fn log_outputs(&self, run_id: &RunId, models: Vec<ModelOutput>) -> Result<()>;

    // --- logged models ---
    async fn create_logged_model(
        &self,
        model: NewLoggedModel,
        artifact_root: &str,
        now_ms: i64,
    ) -> Result<LoggedModel>;
    async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel>;
    async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
        now_ms: i64,
    ) -> Result<LoggedModel>;
    async fn delete_logged_model(&self, model_id: &str, now_ms: i64) -> Result<()>;
    async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[Tag],
        now_ms: i64,
    ) -> Result<LoggedModel>;
    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()>;
    async fn log_logged_model_params(&self, model_id: &str, params: &[Tag]) -> Result<()>;
    async fn search_logged_models(
        &self,
        experiment_ids: &[ExperimentId],
        query: &SearchQuery,
    ) -> Result<Page<LoggedModel>>;

    // --- registered models ---
    async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
        now_ms: i64,
    ) -> Result<RegisteredModel>;
    async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel>;
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now_ms: i64,
    ) -> Result<RegisteredModel>;
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<RegisteredModel>;
    async fn delete_registered_model(&self, name: &str) -> Result<()>;
    async fn search_registered_models(&self, query: &SearchQuery) -> Result<Page<RegisteredModel>>;
    async fn get_latest_versions(&self, name: &str, stages: &[Stage]) -> Result<Vec<ModelVersion>>;
    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> Result<()>;
    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()>;
    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()>;
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()>;
    async fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion>;

    // --- model versions ---
    async fn create_model_version(
        &self,
        version: NewModelVersion,
        now_ms: i64,
    ) -> Result<ModelVersion>;
    async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion>;
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<ModelVersion>;
    async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing_versions: bool,
        now_ms: i64,
    ) -> Result<ModelVersion>;
    async fn delete_model_version(&self, name: &str, version: i64) -> Result<()>;
    async fn search_model_versions(&self, query: &SearchQuery) -> Result<Page<ModelVersion>>;
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> Result<()>;
    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()>;

    // Identity. Secrets arrive hashed; the store never sees a password or a token secret.
    async fn create_user(&self, user: User, password_hash: Option<String>) -> Result<()>;
    async fn get_user_credentials(&self, name: &str) -> Result<UserCredentials>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Changes the role and/or the password hash.
    async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        password_hash: Option<String>,
        now_ms: i64,
    ) -> Result<User>;
    /// Deletes the user with their tokens and permissions.
    async fn delete_user(&self, name: &str) -> Result<()>;
    async fn create_token(&self, token: TokenInfo, secret_hash: String) -> Result<()>;
    async fn get_token_credentials(&self, id: &str) -> Result<TokenCredentials>;
    async fn list_tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenInfo>>;
    /// Revokes a token; revoking it again changes nothing.
    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<TokenInfo>;
    async fn set_grant(&self, grant: Grant) -> Result<()>;
    async fn delete_grant(&self, user_name: &str, resource: &Resource) -> Result<()>;
    async fn list_grants(&self, user_name: Option<&str>) -> Result<Vec<Grant>>;
    /// A counter that every identity change increases; servers compare it to know when their
    /// cached credentials are stale, also after changes made by another process.
    async fn identity_generation(&self) -> Result<i64>;

    // Audit. Every mutation goes through an audited handle, so its entry is written in the
    // same transaction as the change.
    /// A handle on the same store whose writes each append `event` to the audit log in their
    /// own transaction. Use it for one write.
    fn audited(&self, event: AuditEvent) -> Arc<dyn MetadataStore>;
    /// Appends an entry that goes with no change (a denied request).
    async fn append_audit(&self, event: AuditEvent) -> Result<AuditRecord>;
    /// The chain's end: the last sequence number and its hash.
    async fn audit_head(&self) -> Result<(i64, String)>;
    // Promotions.
    /// Sets (or replaces) a registered model's policy; the model must exist.
    async fn set_policy(&self, policy: PromotionPolicy) -> Result<()>;
    async fn get_policy(&self, model_name: &str) -> Result<Option<PromotionPolicy>>;
    async fn delete_policy(&self, model_name: &str) -> Result<()>;
    async fn create_promotion_request(
        &self,
        request: NewPromotionRequest,
    ) -> Result<PromotionRequest>;
    async fn get_promotion_request(&self, id: i64) -> Result<PromotionRequest>;
    /// Newest first, at most 1000.
    async fn list_promotion_requests(
        &self,
        model_name: Option<&str>,
        state: Option<RequestState>,
    ) -> Result<Vec<PromotionRequest>>;
    /// Records a decision on a pending request. An approval that brings the count to
    /// `required_approvals` moves the alias (or stage) in the same transaction and closes the
    /// request as approved; a rejection closes it as rejected.
    async fn decide_promotion(
        &self,
        id: i64,
        decision: Decision,
        required_approvals: u32,
    ) -> Result<PromotionRequest>;
    /// Every move of the model's aliases (or of one), oldest first.
    async fn alias_history(
        &self,
        model_name: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasChange>>;
    /// Moves `alias` back to the version it pointed at before its latest change.
    async fn rollback_alias(&self, model_name: &str, alias: &str) -> Result<AliasChange>;

    // Several servers on one store.
    /// Takes `name` for `holder` until the database's now + `ttl_ms`, or renews it, when it is
    /// free, lapsed or already `holder`'s; returns the lease as it stands either way.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<crate::cluster::Lease>;
    /// Ends `holder`'s lease at once, so another server takes over without waiting for it to
    /// lapse; a lease held by someone else is left alone.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    async fn get_lease(&self, name: &str) -> Result<Option<crate::cluster::Lease>>;
    /// Queues a measurement for the leader.
    async fn queue_report(
        &self,
        deployment: &str,
        source: &str,
        body: String,
        now_ms: i64,
    ) -> Result<()>;
    /// Whether anything is queued (a read, so an idle leader does not write to look).
    async fn has_queued_reports(&self) -> Result<bool>;
    /// Removes and returns the oldest queued measurements, at most `limit`, oldest first; each is
    /// returned to one caller only.
    async fn take_queued_reports(&self, limit: usize) -> Result<Vec<crate::cluster::QueuedReport>>;
    /// Counters moved by changes to what servers cache, by topic (absent: never moved).
    async fn generations(&self) -> Result<std::collections::BTreeMap<String, i64>>;

    // Serving minutes (what SLOs are measured on).
    /// Adds each minute's counts to what the store holds for it.
    async fn add_serving_minutes(
        &self,
        minutes: Vec<(String, i64, crate::deployment::ServingStats)>,
    ) -> Result<()>;
    /// A deployment's minutes starting in `[from_ms, to_ms)`, oldest first.
    async fn serving_minutes(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, crate::deployment::ServingStats)>>;
    /// Every deployment's minutes starting in `[from_ms, to_ms)`, summed per deployment.
    async fn serving_totals(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<crate::deployment::ServingTotals>>;
    /// Deletes every deployment's minutes before `before_ms`; returns how many went.
    async fn expire_serving_minutes(&self, before_ms: i64) -> Result<u64>;

    // State as code.
    async fn get_applied_state(&self) -> Result<Option<crate::state::StoredAppliedState>>;
    /// Replaces the applied state when the stored revision is still `expected` (0: none).
    async fn put_applied_state(
        &self,
        state: crate::state::AppliedState,
        expected: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<crate::state::StoredAppliedState>;

    // Encryption at rest.
    /// Stores a new data key (wrapped).
    async fn put_data_key(&self, key: crate::keys::DataKey) -> Result<()>;
    /// Every data key, oldest first.
    async fn list_data_keys(&self) -> Result<Vec<crate::keys::DataKey>>;
    /// Replaces the wrapping of every given key (by id) in one transaction: all or none.
    async fn rewrap_data_keys(&self, keys: Vec<crate::keys::DataKey>) -> Result<()>;

    // Retraining.
    async fn get_trigger_config(&self) -> Result<Option<crate::retrain::StoredTriggerConfig>>;
    /// Replaces the triggers when the stored revision is still `expected` (0: none stored).
    async fn put_trigger_config(
        &self,
        config: crate::retrain::TriggerConfig,
        expected: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<crate::retrain::StoredTriggerConfig>;
    /// Fires a trigger: a queued retrain, or a skipped one with the reason (busy model,
    /// cooldown, daily cap), decided in the same transaction. `AlreadyExists` when another
    /// firing for the model won a race.
    async fn start_retrain(
        &self,
        trigger: crate::retrain::Trigger,
        cause: crate::retrain::Cause,
        by: &str,
        now_ms: i64,
    ) -> Result<crate::retrain::Retrain>;
    async fn get_retrain(&self, id: i64) -> Result<crate::retrain::Retrain>;
    /// Gives the oldest queued retrain to `worker` until `lease_until_ms`.
    async fn claim_retrain(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<crate::retrain::Retrain>>;
    /// The claiming worker's report; moves only forward, sets each link once, renews the lease.
    async fn progress_retrain(
        &self,
        id: i64,
        worker: &str,
        update: crate::retrain::RetrainProgress,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<crate::retrain::Retrain>;
    /// Fails retrains whose lease lapsed; returns them.
    async fn expire_retrains(&self, now_ms: i64) -> Result<Vec<crate::retrain::Retrain>>;
    /// Newest first, at most `limit` (capped at 1000).
    async fn list_retrains(
        &self,
        trigger: Option<&str>,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::retrain::Retrain>>;

    // Release gates.
    /// Stores a gate's result and mirrors it in the version's `slipway.gate.*` tags; the
    /// version must exist.
    async fn put_gate(&self, record: crate::gate::NewGateRecord)
    -> Result<crate::gate::GateRecord>;
    async fn get_gate(&self, id: i64) -> Result<crate::gate::GateRecord>;
    /// Newest first, at most `limit` (capped at 1000).
    async fn list_gates(
        &self,
        model_name: &str,
        version: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::gate::GateRecord>>;

    // Deployments.
    /// Stores a new deployment at revision 1 with its first event; the name must be free.
    async fn create_deployment(
        &self,
        deployment: Deployment,
        event: NewDeploymentEvent,
    ) -> Result<Deployment>;
    async fn get_deployment(&self, name: &str) -> Result<Deployment>;
    /// Every deployment, by name.
    async fn list_deployments(&self) -> Result<Vec<Deployment>>;
    /// Replaces a deployment if its stored revision is still `deployment.revision` (else an
    /// invalid-parameter error saying it changed meanwhile), bumps the revision and appends
    /// `events`, in one transaction.
    async fn update_deployment(
        &self,
        deployment: Deployment,
        events: Vec<NewDeploymentEvent>,
    ) -> Result<Deployment>;
    /// Appends events to a deployment's history without changing it (no new revision).
    async fn append_deployment_events(
        &self,
        name: &str,
        events: Vec<NewDeploymentEvent>,
    ) -> Result<()>;
    /// Deletes a deployment; its events stay, ending with `event`.
    async fn delete_deployment(&self, name: &str, event: NewDeploymentEvent) -> Result<()>;
    /// A deployment's events after `after_seq`, oldest first, at most `limit`.
    async fn deployment_events(
        &self,
        name: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<DeploymentEvent>>;
    /// A deployment's newest events, newest first, at most `limit`.
    async fn recent_deployment_events(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<DeploymentEvent>>;
    /// What a version's files were at registration, when they are in slipway's artifact store.
    async fn model_version_content(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<crate::registry::VersionContent>>;
    /// A registered version whose files are at, under or above this artifact-store path.
    async fn version_holding_path(&self, path: &str) -> Result<Option<(String, i64)>>;
    /// The latest event of `kind` in a deployment's history (kept after it is deleted).
    async fn last_deployment_event(
        &self,
        name: &str,
        kind: &str,
    ) -> Result<Option<DeploymentEvent>>;
    /// Appends sampled predictions (ids assigned by the store).
    async fn append_predictions(&self, records: Vec<PredictionRecord>) -> Result<()>;
    /// How many of a deployment's logged predictions were made before `before_ms`, and how
    /// many of its labels arrived before it, each counted up to `limit`.
    async fn expired_counts(
        &self,
        deployment: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<(u64, u64)>;
    /// Deletes up to `limits.0` of a deployment's logged predictions made before `before_ms`,
    /// and up to `limits.1` of its labels that arrived before it; returns what went.
    async fn expire_predictions(
        &self,
        deployment: &str,
        before_ms: i64,
        limits: (u64, u64),
    ) -> Result<(u64, u64)>;
    /// A deployment's logged predictions with an id above `after_id`, oldest first.
    async fn read_predictions(
        &self,
        deployment: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PredictionRecord>>;

    /// Stores true labels of a deployment's requests by request id (a later label for the same
    /// request replaces the earlier); returns how many name a logged prediction.
    async fn put_labels(
        &self,
        deployment: &str,
        labels: Vec<(String, serde_json::Value)>,
        time_ms: i64,
    ) -> Result<u64>;
    /// A deployment's logged predictions made in `[from_ms, to_ms)` with an id above
    /// `after_id`, in id order, at most `limit`, each with its label when one arrived. Their
    /// inputs are left out (`null`).
    async fn predictions_with_labels(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(PredictionRecord, Option<serde_json::Value>)>>;

    // Monitoring.
    /// Stores a version's monitoring reference, replacing any earlier one; the version must
    /// exist.
    async fn put_monitor_reference(&self, reference: MonitorReference) -> Result<()>;
    async fn get_monitor_reference(
        &self,
        model_name: &str,
        version: i64,
    ) -> Result<Option<MonitorReference>>;
    /// Appends a closed window (its id is returned); the oldest windows of a deployment beyond
    /// the store's retention go in the same transaction.
    async fn append_monitor_window(&self, window: MonitorWindow) -> Result<i64>;
    /// A deployment's windows with an id below `before_id` (all when `None`), newest first, at
    /// most `limit`.
    async fn monitor_windows(
        &self,
        deployment: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<MonitorWindow>>;

    // Alerting.
    async fn get_alert_config(&self) -> Result<Option<crate::alerting::StoredAlertConfig>>;
    /// Replaces the alerting configuration if its stored revision is still `expected_revision`
    /// (0: none stored yet); refused (invalid) otherwise, so two applies cannot interleave.
    async fn put_alert_config(
        &self,
        config: crate::alerting::AlertConfig,
        expected_revision: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<crate::alerting::StoredAlertConfig>;
    /// Stores a newly fired alert (id 0; its id is returned) or updates a stored one; resolved
    /// alerts beyond the store's retention go in the same transaction.
    async fn save_alert(&self, alert: crate::alerting::Alert) -> Result<i64>;
    /// Stored alerts matching `filter`, newest first, at most `limit`.
    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
    ) -> Result<Vec<crate::alerting::Alert>>;
    async fn create_silence(
        &self,
        silence: crate::alerting::NewSilence,
        by: &str,
        now_ms: i64,
    ) -> Result<crate::alerting::Silence>;
    /// Silences ending after `after_ms`, newest first, at most `limit`.
    async fn list_silences(
        &self,
        after_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::alerting::Silence>>;
    /// Ends a silence at `now_ms` (kept as history); not found when it does not exist.
    async fn expire_silence(&self, id: i64, now_ms: i64) -> Result<crate::alerting::Silence>;

    /// Entries after `after_seq` in sequence order that match `filter`, at most `limit`.
    async fn read_audit(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>>;

    /// Entries before `before_seq` (from the newest when `None`) that match `filter`, newest
    /// first, at most `limit`: what a person reading the log wants first.
    async fn read_audit_newest(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>>;
}

/// Where deployment events go outside slipway (a webhook). Delivery is the implementation's
/// business (retries, timeouts); a failure is logged, never returned: a rollback must not wait
/// on a receiver.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn notify(&self, event: serde_json::Value);
}

/// Delivers alert notifications (Alertmanager, a signed webhook, Slack, PagerDuty). Returns
/// once the receiver accepted or every retry failed, with why: the caller records and counts
/// each outcome.
#[async_trait]
pub trait AlertSink: Send + Sync + 'static {
    async fn deliver(
        &self,
        notification: &crate::alerting::Notification,
    ) -> std::result::Result<(), String>;
}

/// Which stored alerts to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub state: Option<crate::alerting::AlertState>,
    pub deployment: Option<String>,
    pub fingerprint: Option<String>,
    /// Only alerts with an id below this one (paging, newest first).
    pub before_id: Option<i64>,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exactly this resource, e.g. `registered_model:fraud`.
    pub resource: Option<String>,
    pub actor: Option<String>,
    /// Entries at or after this time (epoch ms).
    pub since_ms: Option<i64>,
}

/// A chunked body, streamed in or out without holding the whole file in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// The entry's name relative to the listed directory.
    pub name: String,
    pub is_dir: bool,
    /// Files only.
    pub size: Option<u64>,
}

/// What a `get` found: a file (streamed) or nothing.
pub struct ArtifactObject {
    pub size: u64,
    pub body: ByteStream,
}

/// Artifact bytes, addressed by a relative `/`-separated path (`<exp>/<run>/artifacts/model.onnx`).
/// Paths reach the adapter already checked by [`crate::artifact_path::ArtifactPath`].
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Writes `body` to `path` atomically: readers see the old object or the whole new one.
    async fn put(&self, path: &crate::artifact_path::ArtifactPath, body: ByteStream)
    -> Result<u64>;
    /// `Ok(None)` when nothing is at `path` (or it is a directory).
    async fn get(
        &self,
        path: &crate::artifact_path::ArtifactPath,
    ) -> Result<Option<ArtifactObject>>;
    /// Direct children of a directory; `Ok(None)` when `path` is a file or does not exist.
    async fn list(
        &self,
        path: Option<&crate::artifact_path::ArtifactPath>,
    ) -> Result<Option<Vec<ArtifactEntry>>>;
    /// Deletes a file or everything under a directory; missing paths are not an error.
    async fn delete(&self, path: &crate::artifact_path::ArtifactPath) -> Result<()>;
}
