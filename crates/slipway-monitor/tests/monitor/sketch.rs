//! Beyond the exact size a numeric profile is a sketch; its stated bounds must hold.

use slipway_monitor::distance::wasserstein;
use slipway_monitor::ecdf::{Sorted, walk};
use slipway_monitor::ks::ks_two_sample;
use slipway_monitor::report::compare_column;
use slipway_monitor::{
    ColumnProfile, ColumnType, DriftOptions, NumericProfile, ProfileConfig, QuantileSketch,
};

fn values(seed: u64, n: usize, shift: f64) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| (rng.f64() * 3.0).powi(2) + shift + (rng.u32(0..4) as f64))
        .collect()
}

/// The largest |rank_sketch(x) - rank_true(x)| over every x where either changes.
fn worst_rank_error(exact: &[f64], sketch: &QuantileSketch) -> u64 {
    let items = sketch.sorted_items();
    let mut worst = 0u64;
    walk(Sorted::Exact(exact), Sorted::Weighted(&items), |step| {
        worst = worst.max(step.ref_cum.abs_diff(step.cur_cum));
    });
    worst
}

#[test]
fn rank_error_stays_within_the_tracked_bound() {
    for (n, capacity) in [(10_000, 64), (200_000, 256), (300_000, 1024)] {
        let data = values(n as u64, n, 0.0);
        let mut sketch = QuantileSketch::new(capacity);
        data.iter().for_each(|&v| sketch.push(v));
        let mut sorted = data.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        assert_eq!(sketch.count(), n as u64);
        let worst = worst_rank_error(&sorted, &sketch);
        assert!(
            worst <= sketch.rank_error(),
            "n {n}: error {worst} > bound {}",
            sketch.rank_error()
        );
        // The documented size of the bound: about log2(n / capacity) / capacity.
        let levels = (n as f64 / capacity as f64).log2().ceil();
        assert!(sketch.normalized_rank_error() <= 2.0 * levels / capacity as f64 + 1e-12);
    }
}

#[test]
fn merged_sketches_keep_the_summed_bound() {
    let data = values(7, 120_000, 0.0);
    let mut parts: Vec<QuantileSketch> = Vec::new();
    for chunk in data.chunks(17_000) {
        let mut sketch = QuantileSketch::new(128);
        chunk.iter().for_each(|&v| sketch.push(v));
        parts.push(sketch);
    }
    let mut merged = QuantileSketch::new(128);
    for part in &parts {
        merged.merge(part);
    }
    let mut sorted = data.clone();
    sorted.sort_unstable_by(f64::total_cmp);
    assert_eq!(merged.count(), data.len() as u64);
    assert!(worst_rank_error(&sorted, &merged) <= merged.rank_error());
}

#[test]
fn ks_and_wasserstein_from_sketches_stay_within_their_bounds() {
    let config = ProfileConfig {
        max_exact_values: 5_000,
        sketch_capacity: 256,
        max_categories: 10,
    };
    let reference = values(1, 60_000, 0.0);
    let current = values(2, 40_000, 0.15);
    let build = |data: &[f64]| {
        let mut p = NumericProfile::new(config);
        data.iter().for_each(|&v| p.push(v));
        p.finish();
        p
    };
    let (r, c) = (build(&reference), build(&current));
    assert!(!r.is_exact() && !c.is_exact());
    let (mut rs, mut cs) = (reference.clone(), current.clone());
    rs.sort_unstable_by(f64::total_cmp);
    cs.sort_unstable_by(f64::total_cmp);
    let exact_ks = ks_two_sample(Sorted::Exact(&rs), Sorted::Exact(&cs));
    let exact_w = wasserstein(Sorted::Exact(&rs), Sorted::Exact(&cs));
    let drift = compare_column(
        "x",
        ColumnType::Numerical,
        &ColumnProfile::Numeric(r.clone()),
        &ColumnProfile::Numeric(c.clone()),
        &DriftOptions::default(),
    )
    .expect("compare");
    let bounds = drift.approximation.expect("a sketch is reported");
    let sketch_d = drift.statistic.expect("D");
    assert!(
        (sketch_d - exact_ks.statistic).abs() <= bounds.ks_statistic_bound,
        "{bounds:?}"
    );
    let (rd, cd) = (r.sorted_data(), c.sorted_data());
    let sketch_w = wasserstein(rd.view(), cd.view());
    assert!(
        (sketch_w - exact_w).abs() <= bounds.wasserstein_bound,
        "{sketch_w} vs {exact_w}: {bounds:?}"
    );
    // The p-value is taken at the smallest D the sketch allows: never below the exact one.
    assert!(
        drift.p_value.expect("p") >= exact_ks.p_value,
        "{:?} vs {}",
        drift.p_value,
        exact_ks.p_value
    );
    // The effect interval widens by the sketch error, so it still covers the exact D.
    let effect = drift.effect.expect("effect");
    assert!(effect.ci_low <= exact_ks.statistic && exact_ks.statistic <= effect.ci_high);
}
