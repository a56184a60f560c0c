//! Pipelines: steps declared in a YAML file, run in the order their inputs and outputs give,
//! each skipped when its cache key (command, parameters, declared environment, the content of
//! its inputs) has a stored result, whose outputs are then restored from a content-addressed
//! store.
//!
//! Module map:
//! - [`spec`]: the pipeline file, checked whole; `${params.NAME}` filled in.
//! - [`graph`]: the DAG the paths make (cycles and two writers of a path refused), its order,
//!   what depends on a step, and the Mermaid drawing.
//! - [`cache`]: file and folder digests, cache keys, the [`cache::CacheStore`] port and a
//!   local-folder store.
//! - [`gate`]: release gate rules (`f1 >= champion - 0.01`), the default rules and the
//!   verdicts, each explained with its figures.
//! - [`run`]: the executor: independent steps at once, retries, timeouts, a failed step's
//!   dependents skipped, an [`run::Observer`] for tracking and progress.
//! - [`argo`]: the pipeline as an Argo Workflows `Workflow`, one pod per step sharing the cache.
//!
//! The engine runs processes and reads files (that is its job) but knows no server: where
//! results are stored and how steps are tracked are the caller's, through the two traits.

pub mod argo;
pub mod cache;
pub mod error;
pub mod gate;
pub mod graph;
pub mod run;
pub mod spec;

pub use cache::{CacheStore, LocalCache, StepResult};
pub use error::PipelineError;
pub use graph::Graph;
pub use run::{Observer, Quiet, RunOptions, RunReport, StepReport, StepStatus, run};
pub use spec::PipelineSpec;
