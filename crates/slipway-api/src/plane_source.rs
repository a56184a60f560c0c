//! The plane inside `slipway server`: specs and model files straight from the store, reports to
//! the in-process rollout controller, predictions into the store's log.

use std::sync::Arc;

use async_trait::async_trait;
use slipway_app::App;
use slipway_app::alerting::ServingLog;
use slipway_app::monitoring::Monitor;
use slipway_app::rollout::Controller;
use slipway_core::deployment::{Deployment, PredictionRecord, ServingStats, WindowStats};

use slipway_monitor::live::{Schema, Summary};
use slipway_plane::plane::{ModelBytes, PlaneSource};

pub struct ServerSource {
    app: App,
    controller: Arc<Controller>,
    monitor: Arc<Monitor>,
    serving: Arc<ServingLog>,
}

impl ServerSource {
    pub fn new(
        app: &App,
        controller: Arc<Controller>,
        monitor: Arc<Monitor>,
        serving: Arc<ServingLog>,
    ) -> ServerSource {
        ServerSource {
            app: app.for_caller("slipway-plane", None),
            controller,
            monitor,
            serving,
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
        if let Some((rollout_id, stage, stats)) = window {
            self.controller
                .record(deployment, rollout_id, stage, &stats, "server");
        }
        self.serving
            .record(deployment, &serving, slipway_app::now_ms());
        Ok(())
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
        self.monitor
            .record(&spec, version_number(version)?, summary, "server")
            .await
            .map_err(|e| e.to_string())
    }
}
