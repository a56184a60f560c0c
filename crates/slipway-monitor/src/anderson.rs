//! The k-sample Anderson-Darling test for two samples, as `scipy.stats.anderson_ksamp` with
//! its default midrank variant (Scholz & Stephens 1987), including scipy's p-value: a
//! quadratic fit of log significance against the tabulated critical values, capped to
//! [0.001, 0.25] outside the table.

use crate::ecdf::{Sorted, walk};
use crate::error::MonitorError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AndersonResult {
    /// The standardized statistic scipy reports.
    pub statistic: f64,
    /// The interpolated p-value, within [0.001, 0.25].
    pub p_value: f64,
}

pub fn anderson_two_sample(
    reference: Sorted<'_>,
    current: Sorted<'_>,
) -> Result<AndersonResult, MonitorError> {
    let sizes = [reference.total() as f64, current.total() as f64];
    let n = sizes[0] + sizes[1];
    let mut distinct = 0usize;
    let mut below = 0.0; // pooled observations strictly below the current value
    let mut sums = [0.0f64; 2];
    walk(reference, current, |step| {
        distinct += 1;
        let lj = (step.ref_at + step.cur_at) as f64;
        let bj = below + lj / 2.0;
        let counts = [(step.ref_cum, step.ref_at), (step.cur_cum, step.cur_at)];
        for (i, (cum, at)) in counts.into_iter().enumerate() {
            let mij = cum as f64 - at as f64 / 2.0;
            let num = n * mij - bj * sizes[i];
            sums[i] += lj / n * num * num / (bj * (n - bj) - n * lj / 4.0);
        }
        below += lj;
    });
    if distinct < 2 {
        return Err(MonitorError::Undefined {
            test: "anderson",
            reason: "needs more than one distinct observation".to_owned(),
        });
    }
    if n < 4.0 {
        return Err(MonitorError::Undefined {
            test: "anderson",
            reason: "needs at least 4 observations".to_owned(),
        });
    }
    let a2kn = (sums[0] / sizes[0] + sums[1] / sizes[1]) * (n - 1.0) / n;
    let k = 2.0f64;
    let big_h = 1.0 / sizes[0] + 1.0 / sizes[1];
    // hs_cs = cumsum(1 / [N-1, N-2, ..., 2]); h = hs_cs[-1] + 1; g = Σ hs_cs / [2, ..., N-1]
    let n_int = n as u64;
    let mut cum = 0.0;
    let mut g = 0.0;
    let mut hs = Vec::with_capacity(n_int as usize);
    for i in (2..n_int).rev() {
        cum += 1.0 / i as f64;
        hs.push(cum);
    }
    for (idx, value) in hs.iter().enumerate() {
        g += value / (idx as f64 + 2.0);
    }
    let h = cum + 1.0;
    let a = (4.0 * g - 6.0) * (k - 1.0) + (10.0 - 6.0 * g) * big_h;
    let b = (2.0 * g - 4.0) * k * k + 8.0 * h * k + (2.0 * g - 14.0 * h - 4.0) * big_h - 8.0 * h
        + 4.0 * g
        - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * k * k
        + (4.0 * h - 4.0 * g + 6.0) * k
        + (2.0 * h - 6.0) * big_h
        + 4.0 * h;
    let d = (2.0 * h + 6.0) * k * k - 4.0 * h * k;
    let sigmasq = (a * n.powi(3) + b * n * n + c * n + d) / ((n - 1.0) * (n - 2.0) * (n - 3.0));
    let m = k - 1.0;
    let statistic = (a2kn - m) / sigmasq.sqrt();
    const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
    const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
    const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];
    const SIG: [f64; 7] = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
    let critical: Vec<f64> = (0..7)
        .map(|i| B0[i] + B1[i] / m.sqrt() + B2[i] / m)
        .collect();
    let lo = critical.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = critical.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p_value = if statistic < lo {
        0.25
    } else if statistic > hi {
        0.001
    } else {
        let log_sig: Vec<f64> = SIG.iter().map(|s| s.ln()).collect();
        let coef = quadratic_fit(&critical, &log_sig);
        (coef[0] * statistic * statistic + coef[1] * statistic + coef[2]).exp()
    };
    Ok(AndersonResult { statistic, p_value })
}

/// Least-squares `y ≈ c0 x² + c1 x + c2` (numpy's `polyfit(x, y, 2)`), by Householder QR.
fn quadratic_fit(x: &[f64], y: &[f64]) -> [f64; 3] {
    let rows = x.len();
    let mut a: Vec<[f64; 3]> = x.iter().map(|&v| [v * v, v, 1.0]).collect();
    let mut b = y.to_vec();
    for col in 0..3 {
        let norm = (col..rows)
            .map(|r| a[r][col] * a[r][col])
            .sum::<f64>()
            .sqrt();
        let alpha = if a[col][col] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (0..rows)
            .map(|r| if r < col { 0.0 } else { a[r][col] })
            .collect();
        v[col] -= alpha;
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        for j in col..3 {
            let dot: f64 = a
                .iter()
                .zip(&v)
                .skip(col)
                .map(|(row, vr)| vr * row[j])
                .sum();
            for (row, vr) in a.iter_mut().zip(&v).skip(col) {
                row[j] -= 2.0 * vr * dot / vnorm2;
            }
        }
        let dot: f64 = (col..rows).map(|r| v[r] * b[r]).sum();
        for r in col..rows {
            b[r] -= 2.0 * v[r] * dot / vnorm2;
        }
    }
    let mut coef = [0.0; 3];
    for i in (0..3).rev() {
        let mut s = b[i];
        for j in (i + 1)..3 {
            s -= a[i][j] * coef[j];
        }
        coef[i] = s / a[i][i];
    }
    coef
}
