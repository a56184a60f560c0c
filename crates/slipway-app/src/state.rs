//! The platform's state as documents (`slipway_core::state`): what an admin exports to start
//! keeping it in git. Every object is written in the shape its own API takes, so a document
//! reads like the command that would make it.

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
fn settings(deployment: &Deployment) -> Value {
    let s = &deployment.settings;
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
                json!({ "model": model_uri(&deployment), "settings": settings(&deployment) }),
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
