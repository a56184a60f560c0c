//! The input and output schema an MLflow model folder declares in its `MLmodel` file, and
//! checking row requests against it.
//!
//! MLflow writes the signature as YAML whose values are JSON strings
//! (`mlflow.models.ModelSignature.to_dict`):
//!
//! ```yaml
//! signature:
//!   inputs: '[{"type": "double", "name": "mean radius", "required": true}, ...]'
//!   outputs: '[{"name": "label", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
//!   params: null
//! ```
//!
//! Each string is a list of column specs (`type` one of MLflow's data types, optional `name`
//! and `required`) or of tensor specs (`type: tensor`, `tensor-spec: {dtype, shape}`, optional
//! `name`), never a mix (`mlflow.types.Schema` refuses one, and so does [`Schema`]). Inputs,
//! outputs and params may each be absent. Params are not read: slipway's row models take none.
//!
//! Where slipway is stricter than `mlflow models serve`, on purpose: a request naming a column
//! the signature does not know is refused (MLflow drops it with a warning, so a typo silently
//! loses a feature), and optional columns must be sent too (a row of numbers cannot leave a
//! column out; MLflow would hand the model a narrower frame).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::model::ModelError;

/// Why a model folder's signature could not be read. A folder without one is not an error
/// ([`load_signature`] answers `None`).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("could not read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the MLmodel file is not valid YAML of the expected shape: {0}")]
    Yaml(String),
    #[error("the MLmodel signature's {part} are not a valid MLflow schema: {reason}")]
    Schema { part: &'static str, reason: String },
    /// The same errors, for a file on disk: says which one.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<SignatureError>,
    },
}

/// A request that does not fit the model's signature; the message says what the model takes.
/// Converts into [`ModelError::BadInput`], so protocols answer it as a client error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputMismatch {
    message: String,
}

impl InputMismatch {
    fn new(message: String) -> InputMismatch {
        InputMismatch { message }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<InputMismatch> for ModelError {
    fn from(mismatch: InputMismatch) -> ModelError {
        ModelError::BadInput(mismatch.message)
    }
}

/// What an MLflow model says it takes and returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// `None` when the signature declares only outputs: requests are then not checked here.
    pub inputs: Option<Schema>,
    pub outputs: Option<Schema>,
}

/// One side of a signature: MLflow allows columns or tensors, not both.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Columns(Vec<ColumnSpec>),
    Tensors(Vec<TensorSpec>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Either every column of a schema has a name or none has.
    pub name: Option<String>,
    pub ty: ColumnType,
    pub required: bool,
}

/// MLflow's column types (`mlflow.types.DataType`, plus the composite ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Integer,
    Long,
    Float,
    Double,
    String,
    Binary,
    Datetime,
    /// `array`, `object`, `map`, `any` or `sparkml_vector`, by that name; their inner types are
    /// not kept, since no row of numbers can carry them.
    Composite(String),
}

impl ColumnType {
    fn parse(name: &str) -> Option<ColumnType> {
        Some(match name {
            "boolean" => ColumnType::Boolean,
            "integer" => ColumnType::Integer,
            "long" => ColumnType::Long,
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "string" => ColumnType::String,
            "binary" => ColumnType::Binary,
            "datetime" => ColumnType::Datetime,
            "array" | "object" | "map" | "any" | "sparkml_vector" => {
                ColumnType::Composite(name.to_owned())
            }
            _ => return None,
        })
    }

    /// The name MLflow writes for the type.
    pub fn name(&self) -> &str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Integer => "integer",
            ColumnType::Long => "long",
            ColumnType::Float => "float",
            ColumnType::Double => "double",
            ColumnType::String => "string",
            ColumnType::Binary => "binary",
            ColumnType::Datetime => "datetime",
            ColumnType::Composite(name) => name,
        }
    }

    fn is_number(&self) -> bool {
        matches!(
            self,
            ColumnType::Integer | ColumnType::Long | ColumnType::Float | ColumnType::Double
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: Option<String>,
    /// numpy's name for the element type: `float32`, `int64`, `str`, `object`, ...
    pub dtype: String,
    /// -1 for a dimension of any size (usually the first, the batch).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    fn is_number(&self) -> bool {
        let dtype = self.dtype.as_str();
        ["float", "int", "uint"].iter().any(|prefix| {
            dtype
                .strip_prefix(prefix)
                .is_some_and(|bits| !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()))
        })
    }
}

/// The parts of an `MLmodel` file this module reads; MLflow writes many more.
#[derive(Deserialize)]
#[serde(expecting = "a mapping of MLmodel fields")]
struct MlModelFile {
    #[serde(default)]
    signature: Option<RawSignature>,
}

#[derive(Deserialize)]
#[serde(expecting = "a mapping with inputs and outputs")]
struct RawSignature {
    #[serde(default)]
    inputs: Option<String>,
    #[serde(default)]
    outputs: Option<String>,
}

/// Reads the signature of the MLflow model in `model_dir`; `None` when the folder has no
/// `MLmodel` file or the file declares no signature.
pub fn load_signature(model_dir: &Path) -> Result<Option<Signature>, SignatureError> {
    let path = model_dir.join("MLmodel");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(SignatureError::Read {
                path,
                reason: error.to_string(),
            });
        }
    };
    Signature::from_mlmodel(&text).map_err(|error| SignatureError::InFile {
        path,
        error: Box::new(error),
    })
}

impl Signature {
    /// Parses the text of an `MLmodel` file; `None` when it declares no signature.
    pub fn from_mlmodel(text: &str) -> Result<Option<Signature>, SignatureError> {
        let file: MlModelFile =
            yaml_serde::from_str(text).map_err(|e| SignatureError::Yaml(e.to_string()))?;
        let Some(raw) = file.signature else {
            return Ok(None);
        };
        // MLflow reads an empty string as "not declared" too (`if x := d.get("inputs")`).
        let parse = |part: &'static str, json: Option<String>| {
            json.filter(|json| !json.trim().is_empty())
                .map(|json| {
                    Schema::from_mlflow_json(&json)
                        .map_err(|reason| SignatureError::Schema { part, reason })
                })
                .transpose()
        };
        let signature = Signature {
            inputs: parse("inputs", raw.inputs)?,
            outputs: parse("outputs", raw.outputs)?,
        };
        Ok((signature.inputs.is_some() || signature.outputs.is_some()).then_some(signature))
    }

    /// How many values a row of a request must have, or `None` when the signature does not
    /// say. Fails when row requests cannot fit the signature at all (text columns, several
    /// input tensors, ...): worth checking once when the model is loaded, and against
    /// [`crate::OnnxModel::check_rows`]'s width.
    /// The signature as serving uses it next to `model`: refused when its row width disagrees
    /// with the graph's input (the two files do not belong together, and every request would
    /// fail), and kept only when it names its columns, the one check the graph does not make.
    pub fn fitted_to(self, model: &crate::OnnxModel) -> Result<Option<Signature>, String> {
        let graph = model
            .inputs()
            .first()
            .and_then(|input| input.shape.get(1).copied())
            .filter(|width| *width > 0);
        if let (Ok(Some(declared)), Some(graph)) = (self.row_width(), graph)
            && declared as i64 != graph
        {
            return Err(format!(
                "the MLmodel signature takes {declared} values per row but the ONNX graph takes {graph}"
            ));
        }
        Ok(self.input_names().is_some().then_some(self))
    }

    pub fn row_width(&self) -> Result<Option<usize>, InputMismatch> {
        Ok(match self.row_layout()? {
            RowLayout::Free => None,
            RowLayout::Named(names) => Some(names.len()),
            RowLayout::Positional { width, .. } => width,
        })
    }

    /// The input columns' names in the signature's order; `None` when they are unnamed (or
    /// the input is a tensor).
    pub fn input_names(&self) -> Option<Vec<&str>> {
        match &self.inputs {
            Some(Schema::Columns(columns)) => columns.iter().map(|c| c.name.as_deref()).collect(),
            _ => None,
        }
    }

    /// For a request that names its columns (`dataframe_split` with `columns`,
    /// `dataframe_records`): where each of the model's input values is found in the request's
    /// rows. Named signature columns may come in any order, but each exactly once and no
    /// other; for unnamed columns or a tensor input only their number is checked, as MLflow
    /// does, and the request's order is kept.
    pub fn order_columns<S: AsRef<str>>(
        &self,
        columns: &[S],
    ) -> Result<ColumnOrder, InputMismatch> {
        let identity = |width: usize| ColumnOrder {
            sources: (0..width).collect(),
            request_width: width,
        };
        match self.row_layout()? {
            RowLayout::Free => Ok(identity(columns.len())),
            RowLayout::Positional { width, what } => match width {
                Some(width) if width != columns.len() => Err(InputMismatch::new(format!(
                    "the request has {} columns; the model takes {width} ({what})",
                    columns.len()
                ))),
                _ => Ok(identity(columns.len())),
            },
            RowLayout::Named(names) => {
                let mut position: HashMap<&str, usize> = HashMap::with_capacity(columns.len());
                for (index, column) in columns.iter().enumerate() {
                    if position.insert(column.as_ref(), index).is_some() {
                        return Err(InputMismatch::new(format!(
                            "the request names column '{}' more than once",
                            column.as_ref()
                        )));
                    }
                }
                let missing: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|name| !position.contains_key(name))
                    .collect();
                let unknown: Vec<&str> = columns
                    .iter()
                    .map(AsRef::as_ref)
                    .filter(|column| !names.contains(column))
                    .collect();
                if !missing.is_empty() || !unknown.is_empty() {
                    let mut message = "the request's columns do not match the model's".to_owned();
                    if !missing.is_empty() {
                        let _ = write!(message, "; missing: {}", quoted(&missing));
                    }
                    if !unknown.is_empty() {
                        let _ = write!(message, "; unknown: {}", quoted(&unknown));
                    }
                    let _ = write!(
                        message,
                        "; the model takes {} columns: {}",
                        names.len(),
                        quoted(&names)
                    );
                    return Err(InputMismatch::new(message));
                }
                Ok(ColumnOrder {
                    sources: names.iter().map(|name| position[name]).collect(),
                    request_width: columns.len(),
                })
            }
        }
    }

    /// Checks the rows of a request with named columns and puts their values in the
    /// signature's order (see [`Signature::order_columns`]).
    pub fn arrange_named_rows<S: AsRef<str>>(
        &self,
        columns: &[S],
        rows: Vec<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>, InputMismatch> {
        let order = self.order_columns(columns)?;
        if let Some((index, row)) = rows
            .iter()
            .enumerate()
            .find(|(_, row)| row.len() != order.request_width)
        {
            return Err(InputMismatch::new(format!(
                "row {index} has {} values for {} columns",
                row.len(),
                order.request_width
            )));
        }
        if order.is_identity() {
            return Ok(rows);
        }
        Ok(rows.iter().map(|row| order.pick(row)).collect())
    }

    /// Checks the rows of a request whose values are not named (`instances`, `inputs`,
    /// `dataframe_split` without `columns`): the model must take positional values, as many
    /// per row as the signature says.
    pub fn check_unnamed_rows(&self, rows: &[Vec<f32>]) -> Result<(), InputMismatch> {
        match self.row_layout()? {
            RowLayout::Free | RowLayout::Positional { width: None, .. } => Ok(()),
            RowLayout::Named(names) => Err(InputMismatch::new(format!(
                "the model's signature names its input columns, so the request must name them \
                 too: {}",
                quoted(&names)
            ))),
            RowLayout::Positional {
                width: Some(width),
                what,
            } => match rows.iter().enumerate().find(|(_, row)| row.len() != width) {
                Some((index, row)) => Err(InputMismatch::new(format!(
                    "row {index} has {} values; the model takes {width} ({what})",
                    row.len()
                ))),
                None => Ok(()),
            },
        }
    }

    fn row_layout(&self) -> Result<RowLayout<'_>, InputMismatch> {
        match &self.inputs {
            None => Ok(RowLayout::Free),
            Some(Schema::Columns(columns)) => {
                for (index, column) in columns.iter().enumerate() {
                    if !column.ty.is_number() {
                        let which = column
                            .name
                            .as_ref()
                            .map_or_else(|| format!("column {index}"), |n| format!("column '{n}'"));
                        return Err(InputMismatch::new(format!(
                            "the model's {which} is of type {}; slipway serves models whose \
                             inputs are numbers",
                            column.ty.name()
                        )));
                    }
                }
                match self.input_names() {
                    Some(names) => Ok(RowLayout::Named(names)),
                    None => Ok(RowLayout::Positional {
                        width: Some(columns.len()),
                        what: "its signature does not name its columns, so only their number is \
                               checked"
                            .to_owned(),
                    }),
                }
            }
            Some(Schema::Tensors(tensors)) => {
                let [tensor] = tensors.as_slice() else {
                    let names: Vec<&str> = tensors
                        .iter()
                        .map(|t| t.name.as_deref().unwrap_or("?"))
                        .collect();
                    return Err(InputMismatch::new(format!(
                        "the model's signature has {} input tensors ({}); a row request fills \
                         exactly one",
                        tensors.len(),
                        quoted(&names)
                    )));
                };
                let described = match &tensor.name {
                    Some(name) => format!(
                        "input tensor '{name}' of {} {:?}",
                        tensor.dtype, tensor.shape
                    ),
                    None => format!("an input tensor of {} {:?}", tensor.dtype, tensor.shape),
                };
                if !tensor.is_number() {
                    return Err(InputMismatch::new(format!(
                        "the model takes {described}; slipway serves models whose inputs are \
                         numbers"
                    )));
                }
                let [_, width] = tensor.shape.as_slice() else {
                    return Err(InputMismatch::new(format!(
                        "the model takes {described}; a row request fills a matrix of rows \
                         by values per row"
                    )));
                };
                Ok(RowLayout::Positional {
                    width: usize::try_from(*width).ok(),
                    what: described,
                })
            }
        }
    }
}

/// How a row request maps onto the model's inputs.
enum RowLayout<'s> {
    /// The signature declares no inputs.
    Free,
    /// Named columns, in the signature's order.
    Named(Vec<&'s str>),
    /// Values by position; `what` describes the input for messages.
    Positional { width: Option<usize>, what: String },
}

/// Where each of the model's input values is in a request's row (from
/// [`Signature::order_columns`]). Computed once per request (or per distinct key order, for
/// `dataframe_records`) and applied to every row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnOrder {
    /// For each model input position, the request's column that fills it.
    sources: Vec<usize>,
    request_width: usize,
}

impl ColumnOrder {
    /// Whether rows can be used as they are.
    pub fn is_identity(&self) -> bool {
        self.sources.len() == self.request_width
            && self.sources.iter().enumerate().all(|(i, s)| i == *s)
    }

    /// One request row in the model's order.
    pub fn arrange(&self, row: &[f32]) -> Result<Vec<f32>, InputMismatch> {
        if row.len() != self.request_width {
            return Err(InputMismatch::new(format!(
                "a row has {} values for {} columns",
                row.len(),
                self.request_width
            )));
        }
        Ok(self.pick(row))
    }

    fn pick(&self, row: &[f32]) -> Vec<f32> {
        self.sources.iter().map(|source| row[*source]).collect()
    }
}

fn quoted(names: &[&str]) -> String {
    let mut text = String::new();
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "'{name}'");
    }
    text
}

impl Schema {
    /// Parses one of the JSON strings MLflow writes for a schema (`Schema.to_json`).
    pub fn from_mlflow_json(json: &str) -> Result<Schema, String> {
        let entries: Vec<Value> =
            serde_json::from_str(json).map_err(|e| format!("not a JSON list: {e}"))?;
        if entries.is_empty() {
            return Err("the list is empty".to_owned());
        }
        let mut columns = Vec::new();
        let mut tensors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let object = entry
                .as_object()
                .ok_or_else(|| format!("entry {index} is not an object"))?;
            let ty = object
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("entry {index} has no \"type\""))?;
            let name = match object.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => Some(name.clone()),
                Some(other) => return Err(format!("entry {index}'s name {other} is not a string")),
            };
            if ty == "tensor" {
                tensors.push(parse_tensor(index, object, name)?);
            } else {
                let ty = ColumnType::parse(ty)
                    .ok_or_else(|| format!("entry {index} has the unknown type \"{ty}\""))?;
                // MLflow 2.7-2.8 wrote `optional`, later versions `required` (default true).
                let flag = |key: &str| match object.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Bool(flag)) => Ok(Some(*flag)),
                    Some(other) => Err(format!(
                        "entry {index}'s \"{key}\" {other} is not a boolean"
                    )),
                };
                let required = match (flag("required")?, flag("optional")?) {
                    (Some(required), _) => required,
                    (None, Some(optional)) => !optional,
                    (None, None) => true,
                };
                columns.push(ColumnSpec { name, ty, required });
            }
        }
        let schema = match (columns.is_empty(), tensors.is_empty()) {
            (false, true) => Schema::Columns(columns),
            (true, false) => Schema::Tensors(tensors),
            _ => return Err("it mixes column and tensor entries".to_owned()),
        };
        let names: Vec<Option<&str>> = match &schema {
            Schema::Columns(columns) => columns.iter().map(|c| c.name.as_deref()).collect(),
            Schema::Tensors(tensors) => tensors.iter().map(|t| t.name.as_deref()).collect(),
        };
        let named = names.iter().filter(|name| name.is_some()).count();
        if named != 0 && named != names.len() {
            return Err("some entries are named and some are not".to_owned());
        }
        if named == 0 && names.len() > 1 && matches!(schema, Schema::Tensors(_)) {
            return Err("several tensors without names".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(duplicate) = names.iter().flatten().find(|name| !seen.insert(**name)) {
            return Err(format!("the name '{duplicate}' appears more than once"));
        }
        Ok(schema)
    }
}

fn parse_tensor(
    index: usize,
    entry: &serde_json::Map<String, Value>,
    name: Option<String>,
) -> Result<TensorSpec, String> {
    let spec = entry
        .get("tensor-spec")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("tensor entry {index} has no \"tensor-spec\" object"))?;
    let dtype = spec
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("tensor entry {index} has no \"dtype\""))?;
    let shape = spec
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("tensor entry {index} has no \"shape\" list"))?
        .iter()
        .map(|dim| dim.as_i64().filter(|dim| *dim >= -1))
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| format!("tensor entry {index}'s shape is not a list of sizes or -1"))?;
    Ok(TensorSpec {
        name,
        dtype: dtype.to_owned(),
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/models/mlflow_logreg_breast_cancer")
    }

    fn mlmodel(inputs: &str, outputs: &str) -> String {
        format!(
            "flavors:\n  onnx:\n    data: model.onnx\nsignature:\n  inputs: '{inputs}'\n  \
             outputs: '{outputs}'\n  params: null\n"
        )
    }

    fn signature(inputs: &str) -> Signature {
        Signature::from_mlmodel(&mlmodel(inputs, ""))
            .unwrap()
            .unwrap()
    }

    const COLUMNS: &str = r#"[{"type": "double", "name": "mean radius", "required": true}, {"type": "long", "name": "b", "required": true}, {"type": "float", "name": "c", "required": false}]"#;

    #[test]
    fn the_fixture_declares_one_unnamed_float_matrix() {
        let signature = load_signature(&fixture_dir()).unwrap().unwrap();
        assert_eq!(
            signature.inputs,
            Some(Schema::Tensors(vec![TensorSpec {
                name: None,
                dtype: "float32".to_owned(),
                shape: vec![-1, 30],
            }]))
        );
        assert_eq!(
            signature.outputs,
            Some(Schema::Tensors(vec![
                TensorSpec {
                    name: Some("label".to_owned()),
                    dtype: "int64".to_owned(),
                    shape: vec![-1],
                },
                TensorSpec {
                    name: Some("probabilities".to_owned()),
                    dtype: "float32".to_owned(),
                    shape: vec![-1, 2],
                },
            ]))
        );
        assert_eq!(signature.row_width(), Ok(Some(30)));
        assert_eq!(signature.input_names(), None);
        assert!(
            signature
                .check_unnamed_rows(&[vec![0.5; 30], vec![1.0; 30]])
                .is_ok()
        );
        let error = signature
            .check_unnamed_rows(&[vec![0.5; 30], vec![1.0; 29]])
            .unwrap_err();
        assert_eq!(
            error.message(),
            "row 1 has 29 values; the model takes 30 (an input tensor of float32 [-1, 30])"
        );
        // Names mean nothing to a tensor: MLflow accepts any, in the request's order.
        let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
        let rows = vec![(0..30).map(|i| i as f32).collect::<Vec<f32>>()];
        assert_eq!(signature.arrange_named_rows(&names, rows.clone()), Ok(rows));
        let error = signature.order_columns(&names[..29]).unwrap_err();
        assert!(
            error
                .message()
                .contains("has 29 columns; the model takes 30"),
            "{error}"
        );
    }

    #[test]
    fn columns_are_parsed_with_their_types_and_flags() {
        let signature = Signature::from_mlmodel(&mlmodel(COLUMNS, r#"[{"type": "long"}]"#))
            .unwrap()
            .unwrap();
        let column = |name: &str, ty, required| ColumnSpec {
            name: Some(name.to_owned()),
            ty,
            required,
        };
        assert_eq!(
            signature.inputs,
            Some(Schema::Columns(vec![
                column("mean radius", ColumnType::Double, true),
                column("b", ColumnType::Long, true),
                column("c", ColumnType::Float, false),
            ]))
        );
        assert_eq!(
            signature.outputs,
            Some(Schema::Columns(vec![ColumnSpec {
                name: None,
                ty: ColumnType::Long,
                required: true,
            }]))
        );
        assert_eq!(signature.input_names(), Some(vec!["mean radius", "b", "c"]));
        assert_eq!(signature.row_width(), Ok(Some(3)));
    }

    #[test]
    fn named_columns_are_put_in_the_signature_order() {
        let signature = signature(COLUMNS);
        let rows = signature
            .arrange_named_rows(
                &["c", "mean radius", "b"],
                vec![vec![3.0, 1.0, 2.0], vec![6.0, 4.0, 5.0]],
            )
            .unwrap();
        assert_eq!(rows, vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        // dataframe_records: one order per key order, applied row by row.
        let order = signature.order_columns(&["b", "c", "mean radius"]).unwrap();
        assert!(!order.is_identity());
        assert_eq!(order.arrange(&[2.0, 3.0, 1.0]), Ok(vec![1.0, 2.0, 3.0]));
        assert!(order.arrange(&[2.0, 3.0]).is_err());
        let same = signature.order_columns(&["mean radius", "b", "c"]).unwrap();
        assert!(same.is_identity());
    }

    #[test]
    fn named_columns_that_do_not_match_are_refused_naming_the_expected_ones() {
        let signature = signature(COLUMNS);
        let check = |columns: &[&str], expected: &str| {
            let error = signature.order_columns(columns).unwrap_err();
            assert_eq!(error.message(), expected);
        };
        check(
            &["mean radius", "b"],
            "the request's columns do not match the model's; missing: 'c'; the model takes 3 \
             columns: 'mean radius', 'b', 'c'",
        );
        check(
            &["mean radius", "b", "c", "d"],
            "the request's columns do not match the model's; unknown: 'd'; the model takes 3 \
             columns: 'mean radius', 'b', 'c'",
        );
        check(
            &["mean radus", "b", "c"],
            "the request's columns do not match the model's; missing: 'mean radius'; unknown: \
             'mean radus'; the model takes 3 columns: 'mean radius', 'b', 'c'",
        );
        check(
            &["b", "b", "c"],
            "the request names column 'b' more than once",
        );
        let error = signature
            .arrange_named_rows(
                &["mean radius", "b", "c"],
                vec![vec![1.0, 2.0, 3.0], vec![1.0]],
            )
            .unwrap_err();
        assert_eq!(error.message(), "row 1 has 1 values for 3 columns");
        let error = signature
            .check_unnamed_rows(&[vec![1.0, 2.0, 3.0]])
            .unwrap_err();
        assert_eq!(
            error.message(),
            "the model's signature names its input columns, so the request must name them \
             too: 'mean radius', 'b', 'c'"
        );
        // Protocols answer it as a client error.
        assert!(matches!(ModelError::from(error), ModelError::BadInput(_)));
    }

    #[test]
    fn unnamed_columns_are_checked_by_count_only() {
        let signature = signature(r#"[{"type": "double"}, {"type": "double"}]"#);
        assert_eq!(signature.row_width(), Ok(Some(2)));
        assert!(signature.check_unnamed_rows(&[vec![1.0, 2.0]]).is_ok());
        assert!(
            signature
                .arrange_named_rows(&["x", "y"], vec![vec![1.0, 2.0]])
                .is_ok()
        );
        let error = signature
            .check_unnamed_rows(&[vec![1.0, 2.0, 3.0]])
            .unwrap_err();
        assert!(
            error
                .message()
                .starts_with("row 0 has 3 values; the model takes 2"),
            "{error}"
        );
    }

    #[test]
    fn inputs_no_row_can_carry_are_refused_by_name() {
        let check = |inputs: &str, expected: &str| {
            let error = signature(inputs).row_width().unwrap_err();
            assert!(error.message().contains(expected), "{error}");
        };
        check(
            r#"[{"type": "string", "name": "text"}]"#,
            "column 'text' is of type string",
        );
        check(
            r#"[{"type": "array", "items": {"type": "double"}, "name": "v"}]"#,
            "column 'v' is of type array",
        );
        check(
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1, 1]}}]"#,
            "an input tensor of str",
        );
        check(
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}}]"#,
            "a row request fills a matrix",
        );
        check(
            r#"[{"type": "tensor", "name": "ids", "tensor-spec": {"dtype": "int64", "shape": [-1, 8]}}, {"type": "tensor", "name": "mask", "tensor-spec": {"dtype": "int64", "shape": [-1, 8]}}]"#,
            "2 input tensors ('ids', 'mask')",
        );
        // A tensor of any width: the model checks it.
        let any_width = signature(
            r#"[{"type": "tensor", "name": "x", "tensor-spec": {"dtype": "float64", "shape": [-1, -1]}}]"#,
        );
        assert_eq!(any_width.row_width(), Ok(None));
        assert!(any_width.check_unnamed_rows(&[vec![1.0; 7]]).is_ok());
    }

    #[test]
    fn a_model_without_a_signature_has_none() {
        assert_eq!(Signature::from_mlmodel("flavors: {}\n").unwrap(), None);
        assert_eq!(Signature::from_mlmodel("signature: null\n").unwrap(), None);
        assert_eq!(
            Signature::from_mlmodel("signature:\n  inputs: ''\n  outputs: null\n").unwrap(),
            None
        );
        let outputs_only = Signature::from_mlmodel(&mlmodel("", r#"[{"type": "double"}]"#))
            .unwrap()
            .unwrap();
        assert_eq!(outputs_only.inputs, None);
        assert_eq!(outputs_only.row_width(), Ok(None));
        assert!(outputs_only.check_unnamed_rows(&[vec![1.0]]).is_ok());
        let folder = tempfile::tempdir().unwrap();
        assert!(load_signature(folder.path()).unwrap().is_none());
        std::fs::write(folder.path().join("MLmodel"), "flavors:\n  onnx: {}\n").unwrap();
        assert!(load_signature(folder.path()).unwrap().is_none());
    }

    #[test]
    fn legacy_optional_flags_are_read() {
        let signature = signature(r#"[{"type": "double", "name": "a", "optional": true}]"#);
        let Some(Schema::Columns(columns)) = signature.inputs else {
            panic!("columns expected");
        };
        assert!(!columns[0].required);
    }

    #[test]
    fn malformed_files_give_clear_errors() {
        let yaml = |text: &str| match Signature::from_mlmodel(text) {
            Err(SignatureError::Yaml(message)) => message,
            other => panic!("{text:?}: {other:?}"),
        };
        yaml("signature: [unclosed\n");
        yaml("signature:\n  inputs: 'a\n outputs: b\n\tx: y\n");
        assert!(yaml("- just\n- a list\n").contains("expected a mapping of MLmodel fields"));
        assert!(yaml("signature:\n\tinputs: x\n").contains("line 2 column 1"));
        assert!(yaml("signature:\n  inputs: [1, 2]\n").contains("invalid type"));
        assert!(yaml("signature: 'text'\n").contains("invalid type"));

        let schema = |inputs: &str| match Signature::from_mlmodel(&mlmodel(inputs, "")) {
            Err(error @ SignatureError::Schema { part: "inputs", .. }) => error.to_string(),
            other => panic!("{inputs:?}: {other:?}"),
        };
        assert!(schema("not json").contains("not a JSON list"));
        assert!(schema("{}").contains("not a JSON list"));
        assert!(schema("[]").contains("the list is empty"));
        assert!(schema("[3]").contains("entry 0 is not an object"));
        assert!(schema(r#"[{"name": "a"}]"#).contains("entry 0 has no \"type\""));
        assert!(schema(r#"[{"type": "decimal"}]"#).contains("unknown type \"decimal\""));
        assert!(schema(r#"[{"type": "tensor"}]"#).contains("no \"tensor-spec\""));
        assert!(
            schema(r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": "x"}}]"#)
                .contains("no \"shape\" list")
        );
        assert!(
            schema(r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-2]}}]"#)
                .contains("not a list of sizes")
        );
        assert!(
            schema(r#"[{"type": "double", "name": "a"}, {"type": "tensor", "name": "b", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]"#)
                .contains("mixes column and tensor")
        );
        assert!(
            schema(r#"[{"type": "double", "name": "a"}, {"type": "double"}]"#)
                .contains("some entries are named")
        );
        assert!(
            schema(r#"[{"type": "double", "name": "a"}, {"type": "long", "name": "a"}]"#)
                .contains("'a' appears more than once")
        );
        assert!(schema(r#"[{"type": "double", "name": 3}]"#).contains("is not a string"));
        assert!(schema(r#"[{"type": "double", "required": "yes"}]"#).contains("not a boolean"));

        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("MLmodel"), "signature: [unclosed\n").unwrap();
        let message = load_signature(folder.path()).unwrap_err().to_string();
        assert!(
            message.contains("MLmodel: the MLmodel file is not valid YAML"),
            "{message}"
        );
    }
}

/// Properties of the `MLmodel` reader: it never panics, whatever the file holds, and every
/// signature MLflow could write reads back as written.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn column_type() -> impl Strategy<Value = ColumnType> {
        prop::sample::select(vec![
            "boolean",
            "integer",
            "long",
            "float",
            "double",
            "string",
            "binary",
            "datetime",
            "array",
            "object",
            "map",
            "any",
            "sparkml_vector",
        ])
        .prop_map(|name| ColumnType::parse(name).unwrap())
    }

    /// Names as MLflow writes them: any text, quotes and YAML's specials included.
    fn names(count: usize) -> impl Strategy<Value = Vec<String>> {
        prop::collection::hash_set("[ -~\u{e9}\u{4e2d}]{1,12}", count)
            .prop_map(|names| names.into_iter().collect())
    }

    fn columns() -> impl Strategy<Value = Schema> {
        (1usize..6, any::<bool>()).prop_flat_map(|(count, named)| {
            (
                prop::collection::vec((column_type(), any::<bool>()), count),
                names(count),
            )
                .prop_map(move |(specs, names)| {
                    Schema::Columns(
                        specs
                            .into_iter()
                            .zip(names)
                            .map(|((ty, required), name)| ColumnSpec {
                                name: named.then_some(name),
                                ty,
                                required,
                            })
                            .collect(),
                    )
                })
        })
    }

    fn tensors() -> impl Strategy<Value = Schema> {
        let spec = (
            prop::sample::select(vec![
                "float32", "float64", "int64", "uint8", "str", "object",
            ]),
            prop::collection::vec(-1i64..1000, 0..4),
        );
        (1usize..4).prop_flat_map(move |count| {
            (prop::collection::vec(spec.clone(), count), names(count)).prop_map(
                move |(specs, names)| {
                    Schema::Tensors(
                        specs
                            .into_iter()
                            .zip(names)
                            // One tensor may go unnamed; several must be named.
                            .map(|((dtype, shape), name)| TensorSpec {
                                name: (count > 1).then_some(name),
                                dtype: dtype.to_owned(),
                                shape,
                            })
                            .collect(),
                    )
                },
            )
        })
    }

    /// The JSON string MLflow's `Schema.to_json` writes.
    fn mlflow_json(schema: &Schema) -> String {
        let entries: Vec<Value> = match schema {
            Schema::Columns(columns) => columns
                .iter()
                .map(|c| {
                    let mut entry = json!({"type": c.ty.name(), "required": c.required});
                    if let Some(name) = &c.name {
                        entry["name"] = json!(name);
                    }
                    entry
                })
                .collect(),
            Schema::Tensors(tensors) => tensors
                .iter()
                .map(|t| {
                    let mut entry = json!({
                        "type": "tensor",
                        "tensor-spec": {"dtype": t.dtype, "shape": t.shape},
                    });
                    if let Some(name) = &t.name {
                        entry["name"] = json!(name);
                    }
                    entry
                })
                .collect(),
        };
        serde_json::to_string(&entries).unwrap()
    }

    /// A YAML single-quoted scalar, as PyYAML writes MLflow's JSON strings.
    fn single_quoted(text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = Signature::from_mlmodel(&text);
        }

        #[test]
        fn yaml_ish_text_never_panics(
            parts in prop::collection::vec(prop::sample::select(vec![
                "signature:", "\n", "  ", "inputs: ", "outputs: ", "'", "\"", "[", "]", "{", "}",
                "\"type\": ", "\"tensor\"", "\"double\"", "\"tensor-spec\": ", "\"shape\": ",
                "[-1, 4]", "\"dtype\": \"float32\"", "\"name\": ", "\"required\": ", "true",
                "null", ", ", ": ", "- ", "&a ", "*a", "!!str ", "|\n", ">\n", "#", "1e999",
                "-2", "\u{0}", "\t",
            ]), 0..40)
        ) {
            let _ = Signature::from_mlmodel(&parts.concat());
        }

        #[test]
        fn written_signatures_read_back_as_written(
            inputs in prop::option::of(prop_oneof![columns(), tensors()]),
            outputs in prop::option::of(prop_oneof![columns(), tensors()]),
        ) {
            let field = |schema: &Option<Schema>| {
                schema.as_ref().map_or_else(|| "null".to_owned(), |s| single_quoted(&mlflow_json(s)))
            };
            let text = format!(
                "artifact_path: model\nflavors:\n  onnx:\n    data: model.onnx\nsignature:\n  \
                 inputs: {}\n  outputs: {}\n  params: null\n",
                field(&inputs),
                field(&outputs),
            );
            let read = Signature::from_mlmodel(&text);
            prop_assert!(read.is_ok(), "{text}: {:?}", read.err());
            let expected = (inputs.is_some() || outputs.is_some())
                .then_some(Signature { inputs, outputs });
            prop_assert_eq!(read.ok().flatten(), expected, "{}", text);
        }
    }
}
