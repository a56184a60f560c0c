//! Explanations of a model's answers: `POST /explain` on `slipway serve`, and the server's
//! `POST /deployments/NAME/explain` through [`explain_deployment`] (the server adds its access
//! rule and reads the version's monitoring reference). The estimate itself is
//! [`slipway_monitor::explain`]'s; this module reads the request, decides which number of the
//! model's answer is explained, runs the model on the blocking pool and writes the answer.
//!
//! The body is JSON: the rows as `/invocations` takes them (`inputs`, `instances`,
//! `dataframe_split`, `dataframe_records`; named columns put in the signature's order), and
//! `samples` (default 100), `seed` (default: drawn, and answered), `class` (a classifier's
//! class to explain: its index, or its label for a ZipMap; default: each row's predicted
//! class), `variant` (`stable` or `candidate`, on a deployment) and `background` (rows to
//! draw the background from; on the server the version's monitoring reference is the default).
//!
//! What is explained: a classifier's probability of the class (a ZipMap output, else a float
//! output of several columns), else a regressor's value (a float output of one column). A
//! model that answers labels only has no number to attribute and is refused.
//!
//! One request costs at most [`explain::MAX_MODEL_ROWS`] model rows, run in calls of at most
//! [`explain::CHUNK_VALUES`] values while holding one place at the model (a session between
//! calls is free for live traffic), and at most [`at_once`] explanations run in a process at
//! a time. A request that times out or whose client leaves stops at its next call.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use slipway_core::deployment::Variant;
use slipway_monitor::explain::{self, Background, ExplainError, Options};
use slipway_monitor::live::{Schema, Summary};
use slipway_serving::model::ModelError;
use slipway_serving::signature::Signature;
use slipway_serving::{OnnxModel, Output, OutputValue};

use super::{Format, Limits, ScoringError, ScoringState, content_type, rows_from_json, too_large};
use crate::plane::monitor::{Prediction, predictions};
use crate::plane::{LoadedVersion, Plane, Served};

/// Bodies up to this size are read on the runtime's thread; a larger one (background rows) on
/// the blocking pool, as inference requests are.
const INLINE_PARSE_BYTES: usize = 16 * 1024;

/// Explanations running in this process now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Explanations a process runs at once: half its cores, and at least two. Each one is a
/// sustained batch job beside live traffic; more would only share the same cores, while the
/// answers of inference requests waited for them.
pub fn at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| (n.get() / 2).max(2))
}

/// A running explanation's place among [`at_once`]; freed when the computation ends, not
/// when its request does, so a request that timed out still counts until its work stops.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let most = at_once();
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < most).then_some(running + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells the computation to stop at its next model call once the request is gone (answered,
/// timed out, or its client left).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn internal(message: impl Into<String>) -> ScoringError {
    ScoringError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "INTERNAL_ERROR",
        message: message.into(),
    }
}

fn unavailable(message: impl Into<String>) -> Response {
    let mut response = ScoringError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "TEMPORARILY_UNAVAILABLE",
        message: message.into(),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn busy() -> Response {
    unavailable(format!(
        "{} explanations are running, the most this server runs at once; retry shortly",
        at_once()
    ))
}

/// `class`: an index (a column of the model's scores) or a label (a ZipMap key). Read by hand
/// so that any other value is refused where it stands instead of being buffered.
#[derive(Debug, Clone)]
enum ClassName {
    Index(i64),
    Label(String),
}

impl fmt::Display for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassName::Index(index) => write!(f, "{index}"),
            ClassName::Label(label) => f.write_str(label),
        }
    }
}

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Class;
        impl Visitor<'_> for Class {
            type Value = ClassName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a class: its index (an integer) or its label (text)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClassName, E> {
                Ok(ClassName::Index(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClassName, E> {
                i64::try_from(v)
                    .map(ClassName::Index)
                    .map_err(|_| E::custom("class: no model has that many classes"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClassName, E> {
                if v.len() > 250 {
                    return Err(E::custom("class: a label has at most 250 bytes"));
                }
                Ok(ClassName::Label(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Class)
    }
}

/// `background`: rows of numbers, counted while they are read (at most
/// [`explain::MAX_BACKGROUND_ROWS`] rows of [`explain::MAX_FEATURES`] values), so a body
/// cannot make the server hold more than about 5 MiB of them.
struct BackgroundRows(Vec<Vec<f32>>);

impl<'de> Deserialize<'de> for BackgroundRows {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rows;
        impl<'de> Visitor<'de> for Rows {
            type Value = BackgroundRows;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("background rows: a list of lists of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BackgroundRows, A::Error> {
                let mut rows = Vec::new();
                while let Some(BackgroundRow(row)) = seq.next_element()? {
                    if rows.len() == explain::MAX_BACKGROUND_ROWS {
                        return Err(de::Error::custom(format!(
                            "background: more than {} rows; send a sample of them",
                            explain::MAX_BACKGROUND_ROWS
                        )));
                    }
                    rows.push(row);
                }
                Ok(BackgroundRows(rows))
            }
        }
        deserializer.deserialize_seq(Rows)
    }
}

struct BackgroundRow(Vec<f32>);

impl<'de> Deserialize<'de> for BackgroundRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> Visitor<'de> for Row {
            type Value = BackgroundRow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a background row: a list of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BackgroundRow, A::Error> {
                let mut row = Vec::new();
                while let Some(value) = seq.next_element::<f64>()? {
                    if row.len() == explain::MAX_FEATURES {
                        return Err(de::Error::custom(format!(
                            "background: a row has more than {} values",
                            explain::MAX_FEATURES
                        )));
                    }
                    let narrowed = value as f32;
                    if !narrowed.is_finite() {
                        return Err(de::Error::custom(format!(
                            "background: {value:e} is out of range for float32"
                        )));
                    }
                    row.push(narrowed);
                }
                Ok(BackgroundRow(row))
            }
        }
        deserializer.deserialize_seq(Row)
    }
}

/// The parameters of an explanation; every other key (the rows' own) is skipped unread.
#[derive(Deserialize)]
struct Params {
    samples: Option<usize>,
    seed: Option<u64>,
    variant: Option<String>,
    class: Option<ClassName>,
    background: Option<BackgroundRows>,
}

/// The parameters of a JSON body: CSV, which `/invocations` also takes, has no place for them.
fn params(headers: &HeaderMap, body: &[u8]) -> Result<Params, ScoringError> {
    if let Format::Csv = content_type(headers)? {
        return Err(ScoringError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "UNSUPPORTED_MEDIA_TYPE",
            message: "an explanation takes a JSON body (application/json): the rows as \
                      /invocations takes them, and its parameters"
                .to_owned(),
        });
    }
    serde_json::from_slice(body).map_err(|e| ScoringError::invalid(e.to_string()))
}

/// The rows to explain as the model takes them, and their columns' names when the signature
/// or the request names them.
fn explained_rows(
    body: &[u8],
    input_name: &str,
    signature: Option<&Signature>,
    limits: &Limits,
) -> Result<super::body::Named, ScoringError> {
    let max_rows = limits.max_rows.clamp(1, explain::MAX_ROWS);
    let bounded = Limits {
        max_rows,
        max_values: limits
            .max_values
            .min(explain::MAX_ROWS * explain::MAX_FEATURES),
        ..*limits
    };
    let (rows, columns) = rows_from_json(body, input_name, &bounded).map_err(|error| {
        if error.status == StatusCode::PAYLOAD_TOO_LARGE {
            ScoringError::invalid(format!(
                "an explanation takes at most {max_rows} rows of at most {} values; send fewer rows",
                explain::MAX_FEATURES
            ))
        } else {
            error
        }
    })?;
    let Some(signature) = signature else {
        return Ok((rows, columns));
    };
    let names = signature
        .input_names()
        .map(|names| names.into_iter().map(str::to_owned).collect::<Vec<_>>());
    let arranged = match (&names, columns) {
        (Some(_), Some(columns)) => signature.arrange_named_rows(&columns, rows),
        (_, columns) => {
            return signature
                .check_unnamed_rows(&rows)
                .map(|()| (rows, columns))
                .map_err(|mismatch| ScoringError::invalid(mismatch.message().to_owned()));
        }
    };
    arranged
        .map(|rows| (rows, names))
        .map_err(|mismatch| ScoringError::invalid(mismatch.message().to_owned()))
}

/// What a request asks, read and checked before any model runs.
struct Parsed {
    rows: Vec<Vec<f32>>,
    names: Option<Vec<String>>,
    samples: usize,
    seed: u64,
    class: Option<ClassName>,
    background: Option<Vec<Vec<f32>>>,
}

fn parse(
    body: &[u8],
    input_name: &str,
    signature: Option<&Signature>,
    limits: &Limits,
    params: Params,
) -> Result<Parsed, ScoringError> {
    let (rows, names) = explained_rows(body, input_name, signature, limits)?;
    let samples = params.samples.unwrap_or(explain::DEFAULT_SAMPLES);
    let width = rows.first().map_or(0, Vec::len);
    explain::plan(rows.len(), width, samples).map_err(ScoringError::invalid)?;
    Ok(Parsed {
        rows,
        names,
        samples,
        // Within 2^53, so every JSON client reads the seed back exactly.
        seed: params.seed.unwrap_or_else(|| fastrand::u64(..1 << 53)),
        class: params.class,
        background: params.background.map(|rows| rows.0),
    })
}

async fn off_thread<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> Result<T, ScoringError> + Send + 'static,
) -> Result<T, ScoringError> {
    if !large {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(internal(format!("reading the request stopped: {e}"))))
}

/// How the model's answer is read as one number per row.
enum Reading {
    /// One value per row of a float output (a regressor).
    Value { output: usize },
    /// A float output of several columns: a classifier's probabilities (`classes`) or scores.
    Columns {
        output: usize,
        width: usize,
        classes: bool,
    },
    /// A ZipMap: class label to probability, per row.
    Maps { output: usize },
}

/// Which number of a row's answer is explained.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    Column(usize),
    Label(String),
}

/// The number explained for each explained row.
struct Target {
    reading: Reading,
    output_name: String,
    /// Per explained row; empty for a value.
    classes: Vec<Class>,
}

/// Values per row of a float output, when it has a row dimension of `rows`.
fn row_width(value: &OutputValue, rows: usize) -> Option<usize> {
    let len = match value {
        OutputValue::F32 { data, .. } => data.len(),
        OutputValue::F64 { data, .. } => data.len(),
        _ => return None,
    };
    (rows > 0 && value.row_count() == Some(rows) && len % rows == 0 && len > 0)
        .then_some(len / rows)
}

impl Target {
    /// Decided on the model's answer to the explained rows themselves.
    fn decide(
        outputs: &[Output],
        rows: usize,
        asked: Option<&ClassName>,
    ) -> Result<Target, ScoringError> {
        let maps = outputs
            .iter()
            .position(|o| matches!(o.value, OutputValue::Maps(_)));
        let columns = outputs
            .iter()
            .position(|o| row_width(&o.value, rows).is_some_and(|w| w > 1));
        let single = outputs
            .iter()
            .position(|o| row_width(&o.value, rows) == Some(1));
        let labelled = outputs
            .iter()
            .any(|o| matches!(o.value, OutputValue::I64 { .. }));
        if let Some(output) = maps {
            let OutputValue::Maps(answers) = &outputs[output].value else {
                return Err(internal("a ZipMap output changed its kind"));
            };
            let keys: Vec<&String> = answers.first().map_or(Vec::new(), |m| m.keys().collect());
            let classes = match asked {
                Some(class) => {
                    let wanted = class.to_string();
                    let Some(key) = keys.iter().find(|k| same_label(k, &wanted)) else {
                        let shown: Vec<&str> = keys.iter().take(20).map(|k| k.as_str()).collect();
                        return Err(ScoringError::invalid(format!(
                            "class {wanted}: the model's output '{}' has the classes {shown:?}",
                            outputs[output].name
                        )));
                    };
                    vec![Class::Label((*key).clone()); rows]
                }
                None => {
                    let predicted = predictions(std::slice::from_ref(&outputs[output]));
                    predicted
                        .iter()
                        .zip(answers)
                        .map(|(prediction, answer)| {
                            let wanted = match prediction {
                                Prediction::Class(class) => class.to_string(),
                                Prediction::Label(label) => label.clone(),
                                _ => return Err(internal("a row's ZipMap named no class")),
                            };
                            answer
                                .keys()
                                .find(|k| same_label(k, &wanted))
                                .map(|k| Class::Label(k.clone()))
                                .ok_or_else(|| {
                                    internal("a row's predicted class is not in its map")
                                })
                        })
                        .collect::<Result<_, _>>()?
                }
            };
            return Ok(Target {
                reading: Reading::Maps { output },
                output_name: outputs[output].name.clone(),
                classes,
            });
        }
        if let Some(output) = columns {
            let width = row_width(&outputs[output].value, rows).unwrap_or(1);
            let classes = match asked {
                Some(class) => {
                    let index = match class {
                        ClassName::Index(index) => usize::try_from(*index).ok(),
                        ClassName::Label(label) => label.trim().parse::<usize>().ok(),
                    };
                    match index.filter(|i| *i < width) {
                        Some(index) => vec![Class::Column(index); rows],
                        None => {
                            return Err(ScoringError::invalid(format!(
                                "class {class}: the model's output '{}' has {width} columns; name a class by its index, 0 to {}",
                                outputs[output].name,
                                width - 1
                            )));
                        }
                    }
                }
                None => predictions(std::slice::from_ref(&outputs[output]))
                    .into_iter()
                    .map(|prediction| match prediction {
                        Prediction::Class(class) => usize::try_from(class)
                            .map(Class::Column)
                            .map_err(|_| internal("a negative class index")),
                        _ => Err(internal("a row of scores named no class")),
                    })
                    .collect::<Result<_, _>>()?,
            };
            return Ok(Target {
                reading: Reading::Columns {
                    output,
                    width,
                    classes: labelled,
                },
                output_name: outputs[output].name.clone(),
                classes,
            });
        }
        if let Some(output) = single {
            if let Some(class) = asked {
                return Err(ScoringError::invalid(format!(
                    "class {class}: the model answers one value per row (output '{}'), so there is no class to choose",
                    outputs[output].name
                )));
            }
            return Ok(Target {
                reading: Reading::Value { output },
                output_name: outputs[output].name.clone(),
                classes: Vec::new(),
            });
        }
        Err(ScoringError::invalid(
            "the model answers no probability or value per row (labels only, or no row \
             dimension): there is no number to attribute",
        ))
    }

    /// The explained number of each model row, for the explained row `owners[k]`.
    fn values(&self, outputs: &[Output], owners: &[usize]) -> Result<Vec<f64>, ScoringError> {
        let unreadable = || {
            internal(format!(
                "the model's output '{}' changed its shape between calls",
                self.output_name
            ))
        };
        let column = |owner: usize| match self.classes.get(owner) {
            Some(Class::Column(column)) => *column,
            _ => 0,
        };
        let floats = |value: &OutputValue, width: usize| -> Option<Vec<f64>> {
            if row_width(value, owners.len()) != Some(width) {
                return None;
            }
            match value {
                OutputValue::F32 { data, .. } => owners
                    .iter()
                    .enumerate()
                    .map(|(k, &o)| data.get(k * width + column(o)).map(|v| f64::from(*v)))
                    .collect(),
                OutputValue::F64 { data, .. } => owners
                    .iter()
                    .enumerate()
                    .map(|(k, &o)| data.get(k * width + column(o)).copied())
                    .collect(),
                _ => None,
            }
        };
        let read = match &self.reading {
            Reading::Value { output } => outputs.get(*output).and_then(|o| floats(&o.value, 1)),
            Reading::Columns { output, width, .. } => {
                outputs.get(*output).and_then(|o| floats(&o.value, *width))
            }
            Reading::Maps { output } => match outputs.get(*output).map(|o| &o.value) {
                Some(OutputValue::Maps(answers)) if answers.len() == owners.len() => owners
                    .iter()
                    .zip(answers)
                    .map(|(&owner, answer)| match self.classes.get(owner) {
                        Some(Class::Label(key)) => answer.get(key).map(|v| f64::from(*v)),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            },
        };
        read.ok_or_else(unreadable)
    }

    /// The explained row's class (JSON null for a value) and what its number is.
    fn describe(&self, row: usize) -> (Value, String) {
        match (&self.reading, self.classes.get(row)) {
            (Reading::Columns { classes: true, .. }, Some(Class::Column(column))) => {
                (json!(column), format!("probability of class {column}"))
            }
            (Reading::Columns { .. }, Some(Class::Column(column))) => (
                json!(column),
                format!("column {column} of output '{}'", self.output_name),
            ),
            (Reading::Maps { .. }, Some(Class::Label(label))) => {
                (json!(label), format!("probability of class {label}"))
            }
            _ => (Value::Null, "value".to_owned()),
        }
    }
}

/// A ZipMap key names the class `wanted` (`"1"` is class 1, and so is `"01"`).
fn same_label(key: &str, wanted: &str) -> bool {
    key == wanted
        || matches!(
            (key.trim().parse::<i64>(), wanted.trim().parse::<i64>()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// A version's monitoring reference as the store holds it.
pub struct StoredReference {
    /// The engine's [`Schema`], as JSON.
    pub schema: Value,
    /// The engine's [`Summary`], as JSON.
    pub summary: Value,
}

enum BackgroundSource {
    Rows(Vec<Vec<f32>>),
    Reference(StoredReference),
}

/// Why the model calls stopped.
enum Stop {
    Cancelled,
    Model(ModelError),
    Target(ScoringError),
}

/// One explanation, run on the blocking pool.
struct Job {
    model: Arc<OnnxModel>,
    parsed: Parsed,
    background: BackgroundSource,
    cancel: Arc<AtomicBool>,
}

impl Job {
    fn run(self) -> Result<Map<String, Value>, ScoringError> {
        let Parsed {
            rows,
            names,
            samples,
            seed,
            class,
            ..
        } = self.parsed;
        let width = rows.first().map_or(0, Vec::len);
        let (background, names) = match self.background {
            BackgroundSource::Rows(background) => (
                Background::from_rows(background)
                    .map_err(|why| ScoringError::invalid(format!("background: {why}")))?,
                names,
            ),
            BackgroundSource::Reference(stored) => {
                let schema: Schema = serde_json::from_value(stored.schema)
                    .map_err(|e| internal(format!("reading the stored reference's schema: {e}")))?;
                let summary: Summary = serde_json::from_value(stored.summary).map_err(|e| {
                    internal(format!("reading the stored reference's summary: {e}"))
                })?;
                if schema.features.len() != width || summary.features.len() != width {
                    return Err(ScoringError::invalid(format!(
                        "the rows have {width} values, the version's monitoring reference {} features",
                        schema.features.len()
                    )));
                }
                let names = schema.features.into_iter().map(|f| f.name).collect();
                (Background::from_summary(&summary), Some(names))
            }
        };
        let names: Vec<String> = names
            .filter(|names| names.len() == width)
            .unwrap_or_else(|| (0..width).map(|i| format!("feature_{i}")).collect());
        let model = self.model;
        let cancel = self.cancel;
        let mut target: Option<Target> = None;
        let explained = explain::explain(
            &rows,
            &background,
            &Options { samples, seed },
            |batch: &[Vec<f32>], owners: &[usize]| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Stop::Cancelled);
                }
                let outputs = model.predict_rows(batch).map_err(Stop::Model)?;
                if target.is_none() {
                    target = Some(
                        Target::decide(&outputs, batch.len(), class.as_ref())
                            .map_err(Stop::Target)?,
                    );
                }
                match &target {
                    Some(target) => target.values(&outputs, owners).map_err(Stop::Target),
                    None => Err(Stop::Target(internal("no reading of the model's answer"))),
                }
            },
        )
        .map_err(|error| match error {
            ExplainError::Invalid(message) => ScoringError::invalid(message),
            ExplainError::Unreadable(message) => {
                internal(format!("the model's answer could not be read: {message}"))
            }
            ExplainError::Model(Stop::Cancelled) => ScoringError {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "DEADLINE_EXCEEDED",
                message: "the explanation was stopped: its request ended".to_owned(),
            },
            ExplainError::Model(Stop::Model(ModelError::BadInput(message))) => {
                ScoringError::invalid(message)
            }
            ExplainError::Model(Stop::Model(other)) => internal(format!(
                "Encountered an unexpected error while evaluating the model: {other}"
            )),
            ExplainError::Model(Stop::Target(error)) => error,
        })?;
        let Some(target) = target else {
            return Err(internal("the model was never run"));
        };
        let mut outputs = Vec::with_capacity(rows.len());
        let answered: Vec<Value> = explained
            .rows
            .iter()
            .zip(&rows)
            .enumerate()
            .map(|(index, (row, values))| {
                let (class, output) = target.describe(index);
                let attributions: Vec<Value> = names
                    .iter()
                    .zip(values)
                    .zip(row.attributions.iter().zip(&row.stderr))
                    .map(|((feature, value), (attribution, stderr))| {
                        json!({
                            "feature": feature,
                            "value": f64::from(*value),
                            "attribution": attribution,
                            "stderr": stderr,
                        })
                    })
                    .collect();
                let answer = json!({
                    "prediction": row.prediction,
                    "class": class,
                    "output": output,
                    "base_value": row.base_value,
                    "base_stderr": row.base_stderr,
                    "efficiency_gap": row.efficiency_gap,
                    "attributions": attributions,
                });
                outputs.push(output);
                answer
            })
            .collect();
        // Rows of one class share their base value (the same background draws): said once.
        let shared = outputs.windows(2).all(|pair| pair[0] == pair[1]);
        let mut answer = Map::new();
        answer.insert("samples".into(), json!(explained.samples));
        answer.insert("seed".into(), json!(explained.seed));
        answer.insert("background".into(), json!(background.kind()));
        answer.insert("model_rows".into(), json!(explained.model_rows));
        answer.insert(
            "output".into(),
            if shared {
                json!(outputs.first())
            } else {
                Value::Null
            },
        );
        answer.insert(
            "base_value".into(),
            match explained.rows.first() {
                Some(first) if shared => json!(first.base_value),
                _ => Value::Null,
            },
        );
        answer.insert("rows".into(), Value::Array(answered));
        Ok(answer)
    }
}

/// Runs `job` on the blocking pool, holding `hold` (its permits) until the work stops.
async fn run(job: Job, hold: impl Send + 'static) -> Result<Map<String, Value>, ScoringError> {
    let _cancel = CancelOnDrop(job.cancel.clone());
    tokio::task::spawn_blocking(move || {
        let _hold = hold;
        job.run()
    })
    .await
    .unwrap_or_else(|e| Err(internal(format!("the explanation stopped: {e}"))))
}

/// `POST /explain` on `slipway serve`: there is no store, so the background is the request's
/// `background` rows.
pub(crate) async fn serve(
    State(state): State<ScoringState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let (status, message) = too_large(&rejection);
            return ScoringError {
                status,
                code: "INVALID_PARAMETER_VALUE",
                message,
            }
            .into_response();
        }
    };
    let input_name = state
        .model
        .inputs()
        .first()
        .map(|input| input.name.clone())
        .unwrap_or_default();
    let (signature, limits) = (state.signature.clone(), state.limits);
    let large = body.len() > INLINE_PARSE_BYTES;
    let parsed = off_thread(large, move || {
        let params = params(&headers, &body)?;
        parse(&body, &input_name, signature.as_deref(), &limits, params)
    })
    .await;
    let mut parsed = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return error.into_response(),
    };
    let Some(background) = parsed.background.take() else {
        return ScoringError::invalid(
            "send the rows to draw the background from as \"background\": [[...], ...] (a sample \
             of the data the model was validated on); slipway serve has no store to read a \
             monitoring reference from",
        )
        .into_response();
    };
    // Taken once the request is read: a client sending its body slowly holds no slot.
    let Some(slot) = Slot::take() else {
        return busy();
    };
    let Ok(permit) = state.work.clone().acquire_owned().await else {
        return internal("the server is shutting down").into_response();
    };
    let job = Job {
        model: state.model.clone(),
        parsed,
        background: BackgroundSource::Rows(background),
        cancel: Arc::new(AtomicBool::new(false)),
    };
    match run(job, (permit, slot)).await {
        Ok(mut answer) => {
            answer.insert(
                "model".into(),
                json!({"name": &*state.name, "version": state.version.as_deref()}),
            );
            axum::Json(Value::Object(answer)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// Which version of a deployment explains: `variant` (`stable`, the default, or
/// `candidate`). A candidate its promotion policy sealed answers nothing, this included.
fn choose(served: &Served, asked: Option<&str>) -> Result<Arc<LoadedVersion>, ScoringError> {
    let variant = match asked {
        None => Variant::Stable,
        Some(text) => Variant::parse(text).ok_or_else(|| {
            ScoringError::invalid(format!(
                "variant must be 'stable' or 'candidate', got '{text}'"
            ))
        })?,
    };
    match variant {
        Variant::Stable => Ok(served.stable.clone()),
        Variant::Candidate => {
            let Some(candidate) = &served.candidate else {
                return Err(ScoringError::invalid(format!(
                    "deployment '{}' has no rollout running: there is no candidate to explain",
                    served.spec.name
                )));
            };
            if served
                .spec
                .active_rollout()
                .is_some_and(|rollout| rollout.unapproved_weight_cap == Some(0))
            {
                return Err(ScoringError {
                    status: StatusCode::FORBIDDEN,
                    code: "PERMISSION_DENIED",
                    message: format!(
                        "the candidate of deployment '{}' failed its promotion policy's checks and is not approved: it answers nothing until a promotion makes it stable",
                        served.spec.name
                    ),
                });
            }
            Ok(candidate.clone())
        }
    }
}

/// `POST /deployments/NAME/explain`: the deployment's stable (or candidate) version explains
/// the request's rows against its monitoring reference, which `reference(model, version)`
/// reads (called only when the request sends no `background` rows). The request holds one of
/// the deployment's in-flight permits and a place at the version's model while it runs, as
/// an inference request does, and stops at the plane's request timeout.
pub async fn explain_deployment<F, Fut>(
    plane: Arc<Plane>,
    name: String,
    request: Request,
    reference: F,
) -> Response
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = Result<Option<StoredReference>, Response>>,
{
    let Some(served) = plane.get_fresh(&name).await else {
        return match plane.not_ready_reason(&name) {
            Some(reason) => unavailable(format!("deployment '{name}' is not ready: {reason}")),
            None => ScoringError {
                status: StatusCode::NOT_FOUND,
                code: "RESOURCE_DOES_NOT_EXIST",
                message: format!("Model with name {name} does not exist."),
            }
            .into_response(),
        };
    };
    let Ok(in_flight) = served.in_flight.clone().try_acquire_owned() else {
        return unavailable("the deployment is at its limit of requests in flight; retry shortly");
    };
    let limits = plane.config.limits;
    let work = async move {
        let headers = request.headers().clone();
        // Read only now that the request holds its permits, as an inference request's body.
        let body = match Bytes::from_request(request, &()).await {
            Ok(body) => body,
            Err(rejection) => {
                let (status, message) = too_large(&rejection);
                return ScoringError {
                    status,
                    code: "INVALID_PARAMETER_VALUE",
                    message,
                }
                .into_response();
            }
        };
        let large = body.len() > INLINE_PARSE_BYTES;
        let chooser = served.clone();
        let parsed = off_thread(large, move || {
            let params = params(&headers, &body)?;
            let loaded = choose(&chooser, params.variant.as_deref())?;
            let parsed = parse(
                &body,
                loaded.input_name(),
                loaded.signature.as_deref(),
                &limits,
                params,
            )?;
            Ok((loaded, parsed))
        })
        .await;
        let (loaded, mut parsed) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return error.into_response(),
        };
        // Taken once the request is read: a client sending its body slowly holds no slot.
        let Some(slot) = Slot::take() else {
            return busy();
        };
        let model_name = served.spec.model_name.clone();
        let background = match parsed.background.take() {
            Some(rows) => BackgroundSource::Rows(rows),
            None => match reference(model_name.clone(), loaded.version.clone()).await {
                Ok(Some(stored)) => BackgroundSource::Reference(stored),
                Ok(None) => {
                    return ScoringError::invalid(format!(
                        "version {version} of '{model_name}' has no monitoring reference to draw the background from: create one with `slipway monitor reference create models:/{model_name}/{version} --data FILE`, or send rows as \"background\": [[...], ...]",
                        version = loaded.version
                    ))
                    .into_response();
                }
                Err(response) => return response,
            },
        };
        let admitted = match loaded.admit(limits.max_queue_wait).await {
            Ok(admitted) => admitted,
            Err(crate::plane::RunError::Full(why)) => return unavailable(why),
            Err(crate::plane::RunError::BadInput(message)) => {
                return ScoringError::invalid(message).into_response();
            }
            Err(crate::plane::RunError::Failed(message)) => {
                return internal(message).into_response();
            }
        };
        let job = Job {
            model: loaded.model.clone(),
            parsed,
            background,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        match run(job, (admitted, slot)).await {
            Ok(mut answer) => {
                answer.insert("deployment".into(), json!(served.spec.name));
                answer.insert(
                    "variant".into(),
                    json!(if Arc::ptr_eq(&loaded, &served.stable) {
                        "stable"
                    } else {
                        "candidate"
                    }),
                );
                answer.insert(
                    "model".into(),
                    json!({"name": model_name, "version": loaded.version}),
                );
                axum::Json(Value::Object(answer)).into_response()
            }
            Err(error) => error.into_response(),
        }
    };
    let response = match tokio::time::timeout(limits.timeout, work).await {
        Ok(response) => response,
        Err(_) => ScoringError {
            status: StatusCode::GATEWAY_TIMEOUT,
            code: "DEADLINE_EXCEEDED",
            message: "Request processing time exceeded limit".to_owned(),
        }
        .into_response(),
    };
    drop(in_flight);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, value: OutputValue) -> Output {
        Output {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn a_classifier_explains_each_rows_predicted_class_and_a_regressor_its_value() {
        let outputs = vec![
            output(
                "label",
                OutputValue::I64 {
                    shape: vec![2],
                    data: vec![1, 0],
                },
            ),
            output(
                "probabilities",
                OutputValue::F32 {
                    shape: vec![2, 2],
                    data: vec![0.25, 0.75, 0.9, 0.1],
                },
            ),
        ];
        let target = Target::decide(&outputs, 2, None).ok().unwrap();
        assert_eq!(target.classes, vec![Class::Column(1), Class::Column(0)]);
        assert_eq!(target.describe(0).1, "probability of class 1");
        let wide = |values: &[f32]| Some(values.iter().map(|v| f64::from(*v)).collect::<Vec<_>>());
        assert_eq!(target.values(&outputs, &[0, 1]).ok(), wide(&[0.75, 0.9]));
        // Another class on request, and one the model does not have.
        let asked = Target::decide(&outputs, 2, Some(&ClassName::Index(1)))
            .ok()
            .unwrap();
        assert_eq!(asked.values(&outputs, &[0, 1]).ok(), wide(&[0.75, 0.1]));
        let refused = Target::decide(&outputs, 2, Some(&ClassName::Index(2)))
            .err()
            .unwrap();
        assert!(refused.message.contains("0 to 1"), "{}", refused.message);

        let zipmap = vec![output(
            "probabilities",
            OutputValue::Maps(vec![
                [("0".to_owned(), 0.2), ("1".to_owned(), 0.8)].into(),
                [("0".to_owned(), 0.6), ("1".to_owned(), 0.4)].into(),
            ]),
        )];
        let target = Target::decide(&zipmap, 2, None).ok().unwrap();
        assert_eq!(
            target.values(&zipmap, &[0, 1]).ok(),
            Some(vec![0.800000011920929, 0.6000000238418579])
        );
        let label = Target::decide(&zipmap, 2, Some(&ClassName::Label("1".into())))
            .ok()
            .unwrap();
        assert_eq!(label.describe(1).1, "probability of class 1");
        assert!(Target::decide(&zipmap, 2, Some(&ClassName::Label("7".into()))).is_err());

        let regressor = vec![output(
            "variable",
            OutputValue::F32 {
                shape: vec![2, 1],
                data: vec![1.5, -2.0],
            },
        )];
        let target = Target::decide(&regressor, 2, None).ok().unwrap();
        assert_eq!(target.describe(0), (Value::Null, "value".to_owned()));
        assert_eq!(
            target.values(&regressor, &[0, 1]).ok(),
            Some(vec![1.5, -2.0])
        );
        assert!(Target::decide(&regressor, 2, Some(&ClassName::Index(0))).is_err());

        let labels_only = vec![outputs[0].clone()];
        let refused = Target::decide(&labels_only, 2, None).err().unwrap();
        assert!(
            refused.message.contains("labels only"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn parameters_are_read_within_bounds_and_nothing_else_is_buffered() {
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let read = |body: &str| params(&json, body.as_bytes());
        let got = read(r#"{"inputs": [[1, 2]], "samples": 50, "seed": 3, "class": "1", "background": [[1, 2], [3, 4]]}"#)
            .ok()
            .unwrap();
        assert_eq!((got.samples, got.seed), (Some(50), Some(3)));
        assert_eq!(got.background.map(|b| b.0.len()), Some(2));
        for (body, says) in [
            (r#"{"class": [1, 2]}"#, "a class"),
            (r#"{"samples": -1}"#, "invalid value"),
            (r#"{"background": [[1e39]]}"#, "out of range"),
            (r#"{"background": [[null]]}"#, "invalid type"),
            (r#"{"samples": 1, "samples": 2}"#, "duplicate"),
        ] {
            let error = read(body).err().unwrap();
            assert!(error.message.contains(says), "{body}: {}", error.message);
        }
        let wide = format!(r#"{{"background": [[{}]]}}"#, vec!["1"; 129].join(","));
        assert!(read(&wide).err().unwrap().message.contains("more than 128"));
        let many = format!(
            r#"{{"background": [{}]}}"#,
            vec!["[1]"; explain::MAX_BACKGROUND_ROWS + 1].join(",")
        );
        assert!(read(&many).err().unwrap().message.contains("send a sample"));
    }
}
