//! Reports over recorded history: delivery metrics (DORA and cost per inference) and model
//! cards.

use axum::Json;
use serde::Deserialize;
use slipway_core::delivery::DeliveryReport;

use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};
use crate::mlflow::required_str;

/// The default period: the last 30 days.
const DEFAULT_PERIOD_MS: i64 = 30 * 86_400_000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Start of the period, epoch milliseconds (default: 30 days before `until`).
    since: Option<I64>,
    /// End of the period, epoch milliseconds (default: now).
    until: Option<I64>,
}

pub async fn delivery(
    AppFor(app): AppFor,
    Message(request): Message<Delivery>,
) -> ApiResult<Json<DeliveryReport>> {
    let until = request.until.map_or_else(slipway_app::now_ms, |u| u.0);
    let since = request
        .since
        .map_or(until.saturating_sub(DEFAULT_PERIOD_MS), |s| s.0);
    Ok(Json(app.delivery_report(since, until).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    /// The registered model.
    name: Option<String>,
    /// The version's number.
    version: Option<String>,
}

/// A version's model card, as `slipway model-card` renders it (without the feature
/// importance, which the CLI measures on a dataset it reads).
pub async fn model_card(
    AppFor(app): AppFor,
    Message(request): Message<CardRequest>,
) -> ApiResult<Json<slipway_app::model_card::ModelCard>> {
    let name = required_str(request.name, "name")?;
    let version = required_str(request.version, "version")?;
    Ok(Json(app.model_card(&name, &version).await?))
}
