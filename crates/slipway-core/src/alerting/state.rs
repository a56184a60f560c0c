//! Alerts as they live: one per rule, deployment (and feature) — identified by the fingerprint
//! of their labels — stepping pending → firing → resolved; silences that hold back their
//! notifications.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, but not yet for the rule's `for`.
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Result<AlertState> {
        match text {
            "pending" => Ok(AlertState::Pending),
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(Error::invalid(format!(
                "alert state '{other}' is not one of pending, firing, resolved"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The store's id once the alert fired; 0 while pending.
    #[serde(default)]
    pub id: i64,
    /// Digest of the labels: the same rule, deployment and feature always give the same one.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// summary, description, runbook_url, and the condition.
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// The signal's value at the latest evaluation.
    pub value: Option<f64>,
    /// When the condition began to hold.
    pub active_since_ms: i64,
    pub fired_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    /// The latest evaluation that saw it.
    pub updated_ms: i64,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn deployment(&self) -> &str {
        self.labels.get("deployment").map_or("", String::as_str)
    }
}

/// The digest that identifies an alert: its labels, sorted.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (key, value) in labels {
        hash.update(key.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

/// A change worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Fired,
    Resolved,
}

/// One evaluation of one alert: `holds` is None when there was no data to judge. Returns the
/// alert as it is now (None: nothing is active) and what changed.
pub fn step(
    previous: Option<&Alert>,
    holds: Option<bool>,
    value: Option<f64>,
    for_ms: u64,
    now_ms: i64,
    fresh: impl FnOnce() -> Alert,
) -> (Option<Alert>, Option<Transition>) {
    let fires_at = |since: i64| since.saturating_add(i64::try_from(for_ms).unwrap_or(i64::MAX));
    match (previous, holds) {
        (Some(alert), Some(true)) if alert.state != AlertState::Resolved => {
            let mut alert = alert.clone();
            alert.value = value;
            alert.updated_ms = now_ms;
            if alert.state == AlertState::Pending && now_ms >= fires_at(alert.active_since_ms) {
                alert.state = AlertState::Firing;
                alert.fired_ms = Some(now_ms);
                return (Some(alert), Some(Transition::Fired));
            }
            (Some(alert), None)
        }
        (_, Some(true)) => {
            let mut alert = fresh();
            alert.id = 0;
            alert.value = value;
            alert.active_since_ms = now_ms;
            alert.updated_ms = now_ms;
            alert.resolved_ms = None;
            if for_ms == 0 {
                alert.state = AlertState::Firing;
                alert.fired_ms = Some(now_ms);
                (Some(alert), Some(Transition::Fired))
            } else {
                alert.state = AlertState::Pending;
                alert.fired_ms = None;
                (Some(alert), None)
            }
        }
        (Some(alert), _) if alert.state == AlertState::Firing => {
            let mut alert = alert.clone();
            alert.state = AlertState::Resolved;
            alert.resolved_ms = Some(now_ms);
            alert.updated_ms = now_ms;
            if value.is_some() {
                alert.value = value;
            }
            (Some(alert), Some(Transition::Resolved))
        }
        // Pending that stopped holding, or nothing at all: nothing is active.
        _ => (None, None),
    }
}

/// Fills a rule's text: `{{ deployment }}`, `{{ value }}`, `{{ threshold }}`, `{{ feature }}`,
/// `{{ labels.NAME }}`. Unknown placeholders are left as written, so a typo shows.
pub fn render(
    template: &str,
    labels: &BTreeMap<String, String>,
    values: &[(&str, String)],
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = after[..close].trim();
        let filled = values
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                key.strip_prefix("labels.")
                    .and_then(|label| labels.get(label).cloned())
            })
            .or_else(|| labels.get(key).cloned());
        match filled {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// A value as an alert's text shows it: four significant digits.
pub fn show_value(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let digits = 3 - value.abs().log10().floor().clamp(-12.0, 3.0) as i32;
        format!("{:.*}", digits.max(0) as usize, value)
    }
}

/// `label=value` or `label!=value`, as Alertmanager writes silence matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub value: String,
    pub equal: bool,
}

impl Matcher {
    pub fn parse(text: &str) -> Result<Matcher> {
        let (label, value, equal) = if let Some((l, v)) = text.split_once("!=") {
            (l, v, false)
        } else if let Some((l, v)) = text.split_once('=') {
            (l, v, true)
        } else {
            return Err(Error::invalid(format!(
                "silence matcher '{text}' must be LABEL=VALUE or LABEL!=VALUE"
            )));
        };
        let label = label.trim();
        if label.is_empty()
            || label.len() > 128
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || value.len() > 1_024
        {
            return Err(Error::invalid(format!(
                "silence matcher '{text}': the label must be letters, digits and underscores, the value at most 1,024 bytes"
            )));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Ok(Matcher {
            label: label.to_owned(),
            value: value.to_owned(),
            equal,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.label).map_or("", String::as_str);
        (value == self.value) == self.equal
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "=" } else { "!=" };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

impl Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Matcher::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Holds back notifications of the alerts it matches while it lasts. A silenced alert is still
/// evaluated, recorded and listed; only nobody is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub created_ms: i64,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSilence {
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub comment: String,
}

/// Longest silence: a month; a longer one is a rule that should be changed instead.
pub const MAX_SILENCE_MS: i64 = 31 * 24 * 3_600_000;

impl NewSilence {
    pub fn validate(&self) -> Result<()> {
        if self.matchers.is_empty() || self.matchers.len() > 16 {
            return Err(Error::invalid(
                "a silence needs 1 to 16 matchers (e.g. alertname=FeatureDrift deployment=fraud)",
            ));
        }
        if !self.matchers.iter().any(|m| m.equal && !m.value.is_empty()) {
            return Err(Error::invalid(
                "a silence needs at least one LABEL=VALUE matcher with a value: one of only != matchers would silence nearly everything",
            ));
        }
        if self.ends_ms <= self.starts_ms
            || self.ends_ms.saturating_sub(self.starts_ms) > MAX_SILENCE_MS
        {
            return Err(Error::invalid(
                "a silence must end after it starts, and last at most 31 days",
            ));
        }
        if self.comment.trim().is_empty() || self.comment.len() > 1_024 {
            return Err(Error::invalid(
                "a silence needs a comment (why, and who to ask), at most 1,024 bytes",
            ));
        }
        Ok(())
    }
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fresh() -> Alert {
        let labels = labels(&[("alertname", "A"), ("deployment", "d")]);
        Alert {
            id: 0,
            fingerprint: fingerprint(&labels),
            labels,
            annotations: BTreeMap::new(),
            state: AlertState::Pending,
            value: None,
            active_since_ms: 0,
            fired_ms: None,
            resolved_ms: None,
            updated_ms: 0,
        }
    }

    #[test]
    fn an_alert_waits_for_its_for_then_fires_and_resolves() {
        let (alert, t) = step(None, Some(true), Some(0.7), 60_000, 1_000, fresh);
        let alert = alert.unwrap();
        assert_eq!((alert.state, t), (AlertState::Pending, None));
        let (alert, t) = step(Some(&alert), Some(true), Some(0.8), 60_000, 30_000, fresh);
        let alert = alert.unwrap();
        assert_eq!((alert.state, t), (AlertState::Pending, None));
        let (alert, t) = step(Some(&alert), Some(true), Some(0.9), 60_000, 61_000, fresh);
        let alert = alert.unwrap();
        assert_eq!(
            (alert.state, t, alert.fired_ms),
            (AlertState::Firing, Some(Transition::Fired), Some(61_000))
        );
        // Still holding: no second notification.
        let (alert, t) = step(Some(&alert), Some(true), Some(0.9), 60_000, 71_000, fresh);
        let alert = alert.unwrap();
        assert_eq!((alert.state, t), (AlertState::Firing, None));
        // No data ends a firing alert as surely as a false condition does.
        let (alert, t) = step(Some(&alert), None, None, 60_000, 81_000, fresh);
        let alert = alert.unwrap();
        assert_eq!(
            (alert.state, t, alert.resolved_ms),
            (
                AlertState::Resolved,
                Some(Transition::Resolved),
                Some(81_000)
            )
        );
        // A resolved alert that holds again starts over as a new one.
        let (again, _) = step(Some(&alert), Some(true), Some(1.0), 0, 90_000, fresh);
        let again = again.unwrap();
        assert_eq!(
            (again.state, again.resolved_ms, again.active_since_ms),
            (AlertState::Firing, None, 90_000)
        );
    }

    #[test]
    fn a_pending_alert_that_stops_holding_leaves_nothing() {
        let (alert, _) = step(None, Some(true), Some(1.0), 60_000, 0, fresh);
        assert_eq!(
            step(alert.as_ref(), Some(false), Some(0.0), 60_000, 10, fresh),
            (None, None)
        );
        assert_eq!(
            step(None, Some(false), Some(0.0), 0, 10, fresh),
            (None, None)
        );
    }

    #[test]
    fn templates_fill_what_they_know_and_show_what_they_do_not() {
        let l = labels(&[("deployment", "fraud"), ("team", "risk")]);
        let text = render(
            "{{ deployment }}: {{value}} of features drifted (over {{ threshold }}), team {{ labels.team }} {{ nope }}",
            &l,
            &[("value", "0.6".into()), ("threshold", "0.5".into())],
        );
        assert_eq!(
            text,
            "fraud: 0.6 of features drifted (over 0.5), team risk {{ nope }}"
        );
        assert_eq!(render("unclosed {{ x", &l, &[]), "unclosed {{ x");
        assert_eq!(show_value(0.123456), "0.1235");
        assert_eq!(show_value(312.0), "312");
        assert_eq!(show_value(1234.5678), "1235");
    }

    #[test]
    fn silences_match_by_labels_while_they_last() {
        let silence = Silence {
            id: 1,
            matchers: vec![
                Matcher::parse("alertname=A").unwrap(),
                Matcher::parse("deployment!=other").unwrap(),
            ],
            starts_ms: 100,
            ends_ms: 200,
            created_by: "a".into(),
            created_ms: 0,
            comment: "c".into(),
        };
        let alert = labels(&[("alertname", "A"), ("deployment", "d")]);
        assert!(silence.matches(&alert));
        assert!(!silence.matches(&labels(&[("alertname", "A"), ("deployment", "other")])));
        assert!(silence.active(100) && !silence.active(200) && !silence.active(99));
        assert!(Matcher::parse("nope").is_err());
        let only_negative = NewSilence {
            matchers: vec![Matcher::parse("a!=b").unwrap()],
            starts_ms: 0,
            ends_ms: 10,
            comment: "x".into(),
        };
        assert!(
            only_negative
                .validate()
                .unwrap_err()
                .to_string()
                .contains("nearly everything")
        );
    }

    #[test]
    fn fingerprints_follow_labels_only() {
        let a = labels(&[("alertname", "A"), ("deployment", "d")]);
        let b = labels(&[("deployment", "d"), ("alertname", "A")]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&labels(&[("alertname", "A")])));
        // Separators keep ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            fingerprint(&labels(&[("ab", "c")])),
            fingerprint(&labels(&[("a", "bc")]))
        );
    }
}
