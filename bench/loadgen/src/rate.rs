//! Open-loop load at a fixed rate (what wrk2 does, which Debian does not package): request `i`
//! is due at `start + i / rate` whether or not earlier ones were answered, and its latency is
//! counted from that due time, so a server (or a generator) that falls behind shows it as
//! latency instead of quietly sending less (no coordinated omission).
//!
//! Every answer is classified: 2xx (admitted), 503 with `Retry-After` (shed), 503 without it,
//! other 5xx, other statuses, and transport errors (refused, reset, timed out). Optionally the
//! measured window is cut into intervals (percentiles per minute for a soak) and the server's
//! RSS is sampled every few seconds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

use crate::procfs::{self, CpuSnap};
use crate::stats::{cpu_json, hist_json, new_hist};

pub struct RateOpts {
    /// Full URL of the endpoint (loopback).
    pub url: String,
    pub body: Bytes,
    /// Requests per second, offered.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests outstanding at once (connections); a due request waits for one, and the wait
    /// counts in its latency.
    pub max_outstanding: usize,
    /// Per-request timeout (counted as a transport error).
    pub timeout: Duration,
    /// Length of the reported intervals inside the measured window (zero: none).
    pub interval: Duration,
    /// Sample the server's RSS this often (zero or no pid: never).
    pub rss_every: Duration,
    pub server_pid: Option<u32>,
    pub max_requests: u64,
    pub threads: usize,
}

/// What one stretch of time saw.
struct Tally {
    admitted: Histogram<u64>,
    shed: Histogram<u64>,
    ok: u64,
    shed_with_retry_after: u64,
    unavailable_without_retry_after: u64,
    other_5xx: u64,
    other_status: u64,
    transport_errors: u64,
    first_problem: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            admitted: new_hist(),
            shed: new_hist(),
            ok: 0,
            shed_with_retry_after: 0,
            unavailable_without_retry_after: 0,
            other_5xx: 0,
            other_status: 0,
            transport_errors: 0,
            first_problem: None,
        }
    }

    fn add(&mut self, outcome: &Outcome, latency_us: u64) {
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                let _ = self.admitted.record(latency_us.max(1));
            }
            Outcome::Shed => {
                self.shed_with_retry_after += 1;
                let _ = self.shed.record(latency_us.max(1));
            }
            Outcome::UnavailableNoRetryAfter => self.unavailable_without_retry_after += 1,
            Outcome::Other5xx(_) => self.other_5xx += 1,
            Outcome::OtherStatus(_) => self.other_status += 1,
            Outcome::Transport(_) => self.transport_errors += 1,
        }
        if self.first_problem.is_none() {
            self.first_problem = match outcome {
                Outcome::Other5xx(what) | Outcome::OtherStatus(what) | Outcome::Transport(what) => {
                    Some(what.clone())
                }
                Outcome::UnavailableNoRetryAfter => Some("503 without Retry-After".into()),
                _ => None,
            };
        }
    }

    fn answered(&self) -> u64 {
        self.ok
            + self.shed_with_retry_after
            + self.unavailable_without_retry_after
            + self.other_5xx
            + self.other_status
            + self.transport_errors
    }

    fn json(&self, wall_s: f64) -> Value {
        let total = self.answered();
        let share = |n: u64| if total == 0 { 0.0 } else { n as f64 / total as f64 };
        json!({
            "requests": total,
            "ok": self.ok,
            "ok_per_s": self.ok as f64 / wall_s.max(1e-9),
            "shed_503_retry_after": self.shed_with_retry_after,
            "shed_share": share(self.shed_with_retry_after),
            "unavailable_503_without_retry_after": self.unavailable_without_retry_after,
            "other_5xx": self.other_5xx,
            "other_status": self.other_status,
            "transport_errors": self.transport_errors,
            "first_problem": self.first_problem,
            "admitted_latency": hist_json(&self.admitted),
            "shed_latency": hist_json(&self.shed),
        })
    }
}

enum Outcome {
    Ok,
    Shed,
    UnavailableNoRetryAfter,
    Other5xx(String),
    OtherStatus(String),
    Transport(String),
}

struct Shared {
    whole: Tally,
    intervals: Vec<Tally>,
}

async fn send(client: &reqwest::Client, url: &str, body: Bytes) -> Outcome {
    let response = match client.post(url).header(CONTENT_TYPE, "application/json").body(body).send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Transport(format!("{e:#}")),
    };
    let status = response.status();
    let retry_after = response.headers().contains_key(RETRY_AFTER);
    let text = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return Outcome::Transport(format!("reading the answer: {e:#}")),
    };
    let what = || format!("HTTP {status}: {}", String::from_utf8_lossy(&text[..text.len().min(200)]));
    match status.as_u16() {
        200..=299 => Outcome::Ok,
        503 if retry_after => Outcome::Shed,
        503 => Outcome::UnavailableNoRetryAfter,
        500..=599 => Outcome::Other5xx(what()),
        _ => Outcome::OtherStatus(what()),
    }
}

pub async fn rate(o: RateOpts) -> Result<Value> {
    if !o.rate.is_finite() || o.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    crate::api::check_loopback(&o.url)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(o.max_outstanding)
        .timeout(o.timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let intervals = if o.interval.is_zero() { 0 } else { (o.duration.as_secs_f64() / o.interval.as_secs_f64()).ceil() as usize };
    let shared = Arc::new(Mutex::new(Shared {
        whole: Tally::new(),
        intervals: (0..intervals).map(|_| Tally::new()).collect(),
    }));
    let slots = Arc::new(tokio::sync::Semaphore::new(o.max_outstanding.max(1)));
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let total_due = ((o.warmup + o.duration).as_secs_f64() * o.rate).floor() as u64;
    let cap = if o.max_requests == 0 { u64::MAX } else { o.max_requests };

    // RSS samples of the server's process tree, every rss_every, until the window ends.
    let start = Instant::now();
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    let sampler = match (o.server_pid, o.rss_every.is_zero()) {
        (Some(pid), false) => {
            let every = o.rss_every;
            Some(tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut at = measure_from;
                while at <= end {
                    tokio::time::sleep_until(at.into()).await;
                    let memory = procfs::tree_mem(pid);
                    if memory.processes == 0 {
                        break;
                    }
                    let sockets = procfs::sockets(pid);
                    samples.push(json!({"t_s": at.duration_since(measure_from).as_secs_f64(), "rss_mib": memory.rss_mib, "sockets": sockets}));
                    at += every;
                }
                samples
            }))
        }
        _ => None,
    };

    // The CPU of each reported interval (the replica's, the rest of the machine's, and what
    // the hypervisor took), so a slow minute can be told apart from a busy neighbour.
    let interval_cpu = if o.interval.is_zero() {
        None
    } else {
        let (every, pid, threads, until) = (o.interval, o.server_pid, o.threads, measure_from + o.duration);
        Some(tokio::spawn(async move {
            let mut windows = Vec::new();
            tokio::time::sleep_until(measure_from.into()).await;
            let mut at = measure_from;
            while at < until {
                let snap = CpuSnap::take(pid);
                at += every;
                tokio::time::sleep_until(at.min(until).into()).await;
                windows.push(cpu_json(Some(snap), pid, threads));
            }
            windows
        }))
    };

    let mut lag = new_hist(); // how late the generator sent, µs
    let mut cpu_start: Option<CpuSnap> = None;
    let mut measured_sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total_due {
        let due = start + period.mul_f64(i as f64);
        let measuring = due >= measure_from;
        if measuring && cpu_start.is_none() {
            cpu_start = Some(CpuSnap::take(o.server_pid));
        }
        if measuring {
            if measured_sent >= cap {
                break;
            }
            measured_sent += 1;
        }
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await?;
        let late = Instant::now().saturating_duration_since(due);
        if measuring {
            let _ = lag.record((late.as_micros() as u64).max(1));
        }
        let client = client.clone();
        let url = o.url.clone();
        let body = o.body.clone();
        let shared = shared.clone();
        let interval = o.interval;
        tasks.spawn(async move {
            let outcome = send(&client, &url, body).await;
            drop(permit);
            if !measuring {
                return;
            }
            let latency_us = due.elapsed().as_micros() as u64;
            let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.whole.add(&outcome, latency_us);
            if !interval.is_zero() {
                let index = (due.duration_since(measure_from).as_secs_f64() / interval.as_secs_f64()) as usize;
                if let Some(tally) = shared.intervals.get_mut(index) {
                    tally.add(&outcome, latency_us);
                }
            }
        });
        // Reap finished tasks now and then, so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    let sent_until = Instant::now();
    while tasks.join_next().await.is_some() {}
    let cpu = cpu_json(cpu_start, o.server_pid, o.threads);
    let rss = match sampler {
        Some(sampler) => sampler.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let wall_s = sent_until.saturating_duration_since(measure_from).as_secs_f64();
    let shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    let mut result = shared.whole.json(wall_s);
    let object = result.as_object_mut().expect("an object");
    object.insert("offered_per_s".into(), json!(o.rate));
    object.insert("sent".into(), json!(measured_sent));
    object.insert("sent_per_s".into(), json!(measured_sent as f64 / wall_s.max(1e-9)));
    object.insert("wall_s".into(), json!(wall_s));
    object.insert("max_outstanding".into(), json!(o.max_outstanding));
    object.insert(
        "send_lag".into(),
        json!({"p99_ms": lag.value_at_quantile(0.99) as f64 / 1000.0, "max_ms": lag.max() as f64 / 1000.0}),
    );
    object.insert("cpu".into(), cpu);
    let interval_cpu = match interval_cpu {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if !shared.intervals.is_empty() {
        let seconds = o.interval.as_secs_f64();
        let per: Vec<Value> = shared
            .intervals
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut v = t.json(seconds);
                v["from_s"] = json!(i as f64 * seconds);
                if let Some(cpu) = interval_cpu.get(i) {
                    v["cpu"] = cpu.clone();
                }
                v
            })
            .collect();
        object.insert("intervals".into(), json!(per));
    }
    if !rss.is_empty() {
        object.insert("rss".into(), json!(rss));
    }
    Ok(result)
}

/// One line per figure for a human.
pub fn print(result: &Value) {
    let l = &result["admitted_latency"];
    println!(
        "rate: offered {:.0}/s, sent {:.0}/s, admitted {:.0}/s; p50 {} ms, p99 {} ms, max {} ms (admitted); \
         shed 503+Retry-After {} ({:.1}%), 503 without Retry-After {}, other 5xx {}, other status {}, transport errors {}; \
         send lag p99 {} ms",
        result["offered_per_s"].as_f64().unwrap_or(0.0),
        result["sent_per_s"].as_f64().unwrap_or(0.0),
        result["ok_per_s"].as_f64().unwrap_or(0.0),
        l["p50_ms"],
        l["p99_ms"],
        l["max_ms"],
        result["shed_503_retry_after"],
        result["shed_share"].as_f64().unwrap_or(0.0) * 100.0,
        result["unavailable_503_without_retry_after"],
        result["other_5xx"],
        result["other_status"],
        result["transport_errors"],
        result["send_lag"]["p99_ms"],
    );
    if let Some(problem) = result["first_problem"].as_str() {
        println!("  first problem: {problem}");
    }
    if let Some(note) = result["cpu"]["bottleneck_note"].as_str() {
        println!("  {note}");
    }
}
