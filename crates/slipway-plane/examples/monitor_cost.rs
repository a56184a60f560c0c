//! What drift monitoring costs the serving path: the time `LiveMonitor::pick` and `record`
//! take per row per feature (and `take`, which profiles the sample), with a summary taken every 2,000 requests (two
//! seconds at 1,000 requests per second, as the plane's flush does), for single-row and
//! 256-row requests of 30 numerical features (the breast-cancer fixture's shape) and of 20
//! features with 4 categorical ones.
//!
//!     cargo run --release -p slipway-plane --example monitor_cost [-- REQUESTS]
//!
//! Prints one line per case; `bench/monitor/run.sh` records them in BENCHMARKS.md.

use std::sync::Arc;
use std::time::Instant;

use slipway_monitor::ColumnType;
use slipway_monitor::live::{Feature, Schema};
use slipway_plane::plane::monitor::LiveMonitor;
use slipway_serving::{Output, OutputValue};

fn schema(features: usize, categorical: usize) -> Schema {
    Schema {
        features: (0..features)
            .map(|i| Feature {
                name: format!("f{i}"),
                column_type: if i < categorical {
                    ColumnType::Categorical
                } else {
                    ColumnType::Numerical
                },
            })
            .collect(),
        prediction: Some(Feature {
            name: "prediction".into(),
            column_type: ColumnType::Categorical,
        }),
    }
}

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mut rng = fastrand::Rng::with_seed(1);
    for (features, categorical) in [(30, 0), (20, 4)] {
        for rows_per_request in [1usize, 256] {
            let schema = Arc::new(schema(features, categorical));
            let monitor = LiveMonitor::new("bench", "1", schema);
            // A pool of distinct requests, so the profile sees varied values.
            let pool: Vec<(Vec<Vec<f32>>, Vec<Output>)> = (0..64)
                .map(|_| {
                    let rows: Vec<Vec<f32>> = (0..rows_per_request)
                        .map(|_| {
                            (0..features)
                                .map(|i| {
                                    if i < categorical {
                                        rng.u8(0..6) as f32
                                    } else {
                                        rng.f32() * 100.0
                                    }
                                })
                                .collect()
                        })
                        .collect();
                    let outputs = vec![Output {
                        name: "label".into(),
                        value: OutputValue::I64 {
                            shape: vec![rows_per_request as i64],
                            data: (0..rows_per_request).map(|_| rng.i64(0..2)).collect(),
                        },
                    }];
                    (rows, outputs)
                })
                .collect();
            let n = (requests / rows_per_request).max(2_000);
            let started = Instant::now();
            let mut summaries = 0usize;
            for i in 0..n {
                let (rows, outputs) = &pool[i % pool.len()];
                let picks = monitor.pick(rows);
                monitor.record(picks, outputs);
                if i % 2_000 == 1_999 {
                    summaries += usize::from(monitor.take().is_some());
                }
            }
            let elapsed = started.elapsed();
            let cells = (n * rows_per_request * features) as f64;
            println!(
                "features={features} categorical={categorical} rows_per_request={rows_per_request} requests={n} summaries={summaries}: {:.1} ns per row per feature, {:.2} us per request",
                elapsed.as_nanos() as f64 / cells,
                elapsed.as_nanos() as f64 / n as f64 / 1_000.0
            );
        }
    }
}
