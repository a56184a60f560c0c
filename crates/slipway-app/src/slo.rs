//! SLOs of deployments, measured on the serving minutes the leader stores: where each
//! objective stands over its window, the error budget left, and how fast it burns over the
//! SRE workbook's alerting windows. Burn-rate alerts are ordinary alert rules on the
//! `slo_burn(KIND)` signal (see `alerting.rs`), so they reach the same receivers.

use serde_json::{Value, json};
use slipway_core::deployment::{Deployment, ServingStats};
use slipway_core::slo::{BURN_WINDOWS, Events, SloKind, SloSpec};
use slipway_core::{Error, Result};

use crate::alerting::Reading;
use crate::{App, now_ms};

/// Events of `kind` in the minutes starting at or after `from_ms`.
fn events_since(
    minutes: &[(i64, ServingStats)],
    spec: &SloSpec,
    kind: SloKind,
    from_ms: i64,
) -> Events {
    minutes
        .iter()
        .filter(|(minute, _)| *minute >= from_ms)
        .fold(Events::default(), |sum, (_, stats)| {
            let events = Events::of(stats, spec, kind);
            Events {
                total: sum.total + events.total,
                bad: sum.bad + events.bad,
            }
        })
}

fn duration(ms: i64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms => format!("{}m", ms / 60_000),
    }
}

/// The `slo_burn(KIND)` signal of one deployment over `window_ms` (and a twelfth of it).
pub(crate) async fn burn_reading(
    app: &App,
    deployment: &Deployment,
    kind: SloKind,
    window_ms: i64,
    min_requests: u64,
    now_ms: i64,
) -> Reading {
    let Some(spec) = &deployment.settings.slo else {
        return Reading::NoData("the deployment has no SLO".into());
    };
    let Some(objective) = spec.objective(kind) else {
        return Reading::NoData(format!(
            "the deployment's SLO has no {} objective",
            kind.as_str()
        ));
    };
    let minutes = match app
        .store()
        .serving_minutes(&deployment.name, now_ms - window_ms, i64::MAX)
        .await
    {
        Ok(minutes) => minutes,
        Err(error) => return Reading::Unknown(format!("reading serving minutes: {error}")),
    };
    let long = events_since(&minutes, spec, kind, now_ms - window_ms);
    if long.total < min_requests {
        return Reading::NoData(format!(
            "{} requests in the window, fewer than the {min_requests} the rule needs",
            long.total
        ));
    }
    let short = events_since(&minutes, spec, kind, now_ms - (window_ms / 12).max(60_000));
    let long_burn = long.burn_rate(objective).unwrap_or(0.0);
    // No traffic lately burns nothing: the alert resolves as soon as the burst is over.
    let short_burn = short.burn_rate(objective).unwrap_or(0.0);
    Reading::Value(long_burn.min(short_burn))
}

impl App {
    /// Where a deployment's objectives stand: over the SLO's window, the share of good
    /// requests, the error budget left (a share of it; negative once overspent) and the burn
    /// rates over the alerting windows, each with the threshold it pages or opens a ticket at.
    pub async fn slo_status(&self, name: &str) -> Result<Value> {
        let deployment = self.get_deployment(name).await?;
        let spec = deployment.settings.slo.clone().ok_or_else(|| {
            Error::invalid(format!(
                "deployment '{name}' has no SLO: set one with `slipway deploy update {name} --slo-availability 0.999`"
            ))
        })?;
        let now = now_ms();
        let window_ms = spec.window_ms();
        let minutes = self
            .store()
            .serving_minutes(name, now - window_ms, i64::MAX)
            .await?;
        let objectives: Vec<Value> = SloKind::ALL
            .into_iter()
            .filter_map(|kind| spec.objective(kind).map(|objective| (kind, objective)))
            .map(|(kind, objective)| {
                let events = events_since(&minutes, &spec, kind, now - window_ms);
                let allowed = (1.0 - objective) * events.total as f64;
                let budget_remaining = if events.total == 0 {
                    1.0
                } else {
                    1.0 - events.bad as f64 / allowed
                };
                let burn_rates: Vec<Value> = BURN_WINDOWS
                    .iter()
                    .map(|(long, short, threshold, severity)| {
                        let long_burn =
                            events_since(&minutes, &spec, kind, now - long).burn_rate(objective);
                        let short_burn =
                            events_since(&minutes, &spec, kind, now - short).burn_rate(objective);
                        json!({
                            "window": duration(*long),
                            "short_window": duration(*short),
                            "burn_rate": long_burn,
                            "short_burn_rate": short_burn,
                            "threshold": threshold,
                            "severity": severity,
                            "burning": long_burn.unwrap_or(0.0) > *threshold
                                && short_burn.unwrap_or(0.0) > *threshold,
                        })
                    })
                    .collect();
                json!({
                    "kind": kind.as_str(),
                    "objective": objective,
                    "threshold_ms": (kind == SloKind::Latency)
                        .then(|| spec.latency.as_ref().map(|l| l.threshold_ms))
                        .flatten(),
                    "requests": events.total,
                    "bad": events.bad,
                    "sli": (events.total > 0)
                        .then(|| 1.0 - events.bad as f64 / events.total as f64),
                    "budget_remaining": budget_remaining,
                    "burn_rates": burn_rates,
                })
            })
            .collect();
        let measured_from = minutes.first().map(|(minute, _)| *minute);
        Ok(json!({
            "deployment": name,
            "window_days": spec.window_days,
            "measured_from_ms": measured_from,
            "objectives": objectives,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::slo::LatencyObjective;

    #[test]
    fn events_are_summed_from_a_time_on() {
        let spec = SloSpec {
            availability: Some(0.99),
            latency: Some(LatencyObjective {
                threshold_ms: 100.0,
                objective: 0.9,
            }),
            window_days: 30,
        };
        let minute = |requests, errors| ServingStats {
            requests,
            server_errors: errors,
            ..ServingStats::default()
        };
        let minutes = vec![(0, minute(100, 0)), (60_000, minute(50, 5))];
        assert_eq!(
            events_since(&minutes, &spec, SloKind::Availability, 0),
            Events { total: 150, bad: 5 }
        );
        assert_eq!(
            events_since(&minutes, &spec, SloKind::Availability, 60_000),
            Events { total: 50, bad: 5 }
        );
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(duration(259_200_000), "3d");
        assert_eq!(duration(300_000), "5m");
    }
}
