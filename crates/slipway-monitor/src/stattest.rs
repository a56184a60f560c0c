//! Evidently's stattest registry (the names, default thresholds and comparison operators of
//! the tests this engine implements) and its default test choice (DRIFT.md, Step 1).

use serde::{Deserialize, Serialize};

use crate::anderson::anderson_two_sample;
use crate::categorical::{chisquare_goodness_of_fit, g_test_goodness_of_fit, z_test_evidently};
use crate::column::ColumnType;
use crate::distance::{
    bin_numeric, bin_table, energy_distance, hellinger_numeric, hellinger_table, jensen_shannon,
    kl_divergence, psi, wasserstein, wasserstein_normed,
};
use crate::error::MonitorError;
use crate::ks::{KsMethod, ks_two_sample};
use crate::profile::{ColumnProfile, NumericProfile};
use crate::table::CountTable;

/// How a score is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// p-value at most the threshold (K-S).
    #[serde(rename = "<=")]
    AtMost,
    /// p-value strictly below the threshold (chi-square, z, G, Anderson-Darling).
    #[serde(rename = "<")]
    Below,
    /// distance at least the threshold.
    #[serde(rename = ">=")]
    AtLeast,
    /// distance strictly above the threshold (energy distance).
    #[serde(rename = ">")]
    Above,
}

impl Operator {
    pub fn drifted(self, score: f64, threshold: f64) -> bool {
        match self {
            Operator::AtMost => score <= threshold,
            Operator::Below => score < threshold,
            Operator::AtLeast => score >= threshold,
            Operator::Above => score > threshold,
        }
    }
}

/// One registered test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTest {
    /// Evidently's registry name, as reports show it.
    pub name: &'static str,
    pub default_threshold_milli: u32,
    pub operator: Operator,
    /// Whether the score is a p-value (else a distance).
    pub is_p_value: bool,
    pub numeric: bool,
    pub categorical: bool,
}

impl StatTest {
    pub fn default_threshold(&self) -> f64 {
        f64::from(self.default_threshold_milli) / 1000.0
    }
}

const fn test(
    name: &'static str,
    milli: u32,
    operator: Operator,
    p: bool,
    numeric: bool,
    categorical: bool,
) -> StatTest {
    StatTest {
        name,
        default_threshold_milli: milli,
        operator,
        is_p_value: p,
        numeric,
        categorical,
    }
}

/// The tests this engine implements, with Evidently 0.7's defaults.
pub const STATTESTS: &[StatTest] = &[
    test("ks", 50, Operator::AtMost, true, true, false),
    test("wasserstein", 100, Operator::AtLeast, false, true, false),
    test("anderson", 100, Operator::Below, true, true, false),
    test("ed", 100, Operator::Above, false, true, false),
    test("t_test", 50, Operator::Below, true, true, false),
    test("mannw", 50, Operator::Below, true, true, false),
    test("psi", 100, Operator::AtLeast, false, true, true),
    test("jensenshannon", 100, Operator::AtLeast, false, true, true),
    test("kl_div", 100, Operator::AtLeast, false, true, true),
    test("hellinger", 100, Operator::AtLeast, false, true, true),
    // Evidently registers these for categorical columns; its default choice also runs them on
    // numeric columns with few values, which treats each value as a category.
    test("chisquare", 50, Operator::Below, true, true, true),
    test("z", 50, Operator::Below, true, true, true),
    test("g_test", 100, Operator::Below, true, true, true),
];

pub fn stattest(name: &str) -> Option<&'static StatTest> {
    STATTESTS.iter().find(|t| t.name == name)
}

/// Evidently's `_get_default_stattest`: by column type, the reference's non-missing count and
/// the number of distinct values of both samples together.
pub fn default_stattest(
    column_type: ColumnType,
    n_reference: u64,
    n_unique: usize,
) -> Option<&'static StatTest> {
    let name = match column_type {
        ColumnType::Numerical if n_reference <= 1000 => match n_unique {
            0..=2 => "z",
            3..=5 => "chisquare",
            _ => "ks",
        },
        ColumnType::Numerical => {
            if n_unique <= 5 {
                "jensenshannon"
            } else {
                "wasserstein"
            }
        }
        ColumnType::Categorical if n_reference <= 1000 => {
            if n_unique > 2 {
                "chisquare"
            } else {
                "z"
            }
        }
        ColumnType::Categorical => "jensenshannon",
        ColumnType::Text | ColumnType::Unknown => return None,
    };
    stattest(name)
}

/// What one stattest computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Computed {
    /// The p-value or distance, as Evidently reports it.
    pub score: f64,
    /// The underlying statistic where it differs from the score (KS D, chi-square, z, A²).
    pub statistic: Option<f64>,
    pub ks_method: Option<KsMethod>,
}

/// Both sides of a column in the form the tests read.
pub struct Sides<'a> {
    pub column_type: ColumnType,
    pub reference: &'a ColumnProfile,
    pub current: &'a ColumnProfile,
}

impl Sides<'_> {
    fn numeric(&self) -> Option<(&NumericProfile, &NumericProfile)> {
        match (self.reference, self.current) {
            (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) => Some((r, c)),
            _ => None,
        }
    }

    /// Distinct values of both samples together (Evidently's `n_unique`), without building a
    /// table for a numeric column of a million distinct values.
    pub fn n_unique(&self) -> Result<usize, MonitorError> {
        if let Some((r, c)) = self.numeric() {
            let (rd, cd) = (r.sorted_data(), c.sorted_data());
            let mut distinct = 0;
            crate::ecdf::walk(rd.view(), cd.view(), |_| distinct += 1);
            return Ok(distinct);
        }
        Ok(self.table()?.keys.len())
    }

    /// Like [`Self::n_unique`], but stops counting past `cap`: Evidently's choice of test only
    /// asks whether there are at most 2, at most 5, or more, and on a million distinct values
    /// the full count was a whole extra pass over both samples.
    pub fn n_unique_up_to(&self, cap: usize) -> Result<usize, MonitorError> {
        if let Some((r, c)) = self.numeric() {
            let (rd, cd) = (r.sorted_data(), c.sorted_data());
            let (rv, cv) = (rd.view(), cd.view());
            let mut a = rv.runs().map(|(v, _)| v).peekable();
            let mut b = cv.runs().map(|(v, _)| v).peekable();
            let mut distinct = 0;
            while distinct <= cap {
                let next = match (a.peek(), b.peek()) {
                    (None, None) => break,
                    (Some(&x), None) => x,
                    (None, Some(&y)) => y,
                    (Some(&x), Some(&y)) => x.min(y),
                };
                while a.peek().is_some_and(|&x| x == next) {
                    a.next();
                }
                while b.peek().is_some_and(|&y| y == next) {
                    b.next();
                }
                distinct += 1;
            }
            return Ok(distinct);
        }
        Ok(self.table()?.keys.len())
    }

    /// Counts over the union of values (numeric values become categories).
    pub fn table(&self) -> Result<CountTable, MonitorError> {
        match (self.reference, self.current) {
            (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) => {
                let (rd, cd) = (r.sorted_data(), c.sorted_data());
                Ok(CountTable::from_sorted(rd.view(), cd.view()))
            }
            (ColumnProfile::Categorical(r), ColumnProfile::Categorical(c)) => {
                Ok(CountTable::from_profiles(r, c))
            }
            (a, b) => Err(MonitorError::KindMismatch(
                a.kind().as_str(),
                b.kind().as_str(),
            )),
        }
    }
}

/// Runs the named test the way Evidently's implementation of it does.
pub fn run_stattest(test: &StatTest, sides: &Sides<'_>) -> Result<Computed, MonitorError> {
    let numeric_type = sides.column_type == ColumnType::Numerical;
    let plain = |score: f64| Computed {
        score,
        statistic: None,
        ks_method: None,
    };
    if let (true, Some((r, c))) = (numeric_type, sides.numeric()) {
        let (rd, cd) = (r.sorted_data(), c.sorted_data());
        let (rv, cv) = (rd.view(), cd.view());
        let integer = r.integer_dtype() && c.integer_dtype();
        return match test.name {
            "ks" => {
                let ks = ks_two_sample(rv, cv);
                Ok(Computed {
                    score: ks.p_value,
                    statistic: Some(ks.statistic),
                    ks_method: Some(ks.method),
                })
            }
            "wasserstein" => Ok(plain(wasserstein_normed(wasserstein(rv, cv), r.std()))),
            "anderson" => {
                let ad = anderson_two_sample(rv, cv)?;
                Ok(Computed {
                    score: ad.p_value,
                    statistic: Some(ad.statistic),
                    ks_method: None,
                })
            }
            "ed" => Ok(plain(energy_distance(rv, cv))),
            "t_test" => {
                let t = student_t_test(r, c);
                Ok(Computed {
                    score: t.p_value,
                    statistic: Some(t.statistic),
                    ks_method: None,
                })
            }
            "mannw" => {
                let t = mann_whitney_less(rv, cv);
                Ok(Computed {
                    score: t.p_value,
                    statistic: Some(t.statistic),
                    ks_method: None,
                })
            }
            "psi" => Ok(plain(psi(&bin_numeric(rv, cv, integer)))),
            "jensenshannon" => Ok(plain(jensen_shannon(&bin_numeric(rv, cv, integer)))),
            "kl_div" => Ok(plain(kl_divergence(&bin_numeric(rv, cv, integer)))),
            "hellinger" => Ok(plain(hellinger_numeric(rv, cv, integer))),
            _ => run_on_table(test, &CountTable::from_sorted(rv, cv)),
        };
    }
    if numeric_type {
        return Err(MonitorError::KindMismatch(
            "numeric",
            sides.reference.kind().as_str(),
        ));
    }
    if !test.categorical {
        return Err(MonitorError::UnknownStattest {
            name: test.name.to_owned(),
            kind: "categorical",
        });
    }
    run_on_table(test, &sides.table()?)
}

fn run_on_table(test: &StatTest, table: &CountTable) -> Result<Computed, MonitorError> {
    let tested = |r: crate::categorical::TestResult| Computed {
        score: r.p_value,
        statistic: Some(r.statistic),
        ks_method: None,
    };
    let plain = |score: f64| Computed {
        score,
        statistic: None,
        ks_method: None,
    };
    Ok(match test.name {
        "chisquare" => tested(chisquare_goodness_of_fit(table)),
        "z" => tested(z_test_evidently(table)),
        "g_test" => tested(g_test_goodness_of_fit(table)),
        "psi" => plain(psi(&bin_table(table))),
        "jensenshannon" => plain(jensen_shannon(&bin_table(table))),
        "kl_div" => plain(kl_divergence(&bin_table(table))),
        "hellinger" => plain(hellinger_table(table)),
        other => {
            return Err(MonitorError::UnknownStattest {
                name: other.to_owned(),
                kind: "categorical",
            });
        }
    })
}

/// `scipy.stats.ttest_ind(ref, cur)`: Student's two-sample t test with pooled variance,
/// two-sided. Two constant samples give NaN, as in scipy.
pub fn student_t_test(
    reference: &NumericProfile,
    current: &NumericProfile,
) -> crate::categorical::TestResult {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let (n1, n2) = (reference.count() as f64, current.count() as f64);
    let ((m1, ss1), (m2, ss2)) = (reference.moments(), current.moments());
    let df = n1 + n2 - 2.0;
    let pooled = (ss1 + ss2) / df;
    let t = (m1 - m2) / (pooled * (1.0 / n1 + 1.0 / n2)).sqrt();
    // Two different constants give an infinite t and p = 0; two equal ones 0/0 and NaN.
    let p_value = match StudentsT::new(0.0, 1.0, df) {
        Ok(_) if t.is_infinite() => 0.0,
        Ok(dist) if t.is_finite() => 2.0 * dist.sf(t.abs()),
        _ => f64::NAN,
    };
    crate::categorical::TestResult {
        statistic: t,
        p_value,
        dof: None,
    }
}

/// `scipy.stats.mannwhitneyu(ref, cur, alternative="less")` as Evidently's `mannw` calls it:
/// exact (the null distribution of U from Gaussian binomial coefficients) when one sample has
/// at most 8 values and there are no ties, otherwise the normal approximation with the tie
/// correction and the continuity correction.
pub fn mann_whitney_less(
    reference: crate::ecdf::Sorted<'_>,
    current: crate::ecdf::Sorted<'_>,
) -> crate::categorical::TestResult {
    let (n1, n2) = (reference.total() as f64, current.total() as f64);
    let (mut below, mut rank_sum, mut tie_term, mut ties) = (0.0f64, 0.0f64, 0.0f64, false);
    crate::ecdf::walk(reference, current, |step| {
        let l = (step.ref_at + step.cur_at) as f64;
        rank_sum += step.ref_at as f64 * (below + (l + 1.0) / 2.0);
        tie_term += l * l * l - l;
        ties |= l > 1.0;
        below += l;
    });
    let u1 = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let exact = !((n1 > 8.0 && n2 > 8.0) || ties);
    let p_value = if exact {
        u_survival(u2.round() as usize, n1 as usize, n2 as usize)
    } else {
        let n = n1 + n2;
        let s = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        let z = (u1 - n1 * n2 / 2.0 + 0.5) / s;
        0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
    };
    crate::categorical::TestResult {
        statistic: u1,
        p_value: p_value.clamp(0.0, 1.0),
        dof: None,
    }
}

/// `P(U >= k)` for sample sizes `m`, `n` with no ties: the coefficients of the Gaussian
/// binomial `[m + n choose m]_q` count the arrangements with each U.
fn u_survival(k: usize, m: usize, n: usize) -> f64 {
    let (a, b) = (m.min(n), m.max(n));
    let degree = a * b;
    let mut counts = vec![0.0f64; degree + 1];
    counts[0] = 1.0;
    for i in 1..=a {
        let top = (b + i).min(degree + 1);
        for u in (top..=degree).rev() {
            counts[u] -= counts[u - (b + i)];
        }
        for u in i..=degree {
            counts[u] += counts[u - i];
        }
    }
    let total: f64 = counts.iter().sum();
    counts.iter().skip(k).sum::<f64>() / total
}
