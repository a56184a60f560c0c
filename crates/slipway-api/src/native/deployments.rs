//! Managed deployments' control plane: create, inspect, change, roll out, promote, abort, roll
//! back, delete; replicas' measurement reports; the prediction log export.

use axum::Json;
use axum::extract::{Extension, Path};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use slipway_app::deployments::{AdminOverride, ModelRef};
use slipway_core::auth::{Principal, Role};
use slipway_core::deployment::{
    AnalysisRules, BreakerConfig, CanaryStep, DEFAULT_PROGRESS_DEADLINE_MS, DeadlineAction,
    Deployment, PredictionRecord, ServingSettings, ServingStats, Strategy, WindowStats,
};

use crate::Deployments;
use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};
use crate::mlflow::{ok, required_str};

/// Absent: `None` (keep the default); `null`: `Some(None)` (turn the rule off); a value:
/// `Some(Some(v))`.
fn explicit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsIn {
    log_sample: Option<f64>,
    batch_max_rows: Option<u32>,
    batch_max_wait_ms: Option<u32>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u32>,
    /// Drift monitoring windows: their length, and the rows that close one early (0: by time).
    monitor_window_ms: Option<u64>,
    monitor_window_rows: Option<u64>,
    /// How long logged predictions and labels are kept (0: kept).
    prediction_retention_ms: Option<u64>,
    /// Availability and latency objectives; `null` removes them.
    #[serde(default, deserialize_with = "explicit_slo")]
    #[schema(value_type = Option<Object>)]
    slo: Option<Option<slipway_core::slo::SloSpec>>,
}

/// Absent: keep the SLO; `null`: remove it; an object: set it.
fn explicit_slo<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<slipway_core::slo::SloSpec>>, D::Error> {
    Option::<slipway_core::slo::SloSpec>::deserialize(deserializer).map(Some)
}

impl SettingsIn {
    fn apply(self, mut settings: ServingSettings) -> ServingSettings {
        if let Some(v) = self.log_sample {
            settings.log_sample = v;
        }
        if let Some(v) = self.batch_max_rows {
            settings.batch_max_rows = v as usize;
        }
        if let Some(v) = self.batch_max_wait_ms {
            settings.batch_max_wait_ms = u64::from(v);
        }
        settings.breaker = BreakerConfig {
            failures: self.breaker_failures.unwrap_or(settings.breaker.failures),
            cooldown_ms: self
                .breaker_cooldown_ms
                .map_or(settings.breaker.cooldown_ms, u64::from),
        };
        if let Some(v) = self.monitor_window_ms {
            settings.monitor.window_ms = v;
        }
        if let Some(v) = self.monitor_window_rows {
            settings.monitor.window_rows = v;
        }
        if let Some(v) = self.prediction_retention_ms {
            settings.prediction_retention_ms = v;
        }
        if let Some(slo) = self.slo {
            settings.slo = slo;
        }
        settings
    }
}

/// How long a change waits to be live in this server's data plane before answering.
const GO_LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Waits until this server's data plane serves the change (models loaded), so a client that
/// sends traffic right after the answer reaches it; a model that cannot load is said in
/// `plane.not_ready` rather than failing the change, which is already stored.
async fn go_live(deployments: &Deployments, deployment: &Deployment) {
    if let Err(reason) = deployments
        .plane
        .wait_loaded(&deployment.name, deployment.revision, GO_LIVE_WAIT)
        .await
    {
        tracing::warn!(deployment = %deployment.name, %reason, "change stored but not live here");
    }
}

/// The answer to a change: once it is live here, the deployment as it now stands.
async fn changed(deployments: &Deployments, deployment: Deployment) -> Json<Value> {
    go_live(deployments, &deployment).await;
    Json(json!({ "deployment": deployment_json(deployments, &deployment) }))
}

fn deployment_json(deployments: &Deployments, deployment: &Deployment) -> Value {
    let served = deployments.plane.get(&deployment.name);
    let mut value = json!(deployment);
    value["traffic"] = json!(deployment.traffic());
    value["window"] = json!(deployments.controller.live_window(&deployment.name));
    // Reports of a stage the controller had already left (a replica behind), process-wide.
    // The live window is the leader's: another server says so rather than show an empty one.
    value["controller"] = json!({
        "stale_reports": deployments.controller.stale_reports(),
        "leader": deployments.cluster.is_leader(),
    });
    value["plane"] = json!({
        "loaded_revision": served.as_ref().map(|s| s.spec.revision),
        "not_ready": deployments.plane.not_ready_reason(&deployment.name),
    });
    value
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Create {
    name: Option<String>,
    model_uri: Option<String>,
    settings: Option<SettingsIn>,
    /// An admin's reason to re-create a protected deployment unprotected (audited).
    override_reason: Option<String>,
}

pub async fn create(
    AppFor(app): AppFor,
    principal: Option<Extension<Principal>>,
    Extension(deployments): Extension<Deployments>,
    Message(request): Message<Create>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let model = ModelRef::parse(&required_str(request.model_uri, "model_uri")?)?;
    let settings = request
        .settings
        .unwrap_or_default()
        .apply(ServingSettings::default());
    let admin_override = match request.override_reason.filter(|r| !r.trim().is_empty()) {
        None => None,
        // Without authentication every caller already has every right.
        Some(reason) if principal.as_ref().is_none_or(|p| p.role == Role::Admin) => {
            Some(AdminOverride { reason })
        }
        Some(_) => {
            return Err(slipway_core::Error::permission_denied(
                "only an admin may override a deployment's protection (override_reason)",
            )
            .into());
        }
    };
    let created = app
        .create_deployment(&name, &model, settings, admin_override.as_ref())
        .await?;
    Ok(changed(&deployments, created).await)
}

pub async fn list(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
) -> ApiResult<Json<Value>> {
    let all = app.list_deployments().await?;
    let items: Vec<Value> = all
        .iter()
        .map(|d| deployment_json(&deployments, d))
        .collect();
    Ok(Json(json!({ "deployments": items })))
}

pub async fn get(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let deployment = app.get_deployment(&name).await?;
    Ok(Json(
        json!({ "deployment": deployment_json(&deployments, &deployment) }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Update {
    settings: Option<SettingsIn>,
}

pub async fn update(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
    Message(request): Message<Update>,
) -> ApiResult<Json<Value>> {
    let current = app.get_deployment(&name).await?;
    let settings = request
        .settings
        .unwrap_or_default()
        .apply(current.settings.clone());
    let updated = app.update_deployment_settings(&name, settings).await?;
    Ok(changed(&deployments, updated).await)
}

pub async fn delete(AppFor(app): AppFor, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    app.delete_deployment(&name).await?;
    Ok(ok())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisIn {
    interval_ms: Option<u32>,
    min_samples: Option<u32>,
    #[serde(default, deserialize_with = "explicit")]
    max_error_rate: Option<Option<f64>>,
    #[serde(default, deserialize_with = "explicit")]
    max_p99_ms: Option<Option<f64>>,
    #[serde(default, deserialize_with = "explicit")]
    max_p99_ratio: Option<Option<f64>>,
    #[serde(default, deserialize_with = "explicit")]
    max_prediction_shift: Option<Option<f64>>,
    #[serde(default, deserialize_with = "explicit")]
    min_agreement: Option<Option<f64>>,
    alpha: Option<f64>,
    rescore_percent: Option<u8>,
    #[serde(default, deserialize_with = "explicit")]
    min_rescore_agreement: Option<Option<f64>>,
    rescore_min_samples: Option<u32>,
    score_tolerance: Option<f64>,
}

impl AnalysisIn {
    fn rules(self, strategy: &Strategy) -> AnalysisRules {
        let mut rules = AnalysisRules::default();
        // Mirrored traffic is compared row by row: agreement is on by default there.
        if matches!(
            strategy,
            Strategy::Shadow { .. }
                | Strategy::BlueGreen {
                    mirror_percent: 1..,
                    ..
                }
        ) {
            rules.min_agreement = Some(0.9);
        }
        if let Some(v) = self.interval_ms {
            rules.interval_ms = u64::from(v);
        }
        if let Some(v) = self.min_samples {
            rules.min_samples = u64::from(v);
        }
        let set = |slot: &mut Option<f64>, value: Option<Option<f64>>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut rules.max_error_rate, self.max_error_rate);
        set(&mut rules.max_p99_ms, self.max_p99_ms);
        set(&mut rules.max_p99_ratio, self.max_p99_ratio);
        set(&mut rules.max_prediction_shift, self.max_prediction_shift);
        set(&mut rules.min_agreement, self.min_agreement);
        set(&mut rules.min_rescore_agreement, self.min_rescore_agreement);
        if let Some(v) = self.alpha {
            rules.alpha = v;
        }
        if let Some(v) = self.rescore_percent {
            rules.rescore_percent = v;
        }
        if let Some(v) = self.rescore_min_samples {
            rules.rescore_min_samples = u64::from(v);
        }
        if let Some(v) = self.score_tolerance {
            rules.score_tolerance = v;
        }
        rules
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    weight: u8,
    duration_ms: u32,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRollout {
    candidate_uri: Option<String>,
    strategy: Option<String>,
    steps: Option<Vec<StepIn>>,
    preview_ms: Option<u32>,
    bake_ms: Option<u32>,
    mirror_percent: Option<u8>,
    duration_ms: Option<u32>,
    analysis: Option<AnalysisIn>,
    /// How long a stage may wait, after its duration, for a passing analysis (default 10
    /// minutes).
    progress_deadline_ms: Option<u32>,
    /// `rollback` (the default) or `pause` when the progress deadline passes.
    on_deadline: Option<String>,
}

const DEFAULT_STAGE_MS: u64 = 60_000;

pub async fn start_rollout(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
    Message(request): Message<StartRollout>,
) -> ApiResult<Json<Value>> {
    let candidate = ModelRef::parse(&required_str(request.candidate_uri, "candidate_uri")?)?;
    let strategy = match request.strategy.as_deref().unwrap_or("canary") {
        "canary" => Strategy::Canary {
            steps: match request.steps {
                Some(steps) => steps
                    .into_iter()
                    .map(|s| CanaryStep {
                        weight: s.weight,
                        duration_ms: u64::from(s.duration_ms),
                    })
                    .collect(),
                None => [5, 25, 50, 100]
                    .into_iter()
                    .map(|weight| CanaryStep {
                        weight,
                        duration_ms: DEFAULT_STAGE_MS,
                    })
                    .collect(),
            },
        },
        "blue-green" | "blue_green" | "bluegreen" => Strategy::BlueGreen {
            preview_ms: request.preview_ms.map_or(DEFAULT_STAGE_MS, u64::from),
            mirror_percent: request.mirror_percent.unwrap_or(0),
            bake_ms: request.bake_ms.map_or(0, u64::from),
        },
        "shadow" => Strategy::Shadow {
            mirror_percent: request.mirror_percent.unwrap_or(100),
            duration_ms: request.duration_ms.map_or(DEFAULT_STAGE_MS, u64::from),
        },
        other => {
            return Err(slipway_core::Error::invalid(format!(
                "unknown strategy '{other}': use canary, blue-green or shadow"
            ))
            .into());
        }
    };
    let rules = request.analysis.unwrap_or_default().rules(&strategy);
    let on_deadline = match request.on_deadline.as_deref() {
        Some(text) => DeadlineAction::parse(text)?,
        None => DeadlineAction::default(),
    };
    let updated = app
        .start_rollout(
            &name,
            &candidate,
            strategy,
            rules,
            request
                .progress_deadline_ms
                .map_or(DEFAULT_PROGRESS_DEADLINE_MS, u64::from),
            on_deadline,
        )
        .await?;
    Ok(changed(&deployments, updated).await)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    reason: Option<String>,
}

pub async fn promote(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let updated = app.promote_rollout(&name).await?;
    Ok(changed(&deployments, updated).await)
}

pub async fn abort(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
    Message(request): Message<Reason>,
) -> ApiResult<Json<Value>> {
    let updated = app
        .abort_rollout(&name, request.reason.as_deref().unwrap_or(""))
        .await?;
    Ok(changed(&deployments, updated).await)
}

pub async fn rollback(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
    Message(request): Message<Reason>,
) -> ApiResult<Json<Value>> {
    let (updated, done) = app
        .rollback_deployment(&name, request.reason.as_deref().unwrap_or(""))
        .await?;
    let Json(mut body) = changed(&deployments, updated).await;
    body["rollback"] = json!(done);
    Ok(Json(body))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Page {
    after: Option<I64>,
    limit: Option<I64>,
}

pub async fn events(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(page): Message<Page>,
) -> ApiResult<Json<Value>> {
    let events = app
        .deployment_events(
            &name,
            page.after.map_or(0, |a| a.0),
            page.limit.map_or(1000, |l| l.0.clamp(1, 1000) as usize),
        )
        .await?;
    Ok(Json(json!({ "events": events })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    rollout_id: i64,
    stage: usize,
    #[schema(value_type = Object)]
    stats: WindowStats,
    /// Every request's outcome and latency since the last report, rollout or not (0 as
    /// `rollout_id` when none runs).
    #[serde(default)]
    #[schema(value_type = Object)]
    serving: ServingStats,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    predictions: Vec<PredictionRecord>,
}

/// Maximum prediction records in one report.
const MAX_REPORTED_PREDICTIONS: usize = 5_000;

pub async fn report(
    AppFor(app): AppFor,
    Extension(deployments): Extension<Deployments>,
    Path(name): Path<String>,
    Message(report): Message<Report>,
) -> ApiResult<Json<Value>> {
    let deployment = app.get_deployment(&name).await?;
    if report.predictions.len() > MAX_REPORTED_PREDICTIONS {
        return Err(slipway_core::Error::invalid(format!(
            "a report carries at most {MAX_REPORTED_PREDICTIONS} prediction records, got {}",
            report.predictions.len()
        ))
        .into());
    }
    if report
        .predictions
        .iter()
        .any(|record| record.deployment != deployment.name)
    {
        return Err(slipway_core::Error::invalid(format!(
            "every prediction record in a report to '{name}' must name deployment '{name}'"
        ))
        .into());
    }
    // Only measurements of the stage running now: a report naming another (an old replica, or
    // a forged future stage that would wipe the live window) is not counted.
    let current = deployment
        .active_rollout()
        .map(|rollout| (rollout.id, rollout.stage));
    let current_stage = current == Some((report.rollout_id, report.stage));
    let window = (current_stage && !report.stats.is_empty())
        .then(|| (report.rollout_id, report.stage, report.stats.clone()));
    let counted = deployments
        .cluster
        .report(
            &name,
            window,
            report.serving,
            &format!("replica:{}", app.caller().actor),
        )
        .await?;
    let accepted = report.stats.is_empty() || (current_stage && counted);
    if !report.predictions.is_empty() {
        app.append_predictions(report.predictions).await?;
    }
    Ok(Json(json!({ "accepted": accepted })))
}

/// Which server this is, whether it leads, and the leader's lease as it last saw it.
pub async fn cluster(Extension(deployments): Extension<Deployments>) -> Json<Value> {
    Json(json!(deployments.cluster.status()))
}

pub async fn predictions(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(page): Message<Page>,
) -> ApiResult<Json<Value>> {
    let limit = page.limit.map_or(1000, |l| l.0.clamp(1, 10_000) as usize);
    let records = app
        .read_predictions(&name, page.after.map_or(0, |a| a.0), limit)
        .await?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({ "predictions": records, "next_after": next })))
}
