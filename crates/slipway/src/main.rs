//! The `slipway` binary: command line, configuration, telemetry, and the one place where
//! concrete adapters (SQL store, object-store artifacts) are chosen and wired into the app.

mod admin;
mod alerts;
mod backup;
mod config;
mod convert;
mod deploy;
mod drift;
mod export;
mod gate;
mod holdout;
mod image;
mod import;
mod keys;
mod mlflow_source;
mod mlflow_ui;
mod model_card;
mod monitor;
mod otlp;
mod pipeline;
mod remote;
mod report;
mod rollout_view;
mod serve;
mod slo;
mod state;
mod tls;
mod triggers;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use slipway_app::{App, AppSettings};
use slipway_store::{BackendUri, SqlStore, StoreOptions};
use tracing_subscriber::EnvFilter;

use crate::config::{FileConfig, ServerArgs, ServerConfig};

/// glibc's allocator serialises the request threads and the SQLite writer thread on its arena
/// locks (visible in profiles of single-metric ingest); mimalloc keeps per-thread heaps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about = "MLOps from experiment to production: an MLflow-compatible tracking server and model registry"
)]
struct Cli {
    /// Configuration file (default: ./slipway.toml when present).
    #[arg(long, global = true, env = "SLIPWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr: text (default; coloured only on a terminal, never with NO_COLOR)
    /// or json.
    #[arg(
        long,
        global = true,
        env = "SLIPWAY_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the tracking server and model registry (MLflow's REST API).
    Server(ServerArgs),
    /// Manage users and their roles (against the server's metadata store).
    Users(admin::UsersArgs),
    /// Manage API tokens (against the server's metadata store).
    Tokens(admin::TokensArgs),
    /// Verify, read and export the audit trail.
    Audit(admin::AuditArgs),
    /// Make the server match YAML documents (policies, deployments, SLOs, alerting, triggers,
    /// permissions; `slipway export state` writes them): all of the changes or none, each
    /// audited under you (over the HTTP API, as an admin).
    Apply(state::StateArgs),
    /// What `slipway apply` would change, and what changed outside it since (drift); exits 1
    /// when anything would change.
    Diff(state::StateArgs),
    /// Where a deployment's SLO stands: objectives, error budget left, burn rates (over the
    /// HTTP API).
    Slo(slo::SloArgs),
    /// Reports from recorded history: `report delivery` (DORA metrics and cost per 1,000
    /// inferences, per model; over the HTTP API).
    Report(report::ReportArgs),
    /// A model version's card: intended use and owners (from tags), training data and code
    /// (lineage), metrics, gate and fairness results, monitoring, limitations, and global
    /// feature importance by permutation on --data (Markdown, HTML or JSON).
    ModelCard(model_card::ModelCardArgs),
    /// The master key that encrypts the prediction log and labels at rest: generate one,
    /// rotate to a new one, list the data keys it wraps.
    Keys(keys::KeysArgs),
    /// Request, approve, reject and list promotions to protected aliases (over the HTTP API).
    Promote(remote::PromoteArgs),
    /// Roll an alias back, show its history, or convert a model to ONNX (over the HTTP API).
    Models(remote::ModelsArgs),
    /// Set, show or delete a registered model's promotion policy (over the HTTP API).
    Policy(remote::PolicyArgs),
    /// Where a model version came from: models:/NAME/VERSION or models:/NAME@ALIAS (over the
    /// HTTP API).
    Lineage(remote::LineageArgs),
    /// Grant, revoke and list per-experiment and per-registered-model permissions (over the
    /// HTTP API, as an admin).
    Permissions(remote::PermissionsArgs),
    /// Managed deployments: create, roll out (canary, blue-green, shadow), watch, promote,
    /// abort, roll back (over the HTTP API).
    Deploy(deploy::DeployArgs),
    /// Export a deployment's prediction log (over the HTTP API).
    Predictions(deploy::PredictionsArgs),
    /// Serve one model over MLflow's scoring protocol, like `mlflow models serve`; or, with
    /// --deployment, a replica of a managed deployment.
    Serve(serve::ServeArgs),
    /// Container images without Docker: an OCI archive holding this binary, ONNX Runtime and
    /// optionally a model.
    Image(image::ImageArgs),
    /// A consistent copy of the metadata store and the artifacts, taken while servers keep
    /// serving, into a folder or an S3 prefix (artifacts kept once per content digest).
    Backup(backup::BackupArgs),
    /// Move in from another tracking server: experiments, runs (ids kept), metric histories,
    /// artifacts, registered models and versions (numbers kept) and aliases, idempotently.
    Import(import::ImportArgs),
    /// Move out again: slipway's experiments, runs, metric histories, artifacts, logged models,
    /// registered models, versions (numbers kept), stages and aliases, into another tracking
    /// server, idempotently.
    Export(export::ExportArgs),
    /// Rebuild an empty store from a backup (`--list` shows them); the audit chain is checked
    /// on the result.
    Restore(backup::RestoreArgs),
    /// Compare two datasets (CSV or Parquet) column by column for drift; exit code 0 when the
    /// dataset has not drifted, 1 when it has, 2 on an error.
    Drift(drift::DriftArgs),
    /// Drift monitoring of deployments: model versions' references and deployments' windows
    /// (over the HTTP API).
    Monitor(monitor::MonitorArgs),
    /// Upload true labels of a deployment's requests, for its realized performance (over the
    /// HTTP API).
    Labels(monitor::LabelsArgs),
    /// Alerts: apply the rules file (receivers, route, rules), list pending, firing and
    /// resolved alerts, silence them (over the HTTP API).
    Alerts(alerts::cli::AlertsArgs),
    /// Pipelines: run a pipeline file's steps with their cache, each executed step tracked as a
    /// run nested under the pipeline's; draw its DAG.
    Pipeline(pipeline::PipelineArgs),
    /// A release gate, run by the server: the candidate (and the champion) on a holdout,
    /// quality, latency, cost, size, data checks and fairness measured and judged by rules;
    /// exit code 0 pass, 1 fail, 2 error. Recorded as a run, a gate record and tags on the
    /// candidate version, which a promotion policy can require.
    Gate(gate::GateArgs),
    /// Retraining triggers: apply a triggers file, fire one by hand, read the history of
    /// retrains (cause -> pipeline run -> version -> gate -> rollout -> decision), and run the
    /// worker that carries retrains out.
    Triggers(triggers::TriggersArgs),
    /// Print a shell completion script: `slipway completions bash > /etc/bash_completion.d/slipway`,
    /// `slipway completions zsh > ~/.zfunc/_slipway`, `slipway completions fish >
    /// ~/.config/fish/completions/slipway.fish`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the command-line reference as Markdown: docs/cli.md is its output, and a test
    /// fails while the committed page differs.
    #[command(hide = true)]
    HelpMarkdown,
}

/// docs/cli.md: every command and flag, from the same clap definitions as `--help`, so the
/// reference cannot drift from the binary.
fn cli_markdown() -> String {
    clap_markdown::help_markdown_custom::<Cli>(
        &clap_markdown::MarkdownOptions::new()
            .title("slipway command-line reference".to_owned())
            .show_footer(false),
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that print end quietly when the reader goes away (`slipway audit log | head`),
    // killed by SIGPIPE like other Unix tools, instead of panicking in println!. Not the
    // servers: they must survive every closed connection and pipe.
    if !matches!(cli.command, Command::Server(_) | Command::Serve(_)) {
        sigpipe::reset();
    }
    // Request spans go to a collector from the servers only; set up before the runtime starts
    // (the exporter's HTTP client blocks on a thread of its own).
    let otlp_endpoint = match &cli.command {
        Command::Server(args) => args.otlp_endpoint.clone(),
        Command::Serve(args) => args.otlp_endpoint.clone(),
        _ => None,
    };
    let _exporting = match init_telemetry(cli.log_format, otlp_endpoint.as_deref()) {
        Ok(exporting) => exporting,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "slipway",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Command::HelpMarkdown = cli.command {
        print!("{}", cli_markdown());
        return ExitCode::SUCCESS;
    }
    // Drift has its own exit codes (2 for an error, as a usage error is) and no async work.
    if let Command::Drift(args) = cli.command {
        return drift::run(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => {
                let file = FileConfig::load(cli.config.as_deref())?;
                let config = ServerConfig::resolve(args, file.server)?;
                serve(config).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Users(args) => admin::users(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Tokens(args) => admin::tokens(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Audit(args) => admin::audit(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Slo(args) => slo::slo(args).await,
            Command::Report(args) => report::report(args).await.map(|()| ExitCode::SUCCESS),
            Command::ModelCard(args) => model_card::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Apply(args) => state::apply(args).await.map(|()| ExitCode::SUCCESS),
            Command::Diff(args) => state::diff(args).await,
            Command::Keys(args) => keys::keys(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Promote(args) => remote::promote(args).await.map(|()| ExitCode::SUCCESS),
            Command::Models(args) => remote::models(args).await.map(|()| ExitCode::SUCCESS),
            Command::Policy(args) => remote::policy(args).await.map(|()| ExitCode::SUCCESS),
            Command::Lineage(args) => remote::lineage(args).await.map(|()| ExitCode::SUCCESS),
            Command::Permissions(args) => {
                remote::permissions(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Deploy(args) => deploy::deploy(args).await,
            Command::Monitor(args) => verdict(monitor::monitor(args).await),
            Command::Labels(args) => monitor::labels(args).await,
            Command::Alerts(args) => verdict(alerts::cli::alerts(args).await),
            Command::Pipeline(args) => verdict(pipeline::pipeline(args).await),
            Command::Gate(args) => verdict(gate::gate(args).await),
            Command::Triggers(args) => verdict(triggers::triggers(args).await),
            Command::Predictions(args) => {
                deploy::predictions(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Image(args) => image::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Import(args) => import::run(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Export(args) => export::run(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Backup(args) => backup::backup(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Restore(args) => backup::restore(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Serve(args) => serve::serve(args, shutdown_signal())
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Completions { .. } | Command::HelpMarkdown | Command::Drift(_) => {
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_text(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once. Libraries often repeat their cause in their own
/// message (sqlx's "error returned from database: X" over X, an io error's text over the io
/// error), which `{:#}` would print twice; a cause already contained in the message before it
/// is left out.
pub(crate) fn error_text(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// For commands whose exit code 1 is a verdict (drift found, an alert fires, a step failed):
/// an error exits 2, so a script can tell the two apart.
fn verdict(result: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    result.or_else(|error| {
        eprintln!("error: {}", error_text(&error));
        Ok(ExitCode::from(2))
    })
}

/// Whether output on a stream may carry colour: only on a terminal, and never with `NO_COLOR`
/// set (https://no-color.org).
pub(crate) fn colour_on(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

#[cfg(feature = "otlp")]
type Exporting = Option<otlp::Exporting>;
#[cfg(not(feature = "otlp"))]
type Exporting = ();

/// Logs go to stderr; `RUST_LOG` overrides the default level. With an OTLP endpoint, spans
/// also go there; the returned value sends the last of them when dropped.
fn init_telemetry(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Exporting> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour_on(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    {
        let Some(endpoint) = otlp_endpoint else {
            registry.init();
            return Ok(None);
        };
        let (layer, exporting) = otlp::layer(endpoint, "slipway")?;
        registry.with(layer).init();
        Ok(Some(exporting))
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry.init();
        match otlp_endpoint {
            Some(_) => anyhow::bail!(
                "--otlp-endpoint needs a slipway built with the `otlp` feature (on by default)"
            ),
            None => Ok(()),
        }
    }
}

/// The router with a span per request when traces are exported.
pub(crate) fn traced(router: axum::Router, otlp_endpoint: &Option<String>) -> axum::Router {
    match otlp_endpoint {
        Some(_) => router.layer(axum::middleware::from_fn(otlp::trace_request)),
        None => router,
    }
}

/// How often the rollout controller looks at every deployment; analysis intervals are counted
/// in these ticks.
const CONTROLLER_TICK: std::time::Duration = std::time::Duration::from_millis(250);
/// How often schedules are checked and lapsed retrains failed: a cron minute is never missed.
const RETRAIN_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// How often drift monitoring closes the windows whose time is up.
const MONITOR_TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the leader deletes predictions past their deployment's retention: one indexed
/// read per deployment when nothing is due.
const RETENTION_TICK: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let backend = BackendUri::parse(&config.backend_store_uri)?;
    let store = SqlStore::open(
        &backend,
        StoreOptions {
            max_connections: config.db_max_connections,
            ..StoreOptions::default()
        },
    )
    .await
    .with_context(|| format!("opening the metadata store {}", backend.redacted()))?;
    let artifacts = config.artifacts_destination.open().await?;
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(artifacts),
        AppSettings {
            auth_enabled: config.auth,
            cpu_hour_price: config.cpu_hour_price,
            ..AppSettings::default()
        },
    );
    if config.auth {
        app.refresh_identity()
            .await
            .context("reading users and tokens")?;
        if app.list_users().await?.is_empty() {
            tracing::warn!(
                "authentication is on but there are no users yet; create an admin with \
                 `slipway users create NAME --role admin --password-stdin`"
            );
        }
        spawn_identity_refresher(app.clone());
    }
    let master = config
        .encryption_key
        .as_deref()
        .map(keys::master_key)
        .transpose()?;
    let sealing = slipway_app::sealing::Sealing::open(&store, master)
        .await
        .context("opening the data keys")?;
    if let Some(id) = sealing.master_key_id() {
        tracing::info!(master_key = %id, "the prediction log and labels are encrypted at rest");
    } else if sealing.locked() {
        tracing::warn!(
            "the prediction log on this store is encrypted and no master key was given \
             (--encryption-key): it can be neither read nor written here; everything else works"
        );
    }
    let app = app.with_sealing(Arc::new(sealing));
    let app = match &config.webhook_url {
        Some(url) => app.with_notifier(Arc::new(webhook::Webhook::new(url)?)),
        None => app,
    };
    let app = app.with_gate_runner(Arc::new(gate::OnnxGateRunner {
        onnxruntime: config.onnxruntime.clone(),
    }));
    let deployments = slipway_api::Deployments::with_mode(
        &app,
        slipway_plane::plane::PlaneConfig {
            onnxruntime: config.onnxruntime.clone(),
            limits: slipway_plane::scoring::Limits {
                max_rows: config.serving_max_rows,
                max_values: config.serving_max_values,
                max_in_flight: config.serving_max_in_flight,
                max_queue_wait: std::time::Duration::from_millis(config.serving_max_queue_wait_ms),
                ..slipway_plane::scoring::Limits::default()
            },
            ..slipway_plane::plane::PlaneConfig::default()
        },
        slipway_app::cluster::Mode::Clustered {
            node: config.node_name.clone(),
            lease_ttl: std::time::Duration::from_millis(config.leader_lease_ms),
        },
    );
    let cluster = deployments.cluster.clone();
    // Before the first request: a server alone on its store leads from the start, so its own
    // plane's first reports are not queued for a leader that does not exist yet.
    if let Err(error) = cluster.step().await {
        tracing::warn!(%error, "could not take part in leader election yet; retrying");
    }
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let cluster_task = spawn_cluster(cluster.clone(), background_stopped.clone());
    let plane_task = tokio::spawn(deployments.plane.clone().run({
        let mut stopped = background_stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }));
    let controller = deployments.controller.clone();
    let leading = cluster.clone();
    let controller_task = spawn_every(CONTROLLER_TICK, background_stopped.clone(), move || {
        let (controller, leading) = (controller.clone(), leading.clone());
        async move {
            if !leading.is_leader() {
                return;
            }
            // What other servers' planes measured, before this tick's analyses.
            if let Err(error) = leading.drain().await {
                tracing::warn!(%error, "taking the reports queued for the leader");
            }
            if let Err(error) = controller.tick().await {
                tracing::warn!(%error, "rollout controller");
            }
        }
    });
    let monitor = deployments.monitor.clone();
    let leading = cluster.clone();
    let monitor_task = spawn_every(MONITOR_TICK, background_stopped.clone(), move || {
        let (monitor, leading) = (monitor.clone(), leading.clone());
        async move {
            if leading.is_leader()
                && let Err(error) = monitor.tick().await
            {
                tracing::warn!(%error, "drift monitoring");
            }
        }
    });
    let retention_app = app.for_caller("system:retention", None);
    let leading = cluster.clone();
    let retention_task = spawn_every(RETENTION_TICK, background_stopped.clone(), move || {
        let (app, leading) = (retention_app.clone(), leading.clone());
        async move {
            if !leading.is_leader() {
                return;
            }
            if let Err(error) = app.expire_predictions().await {
                tracing::warn!(%error, "deleting predictions past their retention");
            }
            // Serving minutes outlive the longest SLO window by a day.
            let keep_ms = (i64::from(slipway_core::slo::MAX_WINDOW_DAYS) + 1) * 86_400_000;
            if let Err(error) = app
                .store()
                .expire_serving_minutes(slipway_app::now_ms() - keep_ms)
                .await
            {
                tracing::warn!(%error, "deleting old serving minutes");
            }
        }
    });
    let audit_app = app.clone();
    let refusals_task = spawn_refusal_flusher(app.clone(), background_stopped.clone());
    let alerter = deployments.alerter.clone();
    let retrain_task = spawn_retrainer(
        deployments.retrainer.clone(),
        cluster.clone(),
        alerter.subscribe(),
        background_stopped.clone(),
    );
    // The console beside the API: the same application, users and live windows.
    let console = slipway_console::router(
        app.clone(),
        slipway_console::ConsoleConfig {
            // HTTPS here, or at a proxy in front (the URL people reach the server at).
            secure_cookies: config.tls.is_some()
                || config
                    .external_url
                    .as_deref()
                    .is_some_and(|url| url.starts_with("https://")),
        },
        Some(deployments.clone()),
    );
    let mut served = slipway_api::router_with(app, deployments).merge(console);
    if let Some(dir) = &config.mlflow_ui {
        let dir = mlflow_ui::check(dir)?;
        served = mlflow_ui::wrap(served.merge(mlflow_ui::routes(&dir)));
    }
    let router = traced(served, &config.otlp_endpoint);

    let tls = config.tls.as_ref().map(tls::Tls::load).transpose()?;
    let scheme = tls::scheme(tls.as_ref());
    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("listening on {}:{}", config.host, config.port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        address = %format!("{scheme}://{address}"),
        metadata = %backend.redacted(),
        artifacts = %config.artifacts_destination,
        node = %config.node_name,
        leader = cluster.is_leader(),
        startup_ms = started.elapsed().as_millis() as u64,
        "slipway server listening"
    );
    if !config.host.is_loopback() && !config.auth {
        tracing::warn!(
            "serving without authentication on a non-loopback address (--insecure-no-auth)"
        );
    }
    if !config.host.is_loopback() && config.auth && tls.is_none() {
        tracing::warn!(
            "taking credentials over plain HTTP on a non-loopback address (--insecure-no-tls)"
        );
    }
    let external_url = config
        .external_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{address}"));
    alerter.set_sink(
        Arc::new(alerts::receivers::Receivers::new(
            alerts::receivers::SecretPolicy::server(config.secrets_dirs.clone()),
        )?),
        &external_url,
    );
    let alerts_task = spawn_alert_evaluation(
        alerter,
        cluster.clone(),
        std::time::Duration::from_millis(config.alert_interval_ms),
        background_stopped.clone(),
    );

    // The peer address keys the throttling of failed logins.
    tls::serve(listener, router, tls, shutdown_signal()).await?;
    // In-flight requests are done: report their measurements and write the prediction log
    // before the store closes.
    let _ = stop_background.send(true);
    let _ = controller_task.await;
    let _ = plane_task.await;
    let _ = monitor_task.await;
    let _ = retention_task.await;
    let _ = alerts_task.await;
    let _ = retrain_task.await;
    let _ = refusals_task.await;
    let _ = cluster_task.await;
    // The planes' last reports are written: another server may lead at once.
    cluster.resign().await;
    // The refusals counted since their windows opened, before the store closes.
    if let Err(error) = audit_app.flush_refusals(true).await {
        tracing::error!(%error, "could not write the summaries of refused requests");
    }
    store.close().await;
    tracing::info!("slipway server stopped");
    Ok(())
}

/// Evaluates the alert rules every `interval` until shutdown, on the leader.
fn spawn_alert_evaluation(
    alerter: Arc<slipway_app::alerting::Alerter>,
    cluster: Arc<slipway_app::cluster::Cluster>,
    interval: std::time::Duration,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_every(interval, stopped, move || {
        let (alerter, cluster) = (alerter.clone(), cluster.clone());
        async move {
            if cluster.is_leader()
                && let Err(error) = alerter.tick().await
            {
                tracing::warn!(%error, "alert evaluation");
            }
        }
    })
}

/// Runs `tick` every `period` (a late tick is delayed, never bunched) until `stopped` says so.
fn spawn_every<F, Fut>(
    period: std::time::Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    mut tick: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => break,
                _ = interval.tick() => tick().await,
            }
        }
    })
}

/// Retraining triggers on the server: schedules checked and lapsed retrains failed every few
/// seconds, and every alert that fires offered to the triggers that listen for it.
fn spawn_retrainer(
    retrainer: Arc<slipway_app::retrain::Retrainer>,
    cluster: Arc<slipway_app::cluster::Cluster>,
    mut alerts: tokio::sync::broadcast::Receiver<slipway_app::alerting::AlertTransition>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(RETRAIN_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => break,
                _ = interval.tick() => {
                    if !cluster.is_leader() {
                        continue;
                    }
                    if let Err(error) = retrainer.tick().await {
                        tracing::warn!(%error, "retraining triggers");
                    }
                }
                event = alerts.recv() => match event {
                    Ok(event) => {
                        if let Err(error) = retrainer.on_alert(&event).await {
                            tracing::warn!(%error, alert = %event.alert.name(), "an alert's retraining triggers");
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "retraining triggers fell behind the alerts and missed some");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    })
}

/// Takes part in leader election until shutdown (see `slipway_app::cluster`).
fn spawn_cluster(
    cluster: Arc<slipway_app::cluster::Cluster>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_every(cluster.step_interval(), stopped, move || {
        let cluster = cluster.clone();
        async move {
            if let Err(error) = cluster.step().await {
                tracing::warn!(%error, "leader election");
            }
        }
    })
}

/// Notices user, token and permission changes made by other processes (the admin commands,
/// other replicas), so a revoked token stops working within a poll interval.
fn spawn_identity_refresher(app: App) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(slipway_app::identity::GENERATION_POLL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(error) = app.refresh_identity().await {
                tracing::warn!(%error, "could not check for identity changes");
            }
        }
    });
}

/// Writes the summaries of refused requests whose counting windows have closed, so a flood's
/// count reaches the audit log within a window's length even if it stops.
fn spawn_refusal_flusher(
    app: App,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_every(slipway_app::audit::REFUSAL_WINDOW / 6, stopped, move || {
        let app = app.clone();
        async move {
            if let Err(error) = app.flush_refusals(false).await {
                tracing::warn!(%error, "could not write the summaries of refused requests");
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish before the server exits.
pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command itself)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let mut command = Cli::command();
        command.build();
        walk(&command, "slipway", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    /// The committed docs/cli.md is what the code generates.
    #[test]
    fn the_cli_reference_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == cli_markdown(),
            "docs/cli.md differs from the clap definitions; regenerate it with \
             `cargo run -p slipway -- help-markdown > docs/cli.md`"
        );
    }

    #[test]
    fn causes_repeated_by_their_parent_are_said_once() {
        let cause = std::io::Error::other("database \"x\" does not exist");
        let error = Err::<(), _>(cause)
            .context("error returned from database: database \"x\" does not exist")
            .context("opening the metadata store")
            .unwrap_err();
        assert_eq!(
            error_text(&error),
            "opening the metadata store: error returned from database: database \"x\" does not exist"
        );
    }
}
