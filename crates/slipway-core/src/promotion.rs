//! Promotion policies and requests: which aliases and stages of a registered model only an
//! approved promotion may move, and the requests, approvals and alias history around them.

use std::fmt;

use crate::registry::Stage;
use crate::{Error, Result};

pub const DEFAULT_PROTECTED_ALIASES: [&str; 2] = ["production", "champion"];
/// The share of live traffic a candidate of a protected deployment may answer before its
/// promotion is approved: enough for a canary's analysis, small enough that an unapproved
/// model never serves most users.
pub const DEFAULT_MAX_UNAPPROVED_WEIGHT: u8 = 10;

/// A registered model's promotion policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionPolicy {
    pub model_name: String,
    pub protected_aliases: Vec<String>,
    pub protected_stages: Vec<Stage>,
    /// Approvals from users other than the requester.
    pub required_approvals: u32,
    /// A runs filter (the search grammar) the version's source run must match.
    pub checks: Option<String>,
    /// The largest percentage of a protected deployment's live traffic a candidate answers
    /// before its promotion is approved (0 to 100). A candidate that fails `checks` gets none.
    pub max_unapproved_weight: u8,
    /// A passed release gate (run by the server) must stand behind a promotion.
    pub require_gate: bool,
    /// The rules a gate must have judged to count; `None`: the default rules.
    pub gate_rules: Option<Vec<String>>,
    /// The holdout a gate must have run on (an artifact URI), and its content when the policy
    /// was set: a holdout changed since does not count.
    pub gate_data: Option<String>,
    pub gate_data_sha256: Option<String>,
    pub updated_at: i64,
    pub updated_by: String,
}

impl PromotionPolicy {
    pub fn protects(&self, target: &PromotionTarget) -> bool {
        match target {
            PromotionTarget::Alias(alias) => self.protected_aliases.iter().any(|a| a == alias),
            PromotionTarget::Stage(stage) => self.protected_stages.contains(stage),
        }
    }

    /// One line for error messages: what the policy demands.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} approval{}",
            self.required_approvals,
            if self.required_approvals == 1 {
                ""
            } else {
                "s"
            }
        );
        if let Some(checks) = &self.checks {
            text.push_str(&format!(" and source-run checks `{checks}`"));
        }
        if self.require_gate {
            text.push_str(" and a passed release gate");
            if let Some(data) = &self.gate_data {
                text.push_str(&format!(" on {data}"));
            }
        }
        text
    }

    /// The live traffic a candidate may answer before approval, given whether its source run
    /// passed the checks.
    pub fn unapproved_weight_cap(&self, checks_passed: bool) -> u8 {
        if checks_passed {
            self.max_unapproved_weight.min(100)
        } else {
            0
        }
    }
}

/// Where a promotion moves a version: an alias, or (MLflow's deprecated stages) a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromotionTarget {
    Alias(String),
    Stage(Stage),
}

impl PromotionTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            PromotionTarget::Alias(_) => "alias",
            PromotionTarget::Stage(_) => "stage",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            PromotionTarget::Alias(alias) => alias,
            PromotionTarget::Stage(stage) => stage.as_str(),
        }
    }

    pub fn from_parts(kind: &str, value: &str) -> Result<PromotionTarget> {
        match kind {
            "alias" => Ok(PromotionTarget::Alias(value.to_owned())),
            "stage" => Ok(PromotionTarget::Stage(Stage::parse(value)?)),
            other => Err(Error::invalid(format!(
                "unknown promotion target kind '{other}'"
            ))),
        }
    }
}

impl fmt::Display for PromotionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}'", self.kind(), self.value())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    /// Approved and applied: the alias (or stage) moved.
    Approved,
    Rejected,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
        }
    }

    pub fn parse(raw: &str) -> Result<RequestState> {
        match raw {
            "pending" => Ok(RequestState::Pending),
            "approved" => Ok(RequestState::Approved),
            "rejected" => Ok(RequestState::Rejected),
            other => Err(Error::invalid(format!(
                "unknown promotion state '{other}': use pending, approved or rejected"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub approver: String,
    pub approve: bool,
    pub reason: String,
    pub decided_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRequest {
    pub id: i64,
    pub model_name: String,
    pub version: i64,
    pub target: PromotionTarget,
    pub requester: String,
    pub reason: String,
    pub state: RequestState,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decisions: Vec<Decision>,
}

impl PromotionRequest {
    pub fn approvals(&self) -> usize {
        self.decisions.iter().filter(|d| d.approve).count()
    }
}

/// A request before the store numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPromotionRequest {
    pub model_name: String,
    pub version: i64,
    pub target: PromotionTarget,
    pub requester: String,
    pub reason: String,
    pub created_at: i64,
}

/// One move of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasChange {
    pub model_name: String,
    pub alias: String,
    /// `None`: the alias was deleted.
    pub version: Option<i64>,
    pub previous_version: Option<i64>,
    pub changed_at: i64,
    /// `set_alias`, `delete_alias`, `promotion:<id>` or `rollback`.
    pub via: String,
}
