//! The platform's state as code: one YAML document per object, the shape `slipway export
//! state` writes, so that a team can keep what it runs in git and review changes to it like
//! code.
//!
//! ```yaml
//! apiVersion: slipway/v1
//! kind: Deployment
//! metadata: {name: fraud}
//! spec: {model: "models:/fraud@production", settings: {log_sample: 0.1}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const API_VERSION: &str = "slipway/v1";

/// What a document describes. Documents are ordered by kind the way they depend on each other
/// (a deployment before its SLO, receivers before the rules that send to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A registered model's promotion policy; named by the model.
    Policy,
    /// A managed deployment: the model it serves and its serving settings.
    Deployment,
    /// A deployment's availability and latency objectives; named by the deployment.
    #[serde(rename = "SLO")]
    Slo,
    /// Where alert notifications go.
    AlertReceiver,
    /// How alerts are grouped and repeated (one, named `default`).
    AlertRoute,
    /// An alert rule.
    AlertRule,
    /// A retraining trigger.
    Trigger,
    /// A user's permission on one experiment or registered model.
    Permission,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Policy => "Policy",
            Kind::Deployment => "Deployment",
            Kind::Slo => "SLO",
            Kind::AlertReceiver => "AlertReceiver",
            Kind::AlertRoute => "AlertRoute",
            Kind::AlertRule => "AlertRule",
            Kind::Trigger => "Trigger",
            Kind::Permission => "Permission",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: Value,
}

impl Document {
    pub fn new(kind: Kind, name: impl Into<String>, spec: Value) -> Document {
        Document {
            api_version: API_VERSION.to_owned(),
            kind,
            metadata: Metadata { name: name.into() },
            spec,
        }
    }

    /// `Kind/name`, as plans and errors name a document.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.metadata.name)
    }
}

/// Documents in the order they are applied: by kind, then by name.
pub fn sort(documents: &mut [Document]) {
    documents.sort_by(|a, b| (a.kind, &a.metadata.name).cmp(&(b.kind, &b.metadata.name)));
}

/// What the latest apply made the server match: its documents, as they were applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    #[serde(default)]
    pub documents: Vec<Document>,
}

pub type StoredAppliedState = crate::Revisioned<AppliedState>;
