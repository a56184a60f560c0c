//! `slipway monitor`: a model version's drift monitoring reference, built here from data the
//! model was validated on (the model runs locally through ONNX Runtime, so its predictions on
//! the reference are the same computation the data plane does), and a deployment's windows.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use slipway_monitor::live::{Feature, REFERENCE_CONFIG, Schema, Summary};
use slipway_monitor::{ColumnType, RawValue};
use slipway_plane::plane::monitor::{
    Prediction, prediction_feature, predictions, push_predictions,
};
use slipway_serving::Runtime;

use crate::drift::read::Table;
use crate::holdout::Truth;
use crate::remote::{Client, ServerArgs, urlencode};

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: MonitorCommand,
}

#[derive(Debug, Subcommand)]
enum MonitorCommand {
    /// A model version's monitoring reference: what its inputs and predictions looked like on
    /// data it was validated on. Every deployment serving the version compares its live
    /// traffic with it, window by window.
    Reference {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// A deployment's performance per window of prediction time: realized where true labels
    /// have arrived (`slipway labels upload`), estimated from the classifier's probabilities
    /// on every logged prediction (CBPE), and on the version's reference.
    Performance {
        /// The deployment.
        deployment: String,
        /// Window length.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        window: std::time::Duration,
        /// Windows to show, newest first.
        #[arg(long, default_value_t = 24)]
        windows: u32,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// A deployment's drift monitoring: its latest windows, and the latest one feature by
    /// feature. Exit code 0 when the latest window did not drift as a dataset (or there is
    /// none yet), 1 when it did, 2 on an error.
    Status {
        /// The deployment.
        deployment: String,
        /// Windows to list, newest first.
        #[arg(long, default_value_t = 10)]
        windows: u32,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ReferenceCommand {
    /// Build the reference from a CSV or Parquet file and store it with the version. The
    /// features are the model's input columns (its MLmodel signature's names, else the file's
    /// columns but the label, in order); the model runs on the rows for its predictions.
    Create {
        /// models:/NAME/VERSION or models:/NAME@ALIAS.
        model_uri: String,
        /// The reference data (.csv or .parquet).
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        /// The column with the true labels: the model's performance on the reference is
        /// stored with it.
        #[arg(long, value_name = "COL")]
        label: Option<String>,
        /// Features to monitor as categories (otherwise: integers with at most 10 distinct
        /// values are categorical, the rest numerical).
        #[arg(long, value_delimiter = ',', value_name = "COL,...")]
        categorical: Vec<String>,
        /// Features to monitor as numbers whatever their values.
        #[arg(long, value_delimiter = ',', value_name = "COL,...")]
        numerical: Vec<String>,
        /// Rows kept: a larger file is sampled uniformly (seeded), so tests stay exact and the
        /// reference small.
        #[arg(long, default_value_t = 10_000)]
        max_rows: usize,
        /// libonnxruntime (default: $ORT_DYLIB_PATH, then scripts/fetch-onnxruntime.sh's cache).
        #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
        onnxruntime: Option<PathBuf>,
    },
    /// Show a version's reference: rows, features and their types, performance.
    Show {
        /// models:/NAME/VERSION or models:/NAME@ALIAS.
        model_uri: String,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
}

pub async fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    match args.command {
        MonitorCommand::Reference {
            command:
                ReferenceCommand::Create {
                    model_uri,
                    data,
                    label,
                    categorical,
                    numerical,
                    max_rows,
                    onnxruntime,
                },
        } => {
            let built = build_reference(
                &model_uri,
                &Client::new(&args.server)?,
                &data,
                label.as_deref(),
                &categorical,
                &numerical,
                max_rows,
                onnxruntime,
            )
            .await?;
            let answer = client
                .call(
                    reqwest::Method::POST,
                    "/api/slipway/v1/monitoring/references",
                    Some(json!({
                        "model_uri": model_uri,
                        "schema": built.schema,
                        "summary": built.summary,
                        "label_column": label,
                        "performance": built.performance,
                    })),
                )
                .await?;
            let reference = &answer["reference"];
            println!(
                "stored the monitoring reference of models:/{}/{}: {} rows{} from {}",
                reference["model_name"].as_str().unwrap_or_default(),
                reference["version"].as_str().unwrap_or_default(),
                built.summary.rows,
                if built.sampled_from > built.summary.rows {
                    format!(" (sampled from {})", built.sampled_from)
                } else {
                    String::new()
                },
                data.display()
            );
            print_schema(&built.schema);
            if let Some(performance) = &built.performance {
                println!("performance on the reference: {}", one_line(performance));
            }
            Ok(ExitCode::SUCCESS)
        }
        MonitorCommand::Reference {
            command: ReferenceCommand::Show { model_uri, json },
        } => {
            let answer = client
                .call(
                    reqwest::Method::GET,
                    &format!(
                        "/api/slipway/v1/monitoring/references?model_uri={}",
                        urlencode(&model_uri)
                    ),
                    None,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let reference = &answer["reference"];
            println!(
                "models:/{}/{}: {} rows, created by {} at {}",
                reference["model_name"].as_str().unwrap_or_default(),
                reference["version"].as_str().unwrap_or_default(),
                reference["rows"],
                reference["created_by"].as_str().unwrap_or_default(),
                time(reference["created_ms"].as_i64())
            );
            if let Ok(schema) = serde_json::from_value::<Schema>(reference["schema"].clone()) {
                print_schema(&schema);
            }
            if !reference["performance"].is_null() {
                println!(
                    "performance on the reference (label column {}): {}",
                    reference["label_column"].as_str().unwrap_or("?"),
                    one_line(&reference["performance"])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MonitorCommand::Performance {
            deployment,
            window,
            windows,
            json,
        } => {
            let path = format!(
                "/api/slipway/v1/deployments/{}/performance?window_ms={}&windows={}",
                urlencode(&deployment),
                window.as_millis(),
                windows.clamp(1, 1_000)
            );
            show(&client, &path, json, performance_text).await?;
            Ok(ExitCode::SUCCESS)
        }
        MonitorCommand::Status {
            deployment,
            windows,
            json,
        } => {
            let path = format!(
                "/api/slipway/v1/deployments/{}/monitoring?limit={}",
                urlencode(&deployment),
                windows.clamp(1, 1_000)
            );
            let answer = show(&client, &path, json, status_text).await?;
            let drifted =
                answer["windows"][0]["report"]["report"]["features"]["dataset"]["dataset_drift"]
                    .as_bool()
                    .unwrap_or(false);
            Ok(if drifted {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// GETs `path` and prints the answer: its JSON, or `text` of it.
async fn show(
    client: &Client,
    path: &str,
    json: bool,
    text: fn(&Value) -> String,
) -> anyhow::Result<Value> {
    let answer = client.call(reqwest::Method::GET, path, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", text(&answer));
    }
    Ok(answer)
}

fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms.and_then(|ms| u64::try_from(ms).ok()) else {
        return "-".to_owned();
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn one_line(value: &Value) -> String {
    match value.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match (v.as_u64(), v.as_f64()) {
                (Some(n), _) => format!("{k} {n}"),
                (None, Some(f)) => format!("{k} {f:.4}"),
                _ => format!("{k} {v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => value.to_string(),
    }
}

fn print_schema(schema: &Schema) {
    let kinds = |t: ColumnType| {
        schema
            .features
            .iter()
            .filter(|f| f.column_type == t)
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
    };
    let numerical = kinds(ColumnType::Numerical);
    let categorical = kinds(ColumnType::Categorical);
    println!(
        "features: {} numerical{}{}, {} categorical{}{}",
        numerical.len(),
        if numerical.is_empty() { "" } else { " (" },
        if numerical.is_empty() {
            String::new()
        } else {
            format!("{})", numerical.join(", "))
        },
        categorical.len(),
        if categorical.is_empty() { "" } else { " (" },
        if categorical.is_empty() {
            String::new()
        } else {
            format!("{})", categorical.join(", "))
        },
    );
    match &schema.prediction {
        Some(p) => println!("prediction: {}", p.column_type.as_str()),
        None => println!("prediction: not monitored"),
    }
}

/// What `monitor status` prints: the windows, then the latest one feature by feature.
pub(crate) fn status_text(answer: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let window_ms = answer["settings"]["window_ms"].as_u64().unwrap_or(0);
    let window_rows = answer["settings"]["window_rows"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "deployment {} (model {}, stable version {}{}); windows of {}{}",
        answer["deployment"].as_str().unwrap_or_default(),
        answer["model_name"].as_str().unwrap_or_default(),
        answer["stable_version"].as_str().unwrap_or_default(),
        answer["candidate_version"]
            .as_str()
            .map(|c| format!(", candidate {c}"))
            .unwrap_or_default(),
        humantime::format_duration(std::time::Duration::from_millis(window_ms)),
        if window_rows > 0 {
            format!(" or {window_rows} rows")
        } else {
            String::new()
        },
    );
    if let Some(references) = answer["references"].as_object() {
        for (version, reference) in references {
            if reference.is_null() {
                let _ = writeln!(
                    out,
                    "version {version}: no monitoring reference (create one: slipway monitor reference create models:/{}/{version} --data FILE)",
                    answer["model_name"].as_str().unwrap_or_default()
                );
            } else {
                let _ = writeln!(
                    out,
                    "version {version}: reference of {} rows by {} at {}",
                    reference["rows"],
                    reference["created_by"].as_str().unwrap_or_default(),
                    time(reference["created_ms"].as_i64())
                );
            }
        }
    }
    let windows = answer["windows"].as_array().cloned().unwrap_or_default();
    if windows.is_empty() {
        let _ = writeln!(
            out,
            "no window has closed yet: windows close at their end once traffic arrived"
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<22} {:>7} {:>9} {:>9} {:>8} {:>10}",
        "WINDOW END (UTC)", "VERSION", "ROWS", "DRIFTED", "DATASET", "PREDICTION"
    );
    for window in &windows {
        let report = &window["report"]["report"];
        let dataset = &report["features"]["dataset"];
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>9} {:>9} {:>8} {:>10}",
            time(window["end_ms"].as_i64()),
            window["version"],
            window["rows"],
            format!("{}/{}", dataset["drifted_columns"], dataset["columns"]),
            if dataset["dataset_drift"].as_bool() == Some(true) {
                "DRIFT"
            } else {
                "ok"
            },
            match report["prediction"]["drift_detected"].as_bool() {
                Some(true) => "DRIFT",
                Some(false) => "ok",
                None => "-",
            }
        );
    }
    let latest = &windows[0]["report"]["report"];
    let _ = writeln!(
        out,
        "\nlatest window, feature by feature:\n{:<24} {:<12} {:<14} {:>10} {:>8} {:>6} {:>8} {:>9}",
        "FEATURE", "TYPE", "METHOD", "SCORE", "EFFECT", "DRIFT", "MISSING", "OUTSIDE"
    );
    let columns = latest["features"]["columns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain((!latest["prediction"].is_null()).then(|| {
            let mut p = latest["prediction"].clone();
            p["name"] = json!("(prediction)");
            p
        }));
    let number = |v: &Value, digits: usize| {
        v.as_f64()
            .map_or("-".to_owned(), |f| format!("{f:.digits$}"))
    };
    for column in columns {
        let quality = &column["data_quality"];
        let outside = if quality["out_of_range_share_current"].is_number() {
            number(&quality["out_of_range_share_current"], 3)
        } else {
            number(&quality["unseen_share_current"], 3)
        };
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<14} {:>10} {:>8} {:>6} {:>8} {:>9}",
            column["name"].as_str().unwrap_or_default(),
            column["type"].as_str().unwrap_or_default(),
            column["method"].as_str().unwrap_or_default(),
            column["score"]
                .as_f64()
                .map_or("-".to_owned(), |f| format!("{f:.3e}")),
            number(&column["effect"]["value"], 3),
            if column["drift_detected"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            number(&quality["missing_share_current"], 3),
            outside,
        );
    }
    out
}

/// What `monitor performance` prints: a row per window with predictions, labels, the
/// realized and the estimated figures.
fn performance_text(answer: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "deployment {} (stable version {}); reference: {}",
        answer["deployment"].as_str().unwrap_or_default(),
        answer["stable_version"].as_str().unwrap_or_default(),
        if answer["reference"].is_null() {
            "no performance (create the reference with --label)".to_owned()
        } else {
            one_line(&answer["reference"])
        }
    );
    let _ = writeln!(
        out,
        "\n{:<22} {:>11} {:>8} {:>9} {:>9} {:>10} {:>10}",
        "WINDOW END (UTC)",
        "PREDICTIONS",
        "LABELED",
        "ACCURACY",
        "ROC AUC",
        "EST. ACC.",
        "EST. AUC"
    );
    let figure = |v: &Value| v.as_f64().map_or("-".to_owned(), |f| format!("{f:.3}"));
    for window in answer["windows"].as_array().into_iter().flatten() {
        let realized = &window["realized"];
        let accuracy = if realized["accuracy"].is_number() {
            figure(&realized["accuracy"])
        } else if realized["rmse"].is_number() {
            format!("rmse {}", figure(&realized["rmse"]))
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<22} {:>11} {:>8} {:>9} {:>9} {:>10} {:>10}",
            time(window["end_ms"].as_i64()),
            window["predictions"],
            window["labeled"],
            accuracy,
            figure(&realized["roc_auc"]),
            figure(&window["estimated"]["accuracy"]),
            figure(&window["estimated"]["roc_auc"]),
        );
    }
    if answer["truncated"].as_bool() == Some(true) {
        let _ = writeln!(
            out,
            "(only the first 200,000 predicted rows were read: ask for fewer or shorter windows)"
        );
    }
    out
}

#[derive(Debug, Args)]
pub struct LabelsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: LabelsCommand,
}

#[derive(Debug, Subcommand)]
enum LabelsCommand {
    /// Upload true labels of a deployment's requests, joined to its logged predictions by the
    /// request id each response carried (`x-request-id`): a CSV file with columns
    /// `request_id` and `label`, or JSON lines `{"request_id": ..., "label": ...}` (a label
    /// may be a list, one per row of the request). Sent in batches of 5,000.
    Upload {
        /// The deployment.
        deployment: String,
        /// The labels (.csv, or .jsonl / .json for JSON lines).
        file: PathBuf,
    },
}

/// Labels per request of an upload.
const LABELS_PER_UPLOAD: usize = 5_000;

/// A CSV cell as a label: an integer, a number, or the text.
fn csv_label(cell: &str) -> Value {
    let cell = cell.trim();
    if let Ok(i) = cell.parse::<i64>() {
        return json!(i);
    }
    match cell.parse::<f64>() {
        Ok(f) if f.is_finite() => json!(f),
        _ => json!(cell),
    }
}

fn read_labels(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match extension.as_str() {
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader.headers().context("reading the CSV header")?.clone();
            let position = |name: &str| {
                headers
                    .iter()
                    .position(|h| h.trim() == name)
                    .with_context(|| {
                        format!(
                            "{}: no column {name:?} (columns: {})",
                            file.display(),
                            headers.iter().collect::<Vec<_>>().join(", ")
                        )
                    })
            };
            let (id, label) = (position("request_id")?, position("label")?);
            reader
                .records()
                .enumerate()
                .map(|(line, record)| {
                    let record =
                        record.with_context(|| format!("{}: line {}", file.display(), line + 2))?;
                    Ok(json!({
                        "request_id": record.get(id).unwrap_or_default().trim(),
                        "label": csv_label(record.get(label).unwrap_or_default()),
                    }))
                })
                .collect()
        }
        "jsonl" | "json" | "ndjson" => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(line, text)| {
                let value: Value = serde_json::from_str(text).with_context(|| {
                    format!("{}: line {} is not JSON", file.display(), line + 1)
                })?;
                if !value["request_id"].is_string() || value.get("label").is_none() {
                    bail!(
                        "{}: line {} needs \"request_id\" (text) and \"label\"",
                        file.display(),
                        line + 1
                    );
                }
                Ok(json!({"request_id": value["request_id"], "label": value["label"]}))
            })
            .collect(),
        _ => bail!(
            "{}: cannot tell the format: name the file .csv or .jsonl",
            file.display()
        ),
    }
}

pub async fn labels(args: LabelsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let LabelsCommand::Upload { deployment, file } = args.command;
    let labels = read_labels(&file)?;
    if labels.is_empty() {
        bail!("{}: no labels in the file", file.display());
    }
    let bar = indicatif::ProgressBar::new(labels.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("uploading labels [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut sent, mut matched) = (0u64, 0u64);
    for batch in labels.chunks(LABELS_PER_UPLOAD) {
        let answer = client
            .call(
                reqwest::Method::POST,
                &format!(
                    "/api/slipway/v1/deployments/{}/labels",
                    urlencode(&deployment)
                ),
                Some(json!({ "labels": batch })),
            )
            .await?;
        sent += answer["labels"].as_u64().unwrap_or(0);
        matched += answer["matched"].as_u64().unwrap_or(0);
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    println!(
        "uploaded {sent} labels of {deployment}: {matched} match a logged prediction{}",
        if matched < sent {
            " (the others name requests the prediction log did not sample, or unknown ids)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

struct Built {
    schema: Schema,
    summary: Summary,
    performance: Option<Value>,
    sampled_from: u64,
}

/// Reads the reference file, runs the model on it and profiles both as the data plane does.
#[allow(clippy::too_many_arguments)]
async fn build_reference(
    model_uri: &str,
    client: &Client,
    data: &std::path::Path,
    label: Option<&str>,
    categorical: &[String],
    numerical: &[String],
    max_rows: usize,
    onnxruntime: Option<PathBuf>,
) -> anyhow::Result<Built> {
    if max_rows == 0 {
        bail!("--max-rows must be at least 1");
    }
    if let Some(both) = categorical.iter().find(|c| numerical.contains(c)) {
        bail!("column {both:?} is given as both --categorical and --numerical");
    }
    let fetched = crate::serve::fetch_registered(model_uri, client).await?;
    let table = Table::open(data)?;
    let columns = table.columns().to_vec();
    if let Some(label) = label
        && !columns.iter().any(|c| c == label)
    {
        bail!(
            "{}: no column {label:?} for --label (columns: {})",
            data.display(),
            columns.join(", ")
        );
    }
    let features = crate::holdout::features_of(&fetched, &columns, label.as_slice());
    let runtime = Runtime::load(onnxruntime.as_deref())?;
    let model = crate::holdout::load(&runtime, &fetched, model_uri)?;
    crate::holdout::check_width(&model, model_uri, &features, data, label.is_some())?;
    for name in categorical.iter().chain(numerical) {
        if !features.contains(name) {
            bail!(
                "{name:?} is not one of the model's features ({})",
                features.join(", ")
            );
        }
    }
    let total = table.rows();
    let keep = sample_rows(total, max_rows);
    let (rows, inferred) = crate::holdout::feature_rows(&table, data, &features, &keep)?;
    let feature_types: Vec<ColumnType> = features
        .iter()
        .zip(&inferred)
        .map(|(name, inferred)| {
            if categorical.contains(name) {
                ColumnType::Categorical
            } else if numerical.contains(name) || *inferred != ColumnType::Categorical {
                ColumnType::Numerical
            } else {
                ColumnType::Categorical
            }
        })
        .collect();
    let outputs = crate::holdout::run(&model, &rows, model_uri, data)?;
    let schema = Schema {
        features: features
            .iter()
            .zip(&feature_types)
            .map(|(name, column_type)| Feature {
                name: name.clone(),
                column_type: *column_type,
            })
            .collect(),
        prediction: outputs.first().and_then(|o| prediction_feature(o)),
    };
    schema
        .validate()
        .map_err(|e| anyhow::anyhow!("{model_uri}: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut summary = Summary::new(&schema, REFERENCE_CONFIG, now);
    for (batch, output) in rows.chunks(1_024).zip(&outputs) {
        for row in batch {
            summary.push_row(row);
        }
        push_predictions(&mut summary, output);
    }
    let performance = match label {
        Some(label) => {
            let predicted: Vec<Prediction> = outputs.iter().flat_map(|o| predictions(o)).collect();
            let truth = table.with_column(
                crate::holdout::column_index(&columns, data, label)?,
                |cells| {
                    keep.iter()
                        .map(|&row| Truth::of(cells.get(row).copied().unwrap_or(RawValue::Null)))
                        .collect::<Vec<_>>()
                },
            )?;
            Some(performance(&predicted, &truth))
        }
        None => None,
    };
    Ok(Built {
        schema,
        summary,
        performance,
        sampled_from: total,
    })
}

/// Up to `max` row indices of `total`, uniformly without replacement and seeded (the same file
/// gives the same reference), in file order.
fn sample_rows(total: u64, max: usize) -> Vec<usize> {
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    if total <= max {
        return (0..total).collect();
    }
    // Reservoir sampling (Algorithm R).
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut kept: Vec<usize> = (0..max).collect();
    for row in max..total {
        let slot = rng.usize(0..=row);
        if slot < max {
            kept[slot] = row;
        }
    }
    kept.sort_unstable();
    kept
}

/// The model's performance on the reference, as the server reports a deployment's (accuracy,
/// precision, recall and F1 for a classifier; MAE, RMSE and R² for a regressor); rows without a
/// label are left out.
pub(crate) fn performance(predicted: &[Prediction], truth: &[Truth]) -> Value {
    use slipway_monitor::performance::{Labeled, classification, regression};
    let regressor = predicted.iter().any(|p| matches!(p, Prediction::Score(_)));
    if regressor {
        let pairs: Vec<(f64, f64)> = predicted
            .iter()
            .zip(truth)
            .filter_map(|(p, t)| match (p, t) {
                (Prediction::Score(p), Truth::Value(t)) => Some((*t, *p)),
                (Prediction::Score(p), Truth::Class(t)) => Some((*t as f64, *p)),
                _ => None,
            })
            .collect();
        return json!(regression(&pairs));
    }
    let rows: Vec<Labeled> = predicted
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| {
            let predicted = match p {
                Prediction::Class(c) => c.to_string(),
                Prediction::Label(l) => l.clone(),
                Prediction::Score(_) | Prediction::Missing => return None,
            };
            Some(Labeled {
                truth: t.class()?,
                predicted,
                probabilities: None,
            })
        })
        .collect();
    json!(classification(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_uniform_seeded_and_in_file_order() {
        assert_eq!(sample_rows(5, 10), vec![0, 1, 2, 3, 4]);
        let a = sample_rows(100_000, 1_000);
        assert_eq!(a, sample_rows(100_000, 1_000), "seeded");
        assert_eq!(a.len(), 1_000);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        // Each tenth of the file gets about a tenth of the sample.
        for tenth in 0..10 {
            let n = a.iter().filter(|&&r| r / 10_000 == tenth).count();
            assert!((60..=140).contains(&n), "tenth {tenth}: {n}");
        }
    }

    #[test]
    fn performance_is_accuracy_for_classes_and_errors_for_scores() {
        let classes = [
            Prediction::Class(1),
            Prediction::Class(0),
            Prediction::Class(1),
        ];
        let truth = [Truth::Class(1), Truth::Class(1), Truth::Missing];
        let p = performance(&classes, &truth);
        assert_eq!(p["rows"], 2);
        assert_eq!(p["accuracy"], 0.5);
        // Binary classes: precision and recall of class 1, as scikit-learn's default.
        assert_eq!(
            (p["precision"].as_f64(), p["recall"].as_f64()),
            (Some(1.0), Some(0.5))
        );
        let scores = [Prediction::Score(1.0), Prediction::Score(3.0)];
        let truth = [Truth::Value(2.0), Truth::Value(3.0)];
        let p = performance(&scores, &truth);
        assert_eq!(p["mae"], 0.5);
        assert!((p["rmse"].as_f64().unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((p["r2"].as_f64().unwrap() - (1.0 - 0.5 / 0.25)).abs() < 1e-12);
    }
}
