//! Drift monitoring on the data plane: each deployment's traffic to a version that has a
//! monitoring reference is sampled here into a small [`Summary`] that the plane sends to the
//! control plane every [`FLUSH_EVERY`] (rows never leave the process).
//!
//! The sample is a reservoir (Vitter's algorithm R) of at most [`SAMPLE_ROWS`] rows per
//! summary, uniform over the rows seen since the last one, each kept with what the model
//! answered for it; the summary counts every row seen. So the request path pays a lock and a
//! random draw per row, and copies a row only when the reservoir takes it (at most
//! `SAMPLE_ROWS` times, then ever more rarely), however heavy the traffic; profiling the
//! sample happens when the summary is taken, off the request path. Sampling is independent of
//! the values, so with no drift a window's sample is still a sample of the reference's
//! distribution and the tests keep their false-alarm rate (measured in `monitor_cost`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_monitor::live::{CHUNK_CONFIG, Feature, Schema, Summary};
use slipway_monitor::{ColumnType, RawValue};
use slipway_serving::model::{Output, OutputValue};

/// How often a plane sends its summaries.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Rows a summary profiles at most: `CHUNK_CONFIG`'s exact size, so a summary is exact.
pub const SAMPLE_ROWS: usize = CHUNK_CONFIG.max_exact_values;

/// How long a version's schema (or its absence) is trusted before it is read again: a
/// reference created after a deployment is picked up within this.
pub(crate) const SCHEMA_TTL: Duration = Duration::from_secs(10);

/// The rows sampled since the last summary.
struct Chunk {
    /// Bumped at every summary, so a request that picked rows of an earlier chunk does not
    /// write them into this one.
    generation: u64,
    start_ms: i64,
    end_ms: i64,
    /// Rows seen (offered to the reservoir).
    seen: u64,
    /// The reservoir: a slot is empty until its request answered.
    slots: Vec<Option<(Vec<f32>, Option<Prediction>)>>,
    rng: fastrand::Rng,
}

impl Chunk {
    fn new(generation: u64) -> Chunk {
        Chunk {
            generation,
            start_ms: 0,
            end_ms: 0,
            seen: 0,
            slots: Vec::new(),
            rng: fastrand::Rng::new(),
        }
    }
}

/// Rows of one request the reservoir took: (row index in the request, slot, the row).
pub struct Picks {
    generation: u64,
    rows: Vec<(usize, usize, Vec<f32>)>,
}

/// One deployment's traffic to one version, being sampled.
pub struct LiveMonitor {
    pub deployment: String,
    pub version: String,
    pub schema: Arc<Schema>,
    chunk: Mutex<Chunk>,
}

impl LiveMonitor {
    pub fn new(deployment: &str, version: &str, schema: Arc<Schema>) -> LiveMonitor {
        LiveMonitor {
            deployment: deployment.to_owned(),
            version: version.to_owned(),
            chunk: Mutex::new(Chunk::new(0)),
            schema,
        }
    }

    /// Offers one request's rows to the reservoir (before the model runs on them): every row
    /// is counted, the ones taken are copied.
    pub fn pick(&self, rows: &[Vec<f32>]) -> Picks {
        let now = super::now_ms();
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        if chunk.seen == 0 {
            chunk.start_ms = now;
        }
        chunk.end_ms = now;
        let mut picks = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            chunk.seen += 1;
            let slot = if chunk.seen as usize <= SAMPLE_ROWS {
                chunk.seen as usize - 1
            } else {
                let seen = chunk.seen;
                let draw = chunk.rng.u64(0..seen);
                if draw >= SAMPLE_ROWS as u64 {
                    continue;
                }
                draw as usize
            };
            picks.push((index, slot, row.clone()));
        }
        Picks {
            generation: chunk.generation,
            rows: picks,
        }
    }

    /// Stores the picked rows with what the model answered for them.
    pub fn record(&self, picks: Picks, outputs: &[Output]) {
        if picks.rows.is_empty() {
            return;
        }
        let mut predictions = if self.schema.prediction.is_some() {
            predictions(outputs).into_iter().map(Some).collect()
        } else {
            Vec::new()
        };
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        if chunk.generation != picks.generation {
            return;
        }
        for (index, slot, row) in picks.rows {
            if chunk.slots.len() <= slot {
                chunk.slots.resize_with(slot + 1, || None);
            }
            let prediction = predictions.get_mut(index).and_then(Option::take);
            chunk.slots[slot] = Some((row, prediction));
        }
    }

    /// The summary of the rows seen since the last call, if any: the sample profiled, every
    /// row counted.
    pub fn take(&self) -> Option<Summary> {
        let chunk = {
            let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
            if chunk.seen == 0 {
                return None;
            }
            let next = Chunk::new(chunk.generation + 1);
            std::mem::replace(&mut *chunk, next)
        };
        let mut summary = Summary::new(&self.schema, CHUNK_CONFIG, chunk.start_ms);
        for (row, prediction) in chunk.slots.into_iter().flatten() {
            summary.push_row(&row);
            if let Some(prediction) = prediction {
                summary.push_prediction(prediction.raw());
            }
        }
        summary.rows = chunk.seen;
        summary.start_ms = chunk.start_ms;
        summary.end_ms = chunk.end_ms;
        Some(summary)
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

    #[test]
    fn the_sample_is_uniform_over_the_rows_seen_and_every_row_is_counted() {
        let schema = Arc::new(schema(ColumnType::Categorical));
        let monitor = LiveMonitor::new("d", "1", schema);
        let rows: Vec<Vec<f32>> = (0..256).map(|i| vec![i as f32]).collect();
        let labels = vec![Output {
            name: "label".into(),
            value: OutputValue::I64 {
                shape: vec![256],
                data: (0..256).map(|i| i % 2).collect(),
            },
        }];
        // 100 requests of 256 rows whose values run 0..25,600 in order: a uniform sample has
        // about as many values in each tenth of the range.
        for request in 0..100 {
            let rows: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| vec![r[0] + 256.0 * request as f32])
                .collect();
            let picks = monitor.pick(&rows);
            monitor.record(picks, &labels);
        }
        // A request picked before a summary was taken does not write into the next chunk.
        let late = monitor.pick(&rows);
        let summary = monitor.take().expect("rows");
        monitor.record(late, &labels);
        assert!(
            monitor.take().is_none(),
            "the late request's rows went nowhere"
        );
        assert_eq!(summary.rows, 100 * 256 + 256, "every row counted");
        let slipway_monitor::ColumnProfile::Numeric(x) = &summary.features[0] else {
            panic!("numeric");
        };
        assert_eq!(x.count(), SAMPLE_ROWS as u64);
        let values = match x.sorted_data() {
            slipway_monitor::profile::SortedData::Exact(v) => v.into_owned(),
            slipway_monitor::profile::SortedData::Weighted(_) => panic!("exact"),
        };
        for tenth in 0..10 {
            let low = tenth as f64 * 2_560.0;
            let n = values
                .iter()
                .filter(|v| **v >= low && **v < low + 2_560.0)
                .count();
            assert!(
                (130..=280).contains(&n),
                "tenth {tenth}: {n} of {}",
                values.len()
            );
        }
        // Each sampled row kept its own prediction (the parity of its index in the request).
        assert_eq!(
            summary.prediction.as_ref().map(|p| p.count()),
            Some(SAMPLE_ROWS as u64)
        );
    }

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
        let picks = monitor.pick(&[vec![1.0], vec![2.0], vec![3.0]]);
        monitor.record(picks, &labels);
        let picks = monitor.pick(&[vec![1.0], vec![2.0]]);
        monitor.record(picks, &probabilities);
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
        let picks = numeric.pick(&[vec![1.0], vec![2.0]]);
        numeric.record(picks, &scores);
        let summary = numeric.take().expect("rows");
        let slipway_monitor::ColumnProfile::Numeric(p) = summary.prediction.as_ref().unwrap()
        else {
            panic!("numeric");
        };
        assert_eq!(p.range(), Some((-2.0, 1.5)));
    }
}
