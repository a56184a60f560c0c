//! The engine's one error type. Callers (the CLI, the server) turn it into their own.

/// Why a profile could not be built or a test could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonitorError {
    /// Two profiles of different kinds (numeric and categorical) were merged or compared.
    #[error("column kinds differ: {0} vs {1}")]
    KindMismatch(&'static str, &'static str),
    /// The statistic is undefined for this data (e.g. Anderson-Darling on one distinct value).
    #[error("{test} is undefined here: {reason}")]
    Undefined { test: &'static str, reason: String },
    /// A stattest name that the engine does not know, or that does not apply to the column kind.
    #[error("unknown or inapplicable stattest {name:?} for a {kind} column")]
    UnknownStattest { name: String, kind: &'static str },
    /// A configuration value out of its domain (alpha outside (0, 1), a zero capacity, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}
