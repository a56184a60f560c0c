//! Ground truth that arrives late, and a deployment's performance: realized where labels have
//! joined the logged predictions, estimated (CBPE) from the classifier's own probabilities on
//! every logged prediction, per window of prediction time, beside the reference's.

use serde_json::{Value, json};
use slipway_core::deployment::PredictionRecord;
use slipway_core::{Error, Result};
use slipway_monitor::performance::{self, Labeled};

use crate::{App, now_ms};

/// Labels in one upload (a file is sent in batches of this size).
pub const MAX_LABELS: usize = 10_000;
/// Rows of one request a label may name (the prediction log keeps at most 100 per request).
const MAX_LABEL_ROWS: usize = 100;
/// Predicted rows read for one performance answer (each kept until its window's figures are
/// computed): the windows asked for are cut there.
const MAX_ROWS_READ: u64 = 200_000;
/// Logged predictions read at a time: memory holds one page (a record keeps at most 100 rows of
/// outputs), whatever the windows asked for.
const PAGE: usize = 2_000;

fn check_label(value: &Value) -> bool {
    let scalar = |v: &Value| match v {
        Value::String(s) => !s.is_empty() && s.len() <= 200,
        Value::Number(_) | Value::Bool(_) => true,
        _ => false,
    };
    match value {
        Value::Array(rows) => {
            !rows.is_empty() && rows.len() <= MAX_LABEL_ROWS && rows.iter().all(scalar)
        }
        other => scalar(other),
    }
}

/// A class or a value as performance compares it: integers and integral floats as integers,
/// text as itself.
fn class_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(u8::from(*b).to_string()),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i.to_string()),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Some((f as i64).to_string()),
            (None, Some(f)) => Some(f.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// What the model answered for one row, read back from the logged outputs.
#[derive(Debug, Default, Clone, PartialEq)]
struct RowOutput {
    class: Option<String>,
    score: Option<f64>,
    probabilities: Option<Vec<(String, f64)>>,
}

fn probabilities_of(row: &Value) -> Option<Vec<(String, f64)>> {
    match row {
        Value::Array(values) if values.len() > 1 => values
            .iter()
            .enumerate()
            .map(|(k, v)| v.as_f64().map(|p| (k.to_string(), p)))
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| v.as_f64().map(|p| (k.clone(), p)))
            .collect(),
        _ => None,
    }
}

fn argmax(probabilities: &[(String, f64)]) -> Option<String> {
    probabilities
        .iter()
        .fold(None::<&(String, f64)>, |best, item| match best {
            Some(b) if b.1 >= item.1 => Some(b),
            _ => Some(item),
        })
        .map(|(k, _)| k.clone())
}

/// The logged outputs of a request, row by row: one output (an array per row), or named
/// outputs (an object of arrays), of which an array of integers is the class, an array of
/// probability rows (or ZipMap maps) the probabilities, an array of single numbers a score.
fn read_outputs(outputs: &Value) -> Vec<RowOutput> {
    let columns: Vec<&Vec<Value>> = match outputs {
        Value::Array(rows) => vec![rows],
        Value::Object(map) => map.values().filter_map(Value::as_array).collect(),
        _ => return Vec::new(),
    };
    let rows = columns.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut read = vec![RowOutput::default(); rows];
    for column in columns {
        let integers = column.iter().all(|v| v.as_i64().is_some() || v.is_string());
        for (row, value) in read.iter_mut().zip(column) {
            if integers {
                row.class = row.class.take().or_else(|| class_of(value));
            } else if let Some(p) = probabilities_of(value) {
                row.probabilities = Some(p);
            } else if let Some(score) = value.as_f64().or_else(|| {
                value
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(Value::as_f64)
            }) {
                row.score = Some(score);
            }
        }
    }
    for row in &mut read {
        if row.class.is_none() {
            row.class = row.probabilities.as_deref().and_then(argmax);
        }
    }
    read
}

/// The truths of a request's rows: one per row for an array, the value itself for a
/// single-row request.
fn truths_of(label: &Value, rows: usize) -> Vec<Option<&Value>> {
    match label {
        Value::Array(values) => (0..rows).map(|i| values.get(i)).collect(),
        single if rows == 1 => vec![Some(single)],
        _ => vec![None; rows],
    }
}

/// One window's rows, as performance reads them.
#[derive(Default)]
struct WindowRows {
    labeled: Vec<Labeled>,
    scores: Vec<(f64, f64)>,
    probabilities: Vec<Vec<(String, f64)>>,
    predictions: u64,
}

impl WindowRows {
    fn add(&mut self, record: &PredictionRecord, label: Option<&Value>) {
        let outputs = read_outputs(&record.outputs);
        self.predictions += outputs.len() as u64;
        let truths = label.map(|l| truths_of(l, outputs.len()));
        for (i, output) in outputs.iter().enumerate() {
            if let Some(p) = &output.probabilities {
                self.probabilities.push(p.clone());
            }
            let Some(truth) = truths.as_ref().and_then(|t| t.get(i).copied().flatten()) else {
                continue;
            };
            match (&output.class, output.score) {
                (Some(class), _) => {
                    if let Some(truth) = class_of(truth) {
                        self.labeled.push(Labeled {
                            truth,
                            predicted: class.clone(),
                            probabilities: output.probabilities.clone(),
                        });
                    }
                }
                (None, Some(score)) => {
                    if let Some(truth) = truth.as_f64() {
                        self.scores.push((truth, score));
                    }
                }
                (None, None) => {}
            }
        }
    }

    fn report(&self) -> Value {
        json!({
            "predictions": self.predictions,
            "labeled": self.labeled.len() + self.scores.len(),
            "realized": performance::classification(&self.labeled)
                .map(|c| json!(c))
                .or_else(|| performance::regression(&self.scores).map(|r| json!(r))),
            "estimated": performance::estimate(&self.probabilities),
        })
    }
}

impl App {
    /// Stores true labels of a deployment's requests, by the request ids its responses carried.
    /// One audit entry per upload (counts, not values); returns how many matched a logged
    /// prediction.
    pub async fn upload_labels(
        &self,
        deployment: &str,
        labels: Vec<(String, Value)>,
    ) -> Result<Value> {
        self.get_deployment(deployment).await?;
        if labels.is_empty() || labels.len() > MAX_LABELS {
            return Err(Error::invalid(format!(
                "an upload carries 1 to {MAX_LABELS} labels, got {} (send a larger file in batches)",
                labels.len()
            )));
        }
        for (request_id, label) in &labels {
            if request_id.is_empty() || request_id.len() > 200 {
                return Err(Error::invalid(format!(
                    "a request id must have 1 to 200 bytes, got {request_id:?}"
                )));
            }
            if !check_label(label) {
                return Err(Error::invalid(format!(
                    "the label of request {request_id:?} must be a number, a boolean, a text of up to 200 bytes, or a list of up to {MAX_LABEL_ROWS} of them (one per row), got {label}"
                )));
            }
        }
        let count = labels.len();
        let mut labels = labels;
        if !self.seal_labels(deployment, &mut labels).await? {
            return Err(Error::invalid(format!(
                "the prediction log of deployment '{deployment}' is encrypted, and this server was started without the master key (--encryption-key): labels cannot be stored here"
            )));
        }
        let matched = self
            .audited(
                "deployments.labels",
                format!("deployment:{deployment}"),
                json!({ "labels": count }),
            )
            .put_labels(deployment, labels, now_ms())
            .await?;
        Ok(json!({ "labels": count, "matched": matched }))
    }

    /// A deployment's performance per window of prediction time (the latest `windows` of
    /// `window_ms`, newest first): realized where labels have arrived, estimated from the
    /// probabilities of every logged prediction, and the reference's.
    pub async fn performance(
        &self,
        deployment: &str,
        window_ms: i64,
        windows: usize,
    ) -> Result<Value> {
        let spec = self.get_deployment(deployment).await?;
        if window_ms < 1_000 || windows == 0 || windows > 1_000 {
            return Err(Error::invalid(
                "windows must last at least 1 s, and 1 to 1,000 of them may be asked for",
            ));
        }
        let now = now_ms();
        let end = crate::monitoring::window_end(now, window_ms);
        let start = end.saturating_sub(window_ms.saturating_mul(windows as i64));
        let mut buckets: Vec<WindowRows> = (0..windows).map(|_| WindowRows::default()).collect();
        let mut after_id = 0i64;
        let truncated = loop {
            let page = self
                .store()
                .predictions_with_labels(deployment, start, end, after_id, PAGE)
                .await?;
            let mut page = page;
            for (record, label) in &mut page {
                let (name, request) = (record.deployment.clone(), record.request_id.clone());
                self.unseal(&mut record.outputs, &name, &request, "outputs")
                    .await?;
                if let Some(label) = label.as_mut() {
                    self.unseal(label, &name, &request, "label").await?;
                }
            }
            for (record, label) in &page {
                let index = ((record.time_ms - start) / window_ms) as usize;
                if let Some(bucket) = buckets.get_mut(index) {
                    bucket.add(record, label.as_ref());
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => after_id = last.id,
                _ => break false,
            }
            if buckets.iter().map(|b| b.predictions).sum::<u64>() >= MAX_ROWS_READ {
                break true;
            }
        };
        let reference = match spec.stable_version.parse::<i64>() {
            Ok(version) => self
                .store()
                .get_monitor_reference(&spec.model_name, version)
                .await?
                .and_then(|r| r.performance),
            Err(_) => None,
        };
        let rows: Vec<Value> = buckets
            .iter()
            .enumerate()
            .rev()
            .map(|(i, rows)| {
                let mut report = rows.report();
                report["start_ms"] = json!(start + i as i64 * window_ms);
                report["end_ms"] = json!(start + (i as i64 + 1) * window_ms);
                report
            })
            .collect();
        Ok(json!({
            "deployment": deployment,
            "stable_version": spec.stable_version,
            "window_ms": window_ms,
            "reference": reference,
            "windows": rows,
            "truncated": truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_outputs_are_read_row_by_row() {
        // The breast-cancer fixture's answer: a label and probabilities, by name.
        let named = json!({"label": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]]});
        let rows = read_outputs(&named);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].class.as_deref(), Some("1"));
        assert_eq!(
            rows[1].probabilities,
            Some(vec![("0".into(), 0.9), ("1".into(), 0.1)])
        );
        // ZipMap maps: the class is the most probable key.
        let zipmap = json!([{"setosa": 0.1, "versicolor": 0.7, "virginica": 0.2}]);
        assert_eq!(
            read_outputs(&zipmap)[0].class.as_deref(),
            Some("versicolor")
        );
        // A regressor: one score per row (as a number or a one-element row).
        assert_eq!(read_outputs(&json!([[1.5], [2.5]]))[1].score, Some(2.5));
        assert_eq!(read_outputs(&json!([3.5]))[0].score, Some(3.5));
    }

    #[test]
    fn labels_join_rows_and_classes_meet_across_types() {
        let record = PredictionRecord {
            id: 1,
            deployment: "d".into(),
            request_id: "r".into(),
            time_ms: 0,
            variant: slipway_core::deployment::Variant::Stable,
            model_version: "1".into(),
            inputs: json!([[0.0], [0.0]]),
            outputs: json!({"label": [1, 0], "probabilities": [[0.2, 0.8], [0.6, 0.4]]}),
            latency_us: 0,
        };
        let mut window = WindowRows::default();
        window.add(&record, Some(&json!([1.0, "1"])));
        window.add(&record, None);
        let report = window.report();
        assert_eq!(report["predictions"], 4);
        assert_eq!(report["labeled"], 2);
        assert_eq!(report["realized"]["accuracy"], 0.5);
        assert_eq!(report["estimated"]["rows"], 4);
        assert!(check_label(&json!("fraud")) && check_label(&json!([0, 1])));
        assert!(!check_label(&json!({"a": 1})) && !check_label(&json!([])));
    }
}
