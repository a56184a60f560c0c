//! Release gates run by the server: both models read from the registry (digest-checked), the
//! holdout read from the artifact store, the measuring and judging handed to the GateRunner,
//! and the result recorded as a run, a gate record and the version's tags, audited. A promotion
//! policy that requires a gate trusts only these records, judged by its own rules on its own
//! holdout against the champion of the moment (`GateRecord::falls_short_of`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_core::artifact_path::ArtifactPath;
use slipway_core::auth::ResourceKind;
use slipway_core::gate::{
    GATE_EXPERIMENT, GateJob, GateModel, GateRecord, GateRunner, NewGateRecord, RulesSource,
};
use slipway_core::promotion::PromotionPolicy;
use slipway_core::registry::ModelVersion;
use slipway_core::tracking::{Batch, KeyValue, Metric, RunId, RunStatus, RunUpdate};
use slipway_core::{Error, Result};

use crate::deployments::ModelRef;
use crate::{App, now_ms};

/// The largest holdout a gate reads (it is held in memory while both models run on it).
pub const MAX_HOLDOUT_BYTES: u64 = 256 * 1024 * 1024;
/// Rows timed one at a time, at most: each is a model call on the server's CPU.
pub const MAX_LATENCY_ROWS: usize = 2_000;
/// Gate results kept in a lineage.
const LINEAGE_GATES: usize = 20;

/// A gate as asked for.
#[derive(Debug, Clone, Default)]
pub struct GateRequest {
    pub candidate: String,
    /// The champion; `None`: the version holding the policy's protected alias, if any.
    pub against: Option<String>,
    /// An artifact URI (`runs:/ID/PATH`, `mlflow-artifacts:/PATH`); `None`: the policy's.
    pub data: Option<String>,
    pub label: String,
    pub sensitive: Option<String>,
    pub positive: Option<String>,
    /// `None`: the policy's gate rules, else the defaults.
    pub rules: Option<Vec<String>>,
    pub tolerance: Option<f64>,
    pub cpu_hour_price: Option<f64>,
    pub latency_rows: Option<usize>,
}

/// A recorded gate and its report.
#[derive(Debug, Clone)]
pub struct GateDone {
    pub record: GateRecord,
    pub report: serde_json::Value,
}

/// Each numeric feature's range on a version's reference: what a gate checks a holdout's
/// values against.
pub fn reference_ranges(
    reference: &slipway_core::monitoring::MonitorReference,
) -> BTreeMap<String, (f64, f64)> {
    use slipway_monitor::live::{Schema, Summary};
    match (
        serde_json::from_value::<Schema>(reference.schema.clone()),
        serde_json::from_value::<Summary>(reference.summary.clone()),
    ) {
        (Ok(schema), Ok(summary)) => schema
            .features
            .iter()
            .zip(&summary.features)
            .filter_map(|(feature, profile)| match profile {
                slipway_monitor::ColumnProfile::Numeric(numeric) => {
                    numeric.range().map(|range| (feature.name.clone(), range))
                }
                slipway_monitor::ColumnProfile::Categorical(_) => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

impl App {
    /// The same application, able to run release gates.
    pub fn with_gate_runner(mut self, runner: Arc<dyn GateRunner>) -> App {
        self.gates = Some(runner);
        self
    }

    fn gate_runner(&self) -> Result<&Arc<dyn GateRunner>> {
        self.gates.as_ref().ok_or_else(|| {
            Error::invalid(
                "this server cannot run release gates: it has no ONNX Runtime (start it with ORT_DYLIB_PATH set, see scripts/fetch-onnxruntime.sh)",
            )
        })
    }

    /// Refuses rules a gate could not judge (a policy's, before it is stored).
    pub(crate) fn check_gate_rules(&self, rules: &[String]) -> Result<()> {
        if rules.is_empty() {
            return Err(Error::invalid(
                "gate_rules is empty: leave it out for the default rules",
            ));
        }
        self.gate_runner()?.check_rules(rules)
    }

    /// The version a model URI names now.
    async fn gate_version(&self, uri: &str) -> Result<ModelVersion> {
        let model = ModelRef::parse(uri)?;
        self.visible_model(model.model_name())?;
        match &model {
            ModelRef::Alias { name, alias } => self.get_version_by_alias(name, alias).await,
            ModelRef::Version { name, version } => self.get_model_version(name, version).await,
        }
    }

    /// The version holding the first of the policy's protected aliases that is set: the
    /// champion a candidate must be gated against.
    pub(crate) async fn policy_champion(&self, policy: &PromotionPolicy) -> Result<Option<i64>> {
        let model = self.store.get_registered_model(&policy.model_name).await?;
        Ok(policy.protected_aliases.iter().find_map(|alias| {
            model
                .aliases
                .iter()
                .find(|set| &set.alias == alias)
                .map(|set| set.version)
        }))
    }

    /// Reads an artifact a gate runs on, at most MAX_HOLDOUT_BYTES, with its SHA-256.
    pub(crate) async fn read_holdout(&self, uri: &str) -> Result<(bytes::Bytes, String)> {
        let path = self.holdout_path(uri).await?;
        let object = self.artifacts.get(&path).await?.ok_or_else(|| {
            Error::invalid(format!(
                "the holdout {uri} does not exist in the artifact store"
            ))
        })?;
        if object.size > MAX_HOLDOUT_BYTES {
            return Err(Error::invalid(format!(
                "the holdout {uri} is {} bytes; a gate reads at most {MAX_HOLDOUT_BYTES} (sample it)",
                object.size
            )));
        }
        let mut body = object.body;
        let mut bytes = Vec::with_capacity(object.size as usize);
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::internal("reading a holdout", e))?;
            if (bytes.len() + chunk.len()) as u64 > MAX_HOLDOUT_BYTES {
                return Err(Error::invalid(format!(
                    "the holdout {uri} grew past {MAX_HOLDOUT_BYTES} bytes while it was read"
                )));
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes.into(), hex::encode(hasher.finalize())))
    }

    /// Where a holdout URI points in the artifact store, refusing what the caller may not read.
    async fn holdout_path(&self, uri: &str) -> Result<ArtifactPath> {
        if let Some(rest) = uri.strip_prefix("runs:/") {
            let (run_id, sub) = rest.split_once('/').ok_or_else(|| {
                Error::invalid(format!(
                    "'{uri}': write runs:/RUN_ID/PATH to the holdout file"
                ))
            })?;
            let run = self.store.get_run(&RunId::parse(run_id)?).await?;
            if self.hides(
                ResourceKind::Experiment,
                &run.info.experiment_id.to_string(),
            ) {
                return Err(Error::permission_denied(format!(
                    "user '{}' has NO_PERMISSIONS on the experiment of run {run_id}",
                    self.caller.actor
                )));
            }
            let root = crate::artifacts::proxied_path(&run.info.artifact_uri)?;
            return root.join(sub);
        }
        if uri.starts_with("mlflow-artifacts:") {
            let path = crate::artifacts::proxied_path(uri)?;
            let experiment = path.as_str().split('/').next().unwrap_or_default();
            if self.hides(ResourceKind::Experiment, experiment) {
                return Err(Error::permission_denied(format!(
                    "user '{}' has NO_PERMISSIONS on experiment {experiment}",
                    self.caller.actor
                )));
            }
            return Ok(path);
        }
        Err(Error::invalid(format!(
            "the holdout '{uri}' is not in this server's artifact store: give runs:/RUN_ID/PATH or mlflow-artifacts:/PATH (`slipway gate --data FILE` uploads a local file first)"
        )))
    }

    async fn gate_model(&self, uri: &str, version: &ModelVersion) -> Result<GateModel> {
        let files = self
            .model_files(&version.name, &version.version.to_string())
            .await?;
        let ranges = self
            .store
            .get_monitor_reference(&version.name, version.version)
            .await?
            .map(|reference| reference_ranges(&reference));
        Ok(GateModel {
            uri: uri.to_owned(),
            name: version.name.clone(),
            version: version.version,
            onnx: files.onnx,
            mlmodel: files.mlmodel,
            ranges,
        })
    }

    /// Runs a release gate here and records it.
    pub async fn run_gate(&self, request: GateRequest) -> Result<GateDone> {
        let runner = self.gate_runner()?.clone();
        if request.label.trim().is_empty() {
            return Err(Error::invalid(
                "label is required: the holdout's column of true labels",
            ));
        }
        let candidate = self.gate_version(&request.candidate).await?;
        let policy = self.store.get_policy(&candidate.name).await?;
        let champion = match &request.against {
            Some(uri) => Some((uri.clone(), self.gate_version(uri).await?)),
            None => match &policy {
                Some(policy) => match self.policy_champion(policy).await? {
                    Some(version) => {
                        let uri = format!("models:/{}/{version}", candidate.name);
                        let champion = self.gate_version(&uri).await?;
                        Some((uri, champion))
                    }
                    None => None,
                },
                None => None,
            },
        };
        let (rules, rules_source) = match (
            &request.rules,
            policy.as_ref().and_then(|p| p.gate_rules.clone()),
        ) {
            (Some(rules), _) => (Some(rules.clone()), RulesSource::Request),
            (None, Some(rules)) => (Some(rules), RulesSource::Policy),
            (None, None) => (None, RulesSource::Default),
        };
        if let Some(rules) = &rules {
            runner.check_rules(rules)?;
        }
        let data_uri = match (
            &request.data,
            policy.as_ref().and_then(|p| p.gate_data.clone()),
        ) {
            (Some(data), _) => data.clone(),
            (None, Some(data)) => data,
            (None, None) => {
                return Err(Error::invalid(
                    "data is required: the holdout as runs:/RUN_ID/PATH or mlflow-artifacts:/PATH (the model's policy pins none)",
                ));
            }
        };
        let tolerance = request.tolerance.unwrap_or(0.01);
        let price = request.cpu_hour_price.unwrap_or(0.05);
        if !tolerance.is_finite() || tolerance < 0.0 || !price.is_finite() || price < 0.0 {
            return Err(Error::invalid(
                "tolerance and cpu_hour_price are numbers of at least 0",
            ));
        }
        let latency_rows = request.latency_rows.unwrap_or(200);
        if latency_rows == 0 || latency_rows > MAX_LATENCY_ROWS {
            return Err(Error::invalid(format!(
                "latency_rows is between 1 and {MAX_LATENCY_ROWS}"
            )));
        }
        let data_name = data_uri.rsplit('/').next().unwrap_or_default().to_owned();
        if !(data_name.ends_with(".csv") || data_name.ends_with(".parquet")) {
            return Err(Error::invalid(format!(
                "the holdout {data_uri} is neither .csv nor .parquet"
            )));
        }

        // One gate at a time: each holds a holdout and two models in memory and keeps cores
        // busy; the next waits its turn.
        let _turn = self.gate_turn.lock().await;
        let (data, data_sha256) = self.read_holdout(&data_uri).await?;
        let job = GateJob {
            candidate: self.gate_model(&request.candidate, &candidate).await?,
            champion: match &champion {
                Some((uri, version)) => Some(self.gate_model(uri, version).await?),
                None => None,
            },
            data,
            data_name,
            label: request.label.clone(),
            sensitive: request.sensitive.clone(),
            positive: request.positive.clone().unwrap_or_else(|| "1".to_owned()),
            rules,
            tolerance,
            cpu_hour_price: price,
            latency_rows,
        };
        let outcome = runner.run(job).await?;

        let run_id = self
            .record_gate_run(
                &request.candidate,
                &candidate,
                &champion,
                &data_uri,
                &outcome,
            )
            .await?;
        let record = NewGateRecord {
            model_name: candidate.name.clone(),
            version: candidate.version,
            champion_version: champion
                .as_ref()
                .filter(|(_, c)| c.name == candidate.name)
                .map(|(_, c)| c.version),
            passed: outcome.passed,
            data_uri: data_uri.clone(),
            data_sha256: data_sha256.clone(),
            rules: outcome.rules.clone(),
            rules_source,
            run_id: Some(run_id.to_string()),
            metrics: outcome.candidate_metrics.clone(),
            report: outcome.report.to_string(),
            created_at: now_ms(),
            created_by: self.caller.actor.clone(),
        };
        let record = self
            .audited(
                "gates.record",
                format!("registered_model:{}", candidate.name),
                json!({
                    "version": candidate.version,
                    "champion": record.champion_version,
                    "passed": record.passed,
                    "data": data_uri,
                    "data_sha256": data_sha256,
                    "rules_source": rules_source.as_str(),
                    "run_id": run_id.to_string(),
                }),
            )
            .put_gate(record)
            .await?;
        Ok(GateDone {
            record,
            report: outcome.report,
        })
    }

    /// A run in `slipway-gates` with the candidate's figures, the verdict and the report.
    async fn record_gate_run(
        &self,
        candidate_uri: &str,
        candidate: &ModelVersion,
        champion: &Option<(String, ModelVersion)>,
        data_uri: &str,
        outcome: &slipway_core::gate::GateOutcome,
    ) -> Result<RunId> {
        let experiment = match self.store.get_experiment_by_name(GATE_EXPERIMENT).await {
            Ok(experiment) => experiment.experiment_id,
            Err(Error::NotFound(_)) => {
                match self
                    .create_experiment(GATE_EXPERIMENT, None, Vec::new())
                    .await
                {
                    Ok(id) => id,
                    // Another gate created it meanwhile.
                    Err(Error::AlreadyExists(_)) => {
                        self.store
                            .get_experiment_by_name(GATE_EXPERIMENT)
                            .await?
                            .experiment_id
                    }
                    Err(error) => return Err(error),
                }
            }
            Err(error) => return Err(error),
        };
        let started = now_ms();
        let status = if outcome.passed { "passed" } else { "failed" };
        let tag = |key: &str, value: String| KeyValue {
            key: key.to_owned(),
            value,
        };
        let run = self
            .create_run(
                experiment,
                Some(self.caller.actor.clone()),
                Some(format!("gate {candidate_uri}")),
                Some(started),
                vec![
                    tag("slipway.gate.status", status.to_owned()),
                    tag("slipway.gate.model", candidate.name.clone()),
                    tag("slipway.gate.version", candidate.version.to_string()),
                ],
            )
            .await?;
        let run_id = run.info.run_id.clone();
        let mut params = vec![
            tag(
                "candidate",
                format!("models:/{}/{}", candidate.name, candidate.version),
            ),
            tag("data", data_uri.to_owned()),
        ];
        if let Some((uri, version)) = champion {
            params.push(tag(
                "champion",
                format!("{uri} (version {})", version.version),
            ));
        }
        let metrics = outcome
            .candidate_metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(key, value)| Metric::new(key.clone(), *value, started, 0))
            .collect();
        self.log_batch(
            &run_id,
            Batch {
                metrics,
                params,
                tags: vec![tag(
                    "mlflow.note.content",
                    format!("release gate {status}: {}", outcome.rules.join("; ")),
                )],
            },
        )
        .await?;
        self.update_run(
            &run_id,
            RunUpdate {
                status: Some(RunStatus::Finished),
                end_time: Some(now_ms()),
                run_name: None,
            },
        )
        .await?;
        Ok(run_id)
    }

    /// A model's gate results (of one version, or all), newest first.
    pub async fn list_gates(
        &self,
        name: &str,
        version: Option<&str>,
        limit: usize,
    ) -> Result<Vec<GateRecord>> {
        self.visible_model(name)?;
        let version = version
            .map(slipway_core::validate::version_number)
            .transpose()?;
        self.store.list_gates(name, version, limit).await
    }

    pub(crate) async fn lineage_gates(&self, name: &str, version: i64) -> Result<Vec<GateRecord>> {
        self.store
            .list_gates(name, Some(version), LINEAGE_GATES)
            .await
    }

    /// Whether a passed gate the policy trusts stands behind `version`: the newest record that
    /// judged the policy's rules on its holdout against today's champion decides.
    pub(crate) async fn gate_requirement(
        &self,
        policy: &PromotionPolicy,
        version: &ModelVersion,
    ) -> Result<(bool, String)> {
        let champion = self.policy_champion(policy).await?;
        let records = self
            .store
            .list_gates(&policy.model_name, Some(version.version), 1000)
            .await?;
        let mut nearest = None;
        for record in &records {
            let judged = GateRecord {
                passed: true,
                ..record.clone()
            };
            if judged.falls_short_of(policy, champion).is_none() {
                return Ok(match record.falls_short_of(policy, champion) {
                    None => (true, format!("gate {} passed", record.id)),
                    Some(reason) => (false, reason),
                });
            }
            if nearest.is_none() {
                nearest = record.falls_short_of(policy, champion);
            }
        }
        Ok((
            false,
            match nearest {
                Some(reason) => format!("no gate the policy counts: {reason}"),
                None => format!(
                    "version {} has no release gate (run `slipway gate models:/{}/{} --data FILE --label COL`)",
                    version.version, version.name, version.version
                ),
            },
        ))
    }
}
