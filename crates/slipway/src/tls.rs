//! TLS for every HTTP listener (`slipway server`, `slipway serve`, replicas) and for the
//! commands that call a server.
//!
//! Listening: axum::serve speaks plain TCP only, so a TLS listener accepts with tokio-rustls
//! and hands each connection to hyper with the router as its service. The certificate is
//! re-read when its files change (a renewed certificate, a rotated Kubernetes Secret), with
//! no restart and no dropped connection. With `--client-ca`, a client certificate signed by
//! that CA authenticates as the user its subject's common name names (mutual TLS, as between
//! replicas and the server); the listener puts that name on each of the connection's requests,
//! where only it can.
//!
//! Calling: the CLI and replicas verify the server against the system's roots, or only against
//! `--ca-cert` (MLFLOW_TRACKING_SERVER_CERT_PATH, as the mlflow client reads it), and present
//! `--client-cert` (MLFLOW_TRACKING_CLIENT_CERT_PATH) where the server asks for one.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::ConnectInfo;
use clap::Args;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// How often the certificate's files are checked for a change. Kubernetes updates a mounted
/// Secret by swapping a symlink, which file watchers miss; reading two small files is cheap.
const RELOAD_POLL: Duration = Duration::from_secs(2);
/// A client that opens a connection and never finishes its handshake holds a task and a socket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Likewise for a request's headers, once the handshake is done.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener's TLS flags, shared by `slipway serve` (and replicas); `slipway server` has
/// the same names in its layered configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct ListenTlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first). It is re-read when the file
    /// changes.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM) on every connection: mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

/// What a listener's TLS is made of, as resolved from flags and the config file.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate; otherwise one is optional and, when
    /// given, must be valid and names the caller.
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// The flags as given: both of cert and key or neither; a client CA only with them.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
        require_client_cert: bool,
    ) -> anyhow::Result<Option<TlsFiles>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert,
                key,
                client_ca,
                require_client_cert,
            })),
            (None, None) if client_ca.is_some() => {
                bail!(
                    "--client-ca needs --tls-cert and --tls-key: client certificates are checked during the TLS handshake"
                )
            }
            (None, None) => Ok(None),
            (Some(_), None) => {
                bail!("--tls-cert needs --tls-key (the certificate's private key, PEM)")
            }
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (the certificate chain, PEM)"),
        }
    }
}

impl ListenTlsArgs {
    pub fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        let require = self.client_ca.is_some();
        TlsFiles::from_flags(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.client_ca.clone(),
            require,
        )
    }
}

/// A certificate and key as read, with the digest that tells a changed file from an unchanged.
struct Loaded {
    key: Arc<CertifiedKey>,
    digest: [u8; 32],
    not_after: String,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn certificates(pem: &[u8], path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{} holds no certificate (expected PEM blocks starting '-----BEGIN CERTIFICATE-----')",
            path.display()
        );
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load_key(files: &TlsFiles) -> anyhow::Result<Loaded> {
    let cert_pem = read(&files.cert, "TLS certificate")?;
    let key_pem = read(&files.key, "TLS private key")?;
    let digest = Sha256::new()
        .chain_update(&cert_pem)
        .chain_update(&key_pem)
        .finalize()
        .into();
    let chain = certificates(&cert_pem, &files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "{} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1): {e}",
            files.key.display()
        )
    })?;
    let not_after = x509_parser::parse_x509_certificate(chain[0].as_ref())
        .map(|(_, cert)| cert.validity().not_after.to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        anyhow::anyhow!(
            "the private key {} does not belong to the certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        digest,
        not_after,
    })
}

/// The certificate handed to each handshake: swapped in place when its files change.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// A listener's TLS: the rustls configuration and the certificate it serves.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    current: Arc<Current>,
    digest: Arc<RwLock<[u8; 32]>>,
    files: TlsFiles,
}

impl Tls {
    /// Reads the certificate, key and client CA; any problem is an error that names the file.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Tls> {
        let loaded = load_key(files)?;
        tracing::info!(
            certificate = %files.cert.display(),
            not_after = %loaded.not_after,
            "TLS certificate loaded"
        );
        let current = Arc::new(Current(RwLock::new(loaded.key)));
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?;
        let builder = match &files.client_ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(&read(path, "client CA")?, path)? {
                    roots.add(cert).with_context(|| {
                        format!(
                            "{} holds a certificate that is not a valid CA",
                            path.display()
                        )
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if files.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .with_context(|| format!("using {} as client CA", path.display()))?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            current,
            digest: Arc::new(RwLock::new(loaded.digest)),
            files: files.clone(),
        })
    }

    /// Re-reads the certificate and key; swaps them in if they changed and are valid together.
    /// Returns whether they were swapped. A broken new pair keeps the old one serving.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let loaded = load_key(&self.files)?;
        let mut digest = self.digest.write().unwrap_or_else(|e| e.into_inner());
        if *digest == loaded.digest {
            return Ok(false);
        }
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = loaded.key;
        *digest = loaded.digest;
        tracing::info!(
            certificate = %self.files.cert.display(),
            not_after = %loaded.not_after,
            "TLS certificate reloaded"
        );
        Ok(true)
    }

    /// Checks the files every [`RELOAD_POLL`] until the task is dropped. A failed read is
    /// logged once per distinct error, so a half-written renewal does not flood the log.
    fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(RELOAD_POLL).await;
                let tls = tls.clone();
                match tokio::task::spawn_blocking(move || tls.reload()).await {
                    Ok(Ok(_)) => last_error.clear(),
                    Ok(Err(error)) => {
                        let text = format!("{error:#}");
                        if text != last_error {
                            tracing::warn!(error = %text, "the TLS certificate could not be reloaded; still serving the previous one");
                            last_error = text;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// `https` with TLS, else `http`: for the addresses the servers log and link to.
pub fn scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// The user a verified client certificate names: its subject's common name.
fn certificate_user(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish. Each request carries its peer's address (`ConnectInfo`), as with axum::serve.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
    };
    let reloader = tls.spawn_reloader();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: let connections close, then go on.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(certificate_user);
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if let Some(user) = &user {
                        request
                            .extensions_mut()
                            .insert(slipway_api::access::PeerCertificate { user: user.clone() });
                    }
                    tower::ServiceExt::oneshot(router.clone(), request)
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    reloader.abort();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; closing them");
    }
    Ok(())
}

/// How the commands and replicas verify a server and prove who they are. The names are the
/// mlflow client's, so one environment serves both.
#[derive(Debug, Args, Clone, Default)]
pub struct ClientTlsArgs {
    /// Verify the server's certificate against this CA bundle (PEM) only, instead of the
    /// system's roots.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_SERVER_CERT_PATH",
        value_name = "PEM",
        global = true
    )]
    pub ca_cert: Option<PathBuf>,
    /// Present this client certificate, with its private key in the same PEM file, to servers
    /// that take them (--client-ca).
    #[arg(
        long,
        env = "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        value_name = "PEM",
        global = true
    )]
    pub client_cert: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The same settings, from the environment only (for URLs given outside the flags).
    pub fn from_env() -> ClientTlsArgs {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        ClientTlsArgs {
            ca_cert: path("MLFLOW_TRACKING_SERVER_CERT_PATH"),
            client_cert: path("MLFLOW_TRACKING_CLIENT_CERT_PATH"),
        }
    }

    pub fn configure(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::ClientBuilder> {
        if let Some(path) = &self.ca_cert {
            let pem = read(
                path,
                "CA bundle (--ca-cert, MLFLOW_TRACKING_SERVER_CERT_PATH)",
            )?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM CA bundle", path.display()))?;
            if certs.is_empty() {
                bail!("{} holds no certificate", path.display());
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some(path) = &self.client_cert {
            let pem = read(
                path,
                "client certificate (--client-cert, MLFLOW_TRACKING_CLIENT_CERT_PATH)",
            )?;
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "{} must hold the client certificate and its private key, both PEM",
                    path.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a leaf for 127.0.0.1 it signed, written to `dir`.
    pub(crate) struct Pki {
        pub ca: PathBuf,
        pub cert: PathBuf,
        pub key: PathBuf,
        issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        pub fn new(dir: &Path) -> Pki {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "test CA");
            let issuer =
                rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                    .unwrap();
            let ca = dir.join("ca.pem");
            std::fs::write(&ca, issuer.pem()).unwrap();
            let pki = Pki {
                ca,
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
                issuer,
            };
            let (cert, key) = pki.issue("127.0.0.1", &["127.0.0.1", "localhost"]);
            std::fs::write(&pki.cert, cert).unwrap();
            std::fs::write(&pki.key, key).unwrap();
            pki
        }

        /// A certificate and key (PEM) signed by the CA.
        pub fn issue(&self, common_name: &str, names: &[&str]) -> (String, String) {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
            )
            .unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }
    }

    fn files(pki: &Pki, client_ca: bool) -> TlsFiles {
        TlsFiles {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
            client_ca: client_ca.then(|| pki.ca.clone()),
            require_client_cert: false,
        }
    }

    async fn start(tls: Tls) -> (String, tokio::sync::oneshot::Sender<()>) {
        let router = Router::new().route(
            "/who",
            axum::routing::get(|request: axum::extract::Request| async move {
                request
                    .extensions()
                    .get::<slipway_api::access::PeerCertificate>()
                    .map_or_else(|| "nobody".to_owned(), |peer| peer.user.clone())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, Some(tls), async move {
            let _ = stopped.await;
        }));
        (url, stop)
    }

    fn client(ca: &Path, identity: Option<&Path>) -> reqwest::Client {
        ClientTlsArgs {
            ca_cert: Some(ca.to_owned()),
            client_cert: identity.map(Path::to_owned),
        }
        .configure(reqwest::Client::builder())
        .unwrap()
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_is_served_and_one_trusting_the_system_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (url, _stop) = start(Tls::load(&files(&pki, false)).unwrap()).await;
        let answer = client(&pki.ca, None)
            .get(format!("{url}/who"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.text().await.unwrap(), "nobody");
        let refused = reqwest::Client::new()
            .get(format!("{url}/who"))
            .send()
            .await;
        assert!(refused.is_err(), "an untrusted certificate was accepted");
    }

    #[tokio::test]
    async fn a_client_certificate_names_its_user_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (url, _stop) = start(Tls::load(&files(&pki, true)).unwrap()).await;
        let (cert, key) = pki.issue("replica-1", &[]);
        let identity = dir.path().join("replica.pem");
        std::fs::write(&identity, format!("{cert}{key}")).unwrap();
        let who = |identity: Option<PathBuf>| {
            let client = client(&pki.ca, identity.as_deref());
            let url = format!("{url}/who");
            async move { client.get(url).send().await }
        };
        let answer = who(Some(identity)).await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "replica-1");
        // Optional: without a certificate the request goes on, naming nobody.
        let answer = who(None).await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "nobody");
        // A certificate from another CA does not pass the handshake.
        let other = tempfile::tempdir().unwrap();
        let stranger = Pki::new(other.path());
        let (cert, key) = stranger.issue("admin", &[]);
        let forged = dir.path().join("forged.pem");
        std::fs::write(&forged, format!("{cert}{key}")).unwrap();
        assert!(
            who(Some(forged)).await.is_err(),
            "a foreign CA's certificate was accepted"
        );
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let tls = Tls::load(&files(&pki, false)).unwrap();
        let (url, _stop) = start(tls.clone()).await;
        let served = || async {
            let client = reqwest::Client::builder()
                .tls_certs_only(
                    reqwest::Certificate::from_pem_bundle(&std::fs::read(&pki.ca).unwrap())
                        .unwrap(),
                )
                .tls_info(true)
                .build()
                .unwrap();
            let answer = client.get(format!("{url}/who")).send().await.unwrap();
            answer
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
                .unwrap()
        };
        let first = served().await;
        assert!(!tls.reload().unwrap(), "unchanged files were reloaded");
        let (cert, key) = pki.issue("127.0.0.1", &["127.0.0.1"]);
        std::fs::write(&pki.cert, &cert).unwrap();
        std::fs::write(&pki.key, &key).unwrap();
        // The poller picks the renewal up within its period.
        let deadline = std::time::Instant::now() + RELOAD_POLL * 5;
        let renewed = loop {
            let now = served().await;
            if now != first || std::time::Instant::now() > deadline {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_ne!(renewed, first, "the renewed certificate was not served");
        // A key that does not match keeps the renewed pair serving.
        let (_, other_key) = pki.issue("127.0.0.1", &["127.0.0.1"]);
        std::fs::write(&pki.key, other_key).unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("does not belong"), "{error}");
        assert_eq!(served().await, renewed);
    }

    #[test]
    fn flags_name_what_is_missing() {
        let error = TlsFiles::from_flags(Some("c".into()), None, None, false).unwrap_err();
        assert!(error.to_string().contains("--tls-key"), "{error}");
        let error = TlsFiles::from_flags(None, None, Some("ca".into()), false).unwrap_err();
        assert!(error.to_string().contains("--tls-cert"), "{error}");
        assert!(
            TlsFiles::from_flags(None, None, None, false)
                .unwrap()
                .is_none()
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
            client_ca: None,
            require_client_cert: false,
        };
        let error = format!("{:#}", Tls::load(&missing).err().unwrap());
        assert!(error.contains("nope.pem"), "{error}");
        std::fs::write(dir.path().join("nope.pem"), "not pem").unwrap();
        std::fs::write(dir.path().join("nope.key"), "not pem").unwrap();
        let error = format!("{:#}", Tls::load(&missing).err().unwrap());
        assert!(error.contains("holds no certificate"), "{error}");
    }
}
