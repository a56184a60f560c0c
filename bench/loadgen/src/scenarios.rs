//! The benchmark scenarios. Each returns a JSON value stored under its key in the results file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{Api, Rng, now_ms};
use crate::progress::Progress;
use crate::stats::{Ctl, Phase, Rec, cpu_json, hist_json, loop_json, new_hist};

/// Settings shared by all scenarios.
#[derive(Clone)]
pub struct Common {
    pub api: Api,
    pub server_pid: Option<u32>,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: u64,
    pub tag: String,
}

const METRIC_KEYS: [&str; 8] = ["loss", "acc", "lr", "grad_norm", "val_loss", "val_acc", "throughput", "mem"];

#[derive(Serialize)]
struct Metric<'a> {
    key: &'a str,
    value: f64,
    timestamp: i64,
    step: i64,
}

#[derive(Serialize)]
struct LogBatch<'a> {
    run_id: &'a str,
    metrics: Vec<Metric<'a>>,
}

/// `n` points: `n / keys` consecutive steps starting at `first_step`, every key at every step.
fn metrics_for<'a>(keys: &[&'a str], first_step: i64, n: usize, ts0: i64, rng: &mut Rng) -> Vec<Metric<'a>> {
    (0..n)
        .map(|i| {
            let step = first_step + (i / keys.len()) as i64;
            Metric { key: keys[i % keys.len()], value: rng.f64(), timestamp: ts0 + step, step }
        })
        .collect()
}

/// Run `workers` closed-loop workers until `ctl` says done; `f(worker, phase)` performs one request.
async fn run_loop<S, F, Fut>(c: &Common, ctl: Arc<Ctl>, states: Vec<S>, f: F) -> Result<Value>
where
    S: Send + 'static,
    F: Fn(S, Phase) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (S, anyhow::Result<(u64, u64)>)> + Send + 'static,
{
    let mut handles = Vec::new();
    for st in states {
        let ctl = ctl.clone();
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut rec = Rec::new();
            let mut st = Some(st);
            let mut consecutive_errors = 0u32;
            loop {
                let phase = ctl.next();
                if phase == Phase::Done {
                    break;
                }
                let t = Instant::now();
                let (s, r) = f(st.take().unwrap(), phase).await;
                st = Some(s);
                rec.record(phase, t.elapsed(), &r);
                if r.is_err() {
                    // errors during warm-up are not recorded, but keep the first one
                    if rec.first_error.is_none() {
                        rec.first_error = r.as_ref().err().map(|e| format!("{e:#}"));
                    }
                    consecutive_errors += 1;
                    if consecutive_errors >= 50 {
                        ctl.abort(); // the server is failing: stop the loop
                    }
                } else {
                    consecutive_errors = 0;
                }
            }
            rec
        }));
    }
    let mut rec = Rec::new();
    for h in handles {
        rec.merge(h.await?);
    }
    let start = ctl.measure_start();
    let wall = start.map(|s| s.at.elapsed().as_secs_f64()).unwrap_or(0.0);
    let cpu = cpu_json(start, c.server_pid, c.threads);
    Ok(loop_json(&rec, wall, cpu))
}

// ---------------------------------------------------------------------------------------------
// 1. ingest via log-batch

pub struct IngestOpts {
    pub concurrency: usize,
    pub metrics_per_req: usize,
    pub keys: usize,
    pub preserialized: bool,
    pub pool_requests: usize,
}

pub async fn ingest(c: &Common, o: &IngestOpts) -> Result<Value> {
    let keys: Vec<&'static str> = METRIC_KEYS[..o.keys.clamp(1, METRIC_KEYS.len())].to_vec();
    if o.metrics_per_req % keys.len() != 0 {
        bail!("--metrics-per-req must be a multiple of --keys");
    }
    let steps_per_req = (o.metrics_per_req / keys.len()) as i64;
    let variant = if o.preserialized { "pre" } else { "ser" };
    let exp = c.api.create_experiment(&format!("bench-ingest-{variant}-{}", c.tag)).await?;
    let ts0 = now_ms();

    // Pre-serialized variant: a pool of JSON metric arrays built once; a request is
    // `{"run_id":"..","metrics":` + chunk + `}` (a memcpy). A client that has sent the whole
    // pool moves to a fresh run, so every point the server receives is distinct.
    let pool: Arc<Vec<Bytes>> = Arc::new(if o.preserialized {
        let mut rng = Rng::new(7);
        (0..o.pool_requests)
            .map(|j| {
                let m = metrics_for(&keys, j as i64 * steps_per_req, o.metrics_per_req, ts0, &mut rng);
                Bytes::from(serde_json::to_vec(&m).expect("serialize"))
            })
            .collect()
    } else {
        Vec::new()
    });

    struct W {
        api: Api,
        exp: String,
        run_id: String,
        next: i64,
        rng: Rng,
        runs_created: u64,
    }
    let mut states = Vec::new();
    for w in 0..o.concurrency {
        let (run_id, _) = c.api.create_run(&exp, &format!("ingest-{w}"), &[]).await?;
        states.push(W { api: c.api.clone(), exp: exp.clone(), run_id, next: 0, rng: Rng::new(w as u64 + 1), runs_created: 1 });
    }
    let ctl = Ctl::new(c.warmup, c.duration, c.max_requests, c.server_pid);
    let mpr = o.metrics_per_req;
    let pre = o.preserialized;
    let runs_total = Arc::new(AtomicU64::new(o.concurrency as u64));
    let rt = runs_total.clone();
    let mut v = run_loop(c, ctl, states, move |mut w: W, _phase| {
        let keys = keys.clone();
        let pool = pool.clone();
        let rt = rt.clone();
        async move {
            let r = async {
                let body = if pre {
                    if w.next as usize >= pool.len() {
                        let (id, _) = w.api.create_run(&w.exp, &format!("ingest-more-{}", w.runs_created), &[]).await?;
                        w.run_id = id;
                        w.next = 0;
                        w.runs_created += 1;
                        rt.fetch_add(1, Ordering::Relaxed);
                    }
                    let chunk = &pool[w.next as usize];
                    let mut b = Vec::with_capacity(chunk.len() + 64);
                    b.extend_from_slice(b"{\"run_id\":\"");
                    b.extend_from_slice(w.run_id.as_bytes());
                    b.extend_from_slice(b"\",\"metrics\":");
                    b.extend_from_slice(chunk);
                    b.push(b'}');
                    Bytes::from(b)
                } else {
                    let m = metrics_for(&keys, w.next * steps_per_req, mpr, ts0, &mut w.rng);
                    Bytes::from(serde_json::to_vec(&LogBatch { run_id: &w.run_id, metrics: m })?)
                };
                w.next += 1;
                let n = body.len() as u64;
                w.api.post_raw("/api/2.0/mlflow/runs/log-batch", body).await?;
                Ok((mpr as u64, n))
            }
            .await;
            (w, r)
        }
    })
    .await?;
    let o2 = v.as_object_mut().unwrap();
    let pps = o2["items_per_s"].clone();
    o2.insert("points_per_s".into(), pps);
    o2.insert("concurrency".into(), json!(o.concurrency));
    o2.insert("metrics_per_req".into(), json!(o.metrics_per_req));
    o2.insert("keys".into(), json!(o.keys));
    o2.insert("preserialized".into(), json!(o.preserialized));
    o2.insert("runs_used".into(), json!(runs_total.load(Ordering::Relaxed)));
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// 2. single log-metric

pub async fn log_metric(c: &Common, concurrency: usize) -> Result<Value> {
    let exp = c.api.create_experiment(&format!("bench-log-metric-{}", c.tag)).await?;
    struct W {
        api: Api,
        run_id: String,
        step: i64,
        rng: Rng,
    }
    let mut states = Vec::new();
    for w in 0..concurrency {
        let (run_id, _) = c.api.create_run(&exp, &format!("log-metric-{w}"), &[]).await?;
        states.push(W { api: c.api.clone(), run_id, step: 0, rng: Rng::new(100 + w as u64) });
    }
    let ctl = Ctl::new(c.warmup, c.duration, c.max_requests, c.server_pid);
    let ts0 = now_ms();
    let mut v = run_loop(c, ctl, states, move |mut w: W, _| async move {
        let body = json!({"run_id": w.run_id, "key": "loss", "value": w.rng.f64(), "timestamp": ts0 + w.step, "step": w.step});
        w.step += 1;
        let r = w.api.post("/api/2.0/mlflow/runs/log-metric", &body).await.map(|_| (1u64, 0u64));
        (w, r)
    })
    .await?;
    v.as_object_mut().unwrap().insert("concurrency".into(), json!(concurrency));
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// 3. search-runs

const MODELS: [&str; 4] = ["xgb", "lgbm", "rf", "mlp"];

pub struct SearchOpts {
    pub runs: usize,
    pub populate_concurrency: usize,
    pub iterations: usize,
    pub max_seconds: f64,
    pub filter: String,
    pub order_by: String,
    pub max_results: usize,
}

/// Deterministic content of run `i` (so the expected search answer is known).
fn run_acc(i: usize) -> f64 {
    Rng::new(10_000 + i as u64).f64()
}

pub async fn search(c: &Common, o: &SearchOpts) -> Result<Value> {
    let exp = c.api.create_experiment(&format!("bench-search-{}-{}", o.runs, c.tag)).await?;
    // populate
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_err = Arc::new(std::sync::Mutex::new(None::<String>));
    let pb = Progress::new(o.runs as u64, &format!("populating {} runs", o.runs));
    let mut hs = Vec::new();
    for _ in 0..o.populate_concurrency.max(1) {
        let (api, exp, next, errors, first_err, pb) =
            (c.api.clone(), exp.clone(), next.clone(), errors.clone(), first_err.clone(), pb.clone());
        let runs = o.runs as u64;
        hs.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= runs {
                    break;
                }
                let r = populate_one(&api, &exp, i as usize).await;
                if let Err(e) = r {
                    let n = errors.fetch_add(1, Ordering::Relaxed);
                    first_err.lock().unwrap().get_or_insert_with(|| format!("{e:#}"));
                    if n > 20 && n * 20 > i {
                        break; // > 5% failing: give up
                    }
                }
                pb.inc(1);
            }
        }));
    }
    for h in hs {
        h.await?;
    }
    pb.finish();
    let populate_s = t0.elapsed().as_secs_f64();
    let perr = errors.load(Ordering::Relaxed);
    if perr * 100 > o.runs as u64 {
        bail!("populating failed for {perr} runs: {}", first_err.lock().unwrap().clone().unwrap_or_default());
    }
    eprintln!("populated {} runs in {:.1} s ({:.0} runs/s)", o.runs, populate_s, o.runs as f64 / populate_s);

    // expected answer for the default filter
    let expected: Vec<usize> = (0..o.runs).filter(|&i| MODELS[i % 4] == "xgb" && run_acc(i) > 0.5).collect();
    let default_query = o.filter == DEFAULT_FILTER && o.order_by == DEFAULT_ORDER;

    let body = json!({
        "experiment_ids": [exp],
        "filter": o.filter,
        "order_by": [o.order_by],
        "max_results": o.max_results,
        "run_view_type": "ACTIVE_ONLY",
    });
    let body = Bytes::from(serde_json::to_vec(&body)?);
    // warm-up + correctness check
    let first = crate::api::parse_body(&c.api.post_raw("/api/2.0/mlflow/runs/search", body.clone()).await?, "runs/search")?;
    let check = check_search(&first, &expected, o.max_results, default_query, perr);
    let _ = c.api.post_raw("/api/2.0/mlflow/runs/search", body.clone()).await?;

    let cpu0 = crate::procfs::CpuSnap::take(c.server_pid);
    let mut h = new_hist();
    let start = Instant::now();
    let mut n = 0usize;
    let mut errs = 0u64;
    let mut first_error = None;
    let mut resp_bytes = 0usize;
    while n < o.iterations && start.elapsed().as_secs_f64() < o.max_seconds {
        let t = Instant::now();
        match c.api.post_raw("/api/2.0/mlflow/runs/search", body.clone()).await {
            Ok(b) => {
                h.record((t.elapsed().as_micros() as u64).max(1)).ok();
                resp_bytes = b.len();
            }
            Err(e) => {
                errs += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        n += 1;
    }
    let mut v = hist_json(&h);
    let m = v.as_object_mut().unwrap();
    m.insert("runs".into(), json!(o.runs));
    m.insert("populate_s".into(), json!(populate_s));
    m.insert("populate_runs_per_s".into(), json!(o.runs as f64 / populate_s));
    m.insert("populate_errors".into(), json!(perr));
    m.insert("iterations".into(), json!(n));
    m.insert("errors".into(), json!(errs));
    if let Some(e) = first_error {
        m.insert("first_error".into(), json!(e));
    }
    m.insert("filter".into(), json!(o.filter));
    m.insert("order_by".into(), json!(o.order_by));
    m.insert("max_results".into(), json!(o.max_results));
    m.insert("response_bytes".into(), json!(resp_bytes));
    m.insert("matching_runs".into(), json!(expected.len()));
    m.insert("check".into(), json!(check));
    m.insert("cpu".into(), cpu_json(Some(cpu0), c.server_pid, c.threads));
    Ok(v)
}

pub const DEFAULT_FILTER: &str = "metrics.acc > 0.5 and params.model = 'xgb'";
pub const DEFAULT_ORDER: &str = "metrics.acc DESC";

async fn populate_one(api: &Api, exp: &str, i: usize) -> Result<()> {
    let (run_id, _) = api
        .create_run(exp, &format!("run-{i:06}"), &[("team", ["vision", "nlp", "tabular"][i % 3])])
        .await?;
    let acc = run_acc(i);
    let mut rng = Rng::new(20_000 + i as u64);
    let ts = now_ms();
    let stage = ["dev", "staging", "prod"][i % 3];
    let body = json!({
        "run_id": run_id,
        "params": [
            {"key": "model", "value": MODELS[i % 4]},
            {"key": "lr", "value": format!("{:.4}", 0.0001 + rng.f64() * 0.1)},
            {"key": "depth", "value": (2 + i % 10).to_string()},
            {"key": "seed", "value": i.to_string()},
        ],
        "tags": [
            {"key": "stage", "value": stage},
            {"key": "owner", "value": format!("user{}", i % 17)},
        ],
        "metrics": [
            {"key": "acc", "value": acc, "timestamp": ts, "step": 0},
            {"key": "loss", "value": 1.0 - acc + rng.f64() * 0.1, "timestamp": ts, "step": 0},
            {"key": "f1", "value": rng.f64(), "timestamp": ts, "step": 0},
        ],
    });
    api.post("/api/2.0/mlflow/runs/log-batch", &body).await?;
    Ok(())
}

fn check_search(resp: &Value, expected: &[usize], max_results: usize, default_query: bool, populate_errors: u64) -> String {
    let runs = resp["runs"].as_array().cloned().unwrap_or_default();
    if !default_query {
        return format!("custom query: {} runs returned (not verified)", runs.len());
    }
    let want = expected.len().min(max_results);
    let mut problems = Vec::new();
    if populate_errors == 0 && runs.len() != want {
        problems.push(format!("{} runs returned, expected {want}", runs.len()));
    }
    let mut prev = f64::INFINITY;
    for r in &runs {
        let data = &r["data"];
        let acc = data["metrics"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["key"] == "acc"))
            .and_then(|m| m["value"].as_f64());
        let model = data["params"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["key"] == "model"))
            .and_then(|p| p["value"].as_str());
        match (acc, model) {
            (Some(a), Some("xgb")) if a > 0.5 => {
                if a > prev + 1e-12 {
                    problems.push("not ordered by metrics.acc DESC".into());
                    break;
                }
                prev = a;
            }
            _ => {
                problems.push(format!("run not matching the filter: acc={acc:?} model={model:?}"));
                break;
            }
        }
    }
    if problems.is_empty() { "ok".into() } else { problems.join("; ") }
}

// ---------------------------------------------------------------------------------------------
// 4. metric history

pub struct HistoryOpts {
    pub steps: usize,
    pub page_size: usize,
    pub reps: usize,
    pub log_concurrency: usize,
}

pub async fn history(c: &Common, o: &HistoryOpts) -> Result<Value> {
    let exp = c.api.create_experiment(&format!("bench-history-{}", c.tag)).await?;
    let (run_id, _) = c.api.create_run(&exp, "history", &[]).await?;
    let ts0 = now_ms();
    let t0 = Instant::now();
    let batches = o.steps.div_ceil(1000);
    let pb = Progress::new(o.steps as u64, &format!("logging {} steps of one metric", o.steps));
    let next = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for _ in 0..o.log_concurrency.max(1) {
        let (api, run_id, next, pb) = (c.api.clone(), run_id.clone(), next.clone(), pb.clone());
        let steps = o.steps;
        hs.push(tokio::spawn(async move {
            let mut rng = Rng::new(5);
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed) as usize;
                if b >= batches {
                    return Ok::<(), anyhow::Error>(());
                }
                let lo = b * 1000;
                let n = (steps - lo).min(1000);
                let m = metrics_for(&["loss"], lo as i64, n, ts0, &mut rng);
                let body = serde_json::to_vec(&LogBatch { run_id: &run_id, metrics: m })?;
                api.post_raw("/api/2.0/mlflow/runs/log-batch", Bytes::from(body)).await?;
                pb.inc(n as u64);
            }
        }));
    }
    for h in hs {
        h.await??;
    }
    pb.finish();
    let log_s = t0.elapsed().as_secs_f64();
    eprintln!("logged {} points in {:.1} s ({:.0} points/s)", o.steps, log_s, o.steps as f64 / log_s);

    let fetch_all = |page: usize| {
        let api = c.api.clone();
        let run_id = run_id.clone();
        async move {
            let mut token: Option<String> = None;
            let mut points = 0usize;
            let mut pages = 0usize;
            let mut bytes = 0usize;
            let page_s = page.to_string();
            loop {
                let mut q: Vec<(&str, &str)> = vec![("run_id", &run_id), ("metric_key", "loss"), ("max_results", &page_s)];
                if let Some(t) = &token {
                    q.push(("page_token", t));
                }
                let b = api.get_raw("/api/2.0/mlflow/metrics/get-history", &q).await?;
                bytes += b.len();
                // Parsed into a typed page, as a client library would: building a generic JSON
                // tree of 100k objects made the load generator, not the server, the bottleneck.
                #[derive(serde::Deserialize)]
                struct HistoryPage {
                    #[serde(default)]
                    metrics: Vec<HistoryPoint>,
                    next_page_token: Option<String>,
                }
                #[derive(serde::Deserialize)]
                #[allow(dead_code)]
                struct HistoryPoint {
                    key: String,
                    value: serde_json::Value,
                    timestamp: i64,
                    step: i64,
                }
                let v: HistoryPage = serde_json::from_slice(&b)
                    .map_err(|e| anyhow::anyhow!("get-history: unparsable answer: {e}"))?;
                points += v.metrics.len();
                pages += 1;
                match v.next_page_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
                if pages > 10_000 {
                    bail!("more than 10000 pages: the server keeps returning next_page_token");
                }
            }
            Ok::<_, anyhow::Error>((points, pages, bytes))
        }
    };

    let mut out = serde_json::Map::new();
    out.insert("steps".into(), json!(o.steps));
    out.insert("log_s".into(), json!(log_s));
    out.insert("log_points_per_s".into(), json!(o.steps as f64 / log_s));
    for (name, page) in [("paged", o.page_size), ("single", o.steps.max(1))] {
        let mut h = new_hist();
        let mut info = json!({});
        let mut err = None;
        let cpu0 = crate::procfs::CpuSnap::take(c.server_pid);
        // one warm-up fetch, then `reps` timed ones
        for rep in 0..=o.reps {
            let t = Instant::now();
            match fetch_all(page).await {
                Ok((points, pages, bytes)) => {
                    if rep > 0 {
                        h.record((t.elapsed().as_micros() as u64).max(1)).ok();
                    }
                    let check = if points == o.steps { "ok".to_string() } else { format!("got {points} points, expected {}", o.steps) };
                    info = json!({"points": points, "pages": pages, "response_bytes": bytes, "check": check, "max_results": page});
                }
                Err(e) => {
                    err = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        let mut v = hist_json(&h);
        let m = v.as_object_mut().unwrap();
        for (k, val) in info.as_object().unwrap() {
            m.insert(k.clone(), val.clone());
        }
        m.insert("cpu".into(), cpu_json(Some(cpu0), c.server_pid, c.threads));
        if let Some(e) = err {
            m.insert("error".into(), json!(e));
        }
        out.insert(name.into(), v);
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// 5. registry get-by-alias

pub async fn alias(c: &Common, concurrencies: &[usize]) -> Result<Value> {
    let exp = c.api.create_experiment(&format!("bench-registry-{}", c.tag)).await?;
    let (run_id, artifact_uri) = c.api.create_run(&exp, "model-run", &[]).await?;
    let name = format!("bench-model-{}", c.tag);
    c.api.post("/api/2.0/mlflow/registered-models/create", &json!({"name": name})).await?;
    let source = if artifact_uri.is_empty() { format!("mlflow-artifacts:/{exp}/{run_id}/artifacts/model") } else { format!("{artifact_uri}/model") };
    let mv = c
        .api
        .post("/api/2.0/mlflow/model-versions/create", &json!({"name": name, "source": source, "run_id": run_id}))
        .await?;
    let version = mv["model_version"]["version"]
        .as_str()
        .map(String::from)
        .or_else(|| mv["model_version"]["version"].as_i64().map(|v| v.to_string()))
        .ok_or_else(|| anyhow!("model-versions/create: no version in {mv}"))?;
    c.api
        .post("/api/2.0/mlflow/registered-models/alias", &json!({"name": name, "alias": "champion", "version": version}))
        .await?;
    // correctness
    let got = c.api.get("/api/2.0/mlflow/registered-models/alias", &[("name", &name), ("alias", "champion")]).await?;
    let check = if got["model_version"]["version"].as_str() == Some(&version) || got["model_version"]["version"].as_i64().map(|v| v.to_string()) == Some(version.clone()) {
        "ok".to_string()
    } else {
        format!("unexpected answer: {}", got.to_string().chars().take(300).collect::<String>())
    };
    let mut out = serde_json::Map::new();
    for &conc in concurrencies {
        let ctl = Ctl::new(c.warmup, c.duration, c.max_requests, c.server_pid);
        let states: Vec<(Api, String)> = (0..conc).map(|_| (c.api.clone(), name.clone())).collect();
        let mut v = run_loop(c, ctl, states, |(api, name): (Api, String), _| async move {
            let r = api
                .get_raw("/api/2.0/mlflow/registered-models/alias", &[("name", &name), ("alias", "champion")])
                .await
                .map(|b| (1u64, b.len() as u64));
            ((api, name), r)
        })
        .await?;
        let m = v.as_object_mut().unwrap();
        m.insert("concurrency".into(), json!(conc));
        m.insert("check".into(), json!(check));
        out.insert(format!("c{conc}"), v);
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// 6. artifact upload / download

pub async fn artifact(c: &Common, size_mib: usize, reps: usize) -> Result<Value> {
    let exp = c.api.create_experiment(&format!("bench-artifact-{}", c.tag)).await?;
    let (run_id, artifact_uri) = c.api.create_run(&exp, "artifact-run", &[]).await?;
    let rel = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .map(|p| p.trim_start_matches('/').to_string())
        .unwrap_or_else(|| format!("{exp}/{run_id}/artifacts"));
    let path = format!("/api/2.0/mlflow-artifacts/artifacts/{rel}/blob.bin");
    let size = size_mib * 1024 * 1024;
    let mut rng = Rng::new(42);
    let mut data = vec![0u8; size];
    for ch in data.chunks_mut(8) {
        let x = rng.next_u64().to_le_bytes();
        ch.copy_from_slice(&x[..ch.len()]);
    }
    let data = Bytes::from(data);
    let digest = fnv(&data);

    let mut put_h = new_hist();
    let mut get_h = new_hist();
    let mut check = "ok".to_string();
    let cpu0 = crate::procfs::CpuSnap::take(c.server_pid);
    let (mut put_total, mut get_total) = (0.0f64, 0.0f64);
    for rep in 0..=reps {
        let t = Instant::now();
        let resp = c
            .api
            .client
            .put(c.api.url(&path))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .context("PUT artifact")?;
        let st = resp.status();
        let body = resp.bytes().await?;
        if !st.is_success() {
            bail!("PUT {path}: HTTP {st}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        }
        let el = t.elapsed();
        if rep > 0 {
            put_h.record(el.as_micros() as u64).ok();
            put_total += el.as_secs_f64();
        }
        let t = Instant::now();
        let b = c.api.get_raw(&path, &[]).await.context("GET artifact")?;
        let el = t.elapsed();
        if rep > 0 {
            get_h.record(el.as_micros() as u64).ok();
            get_total += el.as_secs_f64();
        }
        if b.len() != size || fnv(&b) != digest {
            check = format!("downloaded {} bytes that differ from the {} uploaded", b.len(), size);
        }
    }
    let mib = size as f64 / (1024.0 * 1024.0);
    let mut put = hist_json(&put_h);
    let mut get = hist_json(&get_h);
    put["mib_per_s"] = json!(mib * reps as f64 / put_total.max(1e-9));
    get["mib_per_s"] = json!(mib * reps as f64 / get_total.max(1e-9));
    Ok(json!({
        "size_mib": size_mib,
        "reps": reps,
        "put": put,
        "get": get,
        "check": check,
        "cpu": cpu_json(Some(cpu0), c.server_pid, c.threads),
    }))
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
