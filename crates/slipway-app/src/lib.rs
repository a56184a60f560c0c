//! Use-cases over the ports. Every entry point (the HTTP API today, the CLI and the UI later)
//! goes through here, so MLflow's limits, defaults and naming rules hold whoever calls.
//!
//! Module map:
//! - [`tracking`]: experiments, runs, logging, metric history, search.
//! - [`logged_models`]: MLflow 3 LoggedModels.
//! - [`registry`]: registered models, versions, aliases, stages.
//! - [`artifacts`]: the artifact proxy and run artifact listings.
//! - `names`: MLflow-style random run names.

pub mod artifacts;
pub mod logged_models;
mod names;
pub mod registry;
pub mod tracking;

use std::sync::Arc;

use slipway_core::ports::{ArtifactStore, MetadataStore};

/// Settings the use-cases need; chosen by the binary.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Where new experiments put their artifacts when the client names no location. The
    /// default, `mlflow-artifacts:`, makes clients upload through this server's artifact proxy.
    pub default_artifact_root: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            default_artifact_root: "mlflow-artifacts:".to_owned(),
        }
    }
}

/// The application: ports plus settings. Cheap to clone; shared by every request.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
    settings: Arc<AppSettings>,
}

impl App {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        settings: AppSettings,
    ) -> Self {
        App {
            store,
            artifacts,
            settings: Arc::new(settings),
        }
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Resolves `max_results` against an endpoint's default and ceiling, with MLflow's message.
pub(crate) fn max_results(
    requested: Option<i64>,
    default: usize,
    ceiling: usize,
) -> slipway_core::Result<usize> {
    match requested {
        None => Ok(default),
        Some(value) if value <= 0 => Err(slipway_core::Error::invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer"
        ))),
        Some(value) if value as u64 > ceiling as u64 => Err(slipway_core::Error::invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be at most {ceiling}"
        ))),
        Some(value) => Ok(value as usize),
    }
}
