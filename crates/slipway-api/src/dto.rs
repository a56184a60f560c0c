//! Wire shapes of MLflow's REST API (protobuf JSON with snake_case names), built from domain
//! types by explicit conversions. The MLflow contract is frozen; the domain is free to change.
//!
//! Response structs borrow from the domain objects so a page of a thousand runs serialises
//! without copying every string.

use serde::{Deserialize, Serialize, Serializer};
use slipway_core::logged_model::LoggedModel;
use slipway_core::registry::{ModelVersion, RegisteredModel};
use slipway_core::tracking::{
    Dataset, DatasetInput, Experiment, KeyValue, Metric, ModelOutput, Run, RunInfo,
};

use crate::extract::{F64, I64, IdString};

/// MLflow encodes non-finite doubles as strings.
pub fn serialize_double<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if *value == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
    }
}

// ---------- shared request pieces ----------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyValueIn {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricIn {
    pub key: Option<String>,
    pub value: Option<F64>,
    pub timestamp: Option<I64>,
    pub step: Option<I64>,
    pub model_id: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
    /// Part of MLflow's `Metric` message; the run is the request's, so this copy is ignored.
    #[serde(rename = "run_id")]
    pub _run_id: Option<IdString>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetIn {
    pub name: Option<String>,
    pub digest: Option<String>,
    pub source_type: Option<String>,
    pub source: Option<String>,
    pub schema: Option<String>,
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetInputIn {
    #[serde(default)]
    pub tags: Vec<KeyValueIn>,
    pub dataset: Option<DatasetIn>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelInputIn {
    pub model_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelOutputIn {
    pub model_id: Option<String>,
    pub step: Option<I64>,
}

// ---------- responses ----------

#[derive(Serialize)]
pub struct KeyValueOut<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

pub fn key_values(items: &[KeyValue]) -> Vec<KeyValueOut<'_>> {
    items
        .iter()
        .map(|kv| KeyValueOut {
            key: &kv.key,
            value: &kv.value,
        })
        .collect()
}

#[derive(Serialize)]
pub struct ExperimentOut<'a> {
    pub experiment_id: String,
    pub name: &'a str,
    pub artifact_location: &'a str,
    pub lifecycle_stage: &'static str,
    pub last_update_time: i64,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut<'a>>,
}

impl<'a> From<&'a Experiment> for ExperimentOut<'a> {
    fn from(experiment: &'a Experiment) -> Self {
        ExperimentOut {
            experiment_id: experiment.experiment_id.to_string(),
            name: &experiment.name,
            artifact_location: &experiment.artifact_location,
            lifecycle_stage: experiment.lifecycle_stage.as_str(),
            last_update_time: experiment.last_update_time,
            creation_time: experiment.creation_time,
            tags: key_values(&experiment.tags),
        }
    }
}

#[derive(Serialize)]
pub struct RunInfoOut<'a> {
    pub run_id: &'a str,
    /// Deprecated but still read by clients.
    pub run_uuid: &'a str,
    pub run_name: &'a str,
    pub experiment_id: String,
    pub user_id: &'a str,
    pub status: &'static str,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub artifact_uri: &'a str,
    pub lifecycle_stage: &'static str,
}

impl<'a> From<&'a RunInfo> for RunInfoOut<'a> {
    fn from(info: &'a RunInfo) -> Self {
        RunInfoOut {
            run_id: info.run_id.as_str(),
            run_uuid: info.run_id.as_str(),
            run_name: &info.run_name,
            experiment_id: info.experiment_id.to_string(),
            user_id: &info.user_id,
            status: info.status.as_str(),
            start_time: info.start_time,
            end_time: info.end_time,
            artifact_uri: &info.artifact_uri,
            lifecycle_stage: info.lifecycle_stage.as_str(),
        }
    }
}

#[derive(Serialize)]
pub struct MetricOut<'a> {
    pub key: &'a str,
    #[serde(serialize_with = "serialize_double")]
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
}

impl<'a> From<&'a Metric> for MetricOut<'a> {
    fn from(metric: &'a Metric) -> Self {
        MetricOut {
            key: &metric.key,
            value: metric.value,
            timestamp: metric.timestamp,
            step: metric.step,
            model_id: metric.model_id.as_deref(),
            dataset_name: metric.dataset_name.as_deref(),
            dataset_digest: metric.dataset_digest.as_deref(),
            run_id: metric.run_id.as_deref(),
        }
    }
}

#[derive(Serialize, Default)]
pub struct RunDataOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValueOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut<'a>>,
}

#[derive(Serialize)]
pub struct DatasetOut<'a> {
    pub name: &'a str,
    pub digest: &'a str,
    pub source_type: &'a str,
    pub source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a str>,
}

impl<'a> From<&'a Dataset> for DatasetOut<'a> {
    fn from(dataset: &'a Dataset) -> Self {
        DatasetOut {
            name: &dataset.name,
            digest: &dataset.digest,
            source_type: &dataset.source_type,
            source: &dataset.source,
            schema: dataset.schema.as_deref(),
            profile: dataset.profile.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub struct DatasetInputOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut<'a>>,
    pub dataset: DatasetOut<'a>,
}

impl<'a> From<&'a DatasetInput> for DatasetInputOut<'a> {
    fn from(input: &'a DatasetInput) -> Self {
        DatasetInputOut {
            tags: key_values(&input.tags),
            dataset: (&input.dataset).into(),
        }
    }
}

#[derive(Serialize)]
pub struct ModelIdOut<'a> {
    pub model_id: &'a str,
}

#[derive(Serialize)]
pub struct ModelOutputOut<'a> {
    pub model_id: &'a str,
    pub step: i64,
}

impl<'a> From<&'a ModelOutput> for ModelOutputOut<'a> {
    fn from(output: &'a ModelOutput) -> Self {
        ModelOutputOut {
            model_id: &output.model_id,
            step: output.step,
        }
    }
}

#[derive(Serialize, Default)]
pub struct RunInputsOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInputOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_inputs: Vec<ModelIdOut<'a>>,
}

#[derive(Serialize, Default)]
pub struct RunOutputsOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_outputs: Vec<ModelOutputOut<'a>>,
}

#[derive(Serialize)]
pub struct RunOut<'a> {
    pub info: RunInfoOut<'a>,
    pub data: RunDataOut<'a>,
    pub inputs: RunInputsOut<'a>,
    pub outputs: RunOutputsOut<'a>,
}

impl<'a> From<&'a Run> for RunOut<'a> {
    fn from(run: &'a Run) -> Self {
        RunOut {
            info: (&run.info).into(),
            data: RunDataOut {
                metrics: run.data.metrics.iter().map(MetricOut::from).collect(),
                params: key_values(&run.data.params),
                tags: key_values(&run.data.tags),
            },
            inputs: RunInputsOut {
                dataset_inputs: run
                    .inputs
                    .dataset_inputs
                    .iter()
                    .map(DatasetInputOut::from)
                    .collect(),
                model_inputs: run
                    .inputs
                    .model_inputs
                    .iter()
                    .map(|model_id| ModelIdOut { model_id })
                    .collect(),
            },
            outputs: RunOutputsOut {
                model_outputs: run.outputs.iter().map(ModelOutputOut::from).collect(),
            },
        }
    }
}

#[derive(Serialize)]
pub struct LoggedModelInfoOut<'a> {
    pub model_id: &'a str,
    pub experiment_id: String,
    pub name: &'a str,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub artifact_uri: &'a str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<RegistrationOut<'a>>,
}

#[derive(Serialize)]
pub struct RegistrationOut<'a> {
    pub name: &'a str,
    pub version: String,
}

#[derive(Serialize)]
pub struct LoggedModelDataOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValueOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricOut<'a>>,
}

#[derive(Serialize)]
pub struct LoggedModelOut<'a> {
    pub info: LoggedModelInfoOut<'a>,
    pub data: LoggedModelDataOut<'a>,
}

impl<'a> From<&'a LoggedModel> for LoggedModelOut<'a> {
    fn from(model: &'a LoggedModel) -> Self {
        LoggedModelOut {
            info: LoggedModelInfoOut {
                model_id: &model.model_id,
                experiment_id: model.experiment_id.to_string(),
                name: &model.name,
                creation_timestamp_ms: model.creation_timestamp,
                last_updated_timestamp_ms: model.last_updated_timestamp,
                artifact_uri: &model.artifact_uri,
                status: model.status.as_str(),
                model_type: model.model_type.as_deref(),
                source_run_id: model.source_run_id.as_deref(),
                status_message: model.status_message.as_deref(),
                tags: key_values(&model.tags),
                registrations: model
                    .registrations
                    .iter()
                    .map(|(name, version)| RegistrationOut {
                        name,
                        version: version.to_string(),
                    })
                    .collect(),
            },
            data: LoggedModelDataOut {
                params: key_values(&model.params),
                metrics: model.metrics.iter().map(MetricOut::from).collect(),
            },
        }
    }
}

#[derive(Serialize)]
pub struct ModelVersionOut<'a> {
    pub name: &'a str,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    pub current_stage: &'static str,
    pub description: &'a str,
    pub source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut<'a>>,
    pub run_link: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<&'a str>,
}

impl<'a> From<&'a ModelVersion> for ModelVersionOut<'a> {
    fn from(version: &'a ModelVersion) -> Self {
        ModelVersionOut {
            name: &version.name,
            version: version.version.to_string(),
            creation_timestamp: version.creation_timestamp,
            last_updated_timestamp: version.last_updated_timestamp,
            user_id: version.user_id.as_deref(),
            current_stage: version.current_stage.as_str(),
            description: version.description.as_deref().unwrap_or(""),
            source: &version.source,
            run_id: version.run_id.as_deref().filter(|id| !id.is_empty()),
            status: &version.status,
            status_message: version.status_message.as_deref(),
            tags: key_values(&version.tags),
            run_link: version.run_link.as_deref().unwrap_or(""),
            aliases: version.aliases.iter().map(String::as_str).collect(),
            model_id: version.model_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub struct AliasOut<'a> {
    pub alias: &'a str,
    pub version: String,
}

#[derive(Serialize)]
pub struct RegisteredModelOut<'a> {
    pub name: &'a str,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersionOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<AliasOut<'a>>,
}

impl<'a> From<&'a RegisteredModel> for RegisteredModelOut<'a> {
    fn from(model: &'a RegisteredModel) -> Self {
        RegisteredModelOut {
            name: &model.name,
            creation_timestamp: model.creation_timestamp,
            last_updated_timestamp: model.last_updated_timestamp,
            user_id: model.user_id.as_deref(),
            description: model.description.as_deref(),
            // MLflow leaves aliases off `latest_versions` (mlflow#9952); we include them.
            latest_versions: model
                .latest_versions
                .iter()
                .map(ModelVersionOut::from)
                .collect(),
            tags: key_values(&model.tags),
            aliases: model
                .aliases
                .iter()
                .map(|alias| AliasOut {
                    alias: &alias.alias,
                    version: alias.version.to_string(),
                })
                .collect(),
        }
    }
}
