//! A model version's card: what a reviewer, an auditor or the next team needs to know about
//! it, gathered from what the platform recorded (the registry, the source run, its datasets
//! and code, release gates with their fairness numbers, promotions, the deployments serving it
//! and their monitoring) plus what people wrote on the model (its description and the tags
//! `intended_use`, `owners` and `limitations`). `slipway model-card` adds global feature
//! importance measured on a dataset the reader gives, and renders it as Markdown or HTML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_core::Result;
use slipway_core::alerting::AlertState;
use slipway_core::registry::ModelVersion;

use crate::App;

/// Tags people set on a model or a version to say what the platform cannot know. A version's
/// tag wins over the model's.
pub const INTENDED_USE_TAG: &str = "intended_use";
pub const OWNERS_TAG: &str = "owners";
pub const LIMITATIONS_TAG: &str = "limitations";

/// Gate metrics that measure fairness across a sensitive column.
pub const FAIRNESS_METRICS: [&str; 3] = [
    "demographic_parity_difference",
    "equal_opportunity_difference",
    "disparate_impact_ratio",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub version: i64,
    pub aliases: Vec<String>,
    pub stage: String,
    pub description: Option<String>,
    pub intended_use: Option<String>,
    pub owners: Option<String>,
    pub limitations: Option<String>,
    pub registered_by: Option<String>,
    pub registered_at: i64,
    pub source: String,
    /// `sha256:...` of the version's files, when slipway stores them.
    pub content_digest: Option<String>,
    pub run: Option<CardRun>,
    pub datasets: Vec<CardDataset>,
    pub code: BTreeMap<String, String>,
    pub gates: Vec<CardGate>,
    pub promotions: Vec<String>,
    pub deployments: Vec<CardDeployment>,
    /// Other tags of the model and the version (not slipway's own).
    pub tags: BTreeMap<String, String>,
    /// Global feature importance, when `slipway model-card --data` measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<Importance>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardRun {
    pub run_id: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user: String,
    pub start_time: i64,
    pub status: String,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardDataset {
    pub name: String,
    pub digest: String,
    pub context: Option<String>,
    pub source_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardGate {
    pub id: i64,
    pub passed: bool,
    pub champion_version: Option<i64>,
    pub rules: Vec<String>,
    pub metrics: BTreeMap<String, f64>,
    /// The fairness metrics among `metrics`.
    pub fairness: BTreeMap<String, f64>,
    pub data_sha256: String,
    pub created_at: i64,
    pub created_by: String,
}

impl CardGate {
    /// `v3`, or `—` when the gate had no champion.
    pub fn champion(&self) -> String {
        self.champion_version
            .map_or_else(|| "—".to_owned(), |c| format!("v{c}"))
    }

    /// `f1=0.91, roc_auc=0.97`, each number written by `number`.
    pub fn metrics_line(&self, number: impl Fn(f64) -> String) -> String {
        self.metrics
            .iter()
            .map(|(k, v)| format!("{k}={}", number(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardDeployment {
    pub name: String,
    /// `stable` or `candidate`.
    pub serves_as: String,
    pub has_reference: bool,
    /// The latest monitoring window: when, rows, drifted features of how many, dataset drift.
    pub latest_window: Option<String>,
    pub dataset_drift: Option<bool>,
    pub firing_alerts: Vec<String>,
}

/// Permutation importance: how much the score drops when one feature's values are shuffled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub data: String,
    pub rows: u64,
    pub repeats: u32,
    /// `accuracy` for a classifier, `r2` for a regressor.
    pub metric: String,
    pub baseline: f64,
    /// By mean drop, largest first.
    pub features: Vec<FeatureImportance>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureImportance {
    pub feature: String,
    pub mean: f64,
    pub std: f64,
}

impl ModelCard {
    /// What the records cannot vouch for, said plainly.
    pub fn caveats(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.datasets.is_empty() {
            out.push(
                "The source run logged no dataset: the training data is not on record.".to_owned(),
            );
        }
        if !self.code.contains_key("git.commit") {
            out.push("No git commit is on record for the code that trained it.".to_owned());
        }
        if self.gates.is_empty() {
            out.push("No release gate has judged this version.".to_owned());
        } else if self.gates.iter().all(|g| g.fairness.is_empty()) {
            out.push("No gate measured fairness across a sensitive column.".to_owned());
        }
        if self.deployments.iter().any(|d| !d.has_reference) {
            out.push(
                "It serves without a monitoring reference, so its drift is not watched.".to_owned(),
            );
        }
        if let Some(importance) = &self.importance {
            out.push(format!(
                "Feature importance was measured on {} ({} rows) only; it says what the model relies on there, not why.",
                importance.data, importance.rows
            ));
        }
        out
    }
}

fn tag<'a>(tags: &'a [slipway_core::tracking::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
        .filter(|v| !v.trim().is_empty())
}

fn serves_as(
    deployment: &slipway_core::deployment::Deployment,
    version: &ModelVersion,
) -> Option<&'static str> {
    let number = version.version.to_string();
    if deployment.model_name != version.name {
        return None;
    }
    if deployment.stable_version == number {
        Some("stable")
    } else if deployment
        .active_rollout()
        .is_some_and(|r| r.candidate_version == number)
    {
        Some("candidate")
    } else {
        None
    }
}

impl App {
    /// The card of `name` version `version` (a number), from what the caller may read.
    pub async fn model_card(&self, name: &str, version: &str) -> Result<ModelCard> {
        self.visible_model(name)?;
        let lineage = self.lineage(name, version).await?;
        let model = self.get_registered_model(name).await?;
        let v = &lineage.version;
        let stated = |key: &str| {
            tag(&v.tags, key)
                .or_else(|| tag(&model.tags, key))
                .map(str::to_owned)
        };
        let run = lineage.run.as_ref().map(|run| CardRun {
            run_id: run.info.run_id.to_string(),
            run_name: run.info.run_name.clone(),
            experiment_id: run.info.experiment_id.to_string(),
            user: run.info.user_id.clone(),
            start_time: run.info.start_time,
            status: run.info.status.as_str().to_owned(),
            params: run
                .data
                .params
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            metrics: run
                .data
                .metrics
                .iter()
                .map(|m| (m.key.clone(), m.value))
                .collect(),
        });
        let code = lineage
            .run
            .as_ref()
            .map(|run| {
                run.data
                    .tags
                    .iter()
                    .filter_map(|t| {
                        t.key
                            .strip_prefix("mlflow.source.")
                            .map(|k| (k.to_owned(), t.value.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut deployments = Vec::new();
        let firing = self.stored_firing_alerts().await?;
        for deployment in self.list_deployments().await? {
            let Some(role) = serves_as(&deployment, v) else {
                continue;
            };
            let reference = self
                .store()
                .get_monitor_reference(name, v.version)
                .await?
                .is_some();
            let latest = self
                .monitor_windows(&deployment.name, None, 1)
                .await?
                .into_iter()
                .next();
            let dataset = latest
                .as_ref()
                .map(|w| &w.report["report"]["features"]["dataset"]);
            deployments.push(CardDeployment {
                serves_as: role.to_owned(),
                has_reference: reference,
                latest_window: latest.as_ref().map(|w| {
                    format!(
                        "{} rows of v{} ending at {} ms: {} of {} features drifted",
                        w.rows,
                        w.version,
                        w.end_ms,
                        w.report["report"]["features"]["dataset"]["drifted_columns"],
                        w.report["report"]["features"]["dataset"]["columns"]
                    )
                }),
                dataset_drift: dataset.and_then(|d| d["dataset_drift"].as_bool()),
                firing_alerts: firing
                    .iter()
                    .filter(|a| a.state == AlertState::Firing && a.deployment() == deployment.name)
                    .map(|a| a.name().to_owned())
                    .collect(),
                name: deployment.name,
            });
        }
        let own = |key: &str| {
            key.starts_with("slipway.")
                || key.starts_with("mlflow.")
                || [INTENDED_USE_TAG, OWNERS_TAG, LIMITATIONS_TAG].contains(&key)
        };
        let tags = model
            .tags
            .iter()
            .chain(&v.tags)
            .filter(|t| !own(&t.key))
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        Ok(ModelCard {
            name: v.name.clone(),
            version: v.version,
            aliases: v.aliases.clone(),
            stage: v.current_stage.as_str().to_owned(),
            description: v
                .description
                .clone()
                .filter(|d| !d.trim().is_empty())
                .or_else(|| model.description.clone().filter(|d| !d.trim().is_empty())),
            intended_use: stated(INTENDED_USE_TAG),
            owners: stated(OWNERS_TAG).or_else(|| stated("owner")),
            limitations: stated(LIMITATIONS_TAG),
            registered_by: v.user_id.clone(),
            registered_at: v.creation_timestamp,
            source: v.source.clone(),
            content_digest: lineage.content.as_ref().map(|c| c.digest()),
            run,
            datasets: lineage
                .datasets
                .iter()
                .map(|input| CardDataset {
                    name: input.dataset.name.clone(),
                    digest: input.dataset.digest.clone(),
                    context: input
                        .tags
                        .iter()
                        .find(|t| t.key == "mlflow.data.context")
                        .map(|t| t.value.clone()),
                    source_type: input.dataset.source_type.clone(),
                })
                .collect(),
            code,
            gates: lineage
                .gates
                .iter()
                .map(|g| CardGate {
                    id: g.id,
                    passed: g.passed,
                    champion_version: g.champion_version,
                    rules: g.rules.clone(),
                    fairness: g
                        .metrics
                        .iter()
                        .filter(|(k, _)| FAIRNESS_METRICS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                    metrics: g.metrics.clone(),
                    data_sha256: g.data_sha256.clone(),
                    created_at: g.created_at,
                    created_by: g.created_by.clone(),
                })
                .collect(),
            promotions: lineage
                .promotions
                .iter()
                .map(|p| {
                    format!(
                        "#{} to {} asked by {}: {}{}",
                        p.id,
                        p.target,
                        p.requester,
                        p.state.as_str(),
                        p.decisions
                            .iter()
                            .map(|d| format!(
                                ", {} by {}",
                                if d.approve { "approved" } else { "rejected" },
                                d.approver
                            ))
                            .collect::<String>()
                    )
                })
                .collect(),
            deployments,
            tags,
            importance: None,
        })
    }
}
