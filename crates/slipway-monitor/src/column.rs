//! What a cell is, what a category is, and what type a column has: the caller reads files,
//! the engine only sees these.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// A cell as the caller read it. `Null`, NaN and ±inf are all missing (Evidently's cleaning:
/// `±inf -> NaN`, then `dropna`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// A category of a categorical column. Ordered booleans first, then numbers by value, then
/// strings; the order only matters where Evidently sorts keys (the z-test codes the smallest
/// key 0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Category {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Category {
    fn rank(&self) -> u8 {
        match self {
            Category::Bool(_) => 0,
            Category::Int(_) | Category::Float(_) => 1,
            Category::Text(_) => 2,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Category::Int(v) => Some(*v as f64),
            Category::Float(v) => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Category::Bool(v) => write!(f, "{v}"),
            Category::Int(v) => write!(f, "{v}"),
            Category::Float(v) => write!(f, "{v}"),
            Category::Text(v) => f.write_str(v),
        }
    }
}

impl PartialEq for Category {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Category {}

impl PartialOrd for Category {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Category {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Category::Bool(a), Category::Bool(b)) => a.cmp(b),
            (Category::Int(a), Category::Int(b)) => a.cmp(b),
            (Category::Text(a), Category::Text(b)) => a.cmp(b),
            _ => match (self.as_f64(), other.as_f64()) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                _ => self.rank().cmp(&other.rank()),
            },
        }
    }
}

/// A column's statistical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Numerical,
    Categorical,
    /// Free text: Evidently tests it with a domain classifier, which this engine does not do.
    Text,
    /// Nothing to infer from (no non-missing value of a known kind).
    Unknown,
}

impl ColumnType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ColumnType::Numerical => "numerical",
            ColumnType::Categorical => "categorical",
            ColumnType::Text => "text",
            ColumnType::Unknown => "unknown",
        }
    }
}

/// Evidently's `INTEGER_CARDINALITY_LIMIT`: an int column with at most this many distinct
/// values is categorical.
pub const INTEGER_CARDINALITY_LIMIT: usize = 10;

/// Evidently 0.7's `infer_column_type` over one dataset's raw column, reading the pandas
/// dtype the values would get: all ints with no missing value are an int column (pandas
/// turns an int column with a missing value into float64); any float or missing-with-numbers
/// is float; all bools (no missing) are bool; strings are str.
///
/// float -> numerical; int -> categorical if nunique <= 10, else numerical; str -> text if
/// nunique > 50 % of the non-missing count, else categorical; bool -> categorical. Mixed
/// kinds (pandas' object dtype of non-strings) are unknown.
pub fn infer_column_type(values: &[RawValue<'_>]) -> ColumnType {
    let (mut nulls, mut bools, mut ints, mut floats, mut strs) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for value in values {
        match value {
            RawValue::Null => nulls += 1,
            RawValue::Bool(_) => bools += 1,
            RawValue::Int(_) => ints += 1,
            RawValue::Float(_) => floats += 1,
            RawValue::Str(_) => strs += 1,
        }
    }
    let non_null = values.len() - nulls;
    if non_null == 0 {
        // An all-empty CSV column reads as float64 in pandas.
        return if values.is_empty() {
            ColumnType::Unknown
        } else {
            ColumnType::Numerical
        };
    }
    if strs == non_null {
        let distinct: HashSet<&str> = values
            .iter()
            .filter_map(|v| {
                if let RawValue::Str(s) = v {
                    Some(*s)
                } else {
                    None
                }
            })
            .collect();
        return if distinct.len() as f64 > non_null as f64 * 0.5 {
            ColumnType::Text
        } else {
            ColumnType::Categorical
        };
    }
    if bools == non_null {
        return ColumnType::Categorical;
    }
    if ints == non_null && nulls == 0 {
        let distinct: HashSet<i64> = values
            .iter()
            .filter_map(|v| {
                if let RawValue::Int(i) = v {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect();
        return if distinct.len() <= INTEGER_CARDINALITY_LIMIT {
            ColumnType::Categorical
        } else {
            ColumnType::Numerical
        };
    }
    if ints + floats == non_null {
        return ColumnType::Numerical;
    }
    ColumnType::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_follows_evidently() {
        let ints: Vec<RawValue> = (0..4).cycle().take(40).map(RawValue::Int).collect();
        assert_eq!(infer_column_type(&ints), ColumnType::Categorical);
        let many: Vec<RawValue> = (0..11).map(RawValue::Int).collect();
        assert_eq!(infer_column_type(&many), ColumnType::Numerical);
        let with_null = [RawValue::Int(1), RawValue::Null];
        assert_eq!(infer_column_type(&with_null), ColumnType::Numerical);
        let text = [RawValue::Str("a"), RawValue::Str("b")];
        assert_eq!(infer_column_type(&text), ColumnType::Text);
        let cats = [
            RawValue::Str("a"),
            RawValue::Str("a"),
            RawValue::Str("a"),
            RawValue::Str("b"),
            RawValue::Null,
        ];
        assert_eq!(infer_column_type(&cats), ColumnType::Categorical);
        assert_eq!(
            infer_column_type(&[RawValue::Bool(true)]),
            ColumnType::Categorical
        );
    }
}
