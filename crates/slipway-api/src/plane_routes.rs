//! The data plane's routes on `slipway server`, with their access rules: the handlers live in
//! `slipway-plane` (which knows no access control), the rules here, in the one table the
//! server's access layer and OpenAPI document are built from.

use slipway_plane::plane::http;

mod explain;

routes! {
    /// The data plane on `slipway server`, each route with its access rule (the deployment's
    /// registered model decides per-model grants).
    fn plane_routes, plane_rules, plane_docs;
    POST "/deployments/{name}/invocations" => http::invocations, Read Deployment;
    GET "/deployments/{name}/ping" => http::deployment_ping, Read Deployment;
    POST "/deployments/{name}/explain" => explain::deployment [explain::ExplainRequest], Read Deployment;
    POST "/v2/models/{name}/infer" => http::v2_infer, Read Deployment;
    POST "/v2/models/{name}/versions/{version}/infer" => http::v2_infer_versioned, Read Deployment;
    GET "/v2/models/{name}" => http::v2_metadata, Read Deployment;
    GET "/v2/models/{name}/versions/{version}" => http::v2_metadata_versioned, Read Deployment;
    GET "/v2/models/{name}/ready" => http::v2_model_ready, Read Deployment;
    GET "/v2/models/{name}/versions/{version}/ready" => http::v2_model_ready_versioned, Read Deployment;
    GET "/v2" => slipway_plane::scoring::v2_server, Read None;
    GET "/v2/health/live" => slipway_plane::scoring::v2_live, Read None;
    GET "/v2/health/ready" => http::v2_ready, Read None;
    GET "/metrics" => crate::http_metrics::metrics, Read None;
}
