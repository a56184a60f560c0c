//! `slipway pipeline`: run a pipeline file with its cache (`.slipway/cache` beside the file),
//! tracking every executed step as an MLflow run nested under the pipeline's run on the
//! server, and draw its DAG.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use slipway_pipeline::cache::{Layered, StepResult};
use slipway_pipeline::{
    CacheStore, Graph, LocalCache, Observer, PipelineError, PipelineSpec, RunOptions, RunReport,
    StepReport, StepStatus,
};

use crate::remote::{Client, ServerArgs};

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Run a pipeline: every step whose cache key (command, parameters, declared environment,
    /// the content of its inputs) has no stored result, in the order its inputs and outputs
    /// give, independent steps at once. Exit code 0 when every step succeeded, 1 when one
    /// failed, 2 on an error.
    Run {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// Override a parameter (repeat): --param n_estimators=300.
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// Run this step even if its result is cached (repeat).
        #[arg(long, value_name = "STEP")]
        force: Vec<String>,
        /// Run only this step, on what its inputs hold now (an engine such as Argo orders the
        /// steps and runs each in its own container, sharing the cache).
        #[arg(long, value_name = "STEP")]
        only: Option<String>,
        /// Steps run at once (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// The experiment the runs go to (default: the pipeline's name).
        #[arg(long)]
        experiment: Option<String>,
        /// Do not track runs on the server (the cache still applies).
        #[arg(long)]
        no_track: bool,
        /// Join the pipeline run of this group (made by `slipway pipeline start --group`)
        /// instead of making one: how the steps of one Argo workflow, each in its own pod, nest
        /// under one pipeline run.
        #[arg(long, value_name = "ID")]
        group: Option<String>,
        /// Register the model the pipeline wrote as a new version of this registered model
        /// (created if missing): the folder at --model-path is uploaded as the pipeline run's
        /// `model` artifact and registered with that run as its source.
        #[arg(long, value_name = "MODEL", requires = "model_path")]
        register: Option<String>,
        /// The pipeline output holding the model folder to register (e.g. model/).
        #[arg(long, value_name = "PATH", requires = "register")]
        model_path: Option<String>,
        /// Print the run's report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the pipeline as a workflow of another engine: `--to argo` gives an Argo Workflows
    /// `Workflow` (a DAG template, one container per step, each running `slipway pipeline run
    /// --only STEP` against the server, so the cache and tracking are the same).
    Export {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// The engine: argo.
        #[arg(long, value_enum)]
        to: ExportTarget,
        /// Where to write the workflow (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The image the steps run in: it holds the slipway binary and what the steps need.
        #[arg(long, default_value = "ghcr.io/slipway-mlops/slipway:latest")]
        image: String,
        /// The slipway server as the pods reach it.
        #[arg(long, default_value = "http://slipway:5000")]
        server: String,
        /// A PersistentVolumeClaim holding the pipeline's folder, mounted at /work in every
        /// step (without one a step sees only what the image holds).
        #[arg(long, value_name = "CLAIM")]
        workdir_claim: Option<String>,
        /// The namespace the workflow is created in (default: kubectl's).
        #[arg(long)]
        namespace: Option<String>,
        /// The service account the steps' pods run as.
        #[arg(long)]
        service_account: Option<String>,
    },
    /// Make the pipeline's run of a group (an Argo workflow's uid) that `pipeline run
    /// --group` steps nest under; prints its id. Idempotent: a group's run is made once.
    Start {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// The group: letters, digits, '-' and '_' (Argo passes `{{workflow.uid}}`).
        #[arg(long, value_name = "ID")]
        group: String,
        /// Override a parameter (repeat), recorded on the run.
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
        /// The experiment the run goes to (default: the pipeline's name).
        #[arg(long)]
        experiment: Option<String>,
    },
    /// End a group's pipeline run with the workflow's status (Argo's exit handler passes
    /// `{{workflow.status}}`: Succeeded ends it FINISHED, anything else FAILED).
    Finish {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// The group the run was started for.
        #[arg(long, value_name = "ID")]
        group: String,
        /// The workflow's status: Succeeded, Failed or Error.
        #[arg(long)]
        status: String,
        /// The experiment the run is in (default: the pipeline's name).
        #[arg(long)]
        experiment: Option<String>,
    },
    /// Print the pipeline's DAG as a Mermaid flowchart.
    Graph {
        /// The pipeline file (YAML).
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportTarget {
    Argo,
}

fn read(file: &Path) -> anyhow::Result<(PipelineSpec, PathBuf)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pipeline file {}", file.display()))?;
    let spec =
        PipelineSpec::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let root = file
        .canonicalize()
        .with_context(|| format!("resolving {}", file.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((spec, root))
}

fn parse_params(params: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--param {p}: write it as NAME=VALUE"))
        })
        .collect()
}

pub async fn pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PipelineCommand::Start {
            file,
            group,
            params,
            experiment,
        } => {
            let (spec, root) = read(&file)?;
            let spec = spec
                .with_params(&parse_params(&params)?)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let client = Client::new(&args.server)?;
            let tracker = Tracker::start(
                client,
                &spec,
                experiment.as_deref(),
                &root,
                &[],
                Some(&group),
            )
            .await?;
            println!("{}", tracker.parent);
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Finish {
            file,
            group,
            status,
            experiment,
        } => {
            let (spec, _) = read(&file)?;
            let client = Client::new(&args.server)?;
            let experiment = client
                .experiment_named(experiment.as_deref().unwrap_or(&spec.name))
                .await?;
            let run = group_run(&client, &experiment, &group)
                .await?
                .with_context(|| format!("no pipeline run of group {group}"))?;
            let status = if status.eq_ignore_ascii_case("succeeded") {
                "FINISHED"
            } else {
                "FAILED"
            };
            client
                .call(
                    reqwest::Method::POST,
                    "/api/2.0/mlflow/runs/update",
                    Some(json!({"run_id": run.0, "status": status, "end_time": now_ms()})),
                )
                .await?;
            println!("{} {status}", run.0);
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Graph { file } => {
            let (spec, _) = read(&file)?;
            let graph = Graph::of(&spec).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            print!("{}", graph.mermaid(&spec));
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Export {
            file,
            to: ExportTarget::Argo,
            output,
            image,
            server,
            workdir_claim,
            namespace,
            service_account,
        } => {
            let (spec, _) = read(&file)?;
            let graph = Graph::of(&spec).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let options = slipway_pipeline::argo::ArgoOptions {
                image,
                namespace,
                service_account,
                tracking_uri: server,
                workdir_claim,
                pipeline_file: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "pipeline.yml".to_owned()),
            };
            let yaml = slipway_pipeline::argo::to_yaml(&slipway_pipeline::argo::workflow(
                &spec, &graph, &options,
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            match output {
                Some(path) => std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{yaml}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Run {
            file,
            params,
            force,
            only,
            jobs,
            experiment,
            no_track,
            group,
            register,
            model_path,
            json,
        } => {
            if no_track && register.is_some() {
                anyhow::bail!("--register needs the server: leave out --no-track");
            }
            let client = if no_track {
                None
            } else {
                Some(Client::new(&args.server)?)
            };
            let ran = run_file(
                client,
                &file,
                &RunRequest {
                    params: parse_params(&params)?,
                    force: force.into_iter().collect(),
                    only,
                    jobs,
                    experiment,
                    quiet: json,
                    tags: Vec::new(),
                    group,
                },
            )
            .await?;
            let registered = match (&register, &model_path, &ran.run) {
                (Some(model), Some(path), Some(_)) if ran.report.succeeded() => {
                    let client = Client::new(&args.server)?;
                    Some((
                        model.clone(),
                        register_output(&client, &ran, model, path, &[]).await?,
                    ))
                }
                _ => None,
            };
            if json {
                let mut report = report_json(&ran.report, ran.run.as_ref());
                if let Some((model, version)) = &registered {
                    report["registered"] = json!({
                        "name": model,
                        "version": version,
                        "model_uri": format!("models:/{model}/{version}"),
                    });
                }
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                summary(&ran.report, ran.run.as_ref());
                if let Some((model, version)) = &registered {
                    println!("registered models:/{model}/{version}");
                }
            }
            Ok(if ran.report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// How to run a pipeline file.
#[derive(Debug, Default)]
pub(crate) struct RunRequest {
    pub(crate) params: Vec<(String, String)>,
    pub(crate) force: BTreeSet<String>,
    pub(crate) only: Option<String>,
    pub(crate) jobs: Option<usize>,
    pub(crate) experiment: Option<String>,
    /// No per-step lines on stderr.
    pub(crate) quiet: bool,
    /// More tags on the pipeline's run (a retrain names itself).
    pub(crate) tags: Vec<(String, String)>,
    /// Join this group's pipeline run instead of making one.
    pub(crate) group: Option<String>,
}

/// The pipeline's run on the server: its id, experiment and artifact root (a proxy path).
#[derive(Debug, Clone)]
pub(crate) struct PipelineRun {
    pub(crate) id: String,
    pub(crate) experiment: String,
    pub(crate) artifacts: String,
}

pub(crate) struct Ran {
    pub(crate) report: RunReport,
    pub(crate) run: Option<PipelineRun>,
    /// The pipeline's folder (outputs are relative to it).
    pub(crate) root: PathBuf,
}

/// Uploads the model folder a pipeline wrote (`model_path`, relative to its folder) as the
/// pipeline run's `model` artifact and registers it as a new version of `model` (created if
/// missing) with that run as its source, so lineage goes version -> pipeline run -> steps.
pub(crate) async fn register_output(
    client: &Client,
    ran: &Ran,
    model: &str,
    model_path: &str,
    tags: &[(&str, String)],
) -> anyhow::Result<i64> {
    let run = ran
        .run
        .as_ref()
        .context("the pipeline ran without a run on the server to register from")?;
    let model_path = model_path.trim_end_matches('/');
    if !slipway_pipeline::spec::is_inside(model_path) {
        anyhow::bail!("model path '{model_path}' is outside the pipeline's folder");
    }
    let files = slipway_pipeline::cache::digest_path(&ran.root, model_path)?
        .with_context(|| format!("the pipeline wrote nothing at '{model_path}'"))?;
    for file in &files {
        let relative = file
            .path
            .strip_prefix(model_path)
            .unwrap_or(&file.path)
            .trim_start_matches('/');
        // A single file registered: the folder holds it under its own name.
        let relative = if relative.is_empty() {
            file.path.rsplit('/').next().unwrap_or("model")
        } else {
            relative
        };
        let bytes = std::fs::read(ran.root.join(&file.path))
            .with_context(|| format!("reading {}", file.path))?;
        client
            .upload(&format!("{}/model/{relative}", run.artifacts), bytes)
            .await
            .with_context(|| format!("uploading {}", file.path))?;
    }
    let exists = client
        .call_found(
            reqwest::Method::GET,
            &format!(
                "/api/2.0/mlflow/registered-models/get?name={}",
                crate::remote::urlencode(model)
            ),
            None,
        )
        .await?;
    if !matches!(exists, crate::remote::Found::Yes(_)) {
        client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/registered-models/create",
                Some(json!({ "name": model })),
            )
            .await?;
    }
    let tags: Vec<Value> = tags
        .iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    let created = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/model-versions/create",
            Some(json!({
                "name": model,
                "source": format!("runs:/{}/model", run.id),
                "run_id": run.id,
                "tags": tags,
            })),
        )
        .await
        .with_context(|| format!("registering {model_path} as a version of '{model}'"))?;
    created["model_version"]["version"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .context("the server registered a version without a number")
}

/// Runs a pipeline file with its cache, tracked on the server when there is a client.
pub(crate) async fn run_file(
    client: Option<Client>,
    file: &Path,
    request: &RunRequest,
) -> anyhow::Result<Ran> {
    let (spec, root) = read(file)?;
    let spec = spec
        .with_params(&request.params)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Graph::of(&spec).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let tracker = match client {
        None => None,
        Some(client) => Some(
            Tracker::start(
                client,
                &spec,
                request.experiment.as_deref(),
                &root,
                &request.tags,
                request.group.as_deref(),
            )
            .await
            .context(
                "starting the pipeline's run on the tracking server (--no-track runs without one)",
            )?,
        ),
    };
    let options = RunOptions {
        jobs: request
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        force: request.force.clone(),
        env: tracker
            .as_ref()
            .map(|t| BTreeMap::from([("MLFLOW_TRACKING_URI".to_owned(), t.base.clone())]))
            .unwrap_or_default(),
        log_dir: root.join(".slipway/logs"),
        only: request.only.clone(),
    };
    let handle = tokio::runtime::Handle::current();
    let local = LocalCache::new(root.join(".slipway/cache"));
    // With a server, results are shared through its artifact store, under the pipeline's
    // experiment: whoever may write the experiment may fill its cache, and nobody else.
    let cache: Box<dyn CacheStore> = match &tracker {
        Some(tracker) => Box::new(Layered {
            near: local,
            far: ServerCache {
                client: tracker.client.clone(),
                handle: handle.clone(),
                root: format!("{}/pipeline-cache", tracker.experiment),
            },
        }),
        None => Box::new(local),
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let observer = Progress {
        tracker: tracker.as_ref(),
        handle: handle.clone(),
        json: request.quiet,
        runs: Mutex::new(BTreeMap::new()),
        bars: (terminal && !request.quiet).then(indicatif::MultiProgress::new),
        spinners: Mutex::new(BTreeMap::new()),
    };
    let report = tokio::task::block_in_place(|| {
        slipway_pipeline::run(&spec, &root, cache.as_ref(), &observer, &options)
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Some(tracker) = &tracker {
        tracker.finish(&report).await?;
    }
    Ok(Ran {
        report,
        run: tracker.map(|t| PipelineRun {
            id: t.parent,
            experiment: t.experiment,
            artifacts: t.parent_artifacts,
        }),
        root,
    })
}

fn report_json(report: &RunReport, run: Option<&PipelineRun>) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Some(run) = run {
        value["run_id"] = json!(run.id);
        value["experiment_id"] = json!(run.experiment);
    }
    value
}

fn summary(report: &RunReport, run: Option<&PipelineRun>) {
    let count = |f: fn(&StepStatus) -> bool| report.steps.iter().filter(|s| f(&s.status)).count();
    println!(
        "pipeline {}: {} ran, {} cached, {} failed, {} skipped{}",
        report.pipeline,
        count(|s| matches!(s, StepStatus::Ran { .. })),
        count(|s| matches!(s, StepStatus::Cached)),
        count(|s| matches!(s, StepStatus::Failed { .. })),
        count(|s| matches!(s, StepStatus::Skipped { .. })),
        run.map(|r| format!(" (run {} in experiment {})", r.id, r.experiment))
            .unwrap_or_default()
    );
}

/// Shows each step as it runs (a spinner per running step on a terminal, a line per change
/// otherwise), and tracks it.
struct Progress<'a> {
    tracker: Option<&'a Tracker>,
    handle: tokio::runtime::Handle,
    json: bool,
    /// Step -> its run id, once started.
    runs: Mutex<BTreeMap<String, StepRun>>,
    /// On a terminal: the spinners of the steps running now.
    bars: Option<indicatif::MultiProgress>,
    spinners: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

impl Progress<'_> {
    fn say(&self, line: String) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for Progress<'_> {
    fn starting(&self, step: &str, key: &str) -> BTreeMap<String, String> {
        if !self.json {
            match &self.bars {
                Some(bars) => {
                    let spinner = bars.add(indicatif::ProgressBar::new_spinner());
                    spinner.set_style(
                        indicatif::ProgressStyle::with_template(
                            "  {spinner} {prefix}: running {elapsed} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    spinner.set_prefix(step.to_owned());
                    spinner.set_message(format!("(key {})", &key[..12]));
                    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                    self.spinners
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(step.to_owned(), spinner);
                }
                None => eprintln!("  {step}: running (key {})", &key[..12]),
            }
        }
        let Some(tracker) = self.tracker else {
            return BTreeMap::new();
        };
        match self.handle.block_on(tracker.start_step(step, key)) {
            Ok(run) => {
                let run_id = run.id.clone();
                self.runs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(step.to_owned(), run);
                BTreeMap::from([("MLFLOW_RUN_ID".to_owned(), run_id)])
            }
            Err(error) => {
                self.say(format!(
                    "  {step}: could not start its run on the server: {error:#}"
                ));
                BTreeMap::new()
            }
        }
    }

    fn finished(&self, report: &StepReport) {
        if !self.json {
            let line = match &report.status {
                StepStatus::Cached => "cached".to_owned(),
                StepStatus::Ran { attempts } if *attempts > 1 => {
                    format!("done after {attempts} attempts")
                }
                StepStatus::Ran { .. } => "done".to_owned(),
                StepStatus::Failed { reason, .. } => format!("FAILED: {reason}"),
                StepStatus::Skipped { because } => format!("skipped: {because}"),
            };
            let spinner = self
                .spinners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&report.step);
            if let Some(spinner) = spinner {
                spinner.finish_and_clear();
            }
            self.say(format!("  {}: {line}", report.step));
        }
        let (Some(tracker), Some(run)) = (
            self.tracker,
            self.runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&report.step)
                .cloned(),
        ) else {
            return;
        };
        if let Err(error) = self.handle.block_on(tracker.finish_step(&run, report)) {
            eprintln!("  {}: could not record its run: {error:#}", report.step);
        }
    }
}

/// A step's run: its id, and its artifact root as a proxy path.
#[derive(Debug, Clone)]
struct StepRun {
    id: String,
    artifacts: String,
}

/// The pipeline's run and its steps' runs on the tracking server.
struct Tracker {
    client: Client,
    base: String,
    experiment: String,
    parent: String,
    /// The pipeline run's artifact root, as a proxy path.
    parent_artifacts: String,
    /// Whether the pipeline run is a group's, made elsewhere: this process does not end it.
    joined: bool,
    root: PathBuf,
    pipeline: String,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The tag naming the group (an Argo workflow) a pipeline run belongs to.
const GROUP_TAG: &str = "slipway.pipeline.group";

/// A group's pipeline run in the experiment: its id and artifact URI.
async fn group_run(
    client: &Client,
    experiment: &str,
    group: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let found = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/search",
            Some(json!({
                "experiment_ids": [experiment],
                "filter": format!("tags.`{GROUP_TAG}` = '{group}'"),
                "max_results": 1,
                "order_by": ["attributes.start_time ASC"],
            })),
        )
        .await?;
    Ok(found["runs"]
        .as_array()
        .and_then(|runs| runs.first())
        .map(|run| {
            (
                run["info"]["run_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                run["info"]["artifact_uri"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }))
}

/// The proxy path of a run's artifact root (`mlflow-artifacts:/1/abc/artifacts`).
fn proxy_root(artifact_uri: &str) -> anyhow::Result<String> {
    artifact_uri
        .strip_prefix("mlflow-artifacts:/")
        .map(|p| p.trim_start_matches('/').to_owned())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the run's artifacts go to {artifact_uri}, not through the server's artifact proxy (mlflow-artifacts:)"
            )
        })
}

impl Tracker {
    async fn start(
        client: Client,
        spec: &PipelineSpec,
        experiment: Option<&str>,
        root: &Path,
        extra_tags: &[(String, String)],
        group: Option<&str>,
    ) -> anyhow::Result<Tracker> {
        let name = experiment.unwrap_or(&spec.name);
        let experiment = client.experiment_named(name).await?;
        if let Some(group) = group {
            if group.is_empty()
                || group.len() > 128
                || !group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                anyhow::bail!(
                    "--group '{group}': 1 to 128 letters, digits, '-' or '_' (an Argo workflow's uid)"
                );
            }
            if let Some((parent, artifacts)) = group_run(&client, &experiment, group).await? {
                return Ok(Tracker {
                    base: client.base().to_owned(),
                    client,
                    experiment,
                    parent,
                    parent_artifacts: proxy_root(&artifacts)?,
                    joined: true,
                    root: root.to_path_buf(),
                    pipeline: spec.name.clone(),
                });
            }
        }
        let mut tags = vec![
            json!({"key": "slipway.pipeline", "value": spec.name}),
            json!({"key": "mlflow.runName", "value": format!("pipeline {}", spec.name)}),
        ];
        if let Some(commit) = git_commit(root) {
            tags.push(json!({"key": "mlflow.source.git.commit", "value": commit}));
        }
        tags.extend(
            extra_tags
                .iter()
                .map(|(key, value)| json!({"key": key, "value": value})),
        );
        if let Some(group) = group {
            tags.push(json!({"key": GROUP_TAG, "value": group}));
        }
        let created = client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/create",
                Some(json!({
                    "experiment_id": experiment,
                    "start_time": now_ms(),
                    "run_name": format!("pipeline {}", spec.name),
                    "tags": tags,
                })),
            )
            .await?;
        let parent = created["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let parent_artifacts = proxy_root(
            created["run"]["info"]["artifact_uri"]
                .as_str()
                .unwrap_or_default(),
        )?;
        let params: Vec<Value> = spec
            .params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v.to_string()}))
            .collect();
        if !params.is_empty() {
            client
                .call(
                    reqwest::Method::POST,
                    "/api/2.0/mlflow/runs/log-batch",
                    Some(json!({"run_id": parent, "params": params})),
                )
                .await?;
        }
        Ok(Tracker {
            base: client.base().to_owned(),
            client,
            experiment,
            parent,
            parent_artifacts,
            joined: false,
            root: root.to_path_buf(),
            pipeline: spec.name.clone(),
        })
    }

    async fn start_step(&self, step: &str, key: &str) -> anyhow::Result<StepRun> {
        let created = self
            .client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/create",
                Some(json!({
                    "experiment_id": self.experiment,
                    "start_time": now_ms(),
                    "run_name": step,
                    "tags": [
                        {"key": "mlflow.parentRunId", "value": self.parent},
                        {"key": "slipway.pipeline", "value": self.pipeline},
                        {"key": "slipway.pipeline.step", "value": step},
                        {"key": "slipway.pipeline.cache_key", "value": key},
                    ],
                })),
            )
            .await?;
        let info = &created["run"]["info"];
        Ok(StepRun {
            id: info["run_id"].as_str().unwrap_or_default().to_owned(),
            artifacts: proxy_root(info["artifact_uri"].as_str().unwrap_or_default())?,
        })
    }

    /// Params, inputs as datasets with their digests, outputs and the log as artifacts, and
    /// the status, on the step's run.
    async fn finish_step(&self, run: &StepRun, report: &StepReport) -> anyhow::Result<()> {
        let (run_id, artifacts) = (run.id.as_str(), run.artifacts.as_str());
        let (status, attempts) = match &report.status {
            StepStatus::Ran { attempts } => ("FINISHED", *attempts),
            StepStatus::Failed { attempts, .. } => ("FAILED", *attempts),
            _ => ("FINISHED", 0),
        };
        let mut params = vec![
            json!({"key": "command", "value": truncate(&report.command, 6_000)}),
            json!({"key": "attempts", "value": attempts.to_string()}),
        ];
        if let StepStatus::Failed { reason, .. } = &report.status {
            params.push(json!({"key": "failure", "value": truncate(reason, 6_000)}));
        }
        self.client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/log-batch",
                Some(json!({"run_id": run_id, "params": params})),
            )
            .await?;
        let datasets: Vec<Value> = report
            .inputs
            .iter()
            .map(|(path, files)| {
                json!({"dataset": {
                    "name": path,
                    "digest": &slipway_pipeline::cache::files_digest(files)[..16],
                    "source_type": "local",
                    "source": json!({"uri": self.root.join(path).display().to_string()}).to_string(),
                }})
            })
            .collect();
        if !datasets.is_empty() {
            self.client
                .call(
                    reqwest::Method::POST,
                    "/api/2.0/mlflow/runs/log-inputs",
                    Some(json!({"run_id": run_id, "datasets": datasets})),
                )
                .await?;
        }
        if let Some(log) = &report.log
            && let Ok(bytes) = std::fs::read(log)
        {
            self.client
                .upload(&format!("{artifacts}/logs/{}.log", report.step), bytes)
                .await?;
        }
        if let Some(result) = &report.result {
            for file in result.outputs.values().flatten() {
                let bytes = std::fs::read(self.root.join(&file.path))
                    .with_context(|| format!("reading the output {}", file.path))?;
                self.client
                    .upload(&format!("{artifacts}/outputs/{}", file.path), bytes)
                    .await?;
            }
        }
        self.client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/update",
                Some(json!({"run_id": run_id, "status": status, "end_time": now_ms()})),
            )
            .await?;
        Ok(())
    }

    /// Ends the pipeline's run, naming what was cached.
    async fn finish(&self, report: &RunReport) -> anyhow::Result<()> {
        // A group's run holds every pod's steps; `pipeline finish` ends it.
        if self.joined {
            return Ok(());
        }
        let cached: Vec<&str> = report
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Cached)
            .map(|s| s.step.as_str())
            .collect();
        let executed = report.executed();
        self.client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/log-batch",
                Some(json!({"run_id": self.parent, "tags": [
                    {"key": "slipway.pipeline.cached", "value": cached.join(",")},
                    {"key": "slipway.pipeline.executed", "value": executed.join(",")},
                ]})),
            )
            .await?;
        let status = if report.succeeded() {
            "FINISHED"
        } else {
            "FAILED"
        };
        self.client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/update",
                Some(json!({"run_id": self.parent, "status": status, "end_time": now_ms()})),
            )
            .await?;
        Ok(())
    }
}

/// The cache in the server's artifact store: `<experiment>/pipeline-cache/results/KEY.json`
/// and `.../objects/AB/SHA256`, through the artifact proxy (so its access rules apply).
struct ServerCache {
    client: Client,
    handle: tokio::runtime::Handle,
    root: String,
}

/// Largest stored result read back (a manifest, not data).
const MAX_RESULT_BYTES: usize = 16 << 20;

fn server_error(error: anyhow::Error) -> PipelineError {
    PipelineError::Io(format!("the server's pipeline cache: {error:#}"))
}

fn check_sha(text: &str) -> Result<(), PipelineError> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(PipelineError::Invalid(format!("'{text}' is not a SHA-256")))
    }
}

impl CacheStore for ServerCache {
    fn get_result(&self, key: &str) -> Result<Option<StepResult>, PipelineError> {
        check_sha(key)?;
        let path = format!("{}/results/{key}.json", self.root);
        let Some(bytes) = self
            .handle
            .block_on(self.client.get_bytes(&path, MAX_RESULT_BYTES))
            .map_err(server_error)?
        else {
            return Ok(None);
        };
        let result: StepResult = serde_json::from_slice(&bytes)
            .map_err(|e| PipelineError::Io(format!("{path} is not a step result: {e}")))?;
        // A result stored under another key is not this step's.
        Ok((result.key == key).then_some(result))
    }

    fn put_result(&self, result: &StepResult) -> Result<(), PipelineError> {
        check_sha(&result.key)?;
        let bytes = serde_json::to_vec(result)
            .map_err(|e| PipelineError::Io(format!("encoding a step result: {e}")))?;
        self.handle
            .block_on(
                self.client
                    .upload(&format!("{}/results/{}.json", self.root, result.key), bytes),
            )
            .map_err(server_error)
    }

    fn put_object(&self, sha256: &str, file: &Path) -> Result<(), PipelineError> {
        check_sha(sha256)?;
        let bytes = std::fs::read(file)
            .map_err(|e| PipelineError::Io(format!("reading {}: {e}", file.display())))?;
        self.handle
            .block_on(self.client.upload(
                &format!("{}/objects/{}/{sha256}", self.root, &sha256[..2]),
                bytes,
            ))
            .map_err(server_error)
    }

    fn get_object(&self, sha256: &str, to: &Path) -> Result<(), PipelineError> {
        check_sha(sha256)?;
        let parent = to.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| PipelineError::Io(format!("creating {}: {e}", parent.display())))?;
        let temp = parent.join(format!(".{sha256}.{}.download", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        self.handle
            .block_on(self.client.download(
                &format!("{}/objects/{}/{sha256}", self.root, &sha256[..2]),
                &temp,
            ))
            .map_err(server_error)?;
        // Checked before it replaces anything: whoever wrote the object, its name is its
        // content.
        let (found, _) = slipway_pipeline::cache::file_sha256(&temp)?;
        if found != sha256 {
            let _ = std::fs::remove_file(&temp);
            return Err(PipelineError::Io(format!(
                "the server's object {sha256} holds other content ({found})"
            )));
        }
        std::fs::rename(&temp, to)
            .map_err(|e| PipelineError::Io(format!("writing {}: {e}", to.display())))
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The commit of the repository the pipeline's folder is in, if it is one.
fn git_commit(root: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|c| c.len() == 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_artifact_roots_parse() {
        assert_eq!(
            parse_params(&["n=3".into(), "tag=a=b".into()]).unwrap(),
            [
                ("n".to_owned(), "3".to_owned()),
                ("tag".to_owned(), "a=b".to_owned())
            ]
        );
        assert!(parse_params(&["n".into()]).is_err());
        assert_eq!(
            proxy_root("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert!(proxy_root("s3://bucket/x").is_err());
        assert_eq!(truncate("héllo", 2), "h...");
    }
}
