//! Progress display: an indicatif bar on a terminal, a plain line every few seconds otherwise
//! (run.sh pipes output through `tee`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress(Arc<Inner>);

struct Inner {
    bar: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
    label: String,
    start: Instant,
    last_print: Mutex<Instant>,
}

impl Progress {
    pub fn new(total: u64, label: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(label.to_string());
            Some(b)
        } else {
            eprintln!("{label}: 0/{total}");
            None
        };
        Progress(Arc::new(Inner {
            bar,
            total,
            done: AtomicU64::new(0),
            label: label.to_string(),
            start: Instant::now(),
            last_print: Mutex::new(Instant::now()),
        }))
    }

    pub fn inc(&self, n: u64) {
        let d = self.0.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.0.bar {
            b.inc(n);
            return;
        }
        let mut lp = self.0.last_print.lock().unwrap();
        if lp.elapsed().as_secs_f64() >= 5.0 {
            *lp = Instant::now();
            let el = self.0.start.elapsed().as_secs_f64();
            let rate = d as f64 / el.max(1e-9);
            let eta = (self.0.total.saturating_sub(d)) as f64 / rate.max(1e-9);
            eprintln!("{}: {d}/{} ({:.0}/s, {:.0} s elapsed, eta {:.0} s)", self.0.label, self.0.total, rate, el, eta);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0.bar {
            b.finish();
        }
    }
}
