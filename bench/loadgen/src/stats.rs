//! Latency recording, bounded closed-loop control and CPU attribution.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::procfs::{CpuSnap, ncpu};

pub fn new_hist() -> Histogram<u64> {
    // microseconds, 1 us .. 10 min, 3 significant digits
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn hist_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "mean_ms": h.mean() / 1000.0,
        "min_ms": ms(h.min()),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Warmup,
    Measure,
    Done,
}

/// Shared control of a closed loop: a warm-up, then a measured window bounded by time
/// and (optionally) by a request count. Every loop ends by itself.
pub struct Ctl {
    start: Instant,
    warmup: Duration,
    duration: Duration,
    max_requests: u64,
    issued: AtomicU64,
    stop: AtomicBool,
    server_pid: Option<u32>,
    measure_snap: OnceLock<CpuSnap>,
}

impl Ctl {
    pub fn new(warmup: Duration, duration: Duration, max_requests: u64, server_pid: Option<u32>) -> Arc<Self> {
        Arc::new(Ctl {
            start: Instant::now(),
            warmup,
            duration,
            max_requests: if max_requests == 0 { u64::MAX } else { max_requests },
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            server_pid,
            measure_snap: OnceLock::new(),
        })
    }

    pub fn next(&self) -> Phase {
        if self.stop.load(Ordering::Relaxed) {
            return Phase::Done;
        }
        let el = self.start.elapsed();
        if el < self.warmup {
            return Phase::Warmup;
        }
        self.measure_snap.get_or_init(|| CpuSnap::take(self.server_pid));
        if el >= self.warmup + self.duration {
            return Phase::Done;
        }
        if self.issued.fetch_add(1, Ordering::Relaxed) >= self.max_requests {
            return Phase::Done;
        }
        Phase::Measure
    }

    pub fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn measure_start(&self) -> Option<CpuSnap> {
        self.measure_snap.get().copied()
    }
}

/// Per-worker recording, merged after the loop.
pub struct Rec {
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub items: u64,
    pub bytes: u64,
    pub first_error: Option<String>,
}

impl Default for Rec {
    fn default() -> Self {
        Self::new()
    }
}

impl Rec {
    pub fn new() -> Self {
        Rec { hist: new_hist(), ok: 0, errors: 0, items: 0, bytes: 0, first_error: None }
    }

    pub fn record(&mut self, phase: Phase, elapsed: Duration, result: &anyhow::Result<(u64, u64)>) {
        if phase != Phase::Measure {
            return;
        }
        match result {
            Ok((items, bytes)) => {
                self.ok += 1;
                self.items += items;
                self.bytes += bytes;
                let _ = self.hist.record((elapsed.as_micros() as u64).max(1));
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{e:#}"));
                }
            }
        }
    }

    pub fn merge(&mut self, o: Rec) {
        self.hist.add(&o.hist).ok();
        self.ok += o.ok;
        self.errors += o.errors;
        self.items += o.items;
        self.bytes += o.bytes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// CPU attribution over the measured window, and a verdict on whether the load generator
/// itself limited the measurement.
pub fn cpu_json(start: Option<CpuSnap>, server_pid: Option<u32>, threads: usize) -> Value {
    let Some(a) = start else { return json!({}) };
    let b = CpuSnap::take(server_pid);
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let n = ncpu() as f64;
    let me = (b.me - a.me) / wall;
    let server = (b.server - a.server) / wall;
    let busy = if b.total > a.total { (b.busy - a.busy) / (b.total - a.total) } else { f64::NAN };
    let steal = if b.total > a.total { (b.steal - a.steal) / (b.total - a.total) * n } else { f64::NAN };
    let other = if busy.is_finite() && server.is_finite() { (busy * n - me - server - steal.max(0.0)).max(0.0) } else { f64::NAN };
    let server_txt = if server.is_finite() { format!(", server {server:.2}") } else { String::new() };
    let other_txt = if other.is_finite() { format!(", other processes {other:.2}") } else { String::new() };
    let usage = format!("CPU cores used: load generator {me:.2}{server_txt}{other_txt}, stolen by the hypervisor {steal:.2}; machine {:.0}% busy of {n}", busy * 100.0);
    let (bottleneck, why) = if me >= 0.85 * threads as f64 {
        (true, format!("load generator saturated its {threads} runtime thread(s) ({usage})"))
    } else if busy >= 0.90 && me >= 0.25 * n {
        (true, format!("machine CPU-saturated and the load generator took a large share ({usage})"))
    } else if busy >= 0.90 {
        (false, format!("machine CPU-saturated, not by the load generator ({usage})"))
    } else {
        (false, format!("machine not saturated ({usage})"))
    };
    json!({
        "wall_s": wall,
        "loadgen_cpu_cores": me,
        "server_cpu_cores": if server.is_finite() { json!(server) } else { Value::Null },
        "machine_busy_frac": if busy.is_finite() { json!(busy) } else { Value::Null },
        // CPU used by everything else on the machine (other users, builds) during the window
        "other_cpu_cores": if other.is_finite() { json!(other) } else { Value::Null },
        // CPU time the hypervisor gave to other VMs while this one's CPUs wanted it
        "steal_cpu_cores": if steal.is_finite() { json!(steal) } else { Value::Null },
        "ncpu": n,
        "loadgen_threads": threads,
        "loadgen_bottleneck": bottleneck,
        "bottleneck_note": why,
    })
}

/// Standard summary of a closed-loop run.
pub fn loop_json(rec: &Rec, wall: f64, cpu: Value) -> Value {
    let mut v = hist_json(&rec.hist);
    let o = v.as_object_mut().unwrap();
    o.insert("ok".into(), json!(rec.ok));
    o.insert("errors".into(), json!(rec.errors));
    if let Some(e) = &rec.first_error {
        o.insert("first_error".into(), json!(e));
    }
    o.insert("wall_s".into(), json!(wall));
    o.insert("req_per_s".into(), json!(rec.ok as f64 / wall.max(1e-9)));
    o.insert("items".into(), json!(rec.items));
    o.insert("items_per_s".into(), json!(rec.items as f64 / wall.max(1e-9)));
    o.insert("cpu".into(), cpu);
    v
}
