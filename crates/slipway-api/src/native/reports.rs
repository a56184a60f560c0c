//! Reports over recorded history: delivery metrics (DORA and cost per inference).

use axum::Json;
use serde::Deserialize;
use slipway_core::delivery::DeliveryReport;

use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::{I64, Message};

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
