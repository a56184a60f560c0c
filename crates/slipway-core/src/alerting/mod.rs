//! Alerting: rules over a deployment's monitoring and serving signals, alerts that go pending →
//! firing → resolved, silences, and the receivers notifications go to.
//!
//! The whole configuration is one document (receivers, the route, the rules), applied at once
//! like a Prometheus rules file, so what is live is always exactly one reviewed file. Secrets
//! in it (a webhook's signing key, a Slack URL, a PagerDuty routing key) are references
//! (`env:NAME`, `file:PATH`) resolved where they are used: the store and the audit log hold
//! only the reference.

pub mod expr;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use expr::{Condition, Signal, Source};
pub use state::{Alert, AlertState, Matcher, NewSilence, Silence, Transition};

use crate::{Error, Result};

pub const MAX_RULES: usize = 500;
pub const MAX_RECEIVERS: usize = 50;
pub const MAX_LABELS: usize = 32;
const MAX_LABEL_VALUE: usize = 1_024;
const MAX_TEXT: usize = 4_096;
/// Longest lookback a rule may read (serving windows are kept this long in memory).
pub const MAX_WINDOW_MS: u64 = 3_600_000;
/// Longest lookback of an `slo_burn` rule (the SRE workbook's ticket window).
pub const MAX_SLO_WINDOW_MS: u64 = 3 * 24 * 3_600_000;
/// Longest `for`.
pub const MAX_FOR_MS: u64 = 7 * 24 * 3_600_000;

/// Durations in a rules file are written as people write them ("5m", "1h 30m", "0s").
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&crate::deployment::human_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim() == "0" {
            return Ok(0);
        }
        humantime::parse_duration(text.trim())
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "'{text}' is not a duration ({e}); write e.g. 30s, 5m, 1h"
                ))
            })
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

fn default_window_ms() -> u64 {
    5 * 60_000
}

fn default_deployment() -> String {
    "*".to_owned()
}

/// One alert rule. An alert is raised per deployment the rule matches (and per feature for
/// `feature_drift`), named by the rule's `alert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The alert's name (Prometheus' `alertname`): letters, digits and underscores.
    pub alert: String,
    /// The deployment watched, or `*` for every deployment.
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// The condition, e.g. `drift_share >= 0.5` (see [`expr`]).
    pub expr: Condition,
    /// How long the condition must hold before the alert fires (0: at once).
    #[serde(rename = "for", default, with = "duration_ms")]
    pub for_ms: u64,
    /// How far back serving and performance signals look.
    #[serde(rename = "window", default = "default_window_ms", with = "duration_ms")]
    pub window_ms: u64,
    /// Fewest requests (serving) or rows (performance) the window needs before the condition
    /// is judged; fewer means no data, which neither fires nor keeps an alert firing.
    #[serde(default)]
    pub min_samples: u64,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// One line for people; `{{ deployment }}`, `{{ value }}`, `{{ threshold }}`,
    /// `{{ feature }}` and `{{ labels.NAME }}` are filled in.
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Receivers of this rule's alerts (by name); absent: every receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<Vec<String>>,
}

/// A secret given by reference: `env:NAME` (an environment variable of the server) or
/// `file:PATH` (a file's content, trimmed, e.g. a mounted Kubernetes Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretRef(String);

impl SecretRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretRef {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        let ok = match text.split_once(':') {
            Some(("env", name)) => {
                !name.is_empty()
                    && name.len() <= 128
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
            Some(("file", path)) => !path.is_empty() && path.len() <= 1024,
            _ => false,
        };
        if ok {
            Ok(SecretRef(text))
        } else {
            Err(format!(
                "a secret is given by reference, env:VARIABLE or file:PATH, never by value (got a value of {} characters)",
                text.chars().count()
            ))
        }
    }
}

impl From<SecretRef> for String {
    fn from(secret: SecretRef) -> String {
        secret.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerTarget {
    /// Alertmanager's base URL (`http://alertmanager:9093`); alerts go to `/api/v2/alerts`.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    /// Key of the HMAC-SHA256 signature sent in `X-Slipway-Signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackTarget {
    /// The incoming webhook's URL, which is itself the credential.
    pub url: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyTarget {
    pub routing_key: SecretRef,
    /// The Events API v2 endpoint (default `https://events.pagerduty.com/v2/enqueue`; the EU
    /// service's, or a test receiver's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Environment variables a receiver's secret may name start with this: the server's other
/// variables (the store's URL, object-store keys) are not the rules file's to send anywhere.
pub const SECRET_ENV_PREFIX: &str = "SLIPWAY_SECRET_";

pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Where notifications go: exactly one of the kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutyTarget>,
}

/// A receiver's kind, resolved from its one set field.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Alertmanager(&'a AlertmanagerTarget),
    Webhook(&'a WebhookTarget),
    Slack(&'a SlackTarget),
    PagerDuty(&'a PagerDutyTarget),
}

impl Target<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Alertmanager(_) => "alertmanager",
            Target::Webhook(_) => "webhook",
            Target::Slack(_) => "slack",
            Target::PagerDuty(_) => "pagerduty",
        }
    }
}

impl Receiver {
    /// The secret references the receiver holds.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        [
            self.webhook.as_ref().and_then(|w| w.secret.as_ref()),
            self.slack.as_ref().map(|s| &s.url),
            self.pagerduty.as_ref().map(|p| &p.routing_key),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn target(&self) -> Result<Target<'_>> {
        let set: Vec<Target<'_>> = [
            self.alertmanager.as_ref().map(Target::Alertmanager),
            self.webhook.as_ref().map(Target::Webhook),
            self.slack.as_ref().map(Target::Slack),
            self.pagerduty.as_ref().map(Target::PagerDuty),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [one] => Ok(*one),
            _ => Err(Error::invalid(format!(
                "receiver '{}' must set exactly one of alertmanager, webhook, slack, pagerduty (it sets {})",
                self.name,
                set.len()
            ))),
        }
    }
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".to_owned(), "deployment".to_owned()]
}

fn default_repeat_ms() -> u64 {
    4 * 3_600_000
}

/// How alerts are grouped into notifications and how often a firing one is sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Alerts with the same values of these labels go out as one notification.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// A firing alert is notified again after this long (Alertmanager is refreshed every
    /// minute regardless, as Prometheus does, so it never times an alert out).
    #[serde(default = "default_repeat_ms", with = "duration_ms")]
    pub repeat_interval: u64,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            group_by: default_group_by(),
            repeat_interval: default_repeat_ms(),
        }
    }
}

/// The whole alerting configuration, as applied from a rules file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    #[serde(default)]
    pub route: Route,
    #[serde(default)]
    pub rules: Vec<AlertRule>,
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} '{name}' must start with a letter or underscore and hold only letters, digits and underscores (at most 128)"
        )))
    }
}

fn check_url(what: &str, url: &str) -> Result<()> {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.len() > 2_048 || url.chars().any(char::is_whitespace) {
        return Err(Error::invalid(format!(
            "{what} must be an http:// or https:// URL, got '{url}'"
        )));
    }
    Ok(())
}

/// Labels slipway sets itself; a rule may not override them.
pub const RESERVED_LABELS: [&str; 4] = ["alertname", "deployment", "severity", "feature"];

impl AlertConfig {
    /// Everything a rules file can get wrong, in one message per mistake, before anything is
    /// stored.
    pub fn validate(&self) -> Result<()> {
        if self.rules.len() > MAX_RULES || self.receivers.len() > MAX_RECEIVERS {
            return Err(Error::invalid(format!(
                "a rules file holds at most {MAX_RULES} rules and {MAX_RECEIVERS} receivers"
            )));
        }
        let mut receivers = BTreeSet::new();
        for receiver in &self.receivers {
            let ok = !receiver.name.is_empty()
                && receiver.name.len() <= 128
                && receiver
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(Error::invalid(format!(
                    "receiver '{}' must be 1 to 128 letters, digits, '-', '_' or '.'",
                    receiver.name
                )));
            }
            if !receivers.insert(receiver.name.as_str()) {
                return Err(Error::invalid(format!(
                    "receiver '{}' is declared twice",
                    receiver.name
                )));
            }
            for secret in receiver.secrets() {
                match secret.as_str().split_once(':') {
                    Some(("env", name)) if !name.starts_with(SECRET_ENV_PREFIX) => {
                        return Err(Error::invalid(format!(
                            "receiver '{}': {} names a variable the server does not read secrets from: name it {SECRET_ENV_PREFIX}...",
                            receiver.name,
                            secret.as_str()
                        )));
                    }
                    Some(("file", path)) if !path.starts_with('/') || path.contains("/../") => {
                        return Err(Error::invalid(format!(
                            "receiver '{}': {} must be an absolute path without '..' (under the server's --secrets-dir)",
                            receiver.name,
                            secret.as_str()
                        )));
                    }
                    _ => {}
                }
            }
            match receiver.target()? {
                Target::Alertmanager(t) => {
                    check_url(&format!("receiver '{}': url", receiver.name), &t.url)?
                }
                Target::Webhook(t) => {
                    check_url(&format!("receiver '{}': url", receiver.name), &t.url)?
                }
                Target::Slack(_) => {}
                Target::PagerDuty(t) => {
                    if let Some(url) = &t.url {
                        check_url(&format!("receiver '{}': url", receiver.name), url)?
                    }
                }
            }
        }
        if self.route.group_by.len() > MAX_LABELS {
            return Err(Error::invalid(format!(
                "route.group_by names at most {MAX_LABELS} labels"
            )));
        }
        if self.route.repeat_interval < 60_000 {
            return Err(Error::invalid(
                "route.repeat_interval must be at least 1m: a shorter one pages people for the same alert over and over",
            ));
        }
        let mut names = BTreeSet::new();
        for rule in &self.rules {
            check_name("alert", &rule.alert)?;
            let context = |why: String| Error::invalid(format!("rule '{}': {why}", rule.alert));
            if !names.insert((rule.alert.as_str(), rule.deployment.as_str())) {
                return Err(context(format!(
                    "declared twice for deployment '{}'",
                    rule.deployment
                )));
            }
            if rule.deployment != "*" {
                crate::deployment::validate_name(&rule.deployment)
                    .map_err(|e| context(e.to_string()))?;
            }
            if rule.for_ms > MAX_FOR_MS {
                return Err(context("`for` is at most 7 days".into()));
            }
            if rule.expr.signal.source() == Source::Slo {
                // Read from the store's serving minutes, kept for days.
                if !(60_000..=MAX_SLO_WINDOW_MS).contains(&rule.window_ms) {
                    return Err(context(
                        "an slo_burn rule's `window` must be between 1m and 3d".into(),
                    ));
                }
            } else if !(10_000..=MAX_WINDOW_MS).contains(&rule.window_ms) {
                return Err(context(
                    "`window` must be between 10s and 1h (serving measurements are kept an hour)"
                        .into(),
                ));
            }
            if rule.labels.len() > MAX_LABELS {
                return Err(context(format!("at most {MAX_LABELS} labels")));
            }
            for (key, value) in &rule.labels {
                check_name("label", key).map_err(|e| context(e.to_string()))?;
                if RESERVED_LABELS.contains(&key.as_str()) {
                    return Err(context(format!(
                        "label '{key}' is set by slipway (reserved: {})",
                        RESERVED_LABELS.join(", ")
                    )));
                }
                if value.len() > MAX_LABEL_VALUE {
                    return Err(context(format!(
                        "label '{key}' is longer than {MAX_LABEL_VALUE} bytes"
                    )));
                }
            }
            let texts = [Some(&rule.summary), rule.description.as_ref()];
            if texts.iter().flatten().any(|t| t.len() > MAX_TEXT) {
                return Err(context(format!(
                    "summary and description are at most {MAX_TEXT} bytes"
                )));
            }
            if let Some(url) = &rule.runbook_url {
                check_url("runbook_url", url).map_err(|e| context(e.to_string()))?;
            }
            if rule.deployment != "*"
                && self
                    .rules
                    .iter()
                    .any(|other| other.alert == rule.alert && other.deployment == "*")
            {
                // Both would raise the same alert (same labels) on that deployment, and each
                // would resolve what the other fired.
                return Err(context(format!(
                    "also declared for every deployment (*): give the rule for '{}' another alert name",
                    rule.deployment
                )));
            }
            if let Some(wanted) = &rule.receivers {
                for name in wanted {
                    if !receivers.contains(name.as_str()) {
                        return Err(context(format!(
                            "receiver '{name}' is not declared under receivers"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// The receivers a rule's alerts go to.
    pub fn receivers_of<'a>(&'a self, rule: &'a AlertRule) -> Vec<&'a Receiver> {
        match &rule.receivers {
            Some(names) => names.iter().filter_map(|n| self.receiver(n)).collect(),
            None => self.receivers.iter().collect(),
        }
    }

    /// What applying `next` over `self` changes, by name.
    pub fn diff(&self, next: &AlertConfig) -> ConfigDiff {
        fn by_name<'a, T: PartialEq + 'a>(
            old: impl Iterator<Item = (String, &'a T)>,
            new: impl Iterator<Item = (String, &'a T)>,
        ) -> (Vec<String>, Vec<String>, Vec<String>) {
            let old: BTreeMap<String, &T> = old.collect();
            let new: BTreeMap<String, &T> = new.collect();
            let added = new.keys().filter(|k| !old.contains_key(*k)).cloned();
            let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned();
            let changed = new
                .iter()
                .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
                .map(|(k, _)| k.clone());
            (added.collect(), changed.collect(), removed.collect())
        }
        let rule_key = |r: &AlertRule| format!("{}@{}", r.alert, r.deployment);
        let (rules_added, rules_changed, rules_removed) = by_name(
            self.rules.iter().map(|r| (rule_key(r), r)),
            next.rules.iter().map(|r| (rule_key(r), r)),
        );
        let (receivers_added, receivers_changed, receivers_removed) = by_name(
            self.receivers.iter().map(|r| (r.name.clone(), r)),
            next.receivers.iter().map(|r| (r.name.clone(), r)),
        );
        ConfigDiff {
            rules_added,
            rules_changed,
            rules_removed,
            receivers_added,
            receivers_changed,
            receivers_removed,
            route_changed: self.route != next.route,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    pub rules_added: Vec<String>,
    pub rules_changed: Vec<String>,
    pub rules_removed: Vec<String>,
    pub receivers_added: Vec<String>,
    pub receivers_changed: Vec<String>,
    pub receivers_removed: Vec<String>,
    pub route_changed: bool,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self
            == ConfigDiff {
                rules_added: vec![],
                rules_changed: vec![],
                rules_removed: vec![],
                receivers_added: vec![],
                receivers_changed: vec![],
                receivers_removed: vec![],
                route_changed: false,
            }
    }
}

/// One message to one receiver: the alerts of one group that changed (or are due again).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub receiver: Receiver,
    /// `firing` when any alert in it fires, else `resolved` (Alertmanager's webhook rule).
    pub status: AlertState,
    /// The route's `group_by` labels and their values.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert in the group shares.
    pub common_labels: BTreeMap<String, String>,
    pub alerts: Vec<Alert>,
    /// The server's own URL, for links back (`generatorURL`).
    pub external_url: String,
    pub now_ms: i64,
}

/// The stored configuration with who applied it.
pub type StoredAlertConfig = crate::Revisioned<AlertConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: serde_json::Value) -> Result<AlertConfig> {
        let config: AlertConfig =
            serde_json::from_value(text).map_err(|e| Error::invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_rules_file_reads_with_defaults() {
        let c = config(serde_json::json!({
            "receivers": [
                {"name": "oncall", "alertmanager": {"url": "http://127.0.0.1:9093"}},
                {"name": "pager", "pagerduty": {"routing_key": "env:SLIPWAY_SECRET_PD_KEY"}}
            ],
            "rules": [{"alert": "Drift", "expr": "drift_share >= 0.5", "for": "2m",
                       "runbook_url": "https://runbooks.example/drift", "receivers": ["oncall"]}]
        }))
        .unwrap();
        let rule = &c.rules[0];
        assert_eq!(rule.for_ms, 120_000);
        assert_eq!(rule.window_ms, 300_000);
        assert_eq!(rule.deployment, "*");
        assert_eq!(rule.severity, Severity::Warning);
        assert_eq!(c.route.group_by, ["alertname", "deployment"]);
        assert_eq!(c.receivers_of(rule).len(), 1);
        // Written back and read again, it is the same configuration.
        let again: AlertConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn mistakes_in_a_rules_file_are_named() {
        let receiver = |r: serde_json::Value| serde_json::json!({"receivers": [r]});
        for (document, says) in [
            (
                receiver(
                    serde_json::json!({"name": "s", "slack": {"url": "https://hooks.slack.com/x"}}),
                ),
                "never by value",
            ),
            (receiver(serde_json::json!({"name": "n"})), "exactly one of"),
            (
                receiver(serde_json::json!({"name": "a", "alertmanager": {"url": "ftp://x"}})),
                "http:// or https://",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "error_rate > 1", "receivers": ["x"]}]}),
                "not declared",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "error_rate > 1", "labels": {"severity": "x"}}]}),
                "reserved",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A b", "expr": "error_rate > 1"}]}),
                "letters, digits",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "error_rate > 1", "for": "soon"}]}),
                "not a duration",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "error_rate > 1", "window": "2h"}]}),
                "between 10s and 1h",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "error_rate > 1"}, {"alert": "A", "expr": "no_traffic"}]}),
                "declared twice",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "error_rate > 1", "sumary": "x"}]}),
                "unknown field",
            ),
            (
                serde_json::json!({"route": {"repeat_interval": "10s"}}),
                "at least 1m",
            ),
            (
                serde_json::json!({"rules": [{"alert": "A", "expr": "no_traffic"}, {"alert": "A", "deployment": "fraud", "expr": "no_traffic"}]}),
                "another alert name",
            ),
        ] {
            let error = config(document.clone()).unwrap_err().to_string();
            assert!(error.contains(says), "{document}: {error}");
        }
    }

    #[test]
    fn a_diff_names_what_changes() {
        let old = config(serde_json::json!({"rules": [
            {"alert": "A", "expr": "error_rate > 0.1"},
            {"alert": "B", "expr": "no_traffic"}
        ]}))
        .unwrap();
        let new = config(serde_json::json!({"rules": [
            {"alert": "A", "expr": "error_rate > 0.2"},
            {"alert": "C", "expr": "no_traffic"}
        ]}))
        .unwrap();
        let diff = old.diff(&new);
        assert_eq!(diff.rules_added, ["C@*"]);
        assert_eq!(diff.rules_changed, ["A@*"]);
        assert_eq!(diff.rules_removed, ["B@*"]);
        assert!(old.diff(&old).is_empty());
    }
}
