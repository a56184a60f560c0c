//! How long a 1M x 1M numeric column takes (run: `cargo test --release -p slipway-monitor
//! --test monitor speed -- --ignored --nocapture`).

use std::time::Instant;

use slipway_monitor::{
    ColumnProfile, ColumnType, DriftOptions, Mode, ProfileConfig, ProfileKind, RawValue,
    compare_column,
};

#[test]
#[ignore = "a timing, not a check: run in release"]
fn one_million_by_one_million_numeric_column() {
    let mut rng = fastrand::Rng::with_seed(1);
    let n = 1_000_000;
    let start = Instant::now();
    let mut sides = Vec::new();
    for shift in [0.0, 0.01] {
        let mut p = ColumnProfile::new(ProfileKind::Numeric, ProfileConfig::default());
        for _ in 0..n {
            p.push(RawValue::Float(rng.f64() + shift));
        }
        sides.push(p);
    }
    let pushed = start.elapsed();
    sides.iter_mut().for_each(ColumnProfile::finish);
    let sorted = start.elapsed();
    for mode in [Mode::Auto, Mode::Evidently] {
        let t = Instant::now();
        let options = DriftOptions {
            mode,
            ..DriftOptions::default()
        };
        let drift = compare_column("x", ColumnType::Numerical, &sides[0], &sides[1], &options)
            .expect("compare");
        eprintln!(
            "{mode:?}: {} = {:?} in {:?}",
            drift.method,
            drift.score,
            t.elapsed()
        );
    }
    eprintln!(
        "push 2 x {n}: {pushed:?} ({:.1} ns/value); sort both: {:?}",
        pushed.as_nanos() as f64 / (2 * n) as f64,
        sorted - pushed
    );
}

#[test]
#[ignore = "a timing, not a check: run in release"]
fn exact_ks_at_its_largest() {
    use slipway_monitor::ecdf::Sorted;
    use slipway_monitor::ks::ks_two_sample;
    for shift in [0.0, 0.05, 0.5, 2.0] {
        let a: Vec<f64> = (0..10_000).map(|i| i as f64 / 10_000.0).collect();
        let b: Vec<f64> = (0..9_999).map(|i| i as f64 / 9_999.0 + shift).collect();
        let t = Instant::now();
        let ks = ks_two_sample(Sorted::Exact(&a), Sorted::Exact(&b));
        eprintln!(
            "10000 vs 9999, D {:.3}: p {:e} ({:?}) in {:?}",
            ks.statistic,
            ks.p_value,
            ks.method,
            t.elapsed()
        );
    }
}
