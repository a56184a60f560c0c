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
