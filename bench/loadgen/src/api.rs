//! Minimal MLflow REST client over reqwest (HTTP/1.1, no TLS, loopback only).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

/// Refuse anything but a loopback target: this tool generates load.
pub fn check_loopback(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url must start with http:// (no TLS): {url}"))?;
    let hostport = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport)
    };
    let ok = host == "localhost"
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    if !ok {
        bail!("refusing non-loopback target {host:?}: the benchmark only talks to 127.0.0.0/8, ::1 or localhost");
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Api {
    /// `authorization`: the full value of an `Authorization` header (`Basic ...` or `Bearer ...`)
    /// sent with every request, populations and health checks included.
    pub fn new(base: &str, authorization: Option<&str>) -> Result<Self> {
        check_loopback(base)?;
        let mut headers = HeaderMap::new();
        if let Some(a) = authorization.map(str::trim).filter(|a| !a.is_empty()) {
            let mut v = HeaderValue::from_str(a).context("the Authorization header value is not a valid header value")?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            .timeout(Duration::from_secs(600))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Api { client, base: base.trim_end_matches('/').to_string() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn check(resp: reqwest::Response, what: &str) -> Result<Bytes> {
        let status = resp.status();
        let body = resp.bytes().await.with_context(|| format!("{what}: reading body"))?;
        if !status.is_success() {
            let txt = String::from_utf8_lossy(&body[..body.len().min(400)]).to_string();
            bail!("{what}: HTTP {status}: {txt}");
        }
        Ok(body)
    }

    /// POST a pre-serialized JSON body; returns the response length.
    pub async fn post_raw(&self, path: &str, body: Bytes) -> Result<Bytes> {
        let resp = self
            .client
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        Self::check(resp, path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let raw = serde_json::to_vec(body)?;
        let b = self.post_raw(path, Bytes::from(raw)).await?;
        parse_body(&b, path)
    }

    pub async fn get_raw(&self, path: &str, query: &[(&str, &str)]) -> Result<Bytes> {
        let resp = self
            .client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        Self::check(resp, path).await
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let b = self.get_raw(path, query).await?;
        parse_body(&b, path)
    }

    pub async fn health(&self) -> Result<()> {
        let resp = self.client.get(self.url("/health")).timeout(Duration::from_secs(2)).send().await?;
        if resp.status().as_u16() == 200 {
            Ok(())
        } else {
            bail!("/health answered {}", resp.status())
        }
    }

    /// Check that the server enforces authentication: an anonymous request must be refused
    /// with 401 and the same request with this client's credentials must succeed.
    pub async fn check_auth(&self) -> Result<String> {
        let path = "/api/2.0/mlflow/experiments/search";
        let query = [("max_results", "1")];
        let anonymous = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
        let st = anonymous.get(self.url(path)).query(&query).send().await.with_context(|| format!("GET {path}"))?.status();
        if st.as_u16() != 401 {
            bail!("GET {path} without credentials answered {st}, expected 401: is the server running with --auth?");
        }
        self.get_raw(path, &query).await.context("the same request with the credentials failed")?;
        Ok(format!("GET {path}: anonymous -> 401, with credentials -> 200"))
    }

    pub async fn create_experiment(&self, name: &str) -> Result<String> {
        let v = self.post("/api/2.0/mlflow/experiments/create", &json!({"name": name})).await?;
        v["experiment_id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("experiments/create: no experiment_id in {v}"))
    }

    /// Returns (run_id, artifact_uri).
    pub async fn create_run(&self, experiment_id: &str, name: &str, tags: &[(&str, &str)]) -> Result<(String, String)> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let v = self
            .post(
                "/api/2.0/mlflow/runs/create",
                &json!({"experiment_id": experiment_id, "run_name": name, "start_time": now_ms(), "tags": tags}),
            )
            .await?;
        let info = &v["run"]["info"];
        let id = info["run_id"]
            .as_str()
            .or_else(|| info["run_uuid"].as_str())
            .ok_or_else(|| anyhow!("runs/create: no run_id in {v}"))?;
        Ok((id.to_string(), info["artifact_uri"].as_str().unwrap_or("").to_string()))
    }
}

pub fn parse_body(b: &[u8], what: &str) -> Result<Value> {
    if b.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(b).with_context(|| format!("{what}: response is not JSON: {}", String::from_utf8_lossy(&b[..b.len().min(200)])))
}

/// Small deterministic PRNG (xorshift64*), so runs are reproducible and need no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
