//! The pipeline engine's errors: a mistake in the pipeline or the command line, and the
//! filesystem or cache failing.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipelineError {
    /// Something the user wrote is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}
