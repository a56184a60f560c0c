//! `slipway import mlflow --from URL|BACKEND_URI`: an MLflow tracking server's experiments,
//! runs (their ids, names, users, times, status, params, tags, whole metric histories, dataset
//! inputs and artifacts), logged models (their ids), registered models, versions (their
//! numbers, sources, stages), tags and aliases, read through its REST API or straight from its
//! database and artifact store ([`crate::mlflow_source`]), and written through slipway's
//! use-cases (validated and audited), so that `runs:/` and `models:/` URIs written against
//! MLflow still resolve here.
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
use slipway_core::logged_model::{LoggedModelStatus, NewLoggedModel};
use slipway_core::ports::ArtifactStore;
use slipway_core::registry::NewModelVersion;
use slipway_core::tracking::{
    Batch, Dataset, DatasetInput, ExperimentId, Metric, ModelOutput, Param, RunId, RunStatus,
    RunUpdate, Tag,
};

use crate::mlflow_source::{
    Artifacts, Counts, Source, chosen_experiments, i64_of, metric_value, redacted, str_of, tags_of,
};

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    source: ImportSource,
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// From an MLflow tracking server through its REST API (credentials from the
    /// MLFLOW_TRACKING_* variables, as the mlflow client takes them), or straight from
    /// MLflow's database and artifact store.
    Mlflow(MlflowArgs),
}

#[derive(Debug, Args)]
struct MlflowArgs {
    /// The MLflow tracking server to read (http://mlflow.internal:5000), or MLflow's backend
    /// store (sqlite:///mlflow.db, postgresql://user@host/mlflow), read only.
    #[arg(long, value_name = "URL|URI")]
    from: String,
    /// With a backend store: where MLflow's server kept the artifacts it proxied (its
    /// --artifacts-destination: a folder or s3://BUCKET/PREFIX). Artifacts stored at s3:// or
    /// file:// locations are read from there.
    #[arg(long, value_name = "PATH|s3://")]
    artifacts: Option<String>,
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

pub async fn run(config: Option<&Path>, args: ImportArgs) -> anyhow::Result<()> {
    match args.source {
        ImportSource::Mlflow(args) => mlflow(config, args).await,
    }
}

async fn mlflow(config: Option<&Path>, args: MlflowArgs) -> anyhow::Result<()> {
    let source = Source::open(&args.from, args.artifacts.as_deref()).await?;
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

    let experiments = source
        .experiments()
        .await
        .with_context(|| format!("listing the experiments of {}", redacted(&args.from)))?;
    let experiments = chosen_experiments(experiments, &args.experiments, &redacted(&args.from))?;

    let mut found = Counts::default();
    let mut runs_by_experiment: Vec<(Value, ExperimentId, Vec<Value>)> = Vec::new();
    for experiment in experiments {
        let runs = source.runs(&str_of(&experiment, "experiment_id")).await?;
        let target = target_experiment(&app, &experiment).await?;
        found.experiments += 1;
        runs_by_experiment.push((experiment, target, runs));
    }
    let total_runs: u64 = runs_by_experiment
        .iter()
        .map(|(_, _, r)| r.len() as u64)
        .sum();
    let progress = crate::mlflow_source::count_bar(total_runs, "runs");
    let mut skipped = 0u64;
    let mut imported_runs: Vec<(RunId, Value)> = Vec::new();
    let mut imported_models: Vec<Value> = Vec::new();
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
        // After the runs: a logged model's metrics are logged through its run.
        for model in source
            .logged_models(&str_of(experiment, "experiment_id"))
            .await?
        {
            import_logged_model(
                &app,
                target.as_ref(),
                &source,
                *experiment_id,
                &model,
                &mut found,
            )
            .await
            .with_context(|| {
                format!(
                    "importing logged model {}",
                    str_of(&model["info"], "model_id")
                )
            })?;
            imported_models.push(model);
        }
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
        &imported_models,
        &models,
        &runs_by_experiment,
    )
    .await?;
    store.close().await;
    source.close().await;
    let matches = imported == found;
    if args.json {
        println!(
            "{}",
            json!({"from": redacted(&args.from), "source": found, "imported": imported,
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
    source: &Source,
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
        let history = source.metric_history(run_id.as_str(), key).await?;
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
    let model_inputs: Vec<String> = run["inputs"]["model_inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| str_of(m, "model_id"))
        .filter(|id| !id.is_empty())
        .collect();
    let model_outputs: Vec<ModelOutput> = run["outputs"]["model_outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| ModelOutput {
            model_id: str_of(m, "model_id"),
            step: i64_of(m, "step"),
        })
        .filter(|m| !m.model_id.is_empty())
        .collect();
    let artifacts = source.run_artifacts(run).await?;
    let files = artifacts.list().await?;
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
    if !datasets.is_empty() || !model_inputs.is_empty() {
        app.log_inputs(&run_id, datasets, model_inputs).await?;
    }
    if !model_outputs.is_empty() {
        app.log_outputs(&run_id, model_outputs).await?;
    }
    copy_all(
        app,
        target,
        &artifacts,
        &files,
        &created.info.artifact_uri,
        &format!("run {run_id}"),
    )
    .await?;
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

/// Every file into the place slipway gave their owner (`owner`, for messages).
async fn copy_all(
    app: &App,
    target: &dyn ArtifactStore,
    artifacts: &Artifacts,
    files: &[(String, u64)],
    artifact_uri: &str,
    owner: &str,
) -> anyhow::Result<()> {
    let root = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .map(|p| p.trim_start_matches('/').to_owned())
        .with_context(|| {
            format!("{owner}'s artifacts are at {artifact_uri}, outside slipway's artifact store")
        })?;
    for (path, size) in files {
        copy_artifact(
            app,
            target,
            artifacts,
            path,
            *size,
            &format!("{root}/{path}"),
        )
        .await
        .with_context(|| format!("copying artifact {path} of {owner}"))?;
    }
    Ok(())
}

/// One artifact, streamed from the source into a temporary file and put through the artifact
/// use-case; kept when it is there with its size already.
async fn copy_artifact(
    app: &App,
    store: &dyn ArtifactStore,
    source: &Artifacts,
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
    let mut body = source.open(path).await?;
    let spill = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let mut out = std::io::BufWriter::new(spill.reopen().context("opening a temporary file")?);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("reading artifact {path}"))?;
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

/// Registered models with their tags, versions (numbers, sources, stages kept) and aliases;
/// returns the models.
async fn import_registry(
    app: &App,
    source: &Source,
    found: &mut Counts,
) -> anyhow::Result<Vec<Value>> {
    let mut models = source.registered_models().await?;
    for model in &mut models {
        let name = str_of(model, "name");
        found.registered_models += 1;
        if let Err(Error::NotFound(_)) = app.store().get_registered_model(&name).await {
            let description = model["description"].as_str().filter(|d| !d.is_empty());
            app.create_registered_model(&name, description, tags_of(&model["tags"]))
                .await?;
        }
        let versions = source.model_versions(&name).await?;
        model["slipway_import_versions"] = json!(
            versions
                .iter()
                .map(|v| json!({"version": i64_of(v, "version"),
                                "stage": stage_of(v)}))
                .collect::<Vec<_>>()
        );
        for version in &versions {
            found.versions += 1;
            let number = i64_of(version, "version");
            let stage = stage_of(version);
            found.stages += u64::from(stage != "None");
            let current = match app.store().get_model_version(&name, number).await {
                Ok(current) => Some(current),
                Err(Error::NotFound(_)) => None,
                Err(other) => return Err(other.into()),
            };
            let current_stage = match current {
                Some(current) => current.current_stage.as_str().to_owned(),
                None => {
                    let optional = |key: &str| {
                        version[key]
                            .as_str()
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned)
                    };
                    let run_id = optional("run_id");
                    app.create_model_version(NewModelVersion {
                        source: version_source(&str_of(version, "source"), run_id.as_deref()),
                        run_id,
                        run_link: optional("run_link"),
                        description: optional("description"),
                        tags: tags_of(&version["tags"]),
                        // MLflow's REST answers leave it out; the source names it.
                        model_id: optional("model_id")
                            .or_else(|| logged_model_of(&str_of(version, "source"))),
                        user_id: optional("user_id"),
                        version: Some(number),
                        ..NewModelVersion::new(name.clone(), String::new())
                    })
                    .await
                    .with_context(|| format!("importing version {number} of '{name}'"))?;
                    "None".to_owned()
                }
            };
            if current_stage != stage {
                app.transition_stage(&name, &number.to_string(), &stage, false)
                    .await
                    .with_context(|| {
                        format!("moving version {number} of '{name}' to stage {stage}")
                    })?;
            }
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

/// The logged model a `models:/m-...` source names.
fn logged_model_of(source: &str) -> Option<String> {
    let rest = source.strip_prefix("models:/")?;
    let id = rest.split('/').next().unwrap_or(rest);
    id.starts_with("m-").then(|| id.to_owned())
}

/// A version's stage as MLflow names it ("None" when it has none).
fn stage_of(version: &Value) -> String {
    match version["current_stage"].as_str() {
        Some(stage) if !stage.is_empty() => stage.to_owned(),
        _ => "None".to_owned(),
    }
}

/// A logged model under its id, with its name, type, source run, params, tags, status,
/// metrics (logged through its run, as MLflow does) and files.
async fn import_logged_model(
    app: &App,
    target: &dyn ArtifactStore,
    source: &Source,
    experiment: ExperimentId,
    model: &Value,
    found: &mut Counts,
) -> anyhow::Result<()> {
    let info = &model["info"];
    let model_id = str_of(info, "model_id");
    found.logged_models += 1;
    let artifacts = source.logged_model_artifacts(model).await?;
    let files = artifacts.list().await?;
    found.artifacts += files.len() as u64;
    found.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
    let status =
        LoggedModelStatus::parse(&str_of(info, "status")).unwrap_or(LoggedModelStatus::Pending);
    let existing = match app.get_logged_model(&model_id).await {
        Ok(existing) => Some(existing),
        Err(Error::NotFound(_)) => None,
        Err(other) => return Err(other.into()),
    };
    if existing.as_ref().is_some_and(|m| m.status == status) {
        return Ok(());
    }
    let pairs = |value: &Value| -> Vec<Tag> { tags_of(value) };
    let created = match existing {
        Some(existing) => existing,
        None => {
            app.import_logged_model(
                NewLoggedModel {
                    model_id: model_id.clone(),
                    experiment_id: experiment,
                    name: str_of(info, "name"),
                    model_type: info["model_type"]
                        .as_str()
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                    source_run_id: info["source_run_id"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned),
                    params: pairs(&model["data"]["params"]),
                    tags: pairs(&info["tags"]),
                },
                i64_of(info, "creation_timestamp_ms"),
            )
            .await?
        }
    };
    let mut by_run: std::collections::BTreeMap<String, Vec<Metric>> = Default::default();
    for m in model["data"]["metrics"].as_array().into_iter().flatten() {
        let Some(run) = m["run_id"].as_str().filter(|r| !r.is_empty()) else {
            continue;
        };
        by_run.entry(run.to_owned()).or_default().push(Metric {
            model_id: Some(model_id.clone()),
            dataset_name: m["dataset_name"].as_str().map(str::to_owned),
            dataset_digest: m["dataset_digest"].as_str().map(str::to_owned),
            run_id: Some(run.to_owned()),
            ..Metric::new(
                str_of(m, "key"),
                metric_value(&m["value"]),
                i64_of(m, "timestamp"),
                i64_of(m, "step"),
            )
        });
    }
    for (run, metrics) in by_run {
        let run_id =
            RunId::parse(&run).map_err(|e| anyhow::anyhow!("a run id MLflow gave: {e}"))?;
        for chunk in metrics.chunks(1000) {
            app.log_batch(
                &run_id,
                Batch {
                    metrics: chunk.to_vec(),
                    ..Batch::default()
                },
            )
            .await?;
        }
    }
    copy_all(
        app,
        target,
        &artifacts,
        &files,
        &created.artifact_uri,
        &format!("logged model {model_id}"),
    )
    .await?;
    if status != LoggedModelStatus::Pending {
        app.finalize_logged_model(&model_id, status).await?;
    }
    Ok(())
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

/// Counts the files slipway holds under an artifact URI.
async fn count_files(
    target: &dyn ArtifactStore,
    artifact_uri: &str,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let root = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .unwrap_or_default()
        .trim_start_matches('/');
    let files = crate::backup::walk_under(target, root).await?;
    counts.artifacts += files.len() as u64;
    counts.artifact_bytes += files.iter().map(|(_, size)| size).sum::<u64>();
    Ok(())
}

/// Reads back what the target holds for everything the source had.
async fn verify(
    app: &App,
    target: &dyn ArtifactStore,
    runs: &[(RunId, Value)],
    logged_models: &[Value],
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
        count_files(target, &run.info.artifact_uri, &mut counts).await?;
    }
    for model in logged_models {
        let Ok(copy) = app
            .get_logged_model(&str_of(&model["info"], "model_id"))
            .await
        else {
            continue;
        };
        counts.logged_models += 1;
        count_files(target, &copy.artifact_uri, &mut counts).await?;
    }
    for model in models {
        let name = str_of(model, "name");
        if app.store().get_registered_model(&name).await.is_err() {
            continue;
        }
        counts.registered_models += 1;
        for version in model["slipway_import_versions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let number = i64_of(version, "version");
            if let Ok(copy) = app.store().get_model_version(&name, number).await {
                counts.versions += 1;
                let stage = copy.current_stage.as_str();
                counts.stages += u64::from(stage != "None" && version["stage"] == stage);
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
