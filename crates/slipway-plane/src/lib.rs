//! slipway's serving data plane over HTTP: what answers inference requests, on `slipway serve`
//! (one model), in `slipway server` (its managed deployments) and in replicas (`slipway serve
//! --deployment`). It knows HTTP and the serving engine (`slipway-serving`) and nothing of the
//! control plane: no store, no tracking or registry API, no access rules (the server adds
//! those around [`plane`]'s handlers).
//!
//! Module map:
//! - [`scoring`]: one model over MLflow's scoring protocol and the Open Inference Protocol V2
//!   (`slipway serve`), with the body readers both protocols share (`scoring::body`: rows and
//!   values counted against a budget while they are read).
//! - [`plane`]: managed deployments: routing between the stable and candidate versions,
//!   circuit breakers, measurement windows, mirroring and re-scoring, the prediction log queue;
//!   specs, models and reports come through a [`plane::PlaneSource`].
//! - `serving_metrics`: the Prometheus metrics of both.
//! - [`request_id`]: request ids the server issues itself.

pub mod plane;
pub mod request_id;
pub mod scoring;
mod serving_metrics;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The MLflow version whose REST API this server speaks; `/version` reports it because some
/// tools compare it before using newer endpoints.
pub const MLFLOW_COMPATIBLE_VERSION: &str = "3.17.2";
