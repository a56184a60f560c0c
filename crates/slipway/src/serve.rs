//! `slipway serve -m MODEL`: one model over MLflow's scoring protocol, a drop-in for
//! `mlflow models serve` (`/invocations`, `/ping`, `/health`, `/version`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use slipway_serving::{OnnxModel, Runtime};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model: an MLflow model folder (MLmodel + model.onnx) or an .onnx file.
    #[arg(long, short = 'm')]
    model_uri: String,
    /// Address to listen on (default 127.0.0.1; another needs --insecure-no-auth).
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, short, default_value_t = 5000)]
    port: u16,
    /// The name V2 requests use (/v2/models/NAME/infer); default: the file or folder name.
    #[arg(long)]
    name: Option<String>,
    /// Sessions kept for concurrent requests (default: the number of cores).
    #[arg(long)]
    sessions: Option<usize>,
    /// Seconds a request may take before it is answered 504 (like `mlflow models serve -t`).
    #[arg(long, short = 't', default_value_t = 60)]
    timeout: u64,
    /// Inference requests in flight at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else where
    /// scripts/fetch-onnxruntime.sh puts it).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime: Option<PathBuf>,
    /// Serve on a non-loopback address without authentication.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// The .onnx file behind a model URI.
fn model_file(uri: &str) -> anyhow::Result<PathBuf> {
    if uri.starts_with("models:/") || uri.starts_with("runs:/") {
        bail!(
            "'{uri}': serving from the registry is not built yet; download the model (mlflow artifacts download -u {uri}) and pass its folder"
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
    if !args.host.is_loopback() && !args.insecure_no_auth {
        bail!(
            "refusing to serve on {} without authentication; listen on 127.0.0.1 or pass --insecure-no-auth",
            args.host
        );
    }
    let file = model_file(&args.model_uri)?;
    let runtime = Runtime::load(args.onnxruntime.as_deref())?;
    let sessions = args.sessions.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let model = OnnxModel::load(&runtime, &file, sessions)
        .with_context(|| format!("loading {}", file.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        let source = Path::new(&args.model_uri);
        let stem = if source.is_dir() {
            source.file_name()
        } else {
            source.file_stem()
        };
        stem.map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    let router = slipway_api::scoring::scoring_router(
        Arc::new(model),
        &name,
        slipway_api::scoring::Limits {
            max_in_flight: args.max_in_flight,
            timeout: std::time::Duration::from_secs(args.timeout),
        },
    );
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    tracing::info!(
        address = %format!("http://{}", listener.local_addr()?),
        model = %file.display(),
        "serving model"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}
