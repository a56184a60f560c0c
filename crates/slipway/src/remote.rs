//! Commands that act as a person against a running server: promotions, policies, rollback and
//! lineage. An approval means something only with an authenticated approver, so these go over
//! the HTTP API with the same settings the `mlflow` client reads: `MLFLOW_TRACKING_URI` (or
//! `--tracking-uri`), and `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` or
//! `MLFLOW_TRACKING_TOKEN`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::{Value, json};

const NATIVE: &str = "/api/slipway/v1";

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The slipway server (default: $MLFLOW_TRACKING_URI, else http://127.0.0.1:5000).
    #[arg(long, env = "MLFLOW_TRACKING_URI", global = true)]
    pub(crate) tracking_uri: Option<String>,
    #[command(flatten)]
    pub(crate) tls: crate::tls::ClientTlsArgs,
}

#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
    authorization: Option<String>,
    /// Where the credentials came from, for the hint on a 401.
    credential_source: Option<String>,
}

impl Client {
    /// The server's URL, as the client reaches it.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        Client::connect(args.tracking_uri.clone(), &args.tls)
    }

    /// A server named outside the flags (`--from`, `--to`): TLS settings from the environment.
    pub(crate) fn for_uri(tracking_uri: Option<String>) -> anyhow::Result<Client> {
        Client::connect(tracking_uri, &crate::tls::ClientTlsArgs::from_env())
    }

    pub(crate) fn connect(
        tracking_uri: Option<String>,
        tls: &crate::tls::ClientTlsArgs,
    ) -> anyhow::Result<Client> {
        let base = tracking_uri
            .unwrap_or_else(|| "http://127.0.0.1:5000".to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("the tracking URI '{base}' must start with http:// or https://");
        }
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let (authorization, credential_source) = if let Some(token) = env("MLFLOW_TRACKING_TOKEN") {
            (
                Some(format!("Bearer {token}")),
                Some("the token in MLFLOW_TRACKING_TOKEN".to_owned()),
            )
        } else if let Some(user) = env("MLFLOW_TRACKING_USERNAME") {
            use base64::Engine as _;
            let password = env("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
            (
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )),
                Some(format!(
                    "user '{user}' from MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                )),
            )
        } else {
            (None, None)
        };
        Ok(Client {
            base,
            http: tls
                .configure(reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)))?
                .build()
                .context("building the HTTP client")?,
            authorization,
            credential_source,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        match self.call_found(method, path, body).await? {
            Found::Yes(value) => Ok(value),
            Found::No(error) => Err(error),
        }
    }

    /// [`Client::call`], telling a 404 (the thing asked for does not exist) from the other
    /// failures.
    pub(crate) async fn call_found(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Found> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|error| {
            anyhow::Error::new(error.without_url())
                .context(format!("{method} {url}: is the server running?"))
        })?;
        let status = response.status();
        let text = response.text().await.context("reading the response")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(Found::Yes(value));
        }
        let code = value["error_code"].as_str().unwrap_or("ERROR");
        let message = value["message"].as_str().unwrap_or_default();
        // Said once: the server's message already tells which variables to set when none
        // came; the client adds what it alone knows, which credentials it sent.
        let hint = match (status.as_u16(), &self.credential_source) {
            (401, Some(source)) => format!(" (sent {source})"),
            (401, None) if !message.contains("MLFLOW_TRACKING_") => {
                " (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)"
                    .to_owned()
            }
            _ => String::new(),
        };
        let error = anyhow::anyhow!("{code} ({status}): {message}{hint}");
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Found::No(error));
        }
        Err(error)
    }
}

/// An answer, or the 404 that said the thing does not exist.
pub(crate) enum Found {
    Yes(Value),
    No(anyhow::Error),
}

impl Client {
    /// GET of an artifact through the server's artifact proxy, with the caller's credentials.
    async fn get_artifact(&self, proxy_path: &str) -> anyhow::Result<(String, reqwest::Response)> {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{proxy_path}",
            self.base
        );
        let mut request = self.http.get(&url);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        Ok((url, response))
    }

    /// The id of the experiment named `name`, created if there is none.
    pub(crate) async fn experiment_named(&self, name: &str) -> anyhow::Result<String> {
        let found = self
            .call_found(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
                    urlencode(name)
                ),
                None,
            )
            .await?;
        let id = match found {
            Found::Yes(found) => found["experiment"]["experiment_id"].clone(),
            Found::No(_) => self
                .call(
                    reqwest::Method::POST,
                    "/api/2.0/mlflow/experiments/create",
                    Some(json!({ "name": name })),
                )
                .await?["experiment_id"]
                .clone(),
        };
        id.as_str()
            .map(str::to_owned)
            .with_context(|| format!("the server gave no id for experiment {name:?}"))
    }

    /// Downloads an artifact through the server's artifact proxy into `target`.
    pub(crate) async fn download(
        &self,
        proxy_path: &str,
        target: &std::path::Path,
    ) -> anyhow::Result<()> {
        let (url, response) = self.get_artifact(proxy_path).await?;
        if !response.status().is_success() {
            bail!("downloading {url}: {}", response.status());
        }
        const MAX_MODEL_BYTES: u64 = 4 << 30;
        if response
            .content_length()
            .is_some_and(|length| length > MAX_MODEL_BYTES)
        {
            bail!("{url} is larger than {MAX_MODEL_BYTES} bytes; refusing to download it");
        }
        let bytes = response.bytes().await.context("reading the artifact")?;
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .with_context(|| format!("creating {}", target.display()))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", target.display()))?;
        Ok(())
    }
}

impl Client {
    /// An artifact's bytes through the server's artifact proxy; None when there is none. For
    /// small artifacts (at most `max` bytes).
    pub(crate) async fn get_bytes(
        &self,
        proxy_path: &str,
        max: usize,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let (url, response) = self.get_artifact(proxy_path).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            bail!("downloading {url}: {}", response.status());
        }
        if response.content_length().is_some_and(|n| n > max as u64) {
            bail!("{url} is larger than {max} bytes");
        }
        let bytes = response.bytes().await.context("reading the artifact")?;
        if bytes.len() > max {
            bail!("{url} is larger than {max} bytes");
        }
        Ok(Some(bytes.to_vec()))
    }

    /// A GET of `path` (with the query) as a streamed response, for large bodies: no overall
    /// timeout beyond an hour.
    pub(crate) async fn get_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(3600));
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        Ok(response)
    }

    /// Uploads a stream as an artifact through the server's artifact proxy, for files too
    /// large to hold in memory; `proxy_path` is already percent-encoded.
    pub(crate) async fn upload_stream(
        &self,
        proxy_path: &str,
        body: slipway_core::ports::ByteStream,
    ) -> anyhow::Result<()> {
        self.put_artifact(proxy_path, reqwest::Body::wrap_stream(body))
            .await
    }

    /// Uploads `bytes` as an artifact through the server's artifact proxy.
    pub(crate) async fn upload(&self, proxy_path: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.put_artifact(proxy_path, bytes.into()).await
    }

    async fn put_artifact(&self, proxy_path: &str, body: reqwest::Body) -> anyhow::Result<()> {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{proxy_path}",
            self.base
        );
        // Large files take long; the client's default minute is for API calls.
        let mut request = self
            .http
            .put(&url)
            .timeout(std::time::Duration::from_secs(3600))
            .body(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await.with_context(|| format!("PUT {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            bail!(
                "uploading {url}: {} ({status}): {}",
                value["error_code"].as_str().unwrap_or("ERROR"),
                value["message"].as_str().unwrap_or_default()
            );
        }
        Ok(())
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: PromoteCommand,
}

#[derive(Debug, Subcommand)]
enum PromoteCommand {
    /// Ask for a model version to be moved to a protected alias (or stage): MODEL VERSION,
    /// models:/MODEL/VERSION, or models:/MODEL@ALIAS for the version an alias points at now.
    Request {
        /// The registered model (with VERSION), or models:/MODEL/VERSION or models:/MODEL@ALIAS.
        model: String,
        /// The version, when MODEL is a plain name.
        version: Option<String>,
        /// The alias to move, e.g. production.
        #[arg(long, conflicts_with = "stage", required_unless_present = "stage")]
        to: Option<String>,
        /// A protected stage instead of an alias, e.g. Production.
        #[arg(long)]
        stage: Option<String>,
        /// Why, for the approvers and the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the server's answer as JSON (`{"promotion": {...}, "checks": {...}}`).
        #[arg(long)]
        json: bool,
    },
    /// Approve a request (not your own). The approval that completes the count moves the alias.
    Approve {
        /// The request's id, as `promote request` and `promote list` show it.
        id: i64,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the server's answer as JSON (`{"promotion": {...}}`).
        #[arg(long)]
        json: bool,
    },
    /// Reject a request.
    Reject {
        /// The request's id, as `promote request` and `promote list` show it.
        id: i64,
        /// Why (required: the requester reads it).
        #[arg(long)]
        reason: String,
        /// Print the server's answer as JSON (`{"promotion": {...}}`).
        #[arg(long)]
        json: bool,
    },
    /// List requests, newest first.
    List {
        /// Only this registered model's requests.
        #[arg(long)]
        model: Option<String>,
        /// pending, approved or rejected.
        #[arg(long)]
        state: Option<String>,
        /// Print the server's answer as JSON (`{"promotions": [...]}`).
        #[arg(long)]
        json: bool,
    },
}

fn describe_request(promotion: &Value) -> String {
    format!(
        "promotion {} of {} version {} to {} {}: {} ({} approval{})",
        promotion["id"],
        promotion["name"].as_str().unwrap_or_default(),
        promotion["version"],
        promotion["target"]["kind"].as_str().unwrap_or_default(),
        promotion["target"]["value"].as_str().unwrap_or_default(),
        promotion["state"].as_str().unwrap_or_default(),
        promotion["approvals"],
        if promotion["approvals"] == 1 { "" } else { "s" },
    )
}

pub async fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    match args.command {
        PromoteCommand::Request {
            model,
            version,
            to,
            stage,
            reason,
            json,
        } => {
            let (model, version) = resolve_version(&client, &model, version.as_deref()).await?;
            let mut body = json!({ "name": model, "version": version, "reason": reason });
            match (to, stage) {
                (Some(alias), _) => body["alias"] = json!(alias),
                (None, Some(stage)) => body["stage"] = json!(stage),
                (None, None) => bail!("say where to promote: --to ALIAS or --stage STAGE"),
            }
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("{NATIVE}/promotions"),
                    Some(body),
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            let promotion = &answer["promotion"];
            if promotion["state"] != "pending" {
                println!("requested {}", describe_request(promotion));
            } else {
                println!(
                    "requested promotion {} of {} version {} to {} {}",
                    promotion["id"],
                    promotion["name"].as_str().unwrap_or_default(),
                    promotion["version"],
                    promotion["target"]["kind"].as_str().unwrap_or_default(),
                    promotion["target"]["value"].as_str().unwrap_or_default(),
                );
            }
            println!(
                "checks: {}",
                answer["checks"]["detail"].as_str().unwrap_or_default()
            );
            if promotion["state"] == "pending" {
                // The policy says how many approvals it takes; a reader may see it.
                let required = client
                    .call(
                        reqwest::Method::GET,
                        &format!("{NATIVE}/policies/{}", urlencode(&model)),
                        None,
                    )
                    .await
                    .ok()
                    .and_then(|policy| policy["policy"]["required_approvals"].as_u64());
                let approvals = promotion["approvals"].as_u64().unwrap_or(0);
                let of = required.map_or_else(String::new, |n| format!(" of {n}"));
                println!(
                    "pending: {approvals}{of} approvals; another person with the approver role approves it with `slipway promote approve {}`",
                    promotion["id"]
                );
            }
        }
        PromoteCommand::Approve { id, reason, json } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("{NATIVE}/promotions/{id}/approve"),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            println!("approved: {}", describe_request(&answer["promotion"]));
        }
        PromoteCommand::Reject { id, reason, json } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("{NATIVE}/promotions/{id}/reject"),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            println!("rejected: {}", describe_request(&answer["promotion"]));
        }
        PromoteCommand::List { model, state, json } => {
            let mut query = Vec::new();
            if let Some(model) = &model {
                query.push(format!("name={}", urlencode(model)));
            }
            if let Some(state) = &state {
                query.push(format!("state={}", urlencode(state)));
            }
            let answer = client
                .call(
                    reqwest::Method::GET,
                    &format!("{NATIVE}/promotions?{}", query.join("&")),
                    None,
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            let mut table = Table::new();
            table.set_header([
                "id",
                "model",
                "version",
                "to",
                "state",
                "approvals",
                "requester",
                "reason",
            ]);
            for promotion in answer["promotions"].as_array().into_iter().flatten() {
                table.add_row([
                    promotion["id"].to_string(),
                    promotion["name"].as_str().unwrap_or_default().to_owned(),
                    promotion["version"].to_string(),
                    format!(
                        "{} {}",
                        promotion["target"]["kind"].as_str().unwrap_or_default(),
                        promotion["target"]["value"].as_str().unwrap_or_default()
                    ),
                    promotion["state"].as_str().unwrap_or_default().to_owned(),
                    promotion["approvals"].to_string(),
                    promotion["requester"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    promotion["reason"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

/// The (name, version) a person named: `models:/NAME/VERSION`, `models:/NAME@ALIAS` (asked of
/// the server, which knows where the alias points now), or NAME with VERSION given apart.
pub(crate) async fn resolve_version(
    client: &Client,
    model: &str,
    version: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let Some(rest) = model.strip_prefix("models:/") else {
        let Some(version) = version else {
            bail!(
                "which version of '{model}'? Give it after the name (`{model} 3`), or write models:/{model}/VERSION or models:/{model}@ALIAS"
            );
        };
        return Ok((model.to_owned(), version.to_owned()));
    };
    if version.is_some() {
        bail!("'{model}' names a version already; leave out the separate VERSION");
    }
    if let Some((name, alias)) = rest.rsplit_once('@')
        && !name.is_empty()
        && !alias.is_empty()
    {
        let answer = client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                    urlencode(name),
                    urlencode(alias)
                ),
                None,
            )
            .await
            .with_context(|| format!("resolving {model}"))?;
        let number = answer["model_version"]["version"]
            .as_str()
            .unwrap_or_default();
        if number.is_empty() {
            bail!("the server named no version for {model}");
        }
        return Ok((name.to_owned(), number.to_owned()));
    }
    match rest.rsplit_once('/') {
        Some((name, number)) if !name.is_empty() && !number.is_empty() => {
            Ok((name.to_owned(), number.to_owned()))
        }
        _ => bail!(
            "'{model}' is not a model version URI: write models:/NAME/VERSION or models:/NAME@ALIAS"
        ),
    }
}

pub(crate) fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Move an alias back to the version it pointed at before its last change. An emergency
    /// action for approvers: no new approval, recorded in the audit log.
    Rollback {
        /// The registered model.
        model: String,
        /// The alias to move back, e.g. production.
        #[arg(long)]
        alias: String,
        /// Print the server's answer as JSON (`{"change": {name, alias, version,
        /// previous_version, ...}}`).
        #[arg(long)]
        json: bool,
    },
    /// Every move of a model's aliases.
    History {
        /// The registered model.
        model: String,
        /// Only this alias.
        #[arg(long)]
        alias: Option<String>,
        /// Print the history as JSON (`{"changes": [...]}`).
        #[arg(long)]
        json: bool,
    },
    /// Convert a scikit-learn, XGBoost or LightGBM model to ONNX, check it against the
    /// original, and register it as a new version that `slipway serve` can run.
    Convert(crate::convert::ConvertArgs),
}

pub async fn models(args: ModelsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    match args.command {
        ModelsCommand::Convert(convert) => crate::convert::convert(&client, convert).await?,
        ModelsCommand::Rollback { model, alias, json } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("{NATIVE}/registered-models/rollback"),
                    Some(json!({ "name": model, "alias": alias })),
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            let change = &answer["change"];
            println!(
                "alias '{alias}' of '{model}' rolled back from version {} to version {}",
                change["previous_version"], change["version"]
            );
        }
        ModelsCommand::History { model, alias, json } => {
            let mut path = format!(
                "{NATIVE}/registered-models/alias-history?name={}",
                urlencode(&model)
            );
            if let Some(alias) = &alias {
                path.push_str(&format!("&alias={}", urlencode(alias)));
            }
            let answer = client.call(reqwest::Method::GET, &path, None).await?;
            if json {
                return print_json(&answer);
            }
            let mut table = Table::new();
            table.set_header(["time", "alias", "from", "to", "via"]);
            for change in answer["changes"].as_array().into_iter().flatten() {
                table.add_row([
                    crate::admin::time(change["time"].as_i64().unwrap_or(0)),
                    change["alias"].as_str().unwrap_or_default().to_owned(),
                    change["previous_version"].to_string(),
                    change["version"].to_string(),
                    change["via"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Protect a registered model's aliases and stages (admins).
    Set {
        /// The registered model.
        model: String,
        /// Protected aliases, comma-separated (default: production,champion).
        #[arg(long, value_delimiter = ',')]
        aliases: Option<Vec<String>>,
        /// Protected stages, comma-separated (default: Production).
        #[arg(long, value_delimiter = ',')]
        stages: Option<Vec<String>>,
        /// Approvals a promotion needs (default 1).
        #[arg(long)]
        approvals: Option<u32>,
        /// A runs filter the source run must pass, e.g. "metrics.auc >= 0.9".
        #[arg(long)]
        checks: Option<String>,
        /// Percent of a protected deployment's live traffic a candidate may answer before its
        /// promotion is approved (default 10; a candidate failing the checks gets none).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        max_unapproved_traffic: Option<u8>,
        /// Require a passed release gate, run by the server (`slipway gate`), before a
        /// promotion is requested, approved or answers live traffic.
        #[arg(long)]
        require_gate: bool,
        /// The rules a gate must have judged to count (a rules file, as `slipway gate
        /// --rules`); without it, the default rules. Needs --require-gate.
        #[arg(long, value_name = "FILE", requires = "require_gate")]
        gate_rules: Option<std::path::PathBuf>,
        /// The holdout a gate must have run on (runs:/RUN_ID/PATH or mlflow-artifacts:/PATH);
        /// its content is pinned now. Needs --require-gate.
        #[arg(long, value_name = "URI", requires = "require_gate")]
        gate_data: Option<String>,
        /// Accepted for scripts: the policy is always printed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a registered model's policy as JSON.
    Show {
        /// The registered model.
        model: String,
        /// Accepted for scripts: the policy is always printed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a registered model's policy: its aliases and stages are no longer protected.
    Delete {
        /// The registered model.
        model: String,
        /// Print `{"deleted": MODEL}` instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

pub async fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    match args.command {
        PolicyCommand::Set {
            model,
            aliases,
            stages,
            approvals,
            checks,
            max_unapproved_traffic,
            require_gate,
            gate_rules,
            gate_data,
            json: _,
        } => {
            let gate_rules = gate_rules
                .as_deref()
                .map(crate::gate::rules_from_file)
                .transpose()?;
            let answer = client
                .call(
                    reqwest::Method::PUT,
                    &format!("{NATIVE}/policies/{}", urlencode(&model)),
                    Some(json!({
                        "protected_aliases": aliases,
                        "protected_stages": stages,
                        "required_approvals": approvals,
                        "checks": checks,
                        "max_unapproved_weight": max_unapproved_traffic,
                        "require_gate": require_gate,
                        "gate_rules": gate_rules,
                        "gate_data": gate_data,
                    })),
                )
                .await?;
            print_json(&answer["policy"])?;
        }
        PolicyCommand::Show { model, json: _ } => {
            let answer = client
                .call(
                    reqwest::Method::GET,
                    &format!("{NATIVE}/policies/{}", urlencode(&model)),
                    None,
                )
                .await?;
            print_json(&answer["policy"])?;
        }
        PolicyCommand::Delete { model, json } => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("{NATIVE}/policies/{}", urlencode(&model)),
                    None,
                )
                .await?;
            if json {
                return print_json(&json!({ "deleted": model }));
            }
            println!("deleted the promotion policy of '{model}'");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct LineageArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The model version: models:/NAME/VERSION, or models:/NAME@ALIAS for the version the
    /// alias points at now.
    model_uri: String,
    /// Print the lineage as JSON (the server's `lineage` object).
    #[arg(long)]
    json: bool,
}

pub async fn lineage(args: LineageArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    if !args.model_uri.starts_with("models:/") {
        bail!(
            "'{}' is not a model version URI: write models:/NAME/VERSION or models:/NAME@ALIAS",
            args.model_uri
        );
    }
    let (name, version) = resolve_version(&client, &args.model_uri, None).await?;
    let (name, version) = (name.as_str(), version.as_str());
    let answer = client
        .call(
            reqwest::Method::GET,
            &format!(
                "{NATIVE}/lineage?name={}&version={}",
                urlencode(name),
                urlencode(version)
            ),
            None,
        )
        .await?;
    let lineage = &answer["lineage"];
    if args.json {
        return print_json(lineage);
    }
    let mv = &lineage["model_version"];
    println!(
        "{} version {} ({}), registered by {} at {}",
        mv["name"].as_str().unwrap_or_default(),
        mv["version"],
        mv["source"].as_str().unwrap_or_default(),
        mv["registered_by"].as_str().unwrap_or("unknown"),
        crate::admin::time(mv["registered_at"].as_i64().unwrap_or(0)),
    );
    if let Some(from) = mv["tags"]["slipway.converted_from"].as_str() {
        println!(
            "  converted from {from} with {}: checked {}",
            mv["tags"]["slipway.converter"]
                .as_str()
                .unwrap_or("a converter"),
            mv["tags"]["slipway.conversion_check"]
                .as_str()
                .unwrap_or("(no check recorded)")
        );
    }
    match mv["content_digest"].as_str() {
        Some(digest) => {
            println!("  content {digest}");
            for file in mv["files"].as_array().into_iter().flatten() {
                println!(
                    "    {}  {} bytes  {}",
                    file["sha256"].as_str().unwrap_or_default(),
                    file["size"],
                    file["path"].as_str().unwrap_or_default()
                );
            }
        }
        None => println!(
            "  content: not recorded (files outside slipway's store, or registered before digests)"
        ),
    }
    let run = &lineage["run"];
    if run.is_null() {
        println!("  source run: none recorded");
    } else {
        let info = &run["info"];
        println!(
            "  source run {} ({}) in experiment {}",
            info["run_id"].as_str().unwrap_or_default(),
            info["run_name"].as_str().unwrap_or_default(),
            info["experiment_id"].as_str().unwrap_or_default()
        );
        for (key, value) in lineage["source"].as_object().into_iter().flatten() {
            println!("    {key} = {}", value.as_str().unwrap_or_default());
        }
        for param in run["data"]["params"].as_array().into_iter().flatten() {
            println!(
                "    param {} = {}",
                param["key"].as_str().unwrap_or_default(),
                param["value"].as_str().unwrap_or_default()
            );
        }
        for metric in run["data"]["metrics"].as_array().into_iter().flatten() {
            println!(
                "    metric {} = {}",
                metric["key"].as_str().unwrap_or_default(),
                metric["value"]
            );
        }
    }
    for dataset in lineage["datasets"].as_array().into_iter().flatten() {
        println!(
            "  dataset {} digest {} ({})",
            dataset["name"].as_str().unwrap_or_default(),
            dataset["digest"].as_str().unwrap_or_default(),
            dataset["context"].as_str().unwrap_or("no context")
        );
    }
    for parent in lineage["parents"].as_array().into_iter().flatten() {
        println!(
            "  parent run {} ({})",
            parent["run_id"].as_str().unwrap_or_default(),
            parent["run_name"].as_str().unwrap_or_default()
        );
    }
    for promotion in lineage["promotions"].as_array().into_iter().flatten() {
        println!("  {}", describe_request(promotion));
        for decision in promotion["decisions"].as_array().into_iter().flatten() {
            println!(
                "    {} by {} at {}: {}",
                decision["decision"].as_str().unwrap_or_default(),
                decision["user"].as_str().unwrap_or_default(),
                crate::admin::time(decision["time"].as_i64().unwrap_or(0)),
                decision["reason"].as_str().unwrap_or_default()
            );
        }
    }
    for change in lineage["alias_history"].as_array().into_iter().flatten() {
        println!(
            "  alias {} {} -> {} at {} via {}",
            change["alias"].as_str().unwrap_or_default(),
            change["previous_version"],
            change["version"],
            crate::admin::time(change["time"].as_i64().unwrap_or(0)),
            change["via"].as_str().unwrap_or_default()
        );
    }
    if !lineage["retrain"].is_null() {
        println!("  made by {}", crate::triggers::chain(&lineage["retrain"]));
    }
    for step in lineage["steps"].as_array().into_iter().flatten() {
        let datasets: Vec<String> = step["datasets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} ({})",
                    d["name"].as_str().unwrap_or_default(),
                    d["digest"].as_str().unwrap_or_default()
                )
            })
            .collect();
        println!(
            "    step {} run {} key {}{}",
            step["step"].as_str().unwrap_or("?"),
            step["run_id"].as_str().unwrap_or_default(),
            step["cache_key"]
                .as_str()
                .map(|k| &k[..k.len().min(12)])
                .unwrap_or("-"),
            if datasets.is_empty() {
                String::new()
            } else {
                format!(" <- {}", datasets.join(", "))
            }
        );
    }
    for gate in lineage["gates"].as_array().into_iter().flatten() {
        println!(
            "  gate {} {} against {} on {} ({} rules, run {}) by {} at {}",
            gate["id"],
            gate["status"].as_str().unwrap_or_default(),
            gate["champion_version"]
                .as_i64()
                .map_or_else(|| "no champion".to_owned(), |v| format!("version {v}")),
            gate["data"].as_str().unwrap_or_default(),
            gate["rules_source"].as_str().unwrap_or_default(),
            gate["run_id"].as_str().unwrap_or_default(),
            gate["created_by"].as_str().unwrap_or_default(),
            crate::admin::time(gate["created_at"].as_i64().unwrap_or(0)),
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PermissionsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: PermissionsCommand,
}

/// One experiment or registered model, as the permission commands name it.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ResourceFlags {
    /// An experiment, by id.
    #[arg(long)]
    experiment: Option<String>,
    /// A registered model, by name.
    #[arg(long)]
    model: Option<String>,
}

impl ResourceFlags {
    fn json(&self) -> Value {
        match (&self.experiment, &self.model) {
            (Some(id), _) => json!({ "resource_type": "experiment", "resource_id": id }),
            (None, Some(name)) => {
                json!({ "resource_type": "registered_model", "resource_id": name })
            }
            (None, None) => Value::Null,
        }
    }

    fn describe(&self) -> String {
        match (&self.experiment, &self.model) {
            (Some(id), _) => format!("experiment {id}"),
            (None, Some(name)) => format!("registered model '{name}'"),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum PermissionsCommand {
    /// Give a user a permission on one experiment or registered model; it refines their role
    /// there, in both directions (EDIT lets a viewer write; NO_PERMISSIONS hides it from an
    /// editor). Replaces the user's earlier permission on that resource.
    Grant {
        /// The user.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        resource: ResourceFlags,
        /// READ, EDIT, MANAGE or NO_PERMISSIONS (any case).
        #[arg(long)]
        permission: String,
        /// Print `{"user", "resource_type", "resource_id", "permission"}` instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's permission on one experiment or registered model: their role decides
    /// there again.
    Revoke {
        /// The user.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        resource: ResourceFlags,
        /// Print `{"user", "resource_type", "resource_id", "revoked": true}` instead of a
        /// sentence.
        #[arg(long)]
        json: bool,
    },
    /// List permissions, of every user or one.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Print the server's answer as JSON (`{"permissions": [{user, resource_type,
        /// resource_id, permission}]}`).
        #[arg(long)]
        json: bool,
    },
}

pub async fn permissions(args: PermissionsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let path = format!("{NATIVE}/permissions");
    match args.command {
        PermissionsCommand::Grant {
            user,
            resource,
            permission,
            json,
        } => {
            let permission = permission.to_ascii_uppercase();
            let mut body = resource.json();
            body["user"] = json!(user);
            body["permission"] = json!(permission);
            client
                .call(reqwest::Method::PUT, &path, Some(body.clone()))
                .await?;
            if json {
                return print_json(&body);
            }
            println!(
                "user '{user}' has permission {permission} on {}",
                resource.describe()
            );
        }
        PermissionsCommand::Revoke {
            user,
            resource,
            json,
        } => {
            let mut body = resource.json();
            body["user"] = json!(user);
            client
                .call(reqwest::Method::DELETE, &path, Some(body.clone()))
                .await?;
            if json {
                body["revoked"] = json!(true);
                return print_json(&body);
            }
            println!(
                "revoked the permission of user '{user}' on {}; their role decides there again",
                resource.describe()
            );
        }
        PermissionsCommand::List { user, json } => {
            let query = user
                .as_deref()
                .map(|user| format!("?user={}", urlencode(user)))
                .unwrap_or_default();
            let answer = client
                .call(reqwest::Method::GET, &format!("{path}{query}"), None)
                .await?;
            if json {
                return print_json(&answer);
            }
            let mut table = Table::new();
            table.set_header(["user", "resource", "permission"]);
            for grant in answer["permissions"].as_array().into_iter().flatten() {
                table.add_row([
                    grant["user"].as_str().unwrap_or_default().to_owned(),
                    format!(
                        "{}:{}",
                        grant["resource_type"].as_str().unwrap_or_default(),
                        grant["resource_id"].as_str().unwrap_or_default()
                    ),
                    grant["permission"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}
