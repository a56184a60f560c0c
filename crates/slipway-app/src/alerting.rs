//! Alerting: the configuration applied from a rules file (admins, audited), silences, and the
//! evaluator that judges every rule against every deployment it matches, steps each alert
//! pending → firing → resolved, records and audits what fired and resolved, and hands grouped
//! notifications to the receivers (the [`AlertSink`] the binary chose).
//!
//! Signals come from three places: the latest closed monitoring window (drift), logged
//! predictions joined with late labels (performance, cached for [`PERFORMANCE_TTL_MS`]), and
//! [`ServingLog`], every plane's request counts in 10 s buckets for the last hour.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use slipway_core::alerting::{
    self, Alert, AlertConfig, AlertRule, AlertState, ConfigDiff, NewSilence, Notification, Signal,
    Silence, Source, StoredAlertConfig, Transition, state,
};
use slipway_core::deployment::{Deployment, ServingStats};
use slipway_core::ports::{AlertFilter, AlertSink};
use slipway_core::{Error, Result};

use crate::{App, now_ms};

/// The actor alert transitions are recorded under.
pub const ALERTS_ACTOR: &str = "slipway-alerts";
/// How often the binary evaluates the rules.
pub const EVALUATION_INTERVAL_MS: i64 = 10_000;
/// How long a performance answer is reused: it reads up to 200,000 logged predictions.
pub const PERFORMANCE_TTL_MS: i64 = 60_000;
/// Alertmanager forgets an alert at its `endsAt`; firing ones are sent again this often, as
/// Prometheus does, with an `endsAt` a few minutes ahead.
pub const ALERTMANAGER_RESEND_MS: i64 = 60_000;
/// A drift window older than this many of its deployment's window lengths is no data: traffic
/// stopped, and an old verdict should neither fire nor keep an alert firing.
const STALE_WINDOWS: i64 = 3;
/// Rows a performance signal needs when the rule names no `min_samples`.
const DEFAULT_MIN_ROWS: u64 = 30;
/// Notifications delivered at once.
const MAX_DELIVERIES: usize = 16;
/// Resolved alerts `list` returns at most.
pub const MAX_LISTED: usize = 1_000;

const BUCKET_MS: i64 = 10_000;
const BUCKETS: usize = (alerting::MAX_WINDOW_MS as i64 / BUCKET_MS) as usize;

/// Every data plane's serving measurements per deployment, summed in 10 s buckets over the
/// last hour: what error-rate, latency and no-traffic rules read. In memory: a restarted server
/// has no history, which no-traffic rules treat as no data until a window has passed.
pub struct ServingLog {
    started_ms: std::sync::atomic::AtomicI64,
    buckets: Mutex<HashMap<String, VecDeque<(i64, ServingStats)>>>,
    /// The same counts per deployment and minute, until the next evaluation adds them to the
    /// store's serving minutes (what SLOs are measured on, over days).
    minutes: Mutex<HashMap<(String, i64), ServingStats>>,
}

impl Default for ServingLog {
    fn default() -> Self {
        ServingLog::new(now_ms())
    }
}

impl ServingLog {
    pub fn new(started_ms: i64) -> ServingLog {
        ServingLog {
            started_ms: std::sync::atomic::AtomicI64::new(started_ms),
            buckets: Mutex::new(HashMap::new()),
            minutes: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a plane's report. The caller has checked the deployment exists, so the map holds
    /// one entry per deployment.
    pub fn record(&self, deployment: &str, stats: &ServingStats, now_ms: i64) {
        if stats.is_empty() {
            return;
        }
        // A report cannot claim more failed requests than requests.
        let stats = &ServingStats {
            server_errors: stats.server_errors.min(stats.requests),
            ..stats.clone()
        };
        let minute = now_ms - now_ms.rem_euclid(60_000);
        self.minutes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((deployment.to_owned(), minute))
            .or_default()
            .merge(stats);
        let start = now_ms - now_ms.rem_euclid(BUCKET_MS);
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = all.entry(deployment.to_owned()).or_default();
        match buckets.back_mut() {
            Some((at, bucket)) if *at == start => bucket.merge(stats),
            _ => {
                let mut bucket = ServingStats::default();
                bucket.merge(stats);
                buckets.push_back((start, bucket));
            }
        }
        while buckets.len() > BUCKETS {
            buckets.pop_front();
        }
    }

    /// The sum over the last `window_ms`; None while the log is younger than the window (a
    /// restarted server does not know what it missed).
    pub fn over(&self, deployment: &str, window_ms: i64, now_ms: i64) -> Option<ServingStats> {
        if now_ms - self.started_ms.load(Ordering::Acquire) < window_ms {
            return None;
        }
        let from = now_ms - window_ms;
        let all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = ServingStats::default();
        for (at, bucket) in all.get(deployment).into_iter().flatten() {
            // A bucket counts when most of it lies inside the window.
            if *at + BUCKET_MS / 2 >= from {
                sum.merge(bucket);
            }
        }
        Some(sum)
    }

    /// Starts afresh at `now_ms`, as a restarted server would: leadership moved here, and the
    /// counts gathered before are not the whole story.
    pub fn reset(&self, now_ms: i64) {
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        all.clear();
        self.started_ms.store(now_ms, Ordering::Release);
    }

    /// The minutes counted since the last call, for the store.
    pub fn take_minutes(&self) -> Vec<(String, i64, ServingStats)> {
        self.minutes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|((deployment, minute), stats)| (deployment, minute, stats))
            .collect()
    }

    /// Puts back minutes the store did not take, to be added next time.
    pub fn restore_minutes(&self, minutes: Vec<(String, i64, ServingStats)>) {
        let mut pending = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        for (deployment, minute, stats) in minutes {
            pending
                .entry((deployment, minute))
                .or_default()
                .merge(&stats);
        }
    }

    /// Drops deployments that no longer exist.
    pub fn retain(&self, names: &[String]) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| names.contains(name));
    }
}

/// What one signal read: a value; no data (and why, for the alert list), which ends a firing
/// alert; or unknown (a restarted server that has not watched a whole window yet, a read that
/// failed), which leaves an alert as it was, since nothing was learnt.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    NoData(String),
    Unknown(String),
}

/// An alert being tracked, with its notification bookkeeping.
#[derive(Debug, Clone)]
struct Tracked {
    alert: Alert,
    /// Receivers its rule sends to, by name.
    receivers: Vec<String>,
    /// When the current firing was last sent to the non-Alertmanager receivers.
    sent_ms: Option<i64>,
    /// ... and to Alertmanager receivers.
    alertmanager_sent_ms: Option<i64>,
    /// When the value was last written to the store while firing.
    stored_ms: i64,
}

#[derive(Debug, Default)]
pub struct AlertCounters {
    pub evaluations: AtomicU64,
    pub evaluation_failures: AtomicU64,
    pub fired: AtomicU64,
    pub resolved: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_failed: AtomicU64,
    pub notifications_silenced: AtomicU64,
}

/// Evaluates the rules; one per server.
pub struct Alerter {
    app: App,
    serving: Arc<ServingLog>,
    /// Where notifications go, with the server's URL for links back; without one, alerts are
    /// recorded and listed only.
    sink: std::sync::OnceLock<(Arc<dyn AlertSink>, String)>,
    tracked: Mutex<HashMap<String, Tracked>>,
    loaded: std::sync::atomic::AtomicBool,
    performance: Mutex<HashMap<(String, i64), (i64, Value)>>,
    /// Every recorded transition, for whatever acts on alerts (retraining triggers subscribe
    /// here); sent after the transition is stored and audited.
    transitions: tokio::sync::broadcast::Sender<AlertTransition>,
    /// Deliveries under way at once: with a receiver down, each retries for up to half a
    /// minute, and the next evaluations' notifications wait here rather than opening more
    /// connections.
    deliveries: Arc<tokio::sync::Semaphore>,
    pub counters: Arc<AlertCounters>,
}

/// An alert that fired or resolved, as subscribers receive it.
#[derive(Debug, Clone)]
pub struct AlertTransition {
    pub alert: Alert,
    pub transition: Transition,
}

impl Alerter {
    pub fn new(app: &App, serving: Arc<ServingLog>) -> Alerter {
        Alerter {
            app: app.for_caller(ALERTS_ACTOR, None),
            serving,
            sink: std::sync::OnceLock::new(),
            tracked: Mutex::new(HashMap::new()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            performance: Mutex::new(HashMap::new()),
            // A subscriber slower than 1,024 transitions misses the oldest (and is told so by
            // the channel), rather than holding evaluation back.
            transitions: tokio::sync::broadcast::channel(1_024).0,
            deliveries: Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERIES)),
            counters: Arc::new(AlertCounters::default()),
        }
    }

    /// Sends notifications through `sink` from now on (set once, by the binary).
    pub fn set_sink(&self, sink: Arc<dyn AlertSink>, external_url: &str) {
        let _ = self
            .sink
            .set((sink, external_url.trim_end_matches('/').to_owned()));
    }

    /// The transitions recorded from now on: the seam an action hangs on (a retraining
    /// trigger, a rollback), so that acting on alerts needs no second evaluator.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<AlertTransition> {
        self.transitions.subscribe()
    }

    pub fn serving(&self) -> &Arc<ServingLog> {
        &self.serving
    }

    /// Alerts being tracked now (pending and firing), by name.
    pub fn active(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = self
            .tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|t| t.alert.state != AlertState::Resolved)
            .map(|t| t.alert.clone())
            .collect();
        alerts.sort_by(|a, b| {
            (a.name(), a.deployment(), &a.fingerprint).cmp(&(
                b.name(),
                b.deployment(),
                &b.fingerprint,
            ))
        });
        alerts
    }

    /// Forgets what is tracked in memory (pending alerts, firing ones as last loaded): this
    /// server just became the leader, or stopped being it, and the store holds what the
    /// leader meanwhile decided. The next evaluation loads the firing alerts again.
    pub fn reset(&self) {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.performance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.loaded.store(false, Ordering::Release);
    }

    /// One evaluation of every rule at the current time.
    pub async fn tick(&self) -> Result<()> {
        self.evaluate(now_ms()).await
    }

    /// One evaluation at `now_ms`.
    pub async fn evaluate(&self, now_ms: i64) -> Result<()> {
        self.counters.evaluations.fetch_add(1, Ordering::Relaxed);
        let result = self.evaluate_inner(now_ms).await;
        if result.is_err() {
            self.counters
                .evaluation_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn evaluate_inner(&self, now_ms: i64) -> Result<()> {
        // The minutes counted since the last evaluation go to the store first, so SLO signals
        // read them.
        let minutes = self.serving.take_minutes();
        if let Err(error) = self.app.store().add_serving_minutes(minutes.clone()).await {
            self.serving.restore_minutes(minutes);
            tracing::warn!(%error, "storing serving minutes; kept for the next evaluation");
        }
        self.load_firing().await?;
        let config = self
            .app
            .store()
            .get_alert_config()
            .await?
            .map(|stored| stored.config)
            .unwrap_or_default();
        let deployments = self.app.store().list_deployments().await?;
        let names: Vec<String> = deployments.iter().map(|d| d.name.clone()).collect();
        self.serving.retain(&names);
        self.performance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, _), (at, _)| names.contains(name) && now_ms - *at < PERFORMANCE_TTL_MS);

        let mut drift: HashMap<String, Option<Value>> = HashMap::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for rule in &config.rules {
            let receivers: Vec<String> = config
                .receivers_of(rule)
                .iter()
                .map(|r| r.name.clone())
                .collect();
            for deployment in deployments
                .iter()
                .filter(|d| rule.deployment == "*" || rule.deployment == d.name)
            {
                let reading = self.read(rule, deployment, now_ms, &mut drift).await;
                let (labels, annotations) = describe(rule, deployment, &reading);
                let fingerprint = state::fingerprint(&labels);
                seen.insert(fingerprint.clone());
                let (holds, value) = match &reading {
                    Reading::Value(v) => (Some(rule.expr.holds(*v)), Some(*v)),
                    Reading::NoData(_) => (None, None),
                    Reading::Unknown(_) => continue,
                };
                let previous = self
                    .tracked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&fingerprint)
                    .cloned();
                let fresh = || Alert {
                    id: 0,
                    fingerprint: fingerprint.clone(),
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                    state: AlertState::Pending,
                    value,
                    active_since_ms: now_ms,
                    fired_ms: None,
                    resolved_ms: None,
                    updated_ms: now_ms,
                };
                let (next, transition) = state::step(
                    previous.as_ref().map(|t| &t.alert),
                    holds,
                    value,
                    rule.for_ms,
                    now_ms,
                    fresh,
                );
                let Some(mut alert) = next else {
                    self.untrack(&fingerprint);
                    continue;
                };
                // The text follows the latest value (and the rule, if it was changed).
                if alert.state != AlertState::Resolved {
                    alert.annotations = annotations;
                }
                let mut tracked = match previous {
                    Some(t) if t.alert.state != AlertState::Resolved => t,
                    _ => Tracked {
                        alert: alert.clone(),
                        receivers: receivers.clone(),
                        sent_ms: None,
                        alertmanager_sent_ms: None,
                        stored_ms: now_ms,
                    },
                };
                tracked.receivers = receivers.clone();
                match transition {
                    Some(Transition::Fired) => {
                        alert.id = self.record(&alert, Transition::Fired, rule).await?;
                        tracked.stored_ms = now_ms;
                    }
                    Some(Transition::Resolved) => {
                        self.record(&alert, Transition::Resolved, rule).await?;
                    }
                    None if alert.state == AlertState::Firing
                        && now_ms - tracked.stored_ms >= PERFORMANCE_TTL_MS =>
                    {
                        // The stored row follows the value, a write a minute at most.
                        self.app.store().save_alert(alert.clone()).await?;
                        tracked.stored_ms = now_ms;
                    }
                    None => {}
                }
                tracked.alert = alert;
                self.tracked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(fingerprint, tracked);
            }
        }
        // Alerts whose rule or deployment is gone resolve: nobody should be left paged by a
        // rule that no longer exists.
        let orphans: Vec<Tracked> = self
            .tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|t| !seen.contains(&t.alert.fingerprint))
            .cloned()
            .collect();
        for orphan in orphans {
            self.untrack(&orphan.alert.fingerprint);
            if orphan.alert.state != AlertState::Firing {
                continue;
            }
            let mut alert = orphan.alert.clone();
            alert.state = AlertState::Resolved;
            alert.resolved_ms = Some(now_ms);
            alert.updated_ms = now_ms;
            alert.annotations.insert(
                "resolved_because".into(),
                "its rule or deployment was removed".into(),
            );
            self.app
                .audited(
                    "alerts.resolved",
                    format!("deployment:{}", alert.deployment()),
                    json!({"alert": alert.name(), "fingerprint": alert.fingerprint, "reason": "rule or deployment removed"}),
                )
                .save_alert(alert.clone())
                .await?;
            self.counters.resolved.fetch_add(1, Ordering::Relaxed);
            let _ = self.transitions.send(AlertTransition {
                alert: alert.clone(),
                transition: Transition::Resolved,
            });
            // Still told, once, to whoever heard it fire.
            let mut finished = orphan.clone();
            finished.alert = alert.clone();
            self.tracked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(alert.fingerprint.clone(), finished);
        }
        self.notify(&config, now_ms).await?;
        Ok(())
    }

    fn untrack(&self, fingerprint: &str) {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(fingerprint);
    }

    /// Firing alerts stored by an earlier run of the server, so a restart neither fires them
    /// again nor forgets to resolve them.
    async fn load_firing(&self) -> Result<()> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let firing = self
            .app
            .store()
            .list_alerts(
                &AlertFilter {
                    state: Some(AlertState::Firing),
                    ..AlertFilter::default()
                },
                alerting::MAX_RULES * 64,
            )
            .await?;
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        for alert in firing {
            tracked.entry(alert.fingerprint.clone()).or_insert(Tracked {
                receivers: Vec::new(),
                // Told before the restart; Alertmanager is refreshed at once regardless.
                sent_ms: alert.fired_ms,
                alertmanager_sent_ms: None,
                stored_ms: alert.updated_ms,
                alert,
            });
        }
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Stores a transition with its audit entry, in one transaction.
    async fn record(&self, alert: &Alert, transition: Transition, rule: &AlertRule) -> Result<i64> {
        let action = match transition {
            Transition::Fired => {
                self.counters.fired.fetch_add(1, Ordering::Relaxed);
                "alerts.firing"
            }
            Transition::Resolved => {
                self.counters.resolved.fetch_add(1, Ordering::Relaxed);
                "alerts.resolved"
            }
        };
        tracing::info!(
            alert = alert.name(),
            deployment = alert.deployment(),
            value = alert.value,
            state = alert.state.as_str(),
            "alert {}",
            alert.state.as_str()
        );
        let id = self
            .app
            .audited(
                action,
                format!("deployment:{}", alert.deployment()),
                json!({
                    "alert": alert.name(),
                    "fingerprint": alert.fingerprint,
                    "expr": rule.expr.to_string(),
                    "value": alert.value,
                    "severity": rule.severity.as_str(),
                    "labels": alert.labels,
                    "runbook_url": rule.runbook_url,
                }),
            )
            .save_alert(alert.clone())
            .await?;
        let mut recorded = alert.clone();
        recorded.id = id;
        // No subscriber is no error: nobody acts on alerts yet.
        let _ = self.transitions.send(AlertTransition {
            alert: recorded,
            transition,
        });
        Ok(id)
    }

    /// Reads a rule's signal for one deployment.
    async fn read(
        &self,
        rule: &AlertRule,
        deployment: &Deployment,
        now_ms: i64,
        drift: &mut HashMap<String, Option<Value>>,
    ) -> Reading {
        let window_ms = i64::try_from(rule.window_ms).unwrap_or(i64::MAX);
        match rule.expr.signal.source() {
            Source::Serving => {
                let Some(stats) = self.serving.over(&deployment.name, window_ms, now_ms) else {
                    return Reading::Unknown(
                        "the server has not yet watched the deployment for a whole window".into(),
                    );
                };
                if now_ms - deployment.created_ms < window_ms {
                    return Reading::NoData("the deployment is younger than the window".into());
                }
                serving_signal(&rule.expr.signal, &stats, rule.min_samples.max(1))
            }
            Source::Slo => match &rule.expr.signal {
                Signal::SloBurn(kind) => {
                    crate::slo::burn_reading(
                        &self.app,
                        deployment,
                        *kind,
                        window_ms,
                        rule.min_samples.max(1),
                        now_ms,
                    )
                    .await
                }
                _ => Reading::NoData("not an SLO signal".into()),
            },
            Source::Drift => {
                if !drift.contains_key(&deployment.name) {
                    let latest = match self
                        .app
                        .store()
                        .monitor_windows(&deployment.name, None, 1)
                        .await
                    {
                        Ok(windows) => windows.into_iter().next().and_then(|w| {
                            let stale = i64::try_from(deployment.settings.monitor.window_ms)
                                .unwrap_or(i64::MAX)
                                .saturating_mul(STALE_WINDOWS)
                                .max(60_000);
                            (now_ms - w.end_ms <= stale).then_some(w.report)
                        }),
                        Err(error) => {
                            return Reading::Unknown(format!(
                                "reading monitoring windows: {error}"
                            ));
                        }
                    };
                    drift.insert(deployment.name.clone(), latest);
                }
                match drift.get(&deployment.name).cloned().flatten() {
                    Some(report) => drift_signal(&rule.expr.signal, &report),
                    None => Reading::NoData("no recent monitoring window".into()),
                }
            }
            Source::Performance => {
                let key = (deployment.name.clone(), window_ms);
                let cached = self
                    .performance
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .cloned();
                let answer = match cached {
                    Some((at, answer)) if now_ms - at < PERFORMANCE_TTL_MS => answer,
                    _ => match self
                        .app
                        .performance(&deployment.name, window_ms.max(1_000), 1)
                        .await
                    {
                        Ok(answer) => {
                            self.performance
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(key, (now_ms, answer.clone()));
                            answer
                        }
                        Err(error) => {
                            return Reading::Unknown(format!("reading performance: {error}"));
                        }
                    },
                };
                let min_rows = if rule.min_samples == 0 {
                    DEFAULT_MIN_ROWS
                } else {
                    rule.min_samples
                };
                performance_signal(&rule.expr.signal, &answer, min_rows)
            }
        }
    }

    /// Sends what is due: new firings and resolutions, firing alerts due again, and every
    /// firing alert to Alertmanager each minute. Silenced alerts are held back.
    async fn notify(&self, config: &AlertConfig, now_ms: i64) -> Result<()> {
        let silences = self.app.store().list_silences(now_ms, 10_000).await?;
        let repeat = i64::try_from(config.route.repeat_interval).unwrap_or(i64::MAX);
        // (receiver, group values) -> alerts
        let mut groups: BTreeMap<(String, Vec<String>), Vec<Alert>> = BTreeMap::new();
        let mut finished: Vec<String> = Vec::new();
        {
            let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
            for entry in tracked.values_mut() {
                let alert = &entry.alert;
                if alert.state == AlertState::Pending {
                    continue;
                }
                if alert.state == AlertState::Resolved {
                    finished.push(alert.fingerprint.clone());
                }
                let silenced = silences
                    .iter()
                    .any(|s| s.active(now_ms) && s.matches(&alert.labels));
                let told = entry.sent_ms.is_some() || entry.alertmanager_sent_ms.is_some();
                if silenced {
                    if alert.state == AlertState::Firing || told {
                        self.counters
                            .notifications_silenced
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let group: Vec<String> = config
                    .route
                    .group_by
                    .iter()
                    .map(|label| alert.labels.get(label).cloned().unwrap_or_default())
                    .collect();
                for name in &entry.receivers {
                    let Some(receiver) = config.receiver(name) else {
                        continue;
                    };
                    let alertmanager = receiver.alertmanager.is_some();
                    let last = if alertmanager {
                        entry.alertmanager_sent_ms
                    } else {
                        entry.sent_ms
                    };
                    let due = match alert.state {
                        AlertState::Firing => match last {
                            None => true,
                            Some(at) if alertmanager => now_ms - at >= ALERTMANAGER_RESEND_MS,
                            Some(at) => now_ms - at >= repeat,
                        },
                        // Only those who heard it fire hear it resolve.
                        AlertState::Resolved => told,
                        AlertState::Pending => false,
                    };
                    if due {
                        groups
                            .entry((name.clone(), group.clone()))
                            .or_default()
                            .push(alert.clone());
                    }
                }
                let sent_any = groups
                    .values()
                    .flatten()
                    .any(|a| a.fingerprint == alert.fingerprint);
                if sent_any && alert.state == AlertState::Firing {
                    let am = entry
                        .receivers
                        .iter()
                        .filter_map(|n| config.receiver(n))
                        .any(|r| r.alertmanager.is_some());
                    let other = entry
                        .receivers
                        .iter()
                        .filter_map(|n| config.receiver(n))
                        .any(|r| r.alertmanager.is_none());
                    if am
                        && entry
                            .alertmanager_sent_ms
                            .is_none_or(|at| now_ms - at >= ALERTMANAGER_RESEND_MS)
                    {
                        entry.alertmanager_sent_ms = Some(now_ms);
                    }
                    if other && entry.sent_ms.is_none_or(|at| now_ms - at >= repeat) {
                        entry.sent_ms = Some(now_ms);
                    }
                }
            }
            for fingerprint in &finished {
                tracked.remove(fingerprint);
            }
        }
        let Some((sink, external_url)) = self.sink.get().cloned() else {
            return Ok(());
        };
        for ((receiver_name, values), alerts) in groups {
            let Some(receiver) = config.receiver(&receiver_name).cloned() else {
                continue;
            };
            let group_labels: BTreeMap<String, String> =
                config.route.group_by.iter().cloned().zip(values).collect();
            let notification = Notification {
                status: if alerts.iter().any(|a| a.state == AlertState::Firing) {
                    AlertState::Firing
                } else {
                    AlertState::Resolved
                },
                common_labels: common_labels(&alerts),
                group_labels,
                alerts,
                receiver,
                external_url: external_url.clone(),
                now_ms,
            };
            let sink = sink.clone();
            let deliveries = self.deliveries.clone();
            let counters = self.counters.clone();
            // Delivery retries on its own task: a slow receiver never delays the next
            // evaluation, nor the other receivers.
            tokio::spawn(async move {
                // The semaphore is never closed.
                let Ok(_permit) = deliveries.acquire_owned().await else {
                    return;
                };
                match sink.deliver(&notification).await {
                    Ok(()) => {
                        counters.notifications_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        counters
                            .notifications_failed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            receiver = %notification.receiver.name,
                            alerts = notification.alerts.len(),
                            error = %error,
                            "could not deliver an alert notification"
                        );
                    }
                }
            });
        }
        Ok(())
    }
}

fn common_labels(alerts: &[Alert]) -> BTreeMap<String, String> {
    let Some(first) = alerts.first() else {
        return BTreeMap::new();
    };
    first
        .labels
        .iter()
        .filter(|(k, v)| alerts.iter().all(|a| a.labels.get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An alert's labels and annotations for a rule on a deployment.
fn describe(
    rule: &AlertRule,
    deployment: &Deployment,
    reading: &Reading,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".into(), rule.alert.clone());
    labels.insert("deployment".into(), deployment.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    if let Signal::FeatureDrift(feature) = &rule.expr.signal {
        labels.insert("feature".into(), feature.clone());
    }
    let value = match reading {
        Reading::Value(v) => state::show_value(*v),
        Reading::NoData(why) | Reading::Unknown(why) => format!("no data ({why})"),
    };
    let threshold = rule
        .expr
        .threshold()
        .map(state::show_value)
        .unwrap_or_default();
    let feature = rule.expr.signal.argument().unwrap_or_default().to_owned();
    let values = [
        ("deployment", deployment.name.clone()),
        ("value", value.clone()),
        ("threshold", threshold),
        ("feature", feature),
        ("model", deployment.model_name.clone()),
        ("version", deployment.stable_version.clone()),
    ];
    let mut annotations = BTreeMap::new();
    let summary = if rule.summary.is_empty() {
        format!(
            "{} on deployment {}: {} (value {value})",
            rule.alert, deployment.name, rule.expr
        )
    } else {
        state::render(&rule.summary, &labels, &values)
    };
    annotations.insert("summary".into(), summary);
    if let Some(description) = &rule.description {
        annotations.insert(
            "description".into(),
            state::render(description, &labels, &values),
        );
    }
    if let Some(url) = &rule.runbook_url {
        annotations.insert("runbook_url".into(), url.clone());
    }
    annotations.insert("expr".into(), rule.expr.to_string());
    (labels, annotations)
}

fn serving_signal(signal: &Signal, stats: &ServingStats, min_requests: u64) -> Reading {
    match signal {
        Signal::Requests => Reading::Value(stats.requests as f64),
        Signal::NoTraffic => Reading::Value(if stats.requests == 0 { 1.0 } else { 0.0 }),
        _ if stats.requests < min_requests => Reading::NoData(format!(
            "{} requests in the window, fewer than the {min_requests} the rule needs",
            stats.requests
        )),
        Signal::ErrorRate => stats
            .error_rate()
            .map_or(Reading::NoData("no requests".into()), Reading::Value),
        Signal::LatencyP99Ms => stats
            .latency
            .quantile_ms(0.99)
            .map_or(Reading::NoData("no requests".into()), Reading::Value),
        _ => Reading::NoData("not a serving signal".into()),
    }
}

/// Reads a drift signal from a stored window's report (`{"report": LiveReport, ...}`).
fn drift_signal(signal: &Signal, window: &Value) -> Reading {
    let report = &window["report"];
    let dataset = &report["features"]["dataset"];
    let number = |v: &Value, what: &str| {
        v.as_f64().map_or_else(
            || Reading::NoData(format!("the window has no {what}")),
            Reading::Value,
        )
    };
    let verdict = |v: &Value, what: &str| match v.as_bool() {
        Some(b) => Reading::Value(if b { 1.0 } else { 0.0 }),
        None => Reading::NoData(format!("the window has no {what}")),
    };
    match signal {
        Signal::DriftShare => number(&dataset["share"], "dataset share"),
        Signal::DriftedFeatures => number(&dataset["drifted_columns"], "drifted count"),
        Signal::DatasetDrift => verdict(&dataset["dataset_drift"], "dataset verdict"),
        Signal::PredictionDrift => verdict(&report["prediction"]["drift_detected"], "prediction"),
        Signal::FeatureDrift(feature) => report["features"]["columns"]
            .as_array()
            .and_then(|columns| columns.iter().find(|c| c["name"] == feature.as_str()))
            .map_or_else(
                || Reading::NoData(format!("the window has no feature '{feature}'")),
                |column| verdict(&column["drift_detected"], "feature verdict"),
            ),
        _ => Reading::NoData("not a drift signal".into()),
    }
}

/// Reads a performance drop from `App::performance`'s answer (one window): how much worse the
/// realized (or estimated) metric is than the reference's, positive meaning worse.
fn performance_signal(signal: &Signal, answer: &Value, min_rows: u64) -> Reading {
    let (metric, estimated) = match signal {
        Signal::PerformanceDrop(m) => (m.as_str(), false),
        Signal::EstimatedPerformanceDrop(m) => (m.as_str(), true),
        _ => return Reading::NoData("not a performance signal".into()),
    };
    let Some(reference) = answer["reference"][metric].as_f64() else {
        return Reading::NoData(format!(
            "the version's reference has no {metric} (create it with --label)"
        ));
    };
    let window = &answer["windows"][0];
    let (figures, rows) = if estimated {
        (
            &window["estimated"],
            window["estimated"]["rows"].as_u64().unwrap_or(0),
        )
    } else {
        (&window["realized"], window["labeled"].as_u64().unwrap_or(0))
    };
    if rows < min_rows {
        return Reading::NoData(format!(
            "{rows} {} rows in the window, fewer than {min_rows}",
            if estimated { "scored" } else { "labeled" }
        ));
    }
    let Some(current) = figures[metric].as_f64() else {
        return Reading::NoData(format!("no {metric} in the window"));
    };
    let higher_is_better = alerting::expr::higher_is_better(metric).unwrap_or(true);
    Reading::Value(if higher_is_better {
        reference - current
    } else {
        current - reference
    })
}

/// What `GET /alerts` answers: the alerts being tracked and the recent stored history.
pub struct AlertList {
    pub active: Vec<Alert>,
    pub history: Vec<Alert>,
}

impl App {
    /// The applied alerting configuration (an empty one when none was applied).
    pub async fn alert_config(&self) -> Result<StoredAlertConfig> {
        Ok(self.store().get_alert_config().await?.unwrap_or_default())
    }

    /// Replaces the alerting configuration with `config` (checked first, whole). With
    /// `dry_run`, only says what would change. `expected_revision` guards against applying over
    /// someone else's change made since it was read. Audited with the diff.
    pub async fn apply_alert_config(
        &self,
        config: AlertConfig,
        expected_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<(ConfigDiff, StoredAlertConfig)> {
        config.validate()?;
        let current = self.alert_config().await?;
        let diff = current.config.diff(&config);
        if dry_run {
            return Ok((diff, current));
        }
        let expected = current.expected(expected_revision)?;
        let stored = self
            .audited(
                "alerts.rules.apply",
                "alerting:config",
                json!({
                    "revision": expected.saturating_add(1),
                    "diff": diff,
                    "rules": config.rules.len(),
                    "receivers": config.receivers.iter().map(|r| json!({"name": r.name, "kind": r.target().map(|t| t.kind()).unwrap_or("?")})).collect::<Vec<_>>(),
                }),
            )
            .put_alert_config(config, expected, &self.caller().actor, now_ms())
            .await?;
        Ok((diff, stored))
    }

    pub async fn create_silence(&self, silence: NewSilence) -> Result<Silence> {
        silence.validate()?;
        let now = now_ms();
        if silence.ends_ms <= now {
            return Err(Error::invalid("the silence would already be over"));
        }
        // Silences to start far ahead would pile up unseen; a month ahead is plenty to plan.
        if silence.starts_ms > now.saturating_add(alerting::state::MAX_SILENCE_MS) {
            return Err(Error::invalid("a silence starts at most 31 days from now"));
        }
        let matchers: Vec<String> = silence.matchers.iter().map(|m| m.to_string()).collect();
        self.audited(
            "alerts.silence.create",
            "alerting:silences",
            json!({
                "matchers": matchers,
                "starts_ms": silence.starts_ms,
                "ends_ms": silence.ends_ms,
                "comment": silence.comment,
            }),
        )
        .create_silence(silence, &self.caller().actor, now)
        .await
    }

    pub async fn expire_silence(&self, id: i64) -> Result<Silence> {
        self.audited(
            "alerts.silence.expire",
            format!("alerting:silence:{id}"),
            json!({ "id": id }),
        )
        .expire_silence(id, now_ms())
        .await
    }

    /// Silences still in force or yet to start; with `all`, expired ones too (the newest
    /// 1,000).
    pub async fn list_silences(&self, all: bool) -> Result<Vec<Silence>> {
        let after = if all { i64::MIN } else { now_ms() };
        self.store().list_silences(after, 1_000).await
    }

    /// Alerts: `active` (pending and firing, from the evaluator) and `history` (stored, newest
    /// first, at most `limit`), filtered by state and deployment.
    /// The firing alerts as the leader stored them: what a server that does not lead lists
    /// as active (pending alerts live only in the leader's memory).
    pub async fn stored_firing_alerts(&self) -> Result<Vec<Alert>> {
        self.store()
            .list_alerts(
                &AlertFilter {
                    state: Some(AlertState::Firing),
                    ..AlertFilter::default()
                },
                MAX_LISTED,
            )
            .await
    }

    pub async fn list_alerts(
        &self,
        active: Vec<Alert>,
        state: Option<AlertState>,
        deployment: Option<String>,
        limit: usize,
    ) -> Result<AlertList> {
        let active: Vec<Alert> = active
            .into_iter()
            .filter(|a| state.is_none_or(|s| s == a.state))
            .filter(|a| deployment.as_deref().is_none_or(|d| d == a.deployment()))
            .collect();
        let history = if state.is_none() || state == Some(AlertState::Resolved) {
            self.store()
                .list_alerts(
                    &AlertFilter {
                        state: Some(AlertState::Resolved),
                        deployment,
                        ..AlertFilter::default()
                    },
                    limit.clamp(1, MAX_LISTED),
                )
                .await?
        } else {
            Vec::new()
        };
        Ok(AlertList { active, history })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_log_sums_the_window_and_forgets_the_rest() {
        let log = ServingLog::new(0);
        let mut one = ServingStats::default();
        one.record(200, 1_000);
        one.record(503, 2_000);
        for second in 0..7_200 {
            log.record("d", &one, second * 1_000);
        }
        let now = 7_200_000;
        let last_minute = log.over("d", 60_000, now).unwrap();
        assert_eq!(last_minute.requests, 120, "60 reports of 2 requests");
        assert_eq!(last_minute.error_rate(), Some(0.5));
        let hour = log.over("d", 3_600_000, now).unwrap();
        assert_eq!(hour.requests, 2 * 3_600, "the hour and no more");
        assert_eq!(log.over("other", 60_000, now).unwrap().requests, 0);
        // Younger than the window: no data rather than zero traffic.
        assert_eq!(ServingLog::new(now - 1_000).over("d", 60_000, now), None);
        log.retain(&[]);
        assert_eq!(log.over("d", 60_000, now).unwrap().requests, 0);
    }

    #[test]
    fn serving_signals_need_their_samples() {
        let mut stats = ServingStats::default();
        for i in 0..100 {
            stats.record(if i < 5 { 500 } else { 200 }, 1_000 + i * 10);
        }
        let rate = |min| serving_signal(&Signal::ErrorRate, &stats, min);
        assert_eq!(rate(100), Reading::Value(0.05));
        assert!(matches!(rate(101), Reading::NoData(_)));
        let Reading::Value(p99) = serving_signal(&Signal::LatencyP99Ms, &stats, 1) else {
            panic!("p99")
        };
        assert!((1.0..=2.0).contains(&p99), "{p99}");
        let empty = ServingStats::default();
        assert_eq!(
            serving_signal(&Signal::NoTraffic, &empty, 1),
            Reading::Value(1.0)
        );
        assert_eq!(
            serving_signal(&Signal::NoTraffic, &stats, 1),
            Reading::Value(0.0)
        );
    }

    #[test]
    fn drift_signals_read_the_stored_report() {
        let window = json!({"report": {
            "rows": 500,
            "features": {
                "columns": [
                    {"name": "amount", "drift_detected": true},
                    {"name": "age", "drift_detected": false}
                ],
                "dataset": {"columns": 2, "drifted_columns": 1, "share": 0.5, "dataset_drift": true}
            },
            "prediction": {"name": "label", "drift_detected": false}
        }});
        assert_eq!(
            drift_signal(&Signal::DriftShare, &window),
            Reading::Value(0.5)
        );
        assert_eq!(
            drift_signal(&Signal::DriftedFeatures, &window),
            Reading::Value(1.0)
        );
        assert_eq!(
            drift_signal(&Signal::DatasetDrift, &window),
            Reading::Value(1.0)
        );
        assert_eq!(
            drift_signal(&Signal::PredictionDrift, &window),
            Reading::Value(0.0)
        );
        assert_eq!(
            drift_signal(&Signal::FeatureDrift("amount".into()), &window),
            Reading::Value(1.0)
        );
        assert!(matches!(
            drift_signal(&Signal::FeatureDrift("nope".into()), &window),
            Reading::NoData(_)
        ));
    }

    #[test]
    fn performance_drops_are_positive_when_worse() {
        let answer = json!({
            "reference": {"accuracy": 0.9, "mae": 1.0},
            "windows": [{"labeled": 50, "realized": {"accuracy": 0.8, "mae": 1.5},
                         "estimated": {"rows": 10, "accuracy": 0.85}}]
        });
        let drop = |s: Signal, min| performance_signal(&s, &answer, min);
        let Reading::Value(accuracy) = drop(Signal::PerformanceDrop("accuracy".into()), 30) else {
            panic!()
        };
        assert!((accuracy - 0.1).abs() < 1e-12);
        assert_eq!(
            drop(Signal::PerformanceDrop("mae".into()), 30),
            Reading::Value(0.5)
        );
        assert!(matches!(
            drop(Signal::PerformanceDrop("accuracy".into()), 51),
            Reading::NoData(_)
        ));
        // Ten scored rows are fewer than the thirty the rule needs.
        assert!(matches!(
            drop(Signal::EstimatedPerformanceDrop("accuracy".into()), 30),
            Reading::NoData(_)
        ));
        assert!(matches!(
            drop(Signal::PerformanceDrop("f1".into()), 1),
            Reading::NoData(_)
        ));
    }
}
