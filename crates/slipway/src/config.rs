//! One typed configuration, layered: built-in defaults < `slipway.toml` < `SLIPWAY_*`
//! environment < command-line flags. Each flag's doc comment is its `--help`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "slipway-data";

/// `slipway server` flags. Names follow `mlflow server` where the meaning is the same.
#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    /// Address to listen on. Defaults to 127.0.0.1 (this machine only); a non-loopback address
    /// needs --auth (or, on a trusted network, --insecure-no-auth).
    #[arg(long, env = "SLIPWAY_HOST")]
    pub host: Option<String>,
    /// Port to listen on (0 picks a free one). Default 5000, like MLflow.
    #[arg(long, short, env = "SLIPWAY_PORT")]
    pub port: Option<u16>,
    /// Metadata store: sqlite:///path/to/file.db (default: ./slipway-data/slipway.db) or
    /// postgresql://user@host:port/database.
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
    /// Where uploaded artifacts are stored: a folder path or file:// URI (default:
    /// ./slipway-data/artifacts).
    #[arg(long, env = "SLIPWAY_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
    /// Require credentials on every request: HTTP Basic (MLFLOW_TRACKING_USERNAME and
    /// MLFLOW_TRACKING_PASSWORD) or a bearer token (MLFLOW_TRACKING_TOKEN). Create users with
    /// `slipway users create`.
    #[arg(long, env = "SLIPWAY_AUTH", value_parser = clap::builder::BoolishValueParser::new())]
    pub auth: bool,
    /// Serve without authentication on a non-loopback address. Anyone who can reach the port can
    /// read and change everything.
    #[arg(long, env = "SLIPWAY_INSECURE_NO_AUTH", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); re-read when the file
    /// changes, so a renewed certificate is served without a restart.
    #[arg(long, env = "SLIPWAY_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SLIPWAY_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates signed by this CA (PEM): with --auth, a request over a
    /// connection with one acts as the user its subject's common name names (replicas,
    /// services), with no password or token. Clients without one authenticate as usual.
    #[arg(long, env = "SLIPWAY_CLIENT_CA", value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// Serve with --auth on a non-loopback address over plain HTTP, so that passwords and
    /// tokens cross the network in clear: only behind a proxy that terminates TLS on the same
    /// host or a network that encrypts.
    #[arg(long, env = "SLIPWAY_INSECURE_NO_TLS", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_tls: bool,
    /// Encrypt the prediction log and labels at rest under this master key, given by
    /// reference: file:PATH (e.g. a mounted Kubernetes Secret) or env:NAME. Make one with
    /// `slipway keys generate`.
    #[arg(long, env = "SLIPWAY_ENCRYPTION_KEY", value_name = "REF")]
    pub encryption_key: Option<String>,
    /// Read connections to the metadata store (default 8).
    #[arg(long, env = "SLIPWAY_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Where deployment events (rollout promoted, rolled back, aborted, waiting for approval)
    /// are POSTed as JSON: an http:// or https:// URL, or a reference to one (env:NAME,
    /// file:PATH) when the URL holds a token, so it shows in no process list.
    #[arg(long, env = "SLIPWAY_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The ONNX Runtime library managed deployments run on (default: $ORT_DYLIB_PATH, then
    /// what scripts/fetch-onnxruntime.sh installs).
    #[arg(long, env = "SLIPWAY_ONNXRUNTIME")]
    pub onnxruntime: Option<PathBuf>,
    /// Rows one inference request to a deployment may carry (default 100,000); more get 413
    /// while the body is read. Replicas take theirs from `slipway serve --max-rows`.
    #[arg(long, env = "SLIPWAY_SERVING_MAX_ROWS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub serving_max_rows: Option<usize>,
    /// Input values one inference request to a deployment may carry (default 4 Mi, 16 MiB of
    /// float32); more get 413 while the body is read, which bounds a request's memory.
    #[arg(long, env = "SLIPWAY_SERVING_MAX_VALUES", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub serving_max_values: Option<usize>,
    /// Inference requests to one deployment handled at once (default 64, and never more
    /// than 16 per ONNX session of its versions); more get 503 with Retry-After. Replicas
    /// take theirs from `slipway serve --max-in-flight`.
    #[arg(long, env = "SLIPWAY_SERVING_MAX_IN_FLIGHT", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub serving_max_in_flight: Option<usize>,
    /// Milliseconds an admitted inference request may wait for the model before it is shed
    /// with 503 and Retry-After (default 50), so that under overload the answered requests
    /// stay fast. Replicas take theirs from `slipway serve --max-queue-wait-ms`.
    #[arg(long, env = "SLIPWAY_SERVING_MAX_QUEUE_WAIT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub serving_max_queue_wait_ms: Option<u64>,
    /// The URL people reach this server at, for links in alert notifications (default: the
    /// address it listens on).
    #[arg(long, env = "SLIPWAY_EXTERNAL_URL")]
    pub external_url: Option<String>,
    /// A directory alert receivers' `file:` secrets may be read from (repeat the flag; none by
    /// default: mount the receivers' secrets in a folder of their own, e.g.
    /// /run/secrets/slipway, and name it here).
    #[arg(long = "secrets-dir", env = "SLIPWAY_SECRETS_DIR", value_name = "DIR")]
    pub secrets_dirs: Vec<PathBuf>,
    /// How often alert rules are evaluated (default 10s, at least 1s).
    #[arg(long, env = "SLIPWAY_ALERT_INTERVAL", value_parser = parse_interval)]
    pub alert_interval: Option<u64>,
    /// This server's name among the servers sharing the metadata store (default: host name,
    /// process id and a random suffix). The one holding the leader's lease runs rollouts'
    /// analyses, drift windows, alert evaluation and retraining schedules.
    #[arg(long, env = "SLIPWAY_NODE_NAME")]
    pub node_name: Option<String>,
    /// How long the leader's lease lasts unless renewed (default 10s, at least 1s): when the
    /// leader dies, another server takes over within about this long.
    #[arg(long, env = "SLIPWAY_LEADER_LEASE", value_parser = parse_interval)]
    pub leader_lease: Option<u64>,
    /// Export a span per request over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://otel-collector:4318 (spans go to /v1/traces under it), with the caller's W3C
    /// traceparent as parent.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// What one CPU hour costs you (e.g. 0.04, in your billing currency): the delivery
    /// report prices the CPU time model runs took with it, as cost per 1,000 inferences.
    #[arg(long, env = "SLIPWAY_CPU_HOUR_PRICE", value_name = "PRICE", value_parser = parse_price)]
    pub cpu_hour_price: Option<f64>,
    /// Also serve MLflow's own web UI at /mlflow/ against this server, from its static build
    /// in the mlflow wheel: python -c 'import mlflow, os; print(os.path.join(os.path.dirname(mlflow.__file__), "server", "js", "build"))'.
    #[arg(long, env = "SLIPWAY_MLFLOW_UI", value_name = "DIR")]
    pub mlflow_ui: Option<PathBuf>,
}

fn parse_price(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(price) if price.is_finite() && price >= 0.0 => Ok(price),
        _ => Err(format!(
            "'{text}' is not a price: give a non-negative number such as 0.04"
        )),
    }
}

/// A duration flag in milliseconds ("10s", "1m"), at least a second.
fn parse_interval(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. 10s or 1m"))?;
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms < 1_000 {
        return Err(format!("'{text}' is shorter than 1s"));
    }
    Ok(ms)
}

/// The `[server]` table of `slipway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServerConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub backend_store_uri: Option<String>,
    pub artifacts_destination: Option<String>,
    pub insecure_no_auth: Option<bool>,
    pub auth: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub insecure_no_tls: Option<bool>,
    pub encryption_key: Option<String>,
    pub db_max_connections: Option<u32>,
    pub webhook_url: Option<String>,
    pub onnxruntime: Option<PathBuf>,
    pub serving_max_rows: Option<usize>,
    pub serving_max_values: Option<usize>,
    pub serving_max_in_flight: Option<usize>,
    pub serving_max_queue_wait_ms: Option<u64>,
    pub external_url: Option<String>,
    /// Milliseconds.
    pub alert_interval_ms: Option<u64>,
    pub secrets_dirs: Option<Vec<PathBuf>>,
    pub node_name: Option<String>,
    /// Milliseconds.
    pub leader_lease_ms: Option<u64>,
    pub cpu_hour_price: Option<f64>,
    pub mlflow_ui: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServerConfig,
}

impl FileConfig {
    /// Reads `path` if given (it must exist), else `./slipway.toml` if present.
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from("slipway.toml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default());
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("reading config file {}", path.display()));
            }
        };
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The resolved server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    pub backend_store_uri: String,
    pub artifacts_destination: ArtifactsDestination,
    pub insecure_no_auth: bool,
    pub auth: bool,
    pub tls: Option<crate::tls::TlsFiles>,
    pub insecure_no_tls: bool,
    pub encryption_key: Option<String>,
    pub db_max_connections: u32,
    pub webhook_url: Option<String>,
    pub onnxruntime: Option<PathBuf>,
    pub serving_max_rows: usize,
    pub serving_max_values: usize,
    pub serving_max_in_flight: usize,
    pub serving_max_queue_wait_ms: u64,
    pub external_url: Option<String>,
    pub alert_interval_ms: u64,
    pub secrets_dirs: Vec<PathBuf>,
    pub node_name: String,
    pub leader_lease_ms: u64,
    pub otlp_endpoint: Option<String>,
    pub cpu_hour_price: Option<f64>,
    pub mlflow_ui: Option<PathBuf>,
}

impl ServerConfig {
    pub fn resolve(args: ServerArgs, file: FileServerConfig) -> anyhow::Result<ServerConfig> {
        let backend_store_uri = backend_store_uri(args.backend_store_uri, &file);
        let host_text = args
            .host
            .or(file.host)
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let host: IpAddr = match host_text.as_str() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            other => other.parse().with_context(|| {
                format!("--host '{other}' is not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)")
            })?,
        };
        let artifacts = args
            .artifacts_destination
            .or(file.artifacts_destination)
            .unwrap_or_else(|| format!("{DEFAULT_DATA_DIR}/artifacts"));
        let insecure_no_auth = args.insecure_no_auth || file.insecure_no_auth.unwrap_or(false);
        let auth = args.auth || file.auth.unwrap_or(false);
        let tls = crate::tls::TlsFiles::from_flags(
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.client_ca.or(file.client_ca),
            false,
        )?;
        let insecure_no_tls = args.insecure_no_tls || file.insecure_no_tls.unwrap_or(false);
        let config = ServerConfig {
            host,
            port: args.port.or(file.port).unwrap_or(5000),
            backend_store_uri,
            artifacts_destination: artifact_folder(&artifacts)?,
            insecure_no_auth,
            auth,
            tls,
            insecure_no_tls,
            encryption_key: args.encryption_key.or(file.encryption_key),
            db_max_connections: args
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(8)
                .max(1),
            webhook_url: args.webhook_url.or(file.webhook_url),
            onnxruntime: args.onnxruntime.or(file.onnxruntime),
            serving_max_rows: args
                .serving_max_rows
                .or(file.serving_max_rows)
                .unwrap_or(slipway_plane::scoring::DEFAULT_MAX_ROWS)
                .max(1),
            serving_max_values: args
                .serving_max_values
                .or(file.serving_max_values)
                .unwrap_or(slipway_plane::scoring::DEFAULT_MAX_VALUES)
                .max(1),
            serving_max_in_flight: args
                .serving_max_in_flight
                .or(file.serving_max_in_flight)
                .unwrap_or(slipway_plane::scoring::Limits::default().max_in_flight)
                .max(1),
            serving_max_queue_wait_ms: args
                .serving_max_queue_wait_ms
                .or(file.serving_max_queue_wait_ms)
                .unwrap_or(slipway_plane::scoring::DEFAULT_MAX_QUEUE_WAIT_MS)
                .max(1),
            external_url: args.external_url.or(file.external_url),
            secrets_dirs: if args.secrets_dirs.is_empty() {
                file.secrets_dirs.unwrap_or_default()
            } else {
                args.secrets_dirs
            },
            alert_interval_ms: args
                .alert_interval
                .or(file.alert_interval_ms)
                .unwrap_or(10_000)
                .max(1_000),
            node_name: args
                .node_name
                .or(file.node_name)
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(slipway_app::cluster::default_node_name),
            otlp_endpoint: args.otlp_endpoint,
            cpu_hour_price: args.cpu_hour_price.or(file.cpu_hour_price),
            mlflow_ui: args.mlflow_ui.or(file.mlflow_ui),
            leader_lease_ms: args
                .leader_lease
                .or(file.leader_lease_ms)
                .unwrap_or(10_000)
                .max(1_000),
        };
        if let Some(price) = config.cpu_hour_price
            && !(price.is_finite() && price >= 0.0)
        {
            bail!("cpu_hour_price {price} in the config file must be a non-negative number");
        }
        if let Some(url) = &config.external_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("--external-url '{url}' must be an http:// or https:// URL");
        }
        if let Some(url) = &config.webhook_url
            && !(url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("env:")
                || url.starts_with("file:"))
        {
            bail!(
                "--webhook-url '{url}' must be an http:// or https:// URL, or a reference to one (env:NAME, file:PATH) when it holds a token"
            );
        }
        if !config.host.is_loopback() && !config.auth && !config.insecure_no_auth {
            bail!(
                "refusing to listen on {} without authentication: anyone who can reach it could read and change every experiment and model. \
                 Turn authentication on with --auth (create users with `slipway users create`), listen on 127.0.0.1 (the default), \
                 or pass --insecure-no-auth if the network in front of slipway is trusted",
                config.host
            );
        }
        if !config.host.is_loopback()
            && config.auth
            && config.tls.is_none()
            && !config.insecure_no_tls
        {
            bail!(
                "refusing to take passwords and tokens on {} over plain HTTP: anyone on the network between a client and slipway could read them. \
                 Serve HTTPS with --tls-cert and --tls-key, listen on 127.0.0.1 (the default), \
                 or pass --insecure-no-tls if a proxy on this host terminates TLS or the network encrypts",
                config.host
            );
        }
        Ok(config)
    }
}

/// The metadata store the server and the admin commands use: flag or env, then the file, then
/// the embedded default.
pub fn backend_store_uri(flag: Option<String>, file: &FileServerConfig) -> String {
    flag.or_else(|| file.backend_store_uri.clone())
        .unwrap_or_else(|| format!("sqlite:///{DEFAULT_DATA_DIR}/slipway.db"))
}

/// Where artifacts are, as for `slipway server`: the flag, else slipway.toml, else the default.
pub fn artifacts_destination(
    flag: Option<String>,
    file: &FileServerConfig,
) -> anyhow::Result<ArtifactsDestination> {
    artifact_folder(
        &flag
            .or_else(|| file.artifacts_destination.clone())
            .unwrap_or_else(|| format!("{DEFAULT_DATA_DIR}/artifacts")),
    )
}

/// Where the server keeps artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactsDestination {
    Folder(PathBuf),
    /// `s3://BUCKET[/PREFIX]`, credentials and endpoint from the `AWS_*` variables.
    S3(String),
}

impl std::fmt::Display for ArtifactsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArtifactsDestination::Folder(path) => write!(f, "{}", path.display()),
            ArtifactsDestination::S3(url) => f.write_str(url),
        }
    }
}

impl ArtifactsDestination {
    /// The artifact store it names.
    pub async fn open(&self) -> anyhow::Result<slipway_artifacts::ObjectArtifactStore> {
        match self {
            ArtifactsDestination::Folder(path) => {
                slipway_artifacts::ObjectArtifactStore::local(path)
                    .with_context(|| format!("opening the artifact folder {}", path.display()))
            }
            #[cfg(feature = "s3")]
            ArtifactsDestination::S3(url) => slipway_artifacts::ObjectArtifactStore::s3(url)
                .await
                .with_context(|| format!("opening the artifact store {url}")),
            #[cfg(not(feature = "s3"))]
            ArtifactsDestination::S3(url) => {
                bail!("{url}: this slipway was built without the `s3` feature")
            }
        }
    }
}

pub(crate) fn artifact_folder(raw: &str) -> anyhow::Result<ArtifactsDestination> {
    if let Some(path) = raw.strip_prefix("file://") {
        return Ok(ArtifactsDestination::Folder(PathBuf::from(path)));
    }
    if raw.starts_with("s3://") {
        return Ok(ArtifactsDestination::S3(raw.to_owned()));
    }
    if let Some((scheme, _)) = raw.split_once("://") {
        bail!(
            "--artifacts-destination '{raw}': {scheme}:// storage is not supported; use a local folder path or s3://BUCKET/PREFIX"
        );
    }
    Ok(ArtifactsDestination::Folder(PathBuf::from(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_defaults_fill_the_rest() {
        let args = ServerArgs {
            port: Some(6000),
            ..ServerArgs::default()
        };
        let file = FileServerConfig {
            port: Some(7000),
            backend_store_uri: Some("sqlite:///x.db".into()),
            serving_max_rows: Some(500),
            ..FileServerConfig::default()
        };
        let config = ServerConfig::resolve(args, file).unwrap();
        assert_eq!(config.port, 6000);
        assert_eq!(config.serving_max_rows, 500);
        assert_eq!(
            config.serving_max_values,
            slipway_plane::scoring::DEFAULT_MAX_VALUES
        );
        assert_eq!(config.backend_store_uri, "sqlite:///x.db");
        assert_eq!(config.host.to_string(), "127.0.0.1");
        assert_eq!(
            config.artifacts_destination,
            ArtifactsDestination::Folder(PathBuf::from("slipway-data/artifacts"))
        );
    }

    #[test]
    fn public_addresses_need_an_explicit_opt_out() {
        let args = ServerArgs {
            host: Some("0.0.0.0".into()),
            ..ServerArgs::default()
        };
        let error = ServerConfig::resolve(args, FileServerConfig::default()).unwrap_err();
        assert!(error.to_string().contains("--insecure-no-auth"), "{error}");
        let args = ServerArgs {
            host: Some("0.0.0.0".into()),
            insecure_no_auth: true,
            ..ServerArgs::default()
        };
        assert!(ServerConfig::resolve(args, FileServerConfig::default()).is_ok());
        // Credentials on a public address need TLS, or an explicit opt-out.
        let args = ServerArgs {
            host: Some("0.0.0.0".into()),
            auth: true,
            ..ServerArgs::default()
        };
        let error = ServerConfig::resolve(args, FileServerConfig::default()).unwrap_err();
        assert!(error.to_string().contains("--tls-cert"), "{error}");
        assert!(error.to_string().contains("--insecure-no-tls"), "{error}");
        let args = ServerArgs {
            host: Some("0.0.0.0".into()),
            auth: true,
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..ServerArgs::default()
        };
        assert!(ServerConfig::resolve(args, FileServerConfig::default()).is_ok());
        let file = FileServerConfig {
            host: Some("0.0.0.0".into()),
            auth: Some(true),
            insecure_no_tls: Some(true),
            ..FileServerConfig::default()
        };
        assert!(
            ServerConfig::resolve(ServerArgs::default(), file)
                .unwrap()
                .auth
        );
    }

    #[test]
    fn artifact_destinations_are_folders_or_s3_and_others_are_named() {
        let resolve = |raw: &str| {
            ServerConfig::resolve(
                ServerArgs {
                    artifacts_destination: Some(raw.into()),
                    ..ServerArgs::default()
                },
                FileServerConfig::default(),
            )
        };
        assert_eq!(
            resolve("s3://bucket/x").unwrap().artifacts_destination,
            ArtifactsDestination::S3("s3://bucket/x".into())
        );
        assert_eq!(
            resolve("file:///srv/a").unwrap().artifacts_destination,
            ArtifactsDestination::Folder("/srv/a".into())
        );
        let error = resolve("gs://bucket/x").unwrap_err();
        assert!(error.to_string().contains("gs://"), "{error}");
    }
}
