//! The platform's state as documents (`slipway_core::state`): what an admin exports to start
//! keeping it in git. Every object is written in the shape its own API takes, so a document
//! reads like the command that would make it.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use slipway_core::deployment::Deployment;
use slipway_core::state::{Document, Kind, sort};
use slipway_core::{Error, Result};

use crate::App;

/// Registered models read per page while looking for policies.
const MODELS_PAGE: i64 = 1_000;

/// A deployment's model as `deploy create` takes it: the alias it follows, else its version.
fn model_uri(deployment: &Deployment) -> String {
    match &deployment.alias {
        Some(alias) => format!("models:/{}@{alias}", deployment.model_name),
        None => format!(
            "models:/{}/{}",
            deployment.model_name, deployment.stable_version
        ),
    }
}

/// The serving settings in the names the deployments API takes (the SLO is a document of its
/// own).
fn settings_json(s: &slipway_core::deployment::ServingSettings) -> Value {
    json!({
        "log_sample": s.log_sample,
        "batch_max_rows": s.batch_max_rows,
        "batch_max_wait_ms": s.batch_max_wait_ms,
        "breaker_failures": s.breaker.failures,
        "breaker_cooldown_ms": s.breaker.cooldown_ms,
        "monitor_window_ms": s.monitor.window_ms,
        "monitor_window_rows": s.monitor.window_rows,
        "prediction_retention_ms": s.prediction_retention_ms,
    })
}

/// `value` as an object without `field` (which the document's name carries).
fn without(value: Value, field: &str) -> Value {
    match value {
        Value::Object(mut map) => {
            map.remove(field);
            Value::Object(map)
        }
        other => other,
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::internal("encoding a document", e))
}

impl App {
    /// Every policy, deployment, SLO, alert receiver, route and rule, trigger and permission,
    /// as documents in the order they would be applied.
    pub async fn export_state(&self) -> Result<Vec<Document>> {
        let mut documents = Vec::new();
        for deployment in self.store().list_deployments().await? {
            documents.push(Document::new(
                Kind::Deployment,
                &deployment.name,
                json!({ "model": model_uri(&deployment), "settings": settings_json(&deployment.settings) }),
            ));
            if let Some(slo) = &deployment.settings.slo {
                documents.push(Document::new(Kind::Slo, &deployment.name, encode(slo)?));
            }
        }
        let mut token: Option<String> = None;
        loop {
            let page = self
                .search_registered_models(None, &[], Some(MODELS_PAGE), token.as_deref())
                .await?;
            for model in &page.items {
                if let Some(policy) = self.store().get_policy(&model.name).await? {
                    let stages: Vec<&str> =
                        policy.protected_stages.iter().map(|s| s.as_str()).collect();
                    let mut spec = Map::new();
                    spec.insert("protected_aliases".into(), json!(policy.protected_aliases));
                    spec.insert("protected_stages".into(), json!(stages));
                    spec.insert(
                        "required_approvals".into(),
                        json!(policy.required_approvals),
                    );
                    spec.insert(
                        "max_unapproved_weight".into(),
                        json!(policy.max_unapproved_weight),
                    );
                    spec.insert("require_gate".into(), json!(policy.require_gate));
                    for (key, value) in [
                        ("checks", json!(policy.checks)),
                        ("gate_rules", json!(policy.gate_rules)),
                        ("gate_data", json!(policy.gate_data)),
                    ] {
                        if !value.is_null() {
                            spec.insert(key.into(), value);
                        }
                    }
                    documents.push(Document::new(
                        Kind::Policy,
                        &model.name,
                        Value::Object(spec),
                    ));
                }
            }
            match page.next_page_token {
                Some(next) if !page.items.is_empty() => token = Some(next),
                _ => break,
            }
        }
        let alerting = self.alert_config().await?.config;
        for receiver in &alerting.receivers {
            documents.push(Document::new(
                Kind::AlertReceiver,
                &receiver.name,
                without(encode(receiver)?, "name"),
            ));
        }
        if alerting.route != slipway_core::alerting::Route::default() {
            documents.push(Document::new(
                Kind::AlertRoute,
                "default",
                encode(&alerting.route)?,
            ));
        }
        for rule in &alerting.rules {
            // Rules may share an alert name across deployments; the document's name may not.
            let shared = alerting
                .rules
                .iter()
                .filter(|r| r.alert == rule.alert)
                .count()
                > 1;
            let name = if shared {
                format!("{}-{}", rule.alert, rule.deployment.replace('*', "all"))
            } else {
                rule.alert.clone()
            };
            documents.push(Document::new(Kind::AlertRule, name, encode(rule)?));
        }
        for trigger in self.trigger_config().await?.config.triggers {
            let name = trigger.name.clone();
            documents.push(Document::new(
                Kind::Trigger,
                name,
                without(encode(&trigger)?, "name"),
            ));
        }
        for grant in self.store().list_grants(None).await? {
            let kind = grant.resource.kind.as_str();
            documents.push(Document::new(
                Kind::Permission,
                format!("{}-{kind}-{}", grant.user_name, grant.resource.id),
                json!({
                    "user": grant.user_name,
                    kind: grant.resource.id,
                    "permission": grant.permission.as_str(),
                }),
            ));
        }
        sort(&mut documents);
        Ok(documents)
    }
}

/// A document's identity: its kind and name, except where the object itself says who it is
/// (an alert rule by alert and deployment, a permission by user and resource), so a document
/// named differently from an export still finds its object.
fn identity(document: &Document) -> String {
    let spec = &document.spec;
    let text = |key: &str| spec[key].as_str().unwrap_or("").to_owned();
    match document.kind {
        Kind::AlertRule => format!("AlertRule/{}@{}", text("alert"), text("deployment")),
        Kind::Permission => {
            let (kind, id) = if spec.get("experiment").is_some() {
                ("experiment", text("experiment"))
            } else {
                ("registered_model", text("registered_model"))
            };
            format!("Permission/{}@{kind}:{id}", text("user"))
        }
        _ => document.key(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(document: &Document, spec: Value) -> Result<T> {
    serde_json::from_value(spec)
        .map_err(|e| Error::invalid(format!("{}: the spec does not read: {e}", document.key())))
}

/// `spec` with `name` put back, for objects whose name is a field of their own.
fn with_name(spec: &Value, name: &str) -> Value {
    let mut spec = spec.clone();
    if let Value::Object(map) = &mut spec {
        map.insert("name".into(), json!(name));
    }
    spec
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    protected_aliases: Option<Vec<String>>,
    protected_stages: Option<Vec<String>>,
    required_approvals: Option<u32>,
    checks: Option<String>,
    max_unapproved_weight: Option<u8>,
    #[serde(default)]
    require_gate: bool,
    gate_rules: Option<Vec<String>>,
    gate_data: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentSpec {
    model: String,
    #[serde(default)]
    settings: SettingsSpec,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsSpec {
    log_sample: Option<f64>,
    batch_max_rows: Option<usize>,
    batch_max_wait_ms: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    monitor_window_ms: Option<u64>,
    monitor_window_rows: Option<u64>,
    prediction_retention_ms: Option<u64>,
}

impl SettingsSpec {
    /// The settings it describes: what it names, the defaults for the rest.
    fn settings(&self) -> slipway_core::deployment::ServingSettings {
        let mut s = slipway_core::deployment::ServingSettings::default();
        s.log_sample = self.log_sample.unwrap_or(s.log_sample);
        s.batch_max_rows = self.batch_max_rows.unwrap_or(s.batch_max_rows);
        s.batch_max_wait_ms = self.batch_max_wait_ms.unwrap_or(s.batch_max_wait_ms);
        s.breaker.failures = self.breaker_failures.unwrap_or(s.breaker.failures);
        s.breaker.cooldown_ms = self.breaker_cooldown_ms.unwrap_or(s.breaker.cooldown_ms);
        s.monitor.window_ms = self.monitor_window_ms.unwrap_or(s.monitor.window_ms);
        s.monitor.window_rows = self.monitor_window_rows.unwrap_or(s.monitor.window_rows);
        s.prediction_retention_ms = self
            .prediction_retention_ms
            .unwrap_or(s.prediction_retention_ms);
        s
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionSpec {
    user: String,
    experiment: Option<String>,
    registered_model: Option<String>,
    permission: String,
}

impl PermissionSpec {
    fn resource(&self, key: &str) -> Result<slipway_core::auth::Resource> {
        match (&self.experiment, &self.registered_model) {
            (Some(id), None) => Ok(slipway_core::auth::Resource::experiment(id.clone())),
            (None, Some(name)) => Ok(slipway_core::auth::Resource::registered_model(name.clone())),
            _ => Err(Error::invalid(format!(
                "{key}: a permission names one experiment or one registered_model"
            ))),
        }
    }
}

/// The document as the server would export it once applied: defaults filled in, names
/// normalised, so that comparing it with the live object shows only real differences.
fn canonical(document: &Document) -> Result<Document> {
    if document.api_version != slipway_core::state::API_VERSION {
        return Err(Error::invalid(format!(
            "{}: apiVersion must be {}, got '{}'",
            document.key(),
            slipway_core::state::API_VERSION,
            document.api_version
        )));
    }
    let name = &document.metadata.name;
    let spec = document.spec.clone();
    let spec = match document.kind {
        Kind::Policy => {
            let p: PolicySpec = parse(document, spec)?;
            let stages = match &p.protected_stages {
                Some(stages) => stages
                    .iter()
                    .map(|s| slipway_core::registry::Stage::parse(s).map(|s| s.as_str()))
                    .collect::<Result<Vec<_>>>()?,
                None => vec![slipway_core::registry::Stage::Production.as_str()],
            };
            let mut out = Map::new();
            out.insert(
                "protected_aliases".into(),
                json!(p.protected_aliases.unwrap_or_else(|| {
                    slipway_core::promotion::DEFAULT_PROTECTED_ALIASES
                        .iter()
                        .map(|a| (*a).to_owned())
                        .collect()
                })),
            );
            out.insert("protected_stages".into(), json!(stages));
            out.insert(
                "required_approvals".into(),
                json!(p.required_approvals.unwrap_or(1)),
            );
            out.insert(
                "max_unapproved_weight".into(),
                json!(
                    p.max_unapproved_weight
                        .unwrap_or(slipway_core::promotion::DEFAULT_MAX_UNAPPROVED_WEIGHT)
                ),
            );
            out.insert("require_gate".into(), json!(p.require_gate));
            for (key, value) in [
                ("checks", json!(p.checks.filter(|c| !c.trim().is_empty()))),
                ("gate_rules", json!(p.gate_rules)),
                ("gate_data", json!(p.gate_data.filter(|d| !d.is_empty()))),
            ] {
                if !value.is_null() {
                    out.insert(key.into(), value);
                }
            }
            Value::Object(out)
        }
        Kind::Deployment => {
            let d: DeploymentSpec = parse(document, spec)?;
            crate::deployments::ModelRef::parse(&d.model)?;
            let settings = d.settings.settings();
            settings.validate()?;
            json!({ "model": d.model, "settings": settings_json(&settings) })
        }
        Kind::Slo => {
            let slo: slipway_core::slo::SloSpec = parse(document, spec)?;
            slo.validate()?;
            encode(&slo)?
        }
        Kind::AlertReceiver => {
            let receiver: slipway_core::alerting::Receiver =
                parse(document, with_name(&spec, name))?;
            without(encode(&receiver)?, "name")
        }
        Kind::AlertRoute => {
            if name != "default" {
                return Err(Error::invalid(format!(
                    "{}: there is one alert route, named default",
                    document.key()
                )));
            }
            encode(&parse::<slipway_core::alerting::Route>(document, spec)?)?
        }
        Kind::AlertRule => encode(&parse::<slipway_core::alerting::AlertRule>(document, spec)?)?,
        Kind::Trigger => {
            let trigger: slipway_core::retrain::Trigger = parse(document, with_name(&spec, name))?;
            without(encode(&trigger)?, "name")
        }
        Kind::Permission => {
            let p: PermissionSpec = parse(document, spec)?;
            let resource = p.resource(&document.key())?;
            let permission =
                slipway_core::auth::Permission::parse(&p.permission.to_ascii_uppercase())?;
            json!({
                "user": p.user,
                resource.kind.as_str(): resource.id,
                "permission": permission.as_str(),
            })
        }
    };
    Ok(Document::new(document.kind, name.clone(), spec))
}

/// Top-level fields whose values differ between two specs.
fn changed_fields(a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        }
        _ if a != b => vec!["spec".to_owned()],
        _ => Vec::new(),
    }
}

/// One object a plan touches.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub key: String,
    /// create, update or delete; `keep` for a managed object the files no longer name that
    /// apply leaves (a deployment is deleted by hand).
    pub action: &'static str,
    /// The spec's fields that change.
    pub fields: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip)]
    desired: Option<Document>,
    #[serde(skip)]
    live: Option<Document>,
}

/// A managed object changed since it was applied, by some other path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drift {
    pub key: String,
    /// The fields changed, or `deleted`.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub drift: Vec<Drift>,
    pub unchanged: usize,
    /// The applied state's revision the plan was made against.
    pub revision: i64,
    #[serde(skip)]
    desired: Vec<Document>,
}

impl Plan {
    /// The live objects of these kinds the plan deletes.
    fn deleted<'a>(&'a self, kinds: &'a [Kind]) -> impl Iterator<Item = &'a Document> + 'a {
        self.changes
            .iter()
            .filter(|c| c.action == "delete")
            .filter_map(|c| c.live.as_ref())
            .filter(|d| kinds.contains(&d.kind))
    }
}

impl App {
    /// What applying `documents` would change: every object they name made to match, and
    /// managed objects (named by the last apply) they no longer name removed. Nothing is
    /// written. Refuses the whole set when any document is wrong.
    pub async fn plan_state(&self, documents: Vec<Document>) -> Result<Plan> {
        let mut desired = Vec::with_capacity(documents.len());
        let mut seen = std::collections::HashSet::new();
        for document in &documents {
            let canonical = canonical(document)?;
            if !seen.insert(identity(&canonical)) {
                return Err(Error::invalid(format!(
                    "{} is described twice",
                    document.key()
                )));
            }
            desired.push(canonical);
        }
        sort(&mut desired);
        let live: HashMap<String, Document> = self
            .export_state()
            .await?
            .into_iter()
            .map(|d| (identity(&d), d))
            .collect();
        let stored = self.store().get_applied_state().await?;
        let revision = stored.as_ref().map_or(0, |s| s.revision);
        let applied: HashMap<String, Document> = stored
            .map(|s| s.config.documents)
            .unwrap_or_default()
            .into_iter()
            .map(|d| (identity(&d), d))
            .collect();
        let mut changes = Vec::new();
        let mut unchanged = 0;
        for document in &desired {
            let id = identity(document);
            match live.get(&id) {
                None => changes.push(Change {
                    key: document.key(),
                    action: "create",
                    fields: Vec::new(),
                    note: None,
                    desired: Some(document.clone()),
                    live: None,
                }),
                Some(current) if current.spec != document.spec => {
                    if document.kind == Kind::Deployment
                        && current.spec["model"] != document.spec["model"]
                    {
                        return Err(Error::invalid(format!(
                            "{}: the model a deployment serves changes through a rollout (`slipway deploy update {} --candidate MODEL_URI`), not through apply",
                            document.key(),
                            document.metadata.name
                        )));
                    }
                    changes.push(Change {
                        key: document.key(),
                        action: "update",
                        fields: changed_fields(&current.spec, &document.spec),
                        note: None,
                        desired: Some(document.clone()),
                        live: Some(current.clone()),
                    });
                }
                Some(_) => unchanged += 1,
            }
        }
        let named: std::collections::HashSet<String> = desired.iter().map(identity).collect();
        let mut drift = Vec::new();
        let mut managed: Vec<(&String, &Document)> = applied.iter().collect();
        managed.sort_by_key(|(_, d)| (d.kind, d.metadata.name.clone()));
        for (id, was) in managed {
            match live.get(id) {
                None => drift.push(Drift {
                    key: was.key(),
                    fields: vec!["deleted".into()],
                }),
                Some(current) => {
                    if current.spec != was.spec {
                        drift.push(Drift {
                            key: was.key(),
                            fields: changed_fields(&was.spec, &current.spec),
                        });
                    }
                    if !named.contains(id) {
                        let keep = current.kind == Kind::Deployment;
                        changes.push(Change {
                            key: current.key(),
                            action: if keep { "keep" } else { "delete" },
                            fields: Vec::new(),
                            note: keep.then(|| {
                                format!(
                                    "no longer managed; a deployment is deleted by hand (`slipway deploy delete {}`)",
                                    current.metadata.name
                                )
                            }),
                            desired: None,
                            live: Some(current.clone()),
                        });
                    }
                }
            }
        }
        Ok(Plan {
            changes,
            drift,
            unchanged,
            revision,
            desired,
        })
    }

    /// Makes the server match `documents` (see [`App::plan_state`]), each change through its
    /// own use-case, audited under the caller. When one fails, the changes made before it are
    /// undone, in reverse, and the error says what failed and that nothing stayed applied.
    pub async fn apply_state(&self, documents: Vec<Document>) -> Result<Plan> {
        let plan = self.plan_state(documents).await?;
        let alerting_before = self.alert_config().await?;
        let triggers_before = self.trigger_config().await?;
        let previous = self
            .store()
            .get_applied_state()
            .await?
            .map(|s| s.config)
            .unwrap_or_default();
        // The applied set is claimed first, against the revision the plan read: of two applies
        // planned from the same state, the second fails here, before it changes anything, and
        // so never undoes what the first made.
        let claimed = self
            .audited(
                "state.apply",
                "state",
                json!({
                    "changes": plan.changes.iter().map(|c| format!("{} {}", c.action, c.key)).collect::<Vec<_>>(),
                    "drift": plan.drift.iter().map(|d| d.key.clone()).collect::<Vec<_>>(),
                }),
            )
            .put_applied_state(
                slipway_core::state::AppliedState {
                    documents: plan.desired.clone(),
                },
                plan.revision,
                &self.caller.actor,
                crate::now_ms(),
            )
            .await?;
        let active: Vec<&Change> = plan.changes.iter().filter(|c| c.action != "keep").collect();
        let mut done: Vec<&Change> = Vec::new();
        let mut failure = None;
        // Alerting and triggers are each one configuration, applied whole in one write; each
        // counts as done once that write succeeded.
        let mut alerting_done = false;
        let mut triggers_done = false;
        for change in &active {
            let kind = change
                .desired
                .as_ref()
                .or(change.live.as_ref())
                .map(|d| d.kind);
            let result = match kind {
                Some(Kind::AlertReceiver | Kind::AlertRoute | Kind::AlertRule) => {
                    if alerting_done {
                        continue;
                    }
                    let result = self.apply_alerting(&plan, &alerting_before).await;
                    alerting_done = result.is_ok();
                    result
                }
                Some(Kind::Trigger) => {
                    if triggers_done {
                        continue;
                    }
                    let result = self.apply_trigger_documents(&plan, &triggers_before).await;
                    triggers_done = result.is_ok();
                    result
                }
                _ => self.apply_change(change, &plan.desired).await,
            };
            if let Err(error) = result {
                failure = Some((change.key.clone(), error));
                break;
            }
            done.push(change);
        }
        if let Some((key, error)) = failure {
            let mut undo_errors = Vec::new();
            if alerting_done
                && let Err(e) = self
                    .apply_alert_config(alerting_before.config.clone(), None, false)
                    .await
            {
                undo_errors.push(format!("alerting: {e}"));
            }
            if triggers_done
                && let Err(e) = self
                    .apply_triggers(triggers_before.config.clone(), None, false)
                    .await
            {
                undo_errors.push(format!("triggers: {e}"));
            }
            for change in done.iter().rev() {
                let kind = change
                    .desired
                    .as_ref()
                    .or(change.live.as_ref())
                    .map(|d| d.kind);
                if matches!(
                    kind,
                    Some(Kind::AlertReceiver | Kind::AlertRoute | Kind::AlertRule | Kind::Trigger)
                ) {
                    continue;
                }
                let undo = Change {
                    key: change.key.clone(),
                    action: match change.action {
                        "create" => "delete",
                        "delete" => "create",
                        other => other,
                    },
                    fields: Vec::new(),
                    note: None,
                    desired: change.live.clone(),
                    live: change.desired.clone(),
                };
                let before: Vec<Document> = change.live.iter().cloned().collect();
                if let Err(e) = self.apply_change(&undo, &before).await {
                    undo_errors.push(format!("{}: {e}", change.key));
                }
            }
            if let Err(e) = self
                .audited(
                    "state.apply.undo",
                    "state",
                    json!({ "failed": key, "reason": error.to_string() }),
                )
                .put_applied_state(
                    previous,
                    claimed.revision,
                    &self.caller.actor,
                    crate::now_ms(),
                )
                .await
            {
                undo_errors.push(format!("the applied state: {e}"));
            }
            let undone = if undo_errors.is_empty() {
                "the changes made before it were undone".to_owned()
            } else {
                format!(
                    "undoing the changes made before it failed too ({}): check with `slipway diff`",
                    undo_errors.join("; ")
                )
            };
            return Err(Error::invalid(format!(
                "applying {key} failed: {error}; {undone}"
            )));
        }
        Ok(plan)
    }

    /// One object's change, through its use-case. `desired` is every document being applied
    /// (a deployment's SLO lives in its settings).
    async fn apply_change(&self, change: &Change, desired: &[Document]) -> Result<()> {
        let document = change
            .desired
            .as_ref()
            .or(change.live.as_ref())
            .ok_or_else(|| Error::invalid(format!("{}: nothing to apply", change.key)))?;
        let name = &document.metadata.name;
        let deleting = change.action == "delete";
        match document.kind {
            Kind::Policy if deleting => self.delete_policy(name).await,
            Kind::Policy => {
                let p: PolicySpec = parse(document, document.spec.clone())?;
                self.set_policy(
                    name,
                    crate::promotions::PolicyInput {
                        aliases: p.protected_aliases,
                        stages: p.protected_stages,
                        required_approvals: p.required_approvals,
                        checks: p.checks,
                        max_unapproved_weight: p.max_unapproved_weight,
                        require_gate: p.require_gate,
                        gate_rules: p.gate_rules,
                        gate_data: p.gate_data,
                    },
                )
                .await
                .map(|_| ())
            }
            Kind::Deployment if deleting => self.delete_deployment(name).await,
            Kind::Deployment | Kind::Slo => {
                let deployment_doc = desired
                    .iter()
                    .find(|d| d.kind == Kind::Deployment && &d.metadata.name == name);
                let slo_doc = desired
                    .iter()
                    .find(|d| d.kind == Kind::Slo && &d.metadata.name == name);
                let current = match self.get_deployment(name).await {
                    Ok(current) => Some(current),
                    Err(Error::NotFound(_)) => None,
                    Err(error) => return Err(error),
                };
                let mut settings = match deployment_doc {
                    Some(doc) => parse::<DeploymentSpec>(doc, doc.spec.clone())?
                        .settings
                        .settings(),
                    None => current
                        .as_ref()
                        .map(|c| c.settings.clone())
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "{}: deployment '{name}' does not exist; describe it too",
                                change.key
                            ))
                        })?,
                };
                settings.slo = match (document.kind, deleting, slo_doc) {
                    (Kind::Slo, true, _) => None,
                    (_, _, Some(doc)) => Some(parse(doc, doc.spec.clone())?),
                    // A deployment document alone keeps an SLO managed elsewhere.
                    _ => current.as_ref().and_then(|c| c.settings.slo.clone()),
                };
                match (current, deployment_doc) {
                    (Some(_), _) => self
                        .update_deployment_settings(name, settings)
                        .await
                        .map(|_| ()),
                    (None, Some(doc)) => {
                        let spec: DeploymentSpec = parse(doc, doc.spec.clone())?;
                        let model = crate::deployments::ModelRef::parse(&spec.model)?;
                        self.create_deployment(name, &model, settings, None)
                            .await
                            .map(|_| ())
                    }
                    (None, None) => Err(Error::not_found(format!(
                        "deployment '{name}' does not exist"
                    ))),
                }
            }
            Kind::Permission => {
                let p: PermissionSpec = parse(document, document.spec.clone())?;
                let resource = p.resource(&change.key)?;
                if deleting {
                    self.delete_permission(&p.user, &resource).await
                } else {
                    let permission =
                        slipway_core::auth::Permission::parse(&p.permission.to_ascii_uppercase())?;
                    self.set_permission(&p.user, resource, permission).await
                }
            }
            Kind::AlertReceiver | Kind::AlertRoute | Kind::AlertRule | Kind::Trigger => Ok(()),
        }
    }

    /// The alerting configuration the plan asks for: what it names, unmanaged objects kept.
    async fn apply_alerting(
        &self,
        plan: &Plan,
        stored: &slipway_core::alerting::StoredAlertConfig,
    ) -> Result<()> {
        let before = &stored.config;
        let deleted: Vec<String> = plan
            .deleted(&[Kind::AlertReceiver, Kind::AlertRoute, Kind::AlertRule])
            .map(identity)
            .collect();
        let desired_ids: Vec<String> = plan.desired.iter().map(identity).collect();
        let keep = |document: &Document| {
            let id = identity(document);
            !deleted.contains(&id) && !desired_ids.contains(&id)
        };
        let mut receivers = Vec::new();
        let mut rules = Vec::new();
        for receiver in &before.receivers {
            let doc = Document::new(Kind::AlertReceiver, &receiver.name, Value::Null);
            if keep(&doc) {
                receivers.push(receiver.clone());
            }
        }
        for rule in &before.rules {
            let doc = Document::new(Kind::AlertRule, &rule.alert, encode(rule)?);
            if keep(&doc) {
                rules.push(rule.clone());
            }
        }
        let mut route = before.route.clone();
        let route_managed_away = deleted.iter().any(|id| id == "AlertRoute/default");
        if route_managed_away {
            route = slipway_core::alerting::Route::default();
        }
        for document in &plan.desired {
            match document.kind {
                Kind::AlertReceiver => receivers.push(parse(
                    document,
                    with_name(&document.spec, &document.metadata.name),
                )?),
                Kind::AlertRoute => route = parse(document, document.spec.clone())?,
                Kind::AlertRule => rules.push(parse(document, document.spec.clone())?),
                _ => {}
            }
        }
        let config = slipway_core::alerting::AlertConfig {
            receivers,
            route,
            rules,
        };
        // Against the configuration the plan read: a change made meanwhile is not overwritten.
        self.apply_alert_config(config, Some(stored.revision), false)
            .await
            .map(|_| ())
    }

    /// The triggers the plan asks for: what it names, unmanaged triggers kept.
    async fn apply_trigger_documents(
        &self,
        plan: &Plan,
        stored: &slipway_core::retrain::StoredTriggerConfig,
    ) -> Result<()> {
        let before = &stored.config;
        let deleted: Vec<String> = plan
            .deleted(&[Kind::Trigger])
            .map(|d| d.metadata.name.clone())
            .collect();
        let desired: Vec<&Document> = plan
            .desired
            .iter()
            .filter(|d| d.kind == Kind::Trigger)
            .collect();
        let mut triggers: Vec<slipway_core::retrain::Trigger> = before
            .triggers
            .iter()
            .filter(|t| {
                !deleted.contains(&t.name) && !desired.iter().any(|d| d.metadata.name == t.name)
            })
            .cloned()
            .collect();
        for document in desired {
            triggers.push(parse(
                document,
                with_name(&document.spec, &document.metadata.name),
            )?);
        }
        self.apply_triggers(
            slipway_core::retrain::TriggerConfig { triggers },
            Some(stored.revision),
            false,
        )
        .await
        .map(|_| ())
    }
}
