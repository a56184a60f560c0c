//! Why a model answered as it did: per-feature attributions of one output of a model for given
//! rows, estimated by sampling Shapley values (Štrumbelj & Kononenko, 2014), with the
//! estimate's standard error.
//!
//! The game is interventional with independent features: the value of a coalition `S` of
//! features for the row `x` is `E_z[f(x_S, z_rest)]`, where the background row `z` is drawn
//! independently of `x`. Each sample draws one permutation `π` of the features and one
//! background row `z`, then walks from `z` to `x`, switching the features to `x`'s values in
//! `π`'s order: feature `j`'s marginal contribution is `f(after switching j) - f(before)`. The
//! walk's contributions add up to `f(x) - f(z)`, so every sample yields one unbiased draw of
//! every feature's Shapley value for `d + 1` model rows (Castro et al.'s ApproShapley, with
//! the background drawn too). The attribution is the mean over `M` samples and its standard
//! error the samples' standard deviation over `sqrt(M)`.
//!
//! The background is either a reference's marginals ([`Background::from_summary`]: each
//! feature drawn on its own from its profile, which is all a stored profile keeps, so the
//! features of `z` are independent) or rows a caller sends ([`Background::from_rows`]: whole
//! rows drawn uniformly, so `z` keeps their joint distribution). The same `M` draws serve
//! every explained row of a request, so rows are compared on the same background; the base
//! value `E[f(z)]` of each row is estimated on those draws, and the efficiency gap
//! `|Σφ - (f(x) - base)|` is then zero up to rounding: it checks that the walk's last row
//! answered as `x` itself did (a model whose answer depends on its batch would show here), not
//! the sampling error, which `stderr` reports.
//!
//! Work is bounded before any is done ([`plan`]): at most [`MAX_ROWS`] rows, [`MAX_SAMPLES`]
//! samples and [`MAX_MODEL_ROWS`] model rows per explanation, and the model gets the rows in
//! calls of at most [`CHUNK_VALUES`] values, so memory does not grow with the sample count.
//! The random draws come from a seeded generator, so the same request gives the same answer.

use serde::Serialize;

use crate::live::Summary;
use crate::profile::{ColumnProfile, SortedData};

/// Samples when the caller names none: a standard error of about a tenth of a feature's
/// spread of contributions.
pub const DEFAULT_SAMPLES: usize = 100;
/// The most samples one explanation takes: the error shrinks as `1/sqrt(M)`, so 2,000 is
/// already 4.5 times finer than the default and the next halving would cost 8,000.
pub const MAX_SAMPLES: usize = 2_000;
/// Rows one explanation takes: explanations are for looking at, a few rows at a time.
pub const MAX_ROWS: usize = 100;
/// Features a row may have: what monitoring takes (a tabular model's inputs).
pub const MAX_FEATURES: usize = crate::live::MAX_FEATURES;
/// Model rows one explanation may cost (`rows × samples × (features + 1)`): about a second of
/// a small tabular model on one core.
pub const MAX_MODEL_ROWS: usize = 2_000_000;
/// Background rows a caller may send.
pub const MAX_BACKGROUND_ROWS: usize = 10_000;
/// Values per model call: the rows of one call (and the model's answer to them) are all an
/// explanation holds of its perturbed rows at a time, whatever its size.
pub const CHUNK_VALUES: usize = 1 << 20;

/// Why an explanation was not made.
#[derive(Debug, Clone, PartialEq)]
pub enum ExplainError<E> {
    /// The request: too much work, rows of the wrong width, no rows.
    Invalid(String),
    /// The model failed on the rows it was given.
    Model(E),
    /// The model's answer did not have one value per row.
    Unreadable(String),
}

impl<E: std::fmt::Display> std::fmt::Display for ExplainError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExplainError::Invalid(message) | ExplainError::Unreadable(message) => {
                f.write_str(message)
            }
            ExplainError::Model(error) => write!(f, "{error}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for ExplainError<E> {}

/// One feature's distribution, drawn from by value.
#[derive(Debug, Clone)]
struct Marginal {
    values: Vec<f32>,
    /// Running totals of the values' weights; `None` when every value weighs one.
    cumulative: Option<Vec<u64>>,
}

impl Marginal {
    fn draw(&self, rng: &mut fastrand::Rng) -> f32 {
        if self.values.is_empty() {
            return 0.0;
        }
        match &self.cumulative {
            None => self.values[rng.usize(..self.values.len())],
            Some(cumulative) => {
                let total = cumulative.last().copied().unwrap_or(0).max(1);
                let at = rng.u64(..total);
                let index = cumulative.partition_point(|&sum| sum <= at);
                self.values[index.min(self.values.len() - 1)]
            }
        }
    }

    fn weighted(pairs: impl Iterator<Item = (f32, u64)>) -> Marginal {
        let mut values = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for (value, weight) in pairs {
            if weight == 0 || !value.is_finite() {
                continue;
            }
            total = total.saturating_add(weight);
            values.push(value);
            cumulative.push(total);
        }
        Marginal {
            values,
            cumulative: Some(cumulative),
        }
    }
}

#[derive(Debug, Clone)]
enum Source {
    Marginals(Vec<Marginal>),
    Rows(Vec<Vec<f32>>),
}

/// Where the background rows `z` are drawn from.
#[derive(Debug, Clone)]
pub struct Background {
    source: Source,
}

impl Background {
    /// Each feature's marginal in a reference summary, as the model saw the values (`f32`).
    /// Numeric columns draw from their exact values, or from a sketch's items by weight;
    /// categorical columns by their counts (a text category that is no number, and the
    /// overflow beyond the profile's categories, cannot be fed to the model and are left out).
    /// Missing values are left out too. A feature with no value left is drawn as 0.
    pub fn from_summary(summary: &Summary) -> Background {
        let marginals = summary
            .features
            .iter()
            .map(|profile| match profile {
                ColumnProfile::Numeric(numeric) => match numeric.sorted_data() {
                    SortedData::Exact(values) => Marginal {
                        values: values
                            .iter()
                            .map(|v| *v as f32)
                            .filter(|v| v.is_finite())
                            .collect(),
                        cumulative: None,
                    },
                    SortedData::Weighted(items) => Marginal::weighted(
                        items.iter().map(|item| (item.value as f32, item.weight)),
                    ),
                },
                ColumnProfile::Categorical(categorical) => {
                    Marginal::weighted(categorical.counts().into_iter().filter_map(
                        |(category, count)| {
                            let value = match category {
                                crate::Category::Bool(b) => f32::from(u8::from(b)),
                                crate::Category::Int(i) => i as f32,
                                crate::Category::Float(f) => f as f32,
                                crate::Category::Text(text) => text.trim().parse::<f32>().ok()?,
                            };
                            Some((value, count))
                        },
                    ))
                }
            })
            .collect();
        Background {
            source: Source::Marginals(marginals),
        }
    }

    /// Rows a caller chose, drawn whole and uniformly.
    pub fn from_rows(rows: Vec<Vec<f32>>) -> Result<Background, String> {
        let Some(width) = rows.first().map(Vec::len) else {
            return Err("the background has no rows".to_owned());
        };
        if rows.len() > MAX_BACKGROUND_ROWS {
            return Err(format!(
                "the background has {} rows, more than the limit of {MAX_BACKGROUND_ROWS}; send a sample of them",
                rows.len()
            ));
        }
        if let Some((index, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != width) {
            return Err(format!(
                "background row {index} has {} values, the first {width}",
                row.len()
            ));
        }
        Ok(Background {
            source: Source::Rows(rows),
        })
    }

    /// Features per background row.
    pub fn width(&self) -> usize {
        match &self.source {
            Source::Marginals(marginals) => marginals.len(),
            Source::Rows(rows) => rows.first().map_or(0, Vec::len),
        }
    }

    /// `reference` (a profile's marginals) or `rows`, as the answer names it.
    pub fn kind(&self) -> &'static str {
        match &self.source {
            Source::Marginals(_) => "reference",
            Source::Rows(_) => "rows",
        }
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> Vec<f32> {
        match &self.source {
            Source::Marginals(marginals) => marginals.iter().map(|m| m.draw(rng)).collect(),
            Source::Rows(rows) => rows[rng.usize(..rows.len())].clone(),
        }
    }
}

/// How an explanation samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Permutations (each with its background row) per explained row.
    pub samples: usize,
    /// The generator's seed: the same seed, rows, background and model give the same answer.
    pub seed: u64,
}

/// One explained row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowExplanation {
    /// `f(x)`: the model's output for the row itself.
    pub prediction: f64,
    /// `E[f(z)]` over the samples' background rows.
    pub base_value: f64,
    /// The base value's standard error.
    pub base_stderr: f64,
    /// One per feature, in the row's order: the mean contribution.
    pub attributions: Vec<f64>,
    /// One per feature: the attribution's standard error (sample deviation over `sqrt(M)`).
    pub stderr: Vec<f64>,
    /// `|Σ attributions - (prediction - base_value)|`.
    pub efficiency_gap: f64,
}

/// The explanation of some rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub samples: usize,
    pub seed: u64,
    /// Rows the model was run on.
    pub model_rows: usize,
    pub rows: Vec<RowExplanation>,
}

/// Checks the bounds on one explanation of `rows` rows of `features` features with `samples`
/// samples, before anything runs; the model rows it will cost.
pub fn plan(rows: usize, features: usize, samples: usize) -> Result<usize, String> {
    if rows == 0 {
        return Err("no rows to explain".to_owned());
    }
    if rows > MAX_ROWS {
        return Err(format!(
            "{rows} rows to explain, more than the limit of {MAX_ROWS}; send fewer rows"
        ));
    }
    if features == 0 {
        return Err("the rows have no features".to_owned());
    }
    if features > MAX_FEATURES {
        return Err(format!(
            "{features} features, more than the limit of {MAX_FEATURES}: explanations are for tabular models"
        ));
    }
    if !(2..=MAX_SAMPLES).contains(&samples) {
        return Err(format!(
            "samples must be from 2 (so the error can be estimated) to {MAX_SAMPLES}, got {samples}"
        ));
    }
    let model_rows = rows
        .checked_mul(samples)
        .and_then(|n| n.checked_mul(features + 1))
        .filter(|n| *n <= MAX_MODEL_ROWS)
        .ok_or_else(|| {
            let most = MAX_MODEL_ROWS / (rows * (features + 1));
            format!(
                "{rows} rows × {samples} samples × ({features} features + 1) is more than the limit of {MAX_MODEL_ROWS} model rows; lower samples to at most {most} or send fewer rows"
            )
        })?;
    // The rows of `x` themselves are run once more, for the prediction.
    Ok(model_rows + rows)
}

/// Running mean and sum of squared deviations (Welford).
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    /// The mean's standard error: the sample standard deviation over `sqrt(n)`.
    fn stderr(&self) -> f64 {
        if self.count < 2 {
            return f64::NAN;
        }
        let n = self.count as f64;
        (self.m2 / (n - 1.0)).max(0.0).sqrt() / n.sqrt()
    }
}

/// Explains `rows` against `background`. `predict(model_rows, owners)` answers one number per
/// model row: the output being explained for the explained row `owners[k]` (a classifier's
/// probability of that row's class, say). It is called first with the rows themselves, then
/// with the perturbed rows in chunks of at most [`CHUNK_VALUES`] values.
pub fn explain<E>(
    rows: &[Vec<f32>],
    background: &Background,
    options: &Options,
    mut predict: impl FnMut(&[Vec<f32>], &[usize]) -> Result<Vec<f64>, E>,
) -> Result<Explanation, ExplainError<E>> {
    let features = rows.first().map_or(0, Vec::len);
    let model_rows = plan(rows.len(), features, options.samples).map_err(ExplainError::Invalid)?;
    if let Some((index, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != features) {
        return Err(ExplainError::Invalid(format!(
            "row {index} has {} values, the first row {features}",
            row.len()
        )));
    }
    if background.width() != features {
        return Err(ExplainError::Invalid(format!(
            "the rows have {features} features, the background ({}) {}",
            background.kind(),
            background.width()
        )));
    }
    let mut call = |batch: &[Vec<f32>], owners: &[usize]| {
        let values = predict(batch, owners).map_err(ExplainError::Model)?;
        if values.len() != batch.len() {
            return Err(ExplainError::Unreadable(format!(
                "the model answered {} values for {} rows",
                values.len(),
                batch.len()
            )));
        }
        Ok(values)
    };
    let owners: Vec<usize> = (0..rows.len()).collect();
    let predictions = call(rows, &owners)?;

    // Every explained row is walked against the same draws.
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut draws: Vec<(Vec<usize>, Vec<f32>)> = Vec::with_capacity(options.samples);
    for _ in 0..options.samples {
        let mut order: Vec<usize> = (0..features).collect();
        rng.shuffle(&mut order);
        draws.push((order, background.draw(&mut rng)));
    }

    let mut contributions = vec![Moments::default(); rows.len() * features];
    let mut bases = vec![Moments::default(); rows.len()];
    let walk_rows = features + 1;
    let walks_per_call = (CHUNK_VALUES / (walk_rows * features)).max(1);
    let walks: Vec<(usize, usize)> = (0..rows.len())
        .flat_map(|row| (0..options.samples).map(move |sample| (row, sample)))
        .collect();
    for chunk in walks.chunks(walks_per_call) {
        let mut batch = Vec::with_capacity(chunk.len() * walk_rows);
        let mut batch_owners = Vec::with_capacity(chunk.len() * walk_rows);
        for &(row, sample) in chunk {
            let (order, z) = &draws[sample];
            let mut current = z.clone();
            batch.push(current.clone());
            for &feature in order {
                current[feature] = rows[row][feature];
                batch.push(current.clone());
            }
            batch_owners.extend(std::iter::repeat_n(row, walk_rows));
        }
        let values = call(&batch, &batch_owners)?;
        for (walk, &(row, sample)) in values.chunks(walk_rows).zip(chunk) {
            bases[row].push(walk[0]);
            let order = &draws[sample].0;
            for (step, &feature) in order.iter().enumerate() {
                contributions[row * features + feature].push(walk[step + 1] - walk[step]);
            }
        }
    }

    let explained = (0..rows.len())
        .map(|row| {
            let moments = &contributions[row * features..(row + 1) * features];
            let attributions: Vec<f64> = moments.iter().map(|m| m.mean).collect();
            let base_value = bases[row].mean;
            let prediction = predictions[row];
            let total: f64 = attributions.iter().sum();
            RowExplanation {
                prediction,
                base_value,
                base_stderr: bases[row].stderr(),
                stderr: moments.iter().map(Moments::stderr).collect(),
                efficiency_gap: (total - (prediction - base_value)).abs(),
                attributions,
            }
        })
        .collect();
    Ok(Explanation {
        samples: options.samples,
        seed: options.seed,
        model_rows,
        rows: explained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::column::{ColumnType, RawValue};
    use crate::live::{Feature, REFERENCE_CONFIG, Schema};
    use crate::profile::ProfileConfig;

    type Never = std::convert::Infallible;

    fn schema(types: &[ColumnType]) -> Schema {
        Schema {
            features: types
                .iter()
                .enumerate()
                .map(|(i, t)| Feature {
                    name: format!("f{i}"),
                    column_type: *t,
                })
                .collect(),
            prediction: None,
        }
    }

    /// A reference of `n` rows of `d` numeric features, feature `j` uniform on `[j, 3j + 2)`;
    /// also the features' means on it (the exact background's expectations).
    fn reference(n: usize, d: usize, config: ProfileConfig) -> (Summary, Vec<f64>) {
        let schema = schema(&vec![ColumnType::Numerical; d]);
        let mut summary = Summary::new(&schema, config, 0);
        let mut rng = fastrand::Rng::with_seed(99);
        let mut sums = vec![0.0; d];
        for _ in 0..n {
            let row: Vec<f32> = (0..d)
                .map(|j| j as f32 + rng.f32() * (2.0 * j as f32 + 2.0))
                .collect();
            for (sum, v) in sums.iter_mut().zip(&row) {
                *sum += f64::from(*v);
            }
            summary.push_row(&row);
        }
        summary.finish();
        (summary, sums.into_iter().map(|s| s / n as f64).collect())
    }

    fn linear(
        weights: &[f64],
        bias: f64,
    ) -> impl Fn(&[Vec<f32>], &[usize]) -> Result<Vec<f64>, Never> {
        let weights = weights.to_vec();
        move |rows, _| {
            Ok(rows
                .iter()
                .map(|row| {
                    bias + row
                        .iter()
                        .zip(&weights)
                        .map(|(x, w)| f64::from(*x) * w)
                        .sum::<f64>()
                })
                .collect())
        }
    }

    #[test]
    fn a_linear_model_gets_its_exact_shapley_values_within_the_reported_error() {
        let weights = [2.0, -1.5, 0.0, 0.75, 3.0];
        let (summary, means) = reference(500, weights.len(), REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let rows = vec![
            vec![4.0f32, 0.5, 7.0, 1.0, 10.0],
            vec![0.0, 6.0, 2.0, 8.0, 5.0],
        ];
        let options = Options {
            samples: 400,
            seed: 7,
        };
        let explained = explain(&rows, &background, &options, linear(&weights, 0.5)).unwrap();
        assert_eq!(explained.model_rows, 2 * 400 * 6 + 2);
        for (row, got) in rows.iter().zip(&explained.rows) {
            let prediction: f64 = 0.5
                + row
                    .iter()
                    .zip(&weights)
                    .map(|(x, w)| f64::from(*x) * w)
                    .sum::<f64>();
            assert!((got.prediction - prediction).abs() < 1e-9);
            for (j, weight) in weights.iter().enumerate() {
                // Independent features: φ_j = w_j (x_j - E[z_j]).
                let exact = weight * (f64::from(row[j]) - means[j]);
                let (estimate, stderr) = (got.attributions[j], got.stderr[j]);
                if *weight == 0.0 {
                    assert_eq!((estimate, stderr), (0.0, 0.0), "an ignored feature");
                } else {
                    assert!(stderr > 0.0, "feature {j}");
                    assert!(
                        (estimate - exact).abs() <= 4.0 * stderr,
                        "feature {j}: {estimate} vs {exact} ± {stderr}"
                    );
                }
            }
            let base: f64 = 0.5 + weights.iter().zip(&means).map(|(w, m)| w * m).sum::<f64>();
            assert!(
                (got.base_value - base).abs() <= 4.0 * got.base_stderr,
                "{} vs {base} ± {}",
                got.base_value,
                got.base_stderr
            );
            assert!(got.efficiency_gap < 1e-9, "{}", got.efficiency_gap);
        }
    }

    #[test]
    fn an_interaction_is_shared_as_the_shapley_formula_says() {
        // f = x0 · x1 with independent background features: φ_0 = ½(x0 μ1 - μ0 μ1)
        // + ½(x0 x1 - μ0 x1), and φ_1 symmetrically.
        let (summary, means) = reference(400, 2, REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let x = [3.0f32, 4.0];
        let product = |rows: &[Vec<f32>], _: &[usize]| -> Result<Vec<f64>, Never> {
            Ok(rows
                .iter()
                .map(|r| f64::from(r[0]) * f64::from(r[1]))
                .collect())
        };
        let options = Options {
            samples: 2_000,
            seed: 3,
        };
        let got = &explain(&[x.to_vec()], &background, &options, product)
            .unwrap()
            .rows[0];
        let (x0, x1) = (f64::from(x[0]), f64::from(x[1]));
        let (m0, m1) = (means[0], means[1]);
        let exact = [
            0.5 * (x0 * m1 - m0 * m1) + 0.5 * (x0 * x1 - m0 * x1),
            0.5 * (m0 * x1 - m0 * m1) + 0.5 * (x0 * x1 - x0 * m1),
        ];
        for (j, exact) in exact.iter().enumerate() {
            assert!(
                (got.attributions[j] - exact).abs() <= 4.0 * got.stderr[j],
                "feature {j}: {} vs {exact} ± {}",
                got.attributions[j],
                got.stderr[j]
            );
        }
        assert!(got.efficiency_gap < 1e-9);
    }

    #[test]
    fn more_samples_shrink_the_reported_error_as_one_over_their_root() {
        let weights = [1.0, -2.0, 0.5];
        let (summary, _) = reference(300, 3, REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let rows = vec![vec![1.0f32, 2.0, 3.0]];
        let error = |samples: usize| {
            let options = Options { samples, seed: 11 };
            let got = explain(&rows, &background, &options, linear(&weights, 0.0)).unwrap();
            got.rows[0].stderr.clone()
        };
        let (few, many) = (error(100), error(1_600));
        for (j, (many, few)) in many.iter().zip(&few).enumerate() {
            // sqrt(100 / 1,600) = 1/4, up to the spread of the standard deviation's estimate.
            let ratio = many / few;
            assert!((0.18..0.33).contains(&ratio), "feature {j}: {ratio}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_answer_and_another_seed_another() {
        let (summary, _) = reference(100, 3, REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let rows = vec![vec![1.0f32, 2.0, 3.0]];
        let run = |seed| {
            explain(
                &rows,
                &background,
                &Options { samples: 50, seed },
                linear(&[1.0, 1.0, 1.0], 0.0),
            )
            .unwrap()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5).rows[0].attributions, run(6).rows[0].attributions);
        assert_eq!(run(5).seed, 5);
    }

    #[test]
    fn bounds_are_refused_before_the_model_runs() {
        let (summary, _) = reference(50, 10, REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let row = vec![1.0f32; 10];
        let mut calls = 0;
        let mut refused = |rows: Vec<Vec<f32>>, samples: usize| {
            let outcome = explain(
                &rows,
                &background,
                &Options { samples, seed: 1 },
                |batch: &[Vec<f32>], _: &[usize]| -> Result<Vec<f64>, Never> {
                    calls += 1;
                    Ok(vec![0.0; batch.len()])
                },
            );
            match outcome {
                Err(ExplainError::Invalid(message)) => message,
                other => panic!("{other:?}"),
            }
        };
        assert!(refused(vec![row.clone()], 1).contains("samples must be from 2"));
        assert!(refused(vec![row.clone()], MAX_SAMPLES + 1).contains("samples must be"));
        assert!(refused(vec![row.clone(); MAX_ROWS + 1], 10).contains("send fewer rows"));
        assert!(refused(Vec::new(), 10).contains("no rows"));
        // 100 rows × 2,000 samples × 11: 2.2 million model rows.
        let message = refused(vec![row.clone(); 100], 2_000);
        assert!(
            message.contains("2000000 model rows") && message.contains("at most 1818"),
            "{message}"
        );
        assert!(refused(vec![vec![1.0; 3]], 10).contains("the background (reference) 10"));
        assert!(refused(vec![row.clone(), vec![1.0; 9]], 10).contains("row 1 has 9 values"));
        assert!(refused(vec![vec![1.0; MAX_FEATURES + 1]], 10).contains("tabular"));
        assert_eq!(calls, 0, "nothing ran");
        assert!(Background::from_rows(Vec::new()).is_err());
        assert!(Background::from_rows(vec![vec![1.0]; MAX_BACKGROUND_ROWS + 1]).is_err());
        assert!(Background::from_rows(vec![vec![1.0], vec![1.0, 2.0]]).is_err());
    }

    #[test]
    fn large_explanations_are_run_in_bounded_calls() {
        let d = 20;
        let (summary, _) = reference(50, d, REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let rows = vec![vec![1.0f32; d]; 50];
        let mut largest = 0;
        let mut total = 0;
        let options = Options {
            samples: 1_000,
            seed: 2,
        };
        let explained = explain(
            &rows,
            &background,
            &options,
            |batch: &[Vec<f32>], _: &[usize]| {
                largest = largest.max(batch.len() * d);
                total += batch.len();
                Ok::<_, Never>(vec![1.0; batch.len()])
            },
        )
        .unwrap();
        assert!(largest <= CHUNK_VALUES, "{largest}");
        assert_eq!(total, explained.model_rows);
        assert_eq!(total, 50 * 1_000 * (d + 1) + 50);
    }

    #[test]
    fn model_errors_and_short_answers_are_reported() {
        let (summary, _) = reference(20, 2, REFERENCE_CONFIG);
        let background = Background::from_summary(&summary);
        let rows = vec![vec![1.0f32, 2.0]];
        let options = Options {
            samples: 10,
            seed: 1,
        };
        let failed = explain(
            &rows,
            &background,
            &options,
            |_: &[Vec<f32>], _: &[usize]| Err::<Vec<f64>, _>("boom"),
        );
        assert_eq!(failed, Err(ExplainError::Model("boom")));
        let short = explain(
            &rows,
            &background,
            &options,
            |batch: &[Vec<f32>], _: &[usize]| Ok::<_, Never>(vec![1.0; batch.len() - 1]),
        );
        assert!(
            matches!(short, Err(ExplainError::Unreadable(_))),
            "{short:?}"
        );
    }

    #[test]
    fn categorical_sketched_and_row_backgrounds_draw_by_their_weights() {
        // A categorical column coded 0 (900 rows) and 1 (100), and a numeric column past its
        // exact size (a sketch): f = x0 + x1 has the base value E[z0] + E[z1].
        let config = ProfileConfig {
            max_exact_values: 64,
            sketch_capacity: 32,
            max_categories: 10,
        };
        let schema = schema(&[ColumnType::Categorical, ColumnType::Numerical]);
        let mut summary = Summary::new(&schema, config, 0);
        for i in 0..1_000 {
            summary.push_row(&[if i % 10 == 0 { 1.0 } else { 0.0 }, (i % 100) as f32]);
        }
        let ColumnProfile::Numeric(numeric) = &summary.features[1] else {
            panic!("numeric");
        };
        assert!(!numeric.is_exact(), "a sketch");
        let background = Background::from_summary(&summary);
        let options = Options {
            samples: 2_000,
            seed: 4,
        };
        let got = &explain(
            &[vec![0.0, 0.0]],
            &background,
            &options,
            linear(&[1.0, 1.0], 0.0),
        )
        .unwrap()
        .rows[0];
        let base = 0.1 + 49.5;
        assert!(
            (got.base_value - base).abs() < 4.0 * got.base_stderr + 1.0,
            "{} vs {base} ± {}",
            got.base_value,
            got.base_stderr
        );

        // Rows are drawn whole: on rows (0, 0) and (1, 1), f = x0 · x1 at (1, 1) is 1 - ½.
        let rows = Background::from_rows(vec![vec![0.0, 0.0], vec![1.0, 1.0]]).unwrap();
        assert_eq!(rows.kind(), "rows");
        let product = |batch: &[Vec<f32>], _: &[usize]| -> Result<Vec<f64>, Never> {
            Ok(batch
                .iter()
                .map(|r| f64::from(r[0]) * f64::from(r[1]))
                .collect())
        };
        let got = &explain(&[vec![1.0, 1.0]], &rows, &options, product)
            .unwrap()
            .rows[0];
        assert!((got.base_value - 0.5).abs() < 4.0 * got.base_stderr);
        let total: f64 = got.attributions.iter().sum();
        assert!(
            (total - 0.5).abs() < 1e-9 + 4.0 * got.base_stderr,
            "{total}"
        );
        // Symmetric features share the interaction.
        assert!((got.attributions[0] - got.attributions[1]).abs() < 4.0 * got.stderr[0]);

        // A column with no value at all is drawn as 0.
        let empty = Summary::new(&schema, config, 0);
        let mut with_text = empty.clone();
        if let ColumnProfile::Categorical(p) = &mut with_text.features[0] {
            p.push_str("not a number");
        }
        with_text.features[1].push(RawValue::Null);
        let background = Background::from_summary(&with_text);
        let got = &explain(
            &[vec![2.0, 3.0]],
            &background,
            &options,
            linear(&[1.0, 1.0], 0.0),
        )
        .unwrap()
        .rows[0];
        assert_eq!(got.base_value, 0.0);
        assert_eq!(got.attributions, vec![2.0, 3.0]);
    }
}
