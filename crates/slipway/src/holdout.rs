//! A registered model run on a data file on this machine, the way the data plane runs it: its
//! features (the MLmodel signature's names, else the file's columns but the label), the rows as
//! f32, and its outputs. Shared by `monitor reference create` and `gate`.

use std::path::Path;

use anyhow::{Context, bail};
use slipway_monitor::{ColumnType, RawValue, infer_column_type};
use slipway_serving::Output;
use slipway_serving::{OnnxModel, Runtime};

use crate::drift::read::Table;
use crate::serve::Fetched;

/// The model's input columns: its signature's names, else every column of the file but those
/// `left_out` (the label, a sensitive column), in the file's order.
pub(crate) fn features_of(fetched: &Fetched, columns: &[String], left_out: &[&str]) -> Vec<String> {
    let mlmodel = fetched
        .file
        .parent()
        .and_then(|folder| std::fs::read_to_string(folder.join("MLmodel")).ok());
    features_from(mlmodel.as_deref(), columns, left_out)
}

/// [`features_of`] with the `MLmodel` file's text at hand.
pub(crate) fn features_from(
    mlmodel: Option<&str>,
    columns: &[String],
    left_out: &[&str],
) -> Vec<String> {
    let signature_names = mlmodel
        .and_then(|text| {
            slipway_serving::signature::Signature::from_mlmodel(text)
                .ok()
                .flatten()
        })
        .and_then(|signature| match signature.inputs {
            Some(slipway_serving::signature::Schema::Columns(specs)) => specs
                .into_iter()
                .map(|spec| spec.name)
                .collect::<Option<Vec<String>>>(),
            _ => None,
        });
    match signature_names {
        Some(names) => names,
        None => columns
            .iter()
            .filter(|c| !left_out.contains(&c.as_str()))
            .cloned()
            .collect(),
    }
}

pub(crate) fn load(
    runtime: &Runtime,
    fetched: &Fetched,
    model_uri: &str,
) -> anyhow::Result<OnnxModel> {
    let bytes = std::fs::read(&fetched.file)
        .with_context(|| format!("reading {}", fetched.file.display()))?;
    OnnxModel::from_bytes(runtime, &bytes, 1).with_context(|| format!("loading {model_uri}"))
}

/// Refuses a file that gives the model another number of features than it takes.
pub(crate) fn check_width(
    model: &OnnxModel,
    model_uri: &str,
    features: &[String],
    data: &Path,
    labelled: bool,
) -> anyhow::Result<()> {
    let width = model
        .inputs()
        .first()
        .and_then(|input| input.shape.last().copied())
        .filter(|w| *w > 0);
    if let Some(width) = width
        && usize::try_from(width).ok() != Some(features.len())
    {
        bail!(
            "{model_uri} takes {width} features per row, and {} gives {}: {}{}",
            data.display(),
            features.len(),
            features.join(", "),
            if labelled {
                " (give a file of the model's inputs and the label only)"
            } else {
                " (name the label column with --label, or give a file of the model's inputs only)"
            }
        );
    }
    Ok(())
}

/// The position of column `name` in the file.
pub(crate) fn column_index(columns: &[String], data: &Path, name: &str) -> anyhow::Result<usize> {
    columns.iter().position(|c| c == name).with_context(|| {
        format!(
            "{}: the model takes column {name:?}, which the file does not have (columns: {})",
            data.display(),
            columns.join(", ")
        )
    })
}

/// The rows `keep` of the file, the model's features as f32 (as the scoring protocol hands
/// them to it), with each feature's inferred type.
pub(crate) fn feature_rows(
    table: &Table,
    data: &Path,
    features: &[String],
    keep: &[usize],
) -> anyhow::Result<(Vec<Vec<f32>>, Vec<ColumnType>)> {
    let columns = table.columns().to_vec();
    let mut inferred_types = Vec::with_capacity(features.len());
    let mut by_column: Vec<Vec<f32>> = Vec::with_capacity(features.len());
    for name in features {
        let index = column_index(&columns, data, name)?;
        let (values, bad, inferred) = table.with_column(index, |cells| {
            let mut bad = None;
            let values: Vec<f32> = keep
                .iter()
                .map(|&row| match cells.get(row) {
                    Some(RawValue::Float(f)) => *f as f32,
                    Some(RawValue::Int(i)) => *i as f32,
                    Some(RawValue::Bool(b)) => f32::from(u8::from(*b)),
                    Some(RawValue::Null) | None => f32::NAN,
                    Some(RawValue::Str(s)) => {
                        bad.get_or_insert_with(|| (*s).to_owned());
                        f32::NAN
                    }
                })
                .collect();
            (values, bad, infer_column_type(cells))
        })?;
        if let Some(text) = bad {
            bail!(
                "{}: column {name:?} holds text ({text:?}); the model takes numbers (encode it before the model, or give the model's own input data)",
                data.display()
            );
        }
        inferred_types.push(inferred);
        by_column.push(values);
    }
    let rows = (0..keep.len())
        .map(|r| by_column.iter().map(|column| column[r]).collect())
        .collect();
    Ok((rows, inferred_types))
}

/// The model's outputs on `rows`, in batches of 1,024.
pub(crate) fn run(
    model: &OnnxModel,
    rows: &[Vec<f32>],
    model_uri: &str,
    data: &Path,
) -> anyhow::Result<Vec<Vec<Output>>> {
    rows.chunks(1_024)
        .map(|batch| {
            model
                .predict_rows(batch)
                .with_context(|| format!("running {model_uri} on {}", data.display()))
        })
        .collect()
}

/// A true label as read from the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Truth {
    Class(i64),
    Label(String),
    Value(f64),
    Missing,
}

impl Truth {
    pub(crate) fn of(cell: RawValue<'_>) -> Truth {
        match cell {
            RawValue::Int(i) => Truth::Class(i),
            RawValue::Bool(b) => Truth::Class(i64::from(b)),
            RawValue::Float(f) if f.is_finite() => Truth::Value(f),
            RawValue::Str(s) => Truth::Label(s.to_owned()),
            _ => Truth::Missing,
        }
    }

    /// The class as text, so that `1`, `1.0` and `"1"` meet.
    pub(crate) fn class(&self) -> Option<String> {
        match self {
            Truth::Class(c) => Some(c.to_string()),
            Truth::Label(l) => Some(l.clone()),
            Truth::Value(v) if v.fract() == 0.0 && v.abs() < 9e15 => Some((*v as i64).to_string()),
            Truth::Value(v) => Some(v.to_string()),
            Truth::Missing => None,
        }
    }

    /// The value, for a regressor.
    pub(crate) fn value(&self) -> Option<f64> {
        match self {
            Truth::Class(c) => Some(*c as f64),
            Truth::Value(v) => Some(*v),
            Truth::Label(l) => l.parse().ok(),
            Truth::Missing => None,
        }
    }
}
