//! Use-cases over the ports. Every entry point (the HTTP API today, the CLI and the UI later)
//! goes through here, so MLflow's limits, defaults and naming rules hold whoever calls.
//!
//! Module map:
//! - [`tracking`]: experiments, runs, logging, metric history, search.
//! - [`logged_models`]: MLflow 3 LoggedModels.
//! - [`registry`]: registered models, versions, aliases, stages.
//! - [`audit`]: paging through the audit trail and verifying its hash chain.
//! - [`promotions`]: promotion policies, requests, approvals, rollback and lineage.
//! - [`deployments`]: managed deployments, rollouts started, promoted, aborted and rolled back
//!   by hand, model files for the data plane, the prediction log.
//! - [`rollout`]: the controller that analyses rollouts each interval and applies decisions.
//! - [`identity`]: authentication (argon2, credential cache, failure throttling) and the
//!   users, tokens and permissions admins manage.
//! - [`artifacts`]: the artifact proxy and run artifact listings.
//! - [`alerting`]: the alerting configuration and silences (audited), the evaluator that steps
//!   alerts pending → firing → resolved and notifies receivers, and every plane's serving counts.
//! - [`cluster`]: several servers on one store: the leader's lease, and measurements relayed
//!   to the leader through the store.
//! - `names`: MLflow-style random run names.

pub mod alerting;
pub mod artifacts;
pub mod audit;
pub mod cluster;
mod content;
pub mod delivery;
pub mod deployments;
pub mod gates;
pub mod identity;
pub mod labels;
pub mod logged_models;
pub mod model_card;
pub mod monitoring;
mod names;
pub mod promotions;
pub mod registry;
pub mod retrain;
pub mod rollout;
pub mod sealing;
pub mod slo;
pub mod state;
pub mod tracking;

use std::sync::Arc;

use slipway_core::audit::{AuditEvent, Outcome};
use slipway_core::ports::{ArtifactStore, MetadataStore, Notifier};

/// Settings the use-cases need; chosen by the binary.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Where new experiments put their artifacts when the client names no location. The
    /// default, `mlflow-artifacts:`, makes clients upload through this server's artifact proxy.
    pub default_artifact_root: String,
    /// Whether requests must present credentials.
    pub auth_enabled: bool,
    /// What one CPU hour of inference costs (the delivery report's cost per 1,000 inferences).
    pub cpu_hour_price: Option<f64>,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            default_artifact_root: "mlflow-artifacts:".to_owned(),
            auth_enabled: false,
            cpu_hour_price: None,
        }
    }
}

/// The application: ports plus settings. Cheap to clone; shared by every request.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
    settings: Arc<AppSettings>,
    /// Credential cache and failure throttling, shared by every request.
    auth: Arc<identity::Authenticator>,
    /// Refusals counted per address and window, so a flood cannot grow the audit log at will.
    refusals: Arc<audit::Refusals>,
    /// Who the current request acts for; every audit entry it writes names them.
    caller: Arc<Caller>,
    /// Where deployment events go (the webhook), if configured.
    notifier: Option<Arc<dyn Notifier>>,
    /// Runs release gates (ONNX Runtime, in the binary); `None` where the server has none.
    gates: Option<Arc<dyn slipway_core::gate::GateRunner>>,
    /// Held while a gate runs: one at a time per server.
    gate_turn: Arc<tokio::sync::Mutex<()>>,
    /// Encryption at rest of the prediction log and labels (off unless the server has a key).
    sealing: Arc<sealing::Sealing>,
}

/// The actor and request an `App` handle works for (see [`App::for_caller`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// A user name, `anonymous` when authentication is off, `cli:<os user>` for admin commands.
    pub actor: String,
    pub request_id: Option<String>,
    /// Experiments and registered models this caller may not even see (`NO_PERMISSIONS`):
    /// searches leave them out.
    pub hidden: Vec<slipway_core::auth::Resource>,
}

impl App {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        settings: AppSettings,
    ) -> Self {
        App {
            store,
            artifacts,
            auth: Arc::new(identity::Authenticator::new(settings.auth_enabled)),
            refusals: Arc::new(audit::Refusals::new()),
            settings: Arc::new(settings),
            caller: Arc::new(Caller {
                actor: "system".to_owned(),
                request_id: None,
                hidden: Vec::new(),
            }),
            notifier: None,
            gates: None,
            gate_turn: Arc::new(tokio::sync::Mutex::new(())),
            sealing: Arc::new(sealing::Sealing::off()),
        }
    }

    /// The same application, sending deployment events to `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> App {
        self.notifier = Some(notifier);
        self
    }

    pub(crate) fn notifier(&self) -> Option<&Arc<dyn Notifier>> {
        self.notifier.as_ref()
    }

    /// A handle on the same application acting for `actor` within request `request_id`.
    pub fn for_caller(&self, actor: impl Into<String>, request_id: Option<String>) -> App {
        App {
            caller: Arc::new(Caller {
                actor: actor.into(),
                request_id,
                hidden: Vec::new(),
            }),
            ..self.clone()
        }
    }

    /// A handle acting for an authenticated principal: audited under their name, and searches
    /// leave out what their permissions hide.
    pub fn for_principal(
        &self,
        principal: &slipway_core::auth::Principal,
        request_id: Option<String>,
    ) -> App {
        let hidden = if principal.role == slipway_core::auth::Role::Admin {
            Vec::new()
        } else {
            principal
                .grants
                .iter()
                .filter(|(_, permission)| {
                    *permission == slipway_core::auth::Permission::NoPermissions
                })
                .map(|(resource, _)| resource.clone())
                .collect()
        };
        App {
            caller: Arc::new(Caller {
                actor: principal.name.clone(),
                request_id,
                hidden,
            }),
            ..self.clone()
        }
    }

    /// Whether the caller's permissions hide this experiment or registered model.
    pub(crate) fn hides(&self, kind: slipway_core::auth::ResourceKind, id: &str) -> bool {
        self.caller
            .hidden
            .iter()
            .any(|resource| resource.kind == kind && resource.id == id)
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The store, for one write that is recorded as `action` on `resource` in the audit log,
    /// in the same transaction. `summary` says what changed and never holds a secret.
    pub(crate) fn audited(
        &self,
        action: &str,
        resource: impl Into<String>,
        summary: serde_json::Value,
    ) -> Arc<dyn MetadataStore> {
        self.store
            .audited(self.audit_event(action, resource, summary))
    }

    pub(crate) fn audit_event(
        &self,
        action: &str,
        resource: impl Into<String>,
        summary: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            actor: self.caller.actor.clone(),
            action: action.to_owned(),
            resource: resource.into(),
            request_id: self.caller.request_id.clone(),
            outcome: Outcome::Ok,
            summary: summary.to_string(),
        }
    }

    /// Records a refused request (it changes nothing else).
    pub async fn record_denial(
        &self,
        action: &str,
        resource: impl Into<String>,
        reason: &str,
    ) -> slipway_core::Result<()> {
        self.record_denial_with(action, resource, serde_json::json!({ "reason": reason }))
            .await
    }

    /// Records a request refused at the door, with the id the client gave it (if any) kept
    /// apart from the request's own id, which the server issues.
    pub(crate) async fn record_refused_request(
        &self,
        resource: impl Into<String>,
        reason: &str,
        client_request_id: Option<&str>,
    ) -> slipway_core::Result<()> {
        let summary = match client_request_id {
            Some(client) => serde_json::json!({ "reason": reason, "client_request_id": client }),
            None => serde_json::json!({ "reason": reason }),
        };
        self.record_denial_with("request.denied", resource, summary)
            .await
    }

    async fn record_denial_with(
        &self,
        action: &str,
        resource: impl Into<String>,
        summary: serde_json::Value,
    ) -> slipway_core::Result<()> {
        self.store
            .append_audit(AuditEvent {
                actor: self.caller.actor.clone(),
                action: action.to_owned(),
                resource: resource.into(),
                request_id: self.caller.request_id.clone(),
                outcome: Outcome::Denied,
                summary: summary.to_string(),
            })
            .await?;
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Keys named in an audit summary: at most this many, so one entry stays small.
const AUDIT_KEYS: usize = 20;

/// The keys of tags or params for an audit summary (values can be long or sensitive).
pub(crate) fn keys(items: &[slipway_core::tracking::Tag]) -> Vec<&str> {
    distinct_keys(items.iter().map(|item| item.key.as_str()))
}

pub(crate) fn distinct_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for key in keys {
        if seen.len() == AUDIT_KEYS {
            break;
        }
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen
}

/// Resolves `max_results` against an endpoint's default and ceiling, with MLflow's message.
pub(crate) fn max_results(
    requested: Option<i64>,
    default: usize,
    ceiling: usize,
) -> slipway_core::Result<usize> {
    match requested {
        None => Ok(default),
        Some(value) if value <= 0 => Err(slipway_core::Error::invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer"
        ))),
        Some(value) if value as u64 > ceiling as u64 => Err(slipway_core::Error::invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be at most {ceiling}"
        ))),
        Some(value) => Ok(value as usize),
    }
}
