//! Where `slipway import mlflow` reads and `slipway export mlflow` copies from: a tracking
//! server over MLflow's REST API, an MLflow backend database with the place its artifacts are
//! kept, or slipway's own store. All three answer in MLflow's REST shapes (`Run`,
//! `Experiment`, `LoggedModel`, `RegisteredModel`, `ModelVersion` as JSON), so one copying
//! routine serves every pair.

use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use slipway_app::App;
use slipway_core::artifact_path::ArtifactPath;
use slipway_core::ports::{ArtifactStore, ByteStream, HistoryCursor};
use slipway_core::tracking::{ExperimentId, RunId, Tag, ViewType};
use slipway_store::mlflow::MlflowDb;

use crate::remote::{Client, urlencode};

pub(crate) enum Source {
    /// A tracking server (MLflow's, or another slipway).
    Server(Client),
    /// MLflow's database; `artifacts` is where its server kept proxied artifacts
    /// (`mlflow-artifacts:/` URIs), as given with `--artifacts`.
    Database {
        db: MlflowDb,
        artifacts: Option<Arc<dyn ArtifactStore>>,
    },
    /// slipway's own metadata and artifact stores.
    Slipway {
        app: App,
        artifacts: Arc<dyn ArtifactStore>,
    },
}

/// Pages through a search: `call(page_token)` gives one page; `items` picks its list.
pub(crate) async fn all_pages<F, Fut>(mut call: F, items: &str) -> anyhow::Result<Vec<Value>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = call(token.take()).await?;
        found.extend(page[items].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str().filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(found),
        }
    }
}

/// What was found at the source and what the target holds after a copy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) experiments: u64,
    pub(crate) runs: u64,
    pub(crate) params: u64,
    pub(crate) tags: u64,
    pub(crate) metric_points: u64,
    pub(crate) datasets: u64,
    pub(crate) logged_models: u64,
    pub(crate) artifacts: u64,
    pub(crate) artifact_bytes: u64,
    pub(crate) registered_models: u64,
    pub(crate) versions: u64,
    pub(crate) stages: u64,
    pub(crate) aliases: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, other: &Counts) {
        self.experiments += other.experiments;
        self.runs += other.runs;
        self.params += other.params;
        self.tags += other.tags;
        self.metric_points += other.metric_points;
        self.datasets += other.datasets;
        self.logged_models += other.logged_models;
        self.artifacts += other.artifacts;
        self.artifact_bytes += other.artifact_bytes;
        self.registered_models += other.registered_models;
        self.versions += other.versions;
        self.stages += other.stages;
        self.aliases += other.aliases;
    }
}

pub(crate) fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

pub(crate) fn i64_of(value: &Value, key: &str) -> i64 {
    value[key]
        .as_i64()
        .or_else(|| value[key].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

pub(crate) fn tags_of(value: &Value) -> Vec<Tag> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| Tag {
            key: str_of(t, "key"),
            value: str_of(t, "value"),
        })
        .collect()
}

/// A metric value as MLflow's JSON has it: a number, or "NaN" / "Infinity" / "-Infinity".
pub(crate) fn metric_value(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => match s.as_str() {
            "Infinity" | "inf" => f64::INFINITY,
            "-Infinity" | "-inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or(f64::NAN),
        },
        _ => f64::NAN,
    }
}

/// A source or target as it may be printed: without a password, in a URL's user part or a
/// database URI's.
pub(crate) fn redacted(raw: &str) -> String {
    if raw.starts_with("http://") || raw.starts_with("https://") {
        return match reqwest::Url::parse(raw) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.as_str().trim_end_matches('/').to_owned()
            }
            Err(_) => raw.to_owned(),
        };
    }
    match slipway_store::BackendUri::parse(raw) {
        Ok(uri) => uri.redacted(),
        Err(_) => "(an unreadable URI)".to_owned(),
    }
}

/// The experiments named in `--experiment` (all of them when none is), or which name `place`
/// lacks.
pub(crate) fn chosen_experiments(
    all: Vec<Value>,
    names: &[String],
    place: &str,
) -> anyhow::Result<Vec<Value>> {
    let chosen: Vec<Value> = all
        .into_iter()
        .filter(|e| names.is_empty() || names.contains(&str_of(e, "name")))
        .collect();
    if let Some(missing) = names
        .iter()
        .find(|name| !chosen.iter().any(|e| &str_of(e, "name") == *name))
    {
        bail!("{place} has no experiment named '{missing}'");
    }
    Ok(chosen)
}

/// A bar counting `what` (runs), drawn only on a terminal.
pub(crate) fn count_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Pages through one of slipway's own searches, each item in its wire shape.
async fn app_pages<T, F, Fut, J>(mut call: F, mut to_json: J) -> anyhow::Result<Vec<Value>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = slipway_core::Result<slipway_core::paging::Page<T>>>,
    J: FnMut(&T) -> anyhow::Result<Value>,
{
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = call(token.take()).await?;
        for item in &page.items {
            found.push(to_json(item)?);
        }
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(found),
        }
    }
}

/// Pages through a GET search of a tracking server (`path` has its query already).
async fn get_pages(client: &Client, path: String, items: &str) -> anyhow::Result<Vec<Value>> {
    all_pages(
        |token| {
            let mut path = path.clone();
            if let Some(token) = token {
                path.push_str(&format!("&page_token={}", urlencode(&token)));
            }
            let client = client.clone();
            async move { client.call(reqwest::Method::GET, &path, None).await }
        },
        items,
    )
    .await
}

fn json_of<T: serde::Serialize>(value: T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(value)?)
}

impl Source {
    /// `--from`: a server's URL, or a backend store URI with `--artifacts` for its files.
    pub(crate) async fn open(from: &str, artifacts: Option<&str>) -> anyhow::Result<Source> {
        if from.starts_with("http://") || from.starts_with("https://") {
            if artifacts.is_some() {
                bail!(
                    "--artifacts is for importing from MLflow's database; a server at {} serves its own artifacts",
                    redacted(from)
                );
            }
            return Ok(Source::Server(Client::for_uri(Some(from.to_owned()))?));
        }
        let db = MlflowDb::open(from).await.with_context(|| {
            format!(
                "--from '{}': give a tracking server's http(s):// URL or MLflow's backend store URI (sqlite:///mlflow.db, postgresql://...)",
                redacted(from)
            )
        })?;
        let artifacts = match artifacts {
            Some(raw) => Some(open_existing(raw).await?),
            None => None,
        };
        Ok(Source::Database { db, artifacts })
    }

    pub(crate) async fn close(&self) {
        if let Source::Database { db, .. } = self {
            db.close().await;
        }
    }

    /// Every experiment, deleted ones too.
    pub(crate) async fn experiments(&self) -> anyhow::Result<Vec<Value>> {
        match self {
            Source::Server(client) => {
                all_pages(
                    |token| {
                        client.call(
                        reqwest::Method::POST,
                        "/api/2.0/mlflow/experiments/search",
                        Some(json!({"max_results": 1000, "view_type": "ALL", "page_token": token})),
                    )
                    },
                    "experiments",
                )
                .await
            }
            Source::Database { db, .. } => Ok(db.experiments().await?),
            Source::Slipway { app, .. } => {
                app_pages(
                    |token| async move {
                        app.search_experiments(
                            None,
                            &[],
                            ViewType::All,
                            Some(1000),
                            token.as_deref(),
                        )
                        .await
                    },
                    |e| json_of(slipway_api::dto::ExperimentOut::from(e)),
                )
                .await
            }
        }
    }

    /// The runs of one experiment (by the source's id), whole, deleted ones too.
    pub(crate) async fn runs(&self, experiment_id: &str) -> anyhow::Result<Vec<Value>> {
        match self {
            Source::Server(client) => {
                all_pages(
                    |token| {
                        client.call(
                            reqwest::Method::POST,
                            "/api/2.0/mlflow/runs/search",
                            Some(json!({
                                "experiment_ids": [experiment_id],
                                "run_view_type": "ALL",
                                "max_results": 1000,
                                "page_token": token,
                            })),
                        )
                    },
                    "runs",
                )
                .await
            }
            Source::Database { db, .. } => Ok(db.runs(experiment_number(experiment_id)?).await?),
            Source::Slipway { app, .. } => {
                let id = ExperimentId::parse(experiment_id)?;
                let order = ["attributes.start_time ASC".to_owned()];
                let order = &order;
                app_pages(
                    |token| async move {
                        app.search_runs(slipway_app::tracking::SearchRuns {
                            experiment_ids: vec![id],
                            filter: None,
                            view_type: ViewType::All,
                            max_results: Some(1000),
                            order_by: order,
                            page_token: token.as_deref(),
                        })
                        .await
                    },
                    |run| json_of(slipway_api::dto::RunOut::from(run)),
                )
                .await
            }
        }
    }

    /// One metric's whole history.
    pub(crate) async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
    ) -> anyhow::Result<Vec<Value>> {
        match self {
            Source::Server(client) => get_pages(
                client,
                format!(
                    "/api/2.0/mlflow/metrics/get-history?run_id={}&metric_key={}&max_results=25000",
                    urlencode(run_id),
                    urlencode(key)
                ),
                "metrics",
            )
            .await,
            Source::Database { db, .. } => Ok(db.metric_history(run_id, key).await?),
            Source::Slipway { app, .. } => {
                let run_id = RunId::parse(run_id)?;
                let mut found = Vec::new();
                let mut cursor = HistoryCursor::default();
                while let Some(page) = app
                    .store()
                    .get_metric_history(&run_id, key, cursor, 25_000)
                    .await?
                {
                    for metric in &page.metrics {
                        found.push(json_of(slipway_api::dto::MetricOut::from(metric))?);
                    }
                    match page.next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
                Ok(found)
            }
        }
    }

    /// MLflow 3's logged models of one experiment.
    pub(crate) async fn logged_models(&self, experiment_id: &str) -> anyhow::Result<Vec<Value>> {
        match self {
            Source::Server(client) => {
                match all_pages(
                    |token| {
                        client.call(
                            reqwest::Method::POST,
                            "/api/2.0/mlflow/logged-models/search",
                            Some(json!({
                                "experiment_ids": [experiment_id],
                                "max_results": 100,
                                "page_token": token,
                            })),
                        )
                    },
                    "models",
                )
                .await
                {
                    Ok(models) => Ok(models),
                    // An MLflow 2 server has no logged models and no such route.
                    Err(error) if error.to_string().contains("(404") => Ok(Vec::new()),
                    Err(error) => Err(error),
                }
            }
            Source::Database { db, .. } => {
                Ok(db.logged_models(experiment_number(experiment_id)?).await?)
            }
            Source::Slipway { app, .. } => {
                let id = ExperimentId::parse(experiment_id)?;
                app_pages(
                    |token| async move {
                        app.search_logged_models(vec![id], None, &[], Some(100), token.as_deref())
                            .await
                    },
                    |model| json_of(slipway_api::dto::LoggedModelOut::from(model)),
                )
                .await
            }
        }
    }

    /// Every registered model, with its tags and aliases.
    pub(crate) async fn registered_models(&self) -> anyhow::Result<Vec<Value>> {
        match self {
            Source::Server(client) => {
                get_pages(
                    client,
                    "/api/2.0/mlflow/registered-models/search?max_results=1000".to_owned(),
                    "registered_models",
                )
                .await
            }
            Source::Database { db, .. } => Ok(db.registered_models().await?),
            Source::Slipway { app, .. } => {
                app_pages(
                    |token| async move {
                        app.search_registered_models(None, &[], Some(1000), token.as_deref())
                            .await
                    },
                    |model| json_of(slipway_api::dto::RegisteredModelOut::from(model)),
                )
                .await
            }
        }
    }

    /// A registered model's versions, in number order.
    pub(crate) async fn model_versions(&self, name: &str) -> anyhow::Result<Vec<Value>> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let mut versions = match self {
            Source::Server(client) => {
                get_pages(
                    client,
                    format!(
                        "/api/2.0/mlflow/model-versions/search?max_results=10000&filter={}",
                        urlencode(&filter)
                    ),
                    "model_versions",
                )
                .await?
            }
            Source::Database { db, .. } => db.model_versions(name).await?,
            Source::Slipway { app, .. } => {
                let filter = &filter;
                app_pages(
                    |token| async move {
                        app.search_model_versions(Some(filter), &[], Some(10_000), token.as_deref())
                            .await
                    },
                    |version| json_of(slipway_api::dto::ModelVersionOut::from(version)),
                )
                .await?
            }
        };
        versions.sort_by_key(|v| {
            v["version"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| v["version"].as_i64())
                .unwrap_or_default()
        });
        Ok(versions)
    }

    /// The files of a run.
    pub(crate) async fn run_artifacts(&self, run: &Value) -> anyhow::Result<Artifacts> {
        let info = &run["info"];
        let uri = info["artifact_uri"].as_str().unwrap_or_default();
        match self {
            // A server reads its own storage, wherever that is.
            Source::Server(client) => Ok(Artifacts::ServerRun {
                client: client.clone(),
                run_id: info["run_id"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => {
                self.artifacts_at(uri, info["run_id"].as_str().unwrap_or_default())
                    .await
            }
        }
    }

    /// The files of a logged model.
    pub(crate) async fn logged_model_artifacts(&self, model: &Value) -> anyhow::Result<Artifacts> {
        let info = &model["info"];
        self.artifacts_at(
            info["artifact_uri"].as_str().unwrap_or_default(),
            info["model_id"].as_str().unwrap_or_default(),
        )
        .await
    }

    /// Files under an artifact URI as MLflow writes them: `mlflow-artifacts:/PATH` (behind a
    /// server's proxy), `s3://BUCKET/PATH`, `file:///PATH` or a plain path.
    ///
    /// MLflow puts an owner's files in a folder named after it (`.../RUN_ID/artifacts`,
    /// `.../models/MODEL_ID/artifacts`); a location read straight from a database must end so,
    /// or a crafted database could have the import copy any file the operator can read (or
    /// any bucket their credentials reach) into a run anyone with access to it can download.
    async fn artifacts_at(&self, uri: &str, owner: &str) -> anyhow::Result<Artifacts> {
        if uri.is_empty() {
            return Ok(Artifacts::None);
        }
        if owner.is_empty()
            || !uri
                .trim_end_matches('/')
                .ends_with(&format!("/{owner}/artifacts"))
        {
            bail!(
                "{owner}'s artifact location {uri} is not its own folder (.../{owner}/artifacts), as MLflow makes it; refusing to read it"
            );
        }
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts://host:port/PATH` names the server; the path is what counts.
            let path = match rest.strip_prefix("//") {
                Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
                None => rest,
            }
            .trim_matches('/')
            .to_owned();
            return match self {
                Source::Server(client) => Ok(Artifacts::Proxy {
                    client: client.clone(),
                    root: path,
                }),
                Source::Slipway { artifacts, .. } => Ok(Artifacts::Store {
                    store: artifacts.clone(),
                    root: path,
                }),
                Source::Database {
                    artifacts: Some(store),
                    ..
                } => Ok(Artifacts::Store {
                    store: store.clone(),
                    root: path,
                }),
                Source::Database {
                    artifacts: None, ..
                } => bail!(
                    "artifacts at {uri} were stored through an MLflow server's artifact proxy: give --artifacts with the folder or bucket that server kept them in (its --artifacts-destination)"
                ),
            };
        }
        if uri.starts_with("s3://") {
            return Ok(Artifacts::Store {
                store: open_existing(uri).await?,
                root: String::new(),
            });
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if path.starts_with('/') {
            if !std::path::Path::new(path).is_dir() {
                // MLflow makes a run's artifact folder with its first artifact.
                return Ok(Artifacts::None);
            }
            return Ok(Artifacts::Store {
                store: open_existing(path).await?,
                root: String::new(),
            });
        }
        bail!(
            "artifact location '{uri}' is not one slipway can read: mlflow-artifacts:/, s3://, file:// or an absolute path"
        )
    }
}

/// An artifact store to read, which must exist: a folder is not made.
async fn open_existing(raw: &str) -> anyhow::Result<Arc<dyn ArtifactStore>> {
    let destination = crate::config::artifact_folder(raw)?;
    if let crate::config::ArtifactsDestination::Folder(path) = &destination
        && !path.is_dir()
    {
        bail!("there is no artifact folder at {}", path.display());
    }
    Ok(Arc::new(destination.open().await?))
}

fn experiment_number(id: &str) -> anyhow::Result<i64> {
    id.parse()
        .with_context(|| format!("MLflow gave the experiment id '{id}', which is not a number"))
}

/// Where one run's or logged model's files are, and how to read them.
pub(crate) enum Artifacts {
    /// Nothing was ever stored.
    None,
    /// Through a tracking server's run artifact routes (`/artifacts/list`, `/get-artifact`).
    ServerRun { client: Client, run_id: String },
    /// Through a tracking server's artifact proxy, under `root`.
    Proxy { client: Client, root: String },
    /// In an artifact store, under `root`.
    Store {
        store: Arc<dyn ArtifactStore>,
        root: String,
    },
}

fn join(root: &str, path: &str) -> String {
    if root.is_empty() {
        path.to_owned()
    } else {
        format!("{root}/{path}")
    }
}

fn encode_path(path: &str) -> String {
    path.split('/').map(urlencode).collect::<Vec<_>>().join("/")
}

fn size_of(file: &Value) -> u64 {
    file["file_size"]
        .as_u64()
        .or_else(|| file["file_size"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn response_stream(response: reqwest::Response) -> ByteStream {
    Box::pin(
        response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other)),
    )
}

impl Artifacts {
    /// Every file, by its path under the root, with its size, in path order.
    pub(crate) async fn list(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut files = Vec::new();
        match self {
            Artifacts::None => {}
            Artifacts::ServerRun { client, run_id } => {
                let mut folders: Vec<Option<String>> = vec![None];
                while let Some(folder) = folders.pop() {
                    let mut path = format!(
                        "/api/2.0/mlflow/artifacts/list?run_id={}",
                        urlencode(run_id)
                    );
                    if let Some(folder) = &folder {
                        path.push_str(&format!("&path={}", urlencode(folder)));
                    }
                    let listing = client.call(reqwest::Method::GET, &path, None).await?;
                    for file in listing["files"].as_array().into_iter().flatten() {
                        let name = file["path"].as_str().unwrap_or_default().to_owned();
                        if file["is_dir"].as_bool().unwrap_or(false) {
                            folders.push(Some(name));
                        } else {
                            files.push((name, size_of(file)));
                        }
                    }
                }
            }
            Artifacts::Proxy { client, root } => {
                let mut folders = vec![String::new()];
                while let Some(folder) = folders.pop() {
                    let path = format!(
                        "/api/2.0/mlflow-artifacts/artifacts?path={}",
                        urlencode(&join(root, &folder))
                    );
                    let listing = client.call(reqwest::Method::GET, &path, None).await?;
                    for file in listing["files"].as_array().into_iter().flatten() {
                        // The proxy answers with names relative to the folder listed.
                        let raw = file["path"].as_str().unwrap_or_default();
                        let name = raw.rsplit('/').next().unwrap_or(raw);
                        let full = join(&folder, name);
                        if file["is_dir"].as_bool().unwrap_or(false) {
                            folders.push(full);
                        } else {
                            files.push((full, size_of(file)));
                        }
                    }
                }
            }
            Artifacts::Store { store, root } => {
                let prefix = if root.is_empty() {
                    String::new()
                } else {
                    format!("{root}/")
                };
                for (path, size) in crate::backup::walk_under(store.as_ref(), root).await? {
                    let relative = path.strip_prefix(&prefix).unwrap_or(&path).to_owned();
                    files.push((relative, size));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// One file's bytes, streamed.
    pub(crate) async fn open(&self, path: &str) -> anyhow::Result<ByteStream> {
        match self {
            Artifacts::None => bail!("there is no artifact {path}"),
            Artifacts::ServerRun { client, run_id } => Ok(response_stream(
                client
                    .get_stream(&format!(
                        "/get-artifact?path={}&run_uuid={}",
                        urlencode(path),
                        urlencode(run_id)
                    ))
                    .await?,
            )),
            Artifacts::Proxy { client, root } => Ok(response_stream(
                client
                    .get_stream(&format!(
                        "/api/2.0/mlflow-artifacts/artifacts/{}",
                        encode_path(&join(root, path))
                    ))
                    .await?,
            )),
            Artifacts::Store { store, root } => {
                let at = ArtifactPath::parse(&join(root, path))
                    .map_err(|e| anyhow::anyhow!("artifact {path}: {e}"))?;
                match store.get(&at).await? {
                    Some(object) => Ok(object.body),
                    None => bail!("artifact {path} is listed but cannot be read"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_location_outside_its_owner_s_folder_is_refused_before_it_is_read() {
        let source =
            Source::Server(Client::for_uri(Some("http://127.0.0.1:9".to_owned())).unwrap());
        for uri in ["/etc", "file:///home/me/.ssh", "s3://other-bucket/secrets"] {
            let refused = source.artifacts_at(uri, "abc123").await.err().unwrap();
            assert!(refused.to_string().contains("refusing"), "{uri}: {refused}");
        }
        let proxied = source
            .artifacts_at("mlflow-artifacts:/1/abc123/artifacts", "abc123")
            .await
            .unwrap();
        assert!(matches!(proxied, Artifacts::Proxy { root, .. } if root == "1/abc123/artifacts"));
        // MLflow makes a run's folder with its first file: none yet is no files.
        let empty = source
            .artifacts_at("/nonexistent/abc123/artifacts", "abc123")
            .await
            .unwrap();
        assert!(matches!(empty, Artifacts::None));
    }

    #[test]
    fn passwords_never_reach_the_output() {
        assert_eq!(
            redacted("postgresql://mlflow:hunter2@db:5432/mlflow"),
            "postgres://mlflow@db:5432/mlflow"
        );
        assert_eq!(
            redacted("https://me:hunter2@mlflow.internal"),
            "https://me:***@mlflow.internal"
        );
        assert_eq!(redacted("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert!(!redacted("mysql://a:hunter2@x/y").contains("hunter2"));
    }

    #[test]
    fn metric_values_read_as_mlflow_writes_them() {
        assert!(metric_value(&json!("NaN")).is_nan());
        assert_eq!(metric_value(&json!("Infinity")), f64::INFINITY);
        assert_eq!(metric_value(&json!("-Infinity")), f64::NEG_INFINITY);
        assert_eq!(metric_value(&json!(0.25)), 0.25);
    }
}
