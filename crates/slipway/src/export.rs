//! `slipway export mlflow --to URL`: slipway's experiments, runs (names, users, times, status,
//! params, tags, whole metric histories, dataset inputs, artifacts), logged models, registered
//! models, versions (numbers, sources, stages, tags), and aliases, written into an MLflow
//! tracking server through its REST API, so that nobody is locked in.
//!
//! MLflow makes its own run and logged model ids, so each copy carries its original id as a
//! tag (`slipway.source_run_id`, `slipway.source_model_id`), version sources are rewritten to
//! the new ids, and a second export finds what the first made: it is idempotent and resumes
//! where one was cut off (a run gets its status last, as in the import). Version numbers are
//! kept: a number slipway never had, or deleted, is taken in MLflow by a version made and
//! deleted at once, as MLflow keeps a deleted version's number.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use slipway_app::App;
use slipway_core::ports::ArtifactStore;

use crate::mlflow_source::{
    Artifacts, Counts, Source, all_pages, chosen_experiments, i64_of, str_of, tags_of,
};
use crate::remote::{Client, Found, urlencode};

const SOURCE_RUN_TAG: &str = "slipway.source_run_id";
const SOURCE_MODEL_TAG: &str = "slipway.source_model_id";

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    target: ExportTarget,
}

#[derive(Debug, Subcommand)]
enum ExportTarget {
    /// Into an MLflow tracking server, through its REST API (credentials from the
    /// MLFLOW_TRACKING_* variables, as the mlflow client takes them). The server must serve
    /// artifacts (MLflow's default, --serve-artifacts).
    Mlflow(MlflowArgs),
    /// The platform's state as YAML documents, one per object: promotion policies,
    /// deployments, SLOs, alert receivers, route and rules, retraining triggers and
    /// permissions (over the HTTP API, as an admin). Keep them in git to start from what runs.
    State(StateArgs),
}

#[derive(Debug, Args)]
struct StateArgs {
    #[command(flatten)]
    server: crate::remote::ServerArgs,
    /// Write the documents to this file (default: standard output).
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
    /// Print `{"documents": [...]}` as JSON instead of YAML.
    #[arg(long)]
    json: bool,
}

/// `slipway export state`: the server's documents, as one YAML stream (`---` between them).
async fn state(args: StateArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let answer = client
        .call(reqwest::Method::GET, "/api/slipway/v1/state", None)
        .await?;
    let documents = answer["documents"].as_array().cloned().unwrap_or_default();
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&answer)?)
    } else {
        let mut text = String::new();
        for document in &documents {
            text.push_str("---\n");
            text.push_str(&yaml_serde::to_string(document).context("writing YAML")?);
        }
        text
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} documents to {}", documents.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[derive(Debug, Args)]
struct MlflowArgs {
    /// The MLflow tracking server to write into, e.g. http://mlflow.internal:5000.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Only these experiments, by name (repeat the flag; default: all, and the registry).
    #[arg(long = "experiment", value_name = "NAME")]
    experiments: Vec<String>,
    /// The metadata store to export from, as for `slipway server`.
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI")]
    backend_store_uri: Option<String>,
    /// The artifact store to export from, as for `slipway server`.
    #[arg(long, env = "SLIPWAY_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    /// Runs exported at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Option<&Path>, args: ExportArgs) -> anyhow::Result<()> {
    match args.target {
        ExportTarget::Mlflow(args) => mlflow(config, args).await,
        ExportTarget::State(args) => state(args).await,
    }
}

fn post(client: &Client, path: &str, body: Value) -> impl Future<Output = anyhow::Result<Value>> {
    client.call(reqwest::Method::POST, path, Some(body))
}

/// A path under a `mlflow-artifacts:` URI, for the proxy.
fn proxy_root(uri: &str, what: &str) -> anyhow::Result<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:").with_context(|| {
        format!(
            "MLflow put {what}'s artifacts at {uri}, which its REST API cannot write: start the MLflow server with --serve-artifacts (its default) and an --artifacts-destination"
        )
    })?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    Ok(path.trim_matches('/').to_owned())
}

fn encode_path(path: &str) -> String {
    path.split('/').map(urlencode).collect::<Vec<_>>().join("/")
}

async fn mlflow(config: Option<&Path>, args: MlflowArgs) -> anyhow::Result<()> {
    let target = Client::for_uri(Some(args.to.clone()))?;
    let (uri, artifacts) =
        crate::backup::stores(config, args.backend_store_uri, args.artifacts_destination)?;
    let options = slipway_store::StoreOptions {
        create_if_missing: false,
        ..slipway_store::StoreOptions::default()
    };
    let store = slipway_store::SqlStore::open(&uri, options)
        .await
        .with_context(|| format!("opening the metadata store {}", uri.redacted()))?;
    let artifact_store: Arc<dyn ArtifactStore> = Arc::new(artifacts.open().await?);
    let app = App::new(
        Arc::new(store.clone()),
        artifact_store.clone(),
        slipway_app::AppSettings::default(),
    )
    .for_caller("slipway-export", None);
    let source = Source::Slipway {
        app,
        artifacts: artifact_store,
    };

    let experiments =
        chosen_experiments(source.experiments().await?, &args.experiments, "slipway")?;

    let mut found = Counts::default();
    let mut run_ids: HashMap<String, String> = HashMap::new();
    let mut model_ids: HashMap<String, String> = HashMap::new();
    let mut exported: Vec<(String, Vec<Value>, Vec<Value>)> = Vec::new();
    let mut skipped = 0u64;
    for experiment in &experiments {
        let runs = source.runs(&str_of(experiment, "experiment_id")).await?;
        let models = source
            .logged_models(&str_of(experiment, "experiment_id"))
            .await?;
        found.experiments += 1;
        let name = str_of(experiment, "name");
        let experiment_id = target.experiment_named(&name).await?;
        // A deleted experiment is filled while active, and deleted again at the end.
        post(
            &target,
            "/api/2.0/mlflow/experiments/restore",
            json!({"experiment_id": experiment_id}),
        )
        .await
        .ok();
        for tag in tags_of(&experiment["tags"]) {
            post(
                &target,
                "/api/2.0/mlflow/experiments/set-experiment-tag",
                json!({"experiment_id": experiment_id, "key": tag.key, "value": tag.value}),
            )
            .await?;
        }
        let existing = existing_runs(&target, &experiment_id).await?;
        let progress = crate::mlflow_source::count_bar(runs.len() as u64, "runs");
        let mut done = futures::stream::iter(runs.iter().map(|run| {
            let (source, target, existing, progress, experiment_id) =
                (&source, &target, &existing, &progress, &experiment_id);
            async move {
                let mut counts = Counts::default();
                let result =
                    export_run(source, target, experiment_id, existing, run, &mut counts).await;
                progress.inc(1);
                result.map(|(id, whole)| (str_of(&run["info"], "run_id"), id, whole, counts))
            }
        }))
        .buffer_unordered(args.jobs.max(1));
        while let Some(result) = done.next().await {
            let (old, new, whole, counts) = result?;
            found.add(&counts);
            skipped += u64::from(whole);
            run_ids.insert(old, new);
        }
        drop(done);
        progress.finish_and_clear();
        let existing_models = existing_logged_models(&target, &experiment_id).await?;
        for model in &models {
            let old = str_of(&model["info"], "model_id");
            let new = export_logged_model(
                &source,
                &target,
                &experiment_id,
                &existing_models,
                &run_ids,
                model,
                &mut found,
            )
            .await
            .with_context(|| format!("exporting logged model {old}"))?;
            model_ids.insert(old, new);
        }
        if str_of(experiment, "lifecycle_stage") == "deleted" && name != "Default" {
            post(
                &target,
                "/api/2.0/mlflow/experiments/delete",
                json!({"experiment_id": experiment_id}),
            )
            .await
            .ok();
        }
        exported.push((experiment_id, runs, models));
    }

    let models = if args.experiments.is_empty() {
        export_registry(&source, &target, &run_ids, &model_ids, &mut found).await?
    } else {
        Vec::new()
    };
    let written = verify(&target, &exported, &run_ids, &model_ids, &models).await?;
    source.close().await;
    store.close().await;
    let matches = written == found;
    if args.json {
        println!(
            "{}",
            json!({"to": crate::mlflow_source::redacted(&args.to), "source": found, "exported": written,
                   "runs_already_whole": skipped, "matches": matches})
        );
    } else {
        println!("{:<18} {:>12} {:>12}", "", "slipway", "MLflow");
        let (a, b) = (serde_json::to_value(found)?, serde_json::to_value(written)?);
        for (key, value) in a.as_object().into_iter().flatten() {
            println!("{key:<18} {:>12} {:>12}", value, b[key]);
        }
        println!("{skipped} runs were already exported whole and were skipped");
    }
    if !matches {
        bail!("the exported counts differ from slipway's (above): run the export again to resume");
    }
    Ok(())
}

/// The target's runs that an earlier export made, by the source run id they carry.
async fn existing_runs(
    target: &Client,
    experiment_id: &str,
) -> anyhow::Result<HashMap<String, Value>> {
    let runs = all_pages(
        |token| {
            post(
                target,
                "/api/2.0/mlflow/runs/search",
                json!({"experiment_ids": [experiment_id], "run_view_type": "ALL",
                       "max_results": 1000, "page_token": token}),
            )
        },
        "runs",
    )
    .await?;
    Ok(runs
        .into_iter()
        .filter_map(|run| {
            let original = tags_of(&run["data"]["tags"])
                .into_iter()
                .find(|t| t.key == SOURCE_RUN_TAG)?;
            Some((original.value, run))
        })
        .collect())
}

/// One run; returns the target's run id and whether it was there whole already.
async fn export_run(
    source: &Source,
    target: &Client,
    experiment_id: &str,
    existing: &HashMap<String, Value>,
    run: &Value,
    found: &mut Counts,
) -> anyhow::Result<(String, bool)> {
    let (info, data) = (&run["info"], &run["data"]);
    let run_id = str_of(info, "run_id");
    let status = str_of(info, "status");
    let end_time = info["end_time"].as_i64().filter(|t| *t > 0);
    let params = data["params"].as_array().cloned().unwrap_or_default();
    let tags = tags_of(&data["tags"]);
    let keys: std::collections::BTreeSet<String> = data["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| str_of(m, "key"))
        .collect();
    found.runs += 1;
    found.params += params.len() as u64;
    found.tags += tags.len() as u64;
    let mut histories = Vec::new();
    for key in &keys {
        let history = source.metric_history(&run_id, key).await?;
        found.metric_points += history.len() as u64;
        histories.push(history);
    }
    let datasets = run["inputs"]["dataset_inputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    found.datasets += datasets.len() as u64;
    let artifacts = source.run_artifacts(run).await?;
    let files = artifacts.list().await?;
    found.artifacts += files.len() as u64;
    found.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();

    let copy = existing.get(&run_id);
    if let Some(copy) = copy
        && str_of(&copy["info"], "status") == status
        && copy["info"]["end_time"].as_i64().filter(|t| *t > 0) == end_time
    {
        return Ok((str_of(&copy["info"], "run_id"), true));
    }
    let (new_id, artifact_uri) = match copy {
        Some(copy) => {
            let id = str_of(&copy["info"], "run_id");
            if str_of(&copy["info"], "status") != "RUNNING" {
                post(
                    target,
                    "/api/2.0/mlflow/runs/update",
                    json!({"run_id": id, "status": "RUNNING"}),
                )
                .await?;
            }
            (id, str_of(&copy["info"], "artifact_uri"))
        }
        None => {
            let created = post(
                target,
                "/api/2.0/mlflow/runs/create",
                json!({
                    "experiment_id": experiment_id,
                    "run_name": str_of(info, "run_name"),
                    "user_id": str_of(info, "user_id"),
                    "start_time": i64_of(info, "start_time"),
                    "tags": [{"key": SOURCE_RUN_TAG, "value": run_id}],
                }),
            )
            .await?;
            (
                str_of(&created["run"]["info"], "run_id"),
                str_of(&created["run"]["info"], "artifact_uri"),
            )
        }
    };
    // Within MLflow's limits per batch: 100 params, 100 tags, 1,000 metric points.
    let tag_values: Vec<Value> = tags
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect();
    let mut batches: Vec<Value> = params
        .chunks(100)
        .map(|chunk| json!({"params": chunk}))
        .chain(tag_values.chunks(100).map(|chunk| json!({"tags": chunk})))
        .collect();
    for history in &histories {
        let points: Vec<Value> = history
            .iter()
            .map(|m| {
                let mut point = json!({"key": m["key"], "value": m["value"],
                                       "timestamp": m["timestamp"], "step": m["step"]});
                for optional in ["dataset_name", "dataset_digest"] {
                    if m[optional].is_string() {
                        point[optional] = m[optional].clone();
                    }
                }
                point
            })
            .collect();
        batches.extend(points.chunks(1000).map(|chunk| json!({"metrics": chunk})));
    }
    for mut batch in batches {
        batch["run_id"] = json!(new_id);
        post(target, "/api/2.0/mlflow/runs/log-batch", batch).await?;
    }
    if !datasets.is_empty() {
        post(
            target,
            "/api/2.0/mlflow/runs/log-inputs",
            json!({"run_id": new_id, "datasets": datasets}),
        )
        .await?;
    }
    let root = proxy_root(&artifact_uri, &format!("run {new_id}"))?;
    upload_all(target, &artifacts, &files, &root).await?;
    let mut update = json!({"run_id": new_id, "status": status});
    if let Some(end_time) = end_time {
        update["end_time"] = json!(end_time);
    }
    post(target, "/api/2.0/mlflow/runs/update", update).await?;
    if str_of(info, "lifecycle_stage") == "deleted" {
        post(
            target,
            "/api/2.0/mlflow/runs/delete",
            json!({"run_id": new_id}),
        )
        .await?;
    }
    Ok((new_id, false))
}

/// Uploads files not already at the target with their size.
async fn upload_all(
    target: &Client,
    artifacts: &Artifacts,
    files: &[(String, u64)],
    root: &str,
) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let there: HashMap<String, u64> = Artifacts::Proxy {
        client: target.clone(),
        root: root.to_owned(),
    }
    .list()
    .await
    .unwrap_or_default()
    .into_iter()
    .collect();
    for (path, size) in files {
        if there.get(path) == Some(size) {
            continue;
        }
        let body = artifacts.open(path).await?;
        target
            .upload_stream(&encode_path(&format!("{root}/{path}")), body)
            .await
            .with_context(|| format!("uploading artifact {path}"))?;
    }
    Ok(())
}

/// The target's logged models that an earlier export made, by the source model id.
async fn existing_logged_models(
    target: &Client,
    experiment_id: &str,
) -> anyhow::Result<HashMap<String, Value>> {
    let models = all_pages(
        |token| {
            post(
                target,
                "/api/2.0/mlflow/logged-models/search",
                json!({"experiment_ids": [experiment_id], "max_results": 100,
                       "page_token": token}),
            )
        },
        "models",
    )
    .await?;
    Ok(models
        .into_iter()
        .filter_map(|model| {
            let original = tags_of(&model["info"]["tags"])
                .into_iter()
                .find(|t| t.key == SOURCE_MODEL_TAG)?;
            Some((original.value, model))
        })
        .collect())
}

/// One logged model; returns the target's model id.
async fn export_logged_model(
    source: &Source,
    target: &Client,
    experiment_id: &str,
    existing: &HashMap<String, Value>,
    run_ids: &HashMap<String, String>,
    model: &Value,
    found: &mut Counts,
) -> anyhow::Result<String> {
    let info = &model["info"];
    let model_id = str_of(info, "model_id");
    let status = str_of(info, "status");
    found.logged_models += 1;
    let artifacts = source.logged_model_artifacts(model).await?;
    let files = artifacts.list().await?;
    found.artifacts += files.len() as u64;
    found.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
    if let Some(copy) = existing.get(&model_id)
        && str_of(&copy["info"], "status") == status
    {
        return Ok(str_of(&copy["info"], "model_id"));
    }
    let source_run = info["source_run_id"]
        .as_str()
        .and_then(|id| run_ids.get(id))
        .cloned();
    let copy = match existing.get(&model_id) {
        Some(copy) => copy.clone(),
        None => {
            let mut tags = info["tags"].as_array().cloned().unwrap_or_default();
            tags.push(json!({"key": SOURCE_MODEL_TAG, "value": model_id}));
            let mut body = json!({
                "experiment_id": experiment_id,
                "name": str_of(info, "name"),
                "tags": tags,
                "params": model["data"]["params"].as_array().cloned().unwrap_or_default(),
            });
            if let Some(kind) = info["model_type"].as_str() {
                body["model_type"] = json!(kind);
            }
            if let Some(run) = &source_run {
                body["source_run_id"] = json!(run);
            }
            post(target, "/api/2.0/mlflow/logged-models", body).await?["model"].clone()
        }
    };
    let new_id = str_of(&copy["info"], "model_id");
    let mut by_run: HashMap<String, Vec<Value>> = HashMap::new();
    for m in model["data"]["metrics"].as_array().into_iter().flatten() {
        let Some(run) = m["run_id"].as_str().and_then(|id| run_ids.get(id)) else {
            continue;
        };
        let mut point = json!({"key": m["key"], "value": m["value"], "timestamp": m["timestamp"],
                               "step": m["step"], "model_id": new_id});
        for optional in ["dataset_name", "dataset_digest"] {
            if m[optional].is_string() {
                point[optional] = m[optional].clone();
            }
        }
        by_run.entry(run.clone()).or_default().push(point);
    }
    for (run, points) in by_run {
        for chunk in points.chunks(1000) {
            post(
                target,
                "/api/2.0/mlflow/runs/log-batch",
                json!({"run_id": run, "metrics": chunk}),
            )
            .await?;
        }
    }
    let root = proxy_root(
        copy["info"]["artifact_uri"].as_str().unwrap_or_default(),
        &format!("logged model {new_id}"),
    )?;
    upload_all(target, &artifacts, &files, &root).await?;
    if status != "LOGGED_MODEL_PENDING" {
        target
            .call(
                reqwest::Method::PATCH,
                &format!("/api/2.0/mlflow/logged-models/{}", urlencode(&new_id)),
                Some(json!({"model_id": new_id, "status": status})),
            )
            .await?;
    }
    Ok(new_id)
}

/// A version's source with the ids MLflow gave the copies.
fn rewrite_source(
    source: &str,
    run_ids: &HashMap<String, String>,
    model_ids: &HashMap<String, String>,
) -> String {
    for (prefix, ids) in [("runs:/", run_ids), ("models:/", model_ids)] {
        if let Some(rest) = source.strip_prefix(prefix) {
            let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
            if let Some(new) = ids.get(id) {
                return if tail.is_empty() {
                    format!("{prefix}{new}")
                } else {
                    format!("{prefix}{new}/{tail}")
                };
            }
        }
    }
    source.to_owned()
}

/// Registered models, versions (numbers kept), their tags, stages and aliases; returns the
/// models with the versions exported.
async fn export_registry(
    source: &Source,
    target: &Client,
    run_ids: &HashMap<String, String>,
    model_ids: &HashMap<String, String>,
    found: &mut Counts,
) -> anyhow::Result<Vec<(Value, Vec<Value>)>> {
    let mut exported = Vec::new();
    for model in source.registered_models().await? {
        let name = str_of(&model, "name");
        found.registered_models += 1;
        let get = format!(
            "/api/2.0/mlflow/registered-models/get?name={}",
            urlencode(&name)
        );
        if let Found::No(_) = target.call_found(reqwest::Method::GET, &get, None).await? {
            let tags = model["tags"].as_array().cloned().unwrap_or_default();
            let mut body = json!({"name": name, "tags": tags});
            if let Some(description) = model["description"].as_str() {
                body["description"] = json!(description);
            }
            post(target, "/api/2.0/mlflow/registered-models/create", body).await?;
        }
        let versions = source.model_versions(&name).await?;
        for version in &versions {
            found.versions += 1;
            let number = i64_of(version, "version");
            let stage = version["current_stage"].as_str().unwrap_or("None");
            found.stages += u64::from(stage != "None");
            let path = format!(
                "/api/2.0/mlflow/model-versions/get?name={}&version={number}",
                urlencode(&name)
            );
            let current = match target.call_found(reqwest::Method::GET, &path, None).await? {
                Found::Yes(found) => found["model_version"].clone(),
                Found::No(_) => create_version(target, &name, number, version, run_ids, model_ids)
                    .await
                    .with_context(|| format!("exporting version {number} of '{name}'"))?,
            };
            if current["current_stage"].as_str().unwrap_or("None") != stage {
                post(
                    target,
                    "/api/2.0/mlflow/model-versions/transition-stage",
                    json!({"name": name, "version": number.to_string(), "stage": stage,
                           "archive_existing_versions": false}),
                )
                .await?;
            }
        }
        for alias in model["aliases"].as_array().into_iter().flatten() {
            found.aliases += 1;
            post(
                target,
                "/api/2.0/mlflow/registered-models/alias",
                json!({"name": name, "alias": alias["alias"], "version": alias["version"]}),
            )
            .await?;
        }
        exported.push((model, versions));
    }
    Ok(exported)
}

/// Version `number` of `name` in MLflow, which numbers versions itself: lower numbers it
/// would hand out first are taken by versions made and deleted at once.
async fn create_version(
    target: &Client,
    name: &str,
    number: i64,
    version: &Value,
    run_ids: &HashMap<String, String>,
    model_ids: &HashMap<String, String>,
) -> anyhow::Result<Value> {
    let source = rewrite_source(&str_of(version, "source"), run_ids, model_ids);
    let tags = version["tags"].as_array().cloned().unwrap_or_default();
    let mut body = json!({"name": name, "source": source, "tags": tags});
    if let Some(run) = version["run_id"].as_str().and_then(|id| run_ids.get(id)) {
        body["run_id"] = json!(run);
    }
    if let Some(model) = version["model_id"]
        .as_str()
        .and_then(|id| model_ids.get(id))
    {
        body["model_id"] = json!(model);
    }
    if let Some(description) = version["description"].as_str().filter(|d| !d.is_empty()) {
        body["description"] = json!(description);
    }
    loop {
        let made = post(
            target,
            "/api/2.0/mlflow/model-versions/create",
            body.clone(),
        )
        .await?["model_version"]
            .clone();
        let got = i64_of(&made, "version");
        if got == number {
            return Ok(made);
        }
        if got > number {
            bail!(
                "MLflow gave number {got}: its model '{name}' already used {number}, so the number cannot be kept"
            );
        }
        target
            .call(
                reqwest::Method::DELETE,
                "/api/2.0/mlflow/model-versions/delete",
                Some(json!({"name": name, "version": got.to_string()})),
            )
            .await?;
    }
}

/// Reads back what MLflow holds for everything that was exported.
async fn verify(
    target: &Client,
    experiments: &[(String, Vec<Value>, Vec<Value>)],
    run_ids: &HashMap<String, String>,
    model_ids: &HashMap<String, String>,
    models: &[(Value, Vec<Value>)],
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    for (experiment_id, runs, logged) in experiments {
        let get = format!("/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}");
        if target.call(reqwest::Method::GET, &get, None).await.is_ok() {
            counts.experiments += 1;
        }
        let there = existing_runs(target, experiment_id).await?;
        for run in runs {
            let Some(copy) = there.get(&str_of(&run["info"], "run_id")) else {
                continue;
            };
            let copy_id = str_of(&copy["info"], "run_id");
            if run_ids.get(&str_of(&run["info"], "run_id")) != Some(&copy_id) {
                continue;
            }
            // A search answers with the latest metrics; the whole run has the inputs too.
            let whole = target
                .call(
                    reqwest::Method::GET,
                    &format!("/api/2.0/mlflow/runs/get?run_id={copy_id}"),
                    None,
                )
                .await?["run"]
                .clone();
            counts.runs += 1;
            counts.params += whole["data"]["params"].as_array().map_or(0, Vec::len) as u64;
            let keys: std::collections::BTreeSet<String> = tags_of(&run["data"]["tags"])
                .into_iter()
                .map(|t| t.key)
                .collect();
            counts.tags += tags_of(&whole["data"]["tags"])
                .iter()
                .filter(|t| keys.contains(&t.key))
                .count() as u64;
            counts.datasets += whole["inputs"]["dataset_inputs"]
                .as_array()
                .map_or(0, Vec::len) as u64;
            let source = Source::Server(target.clone());
            for metric in whole["data"]["metrics"].as_array().into_iter().flatten() {
                counts.metric_points += source
                    .metric_history(&copy_id, &str_of(metric, "key"))
                    .await?
                    .len() as u64;
            }
            let files = source.run_artifacts(&whole).await?.list().await?;
            counts.artifacts += files.len() as u64;
            counts.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
        }
        let there = existing_logged_models(target, experiment_id).await?;
        for model in logged {
            let Some(copy) = there.get(&str_of(&model["info"], "model_id")) else {
                continue;
            };
            if model_ids.get(&str_of(&model["info"], "model_id"))
                != Some(&str_of(&copy["info"], "model_id"))
            {
                continue;
            }
            counts.logged_models += 1;
            let root = proxy_root(
                copy["info"]["artifact_uri"].as_str().unwrap_or_default(),
                "",
            )?;
            let files = Artifacts::Proxy {
                client: target.clone(),
                root,
            }
            .list()
            .await?;
            counts.artifacts += files.len() as u64;
            counts.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
        }
    }
    for (model, versions) in models {
        let name = str_of(model, "name");
        let get = format!(
            "/api/2.0/mlflow/registered-models/get?name={}",
            urlencode(&name)
        );
        let Ok(there) = target.call(reqwest::Method::GET, &get, None).await else {
            continue;
        };
        counts.registered_models += 1;
        for version in versions {
            let path = format!(
                "/api/2.0/mlflow/model-versions/get?name={}&version={}",
                urlencode(&name),
                i64_of(version, "version")
            );
            if let Ok(copy) = target.call(reqwest::Method::GET, &path, None).await {
                counts.versions += 1;
                let stage = copy["model_version"]["current_stage"]
                    .as_str()
                    .unwrap_or("None");
                counts.stages +=
                    u64::from(stage != "None" && version["current_stage"].as_str() == Some(stage));
            }
        }
        let aliases = there["registered_model"]["aliases"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for alias in model["aliases"].as_array().into_iter().flatten() {
            if aliases.iter().any(|a| {
                a["alias"] == alias["alias"] && str_of(a, "version") == str_of(alias, "version")
            }) {
                counts.aliases += 1;
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_ids_mlflow_gave_and_leave_the_rest() {
        let runs = HashMap::from([("r1".to_owned(), "n1".to_owned())]);
        let models = HashMap::from([("m-1".to_owned(), "m-9".to_owned())]);
        assert_eq!(
            rewrite_source("runs:/r1/model", &runs, &models),
            "runs:/n1/model"
        );
        assert_eq!(rewrite_source("runs:/r1", &runs, &models), "runs:/n1");
        assert_eq!(rewrite_source("models:/m-1", &runs, &models), "models:/m-9");
        // Another run's files, a registered model's URI, a bucket: kept as they are.
        assert_eq!(
            rewrite_source("runs:/r2/model", &runs, &models),
            "runs:/r2/model"
        );
        assert_eq!(
            rewrite_source("models:/churn/3", &runs, &models),
            "models:/churn/3"
        );
        assert_eq!(rewrite_source("s3://b/k", &runs, &models), "s3://b/k");
    }

    #[test]
    fn the_proxy_path_drops_the_scheme_and_any_host() {
        assert_eq!(
            proxy_root("mlflow-artifacts:/1/abc/artifacts", "x").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxy_root("mlflow-artifacts://mlflow:5000/1/abc/artifacts/", "x").unwrap(),
            "1/abc/artifacts"
        );
        let refused = proxy_root("s3://bucket/1/abc/artifacts", "run abc").unwrap_err();
        assert!(
            refused.to_string().contains("--serve-artifacts"),
            "{refused}"
        );
    }
}
