//! slipway's drift monitoring engine: column profiles built row by row and merged across
//! windows and replicas, and two-sample tests between a stored reference profile and a current
//! one. No IO: callers read files, clocks and networks and hand values and profiles in.
//!
//! Module map:
//! - [`column`]: cells as the caller read them ([`RawValue`]), categories, column types and
//!   Evidently's type inference.
//! - [`profile`]: [`NumericProfile`], [`CategoricalProfile`], [`ColumnProfile`],
//!   [`DatasetProfile`]: `push`, `merge`, serde; exact up to [`ProfileConfig`]'s limits.
//! - [`window`]: tumbling windows of dataset profiles, aligned so replicas' windows merge.
//! - [`live`]: monitoring a deployed model: its schema (features in tensor order and the
//!   prediction), summaries built from `f32` rows on replicas and merged on the server, their
//!   checks when read from the network, and a window compared with the stored reference.
//! - [`performance`]: realized classification and regression metrics from labeled
//!   predictions, as scikit-learn computes them, and CBPE's estimates from probabilities.
//! - [`sketch`]: the mergeable quantile sketch a numeric profile degrades to, with its
//!   tracked error bound and how the KS and Wasserstein errors follow from it.
//! - [`ecdf`]: the one linear walk over two sorted samples that every numeric test folds.
//! - [`ks`]: two-sample Kolmogorov-Smirnov exactly as scipy computes it (exact lattice paths
//!   up to 10,000 per side, `kstwo` above).
//! - [`anderson`]: k-sample Anderson-Darling for two samples, with scipy's capped p-value.
//! - [`distance`]: Evidently's binning, PSI, Jensen-Shannon, KL, Hellinger, normed Wasserstein,
//!   energy distance.
//! - [`table`], [`categorical`]: count tables; goodness-of-fit chi-square, G and z tests as
//!   Evidently runs them; the two-sample contingency chi-square and G tests; total variation
//!   distance with its interval.
//! - [`stattest`]: Evidently's registry (names, default thresholds, operators), its default
//!   test choice, Student's t test and the Mann-Whitney U test.
//! - [`report`]: [`compare_column`] (one column, independent of the others), [`decide`] (the
//!   correction over columns and dataset drift), the serializable report.
//! - [`error`]: the error type, [`MonitorError`].
//! - [`fairness`]: demographic parity, equal opportunity and disparate impact across the groups
//!   of a sensitive column, as fairlearn defines them.
//! - [`explain`]: why a model answered as it did: per-feature attributions of rows by sampling
//!   Shapley values against a reference's marginals (or rows a caller sends), with their
//!   standard errors; the caller runs the model, in bounded batches.
//!
//! A comparison reads each side sorted: call `finish()` on a profile once it is complete (a
//! stored reference is then sorted once, not per comparison); an unfinished profile is sorted
//! into a copy at every comparison.
//!
//! # Two decision modes
//!
//! `evidently` reproduces Evidently 0.7's `DataDriftPreset`: test by type, reference size and
//! cardinality, its thresholds and operators (`<=` for KS, `<` for chi-square and z, `>=` for
//! distances), its binning, and dataset drift when at least half the columns drift.
//!
//! `auto` (the default) decides by significance *and* size:
//! - Numeric columns: the two-sample KS test (scipy's exact p-value up to 10,000 per side). Its
//!   effect is D itself, with a distribution-free interval from the Dvoretzky-Kiefer-Wolfowitz
//!   inequality (Massart's constant): each ECDF is within `sqrt(ln(2/δ) / 2n)` of its CDF with
//!   probability `1 - δ`, `δ = (1 - confidence) / 2` per side, so the true sup distance is
//!   within the sum of both (plus the sketch bounds, if any). With ties the exact p-value
//!   is conservative: the level is kept, a little power is lost. When a side is a sketch the
//!   p-value is taken at `D` minus the sketch's bound on D's error, so it stays conservative.
//!   The p-value is `ks_2samp`'s to 1e-6 relative.
//! - Categorical columns: the two-sample chi-square test of homogeneity on the 2 x k table
//!   (not Evidently's goodness of fit, which treats the reference as exact and alarms at
//!   27-30 % instead of 5 %), sparse categories (expected count < 5) pooled. Unseen categories
//!   are left out of the test and reported as data quality. The effect is the total variation
//!   distance with Weissman et al.'s L1 interval, valid at any n.
//! - A column drifts when its p-value, Holm-corrected over the tested columns, is at most
//!   `alpha` (0.05) and its effect is at least the minimum: D >= 0.05 (about a 0.12 sd shift
//!   of a normal) and TVD >= 0.05 (five points of probability mass moved).
//!
//! Why: the test controls false alarms at any n (with no drift, every column's p-value is
//! uniform or conservative, so the family-wise rate stays <= alpha whatever the sizes); the
//! effect floor stops a million-row window from flagging a shift nobody cares about; and at
//! small n the decision is the test's, not a fixed distance's, so a real shift is caught as
//! soon as the data can show it. Evidently's switch at 1,000 reference rows from p-values to
//! fixed distances does neither.

#![forbid(unsafe_code)]

pub mod anderson;
pub mod categorical;
pub mod column;
pub mod distance;
pub mod ecdf;
pub mod error;
pub mod explain;
pub mod fairness;
pub mod ks;
pub mod live;
pub mod performance;
pub mod profile;
pub mod report;
pub mod sketch;
pub mod stattest;
pub mod table;
pub mod window;

pub use column::{Category, ColumnType, RawValue, infer_column_type};
pub use error::MonitorError;
pub use live::{Feature, LiveReport, Schema, Summary, compare_live};
pub use profile::{
    CategoricalProfile, ColumnProfile, DatasetProfile, NumericProfile, ProfileConfig, ProfileKind,
};
pub use report::{
    ColumnDrift, ColumnInput, Correction, DatasetDrift, DriftOptions, DriftReport, Mode, compare,
    compare_column, decide,
};
pub use sketch::QuantileSketch;
pub use window::{WindowProfile, window_start};
