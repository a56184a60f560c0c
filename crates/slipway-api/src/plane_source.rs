//! The plane inside `slipway server`: specs and model files straight from the store, reports to
//! the in-process rollout controller, predictions into the store's log.

use std::sync::Arc;

use async_trait::async_trait;
use slipway_app::App;
use slipway_app::cluster::Cluster;
use slipway_app::monitoring::Monitor;
use slipway_core::deployment::{Deployment, PredictionRecord, ServingStats, WindowStats};

use slipway_monitor::live::{Schema, Summary};
use slipway_plane::plane::{ModelBytes, PlaneSource};

pub struct ServerSource {
    app: App,
    monitor: Arc<Monitor>,
    /// Measurements go to the leader: this server's memory when it leads, the store's queue
    /// when another server does.
    cluster: Arc<Cluster>,
}

impl ServerSource {
    pub fn new(app: &App, monitor: Arc<Monitor>, cluster: Arc<Cluster>) -> ServerSource {
        ServerSource {
            app: app.for_caller("slipway-plane", None),
            monitor,
            cluster,
        }
    }
}

fn version_number(version: &str) -> Result<i64, String> {
    version
        .parse()
        .map_err(|_| format!("version {version:?} is not a number"))
}

#[async_trait]
impl PlaneSource for ServerSource {
    async fn deployments(&self) -> Result<Vec<Deployment>, String> {
        self.app
            .store()
            .list_deployments()
            .await
            .map_err(|e| e.to_string())
    }

    async fn model_files(&self, model: &str, version: &str) -> Result<ModelBytes, String> {
        let files = self
            .app
            .model_files(model, version)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ModelBytes {
            onnx: files.onnx,
            mlmodel: files.mlmodel,
        })
    }

    async fn report(
        &self,
        deployment: &str,
        window: Option<(i64, usize, WindowStats)>,
        serving: ServingStats,
    ) -> Result<(), String> {
        self.cluster
            .report(deployment, window, serving, "server")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn log_predictions(&self, records: Vec<PredictionRecord>) -> Result<(), String> {
        self.app
            .append_predictions(records)
            .await
            .map_err(|e| e.to_string())
    }

    async fn monitor_schema(&self, model: &str, version: &str) -> Result<Option<Schema>, String> {
        self.monitor
            .schema(model, version_number(version)?)
            .await
            .map_err(|e| e.to_string())
    }

    async fn report_summary(
        &self,
        deployment: &str,
        version: &str,
        summary: Summary,
    ) -> Result<(), String> {
        let spec = self
            .app
            .store()
            .get_deployment(deployment)
            .await
            .map_err(|e| e.to_string())?;
        self.cluster
            .summary(&spec, version_number(version)?, summary, "server")
            .await
            .map_err(|e| e.to_string())
    }
}
