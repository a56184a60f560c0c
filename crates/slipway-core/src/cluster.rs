//! Several servers on one metadata store: the lease that elects the one process doing work that
//! must happen once (the rollout controller, drift windows, alert evaluation, retraining
//! schedules), and the measurements other processes relay to it through the store.

use serde::{Deserialize, Serialize};

/// The lease every server competes for; its holder runs the work that must happen once.
pub const LEADER_LEASE: &str = "leader";

/// Topics whose generation moves when something servers cache changes.
pub const GENERATION_MONITOR_REFERENCES: &str = "monitor_references";

/// A lease as the store holds it after an attempt to take or renew it. Times are the database's
/// clock, so servers with skewed clocks agree on who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Moves each time the lease changes hands (never on a renewal).
    pub epoch: i64,
    pub acquired_ms: i64,
    pub renewed_ms: i64,
    pub expires_ms: i64,
    /// The database's time when this was read.
    pub now_ms: i64,
}

impl Lease {
    pub fn held_by(&self, holder: &str) -> bool {
        self.holder == holder && self.expires_ms > self.now_ms
    }
}

/// What a data plane measured, received by a server that does not lead, queued in the store
/// for the leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedReport {
    pub id: i64,
    pub created_ms: i64,
    pub deployment: String,
    /// Who measured it: `server` or `replica:NAME`.
    pub source: String,
    /// The measurement as JSON (the app layer's relay format).
    pub body: String,
}
