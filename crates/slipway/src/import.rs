//! `slipway import mlflow --from URL`: an MLflow tracking server's experiments, runs (their
//! ids, names, users, times, status, params, tags, whole metric histories, dataset inputs and
//! artifacts), registered models, versions (their numbers), tags and aliases, read through its
//! REST API and written through slipway's use-cases (validated and audited), so that `runs:/`
//! and `models:/` URIs written against MLflow still resolve here.
//!
//! Idempotent and resumable: a run is created with status RUNNING and gets its own status last,
//! so a run whose status already matches was imported whole and is skipped, and a run cut off
//! half way is filled in again (params and tags are the same values, identical metric points
//! collapse, artifacts already there with their size are kept). It ends by reading everything
//! back and comparing the counts.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use slipway_app::App;
use slipway_core::Error;
use slipway_core::ports::ArtifactStore;
use slipway_core::registry::NewModelVersion;
use slipway_core::tracking::{
    Batch, Dataset, DatasetInput, ExperimentId, Metric, Param, RunId, RunStatus, RunUpdate, Tag,
};

use crate::remote::{Client, urlencode};

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    source: ImportSource,
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// From an MLflow tracking server, through its REST API (credentials from the
    /// MLFLOW_TRACKING_* variables, as the mlflow client takes them).
    Mlflow(MlflowArgs),
}

#[derive(Debug, Args)]
struct MlflowArgs {
    /// The MLflow tracking server to read, e.g. http://mlflow.internal:5000.
    #[arg(long, value_name = "URL")]
    from: String,
    /// Only these experiments, by name (repeat the flag; default: all, deleted ones too).
    #[arg(long = "experiment", value_name = "NAME")]
    experiments: Vec<String>,
    /// The metadata store to import into, as for `slipway server` (made if missing).
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI")]
    backend_store_uri: Option<String>,
    /// The artifact store to import into, as for `slipway server`.
    #[arg(long, env = "SLIPWAY_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    /// Runs imported at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,
}

/// What was found at the source and what the target holds after the import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
struct Counts {
    experiments: u64,
    runs: u64,
    params: u64,
    tags: u64,
    metric_points: u64,
    datasets: u64,
    artifacts: u64,
    artifact_bytes: u64,
    registered_models: u64,
    versions: u64,
    aliases: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.experiments += other.experiments;
        self.runs += other.runs;
        self.params += other.params;
        self.tags += other.tags;
        self.metric_points += other.metric_points;
        self.datasets += other.datasets;
        self.artifacts += other.artifacts;
        self.artifact_bytes += other.artifact_bytes;
        self.registered_models += other.registered_models;
        self.versions += other.versions;
        self.aliases += other.aliases;
    }
}

pub async fn run(config: Option<&Path>, args: ImportArgs) -> anyhow::Result<()> {
    match args.source {
        ImportSource::Mlflow(args) => mlflow(config, args).await,
    }
}

/// Pages through a search: `call(page_token)` gives one page; `items` picks its list.
async fn all_pages<F, Fut>(mut call: F, items: &str) -> anyhow::Result<Vec<Value>>
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

fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

fn i64_of(value: &Value, key: &str) -> i64 {
    value[key]
        .as_i64()
        .or_else(|| value[key].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

fn tags_of(value: &Value) -> Vec<Tag> {
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
fn metric_value(value: &Value) -> f64 {
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

async fn mlflow(config: Option<&Path>, args: MlflowArgs) -> anyhow::Result<()> {
    let source = Client::for_uri(Some(args.from.clone()))?;
    let (uri, artifacts) =
        crate::backup::stores(config, args.backend_store_uri, args.artifacts_destination)?;
    let store = slipway_store::SqlStore::open(&uri, slipway_store::StoreOptions::default())
        .await
        .with_context(|| format!("opening the metadata store {}", uri.redacted()))?;
    let target: Arc<dyn ArtifactStore> = Arc::new(artifacts.open().await?);
    let app = App::new(
        Arc::new(store.clone()),
        target.clone(),
        slipway_app::AppSettings::default(),
    )
    .for_caller("slipway-import", None);

    let experiments = all_pages(
        |token| {
            source.call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/experiments/search",
                Some(json!({"max_results": 1000, "view_type": "ALL", "page_token": token})),
            )
        },
        "experiments",
    )
    .await
    .with_context(|| format!("listing the experiments of {}", args.from))?;
    let experiments: Vec<Value> = experiments
        .into_iter()
        .filter(|e| args.experiments.is_empty() || args.experiments.contains(&str_of(e, "name")))
        .collect();
    if let Some(missing) = args
        .experiments
        .iter()
        .find(|name| !experiments.iter().any(|e| &str_of(e, "name") == *name))
    {
        bail!("{} has no experiment named '{missing}'", args.from);
    }

    let mut found = Counts::default();
    let mut runs_by_experiment: Vec<(Value, ExperimentId, Vec<Value>)> = Vec::new();
    for experiment in experiments {
        let runs = all_pages(
            |token| {
                source.call(
                    reqwest::Method::POST,
                    "/api/2.0/mlflow/runs/search",
                    Some(json!({
                        "experiment_ids": [str_of(&experiment, "experiment_id")],
                        "run_view_type": "ALL",
                        "max_results": 1000,
                        "page_token": token,
                    })),
                )
            },
            "runs",
        )
        .await?;
        let target = target_experiment(&app, &experiment).await?;
        found.experiments += 1;
        runs_by_experiment.push((experiment, target, runs));
    }
    let total_runs: u64 = runs_by_experiment
        .iter()
        .map(|(_, _, r)| r.len() as u64)
        .sum();
    let progress = indicatif::ProgressBar::new(total_runs);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.set_style(
        indicatif::ProgressStyle::with_template("runs {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut skipped = 0u64;
    let mut imported_runs: Vec<(RunId, Value)> = Vec::new();
    for (experiment, experiment_id, runs) in &runs_by_experiment {
        // Runs at once: the source answers each request slowly, not many of them.
        let mut done = futures::stream::iter(runs.iter().map(|run| {
            let (app, target, source, progress) = (&app, target.as_ref(), &source, &progress);
            async move {
                let mut counts = Counts::default();
                let (run_id, whole) =
                    import_run(app, target, source, *experiment_id, run, &mut counts).await?;
                progress.inc(1);
                Ok::<_, anyhow::Error>((run_id, whole, counts, run))
            }
        }))
        .buffer_unordered(args.jobs.max(1));
        while let Some(result) = done.next().await {
            let (run_id, whole, counts, run) = result?;
            found.add(&counts);
            skipped += u64::from(whole);
            imported_runs.push((run_id, run.clone()));
        }
        drop(done);
        if str_of(experiment, "lifecycle_stage") == "deleted"
            && app
                .store()
                .get_experiment(*experiment_id)
                .await?
                .lifecycle_stage
                .as_str()
                != "deleted"
        {
            app.delete_experiment(*experiment_id).await?;
        }
    }
    progress.finish_and_clear();

    let models = if args.experiments.is_empty() {
        import_registry(&app, &source, &mut found).await?
    } else {
        Vec::new()
    };

    let imported = verify(
        &app,
        target.as_ref(),
        &imported_runs,
        &models,
        &runs_by_experiment,
    )
    .await?;
    store.close().await;
    let matches = imported == found;
    if args.json {
        println!(
            "{}",
            json!({"from": args.from, "source": found, "imported": imported,
                   "runs_already_whole": skipped, "matches": matches})
        );
    } else {
        println!("{:<18} {:>12} {:>12}", "", "MLflow", "slipway");
        let (a, b) = (
            serde_json::to_value(found)?,
            serde_json::to_value(imported)?,
        );
        for (key, value) in a.as_object().into_iter().flatten() {
            println!("{key:<18} {:>12} {:>12}", value, b[key]);
        }
        println!(
            "{} runs were already imported whole and were skipped",
            skipped
        );
    }
    if !matches {
        bail!("the imported counts differ from MLflow's (above): run the import again to resume");
    }
    Ok(())
}

/// The experiment with the source's name, made with its tags if there is none yet.
async fn target_experiment(app: &App, experiment: &Value) -> anyhow::Result<ExperimentId> {
    let name = str_of(experiment, "name");
    match app.store().get_experiment_by_name(&name).await {
        Ok(existing) => Ok(existing.experiment_id),
        Err(Error::NotFound(_)) => {
            let tags: Vec<Tag> = tags_of(&experiment["tags"]);
            Ok(app.create_experiment(&name, None, tags).await?)
        }
        Err(other) => Err(other.into()),
    }
}

/// One run, whole; returns its id and whether it was there whole already.
async fn import_run(
    app: &App,
    target: &dyn ArtifactStore,
    source: &Client,
    experiment: ExperimentId,
    run: &Value,
    found: &mut Counts,
) -> anyhow::Result<(RunId, bool)> {
    let info = &run["info"];
    let data = &run["data"];
    let run_id = RunId::parse(&str_of(info, "run_id"))
        .map_err(|e| anyhow::anyhow!("a run id MLflow gave: {e}"))?;
    let status = RunStatus::parse(&str_of(info, "status")).unwrap_or(RunStatus::Finished);
    let end_time = info["end_time"]
        .as_i64()
        .or_else(|| info["end_time"].as_str().and_then(|s| s.parse().ok()));
    let params: Vec<Param> = data["params"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Param {
            key: str_of(p, "key"),
            value: str_of(p, "value"),
        })
        .collect();
    let tags = tags_of(&data["tags"]);
    let metric_keys: Vec<String> = data["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| str_of(m, "key"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    found.runs += 1;
    found.params += params.len() as u64;
    found.tags += tags.len() as u64;

    let existing = match app.get_run(&run_id).await {
        Ok(run) => Some(run),
        Err(Error::NotFound(_)) => None,
        Err(other) => return Err(other.into()),
    };
    let whole = existing.as_ref().is_some_and(|run| {
        run.info.status == status && run.info.end_time == end_time.filter(|t| *t > 0)
    });
    let created = match existing {
        Some(run) => run,
        None => {
            app.import_run(
                run_id.clone(),
                experiment,
                str_of(info, "user_id"),
                str_of(info, "run_name"),
                i64_of(info, "start_time"),
                tags.clone(),
            )
            .await?
        }
    };
    // Histories are read (and counted) even for a run imported whole: the counts compare them.
    let mut histories = Vec::new();
    for key in &metric_keys {
        let history = all_pages(
            |token| {
                let mut path = format!(
                    "/api/2.0/mlflow/metrics/get-history?run_id={}&metric_key={}&max_results=25000",
                    urlencode(run_id.as_str()),
                    urlencode(key)
                );
                if let Some(token) = token {
                    path.push_str(&format!("&page_token={}", urlencode(&token)));
                }
                let source = source.clone();
                async move { source.call(reqwest::Method::GET, &path, None).await }
            },
            "metrics",
        )
        .await?;
        found.metric_points += history.len() as u64;
        histories.push(history);
    }
    let datasets: Vec<DatasetInput> = run["inputs"]["dataset_inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|input| {
            let d = &input["dataset"];
            let optional = |k: &str| d[k].as_str().map(str::to_owned);
            DatasetInput {
                tags: tags_of(&input["tags"]),
                dataset: Dataset {
                    name: str_of(d, "name"),
                    digest: str_of(d, "digest"),
                    source_type: str_of(d, "source_type"),
                    source: str_of(d, "source"),
                    schema: optional("schema"),
                    profile: optional("profile"),
                },
            }
        })
        .collect();
    found.datasets += datasets.len() as u64;
    let files = list_artifacts(source, run_id.as_str(), None).await?;
    found.artifacts += files.len() as u64;
    found.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
    if whole {
        return Ok((run_id, true));
    }

    let reopened = created.info.status != RunStatus::Running;
    if reopened {
        // Cut off after its status was set to something else: log the rest first.
        app.update_run(
            &run_id,
            RunUpdate {
                status: Some(RunStatus::Running),
                end_time: None,
                run_name: None,
            },
        )
        .await?;
    }
    // Within MLflow's limits per batch: 100 params, 100 tags, 1,000 metric points.
    let mut batches: Vec<Batch> = params
        .chunks(100)
        .map(|chunk| Batch {
            params: chunk.to_vec(),
            ..Batch::default()
        })
        .chain(tags.chunks(100).map(|chunk| Batch {
            tags: chunk.to_vec(),
            ..Batch::default()
        }))
        .collect();
    for (key, history) in metric_keys.iter().zip(&histories) {
        let points: Vec<Metric> = history
            .iter()
            .map(|m| Metric {
                dataset_name: m["dataset_name"].as_str().map(str::to_owned),
                dataset_digest: m["dataset_digest"].as_str().map(str::to_owned),
                ..Metric::new(
                    key.clone(),
                    metric_value(&m["value"]),
                    i64_of(m, "timestamp"),
                    i64_of(m, "step"),
                )
            })
            .collect();
        batches.extend(points.chunks(1000).map(|chunk| Batch {
            metrics: chunk.to_vec(),
            ..Batch::default()
        }));
    }
    for batch in batches {
        app.log_batch(&run_id, batch).await?;
    }
    if !datasets.is_empty() {
        app.log_inputs(&run_id, datasets, Vec::new()).await?;
    }
    let root = created
        .info
        .artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .map(|p| p.trim_start_matches('/').to_owned())
        .with_context(|| {
            format!(
                "run {run_id}'s artifacts are at {}, outside slipway's artifact store",
                created.info.artifact_uri
            )
        })?;
    for (path, size) in &files {
        copy_artifact(
            app,
            target,
            source,
            run_id.as_str(),
            path,
            *size,
            &format!("{root}/{path}"),
        )
        .await?;
    }
    app.update_run(
        &run_id,
        RunUpdate {
            status: Some(status),
            end_time: end_time.filter(|t| *t > 0),
            run_name: None,
        },
    )
    .await?;
    if str_of(info, "lifecycle_stage") == "deleted" {
        app.delete_run(&run_id).await?;
    }
    Ok((run_id, false))
}

/// Every file under a run's artifacts at the source, with its size.
async fn list_artifacts(
    source: &Client,
    run_id: &str,
    under: Option<&str>,
) -> anyhow::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let mut folders = vec![under.map(str::to_owned)];
    while let Some(folder) = folders.pop() {
        let mut path = format!(
            "/api/2.0/mlflow/artifacts/list?run_id={}",
            urlencode(run_id)
        );
        if let Some(folder) = &folder {
            path.push_str(&format!("&path={}", urlencode(folder)));
        }
        let listing = source.call(reqwest::Method::GET, &path, None).await?;
        for file in listing["files"].as_array().into_iter().flatten() {
            let name = str_of(file, "path");
            if file["is_dir"].as_bool().unwrap_or(false) {
                folders.push(Some(name));
            } else {
                files.push((
                    name,
                    file["file_size"]
                        .as_u64()
                        .unwrap_or_else(|| i64_of(file, "file_size") as u64),
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One artifact, streamed from the source into a temporary file and put through the artifact
/// use-case; kept when it is there with its size already.
async fn copy_artifact(
    app: &App,
    store: &dyn ArtifactStore,
    source: &Client,
    run_id: &str,
    path: &str,
    size: u64,
    target: &str,
) -> anyhow::Result<()> {
    if let Some(existing) = store
        .get(&slipway_core::artifact_path::ArtifactPath::parse(target)?)
        .await?
        && existing.size == size
    {
        return Ok(());
    }
    let mut response = source
        .get_stream(&format!(
            "/get-artifact?path={}&run_uuid={}",
            urlencode(path),
            urlencode(run_id)
        ))
        .await?;
    let spill = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let mut out = std::io::BufWriter::new(spill.reopen().context("opening a temporary file")?);
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading artifact {path} of run {run_id}"))?
    {
        out.write_all(&chunk).context("writing a temporary file")?;
    }
    out.flush().context("writing a temporary file")?;
    drop(out);
    let file = tokio::fs::File::open(spill.path())
        .await
        .context("reading a temporary file")?;
    app.put_artifact(
        target,
        Box::pin(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        )),
    )
    .await?;
    Ok(())
}

/// Registered models with their tags, versions (numbers kept) and aliases; returns the models.
async fn import_registry(
    app: &App,
    source: &Client,
    found: &mut Counts,
) -> anyhow::Result<Vec<Value>> {
    let models = all_pages(
        |token| {
            let mut path = "/api/2.0/mlflow/registered-models/search?max_results=1000".to_owned();
            if let Some(token) = token {
                path.push_str(&format!("&page_token={}", urlencode(&token)));
            }
            let source = source.clone();
            async move { source.call(reqwest::Method::GET, &path, None).await }
        },
        "registered_models",
    )
    .await?;
    let mut models = models;
    for model in &mut models {
        let name = str_of(model, "name");
        found.registered_models += 1;
        if let Err(Error::NotFound(_)) = app.store().get_registered_model(&name).await {
            let description = model["description"].as_str().filter(|d| !d.is_empty());
            app.create_registered_model(&name, description, tags_of(&model["tags"]))
                .await?;
        }
        let mut versions = all_pages(
            |token| {
                let mut path = format!(
                    "/api/2.0/mlflow/model-versions/search?max_results=10000&filter={}",
                    urlencode(&format!("name='{}'", name.replace('\'', "\\'")))
                );
                if let Some(token) = token {
                    path.push_str(&format!("&page_token={}", urlencode(&token)));
                }
                let source = source.clone();
                async move { source.call(reqwest::Method::GET, &path, None).await }
            },
            "model_versions",
        )
        .await?;
        versions.sort_by_key(|v| i64_of(v, "version"));
        model["slipway_import_versions"] = json!(
            versions
                .iter()
                .map(|v| i64_of(v, "version"))
                .collect::<Vec<_>>()
        );
        for version in &versions {
            found.versions += 1;
            let number = i64_of(version, "version");
            match app.store().get_model_version(&name, number).await {
                Ok(_) => continue,
                Err(Error::NotFound(_)) => {}
                Err(other) => return Err(other.into()),
            }
            let run_id = version["run_id"].as_str().filter(|r| !r.is_empty());
            app.create_model_version(NewModelVersion {
                name: name.clone(),
                source: version_source(&str_of(version, "source"), run_id),
                run_id: run_id.map(str::to_owned),
                run_link: version["run_link"]
                    .as_str()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
                description: version["description"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
                tags: tags_of(&version["tags"]),
                model_id: None,
                user_id: version["user_id"]
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
                version: Some(number),
                content: None,
            })
            .await
            .with_context(|| format!("importing version {number} of '{name}'"))?;
        }
        for alias in model["aliases"].as_array().into_iter().flatten() {
            found.aliases += 1;
            let (alias, version) = (str_of(alias, "alias"), str_of(alias, "version"));
            let current = app.store().get_version_by_alias(&name, &alias).await;
            if current.is_ok_and(|v| v.version.to_string() == version) {
                continue;
            }
            app.set_alias(&name, &alias, &version)
                .await
                .with_context(|| format!("setting alias '{alias}' of '{name}'"))?;
        }
    }
    Ok(models)
}

/// A version's source as slipway resolves it: a path under its run's artifacts becomes
/// `runs:/RUN/PATH`, where the run's artifacts now are; anything else is kept.
fn version_source(source: &str, run_id: Option<&str>) -> String {
    if source.starts_with("runs:/") {
        return source.to_owned();
    }
    if let Some(run_id) = run_id
        && let Some(at) = source.find(&format!("/{run_id}/artifacts"))
    {
        let rest = &source[at + run_id.len() + "/artifacts".len() + 1..];
        return format!("runs:/{run_id}{rest}");
    }
    source.to_owned()
}

/// Reads back what the target holds for everything the source had.
async fn verify(
    app: &App,
    target: &dyn ArtifactStore,
    runs: &[(RunId, Value)],
    models: &[Value],
    experiments: &[(Value, ExperimentId, Vec<Value>)],
) -> anyhow::Result<Counts> {
    let mut counts = Counts {
        experiments: experiments.len() as u64,
        ..Counts::default()
    };
    for (run_id, original) in runs {
        let Ok(run) = app.get_run(run_id).await else {
            continue;
        };
        counts.runs += 1;
        counts.params += run.data.params.len() as u64;
        let source_keys: std::collections::BTreeSet<String> = tags_of(&original["data"]["tags"])
            .into_iter()
            .map(|t| t.key)
            .collect();
        counts.tags += run
            .data
            .tags
            .iter()
            .filter(|t| source_keys.contains(&t.key))
            .count() as u64;
        let keys: std::collections::BTreeSet<String> =
            run.data.metrics.iter().map(|m| m.key.clone()).collect();
        for key in keys {
            let mut cursor = slipway_core::ports::HistoryCursor::default();
            loop {
                let Some(page) = app
                    .store()
                    .get_metric_history(run_id, &key, cursor, 25_000)
                    .await?
                else {
                    break;
                };
                counts.metric_points += page.metrics.len() as u64;
                match page.next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
        counts.datasets += run.inputs.dataset_inputs.len() as u64;
        let root = run
            .info
            .artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let files = crate::backup::walk_under(target, &root).await?;
        counts.artifacts += files.len() as u64;
        counts.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
    }
    for model in models {
        let name = str_of(model, "name");
        if app.store().get_registered_model(&name).await.is_err() {
            continue;
        }
        counts.registered_models += 1;
        for number in model["slipway_import_versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
        {
            if app.store().get_model_version(&name, number).await.is_ok() {
                counts.versions += 1;
            }
        }
        for alias in model["aliases"].as_array().into_iter().flatten() {
            if let Ok(v) = app
                .store()
                .get_version_by_alias(&name, &str_of(alias, "alias"))
                .await
                && v.version.to_string() == str_of(alias, "version")
            {
                counts.aliases += 1;
            }
        }
    }
    Ok(counts)
}
