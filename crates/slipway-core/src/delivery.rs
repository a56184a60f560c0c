//! Delivery metrics: the four DORA measures and the cost of inference, computed from what the
//! store recorded (deployment events, alerts, source runs, serving minutes), never from
//! anything typed in by hand.
//!
//! - A **deploy** is a version reaching a deployment's stable traffic: the deployment created,
//!   a rollout promoted, or an alias followed.
//! - A **change** is a deploy or a rollout rolled back because its candidate failed on real
//!   traffic: an analysis rule failed, or a person rolled it back. A rollout aborted by a
//!   person, or rolled back at its progress deadline with no rule failing (nobody sent it
//!   traffic to judge), is neither.
//! - A change **failed** when its rollout was rolled back, when its version was rolled back by
//!   hand, or when an alert on its deployment began while its version was stable.
//! - **Lead time** runs from the start of the run that produced a deployed version to the
//!   deploy.
//! - An **incident** runs from an alert's condition beginning to its resolution, or from the
//!   start of a failed rollout's failing stage (when the candidate's traffic that failed began)
//!   to the rollback; **time to restore** is its length.
//! - **Cost per 1,000 inferences** is the CPU time the model runs took (measured on the data
//!   planes' threads) priced at the configured price per CPU hour. Traffic is counted by whole
//!   serving minutes: those that start in the period.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alerting::Alert;

/// Who the rollout controller's decisions are recorded as.
pub const CONTROLLER_ACTOR: &str = "slipway-controller";
use crate::deployment::{DeploymentEvent, ServingTotals};

/// One deployment's recorded history.
#[derive(Debug, Clone)]
pub struct DeploymentHistory {
    pub name: String,
    pub model: String,
    /// Oldest first.
    pub events: Vec<DeploymentEvent>,
}

/// Everything the report is computed from.
#[derive(Debug, Clone, Default)]
pub struct DeliveryInput {
    pub since_ms: i64,
    pub until_ms: i64,
    pub deployments: Vec<DeploymentHistory>,
    /// Alerts that fired (any deployment, or none).
    pub alerts: Vec<Alert>,
    /// When the run that produced (model, version) started.
    pub run_starts: BTreeMap<(String, String), i64>,
    pub serving: Vec<ServingTotals>,
    /// Price of one CPU hour, in whatever currency the operator bills in.
    pub cpu_hour_price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub since_ms: i64,
    pub until_ms: i64,
    pub cpu_hour_price: Option<f64>,
    pub overall: DeliveryMetrics,
    /// Per model, by name.
    pub models: BTreeMap<String, DeliveryMetrics>,
    /// Every change in the period, oldest first.
    pub changes: Vec<Change>,
    /// Every incident that began in the period, oldest first.
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryMetrics {
    pub deploys: u64,
    pub deploys_per_day: f64,
    pub lead_time: Option<Durations>,
    pub changes: u64,
    pub failed_changes: u64,
    /// failed_changes / changes; absent with no change.
    pub change_failure_rate: Option<f64>,
    /// Over the incidents that ended.
    pub time_to_restore: Option<Durations>,
    /// Incidents still open at the end of the period.
    pub open_incidents: u64,
    pub requests: u64,
    pub cpu_seconds: f64,
    /// CPU time per 1,000 requests; absent with no request.
    pub cpu_ms_per_1000: Option<f64>,
    /// `cpu_ms_per_1000` priced; absent without a price.
    pub cost_per_1000: Option<f64>,
}

/// A distribution of durations, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub count: u64,
    pub median_ms: i64,
    pub mean_ms: i64,
    pub max_ms: i64,
}

impl Durations {
    fn of(mut values: Vec<i64>) -> Option<Durations> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2
        };
        let sum: i128 = values.iter().map(|v| i128::from(*v)).sum();
        Some(Durations {
            count: n as u64,
            median_ms: median,
            mean_ms: i64::try_from(sum / n as i128).unwrap_or(i64::MAX),
            max_ms: values[n - 1],
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Promoted,
    FollowedAlias,
    /// A rollout whose candidate was rolled back: a change, not a deploy.
    RolledBack,
}

impl ChangeKind {
    pub fn is_deploy(self) -> bool {
        !matches!(self, ChangeKind::RolledBack)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub deployment: String,
    pub model: String,
    pub version: String,
    pub kind: ChangeKind,
    pub time_ms: i64,
    pub rollout_id: Option<i64>,
    pub lead_time_ms: Option<i64>,
    /// Why it counts as failed.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub deployment: Option<String>,
    pub model: Option<String>,
    /// `alert NAME` or `rollout N rolled back`.
    pub cause: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

impl Incident {
    pub fn duration_ms(&self) -> Option<i64> {
        self.end_ms.map(|end| (end - self.start_ms).max(0))
    }
}

fn version_of(detail: &serde_json::Value, key: &str) -> Option<String> {
    match &detail[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A span of milliseconds in its largest readable unit (`850ms`, `1.5s`, `30m`, `3.0h`,
/// `2.5d`), as the report and the console show lead times and times to restore.
pub fn human_span(ms: i64) -> String {
    let s = ms.max(0) as f64 / 1000.0;
    if s < 1.0 {
        format!("{}ms", ms.max(0))
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1}d", s / 86_400.0)
    }
}

/// The versions whose source runs the report needs: every deployed one.
pub fn deployed_versions(deployments: &[DeploymentHistory]) -> Vec<(String, String)> {
    let mut versions: Vec<(String, String)> = Vec::new();
    for history in deployments {
        for event in &history.events {
            let key = match event.kind.as_str() {
                "created" => "version",
                "promoted" | "followed_alias" => "to_version",
                _ => continue,
            };
            if let Some(version) = version_of(&event.detail, key) {
                let pair = (history.model.clone(), version);
                if !versions.contains(&pair) {
                    versions.push(pair);
                }
            }
        }
    }
    versions
}

/// Changes and incidents of one deployment, over its whole history.
fn history_of(
    history: &DeploymentHistory,
    alerts: &[&Alert],
    run_starts: &BTreeMap<(String, String), i64>,
) -> (Vec<Change>, Vec<Incident>) {
    let mut changes: Vec<Change> = Vec::new();
    // When each change's failure showed, so the earliest reason is the one kept.
    let mut failed_at: Vec<i64> = Vec::new();
    let mut incidents = Vec::new();
    fn mark(changes: &mut [Change], failed_at: &mut [i64], index: usize, at: i64, why: String) {
        if changes[index].failed.is_none() || at < failed_at[index] {
            changes[index].failed = Some(why);
            failed_at[index] = at;
        }
    }
    // Index into `changes` of the deploy serving stable traffic, and since when.
    let mut stable: Vec<(i64, usize)> = Vec::new();
    // When each rollout's current stage began (its traffic at risk).
    let mut stage_began: BTreeMap<i64, i64> = BTreeMap::new();
    let change = |kind: ChangeKind, version: String, event: &DeploymentEvent| Change {
        deployment: history.name.clone(),
        model: history.model.clone(),
        lead_time_ms: if kind.is_deploy() {
            run_starts
                .get(&(history.model.clone(), version.clone()))
                .map(|start| (event.time_ms - start).max(0))
        } else {
            None
        },
        version,
        kind,
        time_ms: event.time_ms,
        rollout_id: event.rollout_id,
        failed: None,
    };
    for event in &history.events {
        match event.kind.as_str() {
            "created" | "promoted" | "followed_alias" => {
                let (kind, key) = match event.kind.as_str() {
                    "created" => (ChangeKind::Created, "version"),
                    "promoted" => (ChangeKind::Promoted, "to_version"),
                    _ => (ChangeKind::FollowedAlias, "to_version"),
                };
                let Some(version) = version_of(&event.detail, key) else {
                    continue;
                };
                changes.push(change(kind, version, event));
                failed_at.push(i64::MAX);
                stable.push((event.time_ms, changes.len() - 1));
            }
            "rollout_started" | "stage" => {
                if let Some(id) = event.rollout_id {
                    stage_began.insert(id, event.time_ms);
                }
            }
            "rolled_back" => match event.rollout_id {
                // Rolled back by the controller with no rule failing: the progress deadline
                // passed without a verdict, which proves nothing about the candidate.
                Some(_) if event.actor == CONTROLLER_ACTOR && event.detail["rule"].is_null() => {}
                Some(id) => {
                    let Some(version) = version_of(&event.detail, "candidate_version") else {
                        continue;
                    };
                    let reason = event.detail["reason"].as_str().unwrap_or("rolled back");
                    let mut failed = change(ChangeKind::RolledBack, version, event);
                    failed.failed = Some(format!("rollout {id} rolled back: {reason}"));
                    changes.push(failed);
                    failed_at.push(event.time_ms);
                    incidents.push(Incident {
                        deployment: Some(history.name.clone()),
                        model: Some(history.model.clone()),
                        cause: format!("rollout {id} rolled back"),
                        start_ms: stage_began.get(&id).copied().unwrap_or(event.time_ms),
                        end_ms: Some(event.time_ms),
                    });
                }
                None => {
                    // By hand: the version it left failed; the one it restored serves again,
                    // but as a restore, not a new deploy.
                    let from = version_of(&event.detail, "from_version");
                    if let Some(&(_, index)) = stable.last()
                        && index != usize::MAX
                        && Some(&changes[index].version) == from.as_ref()
                    {
                        let reason = event.detail["reason"].as_str().unwrap_or("");
                        let why = if reason.is_empty() {
                            "rolled back by hand".to_owned()
                        } else {
                            format!("rolled back by hand: {reason}")
                        };
                        mark(&mut changes, &mut failed_at, index, event.time_ms, why);
                    }
                    stable.push((event.time_ms, usize::MAX));
                }
            },
            _ => {}
        }
    }
    for alert in alerts {
        incidents.push(Incident {
            deployment: Some(history.name.clone()),
            model: Some(history.model.clone()),
            cause: format!("alert {}", alert.name()),
            start_ms: alert.active_since_ms,
            end_ms: alert.resolved_ms,
        });
        // The deploy serving when the condition began (a restore serves no deploy).
        let serving = stable
            .iter()
            .rev()
            .find(|(since, _)| *since <= alert.active_since_ms);
        if let Some(&(_, index)) = serving
            && index != usize::MAX
        {
            let why = format!("alert {} fired", alert.name());
            mark(
                &mut changes,
                &mut failed_at,
                index,
                alert.active_since_ms,
                why,
            );
        }
    }
    (changes, incidents)
}

fn metrics(
    changes: &[&Change],
    incidents: &[&Incident],
    serving: &[&ServingTotals],
    days: f64,
    price: Option<f64>,
) -> DeliveryMetrics {
    let deploys = changes.iter().filter(|c| c.kind.is_deploy()).count() as u64;
    let failed = changes.iter().filter(|c| c.failed.is_some()).count() as u64;
    let requests: u64 = serving.iter().map(|s| s.requests).sum();
    let cpu_us: u64 = serving.iter().map(|s| s.cpu_us).sum();
    let cpu_ms_per_1000 = (requests > 0).then(|| cpu_us as f64 / 1000.0 / requests as f64 * 1000.0);
    DeliveryMetrics {
        deploys,
        deploys_per_day: if days > 0.0 {
            deploys as f64 / days
        } else {
            0.0
        },
        lead_time: Durations::of(changes.iter().filter_map(|c| c.lead_time_ms).collect()),
        changes: changes.len() as u64,
        failed_changes: failed,
        change_failure_rate: (!changes.is_empty()).then(|| failed as f64 / changes.len() as f64),
        time_to_restore: Durations::of(incidents.iter().filter_map(|i| i.duration_ms()).collect()),
        open_incidents: incidents.iter().filter(|i| i.end_ms.is_none()).count() as u64,
        requests,
        cpu_seconds: cpu_us as f64 / 1e6,
        cost_per_1000: cpu_ms_per_1000
            .zip(price)
            .map(|(ms, price)| ms / 3_600_000.0 * price),
        cpu_ms_per_1000,
    }
}

/// The report over `[since_ms, until_ms]`.
pub fn report(input: &DeliveryInput) -> DeliveryReport {
    let in_period = |t: i64| t >= input.since_ms && t <= input.until_ms;
    let mut changes = Vec::new();
    let mut incidents = Vec::new();
    let mut model_of: BTreeMap<&str, &str> = BTreeMap::new();
    for history in &input.deployments {
        model_of.insert(&history.name, &history.model);
        let alerts: Vec<&Alert> = input
            .alerts
            .iter()
            .filter(|a| a.fired_ms.is_some() && a.deployment() == history.name)
            .collect();
        let (c, i) = history_of(history, &alerts, &input.run_starts);
        changes.extend(c);
        incidents.extend(i);
    }
    // Alerts on no deployment still interrupt service.
    for alert in &input.alerts {
        if alert.fired_ms.is_some() && !model_of.contains_key(alert.deployment()) {
            incidents.push(Incident {
                deployment: (!alert.deployment().is_empty()).then(|| alert.deployment().to_owned()),
                model: None,
                cause: format!("alert {}", alert.name()),
                start_ms: alert.active_since_ms,
                end_ms: alert.resolved_ms,
            });
        }
    }
    changes.retain(|c| in_period(c.time_ms));
    changes.sort_by_key(|c| c.time_ms);
    incidents.retain(|i| in_period(i.start_ms));
    // An incident ending after the period is still open at its end.
    for incident in &mut incidents {
        if incident.end_ms.is_some_and(|end| end > input.until_ms) {
            incident.end_ms = None;
        }
    }
    incidents.sort_by_key(|i| i.start_ms);
    let days = (input.until_ms - input.since_ms) as f64 / 86_400_000.0;
    let price = input.cpu_hour_price;
    let mut models: BTreeMap<String, DeliveryMetrics> = BTreeMap::new();
    let mut names: Vec<&str> = model_of.values().copied().collect();
    names.sort_unstable();
    names.dedup();
    for model in names {
        let c: Vec<&Change> = changes.iter().filter(|c| c.model == model).collect();
        let i: Vec<&Incident> = incidents
            .iter()
            .filter(|i| i.model.as_deref() == Some(model))
            .collect();
        let s: Vec<&ServingTotals> = input
            .serving
            .iter()
            .filter(|s| model_of.get(s.deployment.as_str()) == Some(&model))
            .collect();
        if c.is_empty() && i.is_empty() && s.is_empty() {
            continue;
        }
        models.insert(model.to_owned(), metrics(&c, &i, &s, days, price));
    }
    let overall = metrics(
        &changes.iter().collect::<Vec<_>>(),
        &incidents.iter().collect::<Vec<_>>(),
        &input.serving.iter().collect::<Vec<_>>(),
        days,
        price,
    );
    DeliveryReport {
        since_ms: input.since_ms,
        until_ms: input.until_ms,
        cpu_hour_price: price,
        overall,
        models,
        changes,
        incidents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::AlertState;
    use serde_json::json;

    const H: i64 = 3_600_000;

    fn event(
        seq: i64,
        time_ms: i64,
        kind: &str,
        rollout: Option<i64>,
        detail: serde_json::Value,
    ) -> DeploymentEvent {
        DeploymentEvent {
            seq,
            deployment: "fraud-api".into(),
            time_ms,
            rollout_id: rollout,
            kind: kind.into(),
            actor: "alice".into(),
            detail,
            count: 1,
            last_time_ms: time_ms,
        }
    }

    fn alert(name: &str, deployment: &str, since: i64, resolved: Option<i64>) -> Alert {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_owned(), name.to_owned());
        labels.insert("deployment".to_owned(), deployment.to_owned());
        Alert {
            id: 1,
            fingerprint: "f".into(),
            labels,
            annotations: BTreeMap::new(),
            state: if resolved.is_some() {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
            value: None,
            active_since_ms: since,
            fired_ms: Some(since + 60_000),
            resolved_ms: resolved,
            updated_ms: since,
        }
    }

    fn input() -> DeliveryInput {
        // Day 0: created on v1. Day 1: v2 promoted. Day 2: v3's rollout rolled back at its
        // second stage. Day 3: v4 promoted, an alert an hour later, resolved 30 min after;
        // v4 rolled back by hand to v2.
        let events = vec![
            event(1, 0, "created", None, json!({"version": "1"})),
            event(
                2,
                24 * H - H,
                "rollout_started",
                Some(1),
                json!({"candidate_version": "2"}),
            ),
            event(
                3,
                24 * H,
                "promoted",
                Some(1),
                json!({"from_version": "1", "to_version": "2"}),
            ),
            event(
                4,
                48 * H,
                "rollout_started",
                Some(2),
                json!({"candidate_version": "3"}),
            ),
            event(5, 48 * H + 600_000, "stage", Some(2), json!({"stage": 1})),
            event(
                6,
                48 * H + 660_000,
                "rolled_back",
                Some(2),
                json!({"candidate_version": "3", "stable_version": "2", "reason": "error rate"}),
            ),
            event(
                7,
                72 * H,
                "promoted",
                Some(3),
                json!({"from_version": "2", "to_version": "4"}),
            ),
            event(
                8,
                76 * H,
                "rolled_back",
                None,
                json!({"from_version": "4", "to_version": "2", "reason": "bad"}),
            ),
        ];
        let mut run_starts = BTreeMap::new();
        run_starts.insert(("fraud".to_owned(), "1".to_owned()), -2 * H);
        run_starts.insert(("fraud".to_owned(), "2".to_owned()), 20 * H);
        run_starts.insert(("fraud".to_owned(), "4".to_owned()), 70 * H);
        DeliveryInput {
            since_ms: 0,
            until_ms: 30 * 24 * H,
            deployments: vec![DeploymentHistory {
                name: "fraud-api".into(),
                model: "fraud".into(),
                events,
            }],
            alerts: vec![alert(
                "HighErrors",
                "fraud-api",
                73 * H,
                Some(73 * H + 1_800_000),
            )],
            run_starts,
            serving: vec![ServingTotals {
                deployment: "fraud-api".into(),
                requests: 20_000,
                server_errors: 3,
                cpu_us: 4_000_000,
                minutes: 100,
            }],
            cpu_hour_price: Some(0.036),
        }
    }

    #[test]
    fn the_four_measures_follow_the_recorded_events() {
        let report = report(&input());
        let m = &report.overall;
        assert_eq!(
            m.deploys, 3,
            "created, two promotions: {:?}",
            report.changes
        );
        assert!((m.deploys_per_day - 0.1).abs() < 1e-9);
        assert_eq!(m.changes, 4);
        assert_eq!(m.failed_changes, 2, "{:?}", report.changes);
        assert_eq!(m.change_failure_rate, Some(0.5));
        let lead = m.lead_time.as_ref().unwrap();
        assert_eq!((lead.count, lead.median_ms, lead.max_ms), (3, 2 * H, 4 * H));
        // Rollout 2 failed 60 s into its stage; the alert lasted 30 minutes.
        let restore = m.time_to_restore.as_ref().unwrap();
        assert_eq!(
            (restore.count, restore.median_ms / 1000, restore.max_ms),
            (2, 930, 1_800_000)
        );
        assert_eq!(m.open_incidents, 0);
        assert_eq!(report.models["fraud"], *m);
        let v4 = report.changes.iter().find(|c| c.version == "4").unwrap();
        assert_eq!(v4.failed.as_deref(), Some("alert HighErrors fired"));
    }

    #[test]
    fn cost_is_cpu_time_priced_per_thousand_requests() {
        let m = report(&input()).overall;
        // 4 s of CPU over 20,000 requests: 200 ms per 1,000, at 0.036 an hour.
        assert!((m.cpu_ms_per_1000.unwrap() - 200.0).abs() < 1e-9);
        assert!((m.cost_per_1000.unwrap() - 0.000_002).abs() < 1e-12);
        let unpriced = report(&DeliveryInput {
            cpu_hour_price: None,
            ..input()
        })
        .overall;
        assert_eq!(unpriced.cost_per_1000, None);
        assert!(unpriced.cpu_ms_per_1000.is_some());
    }

    #[test]
    fn the_period_bounds_changes_and_leaves_late_incidents_open() {
        let mut narrow = input();
        narrow.since_ms = 47 * H;
        narrow.until_ms = 73 * H + 60_000;
        let report = report(&narrow);
        assert_eq!(report.overall.deploys, 1, "{:?}", report.changes);
        assert_eq!(report.overall.changes, 2);
        assert_eq!(report.overall.open_incidents, 1);
        assert_eq!(report.overall.time_to_restore.as_ref().unwrap().count, 1);
    }

    #[test]
    fn a_manual_rollback_restores_without_counting_a_deploy_and_an_alert_after_it_blames_nothing() {
        let mut later = input();
        later.alerts = vec![alert("Drift", "fraud-api", 80 * H, None)];
        let report = report(&later);
        assert_eq!(report.overall.deploys, 3);
        // v4 failed by the manual rollback; the alert at 80 h fell on the restored v2.
        let failed: Vec<_> = report
            .changes
            .iter()
            .filter_map(|c| c.failed.as_deref())
            .collect();
        assert_eq!(
            failed,
            [
                "rollout 2 rolled back: error rate",
                "rolled back by hand: bad"
            ]
        );
        assert_eq!(report.overall.open_incidents, 1);
    }

    #[test]
    fn a_rollback_at_the_progress_deadline_without_a_failed_rule_is_no_change() {
        let mut deadline = input();
        let events = &mut deadline.deployments[0].events;
        events[5].actor = CONTROLLER_ACTOR.to_owned();
        events[5].detail["rule"] = serde_json::Value::Null;
        let quiet = report(&deadline);
        assert_eq!(quiet.overall.changes, 3, "{:?}", quiet.changes);
        assert_eq!(quiet.overall.time_to_restore.as_ref().unwrap().count, 1);
        // The same rollback decided by a failed rule counts.
        let mut failed = input();
        failed.deployments[0].events[5].actor = CONTROLLER_ACTOR.to_owned();
        failed.deployments[0].events[5].detail["rule"] = json!("error_rate");
        assert_eq!(report(&failed).overall.changes, 4);
    }

    #[test]
    fn nothing_recorded_gives_no_rates() {
        let m = report(&DeliveryInput {
            until_ms: H,
            ..DeliveryInput::default()
        })
        .overall;
        assert_eq!(
            (m.deploys, m.change_failure_rate, m.cpu_ms_per_1000),
            (0, None, None)
        );
        assert!(m.lead_time.is_none() && m.time_to_restore.is_none());
    }

    #[test]
    fn deployed_versions_lists_each_once() {
        let versions = deployed_versions(&input().deployments);
        let names: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(names, ["1", "2", "4"]);
    }
}
