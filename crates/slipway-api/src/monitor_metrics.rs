//! Drift monitoring on the server's `/metrics`: the latest closed window of every monitored
//! deployment, as gauges written at scrape time (a deleted deployment's series go with it), and
//! the monitor's counters. Names and labels are listed in docs/specs/metrics.md.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use slipway_app::monitoring::Monitor;

/// A label value as the exposition format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        self.samples.push((labels, value));
    }

    fn write(&self, text: &mut String) {
        let _ = writeln!(text, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(text, "# TYPE {} {}", self.name, self.kind);
        let suffix = if self.kind == "counter" { "_total" } else { "" };
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                let _ = writeln!(text, "{}{suffix} {value}", self.name);
            } else {
                let _ = writeln!(text, "{}{suffix}{{{labels}}} {value}", self.name);
            }
        }
    }
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// Appends the monitor's families to an OpenMetrics document being written.
pub(crate) fn encode_into(monitor: &Monitor, text: &mut String) {
    let mut dataset = Family::new(
        "slipway_monitor_dataset_drift",
        "gauge",
        "Whether the latest closed window drifted as a dataset (share of drifted features at least the drift share).",
    );
    let mut share = Family::new(
        "slipway_monitor_drift_share",
        "gauge",
        "Share of the features that drifted in the latest closed window.",
    );
    let mut rows = Family::new(
        "slipway_monitor_window_rows",
        "gauge",
        "Rows in the latest closed window.",
    );
    let mut end = Family::new(
        "slipway_monitor_window_end_seconds",
        "gauge",
        "When the latest closed window ended (Unix time).",
    );
    let mut feature_drift = Family::new(
        "slipway_monitor_feature_drift",
        "gauge",
        "Whether a feature drifted in the latest closed window.",
    );
    let mut feature_score = Family::new(
        "slipway_monitor_feature_score",
        "gauge",
        "A feature's drift score in the latest closed window: the p-value (corrected over features in auto mode) for tests, the distance for distances.",
    );
    let mut feature_effect = Family::new(
        "slipway_monitor_feature_effect",
        "gauge",
        "A feature's effect size in the latest closed window (KS distance D, or total variation distance for categories).",
    );
    let mut missing = Family::new(
        "slipway_monitor_missing_share",
        "gauge",
        "Share of a feature's values that were missing (null, NaN, infinite) in the latest closed window.",
    );
    let mut out_of_range = Family::new(
        "slipway_monitor_out_of_range_share",
        "gauge",
        "Share of a numerical feature's values outside the reference's range in the latest closed window.",
    );
    let mut unseen = Family::new(
        "slipway_monitor_unseen_share",
        "gauge",
        "Share of a categorical feature's values in categories the reference never had, in the latest closed window.",
    );
    let mut prediction = Family::new(
        "slipway_monitor_prediction_drift",
        "gauge",
        "Whether the model's predictions drifted in the latest closed window.",
    );
    let mut prediction_effect = Family::new(
        "slipway_monitor_prediction_effect",
        "gauge",
        "The predictions' effect size in the latest closed window.",
    );
    for latest in monitor.latest() {
        let version = latest.version.to_string();
        let base = [
            ("deployment", latest.deployment.as_str()),
            ("version", version.as_str()),
        ];
        let report = &latest.report;
        dataset.add(&base, flag(report.features.dataset.dataset_drift));
        share.add(&base, report.features.dataset.share);
        rows.add(&base, report.rows as f64);
        end.add(&base, latest.end_ms as f64 / 1000.0);
        for column in &report.features.columns {
            let labels = [base[0], base[1], ("feature", column.name.as_str())];
            feature_drift.add(&labels, flag(column.drift_detected));
            if let Some(score) = column.score {
                let with_method = [
                    labels[0],
                    labels[1],
                    labels[2],
                    ("method", column.method.as_str()),
                ];
                feature_score.add(&with_method, score);
            }
            if let Some(effect) = &column.effect {
                feature_effect.add(&labels, effect.value);
            }
            let quality = &column.data_quality;
            missing.add(&labels, quality.missing_share_current);
            if let Some(value) = quality.out_of_range_share_current {
                out_of_range.add(&labels, value);
            }
            if let Some(value) = quality.unseen_share_current {
                unseen.add(&labels, value);
            }
        }
        if let Some(column) = &report.prediction {
            prediction.add(&base, flag(column.drift_detected));
            if let Some(effect) = &column.effect {
                prediction_effect.add(&base, effect.value);
            }
        }
    }
    let counters = &monitor.counters;
    let mut summaries = Family::new(
        "slipway_monitor_summaries",
        "counter",
        "Summaries of live traffic received from data planes.",
    );
    summaries.add(&[], counters.summaries.load(Ordering::Relaxed) as f64);
    let mut late = Family::new(
        "slipway_monitor_late_summaries",
        "counter",
        "Summaries that arrived after their window had closed (not counted in any window).",
    );
    late.add(&[], counters.late.load(Ordering::Relaxed) as f64);
    let mut windows = Family::new(
        "slipway_monitor_windows",
        "counter",
        "Monitoring windows closed, compared with their reference and stored.",
    );
    windows.add(&[], counters.windows.load(Ordering::Relaxed) as f64);
    for family in [
        &dataset,
        &share,
        &rows,
        &end,
        &feature_drift,
        &feature_score,
        &feature_effect,
        &missing,
        &out_of_range,
        &unseen,
        &prediction,
        &prediction_effect,
        &summaries,
        &late,
        &windows,
    ] {
        family.write(text);
    }
}

/// Alerting on the server's `/metrics`: one series per pending or firing alert (as
/// Prometheus' own `ALERTS`), and the evaluator's counters.
pub(crate) fn encode_alerts_into(alerter: &slipway_app::alerting::Alerter, text: &mut String) {
    let mut active = Family::new(
        "slipway_alerts_active",
        "gauge",
        "Alerts pending or firing now, one series each (1).",
    );
    for alert in alerter.active() {
        let label = |k: &str| alert.labels.get(k).map_or("", String::as_str).to_owned();
        active.add(
            &[
                ("alertname", &label("alertname")),
                ("deployment", &label("deployment")),
                ("severity", &label("severity")),
                ("state", alert.state.as_str()),
            ],
            1.0,
        );
    }
    let counters = &alerter.counters;
    let count = |name, help, value: &AtomicU64| {
        let mut family = Family::new(name, "counter", help);
        family.add(&[], value.load(Ordering::Relaxed) as f64);
        family
    };
    let evaluations = count(
        "slipway_alerts_evaluations",
        "Evaluations of the alert rules.",
        &counters.evaluations,
    );
    let failures = count(
        "slipway_alerts_evaluation_failures",
        "Evaluations that stopped on an error (the store was unreachable); the next one starts afresh.",
        &counters.evaluation_failures,
    );
    let fired = count(
        "slipway_alerts_fired",
        "Alerts that began firing (recorded and audited).",
        &counters.fired,
    );
    let resolved = count(
        "slipway_alerts_resolved",
        "Firing alerts that resolved (recorded and audited).",
        &counters.resolved,
    );
    let mut notifications = Family::new(
        "slipway_alerts_notifications",
        "counter",
        "Notifications to receivers by outcome: sent (accepted), failed (every retry refused), silenced (held back by a silence).",
    );
    for (outcome, value) in [
        ("sent", &counters.notifications_sent),
        ("failed", &counters.notifications_failed),
        ("silenced", &counters.notifications_silenced),
    ] {
        notifications.add(
            &[("outcome", outcome)],
            value.load(Ordering::Relaxed) as f64,
        );
    }
    for family in [
        &active,
        &evaluations,
        &failures,
        &fired,
        &resolved,
        &notifications,
    ] {
        family.write(text);
    }
}
