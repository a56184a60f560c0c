//! Alert notifications to their receivers: Alertmanager's API, a signed JSON webhook, a Slack
//! incoming webhook, PagerDuty's Events API v2.
//!
//! The payload builders are pure so their shapes are tested without a network. Delivery
//! resolves a receiver's secret for every notification, so a rotated secret file is picked up
//! without a restart, and keeps the secret's value out of every error and log line: errors end
//! up in the alert history, which anyone who may read alerts sees.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use slipway_core::alerting::state::show_value;
use slipway_core::alerting::{
    Alert, AlertState, AlertmanagerTarget, Notification, PAGERDUTY_EVENTS_URL, PagerDutyTarget,
    SecretRef, SlackTarget, Target, WebhookTarget,
};
use slipway_core::ports::AlertSink;
use slipway_core::validate::truncate_value;

const ATTEMPTS: usize = 3;
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(500), Duration::from_secs(1)];
/// Alertmanager resolves an alert by itself once its `endsAt` passes. Firing alerts are sent
/// again every minute, so five minutes survives a few missed evaluations, and if slipway stops
/// (or the rule is deleted) the alert still ends instead of firing forever.
const ALERTMANAGER_HOLD_MS: i64 = 5 * 60_000;
/// A secret is a key or a URL; anything bigger is the wrong file.
const MAX_SECRET_FILE: u64 = 64 * 1024;
/// Enough of a refusal to see why (Slack's `no_service`, PagerDuty's validation errors)
/// without copying a whole HTML error page into the alert history.
const MAX_ERROR_BODY_CHARS: usize = 200;
/// Read this much of a refused response before cutting it down, so a secret the receiver
/// echoes back is redacted whole rather than cut in half where the redaction cannot see it.
const MAX_ERROR_BODY_READ: usize = 8 * 1024;
/// Slack refuses a message of more than 50 blocks, and ten alerts is already a long message.
const SLACK_MAX_ALERTS: usize = 10;
/// Slack's limit on a section's text is 3,000 characters; these leave room for the rest.
const SLACK_MAX_SUMMARY: usize = 1_000;
const SLACK_MAX_TITLE: usize = 500;
/// PagerDuty refuses a longer `payload.summary`.
const PAGERDUTY_MAX_SUMMARY: usize = 1_024;
/// Go's zero time: what Alertmanager's own webhook sends as the end of an alert still firing,
/// so receivers written for Alertmanager read slipway's payload unchanged.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The last millisecond of year 9999: RFC 3339 has four-digit years, and humantime panics
/// past it (and before 1970).
const LATEST_MS: i64 = 253_402_300_799_999;

/// Delivers notifications over HTTP to whichever kind of receiver they name.
#[derive(Clone)]
pub struct Receivers {
    client: reqwest::Client,
    secrets: SecretPolicy,
}

/// What secret references the server resolves: environment variables with a prefix, and files
/// under the directories the operator named. An admin writes the rules file, but must not be
/// able to point a receiver at any variable (the store's password) or any file (a TLS key) of
/// the server's and have it sent to a URL of their choosing.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    pub env_prefix: String,
    pub dirs: Vec<std::path::PathBuf>,
}

impl SecretPolicy {
    pub fn server(dirs: Vec<std::path::PathBuf>) -> SecretPolicy {
        SecretPolicy {
            env_prefix: slipway_core::alerting::SECRET_ENV_PREFIX.to_owned(),
            dirs,
        }
    }
}

impl Receivers {
    pub fn new(secrets: SecretPolicy) -> anyhow::Result<Receivers> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            // A 301 or 302 turns the POST into a GET without the body, which the new location
            // may well answer with 200: the notification would be lost yet counted delivered.
            // A redirect is reported instead, as the configuration mistake it is.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Receivers { client, secrets })
    }

    async fn to_alertmanager(
        &self,
        delivery: &Delivery<'_>,
        target: &AlertmanagerTarget,
        notification: &Notification,
    ) -> Result<(), String> {
        let url = parse_url(&alertmanager_url(&target.url))?;
        let body = to_bytes(&alertmanager_body(notification))?;
        self.post(delivery, || self.json_post(&url, &body)).await
    }

    async fn to_webhook(
        &self,
        delivery: &mut Delivery<'_>,
        target: &WebhookTarget,
        notification: &Notification,
    ) -> Result<(), String> {
        let key = target
            .secret
            .as_ref()
            .map(|secret| resolve_secret(&self.secrets, secret))
            .transpose()?;
        delivery.secrets.extend(key.clone());
        let url = parse_url(&target.url)?;
        // Serialized once: the signature covers exactly the bytes sent.
        let body = to_bytes(&webhook_body(notification))?;
        self.post(delivery, || {
            let request = self.json_post(&url, &body);
            match &key {
                // Signed at each attempt, so a retry carries a fresh timestamp and a receiver
                // that refuses stale ones still accepts it.
                Some(key) => {
                    let timestamp = unix_seconds().to_string();
                    let signature = sign(key.as_bytes(), &timestamp, &body);
                    request
                        .header("X-Slipway-Timestamp", timestamp)
                        .header("X-Slipway-Signature", signature)
                }
                None => request,
            }
        })
        .await
    }

    async fn to_slack(
        &self,
        delivery: &mut Delivery<'_>,
        target: &SlackTarget,
        notification: &Notification,
    ) -> Result<(), String> {
        let text = resolve_secret(&self.secrets, &target.url)?;
        delivery.secrets.push(text.clone());
        // The URL is the credential: messages name where it came from, never what it is.
        let reference = target.url.as_str();
        if !(text.starts_with("https://") || text.starts_with("http://")) {
            return Err(format!(
                "the Slack URL from {reference} is not an http(s) URL"
            ));
        }
        let url = reqwest::Url::parse(&text)
            .map_err(|_| format!("the Slack URL from {reference} is not a valid URL"))?;
        let body = to_bytes(&slack_body(notification))?;
        self.post(delivery, || self.json_post(&url, &body)).await
    }

    async fn to_pagerduty(
        &self,
        delivery: &mut Delivery<'_>,
        target: &PagerDutyTarget,
        notification: &Notification,
    ) -> Result<(), String> {
        let routing_key = resolve_secret(&self.secrets, &target.routing_key)?;
        delivery.secrets.push(routing_key.clone());
        let url = parse_url(target.url.as_deref().unwrap_or(PAGERDUTY_EVENTS_URL))?;
        let events = pagerduty_events(notification, &routing_key);
        // Each alert is its own incident: one refused event must not keep the others from
        // being opened or closed.
        let mut failures = Vec::new();
        for event in &events {
            let body = to_bytes(event)?;
            if let Err(why) = self.post(delivery, || self.json_post(&url, &body)).await {
                let dedup_key = event["dedup_key"].as_str().unwrap_or_default();
                failures.push(format!("{dedup_key}: {why}"));
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 3;
        let mut why = format!(
            "{} of {} events failed: {}",
            failures.len(),
            events.len(),
            failures[..failures.len().min(SHOWN)].join("; ")
        );
        if failures.len() > SHOWN {
            why.push_str(&format!("; and {} more", failures.len() - SHOWN));
        }
        Err(why)
    }

    fn json_post(&self, url: &reqwest::Url, body: &[u8]) -> reqwest::RequestBuilder {
        self.client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
    }

    /// Sends what `request` builds until the receiver accepts it, retrying what may pass on a
    /// second try (no connection, a timeout, 5xx, 429) but not a refusal that will not (other
    /// 4xx): that is a mistake in the configuration, and retrying only delays saying so.
    async fn post(
        &self,
        delivery: &Delivery<'_>,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(), String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (why, retry) = match request().send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let body = delivery.redact(&read_prefix(response).await);
                    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
                    let body = truncate_value(body, MAX_ERROR_BODY_CHARS);
                    let why = if body.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {body}")
                    };
                    let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    (why, retry)
                }
                Err(error) => {
                    let retry = !error.is_builder();
                    // reqwest names the URL in its errors, and a Slack URL is a credential.
                    (delivery.redact(&error_chain(&error.without_url())), retry)
                }
            };
            if !retry {
                return Err(why);
            }
            let Some(delay) = BACKOFF.get(attempt - 1) else {
                return Err(format!("{why} (gave up after {ATTEMPTS} attempts)"));
            };
            tracing::warn!(
                receiver = delivery.receiver, kind = delivery.kind, attempt, error = %why,
                "alert receiver did not accept a notification; trying again"
            );
            tokio::time::sleep(*delay).await;
        }
    }
}

#[async_trait]
impl AlertSink for Receivers {
    async fn deliver(&self, notification: &Notification) -> Result<(), String> {
        let receiver = &notification.receiver;
        let target = receiver
            .target()
            .map_err(|e| format!("receiver '{}': {e}", receiver.name))?;
        let mut delivery = Delivery {
            receiver: &receiver.name,
            kind: target.kind(),
            secrets: Vec::new(),
        };
        let outcome = match target {
            Target::Alertmanager(t) => self.to_alertmanager(&delivery, t, notification).await,
            Target::Webhook(t) => self.to_webhook(&mut delivery, t, notification).await,
            Target::Slack(t) => self.to_slack(&mut delivery, t, notification).await,
            Target::PagerDuty(t) => self.to_pagerduty(&mut delivery, t, notification).await,
        };
        outcome.map_err(|why| format!("receiver '{}' ({}): {why}", receiver.name, target.kind()))
    }
}

/// One notification on its way: whom it is for, for messages, and the secret values those
/// messages must not contain.
struct Delivery<'a> {
    receiver: &'a str,
    kind: &'static str,
    secrets: Vec<String>,
}

impl Delivery<'_> {
    /// A receiver may echo what it was sent (PagerDuty quotes a refused event), and what it
    /// was sent holds the routing key or sits at the secret URL.
    fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|secret| !secret.is_empty())
            .fold(text.to_owned(), |text, secret| {
                text.replace(secret.as_str(), "[redacted]")
            })
    }
}

/// The value a secret reference points at: `env:NAME` is the server's environment variable,
/// `file:PATH` a file's content trimmed of surrounding whitespace (as a mounted Kubernetes
/// Secret ends with a newline). Errors name the reference, never any content.
pub fn resolve_secret(policy: &SecretPolicy, secret: &SecretRef) -> Result<String, String> {
    match secret.as_str().split_once(':') {
        // Checked again though SecretRef checks it: std::env::var may panic on a name with
        // `=` or NUL in it.
        Some(("env", name)) if !name.starts_with(&policy.env_prefix) => Err(format!(
            "environment variable {name} may not hold a secret: only those named {}* are read",
            policy.env_prefix
        )),
        Some(("env", name))
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(value),
                Ok(_) | Err(std::env::VarError::NotPresent) => {
                    Err(format!("environment variable {name} is not set"))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("environment variable {name} is not UTF-8 text"))
                }
            }
        }
        Some(("file", path)) if !path.is_empty() => {
            let real = std::fs::canonicalize(path)
                .map_err(|e| format!("cannot read the secret file {path}: {e}"))?;
            // A pod's service-account token is a credential to the cluster, never a
            // receiver's secret, whatever folder was allowed.
            let cluster_credential = real
                .to_string_lossy()
                .contains("kubernetes.io/serviceaccount");
            let allowed = !cluster_credential
                && policy
                    .dirs
                    .iter()
                    .any(|dir| std::fs::canonicalize(dir).is_ok_and(|dir| real.starts_with(dir)));
            if !allowed {
                let dirs: Vec<String> = policy
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                return Err(format!(
                    "the secret file {path} is outside the directories secrets are read from ({}; slipway server --secrets-dir)",
                    if dirs.is_empty() {
                        "none".to_owned()
                    } else {
                        dirs.join(", ")
                    }
                ));
            }
            // The path checked is the path read: a link swapped in between cannot redirect it.
            read_secret_file(&real.to_string_lossy())
        }
        _ => Err("a secret reference must be env:NAME or file:PATH".to_owned()),
    }
}

fn read_secret_file(path: &str) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read the secret file {path}: {e}");
    let file = std::fs::File::open(path).map_err(cannot)?;
    // Bounded by reading, not by the size the file claims: /dev/zero claims nothing.
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_SECRET_FILE) {
        return Err(format!("the secret file {path} is larger than 64 KiB"));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the secret file {path} is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        // An empty HMAC key would sign with no secret at all.
        return Err(format!("the secret file {path} is empty"));
    }
    Ok(text.to_owned())
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>`, the `X-Slipway-Signature` of a
/// webhook. The timestamp is signed with the body so a captured request cannot be replayed
/// later under a new timestamp.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(keyed(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `signature` (`sha256=<hex>`) is [`sign`]'s for this body and timestamp, compared
/// in constant time so timing does not reveal how much of a forgery was right. Receivers
/// should also refuse timestamps far from their own clock.
#[cfg(test)]
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(tag) = signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    keyed(secret, timestamp, body).verify_slice(&tag).is_ok()
}

fn keyed(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC hashes a long key down and pads a short one: every length is valid.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Where Alertmanager takes alerts, under the receiver's base URL.
pub fn alertmanager_url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// The `postableAlerts` array of Alertmanager's `POST /api/v2/alerts`.
pub fn alertmanager_body(notification: &Notification) -> Value {
    let alerts = notification.alerts.iter().map(|alert| {
        let mut annotations = alert.annotations.clone();
        if let Some(value) = alert.value {
            annotations.insert("value".to_owned(), show_value(value));
        }
        let ends_ms = if is_resolved(alert) {
            alert.resolved_ms.unwrap_or(notification.now_ms)
        } else {
            notification.now_ms.saturating_add(ALERTMANAGER_HOLD_MS)
        };
        json!({
            "labels": alert.labels,
            "annotations": annotations,
            "startsAt": rfc3339(starts_ms(alert)),
            "endsAt": rfc3339(ends_ms),
            "generatorURL": generator_url(notification, alert),
        })
    });
    Value::Array(alerts.collect())
}

/// The JSON of a webhook receiver: Alertmanager's own webhook payload (version 4), so
/// receivers written for Alertmanager read it unchanged, with each alert's `value` added.
pub fn webhook_body(notification: &Notification) -> Value {
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|alert| {
            let resolved = is_resolved(alert);
            let ends_at = if resolved {
                rfc3339(alert.resolved_ms.unwrap_or(notification.now_ms))
            } else {
                ZERO_TIME.to_owned()
            };
            json!({
                "status": status_text(resolved),
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": rfc3339(starts_ms(alert)),
                "endsAt": ends_at,
                "generatorURL": generator_url(notification, alert),
                "fingerprint": alert.fingerprint,
                "value": alert.value,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key(&notification.group_labels),
        "truncatedAlerts": 0,
        "status": status_text(notification.status == AlertState::Resolved),
        "receiver": notification.receiver.name,
        "groupLabels": notification.group_labels,
        "commonLabels": notification.common_labels,
        "commonAnnotations": common_annotations(&notification.alerts),
        "externalURL": notification.external_url,
        "alerts": alerts,
    })
}

/// A Slack incoming webhook's message: `text` for the notification itself (and clients
/// without blocks), blocks with one section per alert.
pub fn slack_body(notification: &Notification) -> Value {
    let title = slack_escape(&slack_title(notification));
    let mut blocks = vec![slack_section(format!("*{title}*"))];
    for alert in notification.alerts.iter().take(SLACK_MAX_ALERTS) {
        blocks.push(slack_section(slack_alert_text(notification, alert)));
    }
    let more = notification.alerts.len().saturating_sub(SLACK_MAX_ALERTS);
    if more > 0 {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("and {more} more")}],
        }));
    }
    json!({"text": title, "blocks": blocks})
}

/// PagerDuty Events API v2 bodies, one per alert: a trigger for a firing alert, a resolve for
/// a resolved one. Both carry the same `dedup_key`, which is how PagerDuty knows which
/// incident a resolve closes.
pub fn pagerduty_events(notification: &Notification, routing_key: &str) -> Vec<Value> {
    notification
        .alerts
        .iter()
        .map(|alert| {
            let mut event = Map::new();
            event.insert("routing_key".into(), json!(routing_key));
            let action = if is_resolved(alert) {
                "resolve"
            } else {
                "trigger"
            };
            event.insert("event_action".into(), json!(action));
            event.insert(
                "dedup_key".into(),
                json!(format!("slipway-{}", alert.fingerprint)),
            );
            if is_resolved(alert) {
                return Value::Object(event);
            }
            let source = match alert.deployment() {
                "" => "slipway",
                deployment => deployment,
            };
            event.insert(
                "payload".into(),
                json!({
                    "summary": truncate_value(summary_of(alert), PAGERDUTY_MAX_SUMMARY),
                    "source": source,
                    "severity": pagerduty_severity(alert.labels.get("severity").map(String::as_str)),
                    "component": "slipway",
                    "group": alert.name(),
                    "timestamp": rfc3339(starts_ms(alert)),
                    "custom_details": {
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "value": alert.value,
                    },
                }),
            );
            if let Some(url) = runbook_url(alert) {
                event.insert("links".into(), json!([{"href": url, "text": "Runbook"}]));
            }
            event.insert("client".into(), json!("slipway"));
            // PagerDuty shows it as a link back; an empty one would be a broken link.
            if !notification.external_url.is_empty() {
                event.insert("client_url".into(), json!(notification.external_url));
            }
            Value::Object(event)
        })
        .collect()
}

/// PagerDuty knows exactly these four severities and refuses any other; an unknown label
/// value pages as a warning rather than losing the alert.
fn pagerduty_severity(label: Option<&str>) -> &'static str {
    match label {
        Some("critical") => "critical",
        Some("error") => "error",
        Some("info") => "info",
        _ => "warning",
    }
}

fn is_resolved(alert: &Alert) -> bool {
    alert.state == AlertState::Resolved
}

fn status_text(resolved: bool) -> &'static str {
    if resolved { "resolved" } else { "firing" }
}

/// When the alert fired; an alert without that (sent while pending) began when its condition
/// did.
fn starts_ms(alert: &Alert) -> i64 {
    alert.fired_ms.unwrap_or(alert.active_since_ms)
}

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, LATEST_MS).unsigned_abs());
    humantime::format_rfc3339_millis(at).to_string()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn generator_url(notification: &Notification, alert: &Alert) -> String {
    format!(
        "{}/api/slipway/v1/alerts?fingerprint={}",
        notification.external_url.trim_end_matches('/'),
        query_escape(&alert.fingerprint)
    )
}

/// Percent-encodes all but RFC 3986's unreserved characters. Fingerprints are hex, but the
/// store is not this module's to trust.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Alertmanager's form, `{}:{alertname="A", deployment="d"}`: the same group always gives the
/// same key, which receivers use to thread or deduplicate messages.
fn group_key(group_labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = group_labels
        .iter()
        .map(|(key, value)| format!("{key}={value:?}"))
        .collect();
    format!("{{}}:{{{}}}", pairs.join(", "))
}

fn common_annotations(alerts: &[Alert]) -> BTreeMap<String, String> {
    let Some((first, rest)) = alerts.split_first() else {
        return BTreeMap::new();
    };
    first
        .annotations
        .iter()
        .filter(|(key, value)| rest.iter().all(|a| a.annotations.get(*key) == Some(*value)))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The rule's summary, or, for a rule without one, what the alert is about.
fn summary_of(alert: &Alert) -> String {
    match alert.annotations.get("summary").map(|s| s.trim()) {
        Some(summary) if !summary.is_empty() => summary.to_owned(),
        _ => {
            let about = format!("{} {}", alert.name(), alert.deployment());
            match about.trim() {
                "" => format!("alert {}", alert.fingerprint),
                about => about.to_owned(),
            }
        }
    }
}

/// Only http(s) links are offered: a rule's runbook URL is checked when applied, but a
/// `javascript:` link in a chat message is not worth trusting that.
fn runbook_url(alert: &Alert) -> Option<&str> {
    alert
        .annotations
        .get("runbook_url")
        .map(String::as_str)
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
}

/// `[FIRING:2] FeatureDrift fraud`, as Alertmanager titles its Slack messages: the status,
/// how many fire, and the group's label values.
fn slack_title(notification: &Notification) -> String {
    let status = if notification.status == AlertState::Resolved {
        "[RESOLVED]".to_owned()
    } else {
        let firing = notification
            .alerts
            .iter()
            .filter(|a| !is_resolved(a))
            .count();
        format!("[FIRING:{firing}]")
    };
    let group: Vec<&str> = notification
        .group_labels
        .values()
        .map(String::as_str)
        .collect();
    let title = if group.is_empty() {
        status
    } else {
        format!("{status} {}", group.join(" "))
    };
    truncate_value(title, SLACK_MAX_TITLE)
}

fn slack_alert_text(notification: &Notification, alert: &Alert) -> String {
    // Cut before escaping, so the cut cannot fall inside an `&amp;`.
    let summary = truncate_value(summary_of(alert), SLACK_MAX_SUMMARY);
    let mut text = format!("*{}*", slack_escape(&summary));
    if is_resolved(alert) && notification.status != AlertState::Resolved {
        text.push_str(" (resolved)");
    }
    let mut facts = Vec::new();
    if let Some(severity) = alert.labels.get("severity") {
        facts.push(format!("*Severity:* {}", slack_escape(severity)));
    }
    if !alert.deployment().is_empty() {
        facts.push(format!(
            "*Deployment:* {}",
            slack_escape(alert.deployment())
        ));
    }
    if let Some(value) = alert.value {
        facts.push(format!("*Value:* {}", show_value(value)));
    }
    if !facts.is_empty() {
        text.push('\n');
        text.push_str(&facts.join("   "));
    }
    if let Some(url) = runbook_url(alert) {
        // `|` ends a link's target in Slack's syntax.
        let target = slack_escape(url).replace('|', "%7C");
        text.push_str(&format!("\n<{target}|Runbook>"));
    }
    text
}

fn slack_section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Slack reads `<...>` as links and mentions (`<!channel>`) and `&` as the start of an
/// entity; label values must show as written, not ping a channel.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn parse_url(text: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))
}

fn to_bytes(value: &Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot serialize the notification: {e}"))
}

async fn read_prefix(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An error with its causes: reqwest's own message ("error sending request") says nothing of
/// why; the cause ("connection refused", "dns error") does.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::HeaderMap;
    use slipway_core::alerting::Receiver;

    use super::*;

    const FIRED_MS: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
    const NOW_MS: i64 = FIRED_MS + 60_000;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn receiver(name: &str) -> Receiver {
        Receiver {
            name: name.to_owned(),
            alertmanager: None,
            webhook: None,
            slack: None,
            pagerduty: None,
        }
    }

    fn secret(reference: &str) -> SecretRef {
        SecretRef::try_from(reference.to_owned()).unwrap()
    }

    fn drift_alert(feature: &str, fingerprint: &str) -> Alert {
        Alert {
            id: 1,
            fingerprint: fingerprint.to_owned(),
            labels: map(&[
                ("alertname", "FeatureDrift"),
                ("deployment", "fraud"),
                ("feature", feature),
                ("severity", "critical"),
            ]),
            annotations: map(&[
                ("description", "d"),
                ("summary", &format!("Feature {feature} drifted")),
            ]),
            state: AlertState::Firing,
            value: None,
            active_since_ms: FIRED_MS - 120_000,
            fired_ms: Some(FIRED_MS),
            resolved_ms: None,
            updated_ms: NOW_MS,
        }
    }

    /// Two firing alerts of one group: the first with a value, a runbook and a summary that
    /// needs escaping; the second fired 30 s later with neither.
    fn firing() -> Notification {
        let mut first = drift_alert("amount", "aaaa000000000001");
        first.value = Some(0.61234);
        first.annotations.insert(
            "summary".into(),
            "Feature amount drifted <PSI> & more".into(),
        );
        first.annotations.insert(
            "runbook_url".into(),
            "https://runbooks.example/drift?a=1&b=2".into(),
        );
        let mut second = drift_alert("country", "aaaa000000000002");
        second.fired_ms = Some(FIRED_MS + 30_000);
        Notification {
            receiver: receiver("oncall"),
            status: AlertState::Firing,
            group_labels: map(&[("alertname", "FeatureDrift"), ("deployment", "fraud")]),
            common_labels: map(&[
                ("alertname", "FeatureDrift"),
                ("deployment", "fraud"),
                ("severity", "critical"),
            ]),
            alerts: vec![first, second],
            external_url: "https://slipway.example/".into(),
            now_ms: NOW_MS,
        }
    }

    fn resolved() -> Notification {
        let mut notification = firing();
        notification.status = AlertState::Resolved;
        notification.alerts.truncate(1);
        let alert = &mut notification.alerts[0];
        alert.state = AlertState::Resolved;
        alert.resolved_ms = Some(FIRED_MS + 120_000);
        notification
    }

    #[test]
    fn alertmanager_gets_postable_alerts_that_time_out_unless_refreshed() {
        assert_eq!(
            alertmanager_body(&firing()),
            json!([
                {
                    "labels": {"alertname": "FeatureDrift", "deployment": "fraud", "feature": "amount", "severity": "critical"},
                    "annotations": {
                        "description": "d",
                        "runbook_url": "https://runbooks.example/drift?a=1&b=2",
                        "summary": "Feature amount drifted <PSI> & more",
                        "value": "0.6123",
                    },
                    "startsAt": "2023-11-14T22:13:20.000Z",
                    // now (22:14:20) + 5 minutes
                    "endsAt": "2023-11-14T22:19:20.000Z",
                    "generatorURL": "https://slipway.example/api/slipway/v1/alerts?fingerprint=aaaa000000000001",
                },
                {
                    "labels": {"alertname": "FeatureDrift", "deployment": "fraud", "feature": "country", "severity": "critical"},
                    "annotations": {"description": "d", "summary": "Feature country drifted"},
                    "startsAt": "2023-11-14T22:13:50.000Z",
                    "endsAt": "2023-11-14T22:19:20.000Z",
                    "generatorURL": "https://slipway.example/api/slipway/v1/alerts?fingerprint=aaaa000000000002",
                },
            ])
        );
        let body = alertmanager_body(&resolved());
        assert_eq!(body[0]["endsAt"], "2023-11-14T22:15:20.000Z");
        assert_eq!(body[0]["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            alertmanager_url("http://am:9093/"),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alertmanager_url("http://am:9093/prefix"),
            "http://am:9093/prefix/api/v2/alerts"
        );
    }

    #[test]
    fn webhooks_get_alertmanagers_webhook_payload() {
        let mut notification = firing();
        notification.receiver = receiver("hook");
        assert_eq!(
            webhook_body(&notification),
            json!({
                "version": "4",
                "groupKey": "{}:{alertname=\"FeatureDrift\", deployment=\"fraud\"}",
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "hook",
                "groupLabels": {"alertname": "FeatureDrift", "deployment": "fraud"},
                "commonLabels": {"alertname": "FeatureDrift", "deployment": "fraud", "severity": "critical"},
                "commonAnnotations": {"description": "d"},
                "externalURL": "https://slipway.example/",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "FeatureDrift", "deployment": "fraud", "feature": "amount", "severity": "critical"},
                        "annotations": {
                            "description": "d",
                            "runbook_url": "https://runbooks.example/drift?a=1&b=2",
                            "summary": "Feature amount drifted <PSI> & more",
                        },
                        "startsAt": "2023-11-14T22:13:20.000Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "https://slipway.example/api/slipway/v1/alerts?fingerprint=aaaa000000000001",
                        "fingerprint": "aaaa000000000001",
                        "value": 0.61234,
                    },
                    {
                        "status": "firing",
                        "labels": {"alertname": "FeatureDrift", "deployment": "fraud", "feature": "country", "severity": "critical"},
                        "annotations": {"description": "d", "summary": "Feature country drifted"},
                        "startsAt": "2023-11-14T22:13:50.000Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "https://slipway.example/api/slipway/v1/alerts?fingerprint=aaaa000000000002",
                        "fingerprint": "aaaa000000000002",
                        "value": null,
                    },
                ],
            })
        );
        let body = webhook_body(&resolved());
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["alerts"][0]["status"], "resolved");
        assert_eq!(body["alerts"][0]["endsAt"], "2023-11-14T22:15:20.000Z");
        // A single alert shares all its annotations with itself.
        assert_eq!(
            body["commonAnnotations"],
            json!(notification.alerts[0].annotations)
        );
    }

    #[test]
    fn slack_gets_escaped_sections_with_a_runbook_link() {
        assert_eq!(
            slack_body(&firing()),
            json!({
                "text": "[FIRING:2] FeatureDrift fraud",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": "*[FIRING:2] FeatureDrift fraud*"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text":
                        "*Feature amount drifted &lt;PSI&gt; &amp; more*\n*Severity:* critical   *Deployment:* fraud   *Value:* 0.6123\n<https://runbooks.example/drift?a=1&amp;b=2|Runbook>"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text":
                        "*Feature country drifted*\n*Severity:* critical   *Deployment:* fraud"}},
                ],
            })
        );
        let body = slack_body(&resolved());
        assert_eq!(body["text"], "[RESOLVED] FeatureDrift fraud");

        // Label values cannot ping a channel or open a link.
        let mut notification = firing();
        notification.group_labels = map(&[("deployment", "<!channel> a&b")]);
        let alert = &mut notification.alerts[1];
        alert.annotations.remove("summary");
        alert
            .labels
            .insert("deployment".into(), "<https://evil|x>".into());
        alert
            .annotations
            .insert("runbook_url".into(), "javascript:alert(1)".into());
        let body = slack_body(&notification);
        assert_eq!(body["text"], "[FIRING:2] &lt;!channel&gt; a&amp;b");
        assert_eq!(
            body["blocks"][2]["text"]["text"],
            "*FeatureDrift &lt;https://evil|x&gt;*\n*Severity:* critical   *Deployment:* &lt;https://evil|x&gt;"
        );

        // At most ten alerts, then how many more.
        let mut notification = firing();
        notification.alerts = (0..13)
            .map(|i| drift_alert(&format!("f{i}"), &format!("{i:016x}")))
            .collect();
        let body = slack_body(&notification);
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 12);
        assert_eq!(
            blocks[11],
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "and 3 more"}]})
        );
        assert_eq!(body["text"], "[FIRING:13] FeatureDrift fraud");
    }

    #[test]
    fn pagerduty_triggers_and_resolves_the_same_incident() {
        let events = pagerduty_events(&firing(), "routing-key");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            json!({
                "routing_key": "routing-key",
                "event_action": "trigger",
                "dedup_key": "slipway-aaaa000000000001",
                "payload": {
                    "summary": "Feature amount drifted <PSI> & more",
                    "source": "fraud",
                    "severity": "critical",
                    "component": "slipway",
                    "group": "FeatureDrift",
                    "timestamp": "2023-11-14T22:13:20.000Z",
                    "custom_details": {
                        "labels": {"alertname": "FeatureDrift", "deployment": "fraud", "feature": "amount", "severity": "critical"},
                        "annotations": {
                            "description": "d",
                            "runbook_url": "https://runbooks.example/drift?a=1&b=2",
                            "summary": "Feature amount drifted <PSI> & more",
                        },
                        "value": 0.61234,
                    },
                },
                "links": [{"href": "https://runbooks.example/drift?a=1&b=2", "text": "Runbook"}],
                "client": "slipway",
                "client_url": "https://slipway.example/",
            })
        );
        assert!(events[1].get("links").is_none());

        let resolve = pagerduty_events(&resolved(), "routing-key");
        assert_eq!(
            resolve,
            [json!({
                "routing_key": "routing-key",
                "event_action": "resolve",
                "dedup_key": "slipway-aaaa000000000001",
            })]
        );
        assert_eq!(events[0]["dedup_key"], resolve[0]["dedup_key"]);

        for (label, severity) in [
            (Some("critical"), "critical"),
            (Some("error"), "error"),
            (Some("warning"), "warning"),
            (Some("info"), "info"),
            (Some("page-everyone"), "warning"),
            (None, "warning"),
        ] {
            assert_eq!(pagerduty_severity(label), severity, "{label:?}");
        }

        // Without a summary or a deployment, and with a summary PagerDuty would refuse.
        let mut notification = firing();
        notification.alerts.truncate(1);
        let alert = &mut notification.alerts[0];
        alert.annotations.remove("summary");
        alert.labels.remove("deployment");
        let event = &pagerduty_events(&notification, "k")[0];
        assert_eq!(event["payload"]["summary"], "FeatureDrift");
        assert_eq!(event["payload"]["source"], "slipway");
        notification.alerts[0]
            .annotations
            .insert("summary".into(), "é".repeat(2_000));
        let event = &pagerduty_events(&notification, "k")[0];
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), 1_024);
    }

    #[test]
    fn signatures_match_pythons_hmac_and_verify() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest())'
        let expected = "sha256=3dd49b2593d0f9a349e9e71c4bde3e2b862c2be4003fe9b4ba81332029310158";
        assert_eq!(sign(b"k", "1", b"{}"), expected);
        assert!(verify(b"k", "1", b"{}", expected));
        assert!(verify(
            b"k",
            "1",
            b"{}",
            &expected.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify(b"k", "2", b"{}", expected), "another timestamp");
        assert!(!verify(b"k", "1", b"{ }", expected), "another body");
        assert!(!verify(b"K", "1", b"{}", expected), "another key");
        assert!(
            !verify(b"k", "1", b"{}", &expected["sha256=".len()..]),
            "no prefix"
        );
        assert!(!verify(b"k", "1", b"{}", "sha256=zz"), "not hex");
        assert!(!verify(b"k", "1", b"{}", "sha256=3dd4"), "too short");
        assert!(!verify(b"k", "1", b"{}", ""));
        // Keys longer than SHA-256's block are valid too.
        let long = vec![7u8; 200];
        assert!(verify(&long, "1", b"x", &sign(&long, "1", b"x")));
    }

    #[test]
    fn secrets_resolve_from_the_environment_and_files() {
        // Setting a variable is unsafe in edition 2024 (and the workspace forbids unsafe), so
        // the test reads one that is already set.
        let (name, value) = std::env::vars()
            .find(|(name, value)| {
                !value.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .expect("some environment variable is set");
        let dir = tempfile::tempdir().unwrap();
        let open = SecretPolicy {
            env_prefix: String::new(),
            dirs: vec![dir.path().to_path_buf()],
        };
        assert_eq!(
            resolve_secret(&open, &secret(&format!("env:{name}"))),
            Ok(value)
        );
        assert_eq!(
            resolve_secret(&open, &secret("env:SLIPWAY_TEST_NEVER_SET_7F3A")),
            Err("environment variable SLIPWAY_TEST_NEVER_SET_7F3A is not set".to_owned())
        );
        // The server's policy reads only variables named for it, and files under its dirs.
        let server = SecretPolicy::server(vec![dir.path().join("secrets")]);
        let error = resolve_secret(&server, &secret("env:PATH")).unwrap_err();
        assert!(
            error.contains("only those named SLIPWAY_SECRET_*"),
            "{error}"
        );
        let path = dir.path().join("key");
        std::fs::write(&path, "  s3cret-value\n").unwrap();
        let reference = format!("file:{}", path.display());
        assert_eq!(
            resolve_secret(&open, &secret(&reference)),
            Ok("s3cret-value".to_owned())
        );

        let missing = dir.path().join("missing");
        let error =
            resolve_secret(&open, &secret(&format!("file:{}", missing.display()))).unwrap_err();
        assert!(error.contains(&missing.display().to_string()), "{error}");

        std::fs::write(&path, format!("s3cret-value{}", " ".repeat(70_000))).unwrap();
        let error = resolve_secret(&open, &secret(&reference)).unwrap_err();
        assert!(error.contains("larger than 64 KiB"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");

        std::fs::write(&path, "k").unwrap();
        let error = resolve_secret(&server, &secret(&reference)).unwrap_err();
        assert!(error.contains("outside the directories"), "{error}");
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        let token = dir.path().join("secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&token).unwrap();
        std::fs::write(token.join("token"), "cluster-credential").unwrap();
        let error = resolve_secret(&server, &secret(&format!("file:{}/token", token.display())))
            .unwrap_err();
        assert!(error.contains("outside the directories"), "{error}");
        let escape = format!("file:{}/secrets/../key", dir.path().display());
        let error = resolve_secret(&server, &secret(&escape)).unwrap_err();
        assert!(error.contains("outside the directories"), "{error}");

        std::fs::write(&path, " \n").unwrap();
        let error = resolve_secret(&open, &secret(&reference)).unwrap_err();
        assert!(error.ends_with("is empty"), "{error}");
    }

    #[test]
    fn times_out_of_rfc3339s_range_are_clamped_not_panicked_on() {
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        let mut notification = firing();
        notification.now_ms = i64::MAX;
        notification.alerts[0].value = Some(f64::NAN);
        assert_eq!(
            alertmanager_body(&notification)[0]["endsAt"],
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            webhook_body(&notification)["alerts"][0]["value"],
            Value::Null
        );
    }

    /// What the test receiver was sent.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Seen {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A receiver of every kind at once: answers by path, records every request.
    async fn test_receiver() -> (String, Log) {
        async fn record(
            State(log): State<Log>,
            request: axum::extract::Request,
        ) -> (StatusCode, String) {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default()
                .to_vec();
            let path = parts.uri.path().to_owned();
            let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
            let answer = if path.starts_with("/fail500") {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "down for maintenance".to_owned(),
                )
            } else if path.starts_with("/fail400") {
                // Quotes what it refused, as PagerDuty and others do.
                let why = match sent["routing_key"].as_str() {
                    Some(key) => format!("invalid routing key {key}"),
                    None => format!("invalid event {}", String::from_utf8_lossy(&body)),
                };
                (StatusCode::BAD_REQUEST, why)
            } else if path == "/pd" {
                (StatusCode::ACCEPTED, r#"{"status":"success"}"#.to_owned())
            } else {
                (StatusCode::OK, "ok".to_owned())
            };
            log.lock().unwrap().push(Seen {
                path,
                headers: parts.headers,
                body,
            });
            answer
        }
        let log = Log::default();
        let app = axum::Router::new().fallback(record).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), log)
    }

    fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> SecretRef {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{content}\n")).unwrap();
        secret(&format!("file:{}", path.display()))
    }

    fn to(receiver: Receiver) -> Notification {
        Notification {
            receiver,
            ..firing()
        }
    }

    #[tokio::test]
    async fn every_kind_is_delivered_as_its_receiver_expects() {
        let (base, log) = test_receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let receivers =
            Receivers::new(SecretPolicy::server(vec![dir.path().to_path_buf()])).unwrap();

        let mut alertmanager = receiver("am");
        alertmanager.alertmanager = Some(AlertmanagerTarget {
            url: format!("{base}/am/"),
        });
        let mut webhook = receiver("hook");
        webhook.webhook = Some(WebhookTarget {
            url: format!("{base}/hook"),
            secret: Some(secret_file(&dir, "hook", "hook-key")),
        });
        let mut slack = receiver("chat");
        slack.slack = Some(SlackTarget {
            url: secret_file(&dir, "slack", &format!("{base}/services/T0/B0/XYZ")),
        });
        let mut pagerduty = receiver("pager");
        pagerduty.pagerduty = Some(PagerDutyTarget {
            routing_key: secret_file(&dir, "pd", "R0UTINGKEY0123456789abcdef012345"),
            url: Some(format!("{base}/pd")),
        });
        let mut pagerduty_resolve = to(pagerduty.clone());
        pagerduty_resolve.alerts = resolved().alerts;
        pagerduty_resolve.status = AlertState::Resolved;

        for notification in [
            to(alertmanager),
            to(webhook),
            to(slack),
            to(pagerduty),
            pagerduty_resolve,
        ] {
            receivers.deliver(&notification).await.unwrap();
        }

        let seen = log.lock().unwrap().clone();
        let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/am/api/v2/alerts",
                "/hook",
                "/services/T0/B0/XYZ",
                "/pd",
                "/pd",
                "/pd"
            ]
        );
        for request in &seen {
            assert_eq!(request.headers["content-type"], "application/json");
            let agent = request.headers["user-agent"].to_str().unwrap();
            assert!(agent.starts_with("slipway/"), "{agent}");
        }

        assert_eq!(seen[0].json(), alertmanager_body(&firing()));

        let hook = &seen[1];
        let timestamp = hook.headers["x-slipway-timestamp"].to_str().unwrap();
        let signature = hook.headers["x-slipway-signature"].to_str().unwrap();
        assert!(verify(b"hook-key", timestamp, &hook.body, signature));
        let sent: u64 = timestamp.parse().unwrap();
        assert!(unix_seconds().abs_diff(sent) < 60, "{sent}");
        assert_eq!(hook.json()["receiver"], "hook");
        assert_eq!(hook.json()["alerts"].as_array().unwrap().len(), 2);

        assert!(seen[0].headers.get("x-slipway-signature").is_none());
        assert_eq!(seen[2].json()["text"], "[FIRING:2] FeatureDrift fraud");

        let (trigger, second, resolve) = (seen[3].json(), seen[4].json(), seen[5].json());
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "R0UTINGKEY0123456789abcdef012345");
        assert_eq!(trigger["dedup_key"], "slipway-aaaa000000000001");
        assert_eq!(second["dedup_key"], "slipway-aaaa000000000002");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_refusals_are_not() {
        let (base, log) = test_receiver().await;
        let receivers = Receivers::new(SecretPolicy::server(Vec::new())).unwrap();
        let count = |path: &str| {
            log.lock()
                .unwrap()
                .iter()
                .filter(|s| s.path == path)
                .count()
        };

        let mut flaky = receiver("flaky");
        flaky.webhook = Some(WebhookTarget {
            url: format!("{base}/fail500"),
            secret: None,
        });
        let error = receivers.deliver(&to(flaky)).await.unwrap_err();
        assert_eq!(count("/fail500"), 3);
        assert_eq!(
            error,
            "receiver 'flaky' (webhook): HTTP 500 Internal Server Error: down for maintenance (gave up after 3 attempts)"
        );

        let mut wrong = receiver("wrong");
        wrong.alertmanager = Some(AlertmanagerTarget {
            url: format!("{base}/fail400"),
        });
        let error = receivers.deliver(&to(wrong)).await.unwrap_err();
        assert_eq!(count("/fail400/api/v2/alerts"), 1);
        assert!(
            error.starts_with(
                "receiver 'wrong' (alertmanager): HTTP 400 Bad Request: invalid event [{"
            ),
            "{error}"
        );
        // At most 200 characters of the body.
        let quoted = error.split_once("Bad Request: ").unwrap().1;
        assert_eq!(quoted.chars().count(), 200);
    }

    #[tokio::test]
    async fn secret_values_stay_out_of_errors() {
        let (base, log) = test_receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let receivers =
            Receivers::new(SecretPolicy::server(vec![dir.path().to_path_buf()])).unwrap();

        // PagerDuty quoting the refused event, routing key and all.
        let mut pager = receiver("pager");
        pager.pagerduty = Some(PagerDutyTarget {
            routing_key: secret_file(&dir, "pd", "R0UTINGKEY-SECRET"),
            url: Some(format!("{base}/fail400")),
        });
        let error = receivers.deliver(&to(pager)).await.unwrap_err();
        assert_eq!(log.lock().unwrap().len(), 2, "one attempt per alert");
        assert!(error.contains("2 of 2 events failed"), "{error}");
        assert!(
            error.contains("HTTP 400 Bad Request: invalid routing key [redacted]"),
            "{error}"
        );
        assert!(!error.contains("R0UTINGKEY-SECRET"), "{error}");

        // A Slack URL that is not one.
        let reference = secret_file(&dir, "slack", "ftp://hooks.example/SECRET-PATH");
        let mut chat = receiver("chat");
        chat.slack = Some(SlackTarget {
            url: reference.clone(),
        });
        let error = receivers.deliver(&to(chat)).await.unwrap_err();
        assert_eq!(
            error,
            format!(
                "receiver 'chat' (slack): the Slack URL from {} is not an http(s) URL",
                reference.as_str()
            )
        );

        // A Slack URL nobody answers at: reqwest's error would name it.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let mut chat = receiver("chat");
        chat.slack = Some(SlackTarget {
            url: secret_file(
                &dir,
                "slack2",
                &format!("http://{closed}/services/SECRET-PATH"),
            ),
        });
        let error = receivers.deliver(&to(chat)).await.unwrap_err();
        assert!(error.starts_with("receiver 'chat' (slack): "), "{error}");
        assert!(error.contains("3 attempts"), "{error}");
        assert!(!error.contains("SECRET-PATH"), "{error}");

        let error = receivers
            .deliver(&to(receiver("nothing")))
            .await
            .unwrap_err();
        assert!(error.contains("exactly one of"), "{error}");
    }
}
