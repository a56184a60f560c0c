//! The delivery report: what `slipway_core::delivery` computes, gathered from the store for
//! what the caller may read.

use slipway_core::delivery::{self, DeliveryInput, DeliveryReport, DeploymentHistory};
use slipway_core::ports::AlertFilter;
use slipway_core::tracking::RunId;
use slipway_core::{Error, Result};

use crate::App;

/// The longest period one report reads (alerts and events are paged, serving minutes are
/// summed in the store, but a report should not walk years of history per request).
pub const MAX_PERIOD_MS: i64 = 400 * 86_400_000;

/// Deployment events and alerts are read in pages of this many.
const PAGE: usize = 1000;

impl App {
    /// Delivery metrics over `[since_ms, until_ms]`, from the deployments, alerts, source runs
    /// and serving minutes of the models the caller may read.
    pub async fn delivery_report(&self, since_ms: i64, until_ms: i64) -> Result<DeliveryReport> {
        if since_ms >= until_ms {
            return Err(Error::invalid(
                "the report's period is empty: 'since' must be before 'until'",
            ));
        }
        if until_ms - since_ms > MAX_PERIOD_MS {
            return Err(Error::invalid(format!(
                "the report's period is longer than {} days; ask for a shorter one",
                MAX_PERIOD_MS / 86_400_000
            )));
        }
        let store = self.store();
        let mut deployments = Vec::new();
        for deployment in self.list_deployments().await? {
            let mut events = Vec::new();
            let mut after = 0;
            loop {
                let page = store
                    .deployment_events(&deployment.name, after, PAGE)
                    .await?;
                let done = page.len() < PAGE;
                after = page.last().map_or(after, |e| e.seq);
                events.extend(page.into_iter().filter(|e| e.time_ms <= until_ms));
                if done {
                    break;
                }
            }
            deployments.push(DeploymentHistory {
                name: deployment.name,
                model: deployment.model_name,
                events,
            });
        }

        // Alerts newest first, until they began before the period: earlier ones can blame
        // only changes before it.
        let mut alerts = Vec::new();
        let mut before_id = None;
        loop {
            let page = store
                .list_alerts(
                    &AlertFilter {
                        before_id,
                        ..AlertFilter::default()
                    },
                    PAGE,
                )
                .await?;
            let done = page.len() < PAGE || page.iter().all(|a| a.active_since_ms < since_ms);
            before_id = page.last().map(|a| a.id);
            alerts.extend(page.into_iter().filter(|a| {
                a.fired_ms.is_some()
                    && a.active_since_ms <= until_ms
                    && (a.deployment().is_empty()
                        || deployments.iter().any(|d| d.name == a.deployment()))
            }));
            if done || before_id.is_none() {
                break;
            }
        }

        let mut run_starts = std::collections::BTreeMap::new();
        for (model, version) in delivery::deployed_versions(&deployments) {
            let Ok(number) = version.parse::<i64>() else {
                continue;
            };
            let Ok(found) = store.get_model_version(&model, number).await else {
                continue;
            };
            let Some(run_id) = found.run_id.as_deref().and_then(|r| RunId::parse(r).ok()) else {
                continue;
            };
            if let Ok(run) = store.get_run(&run_id).await {
                run_starts.insert((model, version), run.info.start_time);
            }
        }

        let serving = store
            .serving_totals(since_ms, until_ms.saturating_add(1))
            .await?
            .into_iter()
            .filter(|s| deployments.iter().any(|d| d.name == s.deployment))
            .collect();
        Ok(delivery::report(&DeliveryInput {
            since_ms,
            until_ms,
            deployments,
            alerts,
            run_starts,
            serving,
            cpu_hour_price: self.settings().cpu_hour_price,
        }))
    }
}
