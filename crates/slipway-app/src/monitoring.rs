//! Monitoring deployed models: storing a version's reference (audited), and the [`Monitor`],
//! which merges the summaries every data plane sends into windows per deployment and version,
//! compares each closed window with the reference and stores it.
//!
//! Windows are cut here, not on replicas: replicas send what they saw in the last seconds,
//! and the server decides which window that belongs to. With `window_rows == 0` windows are
//! aligned to multiples of `window_ms` (as Prometheus' ranges are); with a row count, a window
//! starts at its first summary and closes at that many rows or after `window_ms`, whichever
//! comes first. A window closes when a summary of a later window arrives or, at the latest,
//! [`GRACE_MS`] after its end (the tick), so a replica's last seconds still count.
//!
//! Like the rollout controller's windows, open windows live in memory: a restart loses at most
//! one window per deployment. Closed windows are stored as measurements (no audit entries).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use slipway_core::deployment::Deployment;
use slipway_core::monitoring::{MonitorReference, MonitorSettings, MonitorWindow};
use slipway_core::{Error, Result};
use slipway_monitor::live::{self, LiveReport, Schema, Summary};
use slipway_monitor::{DriftOptions, window_start};

use crate::deployments::ModelRef;
use crate::{App, now_ms};

/// How long after its end a window waits for replicas' last summaries (they send every two
/// seconds).
pub const GRACE_MS: i64 = 5_000;

/// Who the monitor acts as in the logs.
const MONITOR_ACTOR: &str = "slipway-monitor";

/// A reference as a client sends it: built where the data is (`slipway monitor reference
/// create`), from the model's own predictions on it.
#[derive(Debug, Clone)]
pub struct NewReference {
    pub model: ModelRef,
    pub schema: Schema,
    pub summary: Summary,
    pub label_column: Option<String>,
    pub performance: Option<serde_json::Value>,
}

fn engine_error(context: &str) -> impl FnOnce(slipway_monitor::MonitorError) -> Error + '_ {
    move |error| Error::invalid(format!("{context}: {error}"))
}

impl App {
    /// Stores the reference of the version `reference.model` names (an alias is resolved now).
    /// Editors of the model may set it; replacing one is audited as such, since it changes what
    /// every later window is judged against.
    pub async fn set_monitor_reference(&self, reference: NewReference) -> Result<MonitorReference> {
        let name = reference.model.model_name().to_owned();
        self.visible_model(&name)?;
        let version = self.resolve_model_ref(&reference.model).await?;
        self.require_version_readable(&name, &version).await?;
        let version: i64 = version
            .parse()
            .map_err(|_| Error::internal_msg("a resolved version is not a number"))?;
        reference
            .schema
            .validate()
            .map_err(engine_error("the monitoring schema"))?;
        reference
            .summary
            .check_within(&reference.schema, &live::REFERENCE_CONFIG)
            .map_err(engine_error("the reference summary"))?;
        if reference.summary.rows == 0 {
            return Err(Error::invalid(
                "the reference has no rows: build it from data the model was validated on",
            ));
        }
        let mut summary = reference.summary;
        summary.finish();
        let previous = self.store().get_monitor_reference(&name, version).await?;
        let stored = MonitorReference {
            model_name: name.clone(),
            version,
            created_ms: now_ms(),
            created_by: self.caller().actor.clone(),
            rows: summary.rows,
            label_column: reference.label_column,
            schema: serde_json::to_value(&reference.schema)
                .map_err(|e| Error::internal("encoding a monitoring schema", e))?,
            summary: serde_json::to_value(&summary)
                .map_err(|e| Error::internal("encoding a reference summary", e))?,
            performance: reference.performance,
        };
        let features: Vec<&str> = reference
            .schema
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        self.audited(
            "monitoring.reference.set",
            format!("registered_model:{name}"),
            json!({
                "version": version,
                "rows": stored.rows,
                "features": features,
                "prediction": reference.schema.prediction.as_ref().map(|p| &p.name),
                "label_column": stored.label_column,
                "replaced": previous.as_ref().map(|p| json!({"created_by": p.created_by, "created_ms": p.created_ms, "rows": p.rows})),
            }),
        )
        .put_monitor_reference(stored.clone())
        .await?;
        Ok(stored)
    }

    /// A version's reference, if it has one.
    pub async fn monitor_reference(&self, model: &ModelRef) -> Result<Option<MonitorReference>> {
        let name = model.model_name();
        self.visible_model(name)?;
        let version: i64 = self
            .resolve_model_ref(model)
            .await?
            .parse()
            .map_err(|_| Error::internal_msg("a resolved version is not a number"))?;
        self.store().get_monitor_reference(name, version).await
    }

    /// A deployment's closed windows, newest first.
    pub async fn monitor_windows(
        &self,
        deployment: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<MonitorWindow>> {
        self.get_deployment(deployment).await?;
        self.store()
            .monitor_windows(deployment, before_id, limit)
            .await
    }
}

/// A reference as the monitor uses it.
struct Reference {
    schema: Schema,
    summary: Summary,
}

fn decode_reference(stored: &MonitorReference) -> Result<Reference> {
    let schema: Schema = serde_json::from_value(stored.schema.clone())
        .map_err(|e| Error::internal("decoding a stored monitoring schema", e))?;
    let summary: Summary = serde_json::from_value(stored.summary.clone())
        .map_err(|e| Error::internal("decoding a stored reference summary", e))?;
    Ok(Reference { schema, summary })
}

struct OpenWindow {
    model_name: String,
    settings: MonitorSettings,
    /// The window's nominal span: summaries up to `end_ms` belong to it.
    start_ms: i64,
    end_ms: i64,
    summary: Summary,
    /// Which planes contributed, and how many rows each.
    sources: HashMap<String, u64>,
}

/// The latest closed window of a deployment, for `/metrics`.
#[derive(Debug, Clone)]
pub struct LatestWindow {
    pub deployment: String,
    pub version: i64,
    pub end_ms: i64,
    pub report: LiveReport,
}

/// Counters of what the monitor did, for `/metrics`.
#[derive(Debug, Default)]
pub struct MonitorCounters {
    pub summaries: AtomicU64,
    /// Summaries of a window already closed (a replica later than the grace period).
    pub late: AtomicU64,
    pub windows: AtomicU64,
}

/// Gathers every plane's summaries into windows and judges each closed one.
pub struct Monitor {
    app: App,
    options: DriftOptions,
    open: Mutex<HashMap<(String, i64), OpenWindow>>,
    references: Mutex<HashMap<(String, i64), std::sync::Arc<Reference>>>,
    latest: Mutex<HashMap<String, LatestWindow>>,
    pub counters: MonitorCounters,
}

/// What a tick or a summary closed, to be compared and stored outside the lock.
struct Closed {
    deployment: String,
    version: i64,
    window: OpenWindow,
}

impl Monitor {
    pub fn new(app: &App) -> Monitor {
        Monitor {
            app: app.for_caller(MONITOR_ACTOR, None),
            options: DriftOptions::default(),
            open: Mutex::new(HashMap::new()),
            references: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            counters: MonitorCounters::default(),
        }
    }

    async fn reference(
        &self,
        model: &str,
        version: i64,
    ) -> Result<Option<std::sync::Arc<Reference>>> {
        let key = (model.to_owned(), version);
        if let Some(found) = self
            .references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Some(found.clone()));
        }
        let Some(stored) = self
            .app
            .store()
            .get_monitor_reference(model, version)
            .await?
        else {
            return Ok(None);
        };
        let decoded = std::sync::Arc::new(decode_reference(&stored)?);
        self.references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, decoded.clone());
        Ok(Some(decoded))
    }

    /// Forgets a cached reference (after it was replaced): the next window reads it again.
    pub fn forget_reference(&self, model: &str, version: i64) {
        self.references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(model.to_owned(), version));
    }

    /// The schema planes profile a version's traffic by, if the version has a reference.
    pub async fn schema(&self, model: &str, version: i64) -> Result<Option<Schema>> {
        Ok(self
            .reference(model, version)
            .await?
            .map(|r| r.schema.clone()))
    }

    /// Adds a plane's summary of `deployment`'s traffic to `version`. Refused (invalid) when
    /// the version has no reference or the summary does not fit its schema.
    pub async fn record(
        &self,
        deployment: &Deployment,
        version: i64,
        summary: Summary,
        source: &str,
    ) -> Result<()> {
        self.check(deployment, version, &summary).await?;
        if summary.rows == 0 {
            return Ok(());
        }
        self.counters.summaries.fetch_add(1, Ordering::Relaxed);
        for closed in self.add(deployment, version, summary, source)? {
            self.judge(closed).await;
        }
        Ok(())
    }

    /// Whether a summary of `deployment`'s traffic to `version` can be recorded: the version
    /// has a reference and the summary fits its schema. A server that does not lead checks
    /// before it passes a summary on, so the plane that sent it hears of a mistake.
    pub async fn check(
        &self,
        deployment: &Deployment,
        version: i64,
        summary: &Summary,
    ) -> Result<()> {
        let Some(reference) = self.reference(&deployment.model_name, version).await? else {
            return Err(Error::invalid(format!(
                "version {version} of '{}' has no monitoring reference: create one with `slipway monitor reference create`",
                deployment.model_name
            )));
        };
        summary
            .check(&reference.schema)
            .map_err(engine_error("the summary"))
    }

    /// Forgets every open window and cached reference: leadership moved, or another server
    /// replaced a reference (the store's generation moved).
    pub fn reset(&self) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.forget_references();
    }

    /// Forgets every cached reference; each is read again when next needed.
    pub fn forget_references(&self) {
        self.references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Merges a summary into its window; returns the windows that closed.
    fn add(
        &self,
        deployment: &Deployment,
        version: i64,
        summary: Summary,
        source: &str,
    ) -> Result<Vec<Closed>> {
        let settings = deployment.settings.monitor.clone();
        let width = i64::try_from(settings.window_ms).unwrap_or(i64::MAX);
        let key = (deployment.name.clone(), version);
        let closing = |window: OpenWindow| Closed {
            deployment: deployment.name.clone(),
            version,
            window,
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = Vec::new();
        if let Some(window) = open.get(&key) {
            if summary.end_ms >= window.end_ms || window.settings != settings {
                // A summary of a later window (or new settings): the open one is complete.
                closed.extend(open.remove(&key).map(closing));
            } else if summary.end_ms < window.start_ms {
                self.counters.late.fetch_add(1, Ordering::Relaxed);
                return Ok(closed);
            }
        }
        let window = open.entry(key.clone()).or_insert_with(|| {
            let (start_ms, end_ms) = if settings.window_rows == 0 {
                let start = window_start(summary.end_ms, width);
                (start, start.saturating_add(width))
            } else {
                (summary.start_ms, summary.start_ms.saturating_add(width))
            };
            OpenWindow {
                model_name: deployment.model_name.clone(),
                settings: settings.clone(),
                start_ms,
                end_ms,
                // Merging into the window's own limits keeps its memory bounded whatever a
                // plane's limits were.
                summary: empty_like(&summary),
                sources: HashMap::new(),
            }
        });
        window
            .summary
            .merge(&summary)
            .map_err(engine_error("merging a summary"))?;
        *window.sources.entry(source.to_owned()).or_default() += summary.rows;
        if settings.window_rows > 0 && window.summary.rows >= settings.window_rows {
            closed.extend(open.remove(&key).map(closing));
        }
        Ok(closed)
    }

    /// Closes and judges the windows whose time is up, or whose deployment no longer serves
    /// their version. Called every second by the binary.
    pub async fn tick(&self) -> Result<()> {
        let live: Vec<(String, i64)> = self
            .app
            .store()
            .list_deployments()
            .await?
            .into_iter()
            .flat_map(|d| {
                let versions = std::iter::once(d.stable_version.clone())
                    .chain(d.candidate_version().map(str::to_owned))
                    .collect::<Vec<_>>();
                versions
                    .into_iter()
                    .filter_map(move |v| Some((d.name.clone(), v.parse().ok()?)))
            })
            .collect();
        self.close_due(now_ms(), &live).await;
        Ok(())
    }

    /// [`Monitor::tick`] at a given time, over the given (deployment, version) pairs.
    pub async fn close_due(&self, now_ms: i64, live: &[(String, i64)]) {
        let closed: Vec<Closed> = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let due: Vec<(String, i64)> = open
                .iter()
                .filter(|(key, window)| {
                    now_ms >= window.end_ms.saturating_add(GRACE_MS) || !live.contains(key)
                })
                .map(|(key, _)| key.clone())
                .collect();
            due.into_iter()
                .filter_map(|key| {
                    open.remove(&key).map(|window| Closed {
                        deployment: key.0,
                        version: key.1,
                        window,
                    })
                })
                .collect()
        };
        for window in closed {
            self.judge(window).await;
        }
    }

    /// Compares a closed window with its reference and stores it. A failure is logged: the
    /// next window is judged regardless.
    async fn judge(&self, closed: Closed) {
        let Closed {
            deployment,
            version,
            window,
        } = closed;
        if window.summary.rows == 0 {
            return;
        }
        let reference = match self.reference(&window.model_name, version).await {
            Ok(Some(reference)) => reference,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%deployment, version, error = %error, "reading a monitoring reference failed");
                return;
            }
        };
        let options = self.options.clone();
        let current = window.summary;
        // Tests over tens of thousands of values: off the async threads.
        let compared = tokio::task::spawn_blocking(move || {
            live::compare_live(&reference.schema, &reference.summary, &current, &options)
                .map(|report| (report, current))
        })
        .await;
        let (report, current) = match compared {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                tracing::warn!(%deployment, version, error = %error, "comparing a monitoring window failed");
                return;
            }
            Err(error) => {
                tracing::warn!(%deployment, version, error = %error, "the monitoring comparison panicked");
                return;
            }
        };
        let stored = MonitorWindow {
            id: 0,
            deployment: deployment.clone(),
            model_name: window.model_name.clone(),
            version,
            start_ms: window.start_ms,
            end_ms: window.end_ms.min(current.end_ms.max(window.start_ms)),
            rows: current.rows,
            report: json!({
                "report": report,
                "first_row_ms": current.start_ms,
                "last_row_ms": current.end_ms,
                "sources": window.sources,
                "window_ms": window.settings.window_ms,
                "window_rows": window.settings.window_rows,
            }),
        };
        if let Err(error) = self.app.store().append_monitor_window(stored.clone()).await {
            tracing::warn!(%deployment, version, error = %error, "storing a monitoring window failed");
            return;
        }
        self.counters.windows.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            %deployment,
            version,
            rows = current.rows,
            drifted = report.features.dataset.drifted_columns,
            features = report.features.dataset.columns,
            dataset_drift = report.features.dataset.dataset_drift,
            "monitoring window closed"
        );
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                deployment.clone(),
                LatestWindow {
                    deployment,
                    version,
                    end_ms: stored.end_ms,
                    report,
                },
            );
    }

    /// The latest closed window of every deployment (for `/metrics`).
    pub fn latest(&self) -> Vec<LatestWindow> {
        let mut all: Vec<LatestWindow> = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.deployment.cmp(&b.deployment));
        all
    }

    /// Drops what a deleted deployment left behind.
    pub fn forget_deployment(&self, name: &str) {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// The end of the aligned window of `width_ms` that holds `time_ms`.
pub(crate) fn window_end(time_ms: i64, width_ms: i64) -> i64 {
    window_start(time_ms, width_ms).saturating_add(width_ms)
}

/// An empty summary with `like`'s columns, at the window's limits.
fn empty_like(like: &Summary) -> Summary {
    let empty = |p: &slipway_monitor::ColumnProfile| {
        slipway_monitor::ColumnProfile::new(p.kind(), live::WINDOW_CONFIG)
    };
    Summary {
        start_ms: like.start_ms,
        end_ms: like.end_ms,
        rows: 0,
        features: like.features.iter().map(empty).collect(),
        prediction: like.prediction.as_ref().map(empty),
    }
}
