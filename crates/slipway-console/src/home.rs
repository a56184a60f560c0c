//! The overview: what needs a person now (promotions waiting, alerts firing, rollouts
//! running) and where everything else is.

use askama::Template;
use slipway_core::auth::Resource;
use slipway_core::tracking::ViewType;

use crate::session::Viewer;
use crate::view::{Nav, time};
use crate::{PageError, PageResult, page};

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
    pending: usize,
    firing: usize,
    rollouts: Vec<(String, String)>,
    deployments: usize,
    experiments: Vec<(String, String, String)>,
}

pub async fn home(viewer: Viewer) -> PageResult {
    let nav = viewer.nav("");
    let fail = |e| PageError::new(&nav, e);
    let pending = viewer
        .app
        .list_promotions(None, Some("pending"))
        .await
        .map_err(fail)?
        .len();
    let deployments = viewer.app.list_deployments().await.map_err(fail)?;
    let firing = viewer
        .app
        .stored_firing_alerts()
        .await
        .map_err(fail)?
        .iter()
        .filter(|a| {
            a.deployment().is_empty() || deployments.iter().any(|d| d.name == a.deployment())
        })
        .count();
    let rollouts = deployments
        .iter()
        .filter_map(|d| {
            d.active_rollout().map(|r| {
                (
                    d.name.clone(),
                    format!(
                        "v{} at {}% — {}",
                        r.candidate_version,
                        d.traffic().weight,
                        r.state.label()
                    ),
                )
            })
        })
        .collect();
    let experiments = viewer
        .app
        .search_experiments(
            None,
            &["last_update_time DESC".to_owned()],
            ViewType::ActiveOnly,
            Some(20),
            None,
        )
        .await
        .map_err(fail)?
        .items
        .into_iter()
        .filter(|e| viewer.may_read(&Resource::experiment(e.experiment_id.to_string())))
        .take(8)
        .map(|e| {
            (
                e.experiment_id.to_string(),
                e.name,
                time(e.last_update_time),
            )
        })
        .collect();
    Ok(page(&HomePage {
        nav,
        pending,
        firing,
        rollouts,
        deployments: deployments.len(),
        experiments,
    }))
}
