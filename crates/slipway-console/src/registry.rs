//! The registry: models, their versions and aliases (with their history), a version's lineage
//! as a graph and its gates, and promotions waiting for a decision with what would change.

use askama::Template;
use axum::extract::{Path, Query};
use serde::Deserialize;
use slipway_app::promotions::Lineage;
use slipway_core::Error;
use slipway_core::auth::{Action, Resource};
use slipway_core::promotion::{PromotionRequest, PromotionTarget, RequestState};
use slipway_core::registry::ModelVersion;

use crate::session::Viewer;
use crate::view::{Nav, number, time};
use crate::{PageError, PageResult, page};

struct ModelRow {
    name: String,
    description: String,
    aliases: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    nav: Nav,
    models: Vec<ModelRow>,
    pending: usize,
}

pub async fn models(viewer: Viewer) -> PageResult {
    let nav = viewer.nav("models");
    let found = viewer
        .app
        .search_registered_models(None, &["name ASC".to_owned()], Some(1000), None)
        .await
        .map_err(|e| PageError::new(&nav, e))?;
    let pending = viewer
        .app
        .list_promotions(None, Some("pending"))
        .await
        .map_err(|e| PageError::new(&nav, e))?
        .len();
    let models = found
        .items
        .into_iter()
        .map(|m| ModelRow {
            aliases: m
                .aliases
                .iter()
                .map(|a| format!("@{} → v{}", a.alias, a.version))
                .collect::<Vec<_>>()
                .join(", "),
            description: m.description.unwrap_or_default(),
            updated: time(m.last_updated_timestamp),
            name: m.name,
        })
        .collect();
    Ok(page(&ModelsPage {
        nav,
        models,
        pending,
    }))
}

struct VersionRow {
    version: i64,
    aliases: String,
    stage: String,
    run_id: String,
    created: String,
    user: String,
    gate: String,
    deployed: String,
}

struct AliasRow {
    alias: String,
    version: String,
    previous: String,
    when: String,
    via: String,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    nav: Nav,
    name: String,
    description: String,
    tags: Vec<(String, String)>,
    versions: Vec<VersionRow>,
    history: Vec<AliasRow>,
    policy: Option<Vec<(String, String)>>,
}

fn tag<'a>(version: &'a ModelVersion, key: &str) -> Option<&'a str> {
    version
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

fn readable_model(viewer: &Viewer, name: &str) -> Result<(), Error> {
    if viewer.may_read(&Resource::registered_model(name)) {
        Ok(())
    } else {
        Err(Error::permission_denied(format!(
            "user '{}' may not read registered model '{name}'",
            viewer.principal.name
        )))
    }
}

pub async fn model(viewer: Viewer, Path(name): Path<String>) -> PageResult {
    let nav = viewer.nav("models");
    let fail = |e| PageError::new(&nav, e);
    readable_model(&viewer, &name).map_err(fail)?;
    let model = viewer.app.get_registered_model(&name).await.map_err(fail)?;
    let filter = format!("name = '{}'", name.replace('\'', "\\'"));
    let versions = viewer
        .app
        .search_model_versions(
            Some(&filter),
            &["version_number DESC".to_owned()],
            Some(200),
            None,
        )
        .await
        .map_err(fail)?;
    let versions = versions
        .items
        .iter()
        .map(|v| VersionRow {
            version: v.version,
            aliases: v
                .aliases
                .iter()
                .map(|a| format!("@{a}"))
                .collect::<Vec<_>>()
                .join(" "),
            stage: v.current_stage.as_str().to_owned(),
            run_id: v.run_id.clone().unwrap_or_default(),
            created: time(v.creation_timestamp),
            user: v.user_id.clone().unwrap_or_default(),
            gate: tag(v, "slipway.gate.status").unwrap_or_default().to_owned(),
            deployed: v
                .tags
                .iter()
                .filter_map(|t| {
                    t.key
                        .strip_prefix("slipway.deployment.")
                        .map(|d| format!("{d}: {}", t.value))
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let history = viewer
        .app
        .alias_history(&name, None)
        .await
        .map_err(fail)?
        .into_iter()
        .rev()
        .take(100)
        .map(|change| AliasRow {
            alias: change.alias,
            version: change
                .version
                .map_or_else(|| "(removed)".to_owned(), |v| format!("v{v}")),
            previous: change
                .previous_version
                .map_or_else(String::new, |v| format!("v{v}")),
            when: time(change.changed_at),
            via: change.via,
        })
        .collect();
    let policy = viewer.app.get_policy(&name).await.map_err(fail)?.map(|p| {
        let mut rows = vec![
            (
                "Protected aliases".to_owned(),
                p.protected_aliases.join(", "),
            ),
            (
                "Protected stages".to_owned(),
                p.protected_stages
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "Approvals required".to_owned(),
                p.required_approvals.to_string(),
            ),
            (
                "Checks on the source run".to_owned(),
                p.checks.unwrap_or_default(),
            ),
            (
                "Release gate required".to_owned(),
                if p.require_gate { "yes" } else { "no" }.to_owned(),
            ),
            (
                "Unapproved canary weight at most".to_owned(),
                format!("{}%", p.max_unapproved_weight),
            ),
        ];
        rows.push((
            "Set by".to_owned(),
            format!("{} at {}", p.updated_by, time(p.updated_at)),
        ));
        rows
    });
    Ok(page(&ModelPage {
        nav,
        description: model.description.clone().unwrap_or_default(),
        tags: model
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        name,
        versions,
        history,
        policy,
    }))
}

/// A node of the lineage graph, drawn as SVG on the server.
struct Node {
    x: i32,
    y: i32,
    kind: &'static str,
    label: String,
    detail: String,
    href: String,
}

struct Edge {
    x1: i32,
    y1: i32,
    x2: i32,
    y2: i32,
}

const NODE_W: i32 = 210;
const NODE_H: i32 = 46;
const COLUMN_GAP: i32 = 70;
const ROW_GAP: i32 = 16;

/// Lays the lineage out in columns, right to left: the version, its run (and the pipeline's
/// steps), then the data and code it came from.
fn lineage_graph(lineage: &Lineage) -> (Vec<Node>, Vec<Edge>, i32, i32) {
    let mut columns: Vec<Vec<(&'static str, String, String, String)>> = vec![Vec::new(); 4];
    let version = &lineage.version;
    columns[3].push((
        "model",
        format!("{} v{}", version.name, version.version),
        version
            .aliases
            .iter()
            .map(|a| format!("@{a}"))
            .collect::<Vec<_>>()
            .join(" "),
        format!("/models/{}", crate::view::encode(&version.name)),
    ));
    if let Some(run) = &lineage.run {
        columns[2].push((
            "run",
            if run.info.run_name.is_empty() {
                run.info.run_id.to_string()
            } else {
                run.info.run_name.clone()
            },
            format!(
                "run {}",
                &run.info.run_id.to_string()[..8.min(run.info.run_id.to_string().len())]
            ),
            format!("/runs/{}", run.info.run_id),
        ));
        for step in &lineage.steps {
            columns[1].push((
                "step",
                step.info.run_name.clone(),
                "pipeline step".to_owned(),
                format!("/runs/{}", step.info.run_id),
            ));
        }
        let commit = run
            .data
            .tags
            .iter()
            .find(|t| t.key == "mlflow.source.git.commit")
            .map(|t| t.value.clone());
        let source = run
            .data
            .tags
            .iter()
            .find(|t| t.key == "mlflow.source.name")
            .map(|t| t.value.clone());
        if commit.is_some() || source.is_some() {
            columns[0].push((
                "code",
                source
                    .as_deref()
                    .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
                    .unwrap_or_else(|| "code".to_owned()),
                commit.map_or_else(String::new, |c| format!("git {}", &c[..c.len().min(10)])),
                String::new(),
            ));
        }
    }
    for input in &lineage.datasets {
        columns[0].push((
            "data",
            input.dataset.name.clone(),
            format!("digest {}", input.dataset.digest),
            String::new(),
        ));
    }
    let columns: Vec<_> = columns.into_iter().filter(|c| !c.is_empty()).collect();
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(1) as i32;
    let height = tallest * (NODE_H + ROW_GAP) + ROW_GAP;
    let mut nodes = Vec::new();
    let mut placed: Vec<Vec<(i32, i32)>> = Vec::new();
    for (c, column) in columns.iter().enumerate() {
        let x = 10 + c as i32 * (NODE_W + COLUMN_GAP);
        let top = (height - column.len() as i32 * (NODE_H + ROW_GAP) + ROW_GAP) / 2;
        let mut at = Vec::new();
        for (r, (kind, label, detail, href)) in column.iter().enumerate() {
            let y = top + r as i32 * (NODE_H + ROW_GAP);
            at.push((x, y));
            nodes.push(Node {
                x,
                y,
                kind,
                label: label.clone(),
                detail: detail.clone(),
                href: href.clone(),
            });
        }
        placed.push(at);
    }
    // Every node of a column feeds every node of the next: data and code feed the run (or
    // its steps), the steps feed the pipeline's run, the run makes the version.
    let mut edges = Vec::new();
    for pair in placed.windows(2) {
        for &(x1, y1) in &pair[0] {
            for &(x2, y2) in &pair[1] {
                edges.push(Edge {
                    x1: x1 + NODE_W,
                    y1: y1 + NODE_H / 2,
                    x2,
                    y2: y2 + NODE_H / 2,
                });
            }
        }
    }
    let width = columns.len() as i32 * (NODE_W + COLUMN_GAP) - COLUMN_GAP + 20;
    (nodes, edges, width, height)
}

struct GateRow {
    id: i64,
    passed: bool,
    champion: String,
    rules: String,
    metrics: String,
    when: String,
    by: String,
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    nav: Nav,
    name: String,
    version: i64,
    source: String,
    run_id: String,
    aliases: String,
    tags: Vec<(String, String)>,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    width: i32,
    height: i32,
    gates: Vec<GateRow>,
    files: Vec<(String, String, String)>,
    promotions: Vec<PromotionRow>,
    retrain: String,
}

pub async fn version(viewer: Viewer, Path((name, version)): Path<(String, String)>) -> PageResult {
    let nav = viewer.nav("models");
    let fail = |e| PageError::new(&nav, e);
    readable_model(&viewer, &name).map_err(fail)?;
    let lineage = viewer.app.lineage(&name, &version).await.map_err(fail)?;
    let (nodes, edges, width, height) = lineage_graph(&lineage);
    let v = &lineage.version;
    let gates = lineage
        .gates
        .iter()
        .map(|g| GateRow {
            id: g.id,
            passed: g.passed,
            champion: g
                .champion_version
                .map_or_else(|| "—".to_owned(), |c| format!("v{c}")),
            rules: g.rules.join("; "),
            metrics: g
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={}", number(*v)))
                .collect::<Vec<_>>()
                .join(", "),
            when: time(g.created_at),
            by: g.created_by.clone(),
        })
        .collect();
    let files = lineage
        .content
        .as_ref()
        .map(|manifest| {
            manifest
                .files
                .iter()
                .map(|f| (f.path.clone(), f.size.to_string(), f.sha256.clone()))
                .collect()
        })
        .unwrap_or_default();
    let promotions = lineage.promotions.iter().map(promotion_row).collect();
    Ok(page(&VersionPage {
        nav,
        name: v.name.clone(),
        version: v.version,
        source: v.source.clone(),
        run_id: v.run_id.clone().unwrap_or_default(),
        aliases: v
            .aliases
            .iter()
            .map(|a| format!("@{a}"))
            .collect::<Vec<_>>()
            .join(" "),
        tags: v
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        nodes,
        edges,
        width,
        height,
        gates,
        files,
        promotions,
        retrain: lineage
            .retrain
            .as_ref()
            .map(|r| format!("retrain #{} of trigger {}", r.id, r.trigger))
            .unwrap_or_default(),
    }))
}

struct PromotionRow {
    id: i64,
    model: String,
    version: i64,
    target: String,
    requester: String,
    reason: String,
    state: String,
    created: String,
    decisions: Vec<String>,
}

fn promotion_row(request: &PromotionRequest) -> PromotionRow {
    PromotionRow {
        id: request.id,
        model: request.model_name.clone(),
        version: request.version,
        target: request.target.to_string(),
        requester: request.requester.clone(),
        reason: request.reason.clone(),
        state: request.state.as_str().to_owned(),
        created: time(request.created_at),
        decisions: request
            .decisions
            .iter()
            .map(|d| {
                format!(
                    "{} by {} at {}{}",
                    if d.approve { "approved" } else { "rejected" },
                    d.approver,
                    time(d.decided_at),
                    if d.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", d.reason)
                    }
                )
            })
            .collect(),
    }
}

/// A pending request with what approving it would change.
struct PendingView {
    row: PromotionRow,
    approvals: String,
    /// `@production: v3 → v5`.
    change: String,
    checks: Vec<(bool, String)>,
    /// Metrics of the candidate's run against the current holder's: (key, current, new).
    metrics: Vec<(String, String, String)>,
    may_decide: bool,
    own: bool,
}

#[derive(Template)]
#[template(path = "promotions.html")]
struct PromotionsPage {
    nav: Nav,
    pending: Vec<PendingView>,
    decided: Vec<PromotionRow>,
}

#[derive(Deserialize, Default)]
pub struct PromotionsQuery {
    model: Option<String>,
}

async fn run_metrics(viewer: &Viewer, version: &ModelVersion) -> Vec<(String, f64)> {
    let Some(run_id) = version
        .run_id
        .as_deref()
        .and_then(|r| slipway_core::tracking::RunId::parse(r).ok())
    else {
        return Vec::new();
    };
    match viewer.app.get_run(&run_id).await {
        Ok(run) if viewer.may_read(&Resource::experiment(run.info.experiment_id.to_string())) => {
            run.data
                .metrics
                .iter()
                .map(|m| (m.key.clone(), m.value))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Whether the viewer may read the experiment of the run that produced `version` (a version
/// without a run has nothing to hide).
async fn source_run_readable(viewer: &Viewer, version: &ModelVersion) -> bool {
    let Some(run_id) = version
        .run_id
        .as_deref()
        .and_then(|r| slipway_core::tracking::RunId::parse(r).ok())
    else {
        return true;
    };
    match viewer.app.get_run(&run_id).await {
        Ok(run) => viewer.may_read(&Resource::experiment(run.info.experiment_id.to_string())),
        Err(_) => false,
    }
}

async fn pending_view(viewer: &Viewer, request: &PromotionRequest) -> Result<PendingView, Error> {
    let app = &viewer.app;
    let candidate = app
        .get_model_version(&request.model_name, &request.version.to_string())
        .await?;
    let current = match &request.target {
        PromotionTarget::Alias(alias) => app
            .get_version_by_alias(&request.model_name, alias)
            .await
            .ok(),
        PromotionTarget::Stage(_) => None,
    };
    let change = format!(
        "{}: {} → v{}",
        request.target,
        current
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |c| format!("v{}", c.version)),
        request.version
    );
    let policy = app.get_policy(&request.model_name).await?;
    let mut checks = Vec::new();
    let mut required = 1;
    if let Some(policy) = &policy {
        required = policy.required_approvals;
        let outcome = app.evaluate_checks(policy, &candidate).await?;
        // The checks' detail quotes the source run's metrics: only for who may read its run.
        let detail = if source_run_readable(viewer, &candidate).await {
            outcome.detail
        } else {
            format!(
                "the policy's checks {} (the source run's experiment is not readable to you)",
                if outcome.passed { "pass" } else { "fail" }
            )
        };
        checks.push((outcome.passed, detail));
    }
    let new_metrics = run_metrics(viewer, &candidate).await;
    let old_metrics = match &current {
        Some(c) => run_metrics(viewer, c).await,
        None => Vec::new(),
    };
    let metrics = new_metrics
        .iter()
        .map(|(key, value)| {
            (
                key.clone(),
                old_metrics
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| "—".to_owned(), |(_, v)| number(*v)),
                number(*value),
            )
        })
        .collect();
    let own = request.requester == viewer.principal.name;
    Ok(PendingView {
        approvals: format!("{} of {required}", request.approvals()),
        change,
        checks,
        metrics,
        may_decide: viewer.principal.allows(
            Action::Approve,
            Some(&Resource::registered_model(&request.model_name)),
        ),
        own,
        row: promotion_row(request),
    })
}

pub async fn promotions(viewer: Viewer, Query(query): Query<PromotionsQuery>) -> PageResult {
    let nav = viewer.nav("promotions");
    let fail = |e| PageError::new(&nav, e);
    let model = query.model.as_deref().filter(|m| !m.is_empty());
    let all = viewer
        .app
        .list_promotions(model, None)
        .await
        .map_err(fail)?;
    let mut pending = Vec::new();
    let mut decided = Vec::new();
    for request in &all {
        if request.state == RequestState::Pending {
            pending.push(pending_view(&viewer, request).await.map_err(fail)?);
        } else if decided.len() < 100 {
            decided.push(promotion_row(request));
        }
    }
    Ok(page(&PromotionsPage {
        nav,
        pending,
        decided,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_nodes_sit_in_columns_joined_left_to_right() {
        let version = ModelVersion {
            name: "fraud".into(),
            version: 3,
            creation_timestamp: 0,
            last_updated_timestamp: 0,
            user_id: None,
            current_stage: slipway_core::registry::Stage::None,
            description: None,
            source: String::new(),
            run_id: None,
            run_link: None,
            status: "READY".into(),
            status_message: None,
            tags: Vec::new(),
            aliases: vec!["production".into()],
            model_id: None,
        };
        let lineage = Lineage {
            version,
            run: None,
            parents: Vec::new(),
            datasets: Vec::new(),
            promotions: Vec::new(),
            aliases: Vec::new(),
            content: None,
            gates: Vec::new(),
            steps: Vec::new(),
            retrain: None,
        };
        let (nodes, edges, width, _) = lineage_graph(&lineage);
        assert_eq!(nodes.len(), 1);
        assert!(edges.is_empty());
        assert_eq!(nodes[0].detail, "@production");
        assert_eq!(width, NODE_W + 20);
    }
}

struct CardView {
    card: slipway_app::model_card::ModelCard,
    registered: String,
    run_started: String,
    gates: Vec<(i64, bool, String, String, String)>,
    fairness: Vec<(i64, String, String)>,
    caveats: Vec<String>,
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardPage {
    nav: Nav,
    v: CardView,
}

/// A version's model card, as `slipway model-card` prints it (feature importance is measured
/// by the CLI on a dataset it reads, so the page says how to get it).
pub async fn card(viewer: Viewer, Path((name, version)): Path<(String, String)>) -> PageResult {
    let nav = viewer.nav("models");
    let fail = |e| PageError::new(&nav, e);
    readable_model(&viewer, &name).map_err(fail)?;
    let card = viewer.app.model_card(&name, &version).await.map_err(fail)?;
    let caveats = card.caveats();
    let v = CardView {
        registered: time(card.registered_at),
        run_started: card
            .run
            .as_ref()
            .map_or_else(String::new, |r| time(r.start_time)),
        gates: card
            .gates
            .iter()
            .map(|g| {
                (
                    g.id,
                    g.passed,
                    g.champion(),
                    g.rules.join("; "),
                    g.metrics_line(number),
                )
            })
            .collect(),
        fairness: card
            .gates
            .iter()
            .flat_map(|g| {
                g.fairness
                    .iter()
                    .map(move |(k, v)| (g.id, k.clone(), number(*v)))
            })
            .collect(),
        caveats,
        card,
    };
    Ok(page(&CardPage { nav, v }))
}
