//! Distances between distributions as Evidently computes them: its binning (Sturges bins over
//! the pooled sample, or one bin per value), PSI, Jensen-Shannon, Kullback-Leibler, Hellinger,
//! and the Wasserstein distance normed by the reference's standard deviation.

use crate::ecdf::{Sorted, walk};
use crate::table::CountTable;

/// `np.histogram_bin_edges(data, bins="sturges")` for data with `n` values in `[min, max]`;
/// `integer` when numpy would hold the data as int64 (its bin width is then at least 1).
pub fn sturges_edges(n: u64, min: f64, max: f64, integer: bool) -> Vec<f64> {
    let ptp = max - min;
    let (first, last) = if min == max {
        (min - 0.5, max + 0.5)
    } else {
        (min, max)
    };
    let mut width = ptp / ((n as f64).log2() + 1.0);
    let bins = if width != 0.0 {
        if integer && width < 1.0 {
            width = 1.0;
        }
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    // np.linspace: start + i * step, the last edge exactly `last`.
    let step = (last - first) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + first).collect();
    edges[bins] = last;
    edges
}

/// `np.histogram(sample, edges)`: bins `[a, b)`, the last one closed.
pub fn histogram(sample: Sorted<'_>, edges: &[f64]) -> Vec<u64> {
    let bins = edges.len() - 1;
    let mut counts = vec![0u64; bins];
    let mut bin = 0;
    for (value, count) in sample.runs() {
        if value < edges[0] || value > edges[bins] {
            continue;
        }
        while bin + 1 < bins && value >= edges[bin + 1] {
            bin += 1;
        }
        counts[bin] += count;
    }
    counts
}

/// Evidently's `get_binned_data` before the zero fill: each side's share per bin.
pub struct Binned {
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
    /// How the bins were made, for the report.
    pub how: &'static str,
}

/// Numeric binning: Sturges over the pooled sample when the reference has more than 20
/// distinct values, else one bin per distinct pooled value.
pub fn bin_numeric(reference: Sorted<'_>, current: Sorted<'_>, integer: bool) -> Binned {
    let n_ref = reference.total();
    let n_cur = current.total();
    if reference.distinct() > 20 {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        walk(reference, current, |step| {
            min = min.min(step.value);
            max = max.max(step.value);
        });
        let edges = sturges_edges(n_ref + n_cur, min, max, integer);
        let share =
            |counts: Vec<u64>, n: u64| counts.into_iter().map(|c| c as f64 / n as f64).collect();
        return Binned {
            reference: share(histogram(reference, &edges), n_ref),
            current: share(histogram(current, &edges), n_cur),
            how: "sturges",
        };
    }
    bin_table(&CountTable::from_sorted(reference, current))
}

/// One bin per key of the table.
pub fn bin_table(table: &CountTable) -> Binned {
    let n_ref = table.n_reference() as f64;
    let n_cur = table.n_current() as f64;
    Binned {
        reference: table.reference.iter().map(|&c| c as f64 / n_ref).collect(),
        current: table.current.iter().map(|&c| c as f64 / n_cur).collect(),
        how: "per_value",
    }
}

/// Evidently's empty-bin fill, per distribution: zeros become `min_nonzero / 1e6` when the
/// smallest non-zero share is at most 1e-4, else 1e-4; no renormalisation.
pub fn fill_zeroes(shares: &mut [f64]) {
    let min_nonzero = shares
        .iter()
        .copied()
        .filter(|s| *s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if min_nonzero <= 1e-4 {
        min_nonzero / 1e6
    } else {
        1e-4
    };
    for share in shares.iter_mut().filter(|s| **s == 0.0) {
        *share = fill;
    }
}

/// Population stability index `Σ (r - c) ln(r / c)` over zero-filled shares.
pub fn psi(binned: &Binned) -> f64 {
    let (mut r, mut c) = (binned.reference.clone(), binned.current.clone());
    fill_zeroes(&mut r);
    fill_zeroes(&mut c);
    r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

/// Kullback-Leibler divergence `scipy.stats.entropy(ref, cur)` over zero-filled shares.
pub fn kl_divergence(binned: &Binned) -> f64 {
    let (mut r, mut c) = (binned.reference.clone(), binned.current.clone());
    fill_zeroes(&mut r);
    fill_zeroes(&mut c);
    let (sr, sc): (f64, f64) = (r.iter().sum(), c.iter().sum());
    r.iter()
        .zip(&c)
        .map(|(r, c)| rel_entr(r / sr, c / sc))
        .sum()
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// `scipy.spatial.distance.jensenshannon(ref, cur)` (natural log, a distance <= sqrt(ln 2)).
pub fn jensen_shannon(binned: &Binned) -> f64 {
    let sr: f64 = binned.reference.iter().sum();
    let sc: f64 = binned.current.iter().sum();
    let mut js = 0.0;
    for (r, c) in binned.reference.iter().zip(&binned.current) {
        let (p, q) = (r / sr, c / sc);
        let m = (p + q) / 2.0;
        js += rel_entr(p, m) + rel_entr(q, m);
    }
    (js / 2.0).sqrt()
}

/// Evidently's categorical Hellinger distance over per-value shares.
pub fn hellinger_table(table: &CountTable) -> f64 {
    let binned = bin_table(table);
    let overlap: f64 = binned
        .reference
        .iter()
        .zip(&binned.current)
        .map(|(p, q)| (p * q).sqrt())
        .sum();
    (1.0 - overlap.clamp(0.0, 1.0)).sqrt()
}

/// Evidently's numeric Hellinger distance: Sturges edges over the *distinct* pooled values,
/// density histograms of each side, `Σ sqrt(p q) * mean bin width`.
pub fn hellinger_numeric(reference: Sorted<'_>, current: Sorted<'_>, integer: bool) -> f64 {
    let (mut min, mut max, mut distinct) = (f64::INFINITY, f64::NEG_INFINITY, 0u64);
    walk(reference, current, |step| {
        min = min.min(step.value);
        max = max.max(step.value);
        distinct += 1;
    });
    let edges = sturges_edges(distinct, min, max, integer);
    let density = |sample: Sorted<'_>| -> Vec<f64> {
        let counts = histogram(sample, &edges);
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(edges.windows(2))
            .map(|(&c, w)| c as f64 / (w[1] - w[0]) / total as f64)
            .collect()
    };
    let (h1, h2) = (density(reference), density(current));
    let bin_width = (edges[edges.len() - 1] - edges[0]) / (edges.len() - 1) as f64;
    let overlap: f64 = h1
        .iter()
        .zip(&h2)
        .map(|(p, q)| (p * q).sqrt() * bin_width)
        .sum();
    (1.0 - overlap.clamp(0.0, 1.0)).sqrt()
}

/// `∫ cost(F_ref - F_cur) dx` over the two samples' ECDFs, from one walk: the ECDFs are
/// constant between consecutive distinct values, so the integral is a sum over those gaps.
fn integrate_ecdf_gap(
    reference: Sorted<'_>,
    current: Sorted<'_>,
    cost: impl Fn(f64) -> f64,
) -> f64 {
    let n1 = reference.total() as f64;
    let n2 = current.total() as f64;
    let mut total = 0.0;
    let mut previous: Option<(f64, f64)> = None;
    walk(reference, current, |step| {
        if let Some((value, cost)) = previous {
            total += cost * (step.value - value);
        }
        previous = Some((
            step.value,
            cost(step.ref_cum as f64 / n1 - step.cur_cum as f64 / n2),
        ));
    });
    total
}

/// `scipy.stats.wasserstein_distance`: `∫ |F_ref - F_cur| dx`, from one walk.
pub fn wasserstein(reference: Sorted<'_>, current: Sorted<'_>) -> f64 {
    integrate_ecdf_gap(reference, current, f64::abs)
}

/// `scipy.stats.energy_distance`: `sqrt(2) * sqrt(∫ (F_ref - F_cur)² dx)`, from one walk.
pub fn energy_distance(reference: Sorted<'_>, current: Sorted<'_>) -> f64 {
    std::f64::consts::SQRT_2 * integrate_ecdf_gap(reference, current, |gap| gap * gap).sqrt()
}

/// Evidently's normed Wasserstein: divided by the reference's population standard deviation,
/// floored at 0.001.
pub fn wasserstein_normed(raw: f64, reference_std: f64) -> f64 {
    raw / reference_std.max(0.001)
}
