//! slipway's domain: the types every other crate speaks, the rules that make them valid, and
//! the ports adapters implement. No IO happens here.
//!
//! Module map:
//! - [`audit`]: audit events, stored entries and the hash chain that verifies them.
//! - [`auth`]: users, roles, per-resource permissions, tokens and the access rule.
//! - [`error`]: the domain error enum every port and use-case returns.
//! - [`tracking`]: experiments, runs, metrics, params, tags, dataset inputs.
//! - [`logged_model`]: MLflow 3 LoggedModels.
//! - [`registry`]: registered models, versions, aliases, stages.
//! - [`validate`]: MLflow's limits and naming rules.
//! - [`search`]: the filter / order_by grammar and its AST.
//! - [`paging`]: page tokens and pages.
//! - [`artifact_path`]: artifact paths that cannot escape their root.
//! - [`promotion`]: promotion policies, requests, decisions and alias history.
//! - [`deployment`]: managed deployments, rollout strategies and their state machine, rollout
//!   analysis (windows, rules, Jensen-Shannon shift) and the circuit breaker.
//! - [`monitoring`]: a version's monitoring reference, windows of live traffic, their settings.
//! - [`alerting`]: alert rules, their conditions, alerts' states, silences, receivers.
//! - [`cluster`]: the leader's lease and the measurements relayed to it.
//! - [`delivery`]: deploy frequency, lead time, change failure rate, time to restore and cost
//!   per 1,000 inferences, computed from recorded deployment events, alerts and serving minutes.
//! - [`ports`]: `MetadataStore` and `ArtifactStore`.

pub mod alerting;
pub mod artifact_path;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod delivery;
pub mod deployment;
pub mod error;
pub mod gate;
pub mod keys;
pub mod logged_model;
pub mod monitoring;
pub mod paging;
pub mod ports;
pub mod promotion;
pub mod registry;
pub mod retrain;
pub mod search;
pub mod slo;
pub mod state;
pub mod tracking;
pub mod validate;

/// A configuration kept as one document (alert rules, retraining triggers), with the revision
/// a change is compare-and-set on and who applied it when. Revision 0: nothing applied yet.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Revisioned<T> {
    pub config: T,
    pub revision: i64,
    pub updated_ms: i64,
    pub updated_by: String,
}

impl<T> Revisioned<T> {
    /// The revision a change must find stored: the one the caller read (`asked`), else this
    /// one (the caller applies over whatever is there).
    pub fn expected(&self, asked: Option<i64>) -> Result<i64> {
        let expected = asked.unwrap_or(self.revision);
        if expected < 0 {
            return Err(Error::invalid(format!(
                "expected_revision must be 0 or more, got {expected}"
            )));
        }
        Ok(expected)
    }
}

pub use error::{Error, Result};
