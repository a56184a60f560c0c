//! Monitoring a deployed model: one [`Schema`] (the model's input features in tensor order, and
//! its prediction), a reference [`Summary`] built once from data the model was validated on,
//! and summaries of live traffic built the same way on every replica, merged on the server
//! and compared with the reference when a window closes.
//!
//! Live rows arrive as the `f32` tensor the model saw, and the reference is built from the
//! same `f32` values ([`Summary::push_row`]), so a category coded `3` is the same key on both
//! sides and a value is never compared with a rounding of itself.
//!
//! Summaries travel from replicas to the server, so [`Summary::check`] validates one read from
//! the network against the schema and the size limits before anything merges it.

use serde::{Deserialize, Serialize};

use crate::column::{ColumnType, RawValue};
use crate::error::MonitorError;
use crate::profile::{ColumnProfile, ProfileConfig, ProfileKind};
use crate::report::{ColumnDrift, DriftOptions, DriftReport, compare_column, decide};

/// Features a monitored model may have: monitoring is for tabular inputs. An image's pixels are
/// no features to test one by one, and each feature costs every request a push.
pub const MAX_FEATURES: usize = 128;

/// A stored reference: exact to 10,000 values per column (KS's exact p-value regime), then a
/// sketch whose rank error is about 0.05 % at a million rows.
pub const REFERENCE_CONFIG: ProfileConfig = ProfileConfig {
    max_exact_values: 10_000,
    sketch_capacity: 4_096,
    max_categories: 1_000,
};

/// A window on the server: as exact as the reference.
pub const WINDOW_CONFIG: ProfileConfig = REFERENCE_CONFIG;

/// What a replica sends every two seconds: exact to 2,048 values per column, then a sketch of
/// 1,024 items per level (about 5,000 items at 100,000 rows, error about 0.6 %), so a summary
/// of [`MAX_FEATURES`] columns stays around 10 MiB of JSON whatever the traffic, within the
/// server's 32 MiB body limit.
pub const CHUNK_CONFIG: ProfileConfig = ProfileConfig {
    max_exact_values: 2_048,
    sketch_capacity: 1_024,
    max_categories: 1_000,
};

/// Limits on a profile read from the network: what the server accepts to hold and merge.
const MAX_CONFIG: ProfileConfig = ProfileConfig {
    max_exact_values: 100_000,
    sketch_capacity: 16_384,
    max_categories: 10_000,
};

/// One monitored column: a feature (its position in the input tensor is its index in
/// [`Schema::features`]) or the prediction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

impl Feature {
    fn kind(&self) -> ProfileKind {
        match self.column_type {
            ColumnType::Categorical => ProfileKind::Categorical,
            _ => ProfileKind::Numeric,
        }
    }
}

/// What a model's monitoring looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The input tensor's columns, in order.
    pub features: Vec<Feature>,
    /// The model's prediction: a class label (categorical) or a score (numerical).
    pub prediction: Option<Feature>,
}

impl Schema {
    pub fn validate(&self) -> Result<(), MonitorError> {
        if self.features.is_empty() {
            return Err(MonitorError::InvalidConfig(
                "a monitoring schema needs at least one feature".to_owned(),
            ));
        }
        if self.features.len() > MAX_FEATURES {
            return Err(MonitorError::InvalidConfig(format!(
                "{} features: monitoring takes at most {MAX_FEATURES} (tabular inputs); drift of an image's pixels is not tested feature by feature",
                self.features.len()
            )));
        }
        let mut names = std::collections::HashSet::new();
        for feature in self.features.iter().chain(&self.prediction) {
            if feature.name.is_empty() || feature.name.len() > 250 {
                return Err(MonitorError::InvalidConfig(
                    "a monitored column's name must have 1 to 250 bytes".to_owned(),
                ));
            }
            if !matches!(
                feature.column_type,
                ColumnType::Numerical | ColumnType::Categorical
            ) {
                return Err(MonitorError::InvalidConfig(format!(
                    "column {:?} is {}: a model's inputs and prediction are numerical or categorical",
                    feature.name,
                    feature.column_type.as_str()
                )));
            }
            if !names.insert(feature.name.as_str()) {
                return Err(MonitorError::InvalidConfig(format!(
                    "column {:?} appears twice in the monitoring schema",
                    feature.name
                )));
            }
        }
        Ok(())
    }
}

/// The profiles of some rows: a reference, a replica's chunk, or a server's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Time of the first and last row, in ms since the epoch (a reference: when it was built).
    pub start_ms: i64,
    pub end_ms: i64,
    /// Rows pushed (requests' rows, not requests).
    pub rows: u64,
    /// One profile per schema feature, in schema order.
    pub features: Vec<ColumnProfile>,
    /// The prediction's profile, when the schema has one.
    pub prediction: Option<ColumnProfile>,
}

impl Summary {
    pub fn new(schema: &Schema, config: ProfileConfig, time_ms: i64) -> Summary {
        Summary {
            start_ms: time_ms,
            end_ms: time_ms,
            rows: 0,
            features: schema
                .features
                .iter()
                .map(|f| ColumnProfile::new(f.kind(), config))
                .collect(),
            prediction: schema
                .prediction
                .as_ref()
                .map(|f| ColumnProfile::new(f.kind(), config)),
        }
    }

    /// Adds one input row as the model saw it. Cells beyond the schema are ignored; a short
    /// row leaves the rest missing.
    pub fn push_row(&mut self, row: &[f32]) {
        self.rows += 1;
        for (index, profile) in self.features.iter_mut().enumerate() {
            match (profile, row.get(index)) {
                (ColumnProfile::Numeric(p), Some(v)) => p.push(f64::from(*v)),
                (ColumnProfile::Categorical(p), Some(v)) => p.push_float(f64::from(*v)),
                (ColumnProfile::Numeric(p), None) => p.push_missing(),
                (ColumnProfile::Categorical(p), None) => p.push_missing(),
            }
        }
    }

    /// Adds one row's prediction (a no-op when the schema has none).
    pub fn push_prediction(&mut self, value: RawValue<'_>) {
        if let Some(profile) = &mut self.prediction {
            // A class label arrives as an integer or text; a score as a float. A categorical
            // prediction keyed by float bits would not meet the reference's integer key.
            match (profile, value) {
                (ColumnProfile::Categorical(p), RawValue::Float(f))
                    if f.fract() == 0.0 && f.abs() < 9e15 =>
                {
                    p.push_int(f as i64)
                }
                (profile, value) => profile.push(value),
            }
        }
    }

    /// Extends the time span to `time_ms`.
    pub fn touch(&mut self, time_ms: i64) {
        self.start_ms = self.start_ms.min(time_ms);
        self.end_ms = self.end_ms.max(time_ms);
    }

    /// Adds `other`'s rows, as if they had been pushed here.
    pub fn merge(&mut self, other: &Summary) -> Result<(), MonitorError> {
        if other.features.len() != self.features.len()
            || other.prediction.is_some() != self.prediction.is_some()
        {
            return Err(MonitorError::InvalidConfig(format!(
                "summaries of different schemas: {} and {} features",
                self.features.len(),
                other.features.len()
            )));
        }
        for (mine, theirs) in self.features.iter_mut().zip(&other.features) {
            mine.merge(theirs)?;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.prediction, &other.prediction) {
            mine.merge(theirs)?;
        }
        if self.rows == 0 {
            (self.start_ms, self.end_ms) = (other.start_ms, other.end_ms);
        } else if other.rows > 0 {
            self.touch(other.start_ms);
            self.touch(other.end_ms);
        }
        self.rows += other.rows;
        Ok(())
    }

    /// Sorts what comparisons read sorted (once, on a reference before it is stored).
    pub fn finish(&mut self) {
        self.features.iter_mut().for_each(ColumnProfile::finish);
        if let Some(p) = &mut self.prediction {
            p.finish();
        }
    }

    /// Refuses a summary read from the network that does not fit `schema` or that breaks a
    /// profile's invariants (which a merge or a test relies on), before anything uses it.
    pub fn check(&self, schema: &Schema) -> Result<(), MonitorError> {
        self.check_within(schema, &MAX_CONFIG)
    }

    /// [`Summary::check`] with the profiles' limits at most `limits` (a stored reference is
    /// held in memory by every server that judges its windows: [`REFERENCE_CONFIG`]).
    pub fn check_within(
        &self,
        schema: &Schema,
        limits: &ProfileConfig,
    ) -> Result<(), MonitorError> {
        if self.features.len() != schema.features.len() {
            return Err(MonitorError::InvalidConfig(format!(
                "the summary has {} feature columns, the model's monitoring schema {}",
                self.features.len(),
                schema.features.len()
            )));
        }
        if self.prediction.is_some() != schema.prediction.is_some() {
            return Err(MonitorError::InvalidConfig(
                "the summary and the schema disagree on whether the prediction is monitored"
                    .to_owned(),
            ));
        }
        if self.start_ms > self.end_ms {
            return Err(MonitorError::InvalidConfig(
                "the summary ends before it starts".to_owned(),
            ));
        }
        let columns = self
            .features
            .iter()
            .zip(&schema.features)
            .chain(self.prediction.iter().zip(&schema.prediction));
        for (profile, feature) in columns {
            if profile.kind() != feature.kind() {
                return Err(MonitorError::InvalidConfig(format!(
                    "column {:?} is {} in the schema and {} in the summary",
                    feature.name,
                    feature.kind().as_str(),
                    profile.kind().as_str()
                )));
            }
            profile
                .check(limits)
                .map_err(|why| MonitorError::InvalidConfig(format!("{}: {why}", feature.name)))?;
        }
        Ok(())
    }
}

/// One closed window compared with the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    pub rows: u64,
    /// Every feature; the dataset verdict is over the features only.
    pub features: DriftReport,
    /// The prediction's drift, decided on its own (not one more feature in the correction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ColumnDrift>,
    /// Each feature's (and the prediction's) reference and current distributions over shared
    /// bins, for people to look at; the tests above decide, not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distributions: Vec<Distribution>,
}

/// A column's reference and current counts over the same bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub name: String,
    /// Bin labels: `[a, b)` ranges for numbers, values for categories (the most frequent in
    /// the reference, the rest as `other`).
    pub bins: Vec<String>,
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
}

/// Bins a distribution shows at most.
const DISTRIBUTION_BINS: usize = 12;

fn distribution(
    name: &str,
    reference: &ColumnProfile,
    current: &ColumnProfile,
) -> Option<Distribution> {
    match (reference, current) {
        (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) => {
            let (low, high) = match (r.range(), c.range()) {
                (Some((a, b)), Some((x, y))) => (a.min(x), b.max(y)),
                (Some(range), None) | (None, Some(range)) => range,
                (None, None) => return None,
            };
            let bins = if high > low { DISTRIBUTION_BINS } else { 1 };
            let step = (high - low) / bins as f64;
            let mut edges: Vec<f64> = (0..=bins).map(|i| low + i as f64 * step).collect();
            edges[bins] = if high > low { high } else { low + 1.0 };
            let label = |i: usize| {
                let fmt = |v: f64| {
                    let text = format!("{v:.4}");
                    let text = text.trim_end_matches('0').trim_end_matches('.');
                    if text.is_empty() || text == "-" {
                        "0".to_owned()
                    } else {
                        text.to_owned()
                    }
                };
                format!("[{}, {})", fmt(edges[i]), fmt(edges[i + 1]))
            };
            Some(Distribution {
                name: name.to_owned(),
                bins: (0..bins).map(label).collect(),
                reference: crate::distance::histogram(r.sorted_data().view(), &edges),
                current: crate::distance::histogram(c.sorted_data().view(), &edges),
            })
        }
        (ColumnProfile::Categorical(r), ColumnProfile::Categorical(c)) => {
            let reference = r.counts();
            let current = c.counts();
            let mut top: Vec<(&crate::column::Category, &u64)> = reference.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<&crate::column::Category> = top
                .iter()
                .take(DISTRIBUTION_BINS - 1)
                .map(|(k, _)| *k)
                .collect();
            let count = |side: &std::collections::BTreeMap<crate::column::Category, u64>| {
                let mut counts: Vec<u64> = shown
                    .iter()
                    .map(|k| side.get(*k).copied().unwrap_or(0))
                    .collect();
                let total: u64 = side.values().sum();
                counts.push(total - counts.iter().sum::<u64>());
                counts
            };
            let mut bins: Vec<String> = shown.iter().map(|k| k.to_string()).collect();
            bins.push("other".to_owned());
            Some(Distribution {
                name: name.to_owned(),
                bins,
                reference: count(&reference),
                current: count(&current),
            })
        }
        _ => None,
    }
}

/// Compares a window with the reference, feature by feature, then the prediction.
pub fn compare_live(
    schema: &Schema,
    reference: &Summary,
    current: &Summary,
    options: &DriftOptions,
) -> Result<LiveReport, MonitorError> {
    options.validate()?;
    reference.check(schema)?;
    current.check(schema)?;
    let features = schema
        .features
        .iter()
        .zip(reference.features.iter().zip(&current.features))
        .map(|(f, (r, c))| compare_column(&f.name, f.column_type, r, c, options))
        .collect::<Result<Vec<_>, _>>()?;
    let prediction = match (
        &schema.prediction,
        &reference.prediction,
        &current.prediction,
    ) {
        (Some(f), Some(r), Some(c)) => {
            let tested = compare_column(&f.name, f.column_type, r, c, options)?;
            decide(vec![tested], options).columns.pop()
        }
        _ => None,
    };
    let mut distributions: Vec<Distribution> = schema
        .features
        .iter()
        .zip(reference.features.iter().zip(&current.features))
        .filter_map(|(f, (r, c))| distribution(&f.name, r, c))
        .collect();
    if let (Some(f), Some(r), Some(c)) = (
        &schema.prediction,
        &reference.prediction,
        &current.prediction,
    ) {
        distributions.extend(distribution(&f.name, r, c));
    }
    Ok(LiveReport {
        rows: current.rows,
        features: decide(features, options),
        prediction,
        distributions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema {
            features: vec![
                Feature {
                    name: "x".into(),
                    column_type: ColumnType::Numerical,
                },
                Feature {
                    name: "c".into(),
                    column_type: ColumnType::Categorical,
                },
            ],
            prediction: Some(Feature {
                name: "prediction".into(),
                column_type: ColumnType::Categorical,
            }),
        }
    }

    fn summary(shift: f32, rows: usize, seed: u64, config: ProfileConfig) -> Summary {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut s = Summary::new(&schema(), config, 1_000);
        for _ in 0..rows {
            let x = rng.f32() + shift;
            let c = rng.u8(0..3) as f32;
            s.push_row(&[x, c]);
            s.push_prediction(RawValue::Int(i64::from(x > 0.5)));
        }
        s.touch(2_000);
        s
    }

    #[test]
    fn a_window_like_its_reference_does_not_drift_and_a_shifted_one_does() {
        let mut reference = summary(0.0, 5_000, 1, REFERENCE_CONFIG);
        reference.finish();
        let options = DriftOptions::default();
        let same = compare_live(
            &schema(),
            &reference,
            &summary(0.0, 2_000, 2, WINDOW_CONFIG),
            &options,
        )
        .expect("compare");
        assert!(!same.features.dataset.dataset_drift);
        assert_eq!(same.features.dataset.drifted_columns, 0);
        assert!(!same.prediction.as_ref().expect("prediction").drift_detected);

        let shifted = compare_live(
            &schema(),
            &reference,
            &summary(0.3, 2_000, 3, WINDOW_CONFIG),
            &options,
        )
        .expect("compare");
        let x = &shifted.features.columns[0];
        assert!(x.drift_detected, "{}", x.reason);
        assert!(!shifted.features.columns[1].drift_detected);
        assert!(
            shifted
                .prediction
                .as_ref()
                .expect("prediction")
                .drift_detected
        );
        assert!(
            x.data_quality.out_of_range_share_current.expect("range") > 0.2,
            "values past the reference's max are out of range"
        );

        // The distributions people look at: both sides over the same bins, every row counted.
        let x = &shifted.distributions[0];
        assert_eq!((x.name.as_str(), x.bins.len()), ("x", DISTRIBUTION_BINS));
        assert_eq!(x.reference.iter().sum::<u64>(), 5_000);
        assert_eq!(x.current.iter().sum::<u64>(), 2_000);
        // Shifted by 0.3 over [0, 1.3): the current side has nothing in the lowest bin.
        assert!(x.reference[0] > 0 && x.current[0] == 0, "{x:?}");
        let c = &shifted.distributions[1];
        assert_eq!(c.bins, ["0", "1", "2", "other"], "{c:?}");
        assert_eq!(c.current.iter().sum::<u64>(), 2_000);
        assert_eq!(
            shifted.distributions.len(),
            3,
            "features and the prediction"
        );
    }

    #[test]
    fn chunks_merge_into_the_window_a_single_summary_would_be() {
        let whole = summary(0.0, 6_000, 7, WINDOW_CONFIG);
        let mut merged = Summary::new(&schema(), WINDOW_CONFIG, 0);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3 {
            let mut chunk = Summary::new(&schema(), CHUNK_CONFIG, 1_000);
            for _ in 0..2_000 {
                let x = rng.f32();
                let c = rng.u8(0..3) as f32;
                chunk.push_row(&[x, c]);
                chunk.push_prediction(RawValue::Int(i64::from(x > 0.5)));
            }
            chunk.touch(2_000);
            let json = serde_json::to_string(&chunk).expect("json");
            let chunk: Summary = serde_json::from_str(&json).expect("read back");
            chunk.check(&schema()).expect("valid");
            merged.merge(&chunk).expect("merge");
        }
        assert_eq!(merged.rows, whole.rows);
        assert_eq!((merged.start_ms, merged.end_ms), (1_000, 2_000));
        assert_eq!(merged.features[0].count(), 6_000);
        let (ColumnProfile::Numeric(a), ColumnProfile::Numeric(b)) =
            (&merged.features[0], &whole.features[0])
        else {
            panic!("numeric");
        };
        assert!(a.is_exact(), "6,000 values fit the window's exact size");
        // The same values (moments agree to rounding: merged by Chan's formula).
        let values = |p: &crate::NumericProfile| match p.sorted_data() {
            crate::profile::SortedData::Exact(v) => v.into_owned(),
            crate::profile::SortedData::Weighted(_) => Vec::new(),
        };
        assert!(
            values(a) == values(b),
            "exact profiles of the same rows hold the same values"
        );
        assert!((a.std() - b.std()).abs() < 1e-12);
    }

    #[test]
    fn a_summary_that_does_not_fit_the_schema_is_refused() {
        let mut wrong = summary(0.0, 10, 1, CHUNK_CONFIG);
        wrong.features.pop();
        assert!(wrong.check(&schema()).is_err());

        let mut swapped = summary(0.0, 10, 1, CHUNK_CONFIG);
        swapped.features.swap(0, 1);
        let why = swapped.check(&schema()).expect_err("kinds differ");
        assert!(why.to_string().contains("column \"x\""), "{why}");

        let mut too_wide = schema();
        too_wide.features = (0..=MAX_FEATURES)
            .map(|i| Feature {
                name: format!("f{i}"),
                column_type: ColumnType::Numerical,
            })
            .collect();
        assert!(too_wide.validate().is_err());
    }

    #[test]
    fn a_profile_with_broken_invariants_is_refused() {
        let s = summary(0.0, 100, 1, CHUNK_CONFIG);
        let mut json = serde_json::to_value(&s).expect("json");
        // A count that disagrees with the values it holds would skew every test.
        json["features"][0]["count"] = serde_json::json!(5);
        let broken: Summary = serde_json::from_value(json).expect("parses");
        assert!(broken.check(&schema()).is_err());

        let mut json = serde_json::to_value(&s).expect("json");
        json["features"][0]["config"]["max_exact_values"] = serde_json::json!(u64::MAX);
        let greedy: Summary = serde_json::from_value(json).expect("parses");
        assert!(greedy.check(&schema()).is_err());

        // A stored reference is held by every server that judges windows: its limits are the
        // reference's, tighter than a replica's summary may have.
        let roomy = ProfileConfig {
            max_exact_values: 50_000,
            ..REFERENCE_CONFIG
        };
        let large = summary(0.0, 100, 1, roomy);
        assert!(large.check(&schema()).is_ok());
        assert!(large.check_within(&schema(), &REFERENCE_CONFIG).is_err());
        assert!(s.check_within(&schema(), &REFERENCE_CONFIG).is_ok());
    }
}
