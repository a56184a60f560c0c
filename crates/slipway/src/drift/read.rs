//! Tables for `slipway drift`: CSV and Parquet files read into columns of cells the way pandas
//! would type them, so Evidently's type inference sees what it sees in Python.
//!
//! A CSV file is read once into one text buffer per column and typed column by column; a
//! Parquet file is read one column at a time (its reader is opened per column, so columns can
//! be read on several threads), which keeps a wide Parquet file's memory to the columns being
//! compared.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use parquet::basic::{ConvertedType, LogicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use slipway_monitor::RawValue;

/// pandas' default `na_values` for `read_csv`: these cells are missing.
const CSV_NA: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Rows read per call of a Parquet column reader.
const PARQUET_BATCH: usize = 64 * 1024;

/// A file of columns.
pub enum Table {
    Csv(CsvTable),
    Parquet(ParquetTable),
}

impl Table {
    /// Opens `path` by its extension (`.csv`, `.parquet`/`.pq`); a CSV file is read whole now.
    pub fn open(path: &Path) -> anyhow::Result<Table> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match extension.as_str() {
            "csv" => Ok(Table::Csv(CsvTable::read(path)?)),
            "parquet" | "pq" => Ok(Table::Parquet(ParquetTable::open(path)?)),
            _ => bail!(
                "{}: cannot tell the format: name the file .csv or .parquet",
                path.display()
            ),
        }
    }

    pub fn columns(&self) -> &[String] {
        match self {
            Table::Csv(t) => &t.names,
            Table::Parquet(t) => &t.names,
        }
    }

    pub fn rows(&self) -> u64 {
        match self {
            Table::Csv(t) => t.rows as u64,
            Table::Parquet(t) => t.rows,
        }
    }

    /// The values of column `index` when it is a Parquet float column (pandas' float64, which
    /// Evidently always takes as numerical), missing ones as NaN: the fast path that skips
    /// building cells. `None` for any other column.
    pub fn floats(&self, index: usize) -> anyhow::Result<Option<Vec<f64>>> {
        match self {
            Table::Csv(_) => Ok(None),
            Table::Parquet(t) => t.floats(index),
        }
    }

    /// Calls `f` with the cells of column `index`, typed as pandas would type them.
    pub fn with_column<R>(
        &self,
        index: usize,
        f: impl FnOnce(&[RawValue<'_>]) -> R,
    ) -> anyhow::Result<R> {
        match self {
            Table::Csv(t) => Ok(f(&t.cells(index))),
            Table::Parquet(t) => t.with_column(index, f),
        }
    }
}

/// A CSV file held as one text buffer per column.
pub struct CsvTable {
    names: Vec<String>,
    columns: Vec<CsvColumn>,
    rows: usize,
}

#[derive(Default)]
struct CsvColumn {
    text: String,
    /// Where each cell ends in `text`.
    ends: Vec<usize>,
}

impl CsvTable {
    fn read(path: &Path) -> anyhow::Result<CsvTable> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
        let names: Vec<String> = reader
            .headers()
            .with_context(|| format!("{}: cannot read the header row", path.display()))?
            .iter()
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            bail!("{}: the file has no columns", path.display());
        }
        let mut columns: Vec<CsvColumn> = names.iter().map(|_| CsvColumn::default()).collect();
        let mut record = csv::StringRecord::new();
        let mut rows = 0usize;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("{}: cannot read row {}", path.display(), rows + 2)
                    });
                }
            }
            for (column, cell) in columns.iter_mut().zip(record.iter()) {
                column.text.push_str(cell);
                column.ends.push(column.text.len());
            }
            rows += 1;
        }
        Ok(CsvTable {
            names,
            columns,
            rows,
        })
    }

    fn cell(column: &CsvColumn, row: usize) -> &str {
        let start = if row == 0 { 0 } else { column.ends[row - 1] };
        &column.text[start..column.ends[row]]
    }

    /// The cells of one column, typed as pandas' `read_csv` types a column: integers when
    /// every present cell is one and none is missing (an integer column with a missing cell
    /// is float64), floats when every present cell is a number, booleans when every cell is
    /// `True`/`False` (any case pandas accepts) and none is missing, and strings otherwise.
    fn cells(&self, index: usize) -> Vec<RawValue<'_>> {
        let column = &self.columns[index];
        let texts: Vec<&str> = (0..self.rows).map(|row| Self::cell(column, row)).collect();
        let missing = |s: &str| CSV_NA.contains(&s);
        let present = || texts.iter().copied().filter(|s| !missing(s));
        let any_missing = texts.iter().any(|s| missing(s));
        if present().all(|s| parse_int(s).is_some()) && !any_missing && !texts.is_empty() {
            return texts
                .iter()
                .map(|s| RawValue::Int(parse_int(s).unwrap_or_default()))
                .collect();
        }
        if present().all(|s| parse_float(s).is_some()) {
            return texts
                .iter()
                .map(|s| match (missing(s), parse_float(s)) {
                    (false, Some(v)) => RawValue::Float(v),
                    _ => RawValue::Null,
                })
                .collect();
        }
        let all_bool = present().all(|s| parse_bool(s).is_some());
        texts
            .iter()
            .map(|s| {
                if missing(s) {
                    RawValue::Null
                } else if all_bool {
                    parse_bool(s).map_or(RawValue::Str(s), RawValue::Bool)
                } else {
                    RawValue::Str(s)
                }
            })
            .collect()
    }
}

fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    // Rust reads "infinity" and "inf" in any case, as pandas does; it also reads "nan",
    // which is a missing value before it gets here.
    t.parse::<f64>().ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "TRUE" | "true" => Some(true),
        "False" | "FALSE" | "false" => Some(false),
        _ => None,
    }
}

/// A Parquet file: its flat columns and its row count; columns are read on demand.
pub struct ParquetTable {
    path: PathBuf,
    names: Vec<String>,
    /// The leaf column index of each name.
    leaves: Vec<usize>,
    rows: u64,
}

impl ParquetTable {
    fn open(path: &Path) -> anyhow::Result<ParquetTable> {
        let reader = Self::reader(path)?;
        let metadata = reader.metadata();
        let schema = metadata.file_metadata().schema_descr();
        let (mut names, mut leaves) = (Vec::new(), Vec::new());
        for leaf in 0..schema.num_columns() {
            let column = schema.column(leaf);
            // pandas stores a non-default index as a column; it is not data.
            if column.name().starts_with("__index_level_") {
                continue;
            }
            if column.max_rep_level() > 0 || column.path().parts().len() > 1 {
                bail!(
                    "{}: column {} is nested (a list or a struct); drift compares flat columns",
                    path.display(),
                    column.path().string()
                );
            }
            names.push(column.name().to_owned());
            leaves.push(leaf);
        }
        if names.is_empty() {
            bail!("{}: the file has no columns", path.display());
        }
        Ok(ParquetTable {
            path: path.to_owned(),
            names,
            leaves,
            rows: metadata.file_metadata().num_rows().max(0) as u64,
        })
    }

    /// Room to reserve for a column: the row count the footer claims, but no more than a
    /// million up front, so a file that lies about its size cannot make this allocate it.
    fn capacity(&self) -> usize {
        usize::try_from(self.rows)
            .unwrap_or(usize::MAX)
            .min(1 << 20)
    }

    fn reader(path: &Path) -> anyhow::Result<SerializedFileReader<File>> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        SerializedFileReader::new(file)
            .with_context(|| format!("{}: not a readable Parquet file", path.display()))
    }

    fn floats(&self, index: usize) -> anyhow::Result<Option<Vec<f64>>> {
        let leaf = self.leaves[index];
        let reader = Self::reader(&self.path)?;
        let context = || format!("{}: column {}", self.path.display(), self.names[index]);
        let descriptor = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .column(leaf);
        if !matches!(
            descriptor.physical_type(),
            parquet::basic::Type::DOUBLE | parquet::basic::Type::FLOAT
        ) {
            return Ok(None);
        }
        let max_def = descriptor.max_def_level();
        let mut out = Vec::with_capacity(self.capacity());
        for group in 0..reader.num_row_groups() {
            let row_group = reader.get_row_group(group).with_context(context)?;
            match row_group.get_column_reader(leaf).with_context(context)? {
                ColumnReader::DoubleColumnReader(r) => {
                    read_floats(r, max_def, &mut out, |v| v).with_context(context)?
                }
                ColumnReader::FloatColumnReader(r) => {
                    read_floats(r, max_def, &mut out, f64::from).with_context(context)?
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    fn with_column<R>(
        &self,
        index: usize,
        f: impl FnOnce(&[RawValue<'_>]) -> R,
    ) -> anyhow::Result<R> {
        let leaf = self.leaves[index];
        let name = &self.names[index];
        let reader = Self::reader(&self.path)?;
        let context = || format!("{}: column {name}", self.path.display());
        let descriptor = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .column(leaf);
        let physical = descriptor.physical_type();
        let decimal = matches!(
            descriptor.logical_type_ref(),
            Some(LogicalType::Decimal { .. })
        ) || descriptor.converted_type() == ConvertedType::DECIMAL;
        if decimal {
            bail!(
                "{}: decimal columns are not read; cast it to float or declare it otherwise",
                context()
            );
        }
        let max_def = descriptor.max_def_level();
        // Text cells borrow from these until `f` has seen them.
        let mut texts: Vec<ByteArray> = Vec::new();
        let mut text_defs: Vec<i16> = Vec::new();
        let mut cells: Vec<RawValue<'_>> = Vec::with_capacity(self.capacity());
        for group in 0..reader.num_row_groups() {
            let row_group = reader.get_row_group(group).with_context(context)?;
            let column = row_group.get_column_reader(leaf).with_context(context)?;
            match column {
                ColumnReader::BoolColumnReader(r) => {
                    read_all(r, max_def, &mut cells, RawValue::Bool).with_context(context)?
                }
                ColumnReader::Int32ColumnReader(r) => {
                    read_all(r, max_def, &mut cells, |v| RawValue::Int(i64::from(v)))
                        .with_context(context)?
                }
                ColumnReader::Int64ColumnReader(r) => {
                    read_all(r, max_def, &mut cells, RawValue::Int).with_context(context)?
                }
                ColumnReader::FloatColumnReader(r) => {
                    read_all(r, max_def, &mut cells, |v| RawValue::Float(f64::from(v)))
                        .with_context(context)?
                }
                ColumnReader::DoubleColumnReader(r) => {
                    read_all(r, max_def, &mut cells, RawValue::Float).with_context(context)?
                }
                // Strings (and binary that is valid UTF-8; other bytes are missing).
                ColumnReader::ByteArrayColumnReader(r) => {
                    read_levels_and_values(r, max_def, &mut text_defs, &mut texts)
                        .with_context(context)?
                }
                _ => bail!(
                    "{}: {physical} columns are not read (numbers, booleans and strings are)",
                    context()
                ),
            }
        }
        if !texts.is_empty() || !text_defs.is_empty() {
            let mut values = texts.iter();
            for &def in &text_defs {
                if def < max_def {
                    cells.push(RawValue::Null);
                    continue;
                }
                let Some(value) = values.next() else { break };
                cells.push(match value.as_utf8() {
                    Ok(text) => RawValue::Str(text),
                    Err(_) => RawValue::Null,
                });
            }
        }
        Ok(f(&cells))
    }
}

/// Reads every value of a column chunk in order: `present` for a value, `missing` for a cell
/// whose definition level is below the maximum.
fn read_values<T: DataType>(
    mut reader: ColumnReaderImpl<T>,
    max_def: i16,
    mut present: impl FnMut(T::T),
    mut missing: impl FnMut(),
) -> parquet::errors::Result<()>
where
    T::T: Copy,
{
    let mut values: Vec<T::T> = Vec::with_capacity(PARQUET_BATCH);
    let mut defs: Vec<i16> = Vec::with_capacity(PARQUET_BATCH);
    loop {
        values.clear();
        defs.clear();
        let (records, _, _) = reader.read_records(
            PARQUET_BATCH,
            (max_def > 0).then_some(&mut defs),
            None,
            &mut values,
        )?;
        if records == 0 {
            return Ok(());
        }
        if max_def == 0 || values.len() == defs.len() {
            values.iter().for_each(|&v| present(v));
        } else {
            let mut values = values.iter();
            for &def in &defs {
                match (def < max_def, values.next()) {
                    (false, Some(&v)) => present(v),
                    _ => missing(),
                }
            }
        }
    }
}

/// Every value of a column chunk as a cell.
fn read_all<T: DataType>(
    reader: ColumnReaderImpl<T>,
    max_def: i16,
    cells: &mut Vec<RawValue<'_>>,
    cell: impl Fn(T::T) -> RawValue<'static>,
) -> parquet::errors::Result<()>
where
    T::T: Copy,
{
    let cells = std::cell::RefCell::new(cells);
    read_values(
        reader,
        max_def,
        |v| cells.borrow_mut().push(cell(v)),
        || cells.borrow_mut().push(RawValue::Null),
    )
}

/// Every value of a float column chunk, a missing one as NaN.
fn read_floats<T: DataType>(
    reader: ColumnReaderImpl<T>,
    max_def: i16,
    out: &mut Vec<f64>,
    float: impl Fn(T::T) -> f64,
) -> parquet::errors::Result<()>
where
    T::T: Copy,
{
    let out = std::cell::RefCell::new(out);
    read_values(
        reader,
        max_def,
        |v| out.borrow_mut().push(float(v)),
        || out.borrow_mut().push(f64::NAN),
    )
}

/// Reads a text column chunk's levels and values; the caller pairs them once every chunk is
/// read, since the cells borrow from the values.
fn read_levels_and_values(
    mut reader: ColumnReaderImpl<parquet::data_type::ByteArrayType>,
    max_def: i16,
    defs: &mut Vec<i16>,
    values: &mut Vec<ByteArray>,
) -> parquet::errors::Result<()> {
    loop {
        let before = defs.len();
        let (records, _, _) = reader.read_records(
            PARQUET_BATCH,
            (max_def > 0).then_some(&mut *defs),
            None,
            values,
        )?;
        if records == 0 {
            return Ok(());
        }
        if max_def == 0 {
            // A required column has no levels: every record is present.
            defs.resize(before + records, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> CsvTable {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).expect("write");
        CsvTable::read(&path).expect("read")
    }

    #[test]
    fn csv_columns_are_typed_as_pandas_types_them() {
        let t =
            csv("i,i_na,f,b,b_na,s\n1,1,1.5,True,True,a\n2,,2,False,,1\n3,3,inf,true,false,b\n");
        assert_eq!(t.rows, 3);
        assert_eq!(
            t.cells(0),
            vec![RawValue::Int(1), RawValue::Int(2), RawValue::Int(3)]
        );
        // An integer column with a missing cell is float64.
        assert_eq!(
            t.cells(1),
            vec![RawValue::Float(1.0), RawValue::Null, RawValue::Float(3.0)]
        );
        assert_eq!(
            t.cells(2),
            vec![
                RawValue::Float(1.5),
                RawValue::Float(2.0),
                RawValue::Float(f64::INFINITY)
            ]
        );
        assert_eq!(
            t.cells(3),
            vec![
                RawValue::Bool(true),
                RawValue::Bool(false),
                RawValue::Bool(true)
            ]
        );
        assert_eq!(
            t.cells(4),
            vec![RawValue::Bool(true), RawValue::Null, RawValue::Bool(false)]
        );
        // One word makes the whole column text, numbers included, as pandas' object dtype.
        assert_eq!(
            t.cells(5),
            vec![RawValue::Str("a"), RawValue::Str("1"), RawValue::Str("b")]
        );
    }

    #[test]
    fn a_ragged_csv_row_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "a,b\n1,2\n3\n").expect("write");
        let error = format!("{:#}", CsvTable::read(&path).err().expect("an error"));
        assert!(error.contains("row 3"), "{error}");
    }
}
