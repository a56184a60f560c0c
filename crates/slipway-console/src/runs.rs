//! Experiments and runs: the runs table (MLflow's filter grammar, sorting, chosen columns), a
//! run's page (params, tags, metric charts, datasets, artifacts with previews) and comparing
//! runs (metrics overlaid, a params diff, parallel coordinates).

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use slipway_app::tracking::SearchRuns;
use slipway_core::Error;
use slipway_core::auth::Resource;
use slipway_core::tracking::{ExperimentId, Run, RunId, ViewType};

use crate::session::Viewer;
use crate::view::{self, Nav, encode, number, time};
use crate::{PageError, PageResult, page};

/// Runs on one page of the table.
const PAGE_SIZE: i64 = 50;
/// Runs one compare view takes.
const MAX_COMPARED: usize = 20;
/// Points per metric a chart is sent (longer histories are thinned evenly, the last kept).
const MAX_POINTS: usize = 5_000;
/// Points read per metric at most, and metrics one chart request names at most: one request
/// holds at most 20 × 100,000 points (48 MB) while it thins them.
const MAX_READ: usize = 100_000;
const MAX_KEYS: usize = 20;
/// Bytes of an artifact a preview shows.
const MAX_PREVIEW: u64 = 2 * 1024 * 1024;

struct ExperimentRow {
    id: String,
    name: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "experiments.html")]
struct ExperimentsPage {
    nav: Nav,
    experiments: Vec<ExperimentRow>,
}

pub async fn experiments(viewer: Viewer) -> PageResult {
    let nav = viewer.nav("runs");
    let found = viewer
        .app
        .search_experiments(
            None,
            &["last_update_time DESC".to_owned()],
            ViewType::ActiveOnly,
            Some(500),
            None,
        )
        .await
        .map_err(|e| PageError::new(&nav, e))?;
    let experiments = found
        .items
        .into_iter()
        .filter(|e| viewer.may_read(&Resource::experiment(e.experiment_id.to_string())))
        .map(|e| ExperimentRow {
            id: e.experiment_id.to_string(),
            name: e.name,
            updated: time(e.last_update_time),
        })
        .collect();
    Ok(page(&ExperimentsPage { nav, experiments }))
}

/// A column of the runs table: `metrics.KEY`, `params.KEY` or `tags.KEY`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    kind: &'static str,
    key: String,
}

impl Column {
    fn parse(raw: &str) -> Option<Column> {
        let (kind, key) = raw.trim().split_once('.')?;
        let kind = match kind {
            "metrics" | "metric" => "metrics",
            "params" | "param" => "params",
            "tags" | "tag" => "tags",
            _ => return None,
        };
        (!key.is_empty()).then(|| Column {
            kind,
            key: key.to_owned(),
        })
    }

    fn name(&self) -> String {
        format!("{}.{}", self.kind, self.key)
    }

    /// As the order_by grammar wants it: keys with odd characters in backticks.
    fn order_key(&self) -> String {
        if self
            .key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.name()
        } else {
            format!("{}.`{}`", self.kind, self.key)
        }
    }

    fn value(&self, run: &Run) -> String {
        match self.kind {
            "metrics" => run
                .data
                .metrics
                .iter()
                .find(|m| m.key == self.key)
                .map_or_else(String::new, |m| number(m.value)),
            "params" => run
                .data
                .params
                .iter()
                .find(|p| p.key == self.key)
                .map_or_else(String::new, |p| p.value.clone()),
            _ => run
                .data
                .tags
                .iter()
                .find(|t| t.key == self.key)
                .map_or_else(String::new, |t| t.value.clone()),
        }
    }
}

struct HeaderCell {
    label: String,
    /// The link that sorts by this column (descending first, then ascending).
    sort_href: String,
    /// `▲` or `▼` when the table is sorted by it.
    mark: &'static str,
}

struct RunRow {
    id: String,
    name: String,
    status: String,
    started: String,
    duration: String,
    user: String,
    cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    nav: Nav,
    experiment_id: String,
    experiment_name: String,
    filter: String,
    order: String,
    columns_text: String,
    error: Option<String>,
    fixed: Vec<HeaderCell>,
    headers: Vec<HeaderCell>,
    rows: Vec<RunRow>,
    next_href: Option<String>,
    /// Every metric and param key seen on this page, for the column picker.
    available: Vec<String>,
}

#[derive(Deserialize, Default)]
pub struct RunsQuery {
    filter: Option<String>,
    order: Option<String>,
    columns: Option<String>,
    page_token: Option<String>,
}

fn run_row(run: &Run, columns: &[Column]) -> RunRow {
    let info = &run.info;
    RunRow {
        id: info.run_id.to_string(),
        name: info.run_name.clone(),
        status: info.status.as_str().to_owned(),
        started: time(info.start_time),
        duration: info
            .end_time
            .map_or_else(|| "—".to_owned(), |end| view::span(end - info.start_time)),
        user: info.user_id.clone(),
        cells: columns.iter().map(|c| c.value(run)).collect(),
    }
}

pub async fn runs(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<RunsQuery>,
) -> PageResult {
    let nav = viewer.nav("runs");
    let fail = |e| PageError::new(&nav, e);
    let experiment_id = ExperimentId::parse(&id).map_err(fail)?;
    if !viewer.may_read(&Resource::experiment(experiment_id.to_string())) {
        return Err(fail(Error::permission_denied(format!(
            "user '{}' may not read experiment {experiment_id}",
            viewer.principal.name
        ))));
    }
    let experiment = viewer
        .app
        .get_experiment(experiment_id)
        .await
        .map_err(fail)?;
    let filter = query.filter.unwrap_or_default();
    let order = query.order.unwrap_or_default();
    let order_by: Vec<String> = if order.trim().is_empty() {
        Vec::new()
    } else {
        vec![order.trim().to_owned()]
    };
    let searched = viewer
        .app
        .search_runs(SearchRuns {
            experiment_ids: vec![experiment_id],
            filter: Some(filter.trim()).filter(|f| !f.is_empty()),
            view_type: ViewType::ActiveOnly,
            max_results: Some(PAGE_SIZE),
            order_by: &order_by,
            page_token: query.page_token.as_deref().filter(|t| !t.is_empty()),
        })
        .await;
    let (found, error) = match searched {
        Ok(page) => (page, None),
        Err(Error::InvalidParameter(message)) => (
            slipway_core::paging::Page {
                items: Vec::new(),
                next_page_token: None,
            },
            Some(message),
        ),
        Err(other) => return Err(fail(other)),
    };

    let mut metric_keys = BTreeSet::new();
    let mut param_keys = BTreeSet::new();
    for run in &found.items {
        metric_keys.extend(run.data.metrics.iter().map(|m| m.key.clone()));
        param_keys.extend(run.data.params.iter().map(|p| p.key.clone()));
    }
    let columns: Vec<Column> = match query.columns.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(chosen) => chosen.split(',').filter_map(Column::parse).collect(),
        None => metric_keys
            .iter()
            .take(6)
            .map(|key| Column {
                kind: "metrics",
                key: key.clone(),
            })
            .chain(param_keys.iter().take(4).map(|key| Column {
                kind: "params",
                key: key.clone(),
            }))
            .collect(),
    };
    let columns_text = columns
        .iter()
        .map(Column::name)
        .collect::<Vec<_>>()
        .join(",");
    let base = format!(
        "/experiments/{experiment_id}?filter={}&columns={}",
        encode(&filter),
        encode(&columns_text)
    );
    let current = order.trim().to_owned();
    let header = |label: String, key: String| {
        let desc = format!("{key} DESC");
        let asc = format!("{key} ASC");
        let (next, mark) = if current == desc {
            (asc, "▼")
        } else if current == asc || current == key {
            (desc, "▲")
        } else {
            (desc, "")
        };
        HeaderCell {
            label,
            sort_href: format!("{base}&order={}", encode(&next)),
            mark,
        }
    };
    let fixed = vec![
        header("Run".to_owned(), "attributes.run_name".to_owned()),
        header("Status".to_owned(), "attributes.status".to_owned()),
        header("Started".to_owned(), "attributes.start_time".to_owned()),
    ];
    let headers = columns
        .iter()
        .map(|c| header(c.name(), c.order_key()))
        .collect();
    let rows = found
        .items
        .iter()
        .map(|run| run_row(run, &columns))
        .collect();
    let next_href = found.next_page_token.map(|token| {
        format!(
            "{base}&order={}&page_token={}",
            encode(&current),
            encode(&token)
        )
    });
    let available = metric_keys
        .iter()
        .map(|k| format!("metrics.{k}"))
        .chain(param_keys.iter().map(|k| format!("params.{k}")))
        .collect();
    Ok(page(&RunsPage {
        nav,
        experiment_id: experiment_id.to_string(),
        experiment_name: experiment.name,
        filter,
        order: current,
        columns_text,
        error,
        fixed,
        headers,
        rows,
        next_href,
        available,
    }))
}

/// The run, if the viewer may read its experiment (else a not-found, as the API answers).
async fn readable_run(viewer: &Viewer, run_id: &str) -> Result<Run, Error> {
    let run_id = RunId::parse(run_id)?;
    let run = viewer.app.get_run(&run_id).await?;
    if !viewer.may_read(&Resource::experiment(run.info.experiment_id.to_string())) {
        return Err(Error::permission_denied(format!(
            "user '{}' may not read the experiment of run {run_id}",
            viewer.principal.name
        )));
    }
    Ok(run)
}

struct KeyValue {
    key: String,
    value: String,
}

struct MetricRow {
    key: String,
    value: String,
    step: i64,
    time: String,
}

struct ArtifactRow {
    path: String,
    name: String,
    is_dir: bool,
    size: String,
}

struct DatasetRow {
    name: String,
    digest: String,
    context: String,
    source: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    nav: Nav,
    id: String,
    name: String,
    experiment_id: String,
    status: String,
    started: String,
    ended: String,
    user: String,
    params: Vec<KeyValue>,
    tags: Vec<KeyValue>,
    system_tags: Vec<KeyValue>,
    metrics: Vec<MetricRow>,
    /// The metric keys, comma-separated, for the chart.
    metric_keys: String,
    datasets: Vec<DatasetRow>,
    artifact_dir: String,
    artifact_parent: Option<String>,
    artifacts: Vec<ArtifactRow>,
    artifact_error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct RunQuery {
    artifacts: Option<String>,
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => String::new(),
        Some(b) if b < 1024 => format!("{b} B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{:.1} MiB", b as f64 / 1024.0 / 1024.0),
    }
}

pub async fn run(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
) -> PageResult {
    let nav = viewer.nav("runs");
    let run = readable_run(&viewer, &id)
        .await
        .map_err(|e| PageError::new(&nav, e))?;
    let info = &run.info;
    let (tags, system_tags): (Vec<_>, Vec<_>) = run
        .data
        .tags
        .iter()
        .map(|t| KeyValue {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .partition(|t| !t.key.starts_with("mlflow."));
    let mut metrics: Vec<MetricRow> = run
        .data
        .metrics
        .iter()
        .map(|m| MetricRow {
            key: m.key.clone(),
            value: number(m.value),
            step: m.step,
            time: time(m.timestamp),
        })
        .collect();
    metrics.sort_by(|a, b| a.key.cmp(&b.key));
    let metric_keys = metrics
        .iter()
        .map(|m| m.key.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let dir = query
        .artifacts
        .as_deref()
        .map(|p| p.trim_matches('/').to_owned())
        .unwrap_or_default();
    let (artifacts, artifact_error) = match viewer
        .app
        .list_run_artifacts(&info.run_id, Some(dir.as_str()).filter(|d| !d.is_empty()))
        .await
    {
        Ok((_, files)) => (
            files
                .into_iter()
                .map(|f| ArtifactRow {
                    name: f.path.rsplit('/').next().unwrap_or(&f.path).to_owned(),
                    path: f.path,
                    is_dir: f.is_dir,
                    size: size(f.size),
                })
                .collect(),
            None,
        ),
        // Runs whose artifacts live elsewhere (s3:// logged by a client directly) list here
        // only through their own store.
        Err(Error::InvalidParameter(message)) => (Vec::new(), Some(message)),
        Err(other) => return Err(PageError::new(&nav, other)),
    };
    let artifact_parent = (!dir.is_empty()).then(|| {
        dir.rsplit_once('/')
            .map_or_else(String::new, |(parent, _)| parent.to_owned())
    });
    let datasets = run
        .inputs
        .dataset_inputs
        .iter()
        .map(|input| DatasetRow {
            name: input.dataset.name.clone(),
            digest: input.dataset.digest.clone(),
            context: input
                .tags
                .iter()
                .find(|t| t.key == "mlflow.data.context")
                .map_or_else(String::new, |t| t.value.clone()),
            source: input.dataset.source_type.clone(),
        })
        .collect();
    Ok(page(&RunPage {
        nav,
        id: info.run_id.to_string(),
        name: info.run_name.clone(),
        experiment_id: info.experiment_id.to_string(),
        status: info.status.as_str().to_owned(),
        started: time(info.start_time),
        ended: info.end_time.map_or_else(|| "—".to_owned(), time),
        user: info.user_id.clone(),
        params: run
            .data
            .params
            .iter()
            .map(|p| KeyValue {
                key: p.key.clone(),
                value: p.value.clone(),
            })
            .collect(),
        tags,
        system_tags,
        metrics,
        metric_keys,
        datasets,
        artifact_dir: dir,
        artifact_parent,
        artifacts,
        artifact_error,
    }))
}

#[derive(Deserialize)]
pub struct MetricsQuery {
    /// Comma-separated metric keys (MLflow's keys cannot hold commas).
    keys: String,
}

/// Evenly thinned to at most `max` points, the last one always kept.
fn thin<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let stride = points.len().div_ceil(max - 1);
    let mut out: Vec<T> = points.iter().step_by(stride).cloned().collect();
    if !(points.len() - 1).is_multiple_of(stride) {
        out.push(points[points.len() - 1].clone());
    }
    out
}

/// Metric histories for charts: `{key: {step: [...], time: [...], value: [...]}}`.
pub async fn metrics_json(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> Response {
    let run = match readable_run(&viewer, &id).await {
        Ok(run) => run,
        Err(error) => return json_error(error),
    };
    let mut out = serde_json::Map::new();
    for key in query
        .keys
        .split(',')
        .filter(|k| !k.is_empty())
        .take(MAX_KEYS)
    {
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match viewer
                .app
                .get_metric_history(&run.info.run_id, key, Some(100_000), token.as_deref())
                .await
            {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(error) => return json_error(error),
            };
            points.extend(
                page.metrics
                    .into_iter()
                    .map(|m| (m.step, m.timestamp, m.value)),
            );
            token = page.next.map(|cursor| cursor.encode());
            if token.is_none() || points.len() >= MAX_READ {
                break;
            }
        }
        points.sort_by_key(|p| (p.0, p.1));
        let points = thin(&points, MAX_POINTS);
        // JSON has no NaN: a gap in the line instead.
        let finite = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        out.insert(
            key.to_owned(),
            json!({
                "step": points.iter().map(|p| p.0).collect::<Vec<_>>(),
                "time": points.iter().map(|p| p.1).collect::<Vec<_>>(),
                "value": points.iter().map(|p| finite(p.2)).collect::<Vec<_>>(),
            }),
        );
    }
    let mut response = Json(Value::Object(out)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn json_error(error: Error) -> Response {
    let status = match error {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::InvalidParameter(_) => StatusCode::BAD_REQUEST,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "a console request failed");
        "the server failed; its log says why".to_owned()
    } else {
        error.to_string()
    };
    (status, Json(json!({ "message": message }))).into_response()
}

#[derive(Deserialize)]
pub struct ArtifactQuery {
    path: String,
}

/// An artifact's first bytes for a preview: images as themselves, everything else as plain
/// text, never as HTML or script (sandboxed, no sniffing).
pub async fn artifact(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<ArtifactQuery>,
) -> Response {
    let run = match readable_run(&viewer, &id).await {
        Ok(run) => run,
        Err(error) => return json_error(error),
    };
    let object = match slipway_app::artifacts::proxied_path(&run.info.artifact_uri)
        .and_then(|root| root.join(query.path.trim_matches('/')))
    {
        Ok(path) => viewer.app.get_artifact(path.as_str()).await,
        Err(error) => Err(error),
    };
    let object = match object {
        Ok(Some(object)) => object,
        Ok(None) => return json_error(Error::not_found(format!("no artifact '{}'", query.path))),
        Err(error) => return json_error(error),
    };
    let mut body = Vec::new();
    let mut stream = object.body;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                let room = MAX_PREVIEW as usize - body.len();
                body.extend_from_slice(&bytes[..bytes.len().min(room)]);
                if body.len() as u64 >= MAX_PREVIEW {
                    break;
                }
            }
            Err(error) => {
                return json_error(Error::internal("reading an artifact for a preview", error));
            }
        }
    }
    let lower = query.path.to_ascii_lowercase();
    let content_type = if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        "image/jpeg"
    } else if lower.ends_with(".gif") {
        "image/gif"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if let Ok(value) = HeaderValue::from_str(&object.size.to_string()) {
        headers.insert("x-artifact-size", value);
    }
    response
}

struct CompareRun {
    id: String,
    name: String,
}

struct DiffRow {
    key: String,
    values: Vec<String>,
    differs: bool,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Nav,
    runs: Vec<CompareRun>,
    run_ids: String,
    params: Vec<DiffRow>,
    metrics: Vec<DiffRow>,
    metric_keys: String,
    /// Parallel coordinates: `{axes: [{name, values: [per run]}], runs: [names]}`.
    parallel: String,
}

#[derive(Deserialize)]
pub struct CompareQuery {
    /// Comma-separated run ids.
    runs: String,
}

pub async fn compare(viewer: Viewer, Query(query): Query<CompareQuery>) -> PageResult {
    let nav = viewer.nav("runs");
    let ids: Vec<&str> = query
        .runs
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.len() < 2 || ids.len() > MAX_COMPARED {
        return Err(PageError::new(
            &nav,
            Error::invalid(format!(
                "choose between 2 and {MAX_COMPARED} runs to compare (got {})",
                ids.len()
            )),
        ));
    }
    let mut runs = Vec::new();
    for id in ids {
        runs.push(
            readable_run(&viewer, id)
                .await
                .map_err(|e| PageError::new(&nav, e))?,
        );
    }
    let diff = |values: Vec<BTreeMap<String, String>>| -> Vec<DiffRow> {
        let keys: BTreeSet<&String> = values.iter().flat_map(|m| m.keys()).collect();
        keys.into_iter()
            .map(|key| {
                let row: Vec<String> = values
                    .iter()
                    .map(|m| m.get(key).cloned().unwrap_or_default())
                    .collect();
                DiffRow {
                    key: key.clone(),
                    differs: row.iter().any(|v| v != &row[0]),
                    values: row,
                }
            })
            .collect()
    };
    let params = diff(
        runs.iter()
            .map(|r| {
                r.data
                    .params
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect()
            })
            .collect(),
    );
    let metrics = diff(
        runs.iter()
            .map(|r| {
                r.data
                    .metrics
                    .iter()
                    .map(|m| (m.key.clone(), number(m.value)))
                    .collect()
            })
            .collect(),
    );
    let metric_keys = metrics
        .iter()
        .map(|m| m.key.as_str())
        .collect::<Vec<_>>()
        .join(",");
    // Axes: params that differ (numbers on a scale, others as categories), then metrics.
    let mut axes = Vec::new();
    for row in params.iter().filter(|r| r.differs) {
        axes.push(json!({"name": format!("params.{}", row.key), "values": row.values}));
    }
    for key in metrics.iter().map(|m| &m.key) {
        let values: Vec<Value> = runs
            .iter()
            .map(|r| {
                r.data
                    .metrics
                    .iter()
                    .find(|m| &m.key == key)
                    .filter(|m| m.value.is_finite())
                    .map_or(Value::Null, |m| json!(m.value))
            })
            .collect();
        axes.push(json!({"name": format!("metrics.{key}"), "values": values}));
    }
    let compared: Vec<CompareRun> = runs
        .iter()
        .map(|r| CompareRun {
            id: r.info.run_id.to_string(),
            name: if r.info.run_name.is_empty() {
                r.info.run_id.to_string()
            } else {
                r.info.run_name.clone()
            },
        })
        .collect();
    let parallel = view::script_json(&json!({
        "axes": axes,
        "runs": compared.iter().map(|r| &r.name).collect::<Vec<_>>(),
    }));
    Ok(page(&ComparePage {
        nav,
        run_ids: compared
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(","),
        runs: compared,
        params,
        metrics,
        metric_keys,
        parallel,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_parse_from_their_names() {
        let c = Column::parse("metrics.val loss").unwrap();
        assert_eq!((c.kind, c.key.as_str()), ("metrics", "val loss"));
        assert_eq!(c.order_key(), "metrics.`val loss`");
        assert_eq!(Column::parse("param.alpha").unwrap().name(), "params.alpha");
        assert!(Column::parse("attributes.x").is_none());
        assert!(Column::parse("metrics.").is_none());
    }

    #[test]
    fn thinning_keeps_the_ends_and_the_bound() {
        let points: Vec<i32> = (0..10_001).collect();
        let thinned = thin(&points, 100);
        assert!(thinned.len() <= 101, "{}", thinned.len());
        assert_eq!(thinned[0], 0);
        assert_eq!(*thinned.last().unwrap(), 10_000);
        assert_eq!(thin(&points[..10], 100).len(), 10);
    }
}
