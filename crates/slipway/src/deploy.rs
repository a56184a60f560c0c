//! `slipway deploy ...` and `slipway predictions export`: managed deployments over the server's
//! HTTP API, as a person (the mlflow client's MLFLOW_TRACKING_* settings).
//!
//! `deploy status NAME --watch` follows a rollout until it ends and exits 0 when it succeeded
//! (or nothing runs), 3 when it was rolled back or aborted: a CI job can wait on it.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::{Value, json};

use crate::remote::{Client, ServerArgs, urlencode};
use crate::rollout_view;

const NATIVE: &str = "/api/slipway/v1/deployments";

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: DeployCommand,
}

#[derive(Debug, Args, Default)]
struct SettingsFlags {
    /// Share of requests written to the prediction log, 0 to 1 (default 0.1).
    #[arg(long)]
    log_sample: Option<f64>,
    /// Micro-batching: merge concurrent requests into runs of up to this many rows (0: off,
    /// the default).
    #[arg(long)]
    batch_max_rows: Option<u32>,
    /// Micro-batching: how long a batch waits for more requests (default 2ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    batch_max_wait: Option<Duration>,
    /// Consecutive candidate failures that open its circuit (default 5).
    #[arg(long)]
    breaker_failures: Option<u32>,
    /// How long an open circuit sends candidate traffic to stable (default 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    breaker_cooldown: Option<Duration>,
    /// Drift monitoring: how long a window of live traffic lasts before it is compared with
    /// the version's reference (default 5m; 5s to 7 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    monitor_window: Option<Duration>,
    /// Drift monitoring: close a window early at this many rows (0: by time only, the default).
    #[arg(long)]
    monitor_window_rows: Option<u64>,
    /// Delete logged predictions and labels older than this (e.g. 30d); each deletion is
    /// audited. 0s keeps them (the default).
    #[arg(long, value_parser = humantime::parse_duration)]
    prediction_retention: Option<Duration>,
    /// SLO: the share of requests to answer without a 5xx, e.g. 0.999. The --slo-* flags
    /// given together replace the deployment's SLO.
    #[arg(long, value_name = "SHARE")]
    slo_availability: Option<f64>,
    /// SLO: the share of requests to answer within a time, as TIME:SHARE, e.g. 200ms:0.99 (the
    /// time one of the latency histogram's bounds: ... 100ms, 200ms, 500ms, 1s ...).
    #[arg(long, value_name = "TIME:SHARE", value_parser = latency_objective)]
    slo_latency: Option<(f64, f64)>,
    /// SLO: the rolling window the objectives hold over (default 30d).
    #[arg(long, value_parser = humantime::parse_duration)]
    slo_window: Option<Duration>,
    /// Remove the deployment's SLO.
    #[arg(long, conflicts_with_all = ["slo_availability", "slo_latency", "slo_window"])]
    no_slo: bool,
}

/// `200ms:0.99` as (threshold in ms, objective).
fn latency_objective(text: &str) -> Result<(f64, f64), String> {
    let (time, share) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}': write TIME:SHARE, e.g. 200ms:0.99"))?;
    let time = humantime::parse_duration(time.trim())
        .map_err(|e| format!("'{time}' is not a duration ({e})"))?;
    let share: f64 = share
        .trim()
        .parse()
        .map_err(|_| format!("'{share}' is not a share, e.g. 0.99"))?;
    Ok((time.as_secs_f64() * 1_000.0, share))
}

impl SettingsFlags {
    fn json(&self) -> Option<Value> {
        let mut settings = serde_json::Map::new();
        if let Some(v) = self.log_sample {
            settings.insert("log_sample".into(), json!(v));
        }
        if let Some(v) = self.batch_max_rows {
            settings.insert("batch_max_rows".into(), json!(v));
        }
        if let Some(v) = self.batch_max_wait {
            settings.insert("batch_max_wait_ms".into(), json!(v.as_millis() as u64));
        }
        if let Some(v) = self.breaker_failures {
            settings.insert("breaker_failures".into(), json!(v));
        }
        if let Some(v) = self.breaker_cooldown {
            settings.insert("breaker_cooldown_ms".into(), json!(v.as_millis() as u64));
        }
        if let Some(v) = self.monitor_window {
            settings.insert("monitor_window_ms".into(), json!(v.as_millis() as u64));
        }
        if let Some(v) = self.monitor_window_rows {
            settings.insert("monitor_window_rows".into(), json!(v));
        }
        if let Some(v) = self.prediction_retention {
            settings.insert(
                "prediction_retention_ms".into(),
                json!(v.as_millis() as u64),
            );
        }
        if self.no_slo {
            settings.insert("slo".into(), Value::Null);
        } else if self.slo_availability.is_some()
            || self.slo_latency.is_some()
            || self.slo_window.is_some()
        {
            let mut slo = json!({
                "availability": self.slo_availability,
                "latency": self.slo_latency.map(|(threshold_ms, objective)| {
                    json!({ "threshold_ms": threshold_ms, "objective": objective })
                }),
            });
            if let Some(window) = self.slo_window {
                slo["window_days"] = json!(window.as_secs().div_ceil(86_400));
            }
            settings.insert("slo".into(), slo);
        }
        (!settings.is_empty()).then_some(Value::Object(settings))
    }
}

/// A threshold flag: a number, or `off` to turn the rule off.
fn threshold(text: &str) -> Result<Value, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Value::Null);
    }
    text.parse::<f64>()
        .map(|v| json!(v))
        .map_err(|_| format!("'{text}' is not a number (or 'off')"))
}

/// Canary steps: `5,25,50,100` (each lasting --step-duration) or `5:30s,25:1m,100:2m`.
fn steps(text: &str, default: Duration) -> anyhow::Result<Vec<Value>> {
    text.split(',')
        .map(|step| {
            let (weight, duration) = match step.split_once(':') {
                Some((weight, duration)) => (
                    weight,
                    humantime::parse_duration(duration.trim())
                        .with_context(|| format!("step '{step}': bad duration"))?,
                ),
                None => (step, default),
            };
            let weight: u8 = weight
                .trim()
                .trim_end_matches('%')
                .parse()
                .with_context(|| format!("step '{step}': the weight must be a percentage"))?;
            Ok(json!({ "weight": weight, "duration_ms": duration.as_millis() as u64 }))
        })
        .collect()
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// The deployment.
    name: String,
    /// models:/MODEL/VERSION (or @ALIAS) to roll out.
    #[arg(long)]
    candidate: Option<String>,
    /// canary (default), blue-green or shadow.
    #[arg(long, default_value = "canary")]
    strategy: String,
    /// Canary steps in percent of live traffic: 5,25,50,100 or 5:30s,25:1m,...
    #[arg(long)]
    steps: Option<String>,
    /// Duration of each canary step without its own (default 1m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    step_duration: Duration,
    /// Blue-green: how long the candidate is previewed before the switch (default 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    preview: Option<Duration>,
    /// Blue-green: time at 100% with analysis before promotion (default 0).
    #[arg(long, value_parser = humantime::parse_duration)]
    bake: Option<Duration>,
    /// Shadow (default 100) or blue-green preview (default 0): percent of live traffic
    /// copied to the candidate, compared and never returned.
    #[arg(long)]
    mirror: Option<u8>,
    /// Shadow: how long to compare (default 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Analysis: how often (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Analysis: requests each rule needs per side before it decides (default 100).
    #[arg(long)]
    min_samples: Option<u32>,
    /// Candidate error rate above which it rolls back (default 0.01; off).
    #[arg(long, value_parser = threshold)]
    max_error_rate: Option<Value>,
    /// Candidate p99 latency in ms above which it rolls back (default off).
    #[arg(long, value_parser = threshold)]
    max_p99_ms: Option<Value>,
    /// Candidate p99 over stable p99 above which it rolls back (default 2; off).
    #[arg(long, value_parser = threshold)]
    max_p99_ratio: Option<Value>,
    /// Smallest shift between the variants' predictions that rolls back, as a Jensen-Shannon
    /// distance (default 0.1; off); it must also be significant at --alpha (chi-square test).
    #[arg(long, value_parser = threshold)]
    max_shift: Option<Value>,
    /// Mirrored traffic: share of rows both variants must predict alike (default 0.9 when
    /// mirroring; off); fails only when certainly below at --alpha.
    #[arg(long, value_parser = threshold)]
    min_agreement: Option<Value>,
    /// Significance level of the shift and agreement tests (default 0.01).
    #[arg(long)]
    alpha: Option<f64>,
    /// Percent of the requests the candidate answers that are also run on the stable, off the
    /// response path, and compared row by row (default 20; 0 turns it off).
    #[arg(long)]
    rescore_percent: Option<u8>,
    /// Re-scored rows: share both variants must predict alike (default 0.9; off).
    #[arg(long, value_parser = threshold)]
    min_rescore_agreement: Option<Value>,
    /// Re-scored rows the re-score agreement rule needs before it decides (default 20).
    #[arg(long)]
    rescore_min_samples: Option<u32>,
    /// How long a step may wait, after its duration, for an analysis that passes (too few
    /// samples, a preview nobody tests) before --on-deadline (default 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    progress_deadline: Option<Duration>,
    /// What happens at the progress deadline: rollback (default) or pause (the split holds
    /// until someone runs `deploy promote` or `deploy rollback`).
    #[arg(long, value_parser = ["rollback", "pause"])]
    on_deadline: Option<String>,
    #[command(flatten)]
    settings: SettingsFlags,
    /// Print the deployment as JSON (the server's `deployment` object).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// Serve a registered model under NAME: at /deployments/NAME/invocations and
    /// /v2/models/NAME/infer on the server, and on any `slipway serve --deployment NAME`.
    Create {
        /// The deployment's name, as in its URL.
        name: String,
        /// models:/MODEL@ALIAS (the deployment follows the alias) or models:/MODEL/VERSION.
        #[arg(long)]
        model: String,
        #[command(flatten)]
        settings: SettingsFlags,
        /// Admins only: re-create a deployment that served a protected alias without following
        /// it, for this reason (recorded in the audit log as an override).
        #[arg(long)]
        override_reason: Option<String>,
        /// Print the deployment as JSON (the server's `deployment` object).
        #[arg(long)]
        json: bool,
    },
    /// List deployments.
    List {
        /// Print the server's answer as JSON (`{"deployments": [...]}`).
        #[arg(long)]
        json: bool,
    },
    /// Weights, versions, the step and its times, the latest analysis rule by rule, what to
    /// run next, and recent events of a deployment.
    Status {
        /// The deployment.
        name: String,
        /// Follow a running rollout until it ends (exit 0 on success, 3 on rollback or abort):
        /// redrawn in place on a terminal, only new events when piped.
        #[arg(long)]
        watch: bool,
        /// Print `{"deployment": {...}, "events": [...]}` on one line (one line per poll with
        /// --watch).
        #[arg(long)]
        json: bool,
    },
    /// Start a rollout of a candidate version (--candidate), or change serving settings.
    Update(Box<UpdateArgs>),
    /// Promote the running rollout's candidate now (through the promotion policy).
    Promote {
        /// The deployment.
        name: String,
        /// Print the deployment as JSON (the server's `deployment` object).
        #[arg(long)]
        json: bool,
    },
    /// Stop the running rollout; all traffic back to stable.
    Abort {
        /// The deployment.
        name: String,
        /// Why, for the events and the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the deployment as JSON (the server's `deployment` object).
        #[arg(long)]
        json: bool,
    },
    /// Roll back: end the running rollout, or go back to the previous stable version (and
    /// move the alias the deployment follows back with it).
    Rollback {
        /// The deployment.
        name: String,
        /// Why, for the events and the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the deployment as JSON, with `rollback`: `{rollout_id, from_version,
        /// to_version, alias}` saying what this rollback did.
        #[arg(long)]
        json: bool,
    },
    /// Delete a deployment (its events and prediction log stay).
    Delete {
        /// The deployment.
        name: String,
        /// Print `{"deleted": NAME}` instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PredictionsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: PredictionsCommand,
}

#[derive(Debug, Subcommand)]
enum PredictionsCommand {
    /// Write a deployment's prediction log as JSON lines (request id, time, variant, version,
    /// inputs, outputs, latency), oldest first.
    Export {
        /// The deployment.
        name: String,
        /// File to write (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// Only records with an id above this (resume an earlier export).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

fn path(name: &str, rest: &str) -> String {
    format!("{NATIVE}/{}{rest}", urlencode(name))
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::new(&args.server)?;
    let server = args
        .server
        .tracking_uri
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:5000".to_owned());
    let post = reqwest::Method::POST;
    match args.command {
        DeployCommand::Create {
            name,
            model,
            settings,
            override_reason,
            json,
        } => {
            let mut body = json!({ "name": name, "model_uri": model });
            if let Some(reason) = override_reason {
                body["override_reason"] = json!(reason);
            }
            if let Some(settings) = settings.json() {
                body["settings"] = settings;
            }
            let answer = client.call(post, NATIVE, Some(body)).await?;
            show(&answer["deployment"], json, "created")?;
        }
        DeployCommand::List { json } => {
            let answer = client.call(reqwest::Method::GET, NATIVE, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                let mut table = Table::new();
                table.set_header(["name", "model", "stable", "candidate", "rollout", "weight"]);
                for d in answer["deployments"].as_array().into_iter().flatten() {
                    let rollout = &d["rollout"];
                    table.add_row([
                        text(&d["name"]),
                        model_of(d),
                        text(&d["stable_version"]),
                        text(&rollout["candidate_version"]),
                        text(&rollout["state"]["state"]),
                        format!("{}%", d["traffic"]["weight"]),
                    ]);
                }
                println!("{table}");
            }
        }
        DeployCommand::Status { name, watch, json } => {
            return status(&client, &server, &name, watch, json).await;
        }
        DeployCommand::Update(update) => {
            let UpdateArgs {
                name,
                candidate,
                strategy,
                steps: step_list,
                step_duration,
                preview,
                bake,
                mirror,
                duration,
                interval,
                min_samples,
                max_error_rate,
                max_p99_ms,
                max_p99_ratio,
                max_shift,
                min_agreement,
                alpha,
                rescore_percent,
                min_rescore_agreement,
                rescore_min_samples,
                progress_deadline,
                on_deadline,
                settings,
                json,
            } = *update;
            if let Some(settings) = settings.json() {
                let answer = client
                    .call(
                        reqwest::Method::PATCH,
                        &path(&name, ""),
                        Some(json!({ "settings": settings })),
                    )
                    .await?;
                if candidate.is_none() {
                    show(&answer["deployment"], json, "updated")?;
                }
            }
            let Some(candidate) = candidate else {
                if settings.json().is_none() {
                    bail!(
                        "nothing to update: give --candidate models:/MODEL/VERSION to start a rollout, or a serving setting such as --log-sample"
                    );
                }
                return Ok(std::process::ExitCode::SUCCESS);
            };
            let ms = |d: Duration| d.as_millis() as u64;
            let mut body = json!({ "candidate_uri": candidate, "strategy": strategy });
            if let Some(list) = step_list {
                body["steps"] = json!(steps(&list, step_duration)?);
            } else if strategy == "canary" {
                body["steps"] = json!(steps("5,25,50,100", step_duration)?);
            }
            if let Some(d) = preview {
                body["preview_ms"] = json!(ms(d));
            }
            if let Some(d) = bake {
                body["bake_ms"] = json!(ms(d));
            }
            if let Some(m) = mirror {
                body["mirror_percent"] = json!(m);
            }
            if let Some(d) = duration {
                body["duration_ms"] = json!(ms(d));
            }
            if let Some(d) = progress_deadline {
                body["progress_deadline_ms"] = json!(ms(d));
            }
            if let Some(action) = on_deadline {
                body["on_deadline"] = json!(action);
            }
            let mut analysis = serde_json::Map::new();
            if let Some(d) = interval {
                analysis.insert("interval_ms".into(), json!(ms(d)));
            }
            if let Some(n) = min_samples {
                analysis.insert("min_samples".into(), json!(n));
            }
            if let Some(a) = alpha {
                analysis.insert("alpha".into(), json!(a));
            }
            if let Some(p) = rescore_percent {
                analysis.insert("rescore_percent".into(), json!(p));
            }
            if let Some(n) = rescore_min_samples {
                analysis.insert("rescore_min_samples".into(), json!(n));
            }
            for (key, value) in [
                ("max_error_rate", max_error_rate),
                ("max_p99_ms", max_p99_ms),
                ("max_p99_ratio", max_p99_ratio),
                ("max_prediction_shift", max_shift),
                ("min_agreement", min_agreement),
                ("min_rescore_agreement", min_rescore_agreement),
            ] {
                if let Some(value) = value {
                    analysis.insert(key.into(), value);
                }
            }
            if !analysis.is_empty() {
                body["analysis"] = Value::Object(analysis);
            }
            let answer = client
                .call(post, &path(&name, "/rollout"), Some(body))
                .await?;
            show(&answer["deployment"], json, "rollout started")?;
        }
        DeployCommand::Promote { name, json } => {
            let answer = client
                .call(post, &path(&name, "/promote"), Some(json!({})))
                .await?;
            show(&answer["deployment"], json, "promoted")?;
        }
        DeployCommand::Abort { name, reason, json } => {
            let answer = client
                .call(
                    post,
                    &path(&name, "/abort"),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            show(&answer["deployment"], json, "aborted")?;
        }
        DeployCommand::Rollback { name, reason, json } => {
            let answer = client
                .call(
                    post,
                    &path(&name, "/rollback"),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            let done = &answer["rollback"];
            if json {
                let mut deployment = answer["deployment"].clone();
                deployment["rollback"] = done.clone();
                println!("{}", serde_json::to_string_pretty(&deployment)?);
            } else {
                println!("{}", rollback_sentence(&answer["deployment"], done));
            }
        }
        DeployCommand::Delete { name, json } => {
            client
                .call(reqwest::Method::DELETE, &path(&name, ""), None)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "deleted": name }))?
                );
            } else {
                println!("deleted deployment {name}");
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// What a rollback did, from the server's account of it (not the last rollout's story, which
/// a rollback with no rollout running did not touch).
fn rollback_sentence(deployment: &Value, done: &Value) -> String {
    let name = text(&deployment["name"]);
    let from = text(&done["from_version"]);
    let to = text(&done["to_version"]);
    if !done["rollout_id"].is_null() {
        return format!(
            "rolled back rollout {} of deployment {name}: candidate version {from} no longer answers; all traffic on version {to}",
            done["rollout_id"]
        );
    }
    match done["alias"].as_str() {
        Some(alias) => format!(
            "rolled back deployment {name}: alias '{alias}' of '{}' moved from version {from} to version {to}, which answers all traffic",
            text(&deployment["model_name"])
        ),
        None => format!(
            "rolled back deployment {name} from version {from} to version {to}, which answers all traffic"
        ),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn model_of(d: &Value) -> String {
    match d["alias"].as_str() {
        Some(alias) => format!("{}@{alias}", text(&d["model_name"])),
        None => text(&d["model_name"]),
    }
}

fn show(deployment: &Value, json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(deployment)?);
    } else {
        println!("{what}: {}", summary(deployment));
    }
    Ok(())
}

fn summary(d: &Value) -> String {
    let rollout = &d["rollout"];
    let mut line = format!(
        "deployment {} serves {} version {}",
        text(&d["name"]),
        model_of(d),
        text(&d["stable_version"])
    );
    if !rollout.is_null() {
        line.push_str(&format!(
            "; rollout {} of version {} ({}, {}): candidate {}% live, {}% mirrored",
            rollout["id"],
            text(&rollout["candidate_version"]),
            text(&rollout["strategy"]["kind"]),
            text(&rollout["state"]["state"]),
            d["traffic"]["weight"],
            d["traffic"]["mirror"],
        ));
        if let Some(reason) = rollout["state"]["reason"].as_str() {
            line.push_str(&format!(" - {reason}"));
        }
    }
    line
}

/// Reads the events after the ones in `events`, re-reading the last one: a run of identical
/// analyses is one event whose count grows in place.
async fn refresh_events(
    client: &Client,
    name: &str,
    events: &mut Vec<Value>,
) -> anyhow::Result<()> {
    const PAGE: usize = 1000;
    let mut after = match events.pop() {
        Some(last) => last["seq"].as_i64().unwrap_or(0) - 1,
        None => 0,
    };
    loop {
        let page = client
            .call(
                reqwest::Method::GET,
                &path(name, &format!("/events?after={after}&limit={PAGE}")),
                None,
            )
            .await?;
        let page = page["events"].as_array().cloned().unwrap_or_default();
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            after = last["seq"].as_i64().unwrap_or(after);
        }
        events.extend(page);
        if !full {
            return Ok(());
        }
    }
}

/// Where `deploy status --watch` draws: a terminal gets the frame redrawn in place; a pipe
/// or file gets the first frame, then one line per new event, so a CI log reads as a history.
enum Screen {
    Terminal {
        term: console::Term,
        drawn_rows: usize,
    },
    Log {
        last_seq: i64,
        last_state: String,
    },
}

impl Screen {
    fn new() -> Screen {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() {
            Screen::Terminal {
                term: console::Term::stdout(),
                drawn_rows: 0,
            }
        } else {
            Screen::Log {
                last_seq: -1,
                last_state: String::new(),
            }
        }
    }

    fn color(&self) -> bool {
        matches!(self, Screen::Terminal { .. }) && console::colors_enabled()
    }

    fn show(&mut self, view: &rollout_view::View, state: &str) -> anyhow::Result<()> {
        match self {
            Screen::Terminal { term, drawn_rows } => {
                let width = usize::from(term.size().1).max(20);
                let lines = view.lines();
                // A line wider than the terminal wraps: count the rows it takes to clear it.
                let rows: usize = lines
                    .iter()
                    .map(|line| console::measure_text_width(line).max(1).div_ceil(width))
                    .sum();
                term.clear_last_lines(*drawn_rows)?;
                for line in &lines {
                    term.write_line(line)?;
                }
                *drawn_rows = rows;
            }
            Screen::Log {
                last_seq,
                last_state,
            } => {
                if *last_seq < 0 {
                    for line in view.lines() {
                        println!("{line}");
                    }
                } else {
                    for event in view.events {
                        if event["seq"].as_i64().unwrap_or(0) > *last_seq {
                            println!("{}", view.event_line(event));
                        }
                    }
                    if state != last_state {
                        println!("rollout {}", state.replace('_', " "));
                    }
                }
                *last_seq = view
                    .events
                    .last()
                    .and_then(|e| e["seq"].as_i64())
                    .unwrap_or(0);
                *last_state = state.to_owned();
            }
        }
        Ok(())
    }
}

async fn status(
    client: &Client,
    server: &str,
    name: &str,
    watch: bool,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut events = Vec::new();
    let mut screen = Screen::new();
    loop {
        let answer = client
            .call(reqwest::Method::GET, &path(name, ""), None)
            .await?;
        let deployment = &answer["deployment"];
        refresh_events(client, name, &mut events).await?;
        let rollout = &deployment["rollout"];
        let state = rollout["state"]["state"].as_str().unwrap_or("none");
        if json {
            println!(
                "{}",
                serde_json::to_string(&json!({ "deployment": deployment, "events": events }))?
            );
        } else {
            let view = rollout_view::View {
                deployment,
                events: &events,
                now_ms: now_ms(),
                server,
                // On a terminal the frame must fit without scrolling.
                recent_events: if watch { 6 } else { 12 },
                color: screen.color(),
            };
            if watch {
                screen.show(&view, state)?;
            } else {
                for line in view.lines() {
                    println!("{line}");
                }
            }
        }
        let active = matches!(state, "progressing" | "awaiting_approval" | "paused");
        if !watch || !active {
            return Ok(match state {
                "rolled_back" | "aborted" if watch => std::process::ExitCode::from(3),
                _ => std::process::ExitCode::SUCCESS,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn predictions(args: PredictionsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    match args.command {
        PredictionsCommand::Export {
            name,
            output,
            after,
        } => {
            use std::io::Write as _;
            let mut sink: Box<dyn std::io::Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg}: {pos} records ({per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_message(format!("exporting {name}"));
            if output.is_none() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let mut after = after;
            loop {
                let answer = client
                    .call(
                        reqwest::Method::GET,
                        &path(&name, &format!("/predictions?after={after}&limit=5000")),
                        None,
                    )
                    .await?;
                let records = answer["predictions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for record in &records {
                    writeln!(sink, "{}", serde_json::to_string(record)?)?;
                    after = record["id"].as_i64().unwrap_or(after);
                }
                bar.inc(records.len() as u64);
                if answer["next_after"].is_null() {
                    break;
                }
            }
            sink.flush()?;
            bar.finish_with_message(format!("exported {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod rollback_sentence_tests {
    use super::*;

    #[test]
    fn says_what_the_rollback_moved_not_the_last_rollout() {
        let deployment = json!({"name": "fraud", "model_name": "fraud-model",
            "rollout": {"id": 4, "state": {"state": "succeeded"}}});
        let moved = json!({"rollout_id": null, "from_version": "7", "to_version": "6",
            "alias": "production"});
        assert_eq!(
            rollback_sentence(&deployment, &moved),
            "rolled back deployment fraud: alias 'production' of 'fraud-model' moved from version 7 to version 6, which answers all traffic"
        );
        let ended = json!({"rollout_id": 4, "from_version": "7", "to_version": "6",
            "alias": null});
        assert!(
            rollback_sentence(&deployment, &ended)
                .starts_with("rolled back rollout 4 of deployment fraud: candidate version 7")
        );
    }
}
