//! slipway's drift monitoring engine: column profiles built row by row and merged across
//! windows and replicas, and two-sample tests between a stored reference profile and a current
//! one. No IO: callers read files, clocks and networks and hand values and profiles in.
//!
//! Module map:
//! - [`column`]: cells as the caller read them ([`RawValue`]), categories, column types and
//!   Evidently's type inference.
//! - [`profile`]: [`NumericProfile`], [`CategoricalProfile`], [`ColumnProfile`],
//!   [`DatasetProfile`]: `push`, `merge`, serde; exact up to [`ProfileConfig`]'s limits.
//! - [`sketch`]: the mergeable quantile sketch a numeric profile degrades to, with its
//!   tracked error bound and how the KS and Wasserstein errors follow from it.
//! - [`ecdf`]: the one linear walk over two sorted samples that every numeric test folds.
//! - [`ks`]: two-sample Kolmogorov-Smirnov exactly as scipy computes it (exact lattice paths
//!   up to 10,000 per side, `kstwo` above).
//! - [`table`]: count tables over the union of both sides' categories.
//! - [`error`]: the error type, [`MonitorError`].

#![forbid(unsafe_code)]

pub mod column;
pub mod ecdf;
pub mod error;
pub mod ks;
pub mod profile;
pub mod sketch;
pub mod table;

pub use column::{Category, ColumnType, RawValue, infer_column_type};
pub use error::MonitorError;
pub use profile::{
    CategoricalProfile, ColumnProfile, DatasetProfile, NumericProfile, ProfileConfig, ProfileKind,
};
pub use sketch::QuantileSketch;
