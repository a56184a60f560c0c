//! Delivery: deploy frequency, lead time for changes, change failure rate, time to restore
//! and cost per 1,000 inferences, per model and overall, as `slipway report delivery`
//! computes them.

use askama::Template;
use axum::extract::Query;
use serde::Deserialize;
use serde_json::json;
use slipway_core::Error;
use slipway_core::delivery::{DeliveryMetrics, Durations};

use crate::session::Viewer;
use crate::view::{self, Nav, span, time};
use crate::{PageError, PageResult, page};

struct MetricsView {
    name: String,
    deploys: String,
    lead_time: String,
    failure_rate: String,
    restore: String,
    requests: u64,
    cpu: String,
    cost: String,
}

fn durations(d: &Option<Durations>) -> String {
    d.as_ref().map_or_else(
        || "—".to_owned(),
        |d| {
            format!(
                "{} median, {} max (n={})",
                span(d.median_ms),
                span(d.max_ms),
                d.count
            )
        },
    )
}

fn metrics_view(name: &str, m: &DeliveryMetrics) -> MetricsView {
    MetricsView {
        name: name.to_owned(),
        deploys: format!("{} ({:.2} a day)", m.deploys, m.deploys_per_day),
        lead_time: durations(&m.lead_time),
        failure_rate: m.change_failure_rate.map_or_else(
            || "—".to_owned(),
            |r| format!("{:.0}% ({} of {})", r * 100.0, m.failed_changes, m.changes),
        ),
        restore: durations(&m.time_to_restore)
            + &if m.open_incidents > 0 {
                format!(", {} open", m.open_incidents)
            } else {
                String::new()
            },
        requests: m.requests,
        cpu: m
            .cpu_ms_per_1000
            .map_or_else(|| "—".to_owned(), |ms| format!("{ms:.1} ms")),
        cost: m
            .cost_per_1000
            .map_or_else(|| "—".to_owned(), crate::view::number),
    }
}

struct ChangeRow {
    time: String,
    deployment: String,
    model: String,
    version: String,
    kind: String,
    lead_time: String,
    failed: String,
}

struct IncidentRow {
    cause: String,
    deployment: String,
    start: String,
    duration: String,
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    nav: Nav,
    since: String,
    period: String,
    priced: bool,
    overall: MetricsView,
    models: Vec<MetricsView>,
    changes: Vec<ChangeRow>,
    incidents: Vec<IncidentRow>,
    /// Deploys and failed changes per day, for the chart.
    timeline: String,
}

#[derive(Deserialize, Default)]
pub struct DeliveryQuery {
    /// A span back from now: 30d (default), 7d, 90d.
    since: Option<String>,
}

pub async fn report(viewer: Viewer, Query(query): Query<DeliveryQuery>) -> PageResult {
    let nav = viewer.nav("delivery");
    let fail = |e| PageError::new(&nav, e);
    let since = query.since.unwrap_or_else(|| "30d".to_owned());
    let span_ms = humantime::parse_duration(since.trim())
        .map_err(|_| {
            fail(Error::invalid(format!(
                "since '{since}': give a span such as 7d, 30d or 90d"
            )))
        })?
        .as_millis() as i64;
    let until = slipway_app::now_ms();
    let report = viewer
        .app
        .delivery_report(until - span_ms, until)
        .await
        .map_err(fail)?;
    let day = 86_400_000;
    let first_day = report.since_ms.div_euclid(day);
    let days = (report.until_ms.div_euclid(day) - first_day + 1).max(1) as usize;
    let mut deploys = vec![0u64; days];
    let mut failed = vec![0u64; days];
    for change in &report.changes {
        let i = (change.time_ms.div_euclid(day) - first_day).clamp(0, days as i64 - 1) as usize;
        if change.kind.is_deploy() {
            deploys[i] += 1;
        }
        if change.failed.is_some() {
            failed[i] += 1;
        }
    }
    let timeline = view::script_json(&json!({
        "time": (0..days).map(|i| (first_day + i as i64) * day / 1000).collect::<Vec<_>>(),
        "deploys": deploys,
        "failed": failed,
    }));
    Ok(page(&DeliveryPage {
        nav,
        period: format!("{} to {}", time(report.since_ms), time(report.until_ms)),
        since,
        priced: report.cpu_hour_price.is_some(),
        overall: metrics_view("all models", &report.overall),
        models: report
            .models
            .iter()
            .map(|(name, m)| metrics_view(name, m))
            .collect(),
        changes: report
            .changes
            .iter()
            .rev()
            .take(200)
            .map(|c| ChangeRow {
                time: time(c.time_ms),
                deployment: c.deployment.clone(),
                model: c.model.clone(),
                version: c.version.clone(),
                kind: serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                lead_time: c.lead_time_ms.map_or_else(String::new, span),
                failed: c.failed.clone().unwrap_or_default(),
            })
            .collect(),
        incidents: report
            .incidents
            .iter()
            .rev()
            .take(200)
            .map(|i| IncidentRow {
                cause: i.cause.clone(),
                deployment: i.deployment.clone().unwrap_or_default(),
                start: time(i.start_ms),
                duration: i.duration_ms().map_or_else(|| "open".to_owned(), span),
            })
            .collect(),
        timeline,
    }))
}
