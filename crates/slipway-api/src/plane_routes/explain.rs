//! `POST /deployments/{name}/explain`: the data plane explains the rows (see
//! `slipway_plane::scoring::explain`); the server adds its access rule and the version's
//! monitoring reference, read as the caller, which the background is drawn from.

use std::sync::Arc;

use axum::extract::{Extension, Path, Request};
use axum::response::{IntoResponse, Response};
use slipway_app::deployments::ModelRef;
use slipway_plane::plane::Plane;
use slipway_plane::scoring::explain::{StoredReference, explain_deployment};

use crate::access::AppFor;
use crate::error::ApiError;

/// The body of an explanation, for the OpenAPI document only: the data plane reads it with
/// its own bounded parser, as it reads `/invocations` bodies.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ExplainRequest {
    /// The rows to explain (at most 100), in the model's feature order; or the same rows as
    /// `instances`, `dataframe_split` or `dataframe_records`, as `/invocations` takes them.
    inputs: Option<Vec<Vec<f64>>>,
    /// Permutation samples per row, 2 to 2,000 (default 100): the standard errors shrink as
    /// one over their square root. At most 2,000,000 model rows (rows × samples ×
    /// (features + 1)) per request.
    samples: Option<u32>,
    /// The sampler's seed (default: drawn, and answered): the same seed gives the same answer.
    seed: Option<u64>,
    /// `stable` (default) or `candidate`.
    variant: Option<String>,
    /// The class whose probability is explained: its index, or its label for a model that
    /// answers a map of labels. Default: each row's predicted class.
    #[schema(value_type = Option<String>)]
    class: Option<String>,
    /// Rows to draw the background from instead of the version's monitoring reference (at
    /// most 10,000).
    background: Option<Vec<Vec<f64>>>,
}

/// Explains rows with the deployment's stable (or candidate) version, against its version's
/// monitoring reference unless the request sends background rows.
pub(crate) async fn deployment(
    AppFor(app): AppFor,
    Extension(plane): Extension<Arc<Plane>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    explain_deployment(plane, name, request, |model, version| async move {
        app.monitor_reference(&ModelRef::Version {
            name: model,
            version,
        })
        .await
        .map(|found| {
            found.map(|reference| StoredReference {
                schema: reference.schema,
                summary: reference.summary,
            })
        })
        .map_err(|error| ApiError::from(error).into_response())
    })
    .await
}
