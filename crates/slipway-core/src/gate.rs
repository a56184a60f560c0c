//! Release gates the server runs: what a gate is given (both models' files, the holdout, the
//! rules), what it found, and the record a promotion policy trusts. The server measures, so
//! an editor cannot write a passing result; the policy decides which results count (its rules,
//! its pinned holdout, the champion of the moment), so an editor cannot choose an easy gate.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::promotion::PromotionPolicy;

/// Version tags only gates write (`slipway.gate.status`, `.id`, `.run_id`).
pub const GATE_TAG_PREFIX: &str = "slipway.gate.";
/// The experiment gate runs are recorded in.
pub const GATE_EXPERIMENT: &str = "slipway-gates";

/// Where a gate's rules came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulesSource {
    /// Given with the request.
    Request,
    /// The model's promotion policy's `gate_rules`.
    Policy,
    /// The documented defaults (no worse than the champion beyond a tolerance).
    Default,
}

impl RulesSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RulesSource::Request => "request",
            RulesSource::Policy => "policy",
            RulesSource::Default => "default",
        }
    }

    pub fn parse(raw: &str) -> Result<RulesSource> {
        match raw {
            "request" => Ok(RulesSource::Request),
            "policy" => Ok(RulesSource::Policy),
            "default" => Ok(RulesSource::Default),
            other => Err(crate::Error::invalid(format!(
                "unknown gate rules source '{other}'"
            ))),
        }
    }
}

/// One model as the gate runs it.
#[derive(Debug, Clone)]
pub struct GateModel {
    /// As asked (`models:/fraud@production`).
    pub uri: String,
    pub name: String,
    pub version: i64,
    pub onnx: bytes::Bytes,
    pub mlmodel: Option<String>,
    /// The reference profile's ranges per feature, when the version has a reference: the
    /// holdout's out-of-range share is measured against them.
    pub ranges: Option<BTreeMap<String, (f64, f64)>>,
}

/// Everything a gate needs, already read and checked by the server.
#[derive(Debug, Clone)]
pub struct GateJob {
    pub candidate: GateModel,
    pub champion: Option<GateModel>,
    pub data: bytes::Bytes,
    /// The holdout's file name (its extension says CSV or Parquet).
    pub data_name: String,
    pub label: String,
    pub sensitive: Option<String>,
    pub positive: String,
    /// `None`: the default rules.
    pub rules: Option<Vec<String>>,
    pub tolerance: f64,
    pub cpu_hour_price: f64,
    pub latency_rows: usize,
}

/// What the gate found.
#[derive(Debug, Clone)]
pub struct GateOutcome {
    pub passed: bool,
    /// The rules as judged (the defaults spelled out).
    pub rules: Vec<String>,
    pub candidate_metrics: BTreeMap<String, f64>,
    /// The whole report (every rule with its numbers, both models' figures), as JSON.
    pub report: serde_json::Value,
}

/// Measures models on a holdout and judges rules. The binary implements it with ONNX Runtime
/// and slipway-pipeline's rules; the app only reads, records and decides who may.
#[async_trait]
pub trait GateRunner: Send + Sync + 'static {
    async fn run(&self, job: GateJob) -> Result<GateOutcome>;
    /// Refuses rules that do not parse (a policy's, before it is stored).
    fn check_rules(&self, rules: &[String]) -> Result<()>;
}

/// A gate's result, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateRecord {
    pub id: i64,
    pub model_name: String,
    pub version: i64,
    pub champion_version: Option<i64>,
    pub passed: bool,
    pub data_uri: String,
    pub data_sha256: String,
    pub rules: Vec<String>,
    pub rules_source: RulesSource,
    pub run_id: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// The report as JSON text.
    pub report: String,
    pub created_at: i64,
    pub created_by: String,
}

/// A result to store; the store gives it an id and writes the version's gate tags with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGateRecord {
    pub model_name: String,
    pub version: i64,
    pub champion_version: Option<i64>,
    pub passed: bool,
    pub data_uri: String,
    pub data_sha256: String,
    pub rules: Vec<String>,
    pub rules_source: RulesSource,
    pub run_id: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub report: String,
    pub created_at: i64,
    pub created_by: String,
}

impl GateRecord {
    /// Why this result does not satisfy `policy`'s gate requirement, given the version that
    /// holds the policy's protected alias now (the champion to beat); `None` when it does.
    pub fn falls_short_of(
        &self,
        policy: &PromotionPolicy,
        champion: Option<i64>,
    ) -> Option<String> {
        match &policy.gate_rules {
            Some(rules) => {
                if self.rules_source != RulesSource::Policy || &self.rules != rules {
                    return Some(format!(
                        "gate {} judged other rules than the policy's gate_rules",
                        self.id
                    ));
                }
            }
            None => {
                if self.rules_source != RulesSource::Default {
                    return Some(format!(
                        "gate {} judged rules given with the request; the policy counts gates with the default rules",
                        self.id
                    ));
                }
            }
        }
        if let Some(data) = &policy.gate_data {
            if &self.data_uri != data {
                return Some(format!(
                    "gate {} ran on {}, not the policy's holdout {data}",
                    self.id, self.data_uri
                ));
            }
            if policy.gate_data_sha256.as_deref() != Some(self.data_sha256.as_str()) {
                return Some(format!(
                    "gate {} ran on {data} with other content (sha256 {}) than the policy pinned",
                    self.id, self.data_sha256
                ));
            }
        }
        if let Some(champion) = champion
            && champion != self.version
            && self.champion_version != Some(champion)
        {
            return Some(format!(
                "gate {} compared version {} with {}, and the champion is now version {champion}",
                self.id,
                self.version,
                match self.champion_version {
                    Some(v) => format!("version {v}"),
                    None => "no champion".to_owned(),
                }
            ));
        }
        if !self.passed {
            return Some(format!("gate {} failed", self.id));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PromotionPolicy {
        PromotionPolicy {
            model_name: "m".into(),
            protected_aliases: vec!["production".into()],
            protected_stages: vec![],
            required_approvals: 1,
            checks: None,
            max_unapproved_weight: 10,
            require_gate: true,
            gate_rules: None,
            gate_data: None,
            gate_data_sha256: None,
            updated_at: 0,
            updated_by: "admin".into(),
        }
    }

    fn record() -> GateRecord {
        GateRecord {
            id: 7,
            model_name: "m".into(),
            version: 3,
            champion_version: Some(2),
            passed: true,
            data_uri: "runs:/abc/holdout.csv".into(),
            data_sha256: "aa".into(),
            rules: vec!["f1 >= champion - 0.01".into()],
            rules_source: RulesSource::Default,
            run_id: None,
            metrics: BTreeMap::new(),
            report: "{}".into(),
            created_at: 0,
            created_by: "ci".into(),
        }
    }

    #[test]
    fn a_passed_default_gate_against_the_champion_counts() {
        assert_eq!(record().falls_short_of(&policy(), Some(2)), None);
        assert_eq!(record().falls_short_of(&policy(), None), None);
    }

    #[test]
    fn a_failed_gate_does_not_count() {
        let failed = GateRecord {
            passed: false,
            ..record()
        };
        assert!(
            failed
                .falls_short_of(&policy(), Some(2))
                .unwrap()
                .contains("failed")
        );
    }

    #[test]
    fn a_gate_against_an_older_champion_does_not_count() {
        let reason = record().falls_short_of(&policy(), Some(5)).unwrap();
        assert!(reason.contains("champion is now version 5"), "{reason}");
    }

    #[test]
    fn the_editors_own_rules_do_not_count() {
        let lax = GateRecord {
            rules: vec!["f1 >= 0".into()],
            rules_source: RulesSource::Request,
            ..record()
        };
        assert!(lax.falls_short_of(&policy(), Some(2)).is_some());
        let with_rules = PromotionPolicy {
            gate_rules: Some(vec!["f1 >= 0.9".into()]),
            ..policy()
        };
        assert!(lax.falls_short_of(&with_rules, Some(2)).is_some());
        let by_policy = GateRecord {
            rules: vec!["f1 >= 0.9".into()],
            rules_source: RulesSource::Policy,
            ..record()
        };
        assert_eq!(by_policy.falls_short_of(&with_rules, Some(2)), None);
    }

    #[test]
    fn only_the_pinned_holdout_counts() {
        let pinned = PromotionPolicy {
            gate_data: Some("runs:/abc/holdout.csv".into()),
            gate_data_sha256: Some("bb".into()),
            ..policy()
        };
        let reason = record().falls_short_of(&pinned, Some(2)).unwrap();
        assert!(reason.contains("other content"), "{reason}");
        let right = GateRecord {
            data_sha256: "bb".into(),
            ..record()
        };
        assert_eq!(right.falls_short_of(&pinned, Some(2)), None);
        let elsewhere = GateRecord {
            data_uri: "runs:/def/easy.csv".into(),
            data_sha256: "bb".into(),
            ..record()
        };
        assert!(elsewhere.falls_short_of(&pinned, Some(2)).is_some());
    }
}
