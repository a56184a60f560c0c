//! Deployments: the list, and one deployment's page with its live part (traffic split, each
//! variant's requests, errors and latency in the current window, the latest analysis rule by
//! rule, the events with every decision) re-fetched every two seconds, and the buttons a
//! person may press.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use serde_json::Value;
use slipway_core::auth::{Action, Resource};
use slipway_core::deployment::{Deployment, DeploymentEvent, RolloutState, VariantWindow};

use crate::session::Viewer;
use crate::view::{Nav, number, span, time};
use crate::{Console, PageError, PageResult, page};

/// Events shown on a deployment's page, newest first.
const EVENTS_SHOWN: usize = 60;

struct DeploymentRow {
    name: String,
    model: String,
    serving: String,
    rollout: String,
    state: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "deployments.html")]
struct ListPage {
    nav: Nav,
    deployments: Vec<DeploymentRow>,
}

fn rollout_summary(d: &Deployment) -> (String, String) {
    match &d.rollout {
        Some(r) if r.state.is_active() => {
            let stages = r.strategy.stages();
            let weight = d.traffic().weight;
            (
                format!(
                    "v{} at {weight}% (stage {} of {})",
                    r.candidate_version,
                    r.stage + 1,
                    stages.len()
                ),
                r.state.label().to_owned(),
            )
        }
        Some(r) => (
            format!("v{} {}", r.candidate_version, r.state.label()),
            "stable".to_owned(),
        ),
        None => (String::new(), "stable".to_owned()),
    }
}

pub async fn list(viewer: Viewer) -> PageResult {
    let nav = viewer.nav("deployments");
    let deployments = viewer
        .app
        .list_deployments()
        .await
        .map_err(|e| PageError::new(&nav, e))?
        .into_iter()
        .map(|d| {
            let (rollout, state) = rollout_summary(&d);
            DeploymentRow {
                serving: format!(
                    "v{}{}",
                    d.stable_version,
                    d.alias
                        .as_deref()
                        .map_or_else(String::new, |a| format!(" (@{a})"))
                ),
                model: d.model_name.clone(),
                updated: time(d.updated_ms),
                name: d.name,
                rollout,
                state,
            }
        })
        .collect();
    Ok(page(&ListPage { nav, deployments }))
}

struct VariantRow {
    name: &'static str,
    version: String,
    weight: u8,
    requests: u64,
    rate: String,
    errors: u64,
    error_rate: String,
    p50: String,
    p99: String,
}

struct RuleRow {
    rule: String,
    candidate: String,
    stable: String,
    threshold: String,
    samples: u64,
    result: String,
}

struct EventRow {
    time: String,
    kind: String,
    actor: String,
    rollout: String,
    summary: String,
    count: i64,
    decision: bool,
}

#[derive(Template)]
#[template(path = "deployment_live.html")]
struct Live {
    name: String,
    stable_version: String,
    /// Percent of live traffic each side answers, and what is mirrored.
    stable_weight: u8,
    candidate_weight: u8,
    mirror: u8,
    rollout: Option<RolloutView>,
    variants: Vec<VariantRow>,
    analysis: Option<AnalysisView>,
    sources: String,
    events: Vec<EventRow>,
    may_write: bool,
    may_approve: bool,
    window_note: String,
}

struct RolloutView {
    id: i64,
    candidate: String,
    state: String,
    reason: String,
    active: bool,
    stages: Vec<(usize, u8, u8, String, bool, bool)>,
    started: String,
    by: String,
}

struct AnalysisView {
    at: String,
    window: String,
    verdict: String,
    verdict_kind: &'static str,
    rules: Vec<RuleRow>,
}

fn variant_row(
    name: &'static str,
    version: String,
    weight: u8,
    window: &VariantWindow,
    seconds: f64,
) -> VariantRow {
    let ms = |q| {
        window
            .latency
            .quantile_ms(q)
            .map_or_else(|| "—".to_owned(), |v| format!("{} ms", number(v)))
    };
    VariantRow {
        name,
        version,
        weight,
        requests: window.requests,
        rate: if seconds > 0.0 {
            format!("{:.1}/s", window.requests as f64 / seconds)
        } else {
            "—".to_owned()
        },
        errors: window.errors,
        error_rate: if window.requests > 0 {
            format!(
                "{:.2}%",
                window.errors as f64 * 100.0 / window.requests as f64
            )
        } else {
            "—".to_owned()
        },
        p50: ms(0.5),
        p99: ms(0.99),
    }
}

fn event_summary(event: &DeploymentEvent) -> String {
    let d = &event.detail;
    let text = |key: &str| match &d[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match event.kind.as_str() {
        "created" => format!("created on v{}", text("version")),
        "rollout_started" => format!(
            "rollout of v{} started ({} strategy)",
            text("candidate_version"),
            d["strategy"]["kind"].as_str().unwrap_or("")
        ),
        "stage" => format!(
            "stage {} at {}% (mirror {}%)",
            d["stage"].as_u64().map_or(0, |s| s + 1),
            text("weight"),
            text("mirror")
        ),
        "analysis" => {
            let verdict = &d["verdict"];
            let why = verdict["detail"]
                .as_str()
                .or_else(|| verdict["reason"].as_str())
                .unwrap_or("");
            format!(
                "analysis — {}: {why}",
                verdict["verdict"].as_str().unwrap_or("")
            )
        }
        "promoted" => format!(
            "promoted v{} (was v{}): {}",
            text("to_version"),
            text("from_version"),
            text("why")
        ),
        "rolled_back" if event.rollout_id.is_some() => format!(
            "rolled back v{}: {}",
            text("candidate_version"),
            text("reason")
        ),
        "rolled_back" => format!(
            "rolled back from v{} to v{}: {}",
            text("from_version"),
            text("to_version"),
            text("reason")
        ),
        "aborted" => format!("aborted v{}: {}", text("candidate_version"), text("reason")),
        "followed_alias" => format!("followed @{} to v{}", text("alias"), text("to_version")),
        _ => {
            let mut s = d.to_string();
            s.truncate(300);
            s
        }
    }
}

async fn live_view(viewer: &Viewer, console: &Console, name: &str) -> Result<Live, PageError> {
    let nav = viewer.nav("deployments");
    let fail = |e| PageError::new(&nav, e);
    let deployment = viewer.app.get_deployment(name).await.map_err(fail)?;
    let traffic = deployment.traffic();
    let live = console
        .deployments
        .as_ref()
        .and_then(|d| d.controller.live_window(name));
    let active = deployment.active_rollout().cloned();
    let now = slipway_app::now_ms();
    let (variants, analysis, sources, window_note) = match (&live, &active) {
        (Some(window), Some(rollout)) if window.rollout_id == rollout.id => {
            let seconds = (now - window.started_ms).max(0) as f64 / 1000.0;
            let variants = vec![
                variant_row(
                    "stable",
                    deployment.stable_version.clone(),
                    100 - traffic.weight,
                    &window.stats.stable,
                    seconds,
                ),
                variant_row(
                    "candidate",
                    rollout.candidate_version.clone(),
                    traffic.weight,
                    &window.stats.candidate,
                    seconds,
                ),
            ];
            let analysis = window.last_analysis.as_ref().map(|a| AnalysisView {
                at: time(a.at_ms),
                window: span(a.window_ms),
                verdict: match &a.verdict {
                    slipway_core::deployment::Verdict::Pass { detail } => detail.clone(),
                    slipway_core::deployment::Verdict::Fail { detail, .. } => detail.clone(),
                    slipway_core::deployment::Verdict::Inconclusive { reason } => reason.clone(),
                },
                verdict_kind: a.verdict.label(),
                rules: a
                    .measurements
                    .iter()
                    .map(|m| RuleRow {
                        rule: m.rule.clone(),
                        candidate: m.candidate.map_or_else(|| "—".to_owned(), number),
                        stable: m.stable.map_or_else(|| "—".to_owned(), number),
                        threshold: number(m.threshold),
                        samples: m.samples,
                        result: serde_json::to_value(m.result)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("{:?}", m.result)),
                    })
                    .collect(),
            });
            let sources = window
                .sources
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            (
                variants,
                analysis,
                sources,
                format!(
                    "window of stage {}, {}",
                    window.stage + 1,
                    span(now - window.started_ms)
                ),
            )
        }
        (_, Some(_)) => (
            Vec::new(),
            None,
            String::new(),
            "the live window is the leader's: another server holds it".to_owned(),
        ),
        _ => (Vec::new(), None, String::new(), String::new()),
    };
    let rollout = deployment.rollout.as_ref().map(|r| {
        let stages = r.strategy.stages();
        RolloutView {
            id: r.id,
            candidate: r.candidate_version.clone(),
            state: r.state.label().to_owned(),
            reason: match &r.state {
                RolloutState::RolledBack { reason }
                | RolloutState::Aborted { reason }
                | RolloutState::Paused { reason } => reason.clone(),
                RolloutState::AwaitingApproval { promotion_id } => {
                    format!("waiting for promotion request #{promotion_id}")
                }
                _ => String::new(),
            },
            active: r.state.is_active(),
            stages: stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        i + 1,
                        s.weight,
                        s.mirror,
                        span(s.duration_ms as i64),
                        i == r.stage && r.state.is_active(),
                        i < r.stage || matches!(r.state, RolloutState::Succeeded),
                    )
                })
                .collect(),
            started: time(r.started_ms),
            by: r.started_by.clone(),
        }
    });
    let events = viewer
        .app
        .recent_deployment_events(name, EVENTS_SHOWN)
        .await
        .map_err(fail)?;
    let events = events
        .iter()
        .map(|e| EventRow {
            time: time(e.time_ms),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            rollout: e.rollout_id.map_or_else(String::new, |r| format!("#{r}")),
            summary: event_summary(e),
            count: e.count,
            decision: matches!(
                e.kind.as_str(),
                "promoted" | "rolled_back" | "aborted" | "paused" | "awaiting_approval"
            ),
        })
        .collect();
    let resource = Resource::registered_model(&deployment.model_name);
    Ok(Live {
        name: deployment.name.clone(),
        stable_version: deployment.stable_version.clone(),
        stable_weight: 100 - traffic.weight,
        candidate_weight: traffic.weight,
        mirror: traffic.mirror,
        rollout,
        variants,
        analysis,
        sources,
        events,
        may_write: viewer.principal.allows(Action::Write, Some(&resource)),
        may_approve: viewer.principal.allows(Action::Approve, Some(&resource)),
        window_note,
    })
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DetailPage {
    nav: Nav,
    name: String,
    model: String,
    alias: String,
    previous: String,
    created: String,
    settings: Vec<(String, String)>,
    live_html: String,
}

pub async fn detail(
    viewer: Viewer,
    State(console): State<Console>,
    Path(name): Path<String>,
) -> PageResult {
    let nav = viewer.nav("deployments");
    let deployment = viewer
        .app
        .get_deployment(&name)
        .await
        .map_err(|e| PageError::new(&nav, e))?;
    let live = live_view(&viewer, &console, &name).await?;
    let live_html = live.render().map_err(|error| {
        PageError::new(
            &nav,
            slipway_core::Error::internal("rendering a deployment's live part", error),
        )
    })?;
    let s = &deployment.settings;
    let mut settings = vec![
        ("Revision".to_owned(), deployment.revision.to_string()),
        (
            "Prediction log".to_owned(),
            format!("{}% of requests", number(s.log_sample * 100.0)),
        ),
    ];
    if s.prediction_retention_ms > 0 {
        settings.push((
            "Predictions kept".to_owned(),
            span(s.prediction_retention_ms as i64),
        ));
    }
    if let Some(slo) = &s.slo {
        settings.push((
            "SLO".to_owned(),
            serde_json::to_string(slo).unwrap_or_default(),
        ));
    }
    Ok(page(&DetailPage {
        nav,
        model: deployment.model_name.clone(),
        alias: deployment.alias.clone().unwrap_or_default(),
        previous: deployment.previous_version.clone().unwrap_or_default(),
        created: format!(
            "{} by {}",
            time(deployment.created_ms),
            deployment.created_by
        ),
        settings,
        name,
        live_html,
    }))
}

/// The live part alone, for the page's script to swap in.
pub async fn live(
    viewer: Viewer,
    State(console): State<Console>,
    Path(name): Path<String>,
) -> PageResult {
    let live = live_view(&viewer, &console, &name).await?;
    match live.render() {
        Ok(html) => {
            let mut response = Html(html).into_response();
            crate::secure_headers(&mut response);
            Ok(response)
        }
        Err(error) => Err(PageError::new(
            &viewer.nav("deployments"),
            slipway_core::Error::internal("rendering a deployment's live part", error),
        )),
    }
}
