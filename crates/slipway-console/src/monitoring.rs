//! Monitoring: a deployment's drift over time, feature by feature, the latest window's
//! reference and current distributions (drawn here as SVG), realized and estimated
//! performance from delayed labels, and alerts with their silences.

use askama::Template;
use axum::extract::Path;
use serde_json::{Value, json};
use slipway_core::alerting::{Alert, AlertState};

use crate::session::Viewer;
use crate::view::{self, Nav, number, time};
use crate::{PageError, PageResult, page};

/// Windows a drift chart covers.
const WINDOWS: usize = 100;

struct Bar {
    x: f64,
    width: f64,
    y: f64,
    height: f64,
    title: String,
}

/// One column's distributions, as bars: the reference's beside the current's in each bin.
struct DistributionView {
    name: String,
    drifted: bool,
    verdict: String,
    reference: Vec<Bar>,
    current: Vec<Bar>,
    labels: Vec<(f64, String)>,
}

const SVG_W: f64 = 360.0;
const SVG_H: f64 = 150.0;
const AXIS: f64 = 30.0;

fn distribution_view(d: &Value, drift: Option<&Value>) -> Option<DistributionView> {
    let bins: Vec<String> = d["bins"]
        .as_array()?
        .iter()
        .map(|b| b.as_str().unwrap_or("").to_owned())
        .collect();
    let counts = |side: &str| -> Vec<f64> {
        d[side]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect())
            .unwrap_or_default()
    };
    let (reference, current) = (counts("reference"), counts("current"));
    if bins.is_empty() || reference.len() != bins.len() || current.len() != bins.len() {
        return None;
    }
    // Shares, so a window of 200 rows compares with a reference of 50,000.
    let share = |v: &[f64]| {
        let total: f64 = v.iter().sum();
        v.iter()
            .map(|c| if total > 0.0 { c / total } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let (r, c) = (share(&reference), share(&current));
    let top = r.iter().chain(&c).copied().fold(0.0, f64::max).max(1e-9);
    let slot = SVG_W / bins.len() as f64;
    let bar = |i: usize, value: f64, offset: f64, count: f64, side: &str| {
        let height = value / top * (SVG_H - AXIS);
        Bar {
            x: i as f64 * slot + offset,
            width: slot * 0.4,
            y: SVG_H - AXIS - height,
            height,
            title: format!("{side} {}: {} rows ({:.1}%)", bins[i], count, value * 100.0),
        }
    };
    let name = d["name"].as_str().unwrap_or("").to_owned();
    Some(DistributionView {
        drifted: drift.is_some_and(|c| c["drift_detected"] == true),
        verdict: drift
            .and_then(|c| c["reason"].as_str())
            .unwrap_or("")
            .to_owned(),
        reference: (0..bins.len())
            .map(|i| bar(i, r[i], slot * 0.08, reference[i], "reference"))
            .collect(),
        current: (0..bins.len())
            .map(|i| bar(i, c[i], slot * 0.52, current[i], "current"))
            .collect(),
        labels: bins
            .iter()
            .enumerate()
            // Every other label on a crowded axis.
            .filter(|(i, _)| bins.len() <= 6 || i % 2 == 0)
            .map(|(i, b)| (i as f64 * slot + slot / 2.0, b.clone()))
            .collect(),
        name,
    })
}

struct AlertRow {
    name: String,
    deployment: String,
    state: String,
    value: String,
    since: String,
    resolved: String,
    summary: String,
    runbook: String,
}

fn alert_row(alert: &Alert) -> AlertRow {
    AlertRow {
        name: alert.name().to_owned(),
        deployment: alert.deployment().to_owned(),
        state: match alert.state {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
        .to_owned(),
        value: alert.value.map_or_else(String::new, number),
        since: time(alert.active_since_ms),
        resolved: alert.resolved_ms.map_or_else(String::new, time),
        summary: alert
            .annotations
            .get("summary")
            .cloned()
            .unwrap_or_default(),
        runbook: alert
            .annotations
            .get("runbook_url")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .cloned()
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "monitoring.html")]
struct MonitoringPage {
    nav: Nav,
    name: String,
    model: String,
    windows: usize,
    latest: String,
    dataset_drift: String,
    distributions: Vec<DistributionView>,
    /// Drift scores per feature over time, for the chart.
    drift: String,
    performance: String,
    performance_note: String,
    alerts: Vec<AlertRow>,
}

async fn page_for(viewer: &Viewer, name: &str) -> PageResult {
    let nav = viewer.nav("monitoring");
    let fail = |e| PageError::new(&nav, e);
    let deployment = viewer.app.get_deployment(name).await.map_err(fail)?;
    let windows = viewer
        .app
        .monitor_windows(name, None, WINDOWS)
        .await
        .map_err(fail)?;
    // Oldest first for the chart.
    let mut times = Vec::new();
    let mut series: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    let mut names: Vec<String> = Vec::new();
    for window in windows.iter().rev() {
        for column in window.report["report"]["features"]["columns"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let feature = column["name"].as_str().unwrap_or("").to_owned();
            if !names.contains(&feature) {
                names.push(feature);
            }
        }
    }
    for window in windows.iter().rev() {
        times.push(window.end_ms / 1000);
        let columns = window.report["report"]["features"]["columns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for feature in &names {
            let score = columns
                .iter()
                .find(|c| c["name"].as_str() == Some(feature))
                .map_or(Value::Null, |c| c["score"].clone());
            series.entry(feature.clone()).or_default().push(score);
        }
    }
    let drift = view::script_json(&json!({
        "time": times,
        "series": names.iter().map(|n| json!({"name": n, "values": series.get(n)})).collect::<Vec<_>>(),
        "methods": windows.first().map(|w| w.report["report"]["features"]["columns"].as_array().map(|c| c.iter().map(|c| json!({"name": c["name"], "method": c["method"], "threshold": c["threshold"], "operator": c["operator"]})).collect::<Vec<_>>())),
    }));
    let latest = windows.first();
    let distributions = latest
        .map(|w| {
            let columns = w.report["report"]["features"]["columns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            w.report["report"]["distributions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let drift = columns.iter().find(|c| c["name"] == d["name"]).or_else(|| {
                        (w.report["report"]["prediction"]["name"] == d["name"])
                            .then_some(&w.report["report"]["prediction"])
                    });
                    distribution_view(d, drift)
                })
                .collect()
        })
        .unwrap_or_default();
    let (performance, performance_note) = match viewer.app.performance(name, 3_600_000, 48).await {
        Ok(value) => (view::script_json(&value["windows"]), String::new()),
        Err(error) => ("[]".to_owned(), error.to_string()),
    };
    let alerts = viewer
        .app
        .list_alerts(
            viewer.app.stored_firing_alerts().await.map_err(fail)?,
            None,
            Some(name.to_owned()),
            50,
        )
        .await
        .map_err(fail)?;
    let alerts = alerts
        .active
        .iter()
        .chain(&alerts.history)
        .map(alert_row)
        .collect();
    Ok(page(&MonitoringPage {
        nav,
        name: deployment.name.clone(),
        model: deployment.model_name.clone(),
        windows: windows.len(),
        latest: latest.map_or_else(
            || "—".to_owned(),
            |w| {
                format!(
                    "{} to {} (v{}, {} rows)",
                    time(w.start_ms),
                    time(w.end_ms),
                    w.version,
                    w.rows
                )
            },
        ),
        dataset_drift: latest.map_or_else(String::new, |w| {
            let d = &w.report["report"]["features"]["dataset"];
            format!(
                "{} of {} features drifted{}",
                d["drifted_columns"],
                d["columns"],
                if d["dataset_drift"] == true {
                    ": dataset drift"
                } else {
                    ""
                }
            )
        }),
        distributions,
        drift,
        performance,
        performance_note,
        alerts,
    }))
}

pub async fn deployment(viewer: Viewer, Path(name): Path<String>) -> PageResult {
    page_for(&viewer, &name).await
}

struct SilenceRow {
    id: i64,
    matchers: String,
    ends: String,
    by: String,
    comment: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Nav,
    active: Vec<AlertRow>,
    history: Vec<AlertRow>,
    silences: Vec<SilenceRow>,
}

pub async fn alerts(viewer: Viewer) -> PageResult {
    let nav = viewer.nav("monitoring");
    let fail = |e| PageError::new(&nav, e);
    let firing = viewer.app.stored_firing_alerts().await.map_err(fail)?;
    // Alerts on deployments the viewer may not read stay out.
    let readable: Vec<String> = viewer
        .app
        .list_deployments()
        .await
        .map_err(fail)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let visible =
        |a: &&Alert| a.deployment().is_empty() || readable.iter().any(|d| d == a.deployment());
    let list = viewer
        .app
        .list_alerts(firing, None, None, 200)
        .await
        .map_err(fail)?;
    let silences = viewer
        .app
        .list_silences(false)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|s| SilenceRow {
            id: s.id,
            matchers: s
                .matchers
                .iter()
                .map(|m| format!("{}{}{}", m.label, if m.equal { "=" } else { "!=" }, m.value))
                .collect::<Vec<_>>()
                .join(", "),
            ends: time(s.ends_ms),
            by: s.created_by,
            comment: s.comment,
        })
        .collect();
    Ok(page(&AlertsPage {
        nav,
        active: list.active.iter().filter(visible).map(alert_row).collect(),
        history: list.history.iter().filter(visible).map(alert_row).collect(),
        silences,
    }))
}
