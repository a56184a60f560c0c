//! Scoring bodies read straight into rows, within a budget checked as the parser goes.
//!
//! A `serde_json::Value` tree costs 30 to 80 bytes per number, so a 28 MiB `{"inputs": ...}`
//! once took 4 GB before anything looked at its size. Here every shape (MLflow's `inputs`,
//! `instances`, `dataframe_split`, `dataframe_records`, CSV, and V2's `inputs[].data`) is read
//! by a visitor that writes f32 values into rows and counts rows and values against
//! [`Budget`]; past either limit the parse stops with 413. What a body can make us hold is then
//! the budget times a small constant (a `Vec` per row, 4 bytes per value), plus at most one
//! short-lived string per object key.
//!
//! Domain errors raised inside a visitor (over budget, a number beyond f32, a duplicate key)
//! are parked in [`Ctx`] and replace serde's error when the parse unwinds, so they keep their
//! status and wording.

use std::collections::HashMap;
use std::fmt;

use axum::http::StatusCode;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ScoringError;

/// Default for `--max-rows`: far above the batches tabular clients send (MLflow's own docs use
/// tens to thousands of rows), and it keeps the per-row `Vec` overhead under 10 MB.
pub const DEFAULT_MAX_ROWS: usize = 100_000;
/// Default for `--max-values`: 4 Mi values are 16 MiB of f32, the input tensor's size; with the
/// parse and the tensor copy a request then holds well under 100 MB.
pub const DEFAULT_MAX_VALUES: usize = 4 * 1024 * 1024;
/// Named columns (a `dataframe_split`'s `columns`, a record's keys) kept at most: each costs a
/// string and a map entry, so they get a bound of their own, well above the feature counts of
/// tabular models.
pub const MAX_COLUMNS: usize = 65_536;
/// Dimensions of a V2 shape, and outputs a V2 request may name.
const MAX_V2_LIST: usize = 64;
/// Keys of an MLflow body quoted back when it has no single input field.
const MAX_KEYS_QUOTED: usize = 32;

/// Rows and values one request may carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub max_rows: usize,
    pub max_values: usize,
    rows: usize,
    values: usize,
}

impl Budget {
    pub(crate) fn new(max_rows: usize, max_values: usize) -> Self {
        Budget {
            max_rows,
            max_values,
            rows: 0,
            values: 0,
        }
    }

    pub(super) fn row(&mut self) -> Result<(), ScoringError> {
        self.rows += 1;
        if self.rows > self.max_rows {
            return Err(too_much(format!(
                "the request has more than {} rows, the limit (--max-rows); send smaller batches",
                self.max_rows
            )));
        }
        Ok(())
    }

    pub(super) fn values(&mut self, count: usize) -> Result<(), ScoringError> {
        self.values = self.values.saturating_add(count);
        if self.values > self.max_values {
            return Err(too_much(format!(
                "the request has more than {} values, the limit (--max-values); send smaller batches",
                self.max_values
            )));
        }
        Ok(())
    }

    /// Rows a request declares up front (a V2 shape), before reading them.
    fn declared_rows(&mut self, rows: u64) -> Result<(), ScoringError> {
        if rows > self.max_rows as u64 {
            return Err(too_much(format!(
                "the request has {rows} rows, more than the limit of {} (--max-rows); send smaller batches",
                self.max_rows
            )));
        }
        Ok(())
    }
}

fn too_much(message: String) -> ScoringError {
    ScoringError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "INVALID_PARAMETER_VALUE",
        message,
    }
}

/// A finite JSON number as the model's f32; one that only f64 can hold is the client's
/// mistake, not an infinity to feed the model.
pub(crate) fn to_f32(value: f64, at: impl fmt::Display) -> Result<f32, ScoringError> {
    let narrowed = value as f32;
    if value.is_finite() && !narrowed.is_finite() {
        return Err(ScoringError::invalid(format!(
            "{at}: {value:e} is out of range for float32 (at most {:e} in magnitude)",
            f32::MAX
        )));
    }
    Ok(narrowed)
}

/// The budget, and the domain error that stopped a parse (serde only carries text).
struct Ctx {
    budget: Budget,
    error: Option<ScoringError>,
}

impl Ctx {
    fn fail<E: de::Error>(&mut self, error: ScoringError) -> E {
        let message = error.message.clone();
        self.error = Some(error);
        E::custom(message)
    }

    fn check<E: de::Error>(&mut self, outcome: Result<(), ScoringError>) -> Result<(), E> {
        outcome.map_err(|error| self.fail(error))
    }

    /// The parked domain error, else serde's: malformed JSON in MLflow's words, a wrong type
    /// as an invalid parameter.
    fn finish<T>(self, outcome: Result<T, serde_json::Error>) -> Result<(T, Budget), ScoringError> {
        match (outcome, self.error) {
            (Ok(value), _) => Ok((value, self.budget)),
            (Err(_), Some(error)) => Err(error),
            (Err(error), None) if error.is_data() => Err(ScoringError::invalid(error.to_string())),
            (Err(error), None) => Err(ScoringError::bad_request(format!(
                "Invalid input. Ensure that input is a valid JSON formatted string. Error: '{error}'"
            ))),
        }
    }
}

/// Where a value sits, for messages; formatted only when something is wrong.
#[derive(Clone, Copy)]
enum At<'a> {
    Cell(&'a str, usize, usize),
    Record(usize, &'a str),
    Flat(usize, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Cell(field, row, column) => write!(f, "{field}[{row}][{column}]"),
            At::Record(row, column) => write!(f, "dataframe_records[{row}].{column}"),
            At::Flat(input, index) => write!(f, "inputs[{input}].data[{index}]"),
        }
    }
}

/// One number (null is NaN; V2 also takes booleans as 0 and 1).
struct Cell<'c, 'a> {
    ctx: &'c mut Ctx,
    at: At<'a>,
    bools: bool,
}

impl<'de> DeserializeSeed<'de> for Cell<'_, '_> {
    type Value = f32;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<f32, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Cell<'_, '_> {
    type Value = f32;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a number at {}", self.at)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f32, E> {
        to_f32(v, self.at).map_err(|error| self.ctx.fail(error))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f32, E> {
        Ok(v as f32)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f32, E> {
        Ok(v as f32)
    }
    fn visit_unit<E: de::Error>(self) -> Result<f32, E> {
        Ok(f32::NAN)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<f32, E> {
        if self.bools {
            Ok(if v { 1.0 } else { 0.0 })
        } else {
            Err(E::invalid_type(de::Unexpected::Bool(v), &self))
        }
    }
}

/// One row: a list of numbers.
struct Row<'c, 'a> {
    ctx: &'c mut Ctx,
    field: &'a str,
    index: usize,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for Row<'_, '_> {
    type Value = Vec<f32>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<f32>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Row<'_, '_> {
    type Value = Vec<f32>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a row (a list of numbers): the shape of input does not match the model's, \
             '{}[{}]' is not a row; send a batch of rows, e.g. [[1.0, 2.0, ...]]",
            self.field, self.index
        )
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
        let mut row = Vec::with_capacity(self.capacity);
        loop {
            let at = At::Cell(self.field, self.index, row.len());
            let Some(value) = seq.next_element_seed(Cell {
                ctx: &mut *self.ctx,
                at,
                bools: false,
            })?
            else {
                break;
            };
            let counted = self.ctx.budget.values(1);
            self.ctx.check(counted)?;
            row.push(value);
        }
        Ok(row)
    }
}

/// A list of rows, appended to `rows`.
struct Matrix<'c, 'a> {
    ctx: &'c mut Ctx,
    field: &'a str,
    rows: &'a mut Vec<Vec<f32>>,
}

impl<'de> DeserializeSeed<'de> for Matrix<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Matrix<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' as a list of rows", self.field)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let capacity = self.rows.first().map_or(8, Vec::len);
            let Some(row) = seq.next_element_seed(Row {
                ctx: &mut *self.ctx,
                field: self.field,
                index: self.rows.len(),
                capacity,
            })?
            else {
                break;
            };
            let counted = self.ctx.budget.row();
            self.ctx.check(counted)?;
            self.rows.push(row);
        }
        Ok(())
    }
}

/// MLflow's `inputs`: a list of rows, or `{"<input name>": rows}`.
struct Inputs<'c, 'a> {
    ctx: &'c mut Ctx,
    input_name: &'a str,
    rows: &'a mut Vec<Vec<f32>>,
}

impl<'de> DeserializeSeed<'de> for Inputs<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Inputs<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'inputs' as a list of rows or an object of named inputs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Matrix {
            ctx: self.ctx,
            field: "inputs",
            rows: self.rows,
        }
        .visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let name = self.input_name;
        let wrong = || {
            ScoringError::invalid(format!(
                "the model takes one input, '{name}'; send {{\"inputs\": [[...], ...]}} or {{\"inputs\": {{\"{name}\": [[...], ...]}}}}"
            ))
        };
        let field = format!("inputs.{name}");
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key != name || seen {
                return Err(self.ctx.fail(wrong()));
            }
            seen = true;
            map.next_value_seed(Matrix {
                ctx: &mut *self.ctx,
                field: &field,
                rows: &mut *self.rows,
            })?;
        }
        if !seen {
            return Err(self.ctx.fail(wrong()));
        }
        Ok(())
    }
}

/// Column names: strings, or numbers and booleans as pandas prints them.
struct Columns<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for Columns<'_> {
    type Value = Option<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Columns<'_> {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'dataframe_split.columns' as a list of column names")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<ColumnName>()? {
            if names.len() == MAX_COLUMNS {
                return Err(self.ctx.fail(too_many_columns()));
            }
            names.push(name.0);
        }
        Ok(Some(names))
    }
}

fn too_many_columns() -> ScoringError {
    too_much(format!(
        "the request names more than {MAX_COLUMNS} columns; send the values unnamed (\"inputs\")"
    ))
}

struct ColumnName(String);

impl<'de> de::Deserialize<'de> for ColumnName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = ColumnName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnName, E> {
                Ok(ColumnName(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ColumnName, E> {
                Ok(ColumnName(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ColumnName, E> {
                Ok(ColumnName(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ColumnName, E> {
                Ok(ColumnName(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ColumnName, E> {
                Ok(ColumnName(v.to_string()))
            }
        }
        deserializer.deserialize_any(Name)
    }
}

/// `{"columns": [...], "data": [[...]], "index": [...]}`.
struct Split<'c, 'a> {
    ctx: &'c mut Ctx,
    rows: &'a mut Vec<Vec<f32>>,
}

impl<'de> DeserializeSeed<'de> for Split<'_, '_> {
    type Value = Option<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Split<'_, '_> {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'dataframe_split' as an object with 'columns' and 'data'")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut columns = None;
        let mut seen = [false; 3];
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "columns" => 0,
                "data" => 1,
                "index" => 2,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(self.ctx.fail(duplicate(&format!("dataframe_split.{key}"))));
            }
            match slot {
                0 => columns = map.next_value_seed(Columns { ctx: self.ctx })?,
                1 => map.next_value_seed(Matrix {
                    ctx: &mut *self.ctx,
                    field: "dataframe_split.data",
                    rows: &mut *self.rows,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen[1] {
            return Err(self.ctx.fail(ScoringError::invalid(
                "'dataframe_split' needs a 'data' list of rows",
            )));
        }
        Ok(columns)
    }
}

fn duplicate(field: &str) -> ScoringError {
    ScoringError::invalid(format!(
        "'{field}' appears more than once; a key may appear once per object"
    ))
}

/// `[{"a": 1, "b": 2}, ...]`: columns in the first record's order, every record read by
/// name (as pandas aligns them), each with exactly the first record's keys.
struct Records<'c, 'a> {
    ctx: &'c mut Ctx,
    rows: &'a mut Vec<Vec<f32>>,
}

impl<'de> DeserializeSeed<'de> for Records<'_, '_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_, '_> {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'dataframe_records' as a list of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut columns = Columnar::default();
        loop {
            let Some(row) = seq.next_element_seed(Record {
                ctx: &mut *self.ctx,
                index: self.rows.len(),
                columns: &mut columns,
            })?
            else {
                break;
            };
            let counted = self.ctx.budget.row();
            self.ctx.check(counted)?;
            self.rows.push(row);
        }
        Ok(columns.names)
    }
}

#[derive(Default)]
struct Columnar {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

struct Record<'c, 'a> {
    ctx: &'c mut Ctx,
    index: usize,
    columns: &'a mut Columnar,
}

impl<'de> DeserializeSeed<'de> for Record<'_, '_> {
    type Value = Vec<f32>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<f32>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Record<'_, '_> {
    type Value = Vec<f32>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dataframe_records[{}] as an object", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<f32>, A::Error> {
        let index = self.index;
        let first = index == 0;
        let width = self.columns.names.len();
        let mut row = if first {
            Vec::new()
        } else {
            vec![f32::NAN; width]
        };
        let mut seen = vec![false; width];
        while let Some(key) = map.next_key::<String>()? {
            let column = match self.columns.index.get(&key) {
                Some(&column) if !first && !seen[column] => column,
                Some(_) => {
                    return Err(self
                        .ctx
                        .fail(duplicate(&format!("dataframe_records[{index}].{key}"))));
                }
                None if first => {
                    if self.columns.names.len() == MAX_COLUMNS {
                        return Err(self.ctx.fail(too_many_columns()));
                    }
                    self.columns
                        .index
                        .insert(key.clone(), self.columns.names.len());
                    self.columns.names.push(key);
                    self.columns.names.len() - 1
                }
                None => {
                    return Err(self.ctx.fail(ScoringError::invalid(format!(
                        "dataframe_records[{index}] has a field '{key}' the first record does not have"
                    ))));
                }
            };
            let value = map.next_value_seed(Cell {
                ctx: &mut *self.ctx,
                at: At::Record(index, &self.columns.names[column]),
                bools: false,
            })?;
            let counted = self.ctx.budget.values(1);
            self.ctx.check(counted)?;
            if first {
                row.push(value);
            } else {
                row[column] = value;
                seen[column] = true;
            }
        }
        if let Some(missing) = seen.iter().position(|seen| !seen).filter(|_| !first) {
            return Err(self.ctx.fail(ScoringError::invalid(format!(
                "dataframe_records[{index}] has no field '{}'",
                self.columns.names[missing]
            ))));
        }
        Ok(row)
    }
}

const FORMATS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// An MLflow scoring body: exactly one of [`FORMATS`], other keys (`params`) skipped.
struct Mlflow<'c, 'a> {
    ctx: &'c mut Ctx,
    input_name: &'a str,
    rows: &'a mut Vec<Vec<f32>>,
}

impl<'de> DeserializeSeed<'de> for Mlflow<'_, '_> {
    type Value = Option<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Mlflow<'_, '_> {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON dictionary")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.ctx.fail(ScoringError::bad_request(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {}. Received a list.",
            super::FORMATS
        ))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys: Vec<String> = Vec::new();
        let mut found: Option<usize> = None;
        let mut formats = 0;
        let mut columns = None;
        while let Some(key) = map.next_key::<String>()? {
            let format = FORMATS.iter().position(|f| *f == key);
            if let Some(format) = format {
                if keys.contains(&key) {
                    return Err(self.ctx.fail(duplicate(&key)));
                }
                formats += 1;
                // A second format makes the body ambiguous: it is refused below, so its
                // value is skipped rather than read.
                if found.is_none() {
                    found = Some(format);
                    columns = match format {
                        0 => map.next_value_seed(Split {
                            ctx: &mut *self.ctx,
                            rows: &mut *self.rows,
                        })?,
                        1 => Some(map.next_value_seed(Records {
                            ctx: &mut *self.ctx,
                            rows: &mut *self.rows,
                        })?),
                        2 => {
                            map.next_value_seed(Matrix {
                                ctx: &mut *self.ctx,
                                field: "instances",
                                rows: &mut *self.rows,
                            })?;
                            None
                        }
                        _ => {
                            map.next_value_seed(Inputs {
                                ctx: &mut *self.ctx,
                                input_name: self.input_name,
                                rows: &mut *self.rows,
                            })?;
                            None
                        }
                    };
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            if format.is_some() || keys.len() < MAX_KEYS_QUOTED {
                keys.push(key);
            }
        }
        if formats != 1 {
            keys.sort_unstable();
            return Err(self.ctx.fail(ScoringError::bad_request(format!(
                "The input must be a JSON dictionary with exactly one of the input fields {}. Received dictionary with input fields: {keys:?}.",
                super::FORMATS
            ))));
        }
        Ok(columns)
    }
}

/// Rows, and the column names the request gave them (if it named them).
pub(crate) type Named = (Vec<Vec<f32>>, Option<Vec<String>>);

/// An MLflow JSON scoring body, read within `budget`.
pub(crate) fn mlflow_json(
    body: &[u8],
    input_name: &str,
    budget: Budget,
) -> Result<Named, ScoringError> {
    let mut ctx = Ctx {
        budget,
        error: None,
    };
    let mut rows = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = Mlflow {
        ctx: &mut ctx,
        input_name,
        rows: &mut rows,
    }
    .deserialize(&mut deserializer)
    .and_then(|columns| deserializer.end().map(|()| columns));
    let (columns, _) = ctx.finish(outcome)?;
    Ok((rows, columns))
}

/// A CSV body with a header row, read within `budget`.
pub(crate) fn csv(body: &[u8], mut budget: Budget) -> Result<Named, ScoringError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| ScoringError::bad_request(format!("Invalid CSV input: {e}")))?;
    if headers.len() > MAX_COLUMNS {
        return Err(too_many_columns());
    }
    let columns: Vec<String> = headers.iter().map(|name| name.trim().to_owned()).collect();
    let mut rows = Vec::new();
    let mut record = ::csv::StringRecord::new();
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| ScoringError::bad_request(format!("Invalid CSV input: {e}")))?;
        if !more {
            break;
        }
        budget.row()?;
        budget.values(record.len())?;
        let index = rows.len();
        let row = record
            .iter()
            .enumerate()
            .map(|(column, field)| {
                // Through f64, as pandas reads it before the model's float32 cast.
                let value = field.trim().parse::<f64>().map_err(|_| {
                    ScoringError::invalid(format!(
                        "CSV row {index}, column {column}: '{field}' is not a number"
                    ))
                })?;
                to_f32(value, format_args!("CSV row {index}, column {column}"))
            })
            .collect::<Result<Vec<f32>, ScoringError>>()?;
        rows.push(row);
    }
    Ok((rows, Some(columns)))
}

// ---------- Open Inference Protocol V2 ----------

/// What a V2 request says besides its tensors: its id and the outputs it asks for.
#[derive(Debug, Default)]
pub(crate) struct V2Request {
    pub(crate) id: Option<String>,
    pub(crate) outputs: Vec<String>,
}

/// One V2 input tensor, its data flattened.
pub(crate) struct V2Input {
    pub(crate) name: String,
    pub(crate) shape: Vec<u64>,
    pub(crate) datatype: String,
    pub(crate) data: Vec<f32>,
}

/// A V2 inference request: its tensors read flat within `budget`.
pub(crate) fn v2(body: &[u8], budget: Budget) -> Result<(V2Request, Vec<V2Input>), ScoringError> {
    let mut ctx = Ctx {
        budget,
        error: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = V2Body { ctx: &mut ctx }
        .deserialize(&mut deserializer)
        .and_then(|request| deserializer.end().map(|()| request));
    let (request, mut budget) = ctx.finish(outcome).map_err(|mut error| {
        if error.status == StatusCode::BAD_REQUEST {
            error.message = format!("invalid inference request: {}", error.message);
        }
        error
    })?;
    for input in &request.1 {
        if let Some(rows) = input.shape.first() {
            budget.declared_rows(*rows)?;
        }
    }
    Ok(request)
}

struct V2Body<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for V2Body<'_> {
    type Value = (V2Request, Vec<V2Input>);
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for V2Body<'_> {
    type Value = (V2Request, Vec<V2Input>);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut request = V2Request::default();
        let mut inputs = None;
        let mut seen = [false; 4];
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "id" => 0,
                "inputs" => 1,
                "outputs" => 2,
                "parameters" => 3,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(self.ctx.fail(duplicate(&key)));
            }
            match slot {
                0 => request.id = map.next_value()?,
                1 => inputs = Some(map.next_value_seed(V2Inputs { ctx: self.ctx })?),
                2 => request.outputs = map.next_value_seed(V2Outputs { ctx: self.ctx })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let inputs = inputs.ok_or_else(|| de::Error::missing_field("inputs"))?;
        Ok((request, inputs))
    }
}

struct V2Inputs<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for V2Inputs<'_> {
    type Value = Vec<V2Input>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for V2Inputs<'_> {
    type Value = Vec<V2Input>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of input tensors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inputs = Vec::new();
        while let Some(input) = seq.next_element_seed(V2Tensor {
            ctx: &mut *self.ctx,
            index: inputs.len(),
        })? {
            if inputs.len() == MAX_V2_LIST {
                return Err(self.ctx.fail(too_much(format!(
                    "the request has more than {MAX_V2_LIST} inputs"
                ))));
            }
            inputs.push(input);
        }
        Ok(inputs)
    }
}

struct V2Tensor<'c> {
    ctx: &'c mut Ctx,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for V2Tensor<'_> {
    type Value = V2Input;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<V2Input, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for V2Tensor<'_> {
    type Value = V2Input;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inputs[{}] as a tensor object", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V2Input, A::Error> {
        let (mut name, mut shape, mut datatype, mut data) = (None, None, None, None);
        let mut seen = [false; 5];
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "name" => 0,
                "shape" => 1,
                "datatype" => 2,
                "data" => 3,
                "parameters" => 4,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(self
                    .ctx
                    .fail(duplicate(&format!("inputs[{}].{key}", self.index))));
            }
            match slot {
                0 => name = Some(map.next_value::<String>()?),
                1 => {
                    shape = Some(map.next_value_seed(Shape {
                        ctx: &mut *self.ctx,
                    })?)
                }
                2 => datatype = Some(map.next_value::<String>()?),
                3 => {
                    let mut flat = Vec::new();
                    map.next_value_seed(Flat {
                        ctx: &mut *self.ctx,
                        input: self.index,
                        out: &mut flat,
                    })?;
                    data = Some(flat);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(V2Input {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            datatype: datatype.ok_or_else(|| de::Error::missing_field("datatype"))?,
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        })
    }
}

/// A shape: a few dimensions.
struct Shape<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for Shape<'_> {
    type Value = Vec<u64>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<u64>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Shape<'_> {
    type Value = Vec<u64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a shape (a list of dimensions)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
        let mut dims = Vec::new();
        while let Some(dim) = seq.next_element::<u64>()? {
            if dims.len() == MAX_V2_LIST {
                return Err(self.ctx.fail(ScoringError::invalid(format!(
                    "a shape has at most {MAX_V2_LIST} dimensions"
                ))));
            }
            dims.push(dim);
        }
        Ok(dims)
    }
}

/// The names of the outputs a request asks for: `[{"name": ...}, ...]`.
struct V2Outputs<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for V2Outputs<'_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for V2Outputs<'_> {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of requested outputs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        #[derive(serde::Deserialize)]
        struct Requested {
            name: String,
        }
        let mut names = Vec::new();
        while let Some(requested) = seq.next_element::<Requested>()? {
            if names.len() == MAX_V2_LIST {
                return Err(self.ctx.fail(ScoringError::invalid(format!(
                    "a request names at most {MAX_V2_LIST} outputs"
                ))));
            }
            names.push(requested.name);
        }
        Ok(names)
    }
}

/// Tensor data, nested lists or flat, into one flat list.
struct Flat<'c, 'a> {
    ctx: &'c mut Ctx,
    input: usize,
    out: &'a mut Vec<f32>,
}

impl<'de> DeserializeSeed<'de> for Flat<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flat<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tensor data (numbers, or lists of them) at inputs[{}].data[{}]",
            self.input,
            self.out.len()
        )
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Flat {
                ctx: &mut *self.ctx,
                input: self.input,
                out: &mut *self.out,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let at = At::Flat(self.input, self.out.len());
        let value = to_f32(v, at).map_err(|error| self.ctx.fail(error))?;
        self.push(value)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(v as f32)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(v as f32)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(if v { 1.0 } else { 0.0 })
    }
}

impl Flat<'_, '_> {
    fn push<E: de::Error>(self, value: f32) -> Result<(), E> {
        let counted = self.ctx.budget.values(1);
        self.ctx.check(counted)?;
        self.out.push(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget::new(DEFAULT_MAX_ROWS, DEFAULT_MAX_VALUES)
    }

    #[test]
    fn every_shape_reads_the_same_rows() {
        let expected = vec![vec![1.0f32, 2.5], vec![3.0, 4.0]];
        for body in [
            r#"{"inputs": [[1, 2.5], [3, 4]]}"#,
            r#"{"instances": [[1, 2.5], [3, 4]], "params": {"a": [1]}}"#,
            r#"{"inputs": {"x": [[1, 2.5], [3, 4]]}}"#,
            r#"{"dataframe_split": {"index": [0, 1], "columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]}}"#,
            r#"{"dataframe_records": [{"a": 1, "b": 2.5}, {"b": 4, "a": 3}]}"#,
        ] {
            let (rows, _) = mlflow_json(body.as_bytes(), "x", budget()).unwrap_or_else(|e| {
                panic!("{body}: {}", e.message);
            });
            assert_eq!(rows, expected, "{body}");
        }
        let (rows, columns) = csv(b"a,b\n1,2.5\n3,4\n", budget()).ok().unwrap();
        assert_eq!(
            (rows, columns),
            (expected, Some(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn limits_stop_the_parse_with_413() {
        let small = Budget::new(2, 5);
        for body in [
            r#"{"inputs": [[1], [2], [3]]}"#,
            r#"{"inputs": [[1, 2, 3], [4, 5, 6]]}"#,
            r#"{"dataframe_records": [{"a": 1}, {"a": 1}, {"a": 1}]}"#,
            r#"{"dataframe_split": {"data": [[1, 2, 3], [4, 5, 6]]}}"#,
        ] {
            let error = mlflow_json(body.as_bytes(), "x", small).err().unwrap();
            assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
            assert!(error.message.contains("--max-"), "{}", error.message);
        }
        assert_eq!(
            csv(b"a\n1\n2\n3\n", small).err().unwrap().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let v2 = |body: &str| v2(body.as_bytes(), small).err().unwrap().status;
        assert_eq!(
            v2(
                r#"{"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP32", "data": [1,2,3,4,5,6]}]}"#
            ),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            v2(r#"{"inputs": [{"name": "x", "shape": [3, 0], "datatype": "FP32", "data": []}]}"#),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn overflow_and_duplicate_keys_are_refused_by_name() {
        for (body, says) in [
            (r#"{"inputs": [[1, 1e39]]}"#, "inputs[0][1]: 1e39"),
            (
                r#"{"dataframe_records": [{"a": 1, "b": -1e39}]}"#,
                "dataframe_records[0].b",
            ),
            (
                r#"{"dataframe_records": [{"a": 1, "a": 2}]}"#,
                "dataframe_records[0].a",
            ),
            (
                r#"{"dataframe_records": [{"a": 1, "b": 2}, {"a": 1, "a": 2}]}"#,
                "dataframe_records[1].a",
            ),
            (
                r#"{"inputs": [[1]], "inputs": [[2]]}"#,
                "'inputs' appears more than once",
            ),
            (
                r#"{"dataframe_split": {"data": [[1]], "data": [[2]]}}"#,
                "dataframe_split.data",
            ),
            (
                r#"{"dataframe_records": [{"a": 1}, {"b": 1}]}"#,
                "field 'b'",
            ),
            (
                r#"{"dataframe_records": [{"a": 1, "b": 1}, {"a": 1}]}"#,
                "no field 'b'",
            ),
        ] {
            let error = mlflow_json(body.as_bytes(), "x", budget()).err().unwrap();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(error.message.contains(says), "{body}: {}", error.message);
        }
        let error = csv(b"a\n1e39\n", budget()).err().unwrap();
        assert!(error.message.contains("out of range"), "{}", error.message);
        for (body, says) in [
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1e39]}]}"#,
                "inputs[0].data[0]",
            ),
            (
                r#"{"inputs": [{"name": "x", "name": "y", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}"#,
                "inputs[0].name",
            ),
            (
                r#"{"inputs": [], "inputs": []}"#,
                "'inputs' appears more than once",
            ),
        ] {
            let error = v2(body.as_bytes(), budget()).err().unwrap();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(error.message.contains(says), "{body}: {}", error.message);
        }
    }
}
