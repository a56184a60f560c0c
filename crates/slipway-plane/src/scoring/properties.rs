//! Properties of the scoring body parsers: no input makes them panic, every shape MLflow
//! clients send reads to the rows serde_json reads from it, and the row and value limits hold
//! whatever the shape.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::body::{self, Budget};
use super::{Limits, rows_from_json};

fn limits(max_rows: usize, max_values: usize) -> Limits {
    Limits {
        max_rows,
        max_values,
        ..Limits::default()
    }
}

/// A matrix of numbers as clients send them: integers, decimals, exponents, f32 extremes.
fn matrix() -> impl Strategy<Value = Vec<Vec<f64>>> {
    let number = prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        -1e6f64..1e6,
        (-3.0e38f64..3.0e38),
        Just(0.0),
        Just(f32::MIN_POSITIVE as f64),
    ];
    (0usize..6, 1usize..5).prop_flat_map(move |(rows, columns)| {
        prop::collection::vec(prop::collection::vec(number.clone(), columns), rows)
    })
}

/// The same matrix in every JSON shape MLflow's scoring server reads, with the input named
/// `x` where a shape names it.
fn shapes(matrix: &[Vec<f64>]) -> Vec<Value> {
    let columns: Vec<String> = (0..matrix.first().map_or(0, Vec::len))
        .map(|c| format!("c{c}"))
        .collect();
    let records: Vec<Value> = matrix
        .iter()
        .map(|row| {
            Value::Object(
                columns
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|v| json!(v)))
                    .collect(),
            )
        })
        .collect();
    let mut shapes = vec![
        json!({ "inputs": matrix }),
        json!({ "instances": matrix }),
        json!({ "inputs": { "x": matrix } }),
        json!({ "dataframe_split": { "columns": columns, "data": matrix } }),
    ];
    if !matrix.is_empty() {
        shapes.push(json!({ "dataframe_records": records }));
    }
    shapes
}

/// What serde_json reads from the body, as the model's f32 rows.
fn serde_rows(body: &Value) -> Vec<Vec<f32>> {
    let matrix = body
        .get("inputs")
        .or_else(|| body.get("instances"))
        .or_else(|| body.pointer("/dataframe_split/data"))
        .cloned();
    let matrix: Vec<Vec<f64>> = match matrix {
        Some(Value::Object(named)) => serde_json::from_value(named["x"].clone()).unwrap(),
        Some(matrix) => serde_json::from_value(matrix).unwrap(),
        None => body["dataframe_records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|record| {
                let mut row: Vec<(String, f64)> = serde_json::from_value::<
                    std::collections::BTreeMap<String, f64>,
                >(record.clone())
                .unwrap()
                .into_iter()
                .collect();
                row.sort_by_key(|(name, _)| name[1..].parse::<usize>().unwrap());
                row.into_iter().map(|(_, value)| value).collect()
            })
            .collect(),
    };
    matrix
        .into_iter()
        .map(|row| row.into_iter().map(|v| v as f32).collect())
        .collect()
}

/// The body with whitespace where JSON allows it, as some clients pretty-print.
fn spaced(body: &Value, pretty: bool) -> Vec<u8> {
    if pretty {
        serde_json::to_vec_pretty(body).unwrap()
    } else {
        serde_json::to_vec(body).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let limits = limits(8, 32);
        let _ = rows_from_json(&bytes, "x", &limits);
        let _ = body::csv(&bytes, limits.budget());
        let _ = body::v2(&bytes, limits.budget());
    }

    #[test]
    fn json_ish_bytes_never_panic(
        parts in prop::collection::vec(prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", " ", "\"inputs\"", "\"instances\"", "\"x\"",
            "\"dataframe_split\"", "\"dataframe_records\"", "\"columns\"", "\"data\"",
            "\"index\"", "\"name\"", "\"shape\"", "\"datatype\"", "\"FP32\"", "\"outputs\"",
            "\"id\"", "\"parameters\"", "1", "-0.5", "1e39", "1e400", "-", "01", ".", "e",
            "null", "true", "\"a\"", "\"\\u0000\"", "NaN",
        ]), 0..48)
    ) {
        let body = parts.concat();
        let limits = limits(8, 32);
        let _ = rows_from_json(body.as_bytes(), "x", &limits);
        let _ = body::v2(body.as_bytes(), limits.budget());
    }

    #[test]
    fn every_shape_reads_the_rows_serde_json_reads(matrix in matrix(), pretty in any::<bool>()) {
        let limits = Limits::default();
        for body in shapes(&matrix) {
            let bytes = spaced(&body, pretty);
            let read = rows_from_json(&bytes, "x", &limits).map_err(|e| e.message);
            prop_assert_eq!(read.map(|(rows, _)| rows), Ok(serde_rows(&body)), "{}", body);
        }
        // CSV: a header row, then the numbers as pandas would read them.
        if let Some(first) = matrix.first() {
            let mut text = (0..first.len()).map(|c| format!("c{c}")).collect::<Vec<_>>().join(",");
            for row in &matrix {
                text.push('\n');
                text.push_str(&row.iter().map(f64::to_string).collect::<Vec<_>>().join(","));
            }
            let read = body::csv(text.as_bytes(), limits.budget()).map_err(|e| e.message);
            prop_assert_eq!(read.map(|(rows, _)| rows), Ok(serde_rows(&json!({"inputs": matrix}))));
        }
        // V2: one FP32 tensor, its data flat.
        let (rows, columns) = (matrix.len(), matrix.first().map_or(0, Vec::len));
        let flat: Vec<f64> = matrix.iter().flatten().copied().collect();
        let request = json!({"inputs": [{"name": "x", "shape": [rows, columns], "datatype": "FP32", "data": flat}]});
        let read = body::v2(&spaced(&request, pretty), limits.budget()).map_err(|e| e.message);
        let expected: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
        prop_assert!(read.is_ok(), "{}: {:?}", request, read.err());
        let (_, inputs) = read.ok().unwrap();
        prop_assert_eq!(&inputs[0].data, &expected);
        prop_assert_eq!(&inputs[0].shape, &vec![rows as u64, columns as u64]);
    }

    #[test]
    fn the_limits_hold_in_every_shape(
        matrix in matrix(),
        max_rows in 0usize..6,
        max_values in 0usize..20,
    ) {
        let rows = matrix.len();
        let values: usize = matrix.iter().map(Vec::len).sum();
        let over = rows > max_rows || values > max_values;
        let limits = limits(max_rows, max_values);
        for body in shapes(&matrix) {
            let read = rows_from_json(&spaced(&body, false), "x", &limits);
            match read {
                Ok((read, _)) => prop_assert!(!over && read.len() == rows, "{}", body),
                Err(error) => {
                    prop_assert!(over, "{}: {}", body, error.message);
                    prop_assert_eq!(error.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
                }
            }
        }
        let budget = Budget::new(max_rows, max_values);
        let flat: Vec<f64> = matrix.iter().flatten().copied().collect();
        let columns = matrix.first().map_or(0, Vec::len);
        let request = json!({"inputs": [{"name": "x", "shape": [rows, columns], "datatype": "FP32", "data": flat}]});
        match body::v2(&spaced(&request, false), budget) {
            Ok(_) => prop_assert!(!over, "{}", request),
            Err(error) => {
                prop_assert!(over, "{}: {}", request, error.message);
                prop_assert_eq!(error.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
    }
}
