//! Drift monitoring on the data plane: each deployment's traffic to a version that has a
//! monitoring reference is profiled here, row by row, into a small [`Summary`] that the plane
//! sends to the control plane every [`FLUSH_EVERY`] (rows never leave the process: a summary
//! holds at most `CHUNK_CONFIG`'s values per column, then a sketch).
//!
//! The request path pays one uncontended lock and one push per feature per row (measured in
//! `bench/monitor`); everything else (windows, tests, storage) happens on the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_monitor::live::{CHUNK_CONFIG, Feature, Schema, Summary};
use slipway_monitor::{ColumnType, RawValue};
use slipway_serving::model::{Output, OutputValue};

/// How often a plane sends its summaries.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// How long a version's schema (or its absence) is trusted before it is read again: a
/// reference created after a deployment is picked up within this.
pub(crate) const SCHEMA_TTL: Duration = Duration::from_secs(10);

/// One deployment's traffic to one version, being summarised.
pub struct LiveMonitor {
    pub deployment: String,
    pub version: String,
    pub schema: Arc<Schema>,
    chunk: Mutex<Summary>,
}

impl LiveMonitor {
    pub(crate) fn new(deployment: &str, version: &str, schema: Arc<Schema>) -> LiveMonitor {
        LiveMonitor {
            deployment: deployment.to_owned(),
            version: version.to_owned(),
            chunk: Mutex::new(Summary::new(&schema, CHUNK_CONFIG, super::now_ms())),
            schema,
        }
    }

    /// Adds the rows one request's model saw.
    pub(crate) fn push_rows(&self, rows: &[Vec<f32>]) {
        let now = super::now_ms();
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        if chunk.rows == 0 {
            (chunk.start_ms, chunk.end_ms) = (now, now);
        }
        chunk.touch(now);
        for row in rows {
            chunk.push_row(row);
        }
    }

    /// Adds what the model answered for those rows.
    pub(crate) fn push_outputs(&self, outputs: &[Output]) {
        if self.schema.prediction.is_none() {
            return;
        }
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        push_predictions(&mut chunk, outputs);
    }

    /// The summary gathered since the last call, if any row arrived.
    pub(crate) fn take(&self) -> Option<Summary> {
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        if chunk.rows == 0 {
            return None;
        }
        let fresh = Summary::new(&self.schema, CHUNK_CONFIG, super::now_ms());
        Some(std::mem::replace(&mut *chunk, fresh))
    }
}

/// What a model's prediction is, read from its first output: a class (integer labels, the
/// argmax of a row of scores or of a ZipMap) or a score (one number per row).
pub fn prediction_feature(outputs: &[Output]) -> Option<Feature> {
    let first = outputs.first()?;
    let column_type = match &first.value {
        OutputValue::I64 { .. } | OutputValue::Maps(_) => ColumnType::Categorical,
        OutputValue::F32 { shape, data } => score_or_class(shape, data.len()),
        OutputValue::F64 { shape, data } => score_or_class(shape, data.len()),
    };
    Some(Feature {
        name: "prediction".to_owned(),
        column_type,
    })
}

fn score_or_class(shape: &[i64], len: usize) -> ColumnType {
    if row_width(shape, len) == 1 {
        ColumnType::Numerical
    } else {
        ColumnType::Categorical
    }
}

fn row_width(shape: &[i64], len: usize) -> usize {
    match shape {
        [] | [_] => 1,
        [_, rest @ ..] => rest
            .iter()
            .map(|d| (*d).max(1) as usize)
            .product::<usize>()
            .max(1),
    }
    .min(len.max(1))
}

fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best
}

/// One row's prediction, as monitoring reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// A class: an integer label, or the index of the highest score.
    Class(i64),
    /// A class named by text (a ZipMap key that is not a number).
    Label(String),
    /// One score per row (a regressor).
    Score(f64),
    /// A row whose output named nothing (an empty map).
    Missing,
}

impl Prediction {
    fn raw(&self) -> RawValue<'_> {
        match self {
            Prediction::Class(class) => RawValue::Int(*class),
            Prediction::Label(label) => RawValue::Str(label),
            Prediction::Score(score) => RawValue::Float(*score),
            Prediction::Missing => RawValue::Null,
        }
    }
}

/// One prediction per row of `outputs` (their first output).
pub fn predictions(outputs: &[Output]) -> Vec<Prediction> {
    let Some(first) = outputs.first() else {
        return Vec::new();
    };
    fn floats<T: Copy + PartialOrd + Into<f64>>(shape: &[i64], data: &[T]) -> Vec<Prediction> {
        data.chunks(row_width(shape, data.len()))
            .map(|row| {
                if row.len() == 1 {
                    Prediction::Score(row[0].into())
                } else {
                    Prediction::Class(argmax(row) as i64)
                }
            })
            .collect()
    }
    match &first.value {
        OutputValue::I64 { shape, data } => data
            .chunks(row_width(shape, data.len()))
            .map(|row| {
                Prediction::Class(if row.len() == 1 {
                    row[0]
                } else {
                    argmax(row) as i64
                })
            })
            .collect(),
        OutputValue::F32 { shape, data } => floats(shape, data),
        OutputValue::F64 { shape, data } => floats(shape, data),
        OutputValue::Maps(rows) => rows
            .iter()
            .map(|row| {
                let best = row
                    .iter()
                    .fold(None::<(&String, f32)>, |best, (key, value)| match best {
                        Some((_, top)) if top >= *value => best,
                        _ => Some((key, *value)),
                    })
                    .map(|(key, _)| key.as_str());
                // ZipMap keys are the class labels as text; integer labels stay integers so
                // they meet the reference's keys.
                match best {
                    Some(key) => key
                        .parse::<i64>()
                        .map_or_else(|_| Prediction::Label(key.to_owned()), Prediction::Class),
                    None => Prediction::Missing,
                }
            })
            .collect(),
    }
}

/// Adds one prediction per row of `outputs` (their first output) to `summary`.
pub fn push_predictions(summary: &mut Summary, outputs: &[Output]) {
    for prediction in predictions(outputs) {
        summary.push_prediction(prediction.raw());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(prediction: ColumnType) -> Schema {
        Schema {
            features: vec![Feature {
                name: "x".into(),
                column_type: ColumnType::Numerical,
            }],
            prediction: Some(Feature {
                name: "prediction".into(),
                column_type: prediction,
            }),
        }
    }

    #[test]
    fn predictions_are_read_as_the_reference_reads_them() {
        let labels = vec![Output {
            name: "label".into(),
            value: OutputValue::I64 {
                shape: vec![3],
                data: vec![0, 1, 1],
            },
        }];
        assert_eq!(
            prediction_feature(&labels).map(|f| f.column_type),
            Some(ColumnType::Categorical)
        );
        let probabilities = vec![Output {
            name: "probabilities".into(),
            value: OutputValue::F32 {
                shape: vec![2, 3],
                data: vec![0.1, 0.7, 0.2, 0.5, 0.3, 0.2],
            },
        }];
        assert_eq!(
            prediction_feature(&probabilities).map(|f| f.column_type),
            Some(ColumnType::Categorical)
        );
        let scores = vec![Output {
            name: "variable".into(),
            value: OutputValue::F32 {
                shape: vec![2, 1],
                data: vec![1.5, -2.0],
            },
        }];
        assert_eq!(
            prediction_feature(&scores).map(|f| f.column_type),
            Some(ColumnType::Numerical)
        );

        let monitor = LiveMonitor::new("d", "1", Arc::new(schema(ColumnType::Categorical)));
        monitor.push_rows(&[vec![1.0], vec![2.0], vec![3.0]]);
        monitor.push_outputs(&labels);
        monitor.push_rows(&[vec![1.0], vec![2.0]]);
        monitor.push_outputs(&probabilities);
        let summary = monitor.take().expect("rows arrived");
        assert_eq!(summary.rows, 5);
        let prediction = summary.prediction.as_ref().expect("prediction");
        assert_eq!(prediction.count(), 5);
        let slipway_monitor::ColumnProfile::Categorical(counts) = prediction else {
            panic!("categorical");
        };
        let counts = counts.counts();
        assert_eq!(counts.len(), 2, "classes 0 and 1: {counts:?}");
        assert!(monitor.take().is_none(), "taken");

        let numeric = LiveMonitor::new("d", "1", Arc::new(schema(ColumnType::Numerical)));
        numeric.push_rows(&[vec![1.0], vec![2.0]]);
        numeric.push_outputs(&scores);
        let summary = numeric.take().expect("rows");
        let slipway_monitor::ColumnProfile::Numeric(p) = summary.prediction.as_ref().unwrap()
        else {
            panic!("numeric");
        };
        assert_eq!(p.range(), Some((-2.0, 1.5)));
    }
}
