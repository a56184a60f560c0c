//! slipway benchmark load generator: runs one scenario at a time against an MLflow-compatible
//! server on loopback, prints a human summary and merges a JSON result into `--json-out`.

mod api;
mod procfs;
mod progress;
mod rate;
mod report;
mod scenarios;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::api::Api;
use crate::scenarios::*;

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for the slipway vs MLflow benchmark (see bench/README.md)")]
struct Cli {
    /// Server base URL (loopback only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:5000", env = "LOADGEN_URL")]
    url: String,
    /// Value of an `Authorization` header sent with every request (e.g. `Basic dXNlcjpwdw==` or
    /// `Bearer TOKEN`), for a server that requires authentication. Prefer the environment
    /// variable: a command-line argument is visible to other users in `ps`.
    #[arg(long, global = true, env = "LOADGEN_AUTHORIZATION", hide_env_values = true)]
    auth_header: Option<String>,
    /// Merge this scenario's result into this JSON file (created if missing).
    #[arg(long, global = true)]
    json_out: Option<PathBuf>,
    /// Key under which the result is stored (defaults to the scenario's name).
    #[arg(long, global = true)]
    key: Option<String>,
    /// Measured window of time-bounded loops, seconds.
    #[arg(long, global = true, default_value_t = 20.0)]
    duration: f64,
    /// Warm-up before the measured window, seconds (not recorded).
    #[arg(long, global = true, default_value_t = 2.0)]
    warmup: f64,
    /// Also stop a time-bounded loop after this many measured requests (0 = no cap).
    #[arg(long, global = true, default_value_t = 0)]
    max_requests: u64,
    /// Number of concurrent clients (ingest, log-metric).
    #[arg(long, global = true, default_value_t = 8)]
    concurrency: usize,
    /// Tokio worker threads of the load generator (keep low on a 2-core machine).
    #[arg(long, global = true, default_value_t = 1, env = "LOADGEN_THREADS")]
    threads: usize,
    /// PID of the server (root of its process tree), to attribute CPU time.
    #[arg(long, global = true, env = "LOADGEN_SERVER_PID")]
    server_pid: Option<u32>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Wait until GET /health answers 200; records start-up time measured from --start-ns.
    WaitHealth {
        /// Spawn time of the server, nanoseconds since the epoch (`date +%s%N`).
        #[arg(long)]
        start_ns: Option<u128>,
        #[arg(long, default_value_t = 180.0)]
        timeout: f64,
        /// Give up early if this process dies.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Memory of a process tree (sum of RSS over all its processes; PSS too).
    Mem {
        #[arg(long)]
        pid: u32,
    },
    /// Scenario 1: concurrent clients, each with its own run, POST runs/log-batch.
    Ingest {
        #[arg(long, default_value_t = 1000)]
        metrics_per_req: usize,
        #[arg(long, default_value_t = 4)]
        keys: usize,
        /// Send pre-serialized bodies (keeps the generator cheap).
        #[arg(long)]
        preserialized: bool,
        /// Pre-serialized bodies per run before a client moves to a fresh run.
        #[arg(long, default_value_t = 100)]
        pool_requests: usize,
    },
    /// Scenario 2: POST runs/log-metric, one point per request.
    LogMetric,
    /// Scenario 3: populate an experiment with N runs, then time runs/search.
    Search {
        #[arg(long, default_value_t = 5000)]
        runs: usize,
        #[arg(long, default_value_t = 4)]
        populate_concurrency: usize,
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        #[arg(long, default_value_t = 120.0)]
        max_seconds: f64,
        #[arg(long, default_value = DEFAULT_FILTER)]
        filter: String,
        #[arg(long, default_value = DEFAULT_ORDER)]
        order_by: String,
        #[arg(long, default_value_t = 100)]
        max_results: usize,
    },
    /// Scenario 4: log N steps of one metric, then fetch its history (paged and in one request).
    History {
        #[arg(long, default_value_t = 100_000)]
        steps: usize,
        #[arg(long, default_value_t = 25_000)]
        page_size: usize,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[arg(long, default_value_t = 2)]
        log_concurrency: usize,
    },
    /// Scenario 5: GET registered-models/alias at the given concurrencies.
    Alias {
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        concurrencies: Vec<usize>,
    },
    /// Scenario 6: PUT then GET a blob through the mlflow-artifacts proxy.
    Artifact {
        #[arg(long, default_value_t = 10)]
        size_mib: usize,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Open-loop POSTs of one body at a fixed rate (wrk2-like, latency from each request's due
    /// time); classifies answers (2xx, 503 + Retry-After, other 5xx, errors). Uses --url,
    /// --warmup, --duration, --max-requests, --server-pid.
    Rate {
        /// Path under --url, e.g. /invocations.
        #[arg(long)]
        path: String,
        /// File holding the JSON body sent with every request.
        #[arg(long)]
        body: PathBuf,
        /// Requests per second offered.
        #[arg(long)]
        rate: f64,
        /// Requests outstanding at once (connections); a due request waits for a free one.
        #[arg(long, default_value_t = 256)]
        max_outstanding: usize,
        /// Seconds before a request counts as a transport error.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Report percentiles per interval of this many seconds (0: none).
        #[arg(long, default_value_t = 0.0)]
        interval: f64,
        /// Sample the RSS of --server-pid's process tree every this many seconds (0: never).
        #[arg(long, default_value_t = 0.0)]
        rss_every: f64,
    },
    /// Check that the server enforces authentication: anonymous request -> 401, the same with
    /// --auth-header -> 200 (exit status 1 otherwise).
    CheckAuth,
    /// Record `key = {"skipped": reason}` (a scenario that was not run).
    Skip {
        #[arg(long)]
        reason: String,
    },
    /// Record metadata: --set k=v (repeatable) into the file's "meta".
    Meta {
        #[arg(long = "set")]
        set: Vec<String>,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Compare the result files of the servers: print a table, write JSON and Markdown.
    Report {
        #[arg(long)]
        mlflow: Option<PathBuf>,
        /// slipway's results (authentication off, unless it was run with it).
        #[arg(long)]
        slipway: Option<PathBuf>,
        /// slipway's results with authentication on: adds the auth-on vs auth-off table.
        #[arg(long)]
        slipway_auth: Option<PathBuf>,
        #[arg(long)]
        out_json: Option<PathBuf>,
        #[arg(long)]
        out_md: Option<PathBuf>,
        /// Free text shown at the top of the report (run mode, flags).
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub fn load(path: &Path) -> Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"meta": {}, "scenarios": {}}))
}

fn save(path: &Path, key: &str, v: Value, meta: bool) -> Result<()> {
    let mut doc = load(path);
    let section = if meta { "meta" } else { "scenarios" };
    if !doc[section].is_object() {
        doc[section] = json!({});
    }
    if meta {
        if let (Some(m), Some(new)) = (doc[section].as_object_mut(), v.as_object()) {
            for (k, x) in new {
                m.insert(k.clone(), x.clone());
            }
        }
    } else {
        doc[section][key] = v;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn default_key(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::WaitHealth { .. } => "startup",
        Cmd::Mem { .. } => "idle_memory",
        Cmd::Ingest { preserialized: true, .. } => "ingest_preserialized",
        Cmd::Ingest { .. } => "ingest",
        Cmd::LogMetric => "log_metric",
        Cmd::Search { .. } => "search",
        Cmd::History { .. } => "history",
        Cmd::Alias { .. } => "alias",
        Cmd::Artifact { .. } => "artifact",
        Cmd::Rate { .. } => "rate",
        _ => "",
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let key_default: &str = default_key(&cli.cmd);
    let result: Value = match &cli.cmd {
        Cmd::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            return Ok(());
        }
        Cmd::Report { mlflow, slipway, slipway_auth, out_json, out_md, note } => {
            let inputs = report::Inputs { mlflow: mlflow.as_deref(), slipway: slipway.as_deref(), slipway_auth: slipway_auth.as_deref() };
            return report::report(&inputs, out_json.as_deref(), out_md.as_deref(), note);
        }
        Cmd::CheckAuth => {
            if cli.auth_header.is_none() {
                bail!("check-auth needs --auth-header (or LOADGEN_AUTHORIZATION)");
            }
            let api = Api::new(&cli.url, cli.auth_header.as_deref())?;
            println!("auth: {}", api.check_auth().await?);
            return Ok(());
        }
        Cmd::Meta { set } => {
            let mut m = serde_json::Map::new();
            for kv in set {
                let (k, v) = kv.split_once('=').context("--set expects key=value")?;
                m.insert(k.into(), serde_json::from_str(v).unwrap_or_else(|_| json!(v)));
            }
            if let Some(p) = &cli.json_out {
                save(p, "", Value::Object(m), true)?;
            }
            return Ok(());
        }
        Cmd::Skip { reason } => {
            let key = cli.key.clone().context("skip needs --key")?;
            println!("{key}: not run ({reason})");
            if let Some(p) = &cli.json_out {
                save(p, &key, json!({"skipped": reason}), false)?;
            }
            return Ok(());
        }
        Cmd::Rate { path, body, rate, max_outstanding, timeout, interval, rss_every } => {
            let body = std::fs::read(body).with_context(|| format!("reading {}", body.display()))?;
            let result = rate::rate(rate::RateOpts {
                url: format!("{}{}", cli.url.trim_end_matches('/'), path),
                body: body.into(),
                rate: *rate,
                warmup: Duration::from_secs_f64(cli.warmup),
                duration: Duration::from_secs_f64(cli.duration),
                max_outstanding: *max_outstanding,
                timeout: Duration::from_secs_f64(*timeout),
                interval: Duration::from_secs_f64(*interval),
                rss_every: Duration::from_secs_f64(*rss_every),
                server_pid: cli.server_pid,
                max_requests: cli.max_requests,
                threads: cli.threads.max(1),
            })
            .await?;
            rate::print(&result);
            if let Some(p) = &cli.json_out {
                save(p, cli.key.as_deref().unwrap_or("rate"), result, false)?;
            }
            return Ok(());
        }
        Cmd::Mem { pid } => {
            let m = procfs::tree_mem(*pid);
            if m.processes == 0 {
                bail!("no process {pid}");
            }
            serde_json::to_value(m)?
        }
        Cmd::WaitHealth { start_ns, timeout, pid } => {
            let api = Api::new(&cli.url, cli.auth_header.as_deref())?;
            let t0 = Instant::now();
            let since_spawn = |t: Instant| -> f64 {
                match start_ns {
                    Some(ns) => {
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                        let back = t.elapsed().as_nanos();
                        (now.saturating_sub(back).saturating_sub(*ns)) as f64 / 1e9
                    }
                    None => t.duration_since(t0).as_secs_f64(),
                }
            };
            let mut polls = 0u64;
            loop {
                polls += 1;
                if api.health().await.is_ok() {
                    let s = since_spawn(Instant::now());
                    println!("startup: /health answered 200 after {s:.3} s");
                    break json!({"seconds": s, "polls": polls});
                }
                if let Some(p) = pid {
                    if !Path::new(&format!("/proc/{p}")).exists() {
                        bail!("server process {p} exited before /health answered");
                    }
                }
                if t0.elapsed().as_secs_f64() > *timeout {
                    bail!("/health did not answer 200 within {timeout} s");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        _ => {
            let api = Api::new(&cli.url, cli.auth_header.as_deref())?;
            api.health().await.with_context(|| format!("server at {} is not healthy", cli.url))?;
            let c = Common {
                api,
                server_pid: cli.server_pid,
                threads: cli.threads.max(1),
                warmup: Duration::from_secs_f64(cli.warmup),
                duration: Duration::from_secs_f64(cli.duration),
                max_requests: cli.max_requests,
                tag: format!("{}-{}", api::now_ms(), std::process::id()),
            };
            let scenario_key = cli.key.clone();
            let json_out = cli.json_out.clone();
            let r: Result<Value> = async { Ok(match &cli.cmd {
                Cmd::Ingest { metrics_per_req, keys, preserialized, pool_requests } => {
                    let o = IngestOpts {
                        concurrency: cli.concurrency,
                        metrics_per_req: *metrics_per_req,
                        keys: *keys,
                        preserialized: *preserialized,
                        pool_requests: *pool_requests,
                    };
                    ingest(&c, &o).await?
                }
                Cmd::LogMetric => {
                    log_metric(&c, cli.concurrency).await?
                }
                Cmd::Search { runs, populate_concurrency, iterations, max_seconds, filter, order_by, max_results } => {
                    let o = SearchOpts {
                        runs: *runs,
                        populate_concurrency: *populate_concurrency,
                        iterations: *iterations,
                        max_seconds: *max_seconds,
                        filter: filter.clone(),
                        order_by: order_by.clone(),
                        max_results: *max_results,
                    };
                    search(&c, &o).await?
                }
                Cmd::History { steps, page_size, reps, log_concurrency } => {
                    let o = HistoryOpts { steps: *steps, page_size: *page_size, reps: *reps, log_concurrency: *log_concurrency };
                    history(&c, &o).await?
                }
                Cmd::Alias { concurrencies } => {
                    alias(&c, concurrencies).await?
                }
                Cmd::Artifact { size_mib, reps } => {
                    artifact(&c, *size_mib, *reps).await?
                }
                _ => unreachable!(),
            }) }
            .await;
            match r {
                Ok(v) => v,
                Err(e) => {
                    // Record the failure so the report says what did not run and why.
                    if let (Some(p), Some(k)) = (&json_out, scenario_key.as_deref().or(Some(key_default))) {
                        let _ = save(p, k, json!({"skipped": format!("failed: {e:#}")}), false);
                    }
                    return Err(e);
                }
            }
        }
    };
    let key = cli.key.clone().unwrap_or_else(|| key_default.to_string());
    report::print_summary(&key, &result);
    if let Some(p) = &cli.json_out {
        save(p, &key, result, false)?;
    }
    Ok(())
}
