//! slipway's own API, under `/api/slipway/v1`: what MLflow's REST API has no words for
//! (users, tokens, permissions, promotions, lineage, the audit trail, deployments).
//! Errors use the same JSON shape and table as the MLflow routes.

mod audit;
mod deployments;
mod identity;
mod promotions;

use axum::Router;
use slipway_app::App;

/// Where the native API is mounted.
pub(crate) const PREFIX: &str = "/api/slipway/v1";

routes! {
    /// The native routes, relative to [`PREFIX`], each with its access rule.
    fn native_routes, rules;
    GET "/whoami" => identity::whoami, Read None;
    POST "/users" => identity::create_user, Admin None;
    GET "/users" => identity::list_users, Admin None;
    GET "/users/{name}" => identity::get_user, Admin None;
    PATCH "/users/{name}" => identity::update_user, Admin None;
    DELETE "/users/{name}" => identity::delete_user, Admin None;
    POST "/tokens" => identity::create_token, Admin None;
    GET "/tokens" => identity::list_tokens, Admin None;
    DELETE "/tokens/{id}" => identity::revoke_token, Admin None;
    PUT "/permissions" => identity::set_permission, Admin None;
    GET "/permissions" => identity::list_permissions, Admin None;
    DELETE "/permissions" => identity::delete_permission, Admin None;
    PUT "/policies/{name}" => promotions::set_policy, Admin None;
    GET "/policies/{name}" => promotions::get_policy, Read None;
    DELETE "/policies/{name}" => promotions::delete_policy, Admin None;
    POST "/promotions" => promotions::request, Write Model;
    GET "/promotions" => promotions::list, Read None;
    GET "/promotions/{id}" => promotions::get, Read None;
    POST "/promotions/{id}/approve" => promotions::approve, Approve None;
    POST "/promotions/{id}/reject" => promotions::reject, Approve None;
    POST "/registered-models/rollback" => promotions::rollback, Approve Model;
    GET "/registered-models/alias-history" => promotions::alias_history, Read Model;
    GET "/lineage" => promotions::lineage, Read Model;
    GET "/model-versions/content" => promotions::content, Read Model;
    GET "/audit" => audit::read, Admin None;
    GET "/audit/verify" => audit::verify, Admin None;
    POST "/deployments" => deployments::create, Write ModelUri;
    GET "/deployments" => deployments::list, Read None;
    GET "/deployments/{name}" => deployments::get, Read Deployment;
    PATCH "/deployments/{name}" => deployments::update, Write Deployment;
    DELETE "/deployments/{name}" => deployments::delete, Delete Deployment;
    POST "/deployments/{name}/rollout" => deployments::start_rollout, Write Deployment;
    POST "/deployments/{name}/promote" => deployments::promote, Write Deployment;
    POST "/deployments/{name}/abort" => deployments::abort, Write Deployment;
    POST "/deployments/{name}/rollback" => deployments::rollback, Approve Deployment;
    GET "/deployments/{name}/events" => deployments::events, Read Deployment;
    POST "/deployments/{name}/reports" => deployments::report, Report Deployment;
    GET "/deployments/{name}/predictions" => deployments::predictions, Read Deployment;
}

pub(crate) fn routes() -> Router<App> {
    Router::new().nest(PREFIX, native_routes())
}
