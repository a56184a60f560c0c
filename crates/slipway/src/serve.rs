//! `slipway serve -m MODEL`: one model over MLflow's scoring protocol, a drop-in for
//! `mlflow models serve` (`/invocations`, `/ping`, `/health`, `/version`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use slipway_serving::{OnnxModel, Runtime};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model: models:/NAME@ALIAS or models:/NAME/VERSION from the registry, an MLflow model
    /// folder (MLmodel + model.onnx) or an .onnx file.
    #[arg(
        long,
        short = 'm',
        required_unless_present = "deployment",
        conflicts_with = "deployment"
    )]
    model_uri: Option<String>,
    /// Serve a managed deployment as one of its replicas: spec and models come from the server
    /// (--tracking-uri), measurements and the prediction log go back to it. Rollouts, weights
    /// and rollbacks follow the server within a second.
    #[arg(long)]
    deployment: Option<String>,
    /// Address to listen on (default 127.0.0.1; another needs --insecure-no-auth).
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 5000)]
    port: u16,
    /// The name V2 requests use (/v2/models/NAME/infer); default: the file or folder name.
    #[arg(long)]
    name: Option<String>,
    /// Sessions kept for concurrent requests (default: the number of cores).
    #[arg(long)]
    sessions: Option<usize>,
    /// Seconds a request may take before it is answered 504 (like `mlflow models serve -t`).
    #[arg(long, short = 't', default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Inference requests in flight at once; more get 503 with Retry-After. A deployment
    /// (`--deployment`) also takes no more than 16 per ONNX session of its versions.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// The largest request body in bytes (default 32 MiB); larger ones get 413.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_body: usize,
    /// Rows one inference request may carry; more get 413 while the body is read.
    #[arg(long, default_value_t = slipway_plane::scoring::DEFAULT_MAX_ROWS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_rows: usize,
    /// Input values one inference request may carry (rows times columns; 4 Mi = 16 MiB of
    /// float32); more get 413 while the body is read, which bounds a request's memory.
    #[arg(long, default_value_t = slipway_plane::scoring::DEFAULT_MAX_VALUES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_values: usize,
    /// With --deployment: milliseconds an admitted request may wait for the model before it
    /// is shed with 503 and Retry-After, so that under overload the answered requests stay
    /// fast.
    #[arg(long, default_value_t = slipway_plane::scoring::DEFAULT_MAX_QUEUE_WAIT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    max_queue_wait_ms: u64,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else where
    /// scripts/fetch-onnxruntime.sh puts it).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime: Option<PathBuf>,
    /// The tracking server that resolves models:/ URIs (default: $MLFLOW_TRACKING_URI), with
    /// the mlflow client's MLFLOW_TRACKING_* credentials.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    tracking_uri: Option<String>,
    /// Serve on a non-loopback address without authentication (not needed with --client-ca,
    /// which authenticates every connection).
    #[arg(long)]
    insecure_no_auth: bool,
    #[command(flatten)]
    listen_tls: crate::tls::ListenTlsArgs,
    #[command(flatten)]
    client_tls: crate::tls::ClientTlsArgs,
    /// Export a span per request over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://otel-collector:4318 (spans go to /v1/traces under it), with the caller's W3C
    /// traceparent as parent.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// A registered model version fetched to a private folder, which lives as long as this value.
pub(crate) struct Fetched {
    pub(crate) file: PathBuf,
    pub(crate) name: String,
    pub(crate) version: String,
    _folder: tempfile::TempDir,
}

/// `models:/NAME@ALIAS` or `models:/NAME/VERSION`: the registered model's version, looked up on
/// the tracking server, its files fetched through the server's artifact proxy into a local
/// folder.
pub(crate) async fn fetch_registered(
    uri: &str,
    client: &crate::remote::Client,
) -> anyhow::Result<Fetched> {
    let rest = uri.strip_prefix("models:/").unwrap_or(uri);
    let encode = crate::remote::urlencode;
    let (name, answer) = if let Some((name, alias)) = rest.split_once('@') {
        let path = format!(
            "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
            encode(name),
            encode(alias)
        );
        (name, client.call(reqwest::Method::GET, &path, None).await?)
    } else if let Some((name, version)) = rest.rsplit_once('/') {
        let path = format!(
            "/api/2.0/mlflow/model-versions/get?name={}&version={}",
            encode(name),
            encode(version)
        );
        (name, client.call(reqwest::Method::GET, &path, None).await?)
    } else {
        bail!("'{uri}': write models:/NAME@ALIAS or models:/NAME/VERSION");
    };
    let version = &answer["model_version"];
    let number = version["version"].as_str().unwrap_or_default().to_owned();
    // The reply names folders and files below; take nothing from it that is not a version.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        bail!("the server answered version '{number}' for {uri}, which is not a version number");
    }
    if let Some((_, asked)) = rest.rsplit_once('/').filter(|_| !rest.contains('@'))
        && asked != number
    {
        bail!("asked for version {asked} of {uri} and the server answered version {number}");
    }
    let source = version["source"].as_str().unwrap_or_default();
    // Where the version's files are, as an mlflow-artifacts URI.
    let location = if let Some(rest) = source.strip_prefix("runs:/") {
        let (run_id, sub) = rest.split_once('/').unwrap_or((rest, ""));
        let run = client
            .call(
                reqwest::Method::GET,
                &format!("/api/2.0/mlflow/runs/get?run_id={}", encode(run_id)),
                None,
            )
            .await?;
        format!(
            "{}/{sub}",
            run["run"]["info"]["artifact_uri"]
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('/')
        )
    } else if let Some(model_id) = source.strip_prefix("models:/") {
        let model = client
            .call(
                reqwest::Method::GET,
                &format!("/api/2.0/mlflow/logged-models/{}", encode(model_id)),
                None,
            )
            .await?;
        model["model"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    } else {
        source.to_owned()
    };
    let Some(proxy) = location.strip_prefix("mlflow-artifacts:") else {
        bail!(
            "version {number} of '{name}' lives at '{location}', which this server does not proxy; slipway serve fetches mlflow-artifacts: locations"
        );
    };
    // mlflow-artifacts:/path or mlflow-artifacts://host:port/path
    let proxy = match proxy.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, path)| path),
        None => proxy,
    }
    .trim_matches('/')
    .to_owned();
    let mut mlmodel = None;
    let file = if proxy.ends_with(".onnx") {
        proxy.clone()
    } else {
        let listing = client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts?path={}",
                    encode(&proxy)
                ),
                None,
            )
            .await?;
        let all: Vec<String> = listing["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["is_dir"] != true)
            .filter_map(|f| f["path"].as_str().map(str::to_owned))
            .collect();
        if all.iter().any(|p| p.rsplit('/').next() == Some("MLmodel")) {
            mlmodel = Some(format!("{proxy}/MLmodel"));
        }
        let files: Vec<&String> = all.iter().filter(|p| p.ends_with(".onnx")).collect();
        let chosen = files
            .iter()
            .find(|p| p.rsplit('/').next() == Some("model.onnx"))
            .or_else(|| {
                if files.len() == 1 {
                    files.first()
                } else {
                    None
                }
            })
            .with_context(|| {
                format!("version {number} of '{name}' ({location}) holds no single .onnx model")
            })?;
        let chosen = chosen.rsplit('/').next().unwrap_or(chosen);
        format!("{proxy}/{chosen}")
    };
    // A private folder with a random name: nobody else can place or swap files in it.
    let folder = tempfile::Builder::new()
        .prefix("slipway-serve-")
        .tempdir()
        .context("creating a folder for the model")?;
    let target = folder.path().join("model.onnx");
    client.download(&file, &target).await?;
    // The signature comes along when the version is an MLflow model folder.
    if let Some(mlmodel) = &mlmodel {
        client
            .download(mlmodel, &folder.path().join("MLmodel"))
            .await?;
    }
    // Every byte is checked against what was registered: a file changed since is refused.
    let content = client
        .call(
            reqwest::Method::GET,
            &format!(
                "/api/slipway/v1/model-versions/content?name={}&version={}",
                encode(name),
                encode(&number)
            ),
            None,
        )
        .await;
    let files = match content {
        Ok(answer) if answer["files"].is_array() => Some(answer),
        Ok(_) => None,
        // Another MLflow server has no such route: nothing to check against.
        Err(error) if format!("{error:#}").contains("ENDPOINT_NOT_FOUND") => None,
        Err(error) => return Err(error.context("reading the version's registered content")),
    };
    match files {
        Some(answer) => {
            let manifest: slipway_core::registry::ContentManifest =
                serde_json::from_value(json!({ "files": answer["files"] }))
                    .context("the server answered a content manifest this client cannot read")?;
            let relative = |proxy_path: &str| {
                proxy_path
                    .strip_prefix(&format!("{proxy}/"))
                    .unwrap_or_else(|| proxy_path.rsplit('/').next().unwrap_or(proxy_path))
                    .to_owned()
            };
            let mut checked = vec![(relative(&file), target.clone())];
            if let Some(mlmodel) = &mlmodel {
                checked.push((relative(mlmodel), folder.path().join("MLmodel")));
            }
            for (relative, local) in checked {
                let bytes = tokio::fs::read(&local)
                    .await
                    .with_context(|| format!("reading {}", local.display()))?;
                manifest
                    .verify(&relative, &bytes)
                    .map_err(|error| anyhow::anyhow!("version {number} of '{name}': {error}"))?;
            }
            tracing::info!(model = %name, version = %number, digest = %manifest.digest(), "model files match the registered content");
        }
        None => {
            tracing::warn!(model = %name, version = %number, "the server recorded no content digest for this version: its files are not verified")
        }
    }
    tracing::info!(model = %name, version = %number, source = %location, "fetched the model from the registry");
    Ok(Fetched {
        file: target,
        name: name.to_owned(),
        version: number,
        _folder: folder,
    })
}

/// The .onnx file behind a local model URI.
pub(crate) fn model_file(uri: &str) -> anyhow::Result<PathBuf> {
    if uri.starts_with("runs:/") {
        bail!(
            "'{uri}': serve a registered version (models:/NAME@ALIAS or models:/NAME/VERSION) or a local folder"
        );
    }
    let path = Path::new(uri.strip_prefix("file://").unwrap_or(uri));
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.is_dir() {
        let candidate = path.join("model.onnx");
        if candidate.is_file() {
            return Ok(candidate);
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "onnx"))
            .collect();
        found.sort();
        if let [only] = found.as_slice() {
            return Ok(only.clone());
        }
        bail!(
            "{} holds no single .onnx model (MLflow's onnx flavour writes model.onnx)",
            path.display()
        );
    }
    bail!("no model at '{uri}': pass an MLflow model folder or an .onnx file")
}

pub async fn serve(
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if !args.host.is_loopback() && !args.insecure_no_auth && args.listen_tls.client_ca.is_none() {
        bail!(
            "refusing to serve on {} without authentication; listen on 127.0.0.1, require client certificates with --client-ca, \
             or pass --insecure-no-auth",
            args.host
        );
    }
    // Before anything is fetched or loaded: a wrong path is the quickest thing to report.
    let tls = args
        .listen_tls
        .files()?
        .as_ref()
        .map(crate::tls::Tls::load)
        .transpose()?;
    if let Some(deployment) = args.deployment.clone() {
        return serve_deployment(args, &deployment, tls, shutdown).await;
    }
    let model_uri = args.model_uri.clone().unwrap_or_default();
    // A fetched model's folder lives as long as the server (and is removed after).
    let fetched = if model_uri.starts_with("models:/") {
        let client = crate::remote::Client::connect(args.tracking_uri.clone(), &args.client_tls)?;
        Some(fetch_registered(&model_uri, &client).await?)
    } else {
        None
    };
    let file = match &fetched {
        Some(fetched) => fetched.file.clone(),
        None => model_file(&model_uri)?,
    };
    let registered = fetched.as_ref().map(|fetched| fetched.name.clone());
    let runtime = Runtime::load(args.onnxruntime.as_deref())?;
    let sessions = args.sessions.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let model = OnnxModel::load(&runtime, &file, sessions)
        .with_context(|| format!("loading {}", file.display()))?;
    let name = args.name.clone().or(registered).unwrap_or_else(|| {
        let source = Path::new(&model_uri);
        let stem = if source.is_dir() {
            source.file_name()
        } else {
            source.file_stem()
        };
        stem.map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    // The MLmodel next to the model file (an MLflow model folder, or fetched with it).
    let signature = match file.parent() {
        Some(folder) => slipway_serving::signature::load_signature(folder)
            .with_context(|| format!("reading the MLmodel signature in {}", folder.display()))?,
        None => None,
    };
    let signature = match signature {
        Some(signature) => signature
            .fitted_to(&model)
            .map_err(|e| anyhow::anyhow!("{e}: the folder's files do not belong together"))?,
        None => None,
    };
    let router = slipway_plane::scoring::scoring_router_with(
        Arc::new(model),
        &name,
        fetched.as_ref().map(|fetched| fetched.version.as_str()),
        signature,
        slipway_plane::scoring::Limits {
            max_in_flight: args.max_in_flight as usize,
            timeout: std::time::Duration::from_secs(args.timeout),
            max_body_bytes: args.max_body,
            max_rows: args.max_rows,
            max_values: args.max_values,
            ..slipway_plane::scoring::Limits::default()
        },
    );
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    tracing::info!(
        address = %format!("{}://{}", crate::tls::scheme(tls.as_ref()), listener.local_addr()?),
        model = %file.display(),
        "serving model"
    );
    crate::tls::serve(listener, router, tls, shutdown).await
}

/// Prediction records per report a replica sends.
const REPORTED_PREDICTIONS: usize = 50;

/// A replica's source: the server's HTTP API, with the mlflow client's credentials.
struct RemoteSource {
    client: crate::remote::Client,
    name: String,
}

#[async_trait::async_trait]
impl slipway_plane::plane::PlaneSource for RemoteSource {
    async fn deployments(&self) -> Result<Vec<slipway_core::deployment::Deployment>, String> {
        let answer = self
            .client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/slipway/v1/deployments/{}",
                    crate::remote::urlencode(&self.name)
                ),
                None,
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        let deployment = serde_json::from_value(answer["deployment"].clone()).map_err(|e| {
            format!("the server answered a deployment this replica cannot read: {e}")
        })?;
        Ok(vec![deployment])
    }

    async fn model_files(
        &self,
        model: &str,
        version: &str,
    ) -> Result<slipway_plane::plane::ModelBytes, String> {
        let uri = format!("models:/{model}/{version}");
        let fetched = fetch_registered(&uri, &self.client)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let onnx = tokio::fs::read(&fetched.file)
            .await
            .map_err(|e| format!("reading {}: {e}", fetched.file.display()))?;
        let mlmodel = match fetched.file.parent() {
            Some(folder) => tokio::fs::read_to_string(folder.join("MLmodel")).await.ok(),
            None => None,
        };
        Ok(slipway_plane::plane::ModelBytes {
            onnx: onnx.into(),
            mlmodel,
        })
    }

    async fn report(
        &self,
        deployment: &str,
        window: Option<(i64, usize, slipway_core::deployment::WindowStats)>,
        serving: slipway_core::deployment::ServingStats,
    ) -> Result<(), String> {
        // Rollout 0 is none: the server counts only the serving figures then.
        let (rollout_id, stage, stats) = window.unwrap_or_default();
        self.post_report(
            deployment,
            serde_json::json!({
                "rollout_id": rollout_id,
                "stage": stage,
                "stats": stats,
                "serving": serving,
            }),
        )
        .await
    }

    async fn log_predictions(
        &self,
        records: Vec<slipway_core::deployment::PredictionRecord>,
    ) -> Result<(), String> {
        let Some(deployment) = records.first().map(|r| r.deployment.clone()) else {
            return Ok(());
        };
        // Small posts: a batch of wide requests must stay far below the server's body limit.
        for chunk in records.chunks(REPORTED_PREDICTIONS) {
            self.post_report(
                &deployment,
                serde_json::json!({
                    "rollout_id": 0,
                    "stage": 0,
                    "stats": slipway_core::deployment::WindowStats::default(),
                    "predictions": chunk,
                }),
            )
            .await?;
        }
        Ok(())
    }

    async fn monitor_schema(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<slipway_monitor::live::Schema>, String> {
        let uri = format!("models:/{model}/{version}");
        let found = self
            .client
            .call_found(
                reqwest::Method::GET,
                &format!(
                    "/api/slipway/v1/monitoring/references?model_uri={}",
                    crate::remote::urlencode(&uri)
                ),
                None,
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        match found {
            crate::remote::Found::Yes(body) => {
                serde_json::from_value(body["reference"]["schema"].clone())
                    .map(Some)
                    .map_err(|e| format!("reading the monitoring schema of {uri}: {e}"))
            }
            crate::remote::Found::No(_) => Ok(None),
        }
    }

    async fn report_summary(
        &self,
        deployment: &str,
        version: &str,
        summary: slipway_monitor::live::Summary,
    ) -> Result<(), String> {
        self.client
            .call(
                reqwest::Method::POST,
                &format!(
                    "/api/slipway/v1/deployments/{}/monitoring/summaries",
                    crate::remote::urlencode(deployment)
                ),
                Some(serde_json::json!({ "version": version, "summary": summary })),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}

impl RemoteSource {
    async fn post_report(&self, deployment: &str, body: serde_json::Value) -> Result<(), String> {
        self.client
            .call(
                reqwest::Method::POST,
                &format!(
                    "/api/slipway/v1/deployments/{}/reports",
                    crate::remote::urlencode(deployment)
                ),
                Some(body),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}

/// `slipway serve --deployment NAME`: a data-plane replica of a managed deployment.
async fn serve_deployment(
    args: ServeArgs,
    name: &str,
    tls: Option<crate::tls::Tls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let client = crate::remote::Client::connect(args.tracking_uri.clone(), &args.client_tls)?;
    let source = Arc::new(RemoteSource {
        client,
        name: name.to_owned(),
    });
    let defaults = slipway_plane::plane::PlaneConfig::default();
    let plane = slipway_plane::plane::Plane::new(
        source,
        slipway_plane::plane::PlaneConfig {
            limits: slipway_plane::scoring::Limits {
                max_in_flight: args.max_in_flight as usize,
                timeout: std::time::Duration::from_secs(args.timeout),
                max_body_bytes: args.max_body,
                max_rows: args.max_rows,
                max_values: args.max_values,
                max_queue_wait: std::time::Duration::from_millis(args.max_queue_wait_ms),
            },
            sessions: args.sessions.unwrap_or(defaults.sessions),
            onnxruntime: args.onnxruntime.clone(),
            ..defaults
        },
    );
    // The first load happens before the port opens, so a replica that listens can answer.
    plane
        .sync()
        .await
        .map_err(|e| anyhow::anyhow!("reading deployment '{name}' from the server: {e}"))?;
    if plane.get(name).is_none() {
        bail!(
            "deployment '{name}' could not be loaded: {}",
            plane
                .not_ready_reason(name)
                .unwrap_or_else(|| "unknown reason".to_owned())
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(plane.clone().run(async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    let router = crate::traced(
        slipway_plane::plane::replica_router(plane, name),
        &args.otlp_endpoint,
    );
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    tracing::info!(
        address = %format!("{}://{}", crate::tls::scheme(tls.as_ref()), listener.local_addr()?),
        deployment = %name,
        "serving deployment replica"
    );
    let served = crate::tls::serve(listener, router, tls, shutdown).await;
    // Requests are drained: report the last measurements and predictions.
    let _ = stop.send(true);
    let _ = background.await;
    served
}
