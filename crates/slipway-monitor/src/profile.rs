//! Column profiles: what each test needs from one side of a comparison, built row by row,
//! mergeable, and serializable so that a reference can be stored and windows can travel.
//!
//! A numeric profile keeps every value (unsorted while rows arrive, sorted once when a test
//! needs it) up to `max_exact_values`, then degrades to a [`QuantileSketch`] with a tracked
//! error bound. A categorical profile keeps exact counts of up to `max_categories` distinct
//! values; values of further new categories are counted together in `overflow`, which the
//! tests treat as one extra category (pooling categories keeps a test valid; the overflow's
//! share bounds what the pooling can hide).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::column::{Category, RawValue};
use crate::ecdf::{Sorted, Weighted};
use crate::error::MonitorError;
use crate::sketch::QuantileSketch;

/// Size limits of a profile; the same for every column of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// Numeric values kept exactly per column; beyond, the column becomes a sketch.
    pub max_exact_values: usize,
    /// Items per level of the sketch (error about `log2(n / capacity) / capacity`).
    pub sketch_capacity: usize,
    /// Distinct categories counted exactly per column; later new ones go to `overflow`.
    pub max_categories: usize,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            max_exact_values: 1_000_000,
            sketch_capacity: 16_384,
            max_categories: 10_000,
        }
    }
}

impl ProfileConfig {
    /// Whether every limit is positive and within `max` (a profile from the network must not
    /// name limits that would let merges grow without bound).
    pub fn check(&self, max: &ProfileConfig) -> Result<(), String> {
        let within = |v: usize, m: usize| v >= 1 && v <= m;
        if within(self.max_exact_values, max.max_exact_values)
            && within(self.sketch_capacity, max.sketch_capacity)
            && within(self.max_categories, max.max_categories)
        {
            Ok(())
        } else {
            Err(format!("profile limits {self:?} outside {max:?}"))
        }
    }
}

/// Sorts in IEEE total order. A radix sort (`radsort`) was tried: on a million values it took
/// as long here (~45–65 ms with the rest of a profile's build), so the standard sort stays.
fn sort(values: &mut [f64]) {
    values.sort_unstable_by(f64::total_cmp);
}

/// Which profile a column has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    Numeric,
    Categorical,
}

impl ProfileKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProfileKind::Numeric => "numeric",
            ProfileKind::Categorical => "categorical",
        }
    }
}

/// One side of a numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    config: ProfileConfig,
    /// Every non-missing value while the column is exact (empty once it is a sketch).
    values: Vec<f64>,
    /// Whether `values` is sorted, so a stored reference is sorted once, not per comparison.
    sorted: bool,
    /// The summary beyond `max_exact_values`; `None` while exact.
    sketch: Option<QuantileSketch>,
    /// Non-missing values seen.
    count: u64,
    /// Null, NaN and ±inf values seen: a data-quality signal, never part of a test.
    missing: u64,
    /// Range of the non-missing values, for the out-of-range share against the reference
    /// (`None` before the first; an infinity would not survive JSON).
    min: Option<f64>,
    max: Option<f64>,
    /// Running mean and sum of squared deviations (Chan et al.'s mergeable form), so the
    /// standard deviation survives the switch to a sketch.
    mean: f64,
    m2: f64,
    /// Every value came as an integer and none was missing: pandas would hold the column as
    /// int64, which changes Evidently's histogram bin width rule.
    integer_dtype: bool,
}

impl NumericProfile {
    pub fn new(config: ProfileConfig) -> Self {
        NumericProfile {
            config,
            values: Vec::new(),
            sorted: true,
            sketch: None,
            count: 0,
            missing: 0,
            min: None,
            max: None,
            mean: 0.0,
            m2: 0.0,
            integer_dtype: true,
        }
    }

    /// Adds one value (O(1) amortised: no sort on this path). Non-finite values are missing.
    pub fn push(&mut self, value: f64) {
        self.integer_dtype = false;
        self.push_value(value);
    }

    /// Adds a column of floats at once, as `push` would one by one: what a columnar reader
    /// (Parquet) hands over. The batch's moments take two passes and join the running ones by
    /// Chan et al.'s formula, which is both faster than a division per value and as stable.
    pub fn push_floats(&mut self, values: &[f64]) {
        self.integer_dtype = false;
        if self.sketch.is_some()
            || self.values.len().saturating_add(values.len()) > self.config.max_exact_values
        {
            values.iter().for_each(|&v| self.push_value(v));
            return;
        }
        let before = self.values.len();
        self.values
            .extend(values.iter().copied().filter(|v| v.is_finite()));
        self.missing += (values.len() - (self.values.len() - before)) as u64;
        self.absorb(before);
    }

    /// A profile of a column of floats read whole, keeping `values` as its storage (no copy):
    /// what `push_floats` into a new profile gives.
    pub fn from_floats(mut values: Vec<f64>, config: ProfileConfig) -> Self {
        let mut profile = NumericProfile::new(config);
        profile.integer_dtype = false;
        if values.len() > config.max_exact_values {
            profile.push_floats(&values);
            return profile;
        }
        let read = values.len();
        values.retain(|v| v.is_finite());
        profile.missing = (read - values.len()) as u64;
        profile.values = values;
        profile.absorb(0);
        profile
    }

    /// Takes the values from `before` on (finite, just added) into the moments and range.
    fn absorb(&mut self, before: usize) {
        let added = &self.values[before..];
        if added.is_empty() {
            return;
        }
        let n = added.len() as f64;
        let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for &v in added {
            lo = lo.min(v);
            hi = hi.max(v);
            sum += v;
        }
        let mean = sum / n;
        let m2: f64 = added.iter().map(|&v| (v - mean) * (v - mean)).sum();
        let total = self.count as f64 + n;
        let delta = mean - self.mean;
        self.m2 += m2 + delta * delta * self.count as f64 * n / total;
        self.mean += delta * n / total;
        self.count += added.len() as u64;
        self.min = Some(self.min.map_or(lo, |m| m.min(lo)));
        self.max = Some(self.max.map_or(hi, |m| m.max(hi)));
        self.sorted = self.sorted && before == 0 && added.is_sorted_by(|a, b| a <= b);
    }

    /// Adds an integer cell (keeps the column's int dtype for Evidently's binning).
    pub fn push_int(&mut self, value: i64) {
        self.push_value(value as f64);
    }

    pub fn push_missing(&mut self) {
        self.integer_dtype = false;
        self.missing += 1;
    }

    fn push_value(&mut self, value: f64) {
        if !value.is_finite() {
            self.push_missing();
            return;
        }
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
        match &mut self.sketch {
            Some(sketch) => sketch.push(value),
            None => {
                self.values.push(value);
                self.sorted = self.sorted
                    && (self.values.len() < 2 || self.values[self.values.len() - 2] <= value);
                if self.values.len() > self.config.max_exact_values {
                    self.degrade();
                }
            }
        }
    }

    fn degrade(&mut self) {
        let mut sketch = QuantileSketch::new(self.config.sketch_capacity);
        for &value in &self.values {
            sketch.push(value);
        }
        self.values = Vec::new();
        self.sorted = true;
        self.sketch = Some(sketch);
    }

    /// Adds `other`'s observations, as if its rows had been pushed here.
    pub fn merge(&mut self, other: &NumericProfile) {
        if other.count > 0 {
            let n = (self.count + other.count) as f64;
            let delta = other.mean - self.mean;
            self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n;
            self.mean += delta * other.count as f64 / n;
        }
        self.count += other.count;
        self.missing += other.missing;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.integer_dtype &= other.integer_dtype;
        let exact_fits = self.sketch.is_none()
            && other.sketch.is_none()
            && self.values.len() + other.values.len() <= self.config.max_exact_values;
        if exact_fits {
            let keeps_order = self
                .values
                .last()
                .zip(other.values.first())
                .is_none_or(|(a, b)| a <= b);
            self.sorted = self.sorted && other.sorted && keeps_order;
            self.values.extend_from_slice(&other.values);
            return;
        }
        if self.sketch.is_none() {
            self.degrade();
        }
        let sketch = self.sketch.as_mut().expect("degraded above");
        match &other.sketch {
            Some(theirs) => sketch.merge(theirs),
            None => other.values.iter().for_each(|&v| sketch.push(v)),
        }
    }

    /// Sorts the exact values in place (a stored reference does this once).
    pub fn finish(&mut self) {
        if !self.sorted {
            sort(&mut self.values);
            self.sorted = true;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Smallest and largest non-missing value, `None` when there is none.
    pub fn range(&self) -> Option<(f64, f64)> {
        self.min.zip(self.max)
    }

    pub fn is_exact(&self) -> bool {
        self.sketch.is_none()
    }

    /// Whether a profile read from elsewhere is one `push` could have built, within `max`.
    pub fn check(&self, max: &ProfileConfig) -> Result<(), String> {
        self.config.check(max)?;
        if let Some(sketch) = &self.sketch {
            sketch.check(max.sketch_capacity)?;
            if !self.values.is_empty() || sketch.count() != self.count {
                return Err("a sketched column also holds exact values".to_owned());
            }
        } else if self.values.len() as u64 != self.count
            || self.values.len() > self.config.max_exact_values
        {
            return Err(format!(
                "{} exact values but a count of {}",
                self.values.len(),
                self.count
            ));
        }
        if self.values.iter().any(|v| !v.is_finite())
            || !self.mean.is_finite()
            || !self.m2.is_finite()
        {
            return Err("a value or moment is not a finite number".to_owned());
        }
        if self.sorted && !self.values.is_sorted_by(|a, b| a <= b) {
            return Err("values marked sorted are not".to_owned());
        }
        match (self.min, self.max) {
            (None, None) if self.count == 0 => Ok(()),
            (Some(min), Some(max)) if self.count > 0 && min <= max => Ok(()),
            _ => Err("the range disagrees with the count".to_owned()),
        }
    }

    pub fn integer_dtype(&self) -> bool {
        self.integer_dtype
    }

    /// The bound on this side's ECDF error: 0 while exact.
    pub fn normalized_rank_error(&self) -> f64 {
        self.sketch
            .as_ref()
            .map_or(0.0, QuantileSketch::normalized_rank_error)
    }

    /// Mean and sum of squared deviations of the non-missing values (Welford, merged by Chan).
    pub fn moments(&self) -> (f64, f64) {
        (self.mean, self.m2)
    }

    /// Population standard deviation (numpy's `std`, ddof 0).
    pub fn std(&self) -> f64 {
        if self.sketch.is_none() && !self.values.is_empty() {
            let n = self.values.len() as f64;
            let mean = self.values.iter().sum::<f64>() / n;
            let ss: f64 = self.values.iter().map(|v| (v - mean) * (v - mean)).sum();
            return (ss / n).sqrt();
        }
        if self.count == 0 {
            f64::NAN
        } else {
            (self.m2 / self.count as f64).sqrt()
        }
    }

    /// The sorted sample, borrowed when already sorted.
    pub fn sorted_data(&self) -> SortedData<'_> {
        match &self.sketch {
            Some(sketch) => SortedData::Weighted(sketch.sorted_items()),
            None if self.sorted => SortedData::Exact(Cow::Borrowed(&self.values)),
            None => {
                let mut values = self.values.clone();
                sort(&mut values);
                SortedData::Exact(Cow::Owned(values))
            }
        }
    }
}

/// A sorted sample owned or borrowed from a profile.
pub enum SortedData<'a> {
    Exact(Cow<'a, [f64]>),
    Weighted(Vec<Weighted>),
}

impl SortedData<'_> {
    pub fn view(&self) -> Sorted<'_> {
        match self {
            SortedData::Exact(values) => Sorted::Exact(values),
            SortedData::Weighted(items) => Sorted::Weighted(items),
        }
    }
}

/// One side of a categorical column: exact counts per category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalProfile {
    config: ProfileConfig,
    /// Counts by kind of key, so a string cell is looked up by `&str` without allocating.
    text: HashMap<String, u64>,
    /// Serialized as pairs: JSON map keys are strings, which a tagged enum cannot read back as
    /// numbers.
    #[serde(with = "pairs")]
    ints: HashMap<i64, u64>,
    /// Float categories by bit pattern (after mapping -0.0 to 0.0).
    #[serde(with = "pairs")]
    floats: HashMap<u64, u64>,
    bools: [u64; 2],
    /// Non-missing values seen (overflow included).
    count: u64,
    /// Null, NaN and ±inf values: a data-quality signal, never part of a test.
    missing: u64,
    /// Values of categories first seen after `max_categories` were already counted.
    overflow: u64,
}

impl CategoricalProfile {
    pub fn new(config: ProfileConfig) -> Self {
        CategoricalProfile {
            config,
            text: HashMap::new(),
            ints: HashMap::new(),
            floats: HashMap::new(),
            bools: [0, 0],
            count: 0,
            missing: 0,
            overflow: 0,
        }
    }

    pub fn distinct(&self) -> usize {
        self.text.len()
            + self.ints.len()
            + self.floats.len()
            + self.bools.iter().filter(|c| **c > 0).count()
    }

    fn full(&self) -> bool {
        self.distinct() >= self.config.max_categories
    }

    pub fn push_str(&mut self, value: &str) {
        self.count += 1;
        if let Some(count) = self.text.get_mut(value) {
            *count += 1;
        } else if self.full() {
            self.overflow += 1;
        } else {
            self.text.insert(value.to_owned(), 1);
        }
    }

    pub fn push_int(&mut self, value: i64) {
        self.count += 1;
        if let Some(count) = self.ints.get_mut(&value) {
            *count += 1;
        } else if self.full() {
            self.overflow += 1;
        } else {
            self.ints.insert(value, 1);
        }
    }

    pub fn push_bool(&mut self, value: bool) {
        self.count += 1;
        if self.bools[usize::from(value)] == 0 && self.full() {
            self.overflow += 1;
        } else {
            self.bools[usize::from(value)] += 1;
        }
    }

    pub fn push_float(&mut self, value: f64) {
        if !value.is_finite() {
            self.missing += 1;
            return;
        }
        let key = if value == 0.0 {
            0.0f64.to_bits()
        } else {
            value.to_bits()
        };
        self.count += 1;
        if let Some(count) = self.floats.get_mut(&key) {
            *count += 1;
        } else if self.full() {
            self.overflow += 1;
        } else {
            self.floats.insert(key, 1);
        }
    }

    pub fn push_missing(&mut self) {
        self.missing += 1;
    }

    pub fn merge(&mut self, other: &CategoricalProfile) {
        self.missing += other.missing;
        // Moving counts between a category and the overflow leaves the total unchanged.
        self.count += other.count;
        self.overflow += other.overflow;
        for (key, &n) in &other.text {
            if let Some(count) = self.text.get_mut(key.as_str()) {
                *count += n;
            } else if self.full() {
                self.overflow += n;
            } else {
                self.text.insert(key.clone(), n);
            }
        }
        for (&key, &n) in &other.ints {
            if let Some(count) = self.ints.get_mut(&key) {
                *count += n;
            } else if self.full() {
                self.overflow += n;
            } else {
                self.ints.insert(key, n);
            }
        }
        for (&key, &n) in &other.floats {
            if let Some(count) = self.floats.get_mut(&key) {
                *count += n;
            } else if self.full() {
                self.overflow += n;
            } else {
                self.floats.insert(key, n);
            }
        }
        for (i, &n) in other.bools.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if self.bools[i] == 0 && self.full() {
                self.overflow += n;
            } else {
                self.bools[i] += n;
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn missing(&self) -> u64 {
        self.missing
    }

    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// Whether a profile read from elsewhere is one `push` could have built, within `max`.
    pub fn check(&self, max: &ProfileConfig) -> Result<(), String> {
        self.config.check(max)?;
        if self.distinct() > self.config.max_categories {
            return Err(format!(
                "{} categories, more than the profile's limit of {}",
                self.distinct(),
                self.config.max_categories
            ));
        }
        let counted = self
            .text
            .values()
            .chain(self.ints.values())
            .chain(self.floats.values())
            .chain(&self.bools)
            .try_fold(self.overflow, |sum, c| sum.checked_add(*c))
            .ok_or("category counts overflow")?;
        if counted != self.count
            || self
                .text
                .values()
                .chain(self.ints.values())
                .any(|c| *c == 0)
        {
            return Err(format!(
                "category counts add up to {counted}, the count says {}",
                self.count
            ));
        }
        if self
            .floats
            .keys()
            .any(|bits| !f64::from_bits(*bits).is_finite())
        {
            return Err("a float category is not a finite number".to_owned());
        }
        Ok(())
    }

    /// Counts per category in category order (the overflow is not a category).
    pub fn counts(&self) -> BTreeMap<Category, u64> {
        let mut out = BTreeMap::new();
        for (key, &n) in &self.text {
            out.insert(Category::Text(key.clone()), n);
        }
        for (&key, &n) in &self.ints {
            out.insert(Category::Int(key), n);
        }
        for (&key, &n) in &self.floats {
            out.insert(Category::Float(f64::from_bits(key)), n);
        }
        for (i, &n) in self.bools.iter().enumerate() {
            if n > 0 {
                out.insert(Category::Bool(i == 1), n);
            }
        }
        out
    }
}

/// One column's profile, of either kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnProfile {
    Numeric(NumericProfile),
    Categorical(CategoricalProfile),
}

impl ColumnProfile {
    pub fn new(kind: ProfileKind, config: ProfileConfig) -> Self {
        match kind {
            ProfileKind::Numeric => ColumnProfile::Numeric(NumericProfile::new(config)),
            ProfileKind::Categorical => ColumnProfile::Categorical(CategoricalProfile::new(config)),
        }
    }

    pub fn kind(&self) -> ProfileKind {
        match self {
            ColumnProfile::Numeric(_) => ProfileKind::Numeric,
            ColumnProfile::Categorical(_) => ProfileKind::Categorical,
        }
    }

    /// Adds one cell. A numeric column takes booleans as 0/1 and counts strings as missing
    /// (the caller decides types; a cell that is not a number cannot enter a numeric test).
    pub fn push(&mut self, value: RawValue<'_>) {
        match self {
            ColumnProfile::Numeric(p) => match value {
                RawValue::Null | RawValue::Str(_) => p.push_missing(),
                RawValue::Bool(b) => p.push_int(i64::from(b)),
                RawValue::Int(i) => p.push_int(i),
                RawValue::Float(f) => p.push(f),
            },
            ColumnProfile::Categorical(p) => match value {
                RawValue::Null => p.push_missing(),
                RawValue::Bool(b) => p.push_bool(b),
                RawValue::Int(i) => p.push_int(i),
                RawValue::Float(f) => p.push_float(f),
                RawValue::Str(s) => p.push_str(s),
            },
        }
    }

    pub fn merge(&mut self, other: &ColumnProfile) -> Result<(), MonitorError> {
        match (self, other) {
            (ColumnProfile::Numeric(a), ColumnProfile::Numeric(b)) => a.merge(b),
            (ColumnProfile::Categorical(a), ColumnProfile::Categorical(b)) => a.merge(b),
            (a, b) => {
                return Err(MonitorError::KindMismatch(
                    a.kind().as_str(),
                    b.kind().as_str(),
                ));
            }
        }
        Ok(())
    }

    /// Sorts what a later comparison would sort (call once on a stored reference).
    pub fn finish(&mut self) {
        if let ColumnProfile::Numeric(p) = self {
            p.finish();
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            ColumnProfile::Numeric(p) => p.count(),
            ColumnProfile::Categorical(p) => p.count(),
        }
    }

    pub fn missing(&self) -> u64 {
        match self {
            ColumnProfile::Numeric(p) => p.missing(),
            ColumnProfile::Categorical(p) => p.missing(),
        }
    }

    /// Whether a profile read from elsewhere is one `push` could have built, within `max`.
    pub fn check(&self, max: &ProfileConfig) -> Result<(), String> {
        match self {
            ColumnProfile::Numeric(p) => p.check(max),
            ColumnProfile::Categorical(p) => p.check(max),
        }
    }
}

/// The profiles of a dataset's columns, by name: a stored reference or a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetProfile {
    pub columns: BTreeMap<String, ColumnProfile>,
}

impl DatasetProfile {
    /// Merges column by column; a column only `other` has is copied.
    pub fn merge(&mut self, other: &DatasetProfile) -> Result<(), MonitorError> {
        for (name, profile) in &other.columns {
            match self.columns.get_mut(name) {
                Some(mine) => mine.merge(profile)?,
                None => {
                    self.columns.insert(name.clone(), profile.clone());
                }
            }
        }
        Ok(())
    }

    pub fn finish(&mut self) {
        self.columns.values_mut().for_each(ColumnProfile::finish);
    }
}

/// A map serialized as a list of `(key, count)` pairs.
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, S: Serializer>(
        map: &HashMap<K, u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, D>(deserializer: D) -> Result<HashMap<K, u64>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, u64)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_pushed_at_once_profile_as_one_by_one() {
        use super::{NumericProfile, ProfileConfig};
        let batches: [&[f64]; 3] = [
            &[3.0, f64::NAN, -1.5, 1e6, 2.0],
            &[],
            &[f64::INFINITY, 0.25, 7.0, -3.0],
        ];
        for config in [
            ProfileConfig::default(),
            ProfileConfig {
                max_exact_values: 4,
                sketch_capacity: 8,
                ..ProfileConfig::default()
            },
        ] {
            let (mut at_once, mut one_by_one) =
                (NumericProfile::new(config), NumericProfile::new(config));
            for batch in batches {
                at_once.push_floats(batch);
                batch.iter().for_each(|&v| one_by_one.push(v));
            }
            assert_eq!(at_once.count(), one_by_one.count());
            assert_eq!(at_once.missing(), one_by_one.missing());
            assert_eq!(at_once.range(), one_by_one.range());
            let (a, b) = (at_once.std(), one_by_one.std());
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
            at_once.finish();
            one_by_one.finish();
            assert_eq!(at_once.is_exact(), one_by_one.is_exact());
            if at_once.is_exact() {
                assert_eq!(at_once.sorted_data().view().total(), 7);
            }
            // A whole column handed over (no copy) is the same profile.
            let whole: Vec<f64> = batches.concat();
            let mut moved = NumericProfile::from_floats(whole, config);
            moved.finish();
            assert_eq!(moved, at_once);
        }
    }
}
