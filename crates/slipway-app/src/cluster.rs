//! Several servers on one metadata store.
//!
//! Every server answers requests and serves deployments, but the work that must happen once
//! (the rollout controller's analyses and decisions, drift windows, alert evaluation, retraining
//! schedules) runs on one of them: the holder of the store's `leader` lease. The lease is taken
//! and renewed on the database's clock; a server that cannot renew it stops leading by its own
//! clock before the lease can lapse, and another takes over within a lease's length of the
//! leader dying (at once when it shuts down and releases it).
//!
//! Those jobs read measurements that every data plane reports. A report reaching the leader
//! (from its own plane, or a replica's through a load balancer) goes to its memory; one reaching
//! another server is queued in the store, and the leader takes the queue every controller tick.
//! Each queued report is taken once. When leadership moves, the new leader starts its windows
//! afresh, as a restarted server does: an analysis is delayed, never decided twice or on
//! another server's half of the data, and decisions stay compare-and-set on the deployment's
//! revision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use slipway_core::cluster::{GENERATION_MONITOR_REFERENCES, LEADER_LEASE, Lease};
use slipway_core::deployment::{Deployment, ServingStats, WindowStats};
use slipway_core::{Error, Result};
use slipway_monitor::live::Summary;

use crate::alerting::Alerter;
use crate::monitoring::Monitor;
use crate::retrain::Retrainer;
use crate::rollout::Controller;
use crate::{App, now_ms};

/// How long a lease lasts from its last renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Queued reports older than this when the leader takes them are dropped: their window has
/// moved on (counted in `stale`).
const QUEUED_MAX_AGE_MS: i64 = 30_000;
/// Queued reports taken at once.
const DRAIN_BATCH: usize = 500;

/// How a server takes part.
#[derive(Debug, Clone)]
pub enum Mode {
    /// The only server (tests, embedded use): it always leads and never touches the lease.
    Standalone,
    /// One of any number on the store: `node` names this process in the lease.
    Clustered { node: String, lease_ttl: Duration },
}

/// A name for this process that no other process shares: host, pid and a random suffix.
pub fn default_node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "slipway".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}

/// A measurement on its way from a server that does not lead to the one that does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Relayed {
    /// A plane's report: what callers saw, and the rollout stage's window when one runs.
    Serving {
        window: Option<(i64, usize, WindowStats)>,
        serving: ServingStats,
    },
    /// A plane's drift summary of one version's traffic.
    Summary { version: i64, summary: Summary },
}

#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Reports this server queued for the leader.
    pub queued: AtomicU64,
    /// Queued reports this server took as the leader.
    pub taken: AtomicU64,
    /// Queued reports dropped as too old, or unreadable.
    pub dropped: AtomicU64,
    /// Times this server started or stopped leading.
    pub transitions: AtomicU64,
}

/// What `GET /cluster` says.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This process's name in the lease.
    pub node: String,
    pub clustered: bool,
    /// Whether this process leads now.
    pub leader: bool,
    /// The lease as this process last saw it (none when standalone).
    pub lease: Option<Lease>,
    /// Reports this process queued for another leader, took as the leader, and dropped.
    pub reports_queued: u64,
    pub reports_taken: u64,
    pub reports_dropped: u64,
}

struct LeaderState {
    leader: bool,
    /// By this process's clock, when leadership ends unless renewed before: a renewal sent at
    /// `t` moves it to `t + ttl - margin`, earlier than the store can let the lease lapse.
    until: Option<Instant>,
    lease: Option<Lease>,
}

pub struct Cluster {
    app: App,
    mode: Mode,
    state: Mutex<LeaderState>,
    generations: Mutex<BTreeMap<String, i64>>,
    controller: Arc<Controller>,
    monitor: Arc<Monitor>,
    alerter: Arc<Alerter>,
    retrainer: Arc<Retrainer>,
    pub counters: ClusterCounters,
}

impl Cluster {
    pub fn new(
        app: &App,
        mode: Mode,
        controller: Arc<Controller>,
        monitor: Arc<Monitor>,
        alerter: Arc<Alerter>,
        retrainer: Arc<Retrainer>,
    ) -> Cluster {
        let standalone = matches!(mode, Mode::Standalone);
        Cluster {
            app: app.for_caller("slipway-cluster", None),
            mode,
            state: Mutex::new(LeaderState {
                leader: standalone,
                until: None,
                lease: None,
            }),
            generations: Mutex::new(BTreeMap::new()),
            controller,
            monitor,
            alerter,
            retrainer,
            counters: ClusterCounters::default(),
        }
    }

    pub fn node(&self) -> &str {
        match &self.mode {
            Mode::Standalone => "standalone",
            Mode::Clustered { node, .. } => node,
        }
    }

    /// How often [`Cluster::step`] should run: a fifth of the lease, so four renewals can fail
    /// before it lapses.
    pub fn step_interval(&self) -> Duration {
        match &self.mode {
            Mode::Standalone => Duration::from_secs(2),
            Mode::Clustered { lease_ttl, .. } => *lease_ttl / 5,
        }
    }

    /// Whether this process leads now (by its own clock: a leader that could not renew in time
    /// has stopped, whether or not it has heard so).
    pub fn is_leader(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &self.mode {
            Mode::Standalone => true,
            Mode::Clustered { .. } => {
                state.leader && state.until.is_some_and(|u| Instant::now() < u)
            }
        }
    }

    pub fn status(&self) -> ClusterStatus {
        let leader = self.is_leader();
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        ClusterStatus {
            node: self.node().to_owned(),
            clustered: matches!(self.mode, Mode::Clustered { .. }),
            leader,
            lease: state.lease.clone(),
            reports_queued: self.counters.queued.load(Ordering::Relaxed),
            reports_taken: self.counters.taken.load(Ordering::Relaxed),
            reports_dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Takes or renews the lease, starts or stops leading accordingly, and drops caches whose
    /// generation moved in the store. Called every [`Cluster::step_interval`].
    pub async fn step(&self) -> Result<()> {
        let leading = match &self.mode {
            Mode::Standalone => Ok(()),
            Mode::Clustered { node, lease_ttl } => self.renew(node, *lease_ttl).await,
        };
        let generations = self.watch_generations().await;
        leading.and(generations)
    }

    async fn renew(&self, node: &str, ttl: Duration) -> Result<()> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let attempt = self
            .app
            .store()
            .acquire_lease(LEADER_LEASE, node, ttl_ms)
            .await;
        let lead = match &attempt {
            Ok(lease) => lease.held_by(node),
            // The store cannot be reached: lead on until the local deadline, no longer.
            Err(_) => self.is_leader(),
        };
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(lease) = &attempt {
                state.lease = Some(lease.clone());
                state.until = lead.then(|| sent + ttl.mul_f64(0.9));
            }
            let changed = state.leader != lead;
            state.leader = lead;
            changed
        };
        if changed {
            self.counters.transitions.fetch_add(1, Ordering::Relaxed);
            self.reset(lead);
            match (&attempt, lead) {
                (Ok(lease), true) => tracing::info!(
                    node,
                    epoch = lease.epoch,
                    "this server leads now: rollouts, drift windows, alerts and retraining schedules run here"
                ),
                (Ok(lease), false) => tracing::warn!(
                    node,
                    leader = %lease.holder,
                    "this server no longer leads"
                ),
                (Err(_), _) => tracing::warn!(
                    node,
                    "this server stops leading: the lease could not be renewed in time"
                ),
            }
        }
        attempt.map(|_| ())
    }

    /// Lets another server lead at once (shutdown).
    pub async fn resign(&self) {
        let Mode::Clustered { node, .. } = &self.mode else {
            return;
        };
        let was_leader = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut state.leader, false)
        };
        if was_leader && let Err(error) = self.app.store().release_lease(LEADER_LEASE, node).await {
            tracing::warn!(%error, "could not release the leader's lease; it lapses on its own");
        }
    }

    /// What the leader's jobs hold in memory, forgotten: it belonged to a period in which
    /// another server may have led. `leading`: this server starts leading now.
    fn reset(&self, leading: bool) {
        let now = now_ms();
        self.controller.reset();
        self.monitor.reset();
        self.alerter.reset();
        self.alerter.serving().reset(now);
        let catch_up = match &self.mode {
            // Schedules that came due while the previous leader's lease ran out still fire.
            Mode::Clustered { lease_ttl, .. } if leading => {
                Some(now - i64::try_from(lease_ttl.as_millis()).unwrap_or(0) * 2)
            }
            _ => None,
        };
        self.retrainer.reset(catch_up);
    }

    async fn watch_generations(&self) -> Result<()> {
        let now = self.app.store().generations().await?;
        let moved = {
            let mut seen = self.generations.lock().unwrap_or_else(|e| e.into_inner());
            let moved = |topic: &str| seen.get(topic) != now.get(topic);
            let references = moved(GENERATION_MONITOR_REFERENCES);
            *seen = now;
            references
        };
        if moved {
            self.monitor.forget_references();
        }
        Ok(())
    }

    /// A plane's report of `deployment`'s traffic, from `source`. Returns whether the rollout
    /// window was counted (a server that does not lead counts what the caller checked).
    pub async fn report(
        &self,
        deployment: &str,
        window: Option<(i64, usize, WindowStats)>,
        serving: ServingStats,
        source: &str,
    ) -> Result<bool> {
        if self.is_leader() {
            return Ok(self.apply_serving(deployment, window, &serving, source));
        }
        if window.as_ref().is_none_or(|(_, _, stats)| stats.is_empty()) && serving.is_empty() {
            return Ok(true);
        }
        self.queue(deployment, source, &Relayed::Serving { window, serving })
            .await?;
        Ok(true)
    }

    fn apply_serving(
        &self,
        deployment: &str,
        window: Option<(i64, usize, WindowStats)>,
        serving: &ServingStats,
        source: &str,
    ) -> bool {
        let accepted = match window {
            Some((rollout_id, stage, stats)) => {
                stats.is_empty()
                    || self
                        .controller
                        .record(deployment, rollout_id, stage, &stats, source)
            }
            None => true,
        };
        self.alerter.serving().record(deployment, serving, now_ms());
        accepted
    }

    /// A plane's drift summary of `deployment`'s traffic to `version`, checked here whoever
    /// leads, so the plane hears of a mistake.
    pub async fn summary(
        &self,
        deployment: &Deployment,
        version: i64,
        summary: Summary,
        source: &str,
    ) -> Result<()> {
        if self.is_leader() {
            return self
                .monitor
                .record(deployment, version, summary, source)
                .await;
        }
        self.monitor.check(deployment, version, &summary).await?;
        if summary.rows == 0 {
            return Ok(());
        }
        self.queue(
            &deployment.name,
            source,
            &Relayed::Summary { version, summary },
        )
        .await
    }

    async fn queue(&self, deployment: &str, source: &str, relayed: &Relayed) -> Result<()> {
        let body = serde_json::to_string(relayed)
            .map_err(|e| Error::internal("encoding a report for the leader", e))?;
        self.app
            .store()
            .queue_report(deployment, source, body, now_ms())
            .await?;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The leader takes what other servers queued and applies it; returns how many it applied.
    /// Nothing happens on a server that does not lead.
    pub async fn drain(&self) -> Result<usize> {
        if !self.is_leader() || !self.app.store().has_queued_reports().await? {
            return Ok(0);
        }
        let mut applied = 0;
        let mut specs: HashMap<String, Option<Deployment>> = HashMap::new();
        loop {
            let taken = self.app.store().take_queued_reports(DRAIN_BATCH).await?;
            let batch = taken.len();
            self.counters
                .taken
                .fetch_add(batch as u64, Ordering::Relaxed);
            let now = now_ms();
            for report in taken {
                if now - report.created_ms > QUEUED_MAX_AGE_MS {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let relayed: Relayed = match serde_json::from_str(&report.body) {
                    Ok(relayed) => relayed,
                    Err(error) => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, id = report.id, "a queued report could not be read");
                        continue;
                    }
                };
                match relayed {
                    Relayed::Serving { window, serving } => {
                        self.apply_serving(&report.deployment, window, &serving, &report.source);
                    }
                    Relayed::Summary { version, summary } => {
                        if !specs.contains_key(&report.deployment) {
                            let spec =
                                match self.app.store().get_deployment(&report.deployment).await {
                                    Ok(spec) => Some(spec),
                                    Err(Error::NotFound(_)) => None,
                                    Err(other) => return Err(other),
                                };
                            specs.insert(report.deployment.clone(), spec);
                        }
                        let Some(Some(spec)) = specs.get(&report.deployment) else {
                            continue;
                        };
                        if let Err(error) = self
                            .monitor
                            .record(spec, version, summary, &report.source)
                            .await
                        {
                            tracing::warn!(deployment = %report.deployment, %error, "a queued drift summary");
                        }
                    }
                }
                applied += 1;
            }
            if batch < DRAIN_BATCH {
                return Ok(applied);
            }
        }
    }
}
