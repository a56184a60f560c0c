//! The seeded samples of `tests/cases/make_cases.py`, regenerated bit for bit.

use serde_json::Value;
use slipway_monitor::{ColumnProfile, ProfileConfig, ProfileKind, RawValue};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const DRAWS: u64 = 5;

fn uniform(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * 2f64.powi(-53)
}

/// One generated cell, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Float(f64),
    Int(i64),
    Str(String),
    Bool(bool),
}

impl Cell {
    pub fn raw(&self) -> RawValue<'_> {
        match self {
            Cell::Null => RawValue::Null,
            Cell::Float(v) => RawValue::Float(*v),
            Cell::Int(v) => RawValue::Int(*v),
            Cell::Str(s) => RawValue::Str(s),
            Cell::Bool(b) => RawValue::Bool(*b),
        }
    }
}

pub fn generate(spec: &Value) -> Vec<Cell> {
    let seed = spec["seed"].as_u64().expect("seed");
    let n = spec["n"].as_u64().expect("n");
    let loc = spec.get("loc").and_then(Value::as_f64).unwrap_or(0.0);
    let scale = spec.get("scale").and_then(Value::as_f64).unwrap_or(1.0);
    let k = spec.get("k").and_then(Value::as_f64).unwrap_or(10.0);
    let power = spec.get("power").and_then(Value::as_u64).unwrap_or(1);
    let missing = spec.get("missing").and_then(Value::as_f64).unwrap_or(0.0);
    let shape = spec["shape"].as_str().expect("shape");
    let kind = spec["kind"].as_str().expect("kind");
    (0..n)
        .map(|i| {
            let u = |j: u64| uniform(seed, i * DRAWS + j + 1);
            if u(0) < missing {
                return Cell::Null;
            }
            let x = match shape {
                "uniform" => loc + scale * u(1),
                "normalish" => loc + scale * ((((u(1) + u(2)) + u(3)) + u(4)) - 2.0),
                "skew" => loc + scale * (u(1) * u(1)),
                "ties" => loc + scale * (u(1) * k).floor(),
                "levels" => {
                    let v = if power == 2 { u(1) * u(1) } else { u(1) };
                    (v * k).floor() + loc
                }
                "const" => loc,
                other => panic!("unknown shape {other}"),
            };
            match kind {
                "float" => Cell::Float(x),
                "int" => Cell::Int(x as i64),
                "str" => Cell::Str(format!("c{}", x as i64)),
                "bool" => Cell::Bool((x as i64) % 2 == 1),
                other => panic!("unknown kind {other}"),
            }
        })
        .collect()
}

pub fn profile(cells: &[Cell], kind: ProfileKind, config: ProfileConfig) -> ColumnProfile {
    let mut profile = ColumnProfile::new(kind, config);
    for cell in cells {
        profile.push(cell.raw());
    }
    profile.finish();
    profile
}
