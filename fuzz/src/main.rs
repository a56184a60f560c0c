//! A mutation fuzzer for slipway's parsers that runs on the stable toolchain for a bounded time:
//! the search filter grammar (filters and order_by clauses), the scoring body parsers (MLflow
//! JSON shapes, CSV, V2) and the `MLmodel` signature reader.
//!
//! No coverage instrumentation (cargo-fuzz needs nightly): inputs are mutated from seeds, and an
//! input is kept for further mutation when it reaches an outcome not seen before (accepted, or a
//! refusal with a new message), a crude stand-in for new coverage. A panic is a finding: the
//! input is written to the crash folder and the run fails. See `fuzz/README.md`.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use slipway_core::search::{SearchEntity, parse_filter, parse_order_by};

/// One parser under test: its name, seeds, a dictionary of tokens worth inserting, and a
/// function that runs it and names the outcome.
struct Target {
    name: &'static str,
    seeds: &'static [&'static str],
    dictionary: &'static [&'static str],
    run: fn(&[u8]) -> String,
}

const ENTITIES: [SearchEntity; 5] = [
    SearchEntity::Runs,
    SearchEntity::Experiments,
    SearchEntity::RegisteredModels,
    SearchEntity::ModelVersions,
    SearchEntity::LoggedModels,
];

/// An error message with its numbers and quoted input blurred, so that "at position 3" and
/// "at position 4" count as one outcome.
fn outcome<E: std::fmt::Display>(result: Result<impl std::fmt::Debug, E>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(error) => error
            .to_string()
            .split(['\'', '"', '`'])
            .step_by(2)
            .collect::<String>()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(48)
            .collect(),
    }
}

fn filter(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    ENTITIES
        .iter()
        .map(|entity| outcome(parse_filter(*entity, &text)))
        .collect::<Vec<_>>()
        .join("|")
}

fn order_by(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    ENTITIES
        .iter()
        .map(|entity| outcome(parse_order_by(*entity, &text)))
        .collect::<Vec<_>>()
        .join("|")
}

fn status(result: Result<usize, (slipway_plane::scoring::fuzzing::StatusCode, String)>) -> String {
    match result {
        Ok(rows) => format!("ok:{}", rows.min(3)),
        Err((status, message)) => {
            format!("{status} {}", outcome::<String>(Err::<(), _>(message)))
        }
    }
}

fn mlflow_json(bytes: &[u8]) -> String {
    status(slipway_plane::scoring::fuzzing::mlflow_json(bytes))
}

fn csv(bytes: &[u8]) -> String {
    status(slipway_plane::scoring::fuzzing::csv(bytes))
}

fn v2(bytes: &[u8]) -> String {
    status(slipway_plane::scoring::fuzzing::v2(bytes))
}

fn mlmodel(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    outcome(slipway_serving::signature::Signature::from_mlmodel(&text))
}

const TARGETS: &[Target] = &[
    Target {
        name: "filter",
        seeds: &[
            "metrics.rmse < 0.5 AND params.alpha = '0.1'",
            "tags.`mlflow.runName` LIKE '%x%' OR attributes.status != 'FAILED'",
            "attributes.run_id IN ('a', 'b') AND (metrics.a > 1 OR metrics.b <= -2e3)",
            "name ILIKE 'm%' AND tags.k IS NOT NULL",
            "datasets.name = 'd' AND datasets.digest IN ('x')",
            "version_number >= 2 AND run_id = 'r'",
            "attribute.creation_time > 1700000000000",
        ],
        dictionary: &[
            " AND ",
            " OR ",
            "NOT ",
            " IN ",
            " IS NULL",
            " IS NOT NULL",
            " LIKE ",
            " ILIKE ",
            "(",
            ")",
            "'",
            "\"",
            "`",
            "metrics.",
            "params.",
            "tags.",
            "attributes.",
            "datasets.",
            "=",
            "!=",
            "<=",
            ">",
            ",",
            "1e308",
            "-",
            ".",
            "\\",
            "\u{0}",
            "\u{e9}",
        ],
        run: filter,
    },
    Target {
        name: "order_by",
        seeds: &[
            "metrics.rmse DESC",
            "attributes.start_time ASC",
            "tags.`a b`",
            "name",
            "version_number desc",
        ],
        dictionary: &[
            " ASC", " DESC", "metrics.", "`", "\"", "'", " ", ".", "\u{e9}",
        ],
        run: order_by,
    },
    Target {
        name: "mlflow_json",
        seeds: &[
            r#"{"inputs": [[1, 2.5], [3, 4]]}"#,
            r#"{"instances": [[1e3, -0.5]]}"#,
            r#"{"inputs": {"input": [[1, 2]]}}"#,
            r#"{"dataframe_split": {"index": [0], "columns": ["a", "b"], "data": [[1, 2]]}}"#,
            r#"{"dataframe_records": [{"a": 1, "b": 2.5}, {"b": 4, "a": 3}]}"#,
            r#"{"inputs": [[1]], "params": {"k": 1}}"#,
        ],
        dictionary: &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"inputs\"",
            "\"instances\"",
            "\"dataframe_split\"",
            "\"dataframe_records\"",
            "\"columns\"",
            "\"data\"",
            "\"index\"",
            "1e39",
            "1e400",
            "-0",
            "01",
            "null",
            "\"\\u0000\"",
            "[[1,2],[3]]",
        ],
        run: mlflow_json,
    },
    Target {
        name: "csv",
        seeds: &["a,b\n1,2.5\n3,4\n", "x\n1e3\n-2\n", "\"a,b\",c\n1,2\n"],
        dictionary: &[",", "\n", "\r\n", "\"", "1e39", "NaN", "inf", "-", " "],
        run: csv,
    },
    Target {
        name: "v2",
        seeds: &[
            r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#,
            r#"{"id": "r1", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [[1, 2]]}], "outputs": [{"name": "y"}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [7], "parameters": {}}]}"#,
        ],
        dictionary: &[
            "{",
            "}",
            "[",
            "]",
            ",",
            "\"shape\"",
            "\"data\"",
            "\"datatype\"",
            "\"FP32\"",
            "\"BYTES\"",
            "\"name\"",
            "\"outputs\"",
            "18446744073709551615",
            "-1",
            "0",
            "1e39",
        ],
        run: v2,
    },
    Target {
        name: "mlmodel",
        seeds: &[
            "flavors:\n  onnx:\n    data: model.onnx\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"a\", \"required\": true}]'\n  outputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"int64\", \"shape\": [-1]}}]'\n  params: null\n",
            "signature:\n  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", \"shape\": [-1, 30]}}]'\n",
            "artifact_path: model\nsignature: null\n",
        ],
        dictionary: &[
            "\n",
            "  ",
            ": ",
            "'",
            "\"",
            "- ",
            "&a ",
            "*a",
            "!!binary ",
            "|\n",
            "{",
            "}",
            "[",
            "]",
            "\"tensor\"",
            "\"tensor-spec\"",
            "\"shape\"",
            "\"required\"",
            "\"optional\"",
            "null",
            "signature:",
            "inputs:",
            "outputs:",
            "-2",
            "1e999",
        ],
        run: mlmodel,
    },
];

/// One random edit of `input`, drawing on the target's dictionary and on another kept input.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, dictionary: &[&str], other: &[u8]) {
    let at = |rng: &mut fastrand::Rng, len: usize| rng.usize(..=len);
    match rng.u8(..8) {
        0 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] ^= 1 << rng.u8(..8);
        }
        1 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] = *rng
                .choice(&[0u8, b' ', b'"', b'\'', b'\\', b'0', b'9', 0x7f, 0xff, 0xc3])
                .unwrap_or(&0);
        }
        2 | 3 => {
            let token = rng.choice(dictionary).copied().unwrap_or(" ");
            let i = at(rng, input.len());
            input.splice(i..i, token.bytes());
        }
        4 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=8)).min(input.len());
            input.drain(start..end);
        }
        5 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=16)).min(input.len());
            let copy = input[start..end].to_vec();
            let i = at(rng, input.len());
            input.splice(i..i, copy);
        }
        6 if !other.is_empty() => {
            let start = rng.usize(..other.len());
            let end = (start + rng.usize(1..=32)).min(other.len());
            let i = at(rng, input.len());
            input.splice(i..i, other[start..end].iter().copied());
        }
        _ => {
            let len = input.len();
            input.truncate(at(rng, len));
        }
    }
}

struct Options {
    seconds: u64,
    seed: u64,
    targets: Vec<&'static Target>,
    crashes: PathBuf,
    max_len: usize,
}

fn usage() -> String {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    format!(
        "usage: slipway-fuzz [--seconds N] [--seed N] [--target NAME]... [--crashes DIR] [--max-len BYTES]\n\
         targets: {} (default: all)",
        names.join(", ")
    )
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        seconds: 60,
        seed: fastrand::u64(..),
        targets: Vec::new(),
        crashes: PathBuf::from("fuzz/crashes"),
        max_len: 4096,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--seed" => options.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--max-len" => {
                options.max_len = value()?.parse().map_err(|e| format!("--max-len: {e}"))?
            }
            "--crashes" => options.crashes = PathBuf::from(value()?),
            "--target" => {
                let name = value()?;
                let target = TARGETS
                    .iter()
                    .find(|t| t.name == name)
                    .ok_or_else(|| format!("unknown target '{name}'\n{}", usage()))?;
                options.targets.push(target);
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument '{other}'\n{}", usage())),
        }
    }
    if options.targets.is_empty() {
        options.targets = TARGETS.iter().collect();
    }
    Ok(options)
}

/// What one target's run found.
struct Stats {
    runs: u64,
    kept: usize,
    outcomes: usize,
    crashes: Vec<PathBuf>,
}

fn fuzz(target: &Target, options: &Options, rng: &mut fastrand::Rng, budget: Duration) -> Stats {
    let mut pool: Vec<Vec<u8>> = target.seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut crashes = Vec::new();
    let mut crashed: HashSet<String> = HashSet::new();
    let mut runs = 0u64;
    let deadline = Instant::now() + budget;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = pool[rng.usize(..pool.len())].clone();
            let other = pool[rng.usize(..pool.len())].clone();
            for _ in 0..rng.usize(1..=4) {
                mutate(rng, &mut input, target.dictionary, &other);
            }
            input.truncate(options.max_len);
            runs += 1;
            match catch_unwind(AssertUnwindSafe(|| (target.run)(&input))) {
                Ok(outcome) => {
                    if seen.insert(outcome) && pool.len() < 4096 {
                        pool.push(input);
                    }
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    if crashed.insert(message.clone()) {
                        let path =
                            options
                                .crashes
                                .join(format!("{}-{}", target.name, crashes.len()));
                        let _ = std::fs::create_dir_all(&options.crashes);
                        let _ = std::fs::write(&path, &input);
                        eprintln!(
                            "{}: panic '{message}'; input in {}",
                            target.name,
                            path.display()
                        );
                        crashes.push(path);
                    }
                }
            }
        }
    }
    Stats {
        runs,
        kept: pool.len(),
        outcomes: seen.len(),
        crashes,
    }
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Panics are findings, reported once each with their input; not the default hook's noise.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let share = Duration::from_secs(options.seconds) / options.targets.len() as u32;
    println!(
        "slipway-fuzz: seed {}, {} s over {} target(s)",
        options.seed,
        options.seconds,
        options.targets.len()
    );
    let mut failed = false;
    for target in &options.targets {
        let stats = fuzz(target, &options, &mut rng, share);
        println!(
            "{:<12} {:>9} runs  {:>5} outcomes  {:>5} inputs kept  {} crash(es)",
            target.name,
            stats.runs,
            stats.outcomes,
            stats.kept,
            stats.crashes.len()
        );
        failed |= !stats.crashes.is_empty();
    }
    if failed {
        eprintln!("crashing inputs are in {}", options.crashes.display());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
