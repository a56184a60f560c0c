//! `/runs/*` and `/metrics/*` handlers.

use axum::Json;
use futures::StreamExt;

use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use slipway_app::tracking::SearchRuns;
use slipway_core::tracking::{
    Batch, Dataset, DatasetInput, ExperimentId, Metric, ModelOutput, RunStatus, RunUpdate, Tag,
    ViewType,
};
use slipway_core::{Error, validate};

use super::{experiment_id, json_response, key_values, ok, required, required_str, run_id};
use crate::access::AppFor;
use crate::dto::{
    DatasetInputIn, KeyValueIn, MetricIn, MetricOut, ModelInputIn, ModelOutputIn, RunInfoOut,
    RunOut,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{F64, I64, IdString, Message, Repeated};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    experiment_id: Option<IdString>,
    user_id: Option<String>,
    run_name: Option<String>,
    start_time: Option<I64>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

pub async fn create(
    AppFor(app): AppFor,
    Message(request): Message<CreateRun>,
) -> ApiResult<Json<Value>> {
    let experiment = match request.experiment_id.filter(|id| !id.0.is_empty()) {
        Some(raw) => ExperimentId::parse(&raw.0)?,
        None => ExperimentId::DEFAULT,
    };
    let tags = key_values(request.tags, "tags")?;
    let run = app
        .create_run(
            experiment,
            request.user_id,
            request.run_name,
            request.start_time.map(|t| t.0),
            tags,
        )
        .await?;
    Ok(Json(json!({ "run": RunOut::from(&run) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRun {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

pub async fn get(AppFor(app): AppFor, Message(request): Message<GetRun>) -> ApiResult<Json<Value>> {
    let run = app
        .get_run(&run_id(request.run_id, request.run_uuid)?)
        .await?;
    Ok(Json(json!({ "run": RunOut::from(&run) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRun {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<IdString>,
    end_time: Option<I64>,
    run_name: Option<String>,
}

pub async fn update(
    AppFor(app): AppFor,
    Message(request): Message<UpdateRun>,
) -> ApiResult<Json<Value>> {
    let id = run_id(request.run_id, request.run_uuid)?;
    let update = RunUpdate {
        status: request.status.map(|s| RunStatus::parse(&s.0)).transpose()?,
        end_time: request.end_time.map(|t| t.0),
        run_name: request.run_name.filter(|name| !name.is_empty()),
    };
    let info = app.update_run(&id, update).await?;
    Ok(Json(json!({ "run_info": RunInfoOut::from(&info) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIdOnly {
    run_id: Option<String>,
}

pub async fn delete(
    AppFor(app): AppFor,
    Message(request): Message<RunIdOnly>,
) -> ApiResult<Json<Value>> {
    app.delete_run(&run_id(request.run_id, None)?).await?;
    Ok(ok())
}

pub async fn restore(
    AppFor(app): AppFor,
    Message(request): Message<RunIdOnly>,
) -> ApiResult<Json<Value>> {
    app.restore_run(&run_id(request.run_id, None)?).await?;
    Ok(ok())
}

fn metric_from(input: MetricIn, field: &str) -> ApiResult<Metric> {
    let key = required_str(input.key, &format!("{field}key"))?;
    let value = required(input.value, &format!("{field}value"))?.0;
    let timestamp = required(input.timestamp, &format!("{field}timestamp"))?.0;
    Ok(Metric {
        key,
        value,
        timestamp,
        step: input.step.map(|s| s.0).unwrap_or(0),
        model_id: input.model_id.filter(|id| !id.is_empty()),
        dataset_name: input.dataset_name.filter(|name| !name.is_empty()),
        dataset_digest: input.dataset_digest.filter(|digest| !digest.is_empty()),
        run_id: None,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogMetric {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<F64>,
    timestamp: Option<I64>,
    step: Option<I64>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

pub async fn log_metric(
    AppFor(app): AppFor,
    Message(request): Message<LogMetric>,
) -> ApiResult<Json<Value>> {
    let metric = metric_from(
        MetricIn {
            key: request.key,
            value: request.value,
            timestamp: request.timestamp,
            step: request.step,
            model_id: request.model_id,
            dataset_name: request.dataset_name,
            dataset_digest: request.dataset_digest,
            _run_id: None,
        },
        "",
    )?;
    let id = run_id(request.run_id, request.run_uuid)?;
    app.log_metric(&id, metric).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyValueForRun {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn log_param(
    AppFor(app): AppFor,
    Message(request): Message<KeyValueForRun>,
) -> ApiResult<Json<Value>> {
    let key = required_str(request.key, "key")?;
    let value = required(request.value, "value")?;
    app.log_param(
        &run_id(request.run_id, request.run_uuid)?,
        Tag::new(key, value),
    )
    .await?;
    Ok(ok())
}

pub async fn set_tag(
    AppFor(app): AppFor,
    Message(request): Message<KeyValueForRun>,
) -> ApiResult<Json<Value>> {
    let key = required_str(request.key, "key")?;
    let value = required(request.value, "value")?;
    app.set_run_tag(
        &run_id(request.run_id, request.run_uuid)?,
        Tag::new(key, value),
    )
    .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTag {
    run_id: Option<String>,
    key: Option<String>,
}

pub async fn delete_tag(
    AppFor(app): AppFor,
    Message(request): Message<DeleteTag>,
) -> ApiResult<Json<Value>> {
    let key = required_str(request.key, "key")?;
    app.delete_run_tag(&run_id(request.run_id, None)?, &key)
        .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    run_id: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricIn>,
    #[serde(default)]
    params: Vec<KeyValueIn>,
    #[serde(default)]
    tags: Vec<KeyValueIn>,
}

pub async fn log_batch(
    AppFor(app): AppFor,
    Message(request): Message<LogBatch>,
) -> ApiResult<Json<Value>> {
    let id = run_id(request.run_id, None)?;
    let metrics = request
        .metrics
        .into_iter()
        .map(|metric| metric_from(metric, "metrics[]."))
        .collect::<ApiResult<Vec<_>>>()?;
    let batch = Batch {
        metrics,
        params: key_values(request.params, "params[]")?,
        tags: key_values(request.tags, "tags[]")?,
    };
    app.log_batch(&id, batch).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogModel {
    run_id: Option<String>,
    model_json: Option<String>,
}

/// MLflow 2's `log-model` appends the model's JSON to the `mlflow.log-model.history` tag.
pub async fn log_model(
    AppFor(app): AppFor,
    Message(request): Message<LogModel>,
) -> ApiResult<Json<Value>> {
    let id = run_id(request.run_id, None)?;
    let model_json = required_str(request.model_json, "model_json")?;
    let model: Value = serde_json::from_str(&model_json).map_err(|e| {
        ApiError::Core(Error::invalid(format!("model_json is not valid JSON: {e}")))
    })?;
    let run = app.get_run(&id).await?;
    const HISTORY_TAG: &str = "mlflow.log-model.history";
    let mut history: Vec<Value> = run
        .data
        .tags
        .iter()
        .find(|tag| tag.key == HISTORY_TAG)
        .and_then(|tag| serde_json::from_str(&tag.value).ok())
        .unwrap_or_default();
    history.push(model);
    app.set_run_tag(
        &id,
        Tag::new(HISTORY_TAG, Value::Array(history).to_string()),
    )
    .await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInputs {
    run_id: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetInputIn>,
    #[serde(default)]
    models: Vec<ModelInputIn>,
}

pub async fn log_inputs(
    AppFor(app): AppFor,
    Message(request): Message<LogInputs>,
) -> ApiResult<Json<Value>> {
    let id = run_id(request.run_id, None)?;
    let datasets = request
        .datasets
        .into_iter()
        .map(|input| {
            let dataset = required(input.dataset, "datasets[].dataset")?;
            Ok(DatasetInput {
                tags: key_values(input.tags, "datasets[].tags[]")?,
                dataset: Dataset {
                    name: required_str(dataset.name, "dataset.name")?,
                    digest: required_str(dataset.digest, "dataset.digest")?,
                    source_type: required_str(dataset.source_type, "dataset.source_type")?,
                    source: required(dataset.source, "dataset.source")?,
                    schema: dataset.schema,
                    profile: dataset.profile,
                },
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let models = request
        .models
        .into_iter()
        .map(|model| required_str(model.model_id, "models[].model_id"))
        .collect::<ApiResult<Vec<_>>>()?;
    app.log_inputs(&id, datasets, models).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogOutputs {
    run_id: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutputIn>,
}

pub async fn log_outputs(
    AppFor(app): AppFor,
    Message(request): Message<LogOutputs>,
) -> ApiResult<Json<Value>> {
    let id = run_id(request.run_id, None)?;
    let models = request
        .models
        .into_iter()
        .map(|model| {
            Ok(ModelOutput {
                model_id: required_str(model.model_id, "models[].model_id")?,
                step: required(model.step, "models[].step")?.0,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    app.log_outputs(&id, models).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRunsRequest {
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    experiment_ids: Repeated<IdString>,
    filter: Option<String>,
    run_view_type: Option<IdString>,
    max_results: Option<I64>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    order_by: Repeated<String>,
    page_token: Option<String>,
}

pub async fn search(
    AppFor(app): AppFor,
    Message(request): Message<SearchRunsRequest>,
) -> ApiResult<Response> {
    let experiment_ids = request
        .experiment_ids
        .0
        .into_iter()
        .map(|id| experiment_id(Some(id), "experiment_ids"))
        .collect::<ApiResult<Vec<_>>>()?;
    let view_type = match request.run_view_type {
        Some(raw) => ViewType::parse(&raw.0)?,
        None => ViewType::ActiveOnly,
    };
    let page = app
        .search_runs(SearchRuns {
            experiment_ids,
            filter: request.filter.as_deref(),
            view_type,
            max_results: request.max_results.map(|m| m.0),
            order_by: &request.order_by.0,
            page_token: request.page_token.as_deref(),
        })
        .await?;
    json_response(&SearchRunsResponse {
        runs: page.items.iter().map(RunOut::from).collect(),
        next_page_token: page.next_page_token,
    })
}

/// Serialised straight from borrowed DTOs: a page can hold thousands of runs.
#[derive(Serialize)]
pub struct SearchRunsResponse<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runs: Vec<RunOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetHistory {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
    page_token: Option<String>,
    max_results: Option<I64>,
}

pub async fn get_history(
    AppFor(app): AppFor,
    Message(request): Message<GetHistory>,
) -> ApiResult<Response> {
    let key = required_str(request.metric_key, "metric_key")?;
    let id = run_id(request.run_id, request.run_uuid)?;
    let page = app
        .get_metric_history(
            &id,
            &key,
            request.max_results.map(|m| m.0),
            request.page_token.as_deref(),
        )
        .await?;
    // MLflow answers an unknown run with an empty history, not 404; clients depend on it.
    let Some(page) = page else {
        return Ok(ok().into_response());
    };
    // Without max_results MLflow answers the whole history: the rest is read page by page
    // while the answer is written, so memory holds one page, not the series.
    if request.max_results.is_none()
        && let Some(next) = page.next
    {
        return Ok(whole_history(app, id, key, page.metrics, next));
    }
    json_response(&HistoryResponse {
        metrics: page.metrics.iter().map(MetricOut::from).collect(),
        next_page_token: page.next.map(|next| next.encode()),
    })
}

/// `{"metrics": [...]}` of a whole history, streamed from store pages after `first`.
fn whole_history(
    app: slipway_app::App,
    id: slipway_core::tracking::RunId,
    key: String,
    first: Vec<slipway_core::tracking::Metric>,
    next: slipway_core::ports::HistoryCursor,
) -> Response {
    fn chunk(prefix: &str, metrics: &[slipway_core::tracking::Metric]) -> Vec<u8> {
        let mut out = prefix.as_bytes().to_vec();
        for (index, metric) in metrics.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            // A metric DTO always serialises.
            if serde_json::to_writer(&mut out, &MetricOut::from(metric)).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        out
    }
    enum Step {
        Page(Option<slipway_core::ports::HistoryCursor>),
        Done,
    }
    let head = chunk("{\"metrics\": [", &first);
    let rest = futures::stream::unfold(Step::Page(Some(next)), move |step| {
        let (app, id, key) = (app.clone(), id.clone(), key.clone());
        async move {
            let cursor = match step {
                Step::Done => return None,
                Step::Page(None) => {
                    return Some((Ok::<_, std::io::Error>(b"]}".to_vec()), Step::Done));
                }
                Step::Page(Some(cursor)) => cursor,
            };
            let token = cursor.encode();
            match app
                .get_metric_history(&id, &key, None, Some(token.as_str()))
                .await
            {
                Ok(Some(page)) if !page.metrics.is_empty() => {
                    Some((Ok(chunk(",", &page.metrics)), Step::Page(page.next)))
                }
                Ok(_) => Some((Ok(b"]}".to_vec()), Step::Done)),
                Err(error) => {
                    // The status is sent; cutting the body short is the only way left to say
                    // the history is incomplete.
                    tracing::error!(%error, "reading a metric history page");
                    Some((Err(std::io::Error::other(error.to_string())), Step::Done))
                }
            }
        }
    });
    let body = futures::stream::once(async move { Ok(head) }).chain(rest);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Serialised straight from borrowed DTOs: a page holds up to 25,000 points by default.
#[derive(Serialize)]
pub struct HistoryResponse<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics: Vec<MetricOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetHistoryBulkInterval {
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    run_ids: Repeated<String>,
    metric_key: Option<String>,
    start_step: Option<I64>,
    end_step: Option<I64>,
    max_results: Option<I64>,
}

/// The most history points one bulk-interval request reads into memory (all runs together).
const BULK_INTERVAL_MAX_POINTS: usize = 2_000_000;

/// Used by the UI's charts: up to `max_results` points per run between two steps.
pub async fn get_history_bulk_interval(
    AppFor(app): AppFor,
    Message(request): Message<GetHistoryBulkInterval>,
) -> ApiResult<Json<Value>> {
    let key = required_str(request.metric_key, "metric_key")?;
    if request.run_ids.0.is_empty() {
        return Err(ApiError::Core(validate::missing("run_ids")));
    }
    if request.run_ids.0.len() > 100 {
        return Err(ApiError::Core(Error::invalid(
            "At most 100 run_ids may be requested at once",
        )));
    }
    let per_run = usize::try_from(
        request
            .max_results
            .map(|m| m.0)
            .unwrap_or(320)
            .clamp(1, 2500),
    )
    .unwrap_or(320);
    let start = request.start_step.map(|s| s.0);
    let end = request.end_step.map(|s| s.0);
    let mut out = Vec::new();
    // Sampling evenly over steps needs a run's whole range in memory (the store pages in
    // timestamp order): kept as bare (step, timestamp, value) triples, 24 bytes a point, and
    // bounded per request so that 100 runs of long histories cannot exhaust memory.
    let mut budget = BULK_INTERVAL_MAX_POINTS;
    for raw in request.run_ids.0 {
        let id = run_id(Some(raw), None)?;
        let mut token: Option<String> = None;
        let mut points: Vec<(i64, i64, f64)> = Vec::new();
        loop {
            let Some(page) = app
                .get_metric_history(&id, &key, Some(25_000), token.as_deref())
                .await?
            else {
                break;
            };
            for metric in page.metrics {
                if start.is_none_or(|s| metric.step >= s) && end.is_none_or(|e| metric.step <= e) {
                    if budget == 0 {
                        return Err(ApiError::Core(Error::invalid(format!(
                            "the requested runs hold more than {BULK_INTERVAL_MAX_POINTS} points of '{key}' between the steps asked for; narrow start_step/end_step or ask for fewer run_ids"
                        ))));
                    }
                    budget -= 1;
                    points.push((metric.step, metric.timestamp, metric.value));
                }
            }
            match page.next {
                Some(next) => token = Some(next.encode()),
                None => break,
            }
        }
        points.sort_by_key(|&(step, timestamp, _)| (step, timestamp));
        // Evenly spaced sample that keeps the first and last points.
        let sampled: Vec<_> = if points.len() <= per_run {
            points
        } else {
            let last = points.len() - 1;
            (0..per_run)
                .map(|i| points[i * last / (per_run - 1).max(1)])
                .collect()
        };
        for (step, timestamp, value) in sampled {
            let metric = slipway_core::tracking::Metric::new(key.clone(), value, timestamp, step);
            out.push(json!({
                "key": metric.key,
                "value": serde_json::to_value(MetricOut::from(&metric)).map(|v| v["value"].clone()).unwrap_or(Value::Null),
                "timestamp": metric.timestamp,
                "step": metric.step,
                "run_id": id.as_str(),
            }));
        }
    }
    Ok(Json(json!({ "metrics": out })))
}
