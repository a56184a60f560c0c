//! `slipway triggers`: retraining triggers applied from a file, fired by hand, their history
//! (every retrain's causal chain), and the worker that carries retrains out.
//!
//! The worker runs where the pipelines and their data are, as its own user: it claims a queued
//! retrain from the server, runs the trigger's pipeline from its `--pipelines-dir` (tracked,
//! with the cache, as `slipway pipeline run`), registers the model folder the pipeline wrote,
//! has the server gate it against the deployed champion, starts the canary, and follows the
//! rollout to its decision, reporting each link to the server as it goes. It also watches the
//! triggers' data paths and tells the server when what is under one changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use slipway_core::retrain::{Trigger, TriggerConfig};

use crate::remote::{Client, ServerArgs, urlencode};

const NATIVE: &str = "/api/slipway/v1";
/// How often a worker renews its lease on the retrain it carries out.
const HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct TriggersArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: TriggersCommand,
}

#[derive(Debug, Subcommand)]
enum TriggersCommand {
    /// Make the server's triggers exactly a triggers file's (YAML `triggers: [...]`), checked
    /// whole first; admins only, audited with the diff.
    Apply {
        /// The triggers file (YAML).
        file: PathBuf,
        /// Only say what would change.
        #[arg(long)]
        dry_run: bool,
        /// Print the server's answer (the diff and the revision) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The triggers: what fires each, its next scheduled time, its latest retrain.
    List {
        /// Print the triggers as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fire a trigger by hand (subject to its cooldown, daily cap and one retrain at a time).
    Run {
        /// The trigger.
        name: String,
        /// Why, for the history.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the retrain (queued, or skipped with the reason) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retrains, newest first, each as its chain: cause -> pipeline run -> version -> gate ->
    /// rollout -> decision.
    History {
        /// Only this trigger's.
        #[arg(long)]
        trigger: Option<String>,
        /// Only this model's.
        #[arg(long)]
        model: Option<String>,
        /// How many, newest first (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the retrains as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Carry out retrains: claim one, run its pipeline, register, gate, roll out, follow the
    /// rollout to its decision; and watch the triggers' data paths.
    Worker {
        /// The folder the triggers' pipeline paths are relative to; nothing outside it runs.
        #[arg(long, value_name = "DIR")]
        pipelines_dir: PathBuf,
        /// Carry out at most one retrain, then exit (0 when none was queued or it ended as
        /// its chain says, 1 when it failed).
        #[arg(long)]
        once: bool,
        /// How often to ask for work.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        poll: Duration,
        /// How long to follow a rollout before giving the retrain up as failed.
        #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
        rollout_timeout: Duration,
    },
}

pub async fn triggers(args: TriggersArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    match args.command {
        TriggersCommand::Apply {
            file,
            dry_run,
            json,
        } => apply(&client, &file, dry_run, json).await,
        TriggersCommand::List { json } => list(&client, json).await,
        TriggersCommand::Run { name, reason, json } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("{NATIVE}/triggers/{}/fire", urlencode(&name)),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            let retrain = &answer["retrain"];
            if json {
                println!("{}", serde_json::to_string_pretty(retrain)?);
            } else {
                println!("{}", chain(retrain));
            }
            Ok(if retrain["state"] == "skipped" {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        TriggersCommand::History {
            trigger,
            model,
            limit,
            json,
        } => {
            let mut path = format!("{NATIVE}/retrains?max_results={}", limit.clamp(1, 1000));
            if let Some(trigger) = &trigger {
                path.push_str(&format!("&trigger={}", urlencode(trigger)));
            }
            if let Some(model) = &model {
                path.push_str(&format!("&model={}", urlencode(model)));
            }
            let answer = client.call(reqwest::Method::GET, &path, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer["retrains"])?);
            } else {
                let retrains = answer["retrains"].as_array().cloned().unwrap_or_default();
                if retrains.is_empty() {
                    println!("no retrains yet");
                }
                for retrain in &retrains {
                    println!("{}", chain(retrain));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::Worker {
            pipelines_dir,
            once,
            poll,
            rollout_timeout,
        } => {
            Worker::new(client, &pipelines_dir, rollout_timeout)?
                .run(once, poll)
                .await
        }
    }
}

async fn apply(
    client: &Client,
    file: &Path,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the triggers file {}", file.display()))?;
    let config: TriggerConfig =
        yaml_serde::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let answer = client
        .call(
            reqwest::Method::PUT,
            &format!("{NATIVE}/triggers"),
            Some(json!({ "config": config, "dry_run": dry_run })),
        )
        .await
        .with_context(|| format!("applying {}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let diff = &answer["diff"];
    let names = |key: &str| -> Vec<String> {
        diff[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for (sign, key) in [("+", "added"), ("~", "changed"), ("-", "removed")] {
        for name in names(key) {
            println!("{sign} trigger {name}");
        }
    }
    if answer["changed"] == false {
        println!("no change");
    }
    println!(
        "{} revision {}",
        if dry_run { "would be" } else { "applied as" },
        answer["revision"]
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let answer = client
        .call(reqwest::Method::GET, &format!("{NATIVE}/triggers"), None)
        .await?;
    let config: TriggerConfig = serde_json::from_value(answer["config"].clone())
        .context("reading the server's triggers")?;
    let latest = client
        .call(
            reqwest::Method::GET,
            &format!("{NATIVE}/retrains?max_results=1000"),
            None,
        )
        .await?;
    let now = crate::pipeline::now_ms();
    let rows: Vec<Value> = config
        .triggers
        .iter()
        .map(|t| {
            let last = latest["retrains"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["trigger"] == t.name.as_str())
                .cloned();
            let next =
                t.on.schedule
                    .as_deref()
                    .and_then(|s| slipway_core::retrain::parse_schedule(s).ok())
                    .and_then(|cron| slipway_core::retrain::next_fire(&cron, now));
            json!({
                "name": t.name,
                "model": t.model,
                "deployment": t.deployment,
                "pipeline": t.pipeline,
                "fired_by": fired_by(t),
                "next_scheduled_ms": next,
                "cooldown_ms": t.cooldown,
                "max_per_day": t.max_per_day,
                "latest": last,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no triggers (apply a triggers file with `slipway triggers apply FILE`)");
    }
    for row in &rows {
        println!(
            "{}  {} -> {}  fired by {}{}",
            row["name"].as_str().unwrap_or_default(),
            row["model"].as_str().unwrap_or_default(),
            row["deployment"].as_str().unwrap_or("(no deployment)"),
            row["fired_by"].as_str().unwrap_or_default(),
            row["next_scheduled_ms"]
                .as_i64()
                .map(|ms| format!(", next at {}", crate::admin::time(ms)))
                .unwrap_or_default()
        );
        if !row["latest"].is_null() {
            println!("    latest: {}", chain(&row["latest"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fired_by(t: &Trigger) -> String {
    let mut by = Vec::new();
    if let Some(schedule) = &t.on.schedule {
        by.push(format!("schedule '{schedule}'"));
    }
    if !t.on.alerts.is_empty() {
        by.push(format!("alerts {}", t.on.alerts.join(", ")));
    }
    if let Some(watch) = &t.on.data {
        by.push(format!("new data under {}", watch.path));
    }
    by.push("hand".to_owned());
    by.join(", ")
}

/// One retrain as its causal chain, on one line.
pub(crate) fn chain(r: &Value) -> String {
    let mut links = vec![r["cause_text"].as_str().unwrap_or("?").to_owned()];
    if let Some(run) = r["pipeline_run_id"].as_str() {
        links.push(format!("pipeline run {run}"));
    }
    if let Some(version) = r["version"].as_i64() {
        links.push(format!(
            "{} version {version}",
            r["model"].as_str().unwrap_or_default()
        ));
    }
    let state = r["state"].as_str().unwrap_or_default();
    if let Some(gate) = r["gate_id"].as_i64() {
        links.push(format!(
            "gate {gate} {}",
            if state == "gate_failed" {
                "failed"
            } else {
                "passed"
            }
        ));
    }
    if let Some(rollout) = r["rollout_id"].as_i64() {
        links.push(format!(
            "rollout {rollout} on {}",
            r["deployment"].as_str().unwrap_or_default()
        ));
    }
    links.push(state.replace('_', " "));
    let mut line = format!(
        "#{} {} [{}]: {}",
        r["id"],
        r["trigger"].as_str().unwrap_or_default(),
        crate::admin::time(r["created_ms"].as_i64().unwrap_or(0)),
        links.join(" -> ")
    );
    if let Some(reason) = r["reason"].as_str() {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// A worker: carries out retrains from one pipelines folder.
struct Worker {
    client: Client,
    dir: PathBuf,
    rollout_timeout: Duration,
    /// Per trigger with a data watch: the digest last seen and when it was checked.
    watched: HashMap<String, (Option<String>, Instant)>,
}

/// A retrain the worker carries out, and the server it reports to.
struct Job<'a> {
    client: &'a Client,
    id: i64,
}

impl Job<'_> {
    async fn report(&self, body: Value) -> anyhow::Result<Value> {
        let answer = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("{NATIVE}/retrains/{}/progress", self.id),
                Some(body),
            )
            .await
            .with_context(|| format!("reporting on retrain {}", self.id))?;
        Ok(answer["retrain"].clone())
    }
}

impl Worker {
    fn new(client: Client, dir: &Path, rollout_timeout: Duration) -> anyhow::Result<Worker> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("--pipelines-dir {}", dir.display()))?;
        if !dir.is_dir() {
            bail!("--pipelines-dir {} is not a folder", dir.display());
        }
        Ok(Worker {
            client,
            dir,
            rollout_timeout,
            watched: HashMap::new(),
        })
    }

    async fn run(mut self, once: bool, poll: Duration) -> anyhow::Result<ExitCode> {
        eprintln!(
            "worker: pipelines in {}, server {}",
            self.dir.display(),
            self.client.base()
        );
        // A signal stops the worker at once, even mid-retrain (a pipeline step blocks this
        // task): the retrain it held is reported failed, so the model is free now rather than
        // when the lease lapses.
        let current = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        {
            let current = current.clone();
            let client = self.client.clone();
            tokio::spawn(async move {
                crate::shutdown_signal().await;
                let id = current.load(std::sync::atomic::Ordering::SeqCst);
                if id > 0 {
                    let job = Job {
                        client: &client,
                        id,
                    };
                    let reason = "its worker was stopped by a signal";
                    if let Err(error) = job
                        .report(json!({ "state": "failed", "reason": reason }))
                        .await
                    {
                        eprintln!("worker: {error:#}");
                    }
                }
                std::process::exit(if id > 0 { 1 } else { 0 });
            });
        }
        let mut announced = false;
        loop {
            let before = self.watched.len();
            if let Err(error) = self.watch_data().await {
                eprintln!("worker: watching data: {error:#}");
            }
            // Said once the first look at every watched path is taken: changes from here on
            // are news (scripts and tests wait for this line).
            if !announced || self.watched.len() > before {
                announced = true;
                eprintln!(
                    "worker: watching {} data path(s), baseline taken",
                    self.watched.len()
                );
            }
            let claimed = self
                .client
                .call(
                    reqwest::Method::POST,
                    &format!("{NATIVE}/retrains/claim"),
                    None,
                )
                .await;
            match claimed {
                Ok(answer) if !answer["retrain"].is_null() => {
                    current.store(
                        answer["retrain"]["id"].as_i64().unwrap_or(0),
                        std::sync::atomic::Ordering::SeqCst,
                    );
                    let ok = self.carry_out(&answer).await;
                    current.store(0, std::sync::atomic::Ordering::SeqCst);
                    if once {
                        return Ok(if ok {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::from(1)
                        });
                    }
                }
                Ok(_) if once => return Ok(ExitCode::SUCCESS),
                Ok(_) => {}
                Err(error) if once => return Err(error),
                Err(error) => eprintln!("worker: asking for work: {error:#}"),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The folder of a trigger's pipeline file, refusing anything outside the pipelines dir.
    fn pipeline_file(&self, trigger: &Trigger) -> anyhow::Result<PathBuf> {
        if !slipway_pipeline::spec::is_inside(&trigger.pipeline) {
            bail!(
                "trigger '{}': pipeline '{}' is outside the pipelines folder",
                trigger.name,
                trigger.pipeline
            );
        }
        let file = self
            .dir
            .join(&trigger.pipeline)
            .canonicalize()
            .with_context(|| {
                format!(
                    "trigger '{}': pipeline {} in {}",
                    trigger.name,
                    trigger.pipeline,
                    self.dir.display()
                )
            })?;
        if !file.starts_with(&self.dir) {
            bail!(
                "trigger '{}': pipeline {} resolves outside {} (a symbolic link?)",
                trigger.name,
                trigger.pipeline,
                self.dir.display()
            );
        }
        Ok(file)
    }

    /// Tells the server about triggers whose watched data changed since last looked at. The
    /// first look at a path is its baseline: what was there before the worker started is not
    /// news.
    async fn watch_data(&mut self) -> anyhow::Result<()> {
        let answer = self
            .client
            .call(reqwest::Method::GET, &format!("{NATIVE}/triggers"), None)
            .await?;
        let config: TriggerConfig = serde_json::from_value(answer["config"].clone())?;
        for trigger in &config.triggers {
            let Some(watch) = &trigger.on.data else {
                continue;
            };
            let due = self
                .watched
                .get(&trigger.name)
                .is_none_or(|(_, at)| at.elapsed() >= Duration::from_millis(watch.every));
            if !due {
                continue;
            }
            let digest = if watch.path.starts_with("mlflow-artifacts:") {
                prefix_digest(&self.client, &watch.path).await?
            } else {
                let Ok(file) = self.pipeline_file(trigger) else {
                    continue;
                };
                let folder = file.parent().unwrap_or(&self.dir).to_path_buf();
                if !slipway_pipeline::spec::is_inside(&watch.path) {
                    continue;
                }
                let path = watch.path.clone();
                tokio::task::spawn_blocking(move || {
                    slipway_pipeline::cache::digest_path(&folder, &path)
                        .map(|files| files.map(|f| slipway_pipeline::cache::files_digest(&f)))
                })
                .await??
            };
            let previous = self
                .watched
                .insert(trigger.name.clone(), (digest.clone(), Instant::now()));
            let Some((seen, _)) = previous else {
                continue;
            };
            if let Some(digest) = digest
                && seen.as_ref() != Some(&digest)
            {
                let answer = self
                    .client
                    .call(
                        reqwest::Method::POST,
                        &format!("{NATIVE}/triggers/{}/data", urlencode(&trigger.name)),
                        Some(json!({ "path": watch.path, "digest": digest })),
                    )
                    .await?;
                if !answer["retrain"].is_null() {
                    eprintln!("worker: {}", chain(&answer["retrain"]));
                }
            }
        }
        Ok(())
    }

    /// Carries out a claimed retrain, reporting as it goes; whether it ended as planned (a
    /// decision taken, a refusal by the gate included) rather than failed.
    async fn carry_out(&self, claimed: &Value) -> bool {
        let id = claimed["retrain"]["id"].as_i64().unwrap_or(0);
        let job = Job {
            client: &self.client,
            id,
        };
        eprintln!("worker: took {}", chain(&claimed["retrain"]));
        // The lease is renewed while the pipeline runs and the rollout is followed.
        let heartbeat = {
            let client = self.client.clone();
            tokio::spawn(async move {
                let job = Job {
                    client: &client,
                    id,
                };
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    if let Err(error) = job.report(json!({})).await {
                        eprintln!("worker: renewing the lease of retrain {id}: {error:#}");
                    }
                }
            })
        };
        let outcome = match serde_json::from_value::<Trigger>(claimed["trigger"].clone()) {
            Ok(trigger) => self.retrain(&job, &trigger).await,
            Err(error) => Err(anyhow::anyhow!(
                "the server sent a trigger this worker cannot read: {error}"
            )),
        };
        heartbeat.abort();
        match outcome {
            Ok(last) => {
                eprintln!("worker: {}", chain(&last));
                true
            }
            Err(error) => {
                let reason = format!("{error:#}");
                eprintln!("worker: retrain {id} failed: {reason}");
                match job
                    .report(json!({ "state": "failed", "reason": truncate(&reason, 4_000) }))
                    .await
                {
                    Ok(last) => eprintln!("worker: {}", chain(&last)),
                    Err(error) => eprintln!("worker: {error:#}"),
                }
                false
            }
        }
    }

    async fn retrain(&self, job: &Job<'_>, trigger: &Trigger) -> anyhow::Result<Value> {
        // The server checked them when the triggers were applied; this worker runs the
        // commands, so it checks again rather than trust a server it does not control.
        trigger.check_params()?;
        let file = self.pipeline_file(trigger)?;
        let ran = crate::pipeline::run_file(
            Some(self.client.clone()),
            &file,
            &crate::pipeline::RunRequest {
                params: trigger
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                tags: vec![
                    ("slipway.retrain.id".to_owned(), job.id.to_string()),
                    ("slipway.retrain.trigger".to_owned(), trigger.name.clone()),
                ],
                ..Default::default()
            },
        )
        .await?;
        let run = ran
            .run
            .clone()
            .context("the pipeline ran without a run on the server")?;
        job.report(json!({ "pipeline_run_id": run.id })).await?;
        if !ran.report.succeeded() {
            bail!("pipeline run {} failed", run.id);
        }

        let version = crate::pipeline::register_output(
            &self.client,
            &ran,
            &trigger.model,
            &trigger.model_path,
            &[
                ("slipway.retrain.id", job.id.to_string()),
                ("slipway.retrain.trigger", trigger.name.clone()),
            ],
        )
        .await?;
        job.report(json!({ "version": version })).await?;
        let candidate = format!("models:/{}/{version}", trigger.model);

        // The gate, run by the server, against the deployed champion.
        let against = match &trigger.deployment {
            Some(name) => {
                let deployment = self
                    .client
                    .call(
                        reqwest::Method::GET,
                        &format!("{NATIVE}/deployments/{}", urlencode(name)),
                        None,
                    )
                    .await?;
                deployment["deployment"]["stable_version"]
                    .as_str()
                    .map(|v| format!("models:/{}/{v}", trigger.model))
            }
            None => None,
        };
        let data = match &trigger.gate.data {
            Some(data) if data.starts_with("runs:/") || data.starts_with("mlflow-artifacts:") => {
                Some(data.clone())
            }
            Some(local) => {
                if !slipway_pipeline::spec::is_inside(local) {
                    bail!("gate.data '{local}' is outside the pipeline's folder");
                }
                Some(crate::gate::upload_holdout(&self.client, &ran.root.join(local)).await?)
            }
            None => None,
        };
        let gate = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("{NATIVE}/gates"),
                Some(json!({
                    "model_uri": candidate,
                    "against": against,
                    "data": data,
                    "label": trigger.gate.label,
                    "rules": trigger.gate.rules,
                })),
            )
            .await
            .context("gating the retrained version")?;
        let gate_id = gate["gate"]["id"].as_i64().unwrap_or(0);
        if gate["gate"]["passed"] != true {
            return job
                .report(json!({ "gate_id": gate_id, "state": "gate_failed",
                    "reason": failed_rules(&gate["gate"]["report"]) }))
                .await;
        }
        let Some(deployment) = &trigger.deployment else {
            return job
                .report(json!({ "gate_id": gate_id, "state": "registered" }))
                .await;
        };
        job.report(json!({ "gate_id": gate_id })).await?;

        // The canary, decided by the deployment's own analysis.
        let mut body = trigger.rollout.clone().unwrap_or_else(|| json!({}));
        body["candidate_uri"] = json!(candidate);
        let started = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("{NATIVE}/deployments/{}/rollout", urlencode(deployment)),
                Some(body),
            )
            .await
            .context("starting the canary")?;
        let rollout_id = started["deployment"]["rollout"]["id"]
            .as_i64()
            .context("the server started a rollout without an id")?;
        job.report(json!({ "rollout_id": rollout_id, "state": "rolling_out" }))
            .await?;
        self.follow(job, deployment, rollout_id).await
    }

    /// Follows the rollout until it ends, reporting an approval wait when the policy asks for
    /// one.
    async fn follow(
        &self,
        job: &Job<'_>,
        deployment: &str,
        rollout_id: i64,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        let mut waiting = false;
        loop {
            let answer = self
                .client
                .call(
                    reqwest::Method::GET,
                    &format!("{NATIVE}/deployments/{}", urlencode(deployment)),
                    None,
                )
                .await?;
            let rollout = &answer["deployment"]["rollout"];
            if rollout["id"].as_i64() != Some(rollout_id) {
                bail!("rollout {rollout_id} on '{deployment}' was replaced by another");
            }
            // RolloutState is tagged by `state` (and flattened or not by the rollout's shape).
            let state = &rollout["state"];
            let kind = state["state"]
                .as_str()
                .or_else(|| state.as_str())
                .unwrap_or_default();
            match kind {
                "succeeded" => {
                    return job.report(json!({ "state": "promoted" })).await;
                }
                "rolled_back" | "aborted" => {
                    let reason = state["reason"]
                        .as_str()
                        .or_else(|| rollout["reason"].as_str())
                        .unwrap_or(kind);
                    return job
                        .report(json!({ "state": "rolled_back", "reason": reason }))
                        .await;
                }
                "awaiting_approval" if !waiting => {
                    waiting = true;
                    job.report(json!({ "state": "awaiting_approval",
                        "reason": "the promotion policy wants approval: `slipway promote approve`" }))
                        .await?;
                }
                _ => {}
            }
            if started.elapsed() > self.rollout_timeout {
                bail!(
                    "rollout {rollout_id} on '{deployment}' did not end within {}",
                    humantime::format_duration(self.rollout_timeout)
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Objects listed under a prefix of the artifact store, at most this many, this deep.
const PREFIX_ENTRIES: usize = 10_000;
const PREFIX_DEPTH: usize = 16;

/// A digest of what is under an artifact-store prefix (`mlflow-artifacts:/1/landing/`): every
/// object's path and size, sorted. The store lists no content digests, and a new or rewritten
/// object of another size is what lands; `None` when nothing is there.
async fn prefix_digest(client: &Client, prefix: &str) -> anyhow::Result<Option<String>> {
    use sha2::{Digest, Sha256};
    let root = prefix
        .trim_start_matches("mlflow-artifacts:")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_owned();
    let mut objects = Vec::new();
    let mut pending = vec![(root.clone(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        let listing = client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts?path={}",
                    urlencode(&dir)
                ),
                None,
            )
            .await
            .with_context(|| format!("listing {prefix}"))?;
        for entry in listing["files"].as_array().into_iter().flatten() {
            let Some(name) = entry["path"].as_str() else {
                continue;
            };
            let path = format!("{dir}/{}", name.rsplit('/').next().unwrap_or(name));
            if entry["is_dir"] == true {
                if depth + 1 < PREFIX_DEPTH {
                    pending.push((path, depth + 1));
                }
            } else {
                objects.push((path, entry["file_size"].as_u64().unwrap_or(0)));
            }
            if objects.len() + pending.len() > PREFIX_ENTRIES {
                bail!("{prefix} holds more than {PREFIX_ENTRIES} objects: watch a narrower prefix");
            }
        }
    }
    if objects.is_empty() {
        return Ok(None);
    }
    objects.sort();
    let mut hash = Sha256::new();
    for (path, size) in &objects {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(size.to_string().as_bytes());
        hash.update([0]);
    }
    Ok(Some(hex::encode(hash.finalize())))
}

/// The rules a failed gate did not pass, for the retrain's reason.
fn failed_rules(report: &Value) -> String {
    let failed: Vec<String> = report["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["passed"] == false)
        .map(|r| {
            format!(
                "{}: {}",
                r["rule"].as_str().unwrap_or_default(),
                r["explanation"].as_str().unwrap_or_default()
            )
        })
        .collect();
    format!(
        "the gate refused it: {}",
        truncate(&failed.join("; "), 3_000)
    )
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
