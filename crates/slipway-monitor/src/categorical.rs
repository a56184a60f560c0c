//! Tests on count tables: Evidently's goodness-of-fit chi-square, G and z tests, and the proper
//! two-sample (contingency) chi-square and G tests with total variation distance as effect.

use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::erf::erfc;

use crate::table::CountTable;

/// A statistic and its p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
    /// Degrees of freedom where the reference distribution is chi-square.
    pub dof: Option<u64>,
}

/// `chi2.sf(x, dof)` as scipy's `chdtrc`: NaN for zero degrees of freedom.
pub fn chi2_sf(x: f64, dof: u64) -> f64 {
    if dof == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    match ChiSquared::new(dof as f64) {
        Ok(dist) => dist.sf(x),
        Err(_) => f64::NAN,
    }
}

/// Evidently's `chisquare` stattest: `scipy.stats.chisquare(f_obs = current counts, f_exp =
/// reference counts * n_cur / n_ref)`. A category the reference lacks gives `inf` and p = 0.
/// It treats the reference as exact, so it alarms far above its level (DRIFT.md: 27-30 %).
pub fn chisquare_goodness_of_fit(table: &CountTable) -> TestResult {
    let n_ref = table.n_reference() as f64;
    let n_cur = table.n_current() as f64;
    let k_norm = n_cur / n_ref;
    let mut stat = 0.0;
    for (&r, &c) in table.reference.iter().zip(&table.current) {
        let expected = r as f64 * k_norm;
        let diff = c as f64 - expected;
        stat += diff * diff / expected;
    }
    let dof = table.keys.len().saturating_sub(1) as u64;
    TestResult {
        statistic: stat,
        p_value: chi2_sf(stat, dof),
        dof: Some(dof),
    }
}

/// Evidently's `g_test` stattest: `power_divergence(f_obs = current counts, f_exp = reference
/// counts, lambda_="log-likelihood")`. scipy refuses totals that differ by more than 1e-8
/// relative (so Evidently fails unless `n_ref == n_cur`); here the expected counts are scaled
/// to the current total, which is the same number whenever Evidently gives one.
pub fn g_test_goodness_of_fit(table: &CountTable) -> TestResult {
    let k_norm = table.n_current() as f64 / table.n_reference() as f64;
    let mut stat = 0.0;
    for (&r, &c) in table.reference.iter().zip(&table.current) {
        let expected = r as f64 * k_norm;
        stat += 2.0 * xlogy(c as f64, c as f64 / expected);
    }
    let dof = table.keys.len().saturating_sub(1) as u64;
    TestResult {
        statistic: stat,
        p_value: chi2_sf(stat, dof),
        dof: Some(dof),
    }
}

fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 && !y.is_nan() {
        0.0
    } else {
        x * y.ln()
    }
}

/// Evidently's `z` stattest: the smallest key is coded 0, every other value 1, and a pooled
/// two-proportion z-test gives `p = 2 (1 - Φ(|z|))` (computed that way, so it is exactly 0
/// beyond |z| ≈ 8.3). Two identical constant samples give p = 1.
pub fn z_test_evidently(table: &CountTable) -> TestResult {
    let present = |counts: &[u64]| counts.iter().filter(|c| **c > 0).count();
    let only = |counts: &[u64]| counts.iter().position(|c| *c > 0);
    if present(&table.reference) == 1
        && present(&table.current) == 1
        && only(&table.reference) == only(&table.current)
    {
        return TestResult {
            statistic: 0.0,
            p_value: 1.0,
            dof: None,
        };
    }
    let n1 = table.n_reference() as f64;
    let n2 = table.n_current() as f64;
    // Share of values that are not the first key.
    let p1 = (n1 - table.reference.first().copied().unwrap_or(0) as f64) / n1;
    let p2 = (n2 - table.current.first().copied().unwrap_or(0) as f64) / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let cdf = 0.5 * erfc(-z.abs() / std::f64::consts::SQRT_2);
    TestResult {
        statistic: z,
        p_value: 2.0 * (1.0 - cdf),
        dof: None,
    }
}

/// The two-sample test of homogeneity on the 2 x k contingency table (`scipy.stats.
/// chi2_contingency(correction=False)`), with Pearson's statistic (`lambda = 1`) or the
/// likelihood ratio G (`log_likelihood`). Empty categories must have been removed.
pub fn contingency(table: &CountTable, log_likelihood: bool) -> TestResult {
    let n_ref = table.n_reference() as f64;
    let n_cur = table.n_current() as f64;
    let total = n_ref + n_cur;
    let mut stat = 0.0;
    for (&r, &c) in table.reference.iter().zip(&table.current) {
        let column = (r + c) as f64;
        for (observed, row) in [(r as f64, n_ref), (c as f64, n_cur)] {
            let expected = row * column / total;
            if log_likelihood {
                stat += 2.0 * xlogy(observed, observed / expected);
            } else {
                let diff = observed - expected;
                stat += diff * diff / expected;
            }
        }
    }
    let dof = table.keys.len().saturating_sub(1) as u64;
    let p_value = if dof == 0 { 1.0 } else { chi2_sf(stat, dof) };
    TestResult {
        statistic: stat,
        p_value,
        dof: Some(dof),
    }
}

/// Pools sparse categories so the chi-square approximation holds: every category whose
/// expected count on either side is below `min_expected` goes into one pooled category, and
/// if that is still sparse it absorbs the smallest remaining one. The pooling looks only at
/// the column totals, which are ancillary under the null, so the test keeps its level.
pub fn pool_sparse(table: &CountTable, min_expected: f64) -> CountTable {
    let n_ref = table.n_reference() as f64;
    let n_cur = table.n_current() as f64;
    let total = n_ref + n_cur;
    let smaller_row = n_ref.min(n_cur);
    let mut out = CountTable {
        keys: Vec::new(),
        reference: Vec::new(),
        current: Vec::new(),
    };
    let (mut pooled_r, mut pooled_c, mut pooled_any) = (0u64, 0u64, false);
    for ((key, &r), &c) in table.keys.iter().zip(&table.reference).zip(&table.current) {
        if smaller_row * (r + c) as f64 / total < min_expected {
            pooled_r += r;
            pooled_c += c;
            pooled_any = true;
        } else {
            out.keys.push(key.clone());
            out.reference.push(r);
            out.current.push(c);
        }
    }
    if pooled_any {
        while smaller_row * (pooled_r + pooled_c) as f64 / total < min_expected
            && !out.keys.is_empty()
        {
            let smallest = (0..out.keys.len())
                .min_by_key(|&i| out.reference[i] + out.current[i])
                .unwrap_or(0);
            pooled_r += out.reference.remove(smallest);
            pooled_c += out.current.remove(smallest);
            out.keys.remove(smallest);
        }
        out.keys
            .push(crate::column::Category::Text("\u{0}pooled".to_owned()));
        out.reference.push(pooled_r);
        out.current.push(pooled_c);
    }
    out
}

/// Total variation distance `½ Σ |p_i - q_i|` with a confidence interval valid at any n:
/// Weissman et al. (2003) bound each side's empirical distribution over k categories by
/// `P(||p̂ - p||₁ >= ε) <= (2^k - 2) e^{-n ε² / 2}`; with `δ = (1 - confidence) / 2` per side,
/// the true TVD lies within `(ε_ref + ε_cur) / 2` of the estimate.
pub fn tvd_with_interval(table: &CountTable, confidence: f64) -> (f64, f64, f64) {
    let n_ref = table.n_reference() as f64;
    let n_cur = table.n_current() as f64;
    let tvd = 0.5
        * table
            .reference
            .iter()
            .zip(&table.current)
            .map(|(&r, &c)| (r as f64 / n_ref - c as f64 / n_cur).abs())
            .sum::<f64>();
    let k = table.keys.len();
    if k < 2 {
        return (tvd, tvd, tvd);
    }
    let delta = (1.0 - confidence) / 2.0;
    // ln(2^k - 2) without overflow.
    let ln_patterns = k as f64 * std::f64::consts::LN_2 + (1.0 - 2f64.powi(1 - k as i32)).ln();
    let eps = |n: f64| (2.0 * (ln_patterns + (1.0 / delta).ln()) / n).sqrt();
    let half = (eps(n_ref) + eps(n_cur)) / 2.0;
    (tvd, (tvd - half).max(0.0), (tvd + half).min(1.0))
}
