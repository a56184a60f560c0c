//! slipway's own API, under `/api/slipway/v1`: what MLflow's REST API has no words for
//! (users, tokens, permissions, promotions, lineage, the audit trail, deployments, monitoring,
//! alerts, reports).
//! Errors use the same JSON shape and table as the MLflow routes.

mod alerts;
mod audit;
mod deployments;
pub(crate) mod gates;
mod identity;
mod monitoring;
mod promotions;
mod reports;
pub(crate) mod retrain;

use axum::Router;
use slipway_app::App;

/// Where the native API is mounted.
pub(crate) const PREFIX: &str = "/api/slipway/v1";

routes! {
    /// The native routes, relative to [`PREFIX`], each with its access rule.
    fn native_routes, rules, docs;
    GET "/whoami" => identity::whoami, Read None;
    GET "/cluster" => deployments::cluster, Read None;
    POST "/users" => identity::create_user [identity::CreateUser], Admin None;
    GET "/users" => identity::list_users, Admin None;
    GET "/users/{name}" => identity::get_user, Admin None;
    PATCH "/users/{name}" => identity::update_user [identity::UpdateUser], Admin None;
    DELETE "/users/{name}" => identity::delete_user, Admin None;
    POST "/tokens" => identity::create_token [identity::CreateToken], Admin None;
    GET "/tokens" => identity::list_tokens [identity::ListTokens], Admin None;
    DELETE "/tokens/{id}" => identity::revoke_token, Admin None;
    PUT "/permissions" => identity::set_permission [identity::PermissionRequest], Admin None;
    GET "/permissions" => identity::list_permissions [identity::ListTokens], Admin None;
    DELETE "/permissions" => identity::delete_permission [identity::PermissionRequest], Admin None;
    PUT "/policies/{name}" => promotions::set_policy [promotions::SetPolicy], Admin None;
    GET "/policies/{name}" => promotions::get_policy, Read None;
    DELETE "/policies/{name}" => promotions::delete_policy, Admin None;
    POST "/promotions" => promotions::request [promotions::RequestPromotion], Write Model;
    GET "/promotions" => promotions::list [promotions::ListPromotions], Read None;
    GET "/promotions/{id}" => promotions::get, Read None;
    POST "/promotions/{id}/approve" => promotions::approve [promotions::Decide], Approve None;
    POST "/promotions/{id}/reject" => promotions::reject [promotions::Decide], Approve None;
    POST "/registered-models/rollback" => promotions::rollback [promotions::AliasRequest], Approve Model;
    GET "/registered-models/alias-history" => promotions::alias_history [promotions::AliasRequest], Read Model;
    GET "/lineage" => promotions::lineage [promotions::LineageRequest], Read Model;
    POST "/gates" => gates::run [gates::RunGate], Write ModelUri;
    GET "/gates" => gates::list [gates::ListGates], Read Model;
    GET "/triggers" => retrain::get_triggers, Read None;
    PUT "/triggers" => retrain::apply_triggers [retrain::ApplyTriggers], Admin None;
    POST "/triggers/{name}/fire" => retrain::fire [retrain::Fire], Write Trigger;
    POST "/triggers/{name}/data" => retrain::new_data [retrain::NewData], Write Trigger;
    POST "/retrains/claim" => retrain::claim, Work None;
    GET "/retrains" => retrain::list [retrain::ListRetrains], Read None;
    GET "/retrains/{id}" => retrain::get, Read None;
    POST "/retrains/{id}/progress" => retrain::progress [retrain::Progress], Work None;
    GET "/model-versions/content" => promotions::content [promotions::LineageRequest], Read Model;
    GET "/audit" => audit::read [audit::ReadAudit], Admin None;
    GET "/state" => audit::state, Admin None;
    POST "/state/plan" => audit::plan_state [audit::StateDocuments], Admin None;
    POST "/state/apply" => audit::apply_state [audit::StateDocuments], Admin None;
    GET "/audit/verify" => audit::verify, Admin None;
    POST "/deployments" => deployments::create [deployments::Create], Write ModelUri;
    GET "/deployments" => deployments::list, Read None;
    GET "/deployments/{name}" => deployments::get, Read Deployment;
    PATCH "/deployments/{name}" => deployments::update [deployments::Update], Write Deployment;
    DELETE "/deployments/{name}" => deployments::delete, Delete Deployment;
    POST "/deployments/{name}/rollout" => deployments::start_rollout [deployments::StartRollout], Write Deployment;
    POST "/deployments/{name}/promote" => deployments::promote, Write Deployment;
    POST "/deployments/{name}/abort" => deployments::abort [deployments::Reason], Write Deployment;
    POST "/deployments/{name}/rollback" => deployments::rollback [deployments::Reason], Approve Deployment;
    GET "/deployments/{name}/events" => deployments::events [deployments::Page], Read Deployment;
    POST "/deployments/{name}/reports" => deployments::report [deployments::Report], Report Deployment;
    GET "/deployments/{name}/predictions" => deployments::predictions [deployments::Page], Read Deployment;
    POST "/deployments/{name}/monitoring/summaries" => monitoring::report_summary [monitoring::ReportSummary], Report Deployment;
    GET "/deployments/{name}/monitoring" => monitoring::status [monitoring::Status], Read Deployment;
    POST "/deployments/{name}/labels" => monitoring::labels [monitoring::Labels], Write Deployment;
    GET "/deployments/{name}/performance" => monitoring::performance [monitoring::Performance], Read Deployment;
    GET "/deployments/{name}/slo" => monitoring::slo, Read Deployment;
    POST "/monitoring/references" => monitoring::set_reference [monitoring::SetReference], Write ModelUri;
    GET "/monitoring/references" => monitoring::get_reference [monitoring::GetReference], Read ModelUri;
    GET "/reports/delivery" => reports::delivery [reports::Delivery], Read None;
    GET "/model-card" => reports::model_card [reports::CardRequest], Read Model;
    GET "/alerts" => alerts::list [alerts::ListAlerts], Read None;
    GET "/alerts/rules" => alerts::get_rules, Read None;
    GET "/alerts/config" => alerts::get_config, Admin None;
    PUT "/alerts/config" => alerts::apply_config [alerts::ApplyConfig], Admin None;
    POST "/alerts/silences" => alerts::create_silence [alerts::CreateSilence], Approve None;
    GET "/alerts/silences" => alerts::list_silences [alerts::ListSilences], Read None;
    DELETE "/alerts/silences/{id}" => alerts::expire_silence, Approve None;
}

pub(crate) fn routes() -> Router<App> {
    Router::new().nest(PREFIX, native_routes())
}
