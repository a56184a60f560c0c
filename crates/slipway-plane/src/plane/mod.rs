//! The data plane of managed deployments: the deployments this process serves, each with its
//! stable and (during a rollout) candidate version loaded, the traffic split, a circuit breaker
//! per variant, the window of measurements not yet reported, and the prediction log queue.
//!
//! The same plane runs inside `slipway server` (specs and models read from the store, reports
//! handed to the controller in-process) and in `slipway serve --deployment NAME` replicas
//! (specs, models and reports over the server's HTTP API): a [`PlaneSource`] says which.
//!
//! A spec change (new revision) builds a new [`Served`] and swaps it in: requests already
//! running keep the `Arc` of the old one and finish on it, so a hot swap drops nothing. Loaded
//! versions are shared between revisions, so a stage change reloads no model.

pub mod http;
pub(crate) mod metrics;
pub mod monitor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use slipway_core::deployment::{
    Breaker, BreakerState, Deployment, PredictionRecord, ServingStats, Traffic, Variant,
    WindowStats,
};
use slipway_monitor::live::{Schema, Summary};
use slipway_serving::batcher::{BatchConfig, BatchError, Batcher};
use slipway_serving::model::ModelError;
use slipway_serving::{OnnxModel, Output, OutputValue, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use monitor::LiveMonitor;

pub use http::replica_router;

use crate::scoring::Limits;

/// Model files as a source hands them over.
pub struct ModelBytes {
    pub onnx: bytes::Bytes,
    pub mlmodel: Option<String>,
}

/// Where a plane gets deployments and models, and where its measurements go.
#[async_trait]
pub trait PlaneSource: Send + Sync + 'static {
    /// The deployments to serve (a replica: only its own).
    async fn deployments(&self) -> Result<Vec<Deployment>, String>;
    async fn model_files(&self, model: &str, version: &str) -> Result<ModelBytes, String>;
    /// A deployment's measurements since the last report: what every caller saw (`serving`,
    /// always), and the rollout stage's window when one runs (`window`, for the controller).
    async fn report(
        &self,
        deployment: &str,
        window: Option<(i64, usize, WindowStats)>,
        serving: ServingStats,
    ) -> Result<(), String>;
    async fn log_predictions(&self, records: Vec<PredictionRecord>) -> Result<(), String>;
    /// The schema a version's traffic is profiled by, when the version has a monitoring
    /// reference.
    async fn monitor_schema(&self, model: &str, version: &str) -> Result<Option<Schema>, String>;
    /// A summary of a deployment's traffic to `version` since the last one.
    async fn report_summary(
        &self,
        deployment: &str,
        version: &str,
        summary: Summary,
    ) -> Result<(), String>;
}

/// The least time between two syncs caused by requests for unknown deployments.
pub const MISS_SYNC_GAP: Duration = Duration::from_millis(200);
/// How long such a request waits for the sync (a model being loaded may take longer).
pub const MISS_SYNC_WAIT: Duration = Duration::from_secs(2);

/// How a plane runs its deployments (the same for all of them).
#[derive(Debug, Clone)]
pub struct PlaneConfig {
    pub limits: Limits,
    /// Sessions per loaded model version.
    pub sessions: usize,
    /// How often specs are re-read.
    pub sync_every: Duration,
    /// How often measurements are reported.
    pub report_every: Duration,
    /// Prediction records held in memory before new ones are dropped (and counted).
    pub log_capacity: usize,
    /// Mirrored (shadow) runs at once; more are skipped and counted, never queued.
    pub max_mirrors: usize,
    /// Where libonnxruntime is, if not found the usual way.
    pub onnxruntime: Option<std::path::PathBuf>,
}

impl Default for PlaneConfig {
    fn default() -> Self {
        PlaneConfig {
            limits: Limits::default(),
            sessions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            sync_every: Duration::from_millis(500),
            report_every: Duration::from_millis(250),
            log_capacity: 10_000,
            max_mirrors: 32,
            onnxruntime: None,
        }
    }
}

/// One model version, loaded, shared by every revision that serves it.
pub struct LoadedVersion {
    pub version: String,
    /// `x-slipway-model-version`, made once.
    pub(crate) version_header: Option<axum::http::HeaderValue>,
    input_name: String,
    /// The MLmodel signature, when the version is an MLflow model folder that has one.
    pub(crate) signature: Option<Arc<slipway_serving::signature::Signature>>,
    pub model: Arc<OnnxModel>,
    batcher: Option<Batcher>,
    /// Places at the model, two per session: requests being parsed or run.
    work: Arc<Semaphore>,
    /// How many places `work` has.
    places: usize,
    queue: QueueClock,
}

/// What one prediction took.
pub(crate) struct Ran {
    pub outputs: Vec<Output>,
    pub batch_rows: usize,
    pub inference: Duration,
    /// This request's share of the run's CPU time (what cost per inference is measured on).
    pub cpu: Duration,
    /// True for one request per model run, so batch metrics count runs, not requests.
    pub reports_run: bool,
}

pub(crate) enum RunError {
    /// The rows do not fit this model.
    BadInput(String),
    /// The model failed, or the server is at its limit.
    Failed(String),
    /// The micro-batch queue is full, or the request waited its limit for a session: shed,
    /// saying which.
    Full(&'static str),
}

/// A request's place at a version's model: taken before its body is parsed and held until the
/// model answered, so a request that is turned away has cost no parsing, and the requests
/// parsed at once are as many as can run.
pub(crate) struct Admitted {
    _place: Option<OwnedSemaphorePermit>,
}

/// See [`LoadedVersion::in_flight_limit`].
const IN_FLIGHT_PER_PLACE: usize = 8;

const OVERLOADED: &str =
    "the deployment is overloaded: the request waited its limit for the model; retry shortly";

/// When a version's queue was last empty (a request found a session free), for the
/// controlled-delay admission of [`LoadedVersion::admit`].
struct QueueClock {
    epoch: Instant,
    last_empty_micros: AtomicU64,
    /// Requests waiting for a place now: an idle version has an old "last empty" too, but
    /// nobody in its queue.
    waiting: AtomicUsize,
}

/// Counts a request as waiting for as long as it lives, however its wait ends (a place, the
/// time limit, or the request dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QueueClock {
    fn new() -> Self {
        QueueClock {
            epoch: Instant::now(),
            last_empty_micros: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    fn empty_now(&self) {
        let micros = self.epoch.elapsed().as_micros() as u64;
        self.last_empty_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// How long no request may find a place free before the queue counts as standing: twice
    /// the wait a request is allowed (CoDel's interval; 100 ms by default, as in CoDel). A
    /// stall of the machine leaves a queue behind it (a VM's stolen time, a page-fault storm:
    /// 30–70 ms on the machines here), and shedding for it turned away requests at 80 % of
    /// capacity; arrivals that outpace the model keep the queue for longer than that.
    fn interval(max_wait: Duration) -> Duration {
        max_wait * 2
    }

    /// Whether no request has found a place free for the interval.
    fn full_for(&self, max_wait: Duration) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        now.saturating_sub(self.last_empty_micros.load(Ordering::Relaxed))
            > Self::interval(max_wait).as_micros() as u64
    }

    /// Whether the queue stands: requests wait now, and none has found a place free for the
    /// interval. More arrives than the model answers.
    fn standing(&self, max_wait: Duration) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 && self.full_for(max_wait)
    }

    /// How long a request may wait for a session: `max_wait` while the queue empties now and
    /// then (a burst), a tenth of it once the queue has not been empty for the interval (a
    /// standing queue: more arrives than the model can answer). This is CoDel's rule as
    /// servers use it ("Fail at Scale", Facebook, 2015): under sustained overload the
    /// requests that are served wait little and the rest are shed at once, instead of every
    /// request waiting the full limit.
    fn allowed_wait(&self, max_wait: Duration) -> Duration {
        // Asked by a request about to wait, after finding no place free: an idle version
        // found its first place free.
        if self.full_for(max_wait) {
            max_wait / 10
        } else {
            max_wait
        }
    }
}

/// How late this process's async runtime runs a task that is due: the wait every request
/// has before any handler sees it once the CPU is saturated. The queue at a model is only
/// the last one; when parsing, reading and refusing requests take all the CPU, requests wait
/// in the runtime (and the kernel) instead, where no count of requests in flight sees them.
/// So while a deployment's model has a standing queue (more arrives than it answers), the
/// door also refuses a share of requests that grows with this lag, as toobusy does for
/// Node's event loop, and the CPU keeps room to answer the rest on time. The lag alone is no
/// reason: a neighbour's burst on a shared machine is not this deployment's overload.
pub(crate) struct RuntimeLag {
    /// Exponentially weighted mean of the probe's lateness, in microseconds.
    micros: AtomicU64,
}

impl RuntimeLag {
    const PROBE_EVERY: Duration = Duration::from_millis(5);
    /// The lag from which the door refuses some requests. A request passes through the
    /// runtime's queue several times (headers, body, parse, inference, answer), so its own
    /// wait is a few times this.
    pub(crate) const TARGET: Duration = Duration::from_millis(2);

    fn new() -> Self {
        RuntimeLag {
            micros: AtomicU64::new(0),
        }
    }

    fn record(&self, late: Duration) {
        let sample = late.as_micros() as u64;
        let mean = self.micros.load(Ordering::Relaxed);
        // A sixteenth of each sample (about 80 ms of memory at a tick every 5 ms): a lag
        // that lasts moves it, one stall of the machine barely does.
        self.micros
            .store(mean - mean / 16 + sample / 16, Ordering::Relaxed);
    }

    pub(crate) fn current(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    /// Whether to refuse a request at the door: never while the lag is under `target`, then
    /// with a probability rising to one at twice the target.
    pub(crate) fn refuses(&self, target: Duration) -> bool {
        let lag = self.current();
        if lag <= target || target.is_zero() {
            return false;
        }
        let over = (lag - target).as_secs_f64() / target.as_secs_f64();
        fastrand::f64() < over
    }

    /// Measures until the plane stops: a task that asks to wake every few milliseconds and
    /// notes how late it woke.
    async fn probe(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Self::PROBE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = ticks.tick().await;
            self.record(tokio::time::Instant::now().saturating_duration_since(due));
        }
    }
}

impl LoadedVersion {
    /// Takes a place at the model, waiting no longer than the queue allows (see
    /// [`QueueClock::allowed_wait`]); past that the request is shed (`RunError::Full`).
    /// Micro-batched versions admit everyone: their batcher's queue is their limit.
    pub(crate) async fn admit(&self, max_wait: Duration) -> Result<Admitted, RunError> {
        if self.batcher.is_some() {
            return Ok(Admitted { _place: None });
        }
        match self.work.clone().try_acquire_owned() {
            Ok(permit) => {
                self.queue.empty_now();
                return Ok(Admitted {
                    _place: Some(permit),
                });
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(RunError::Failed("the model is unloaded".to_owned()));
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let wait = self.queue.allowed_wait(max_wait);
        let _waiting = Waiting::new(&self.queue.waiting);
        match tokio::time::timeout(wait, self.work.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Admitted {
                _place: Some(permit),
            }),
            Ok(Err(e)) => Err(RunError::Failed(e.to_string())),
            Err(_) => Err(RunError::Full(OVERLOADED)),
        }
    }

    /// Runs `rows` at the place `admitted` holds.
    pub(crate) async fn run(
        &self,
        rows: Vec<Vec<f32>>,
        admitted: Admitted,
    ) -> Result<Ran, RunError> {
        let model_error = |e: ModelError| match e {
            ModelError::BadInput(message) => RunError::BadInput(message),
            other => RunError::Failed(other.to_string()),
        };
        // Micro-batching, when the deployment asks for it, takes every request: its max wait
        // is the latency the deployment accepts for larger runs.
        if let Some(batcher) = &self.batcher {
            return match batcher.submit(rows).await {
                Ok(batched) => Ok(Ran {
                    outputs: batched.outputs,
                    batch_rows: batched.batch_rows,
                    inference: batched.inference,
                    cpu: batched.cpu,
                    reports_run: batched.reports_run,
                }),
                Err(BatchError::Full) => Err(RunError::Full(
                    "the deployment's micro-batch queue is full; retry shortly",
                )),
                Err(BatchError::Model(e)) => Err(model_error(e)),
                Err(other) => Err(RunError::Failed(other.to_string())),
            };
        }
        // Otherwise a small request runs in place: the hand-off to a thread would cost more
        // than the model.
        let values: usize = rows.iter().map(Vec::len).sum();
        if values <= crate::scoring::INLINE_VALUES {
            let started = std::time::Instant::now();
            let (outcome, cpu) =
                slipway_serving::cpu::measure(|| self.model.predict_rows_if_free(&rows));
            if let Some(outcome) = outcome {
                return outcome
                    .map(|outputs| Ran {
                        outputs,
                        batch_rows: rows.len(),
                        inference: started.elapsed(),
                        cpu,
                        reports_run: true,
                    })
                    .map_err(model_error);
            }
        }
        let model = self.model.clone();
        tokio::task::spawn_blocking(move || {
            let _admitted = admitted;
            let started = std::time::Instant::now();
            let count = rows.len();
            let (outcome, cpu) = slipway_serving::cpu::measure(|| model.predict_rows(&rows));
            outcome.map(|outputs| Ran {
                outputs,
                batch_rows: count,
                inference: started.elapsed(),
                cpu,
                reports_run: true,
            })
        })
        .await
        .map_err(|e| RunError::Failed(format!("inference stopped: {e}")))?
        .map_err(model_error)
    }

    /// Whether more arrives at this version than it answers (see [`QueueClock::standing`]).
    pub(crate) fn overloaded(&self, max_wait: Duration) -> bool {
        self.batcher.is_none() && self.queue.standing(max_wait)
    }

    /// Requests this version may have in flight: what its places answer within a few
    /// service times. Every request in flight shares the same CPU (reading bodies, parsing,
    /// answering), so past this each admitted request only waits longer for it: at twice a
    /// one-core replica's capacity, 64 in flight gave a p99 of 23–43 ms, 16 gave 15 ms
    /// (BENCHMARKS.md). Micro-batched versions take what their batcher's queue holds.
    pub(crate) fn in_flight_limit(&self) -> usize {
        if self.batcher.is_some() {
            usize::MAX / 4
        } else {
            self.places * IN_FLIGHT_PER_PLACE
        }
    }

    pub(crate) fn input_name(&self) -> &str {
        &self.input_name
    }
}

/// A deployment as this process serves it at one revision.
pub struct Served {
    pub spec: Deployment,
    pub stable: Arc<LoadedVersion>,
    pub candidate: Option<Arc<LoadedVersion>>,
    pub traffic: Traffic,
    /// The rollout stage measurements belong to.
    pub window_key: Option<(i64, usize)>,
    /// Stable and candidate breakers; carried over while the candidate stays the same.
    breakers: Arc<Mutex<[Breaker; 2]>>,
    /// Measurements not yet reported; shared by the revisions of one rollout stage, so requests
    /// still finishing on a swapped-out revision count in the same window.
    window: Arc<Mutex<WindowStats>>,
    /// Every request's outcome and latency not yet reported; shared by all revisions of the
    /// deployment.
    serving: Arc<Mutex<ServingStats>>,
    /// Requests handled at once for this deployment; more are shed.
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) handles: metrics::Handles,
    /// Drift monitoring of the stable's and the candidate's traffic, when their version has a
    /// reference.
    monitors: [Option<Arc<LiveMonitor>>; 2],
}

impl Served {
    pub(crate) fn version(&self, variant: Variant) -> Option<&Arc<LoadedVersion>> {
        match variant {
            Variant::Stable => Some(&self.stable),
            Variant::Candidate => self.candidate.as_ref(),
        }
    }

    fn breaker_index(variant: Variant) -> usize {
        match variant {
            Variant::Stable => 0,
            Variant::Candidate => 1,
        }
    }

    pub(crate) fn monitor(&self, variant: Variant) -> Option<&Arc<LiveMonitor>> {
        self.monitors[Self::breaker_index(variant)].as_ref()
    }

    pub(crate) fn breaker_allows(&self, variant: Variant) -> bool {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        breakers[Self::breaker_index(variant)].allow(now_ms())
    }

    /// Frees a half-open trial that ended without an outcome for the variant.
    pub(crate) fn breaker_release(&self, variant: Variant) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        breakers[Self::breaker_index(variant)].release();
    }

    /// Records an outcome; returns the breaker's state after it.
    pub(crate) fn breaker_record(&self, variant: Variant, ok: bool) -> BreakerState {
        let now = now_ms();
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let breaker = &mut breakers[Self::breaker_index(variant)];
        breaker.record(ok, now);
        breaker.state(now)
    }

    /// Adds to the window being gathered (only while a rollout runs).
    pub(crate) fn measure(&self, update: impl FnOnce(&mut WindowStats)) {
        if self.window_key.is_some() {
            update(&mut self.window.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    fn take_window(&self) -> WindowStats {
        std::mem::take(&mut *self.window.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts a request as its caller saw it (status and time to the response).
    pub(crate) fn count_request(&self, status: u16, micros: u64) {
        self.serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(status, micros);
    }

    /// Charges a model run's CPU time to the deployment (cost per inference).
    pub(crate) fn count_cpu(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        let mut serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        let total = serving.cpu_ns_rest.saturating_add(nanos);
        serving.cpu_us = serving.cpu_us.saturating_add(total / 1_000);
        serving.cpu_ns_rest = total % 1_000;
    }

    fn take_serving(&self) -> ServingStats {
        std::mem::take(&mut *self.serving.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A deployment that could not be loaded, and why (answered as 503 with the reason).
#[derive(Debug, Clone)]
pub(crate) struct NotReady {
    pub reason: String,
}

type LoadKey = (String, String, usize, u64);

/// A version's monitoring schema (or its absence) and when it was read.
type KnownSchema = (std::time::Instant, Option<Arc<Schema>>);

/// How long a version that failed to load waits before the next attempt.
const LOAD_RETRY: Duration = Duration::from_secs(10);

pub struct Plane {
    source: Arc<dyn PlaneSource>,
    pub config: PlaneConfig,
    pub(crate) lag: Arc<RuntimeLag>,
    served: RwLock<HashMap<String, Arc<Served>>>,
    not_ready: RwLock<HashMap<String, NotReady>>,
    /// Loaded versions by (model, version, batching), weakly: a version no revision serves is
    /// unloaded, and a change of batching settings gets its own batcher.
    loaded: Mutex<HashMap<LoadKey, std::sync::Weak<LoadedVersion>>>,
    /// When loading a version last failed: retried after LOAD_RETRY, not at every sync.
    failed_loads: Mutex<HashMap<LoadKey, (std::time::Instant, String)>>,
    runtime: Mutex<Option<Runtime>>,
    pub(crate) metrics: Arc<metrics::PlaneMetrics>,
    log: mpsc::Sender<(usize, PredictionRecord)>,
    log_receiver: Mutex<Option<mpsc::Receiver<(usize, PredictionRecord)>>>,
    /// Values (inputs and outputs) held by the queued records: records differ in size by four
    /// orders of magnitude (1 to 100 rows of 1 to 10,000 values), so a count of records alone
    /// would not bound the queue's memory.
    log_values: AtomicUsize,
    pub(crate) mirrors: Arc<Semaphore>,
    /// Re-scorings of candidate answers on the stable running at once (as many as mirrors);
    /// more are skipped and counted, never queued, so they never hold a request or memory.
    pub(crate) rescores: Arc<Semaphore>,
    /// Whether the first sync finished (V2 readiness).
    synced: AtomicBool,
    /// One sync at a time: the loop's and the one a control-plane change asks for.
    sync_lock: tokio::sync::Mutex<()>,
    /// When a request for an unknown deployment last caused a sync (see [`Plane::get_fresh`]).
    miss_sync: Mutex<Option<Instant>>,
    /// Live drift monitors by (deployment, version); they outlive revisions, so a rollout's
    /// stage change keeps the rows gathered so far.
    monitors: Mutex<HashMap<(String, String), Arc<LiveMonitor>>>,
    /// Monitoring schemas by (model, version), or their absence, with when they were read.
    schemas: Mutex<HashMap<(String, String), KnownSchema>>,
}

impl Plane {
    pub fn new(source: Arc<dyn PlaneSource>, config: PlaneConfig) -> Arc<Plane> {
        let (log, log_receiver) = mpsc::channel(config.log_capacity.max(1));
        Arc::new(Plane {
            source,
            lag: Arc::new(RuntimeLag::new()),
            mirrors: Arc::new(Semaphore::new(config.max_mirrors.max(1))),
            rescores: Arc::new(Semaphore::new(config.max_mirrors.max(1))),
            config,
            served: RwLock::new(HashMap::new()),
            not_ready: RwLock::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            failed_loads: Mutex::new(HashMap::new()),
            runtime: Mutex::new(None),
            metrics: Arc::new(metrics::PlaneMetrics::default()),
            log,
            log_receiver: Mutex::new(Some(log_receiver)),
            log_values: AtomicUsize::new(0),
            synced: AtomicBool::new(false),
            sync_lock: tokio::sync::Mutex::new(()),
            miss_sync: Mutex::new(None),
            monitors: Mutex::new(HashMap::new()),
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// This plane's metrics without the closing `# EOF`: the server's `/metrics` adds the
    /// control plane's after them.
    pub fn encode_metrics_into(&self, text: &mut String) {
        self.metrics.encode_into(text);
    }

    pub fn get(&self, name: &str) -> Option<Arc<Served>> {
        self.served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The deployment, re-reading the specs first when this plane does not know it: another
    /// server behind the same load balancer may have just created it, and its callers should
    /// not meet a 404 until the next periodic sync. At most one such sync per
    /// [`MISS_SYNC_GAP`], however many unknown names callers send, and a request waits for it
    /// at most [`MISS_SYNC_WAIT`] (the sync goes on without it).
    pub async fn get_fresh(self: &Arc<Self>, name: &str) -> Option<Arc<Served>> {
        if let Some(served) = self.get(name) {
            return Some(served);
        }
        let due = {
            let mut last = self.miss_sync.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= MISS_SYNC_GAP);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let plane = self.clone();
            let sync = tokio::spawn(async move { plane.sync().await });
            let _ = tokio::time::timeout(MISS_SYNC_WAIT, sync).await;
        }
        self.get(name)
    }

    pub(crate) fn not_ready(&self, name: &str) -> Option<NotReady> {
        self.not_ready
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Why a deployment is not being served, if it failed to load.
    pub fn not_ready_reason(&self, name: &str) -> Option<String> {
        self.not_ready(name).map(|n| n.reason)
    }

    /// Syncs now and waits until the plane serves `name` at `revision` or later, or gave up
    /// loading it (the reason), for at most `timeout`. Lets a control-plane change answer once
    /// it is live in this process.
    pub async fn wait_loaded(
        &self,
        name: &str,
        revision: i64,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        if tokio::time::timeout(timeout, self.sync()).await.is_err() {
            return Err(format!("not loaded within {timeout:?}"));
        }
        loop {
            if self.get(name).is_some_and(|s| s.spec.revision >= revision) {
                return Ok(());
            }
            if let Some(not_ready) = self.not_ready(name) {
                return Err(not_ready.reason);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("not loaded within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Queues a prediction record of about `values` numbers; a full queue (by records, or by
    /// the values they hold) drops it (counted), never waits.
    pub(crate) fn log_prediction(&self, values: usize, record: PredictionRecord) {
        let deployment = record.deployment.clone();
        let queued = self.log_values.fetch_add(values, Ordering::Relaxed);
        let outcome = if queued.saturating_add(values) > LOG_QUEUE_MAX_VALUES {
            self.log_values.fetch_sub(values, Ordering::Relaxed);
            "dropped"
        } else {
            match self.log.try_send((values, record)) {
                Ok(()) => "queued",
                Err(_) => {
                    self.log_values.fetch_sub(values, Ordering::Relaxed);
                    "dropped"
                }
            }
        };
        self.metrics.prediction_log(&deployment, outcome);
        self.metrics
            .prediction_log_queue(self.log_values.load(Ordering::Relaxed));
    }

    fn runtime(&self) -> Result<Runtime, String> {
        let mut slot = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime =
            Runtime::load(self.config.onnxruntime.as_deref()).map_err(|e| e.to_string())?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    async fn load_version(
        &self,
        spec: &Deployment,
        version: &str,
    ) -> Result<Arc<LoadedVersion>, String> {
        let key = (
            spec.model_name.clone(),
            version.to_owned(),
            spec.settings.batch_max_rows,
            spec.settings.batch_max_wait_ms,
        );
        if let Some((at, reason)) = self
            .failed_loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < LOAD_RETRY
        {
            return Err(reason.clone());
        }
        let loaded = self.load_uncached(spec, version, &key).await;
        let mut failed = self.failed_loads.lock().unwrap_or_else(|e| e.into_inner());
        match &loaded {
            Ok(_) => {
                failed.remove(&key);
            }
            Err(reason) => {
                failed.insert(key, (std::time::Instant::now(), reason.clone()));
            }
        }
        loaded
    }

    async fn load_uncached(
        &self,
        spec: &Deployment,
        version: &str,
        key: &LoadKey,
    ) -> Result<Arc<LoadedVersion>, String> {
        if let Some(loaded) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .and_then(std::sync::Weak::upgrade)
        {
            return Ok(loaded);
        }
        let files = self
            .source
            .model_files(&spec.model_name, version)
            .await
            .map_err(|e| format!("fetching version {version} of '{}': {e}", spec.model_name))?;
        let runtime = self.runtime()?;
        let sessions = self.config.sessions.max(1);
        let onnx = files.onnx.clone();
        let model =
            tokio::task::spawn_blocking(move || OnnxModel::from_bytes(&runtime, &onnx, sessions))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("loading version {version} of '{}': {e}", spec.model_name))?;
        let model = Arc::new(model);
        let signature = signature_of(&files, &model)
            .map_err(|e| format!("version {version} of '{}': {e}", spec.model_name))?;
        let batcher = (spec.settings.batch_max_rows > 0).then(|| {
            Batcher::new(
                model.clone(),
                BatchConfig {
                    max_batch_rows: spec.settings.batch_max_rows,
                    max_wait: Duration::from_millis(spec.settings.batch_max_wait_ms),
                    queue_capacity: self.config.limits.max_in_flight.max(1) * 4,
                    concurrent_batches: sessions,
                },
            )
        });
        let loaded = Arc::new(LoadedVersion {
            version: version.to_owned(),
            version_header: axum::http::HeaderValue::from_str(version).ok(),
            input_name: model
                .inputs()
                .first()
                .map(|input| input.name.clone())
                .unwrap_or_default(),
            signature,
            model,
            batcher,
            // Two places per session: one request's body is parsed while another's runs, so
            // the hand-offs between threads do not leave the model idle.
            work: Arc::new(Semaphore::new(sessions * 2)),
            places: sessions * 2,
            queue: QueueClock::new(),
        });
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Arc::downgrade(&loaded));
        Ok(loaded)
    }

    /// A version's monitoring schema, read again after [`monitor::SCHEMA_TTL`]. A failed read
    /// keeps what was known (monitoring never stops serving).
    async fn schema_of(&self, model: &str, version: &str) -> Option<Arc<Schema>> {
        let key = (model.to_owned(), version.to_owned());
        let known = self
            .schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some((at, schema)) = &known
            && at.elapsed() < monitor::SCHEMA_TTL
        {
            return schema.clone();
        }
        let schema = match self.source.monitor_schema(model, version).await {
            Ok(schema) => schema.map(Arc::new),
            Err(error) => {
                tracing::debug!(model, version, %error, "reading a monitoring schema");
                known.and_then(|(_, schema)| schema)
            }
        };
        self.schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (std::time::Instant::now(), schema.clone()));
        schema
    }

    /// Forgets the monitoring schemas read so far: the next sync reads them again (a reference
    /// was just set in this process).
    pub fn forget_monitor_schemas(&self) {
        self.schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The monitor of a deployment's traffic to `version`, if the version has a reference;
    /// the same one as long as its schema stays the same.
    async fn monitor_for(&self, spec: &Deployment, version: &str) -> Option<Arc<LiveMonitor>> {
        let schema = self.schema_of(&spec.model_name, version).await?;
        let key = (spec.name.clone(), version.to_owned());
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        match monitors.get(&key) {
            Some(monitor) if monitor.schema == schema => Some(monitor.clone()),
            _ => {
                let monitor = Arc::new(LiveMonitor::new(&spec.name, version, schema));
                monitors.insert(key, monitor.clone());
                Some(monitor)
            }
        }
    }

    /// Sends every monitor's summary of the last seconds; monitors nothing serves any more
    /// send their last one and go.
    pub async fn flush_monitors(&self) {
        // Not while a sync swaps monitors in: one made meanwhile would be dropped unsent.
        let one_at_a_time = self.sync_lock.lock().await;
        let served: std::collections::HashSet<(String, String)> = self
            .served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|s| {
                s.monitors
                    .iter()
                    .flatten()
                    .map(|m| (m.deployment.clone(), m.version.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let monitors: Vec<Arc<LiveMonitor>> = {
            let mut all = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
            let list = all.values().cloned().collect();
            all.retain(|key, _| served.contains(key));
            list
        };
        drop(one_at_a_time);
        for monitor in monitors {
            let Some(summary) = monitor.take() else {
                continue;
            };
            if let Err(error) = self
                .source
                .report_summary(&monitor.deployment, &monitor.version, summary)
                .await
            {
                // The reference may have changed under it: read the schema again next sync.
                tracing::warn!(deployment = %monitor.deployment, version = %monitor.version, %error, "sending a monitoring summary");
                self.schemas
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(_, version), _| *version != monitor.version);
            }
        }
    }

    /// Re-reads the specs and swaps in what changed. A version that fails to load keeps the
    /// previous revision serving (or the deployment not ready, if it never loaded).
    pub async fn sync(&self) -> Result<(), String> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let specs = self.source.deployments().await?;
        let names: Vec<String> = specs.iter().map(|d| d.name.clone()).collect();
        for spec in specs {
            let current = self.get(&spec.name);
            let same_batching = |served: &Served| {
                served.spec.settings.batch_max_rows == spec.settings.batch_max_rows
                    && served.spec.settings.batch_max_wait_ms == spec.settings.batch_max_wait_ms
            };
            let monitors = [
                self.monitor_for(&spec, &spec.stable_version).await,
                match spec.candidate_version() {
                    Some(version) => self.monitor_for(&spec, version).await,
                    None => None,
                },
            ];
            let same_monitors = |served: &Served| {
                served
                    .monitors
                    .iter()
                    .zip(&monitors)
                    .all(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    })
            };
            if let Some(served) = &current
                && served.spec.revision == spec.revision
                && same_monitors(served)
            {
                continue;
            }
            let built = async {
                let stable = match &current {
                    Some(served)
                        if served.stable.version == spec.stable_version
                            && same_batching(served) =>
                    {
                        served.stable.clone()
                    }
                    _ => self.load_version(&spec, &spec.stable_version).await?,
                };
                let candidate = match spec.candidate_version() {
                    Some(version) => {
                        Some(match current.as_ref().and_then(|s| s.candidate.clone()) {
                            Some(loaded)
                                if loaded.version == version
                                    && current.as_ref().is_some_and(|s| same_batching(s)) =>
                            {
                                loaded
                            }
                            _ => self.load_version(&spec, version).await?,
                        })
                    }
                    None => None,
                };
                Ok::<_, String>((stable, candidate))
            }
            .await;
            let (stable, candidate) = match built {
                Ok(pair) => pair,
                Err(reason) => {
                    let mut not_ready = self.not_ready.write().unwrap_or_else(|e| e.into_inner());
                    // Retried every sync; said once per new reason.
                    if not_ready.get(&spec.name).map(|n| &n.reason) != Some(&reason) {
                        tracing::warn!(deployment = %spec.name, %reason, "deployment not loaded");
                    }
                    not_ready.insert(spec.name.clone(), NotReady { reason });
                    continue;
                }
            };
            // Breakers survive a revision while the candidate is the same version.
            let breakers = match &current {
                Some(served)
                    if served.candidate.as_ref().map(|c| &c.version)
                        == candidate.as_ref().map(|c| &c.version)
                        && served.spec.settings.breaker == spec.settings.breaker =>
                {
                    served.breakers.clone()
                }
                _ => Arc::new(Mutex::new([
                    Breaker::new(spec.settings.breaker),
                    Breaker::new(spec.settings.breaker),
                ])),
            };
            let window_key = spec.active_rollout().map(|r| (r.id, r.stage));
            let shares_window = current
                .as_ref()
                .is_some_and(|served| served.window_key == window_key);
            let window = match &current {
                Some(served) if shares_window => served.window.clone(),
                _ => Arc::new(Mutex::new(WindowStats::default())),
            };
            let serving = current.as_ref().map_or_else(
                || Arc::new(Mutex::new(ServingStats::default())),
                |served| served.serving.clone(),
            );
            let served = Arc::new(Served {
                handles: self.metrics.handles(&spec),
                traffic: spec.traffic(),
                window_key,
                stable,
                candidate,
                breakers,
                window,
                serving,
                in_flight: current
                    .as_ref()
                    .map(|s| s.in_flight.clone())
                    .unwrap_or_else(|| {
                        Arc::new(Semaphore::new(self.config.limits.max_in_flight.max(1)))
                    }),
                monitors,
                spec,
            });
            let name = served.spec.name.clone();
            let previous = self
                .served
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), served);
            self.not_ready
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            // A revision of another stage takes its own window: report what the old one
            // gathered (the controller keeps it if that stage is still current).
            if let Some(previous) = previous
                && !shares_window
            {
                self.report_one(&previous).await;
            }
        }
        let gone: Vec<Arc<Served>> = {
            let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
            let gone_names: Vec<String> = served
                .keys()
                .filter(|name| !names.contains(name))
                .cloned()
                .collect();
            gone_names
                .iter()
                .filter_map(|name| served.remove(name))
                .collect()
        };
        drop(gone);
        self.not_ready
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| names.contains(name));
        self.synced.store(true, Ordering::Release);
        Ok(())
    }

    async fn report_one(&self, served: &Served) {
        let window = served
            .window_key
            .map(|(rollout_id, stage)| (rollout_id, stage, served.take_window()))
            .filter(|(_, _, stats)| !stats.is_empty());
        let serving = served.take_serving();
        if window.is_none() && serving.is_empty() {
            return;
        }
        if let Err(error) = self.source.report(&served.spec.name, window, serving).await {
            tracing::warn!(deployment = %served.spec.name, %error, "reporting measurements");
        }
    }

    /// Reports every deployment's measurements.
    pub async fn report(&self) {
        let served: Vec<Arc<Served>> = self
            .served
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for one in served {
            self.report_one(&one).await;
        }
    }

    /// Runs the plane's background work until `stop` resolves: spec sync, reports, the
    /// prediction log writer. Reports and the log are flushed once more before it returns.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()> + Send) {
        let receiver = self
            .log_receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let done = Arc::new(tokio::sync::Notify::new());
        let writer =
            receiver.map(|receiver| tokio::spawn(write_log(self.clone(), receiver, done.clone())));
        let probe = tokio::spawn(self.lag.clone().probe());
        let mut sync = tokio::time::interval(self.config.sync_every);
        let mut report = tokio::time::interval(self.config.report_every);
        let mut flush = tokio::time::interval(monitor::FLUSH_EVERY);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = sync.tick() => {
                    if let Err(error) = self.sync().await {
                        tracing::warn!(%error, "reading deployments");
                    }
                }
                _ = report.tick() => self.report().await,
                _ = flush.tick() => self.flush_monitors().await,
            }
        }
        probe.abort();
        self.report().await;
        self.flush_monitors().await;
        done.notify_one();
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        }
    }
}

/// Writes queued prediction records in batches, off the request path.
/// Values the prediction log queue holds at most (about 40 MB as JSON values); records beyond
/// are dropped and counted, like records beyond the queue's length.
pub(crate) const LOG_QUEUE_MAX_VALUES: usize = 1_000_000;

async fn write_log(
    plane: Arc<Plane>,
    mut receiver: mpsc::Receiver<(usize, PredictionRecord)>,
    done: Arc<tokio::sync::Notify>,
) {
    const BATCH: usize = 500;
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        if stopping {
            // Shutting down: write what is queued, then stop.
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
        } else {
            tokio::select! {
                received = receiver.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        break;
                    }
                }
                _ = done.notified() => {
                    stopping = true;
                    continue;
                }
            }
        }
        // A short pause fills larger batches under load; at low traffic it costs 100 ms of
        // delay on a record nobody waits for.
        if batch.len() < BATCH && !stopping {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
        }
        let taken = std::mem::take(&mut batch);
        let values: usize = taken.iter().map(|(values, _)| values).sum();
        plane.log_values.fetch_sub(values, Ordering::Relaxed);
        plane
            .metrics
            .prediction_log_queue(plane.log_values.load(Ordering::Relaxed));
        let records: Vec<PredictionRecord> = taken.into_iter().map(|(_, record)| record).collect();
        let count = records.len();
        if let Err(error) = plane.source.log_predictions(records).await {
            tracing::warn!(%error, count, "writing the prediction log");
            plane.metrics.prediction_log_failed(count as u64);
        }
    }
}

/// The version's MLmodel signature, fitted to its ONNX graph (`Signature::fitted_to`).
fn signature_of(
    files: &ModelBytes,
    model: &OnnxModel,
) -> Result<Option<Arc<slipway_serving::signature::Signature>>, String> {
    let Some(text) = &files.mlmodel else {
        return Ok(None);
    };
    let Some(signature) = slipway_serving::signature::Signature::from_mlmodel(text)
        .map_err(|e| format!("its MLmodel cannot be read: {e}"))?
    else {
        return Ok(None);
    };
    signature
        .fitted_to(model)
        .map(|fitted| fitted.map(Arc::new))
        .map_err(|e| format!("{e}: its files do not belong together"))
}

/// Rows on which two answers to the same rows agree, and rows compared: labels (or the argmax
/// of class scores) must be equal; a single score per row (a regressor) may differ by
/// `tolerance`, relative to the stable's score (absolute below 1).
pub(crate) fn compare_rows(
    stable: &[Output],
    stable_summary: &[String],
    candidate: &[Output],
    candidate_summary: &[String],
    tolerance: f64,
) -> (u64, u64) {
    let compared = stable_summary.len().min(candidate_summary.len());
    let agreed = match (single_scores(stable), single_scores(candidate)) {
        (Some(s), Some(c)) if s.len() == c.len() => s
            .iter()
            .zip(&c)
            .filter(|(s, c)| (*s - *c).abs() <= tolerance * s.abs().max(1.0))
            .count(),
        _ => stable_summary
            .iter()
            .zip(candidate_summary)
            .filter(|(s, c)| s == c)
            .count(),
    };
    (compared as u64, agreed.min(compared) as u64)
}

/// The first output's values when it holds one float per row (a score, not class scores).
fn single_scores(outputs: &[Output]) -> Option<Vec<f64>> {
    let first = outputs.first()?;
    let one_per_row = |shape: &[i64], len: usize| match shape {
        [] | [_] => true,
        [rows, rest @ ..] => rest.iter().all(|d| *d == 1) && (*rows < 0 || *rows as usize == len),
    };
    match &first.value {
        OutputValue::F32 { shape, data } if one_per_row(shape, data.len()) => {
            Some(data.iter().map(|v| f64::from(*v)).collect())
        }
        OutputValue::F64 { shape, data } if one_per_row(shape, data.len()) => Some(data.clone()),
        _ => None,
    }
}

/// A prediction's summary per row for the analysis: the predicted label, or the score's bin.
pub(crate) fn summarize(outputs: &[Output]) -> Vec<String> {
    // One significant digit: coarse bins, so two samples of one distribution look alike.
    let bin = |v: f64| -> String {
        if v == 0.0 || !v.is_finite() {
            return format!("{v}");
        }
        format!("{v:.0e}")
    };
    monitor::predictions(outputs)
        .into_iter()
        .map(|prediction| match prediction {
            monitor::Prediction::Class(class) => class.to_string(),
            monitor::Prediction::Label(label) => label,
            monitor::Prediction::Score(score) => bin(score),
            monitor::Prediction::Missing => String::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source with nothing behind it: for what the plane does on its own.
    struct Nothing;

    #[async_trait]
    impl PlaneSource for Nothing {
        async fn deployments(&self) -> Result<Vec<Deployment>, String> {
            Ok(Vec::new())
        }
        async fn model_files(&self, _: &str, _: &str) -> Result<ModelBytes, String> {
            Err("none".into())
        }
        async fn report(
            &self,
            _: &str,
            _: Option<(i64, usize, WindowStats)>,
            _: ServingStats,
        ) -> Result<(), String> {
            Ok(())
        }
        async fn log_predictions(&self, _: Vec<PredictionRecord>) -> Result<(), String> {
            Ok(())
        }
        async fn monitor_schema(&self, _: &str, _: &str) -> Result<Option<Schema>, String> {
            Ok(None)
        }
        async fn report_summary(&self, _: &str, _: &str, _: Summary) -> Result<(), String> {
            Ok(())
        }
    }

    fn record() -> PredictionRecord {
        PredictionRecord {
            id: 0,
            deployment: "d".into(),
            request_id: "r".into(),
            time_ms: 0,
            variant: Variant::Stable,
            model_version: "1".into(),
            inputs: serde_json::Value::Null,
            outputs: serde_json::Value::Null,
            latency_us: 0,
        }
    }

    #[tokio::test]
    async fn the_prediction_log_queue_is_bounded_by_the_values_it_holds() {
        let plane = Plane::new(Arc::new(Nothing), PlaneConfig::default());
        // Far fewer records than the queue's length, but wide ones: the values decide.
        let wide = LOG_QUEUE_MAX_VALUES / 3;
        for _ in 0..5 {
            plane.log_prediction(wide, record());
        }
        assert_eq!(plane.log_values.load(Ordering::Relaxed), 3 * wide);
        let mut text = String::new();
        plane.encode_metrics_into(&mut text);
        assert!(
            text.contains(r#"slipway_serving_prediction_log_records_total{deployment="d",outcome="dropped"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "slipway_serving_prediction_log_queued_values {}",
                3 * wide
            )),
            "{text}"
        );
        // Written records free their share.
        let receiver = plane.log_receiver.lock().unwrap().take().expect("receiver");
        let done = Arc::new(tokio::sync::Notify::new());
        let writer = tokio::spawn(write_log(plane.clone(), receiver, done.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while plane.log_values.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < deadline, "the queue did not drain");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        plane.log_prediction(wide, record());
        done.notify_one();
        let _ = writer.await;
        assert_eq!(
            plane.log_values.load(Ordering::Relaxed),
            0,
            "written at shutdown"
        );
    }

    #[test]
    fn the_door_refuses_more_as_the_runtime_falls_behind() {
        let lag = RuntimeLag::new();
        let target = Duration::from_millis(5);
        let refused = |lag: &RuntimeLag| (0..10_000).filter(|_| lag.refuses(target)).count();
        assert_eq!(refused(&lag), 0, "an idle runtime refuses nothing");
        lag.record(Duration::from_millis(60));
        assert_eq!(refused(&lag), 0, "one stall of the machine refuses nothing");
        for _ in 0..100 {
            lag.record(Duration::from_micros(7_500));
        }
        let half = refused(&lag);
        assert!((4_000..6_000).contains(&half), "{half} of 10,000 at 1.5x");
        for _ in 0..100 {
            lag.record(Duration::from_millis(20));
        }
        assert_eq!(refused(&lag), 10_000, "past twice the target, all");
        for _ in 0..100 {
            lag.record(Duration::ZERO);
        }
        assert_eq!(refused(&lag), 0, "it recovers");
    }

    #[test]
    fn a_standing_queue_shortens_the_wait_and_an_empty_one_restores_it() {
        let clock = QueueClock::new();
        let limit = Duration::from_millis(50);
        clock.empty_now();
        assert_eq!(clock.allowed_wait(limit), limit, "a burst may wait");
        // A stall as long as the limit, with a queue behind it, is a burst...
        clock.empty_now();
        std::thread::sleep(Duration::from_millis(60));
        {
            let _waiting = Waiting::new(&clock.waiting);
            assert!(!clock.standing(limit), "a stall is not overload");
            assert_eq!(clock.allowed_wait(limit), limit);
        }
        // ...no place found free for twice the limit is not...
        clock.last_empty_micros.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(110));
        // ...with nobody waiting is an idle version, not a standing queue.
        assert!(!clock.standing(limit), "idle is not overloaded");
        {
            let _waiting = Waiting::new(&clock.waiting);
            assert!(clock.standing(limit));
            assert_eq!(clock.allowed_wait(limit), limit / 10);
        }
        assert!(!clock.standing(limit), "the waiter left");
        clock.empty_now();
        assert_eq!(clock.allowed_wait(limit), limit);
    }
}
