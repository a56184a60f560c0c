//! `slipway gate`: a release gate on a holdout file. The candidate (and the champion, with
//! `--against`) run here through slipway's own ONNX serving code; quality, latency,
//! throughput, cost, size, data checks against the version's reference and fairness are
//! measured, and the rules (a file, or the defaults: no worse than the champion beyond a
//! tolerance, the holdout like the reference) decide. Exit code 0 pass, 1 fail, 2 error. The
//! result is recorded as a run and as tags on the candidate version.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use slipway_monitor::performance::{Labeled, classification, regression};
use slipway_pipeline::gate::{self, GateRule, GateVerdict};
use slipway_plane::plane::monitor::{Prediction, predictions};
use slipway_serving::{Output, OutputValue, Runtime};

use crate::drift::read::Table;
use crate::holdout::Truth;
use crate::remote::{Client, ServerArgs, urlencode};

#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The candidate: models:/NAME/VERSION or models:/NAME@ALIAS.
    candidate: String,
    /// The holdout (.csv or .parquet): the models' input columns and the label.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// The column with the true labels (or values, for a regressor).
    #[arg(long, value_name = "COL")]
    label: String,
    /// The champion the candidate must not be worse than (e.g. models:/fraud@production).
    #[arg(long, value_name = "MODEL_URI")]
    against: Option<String>,
    /// A rules file (YAML: `rules: ["f1 >= champion - 0.01", "latency_p99_ms <= 20"]`);
    /// without one, the defaults apply.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// How far below the champion the default rules let a quality metric be.
    #[arg(long, default_value_t = 0.01)]
    tolerance: f64,
    /// A sensitive column: fairness across its groups is measured (demographic parity and
    /// equal opportunity differences, disparate impact ratio). Not a model input unless the
    /// model's signature names it.
    #[arg(long, value_name = "COL")]
    sensitive: Option<String>,
    /// The favourable class, for fairness.
    #[arg(long, default_value = "1")]
    positive: String,
    /// The price of one CPU hour, for the cost per 1,000 predictions.
    #[arg(long, default_value_t = 0.05)]
    cpu_hour_price: f64,
    /// Rows timed one at a time for the latency figures.
    #[arg(long, default_value_t = 200)]
    latency_rows: usize,
    /// Do not record the result on the server (a run, and tags on the candidate version).
    #[arg(long)]
    no_record: bool,
    /// libonnxruntime (default: $ORT_DYLIB_PATH, then scripts/fetch-onnxruntime.sh's cache).
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
    onnxruntime: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What was measured of one model on the holdout.
struct Measured {
    /// The registered model and version the URI named (an alias resolved).
    name: String,
    version: String,
    metrics: BTreeMap<String, f64>,
    /// The quality metrics the model's task has (for the default rules).
    quality: Vec<&'static str>,
    details: Value,
}

/// CPU seconds this process has used (user + system), from /proc: ONNX Runtime's threads
/// included, which a wall clock would not separate from waiting.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start past the last ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux slipway targets.
    Some((utime + stime) / 100.0)
}

/// A row's class probabilities, when an output carries them: a float matrix of one column per
/// class, or ZipMap's maps.
fn probabilities(outputs: &[Output]) -> Option<Vec<Vec<(String, f64)>>> {
    outputs.iter().find_map(|output| match &output.value {
        OutputValue::F32 { shape, data } if shape.len() == 2 && shape[1] > 1 => Some(
            data.chunks(shape[1] as usize)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .map(|(k, p)| (k.to_string(), f64::from(*p)))
                        .collect()
                })
                .collect(),
        ),
        OutputValue::F64 { shape, data } if shape.len() == 2 && shape[1] > 1 => Some(
            data.chunks(shape[1] as usize)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .map(|(k, p)| (k.to_string(), *p))
                        .collect()
                })
                .collect(),
        ),
        OutputValue::Maps(maps) => Some(
            maps.iter()
                .map(|m| m.iter().map(|(k, p)| (k.clone(), f64::from(*p))).collect())
                .collect(),
        ),
        _ => None,
    })
}

fn class_of(prediction: &Prediction) -> Option<String> {
    match prediction {
        Prediction::Class(c) => Some(c.to_string()),
        Prediction::Label(l) => Some(l.clone()),
        Prediction::Score(_) | Prediction::Missing => None,
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Linear interpolation between closest ranks, as numpy's default.
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &GateArgs,
    runtime: &Runtime,
    table: &Table,
    model_uri: &str,
    truths: &[Truth],
    groups: Option<&[String]>,
    client: &Client,
) -> anyhow::Result<Measured> {
    let columns = table.columns().to_vec();
    let fetched =
        crate::serve::fetch_registered(model_uri, args.server.tracking_uri.clone()).await?;
    let mut left_out = vec![args.label.as_str()];
    left_out.extend(args.sensitive.as_deref());
    let features = crate::holdout::features_of(&fetched, &columns, &left_out);
    let model = crate::holdout::load(runtime, &fetched, model_uri)?;
    crate::holdout::check_width(&model, model_uri, &features, &args.data, true)?;
    let keep: Vec<usize> = (0..truths.len()).collect();
    let (rows, _) = crate::holdout::feature_rows(table, &args.data, &features, &keep)?;

    let mut metrics = BTreeMap::new();
    let size = std::fs::metadata(&fetched.file)
        .map(|m| m.len())
        .unwrap_or(0);
    metrics.insert("model_size_mb".to_owned(), size as f64 / 1e6);

    // Throughput and cost: the whole holdout in batches, timed and its CPU counted.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let outputs = crate::holdout::run(&model, &rows, model_uri, &args.data)?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    metrics.insert("throughput_rows_per_s".to_owned(), rows.len() as f64 / wall);
    if let Some(cpu) = cpu {
        let per_1000 = cpu.max(0.0) / rows.len().max(1) as f64 * 1_000.0;
        metrics.insert(
            "cost_per_1000".to_owned(),
            per_1000 * args.cpu_hour_price / 3_600.0,
        );
    }
    // Latency: rows one at a time, as a request of one row is answered.
    let mut latencies: Vec<f64> = rows
        .iter()
        .take(args.latency_rows.max(1))
        .map(|row| {
            let started = Instant::now();
            model
                .predict_rows(std::slice::from_ref(row))
                .map(|_| started.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("timing {model_uri} one row at a time"))?;
    latencies.sort_by(f64::total_cmp);
    metrics.insert("latency_p50_ms".to_owned(), quantile(&latencies, 0.5));
    metrics.insert("latency_p99_ms".to_owned(), quantile(&latencies, 0.99));

    // Quality on the labeled rows.
    let predicted: Vec<Prediction> = outputs.iter().flat_map(|o| predictions(o)).collect();
    let probs: Vec<Option<Vec<(String, f64)>>> = outputs
        .iter()
        .flat_map(|o| match probabilities(o) {
            Some(p) => p.into_iter().map(Some).collect::<Vec<_>>(),
            None => vec![None; o.first().map_or(0, |_| predictions(o).len())],
        })
        .collect();
    let regressor = predicted.iter().any(|p| matches!(p, Prediction::Score(_)));
    let (quality, details_quality): (Vec<&'static str>, Value) = if regressor {
        let pairs: Vec<(f64, f64)> = predicted
            .iter()
            .zip(truths)
            .filter_map(|(p, t)| match (p, t.value()) {
                (Prediction::Score(s), Some(t)) => Some((t, *s)),
                _ => None,
            })
            .collect();
        let figures = regression(&pairs);
        if let Some(r) = &figures {
            metrics.insert("mae".into(), r.mae);
            metrics.insert("rmse".into(), r.rmse);
            if let Some(r2) = r.r2 {
                metrics.insert("r2".into(), r2);
            }
        }
        (vec!["rmse", "mae", "r2"], json!(figures))
    } else {
        let labeled: Vec<Labeled> = predicted
            .iter()
            .zip(truths)
            .zip(&probs)
            .filter_map(|((p, t), probabilities)| {
                Some(Labeled {
                    truth: t.class()?,
                    predicted: class_of(p)?,
                    probabilities: probabilities.clone(),
                })
            })
            .collect();
        let figures = classification(&labeled);
        if let Some(c) = &figures {
            metrics.insert("accuracy".into(), c.accuracy);
            metrics.insert("precision".into(), c.precision);
            metrics.insert("recall".into(), c.recall);
            metrics.insert("f1".into(), c.f1);
            if let Some(auc) = c.roc_auc {
                metrics.insert("roc_auc".into(), auc);
            }
            if let Some(loss) = c.log_loss {
                metrics.insert("log_loss".into(), loss);
            }
        }
        if let Some(groups) = groups {
            let outcomes: Vec<slipway_monitor::fairness::Outcome<'_>> = predicted
                .iter()
                .zip(truths)
                .zip(groups)
                .filter_map(|((p, t), group)| {
                    Some(slipway_monitor::fairness::Outcome {
                        group,
                        actual: t.class()? == args.positive,
                        predicted: class_of(p)?.as_str() == args.positive,
                    })
                })
                .collect();
            if let Some(f) = slipway_monitor::fairness::fairness(&outcomes) {
                metrics.insert(
                    "demographic_parity_difference".into(),
                    f.demographic_parity_difference,
                );
                if let Some(e) = f.equal_opportunity_difference {
                    metrics.insert("equal_opportunity_difference".into(), e);
                }
                if let Some(r) = f.disparate_impact_ratio {
                    metrics.insert("disparate_impact_ratio".into(), r);
                }
            }
        }
        (vec!["f1", "roc_auc", "accuracy"], json!(figures))
    };

    // The holdout against the version's reference: its data-quality shares.
    let reference = client
        .call_found(
            reqwest::Method::GET,
            &format!(
                "/api/slipway/v1/monitoring/references?model_uri={}",
                urlencode(model_uri)
            ),
            None,
        )
        .await?;
    if let crate::remote::Found::Yes(found) = reference {
        let ranges: BTreeMap<String, (f64, f64)> = found["reference"]["ranges"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|r| {
                        Some((
                            r["name"].as_str()?.to_owned(),
                            (r["min"].as_f64()?, r["max"].as_f64()?),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (missing, out_of_range) = data_quality(&features, &ranges, &rows);
        metrics.insert("missing_share".into(), missing);
        metrics.insert("out_of_range_share".into(), out_of_range);
    }
    Ok(Measured {
        name: fetched.name.clone(),
        version: fetched.version.clone(),
        metrics,
        quality,
        details: json!({
            "model_uri": model_uri,
            "rows": rows.len(),
            "features": features,
            "quality": details_quality,
            "bytes": size,
        }),
    })
}

/// The worst feature's share of missing values (null, NaN, infinite), and of values outside
/// the reference's range for that feature.
fn data_quality(
    features: &[String],
    ranges: &BTreeMap<String, (f64, f64)>,
    rows: &[Vec<f32>],
) -> (f64, f64) {
    let n = rows.len().max(1) as f64;
    let mut worst = (0.0f64, 0.0f64);
    for (i, name) in features.iter().enumerate() {
        let values = rows
            .iter()
            .filter_map(|row| row.get(i).map(|v| f64::from(*v)));
        let (mut missing, mut outside) = (0usize, 0usize);
        for v in values {
            if !v.is_finite() {
                missing += 1;
            } else if ranges.get(name).is_some_and(|(lo, hi)| v < *lo || v > *hi) {
                outside += 1;
            }
        }
        worst.0 = worst.0.max(missing as f64 / n);
        worst.1 = worst.1.max(outside as f64 / n);
    }
    worst
}

fn rules_of(
    args: &GateArgs,
    quality: &[&str],
    has_data_checks: bool,
) -> anyhow::Result<Vec<GateRule>> {
    match &args.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the rules file {}", path.display()))?;
            gate::read_rules(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        None => {
            let mut rules = gate::default_rules(quality, args.against.is_some(), args.tolerance);
            if !has_data_checks {
                rules.retain(|r| r.metric != "missing_share" && r.metric != "out_of_range_share");
            }
            Ok(rules)
        }
    }
}

fn report_text(verdict: &GateVerdict, candidate: &str, against: Option<&str>) -> String {
    let mut out = format!(
        "gate {}: {candidate}{}\n",
        if verdict.passed { "PASSED" } else { "FAILED" },
        against.map(|c| format!(" against {c}")).unwrap_or_default()
    );
    for rule in &verdict.rules {
        out.push_str(&format!(
            "  {} {:<40} {}\n",
            if rule.passed { "pass" } else { "FAIL" },
            rule.rule,
            rule.explanation
        ));
    }
    out
}

/// Records the gate as a run (metrics, the verdict) and as tags on the candidate version.
async fn record(
    client: &Client,
    candidate: &str,
    version: (&str, &str),
    verdict: &GateVerdict,
    measured: &BTreeMap<String, f64>,
    against: Option<&str>,
) -> anyhow::Result<String> {
    let experiment = client.experiment_named("slipway-gates").await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let status = if verdict.passed { "passed" } else { "failed" };
    let run = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/create",
            Some(json!({
                "experiment_id": experiment,
                "start_time": now,
                "run_name": format!("gate {candidate}"),
                "tags": [
                    {"key": "slipway.gate.candidate", "value": candidate},
                    {"key": "slipway.gate.champion", "value": against.unwrap_or("")},
                    {"key": "slipway.gate.status", "value": status},
                ],
            })),
        )
        .await?;
    let run_id = run["run"]["info"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let metrics: Vec<Value> = measured
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| json!({"key": k, "value": v, "timestamp": now, "step": 0}))
        .collect();
    let params: Vec<Value> = verdict
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"key": format!("rule.{i}"), "value": r.rule}))
        .collect();
    client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/log-batch",
            Some(json!({"run_id": run_id, "metrics": metrics, "params": params})),
        )
        .await?;
    client
        .upload(
            &format!("{experiment}/{run_id}/artifacts/gate.json"),
            serde_json::to_vec_pretty(verdict)?,
        )
        .await
        .ok();
    client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/update",
            Some(json!({"run_id": run_id, "status": "FINISHED", "end_time": now})),
        )
        .await?;
    let (name, version) = version;
    for (key, value) in [
        ("slipway.gate.status", status),
        ("slipway.gate.run_id", run_id.as_str()),
    ] {
        client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/model-versions/set-tag",
                Some(json!({"name": name, "version": version, "key": key, "value": value})),
            )
            .await?;
    }
    Ok(run_id)
}

pub async fn gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!("--tolerance must be a number of 0 or more");
    }
    let table = Table::open(&args.data)?;
    let columns = table.columns().to_vec();
    let label_index = crate::holdout::column_index(&columns, &args.data, &args.label)
        .with_context(|| format!("--label {}", args.label))?;
    let truths = table.with_column(label_index, |cells| {
        cells.iter().map(|c| Truth::of(*c)).collect::<Vec<_>>()
    })?;
    if truths.is_empty() {
        bail!("{}: the holdout has no rows", args.data.display());
    }
    let groups = match &args.sensitive {
        Some(column) => {
            let index = crate::holdout::column_index(&columns, &args.data, column)
                .with_context(|| format!("--sensitive {column}"))?;
            Some(table.with_column(index, |cells| {
                cells
                    .iter()
                    .map(|c| Truth::of(*c).class().unwrap_or_else(|| "(missing)".into()))
                    .collect::<Vec<_>>()
            })?)
        }
        None => None,
    };
    let client = Client::new(&args.server)?;
    let runtime = Runtime::load(args.onnxruntime.as_deref())?;
    let candidate = measure(
        &args,
        &runtime,
        &table,
        &args.candidate,
        &truths,
        groups.as_deref(),
        &client,
    )
    .await?;
    let champion = match &args.against {
        Some(uri) => Some(
            measure(
                &args,
                &runtime,
                &table,
                uri,
                &truths,
                groups.as_deref(),
                &client,
            )
            .await?,
        ),
        None => None,
    };
    let has_data_checks = candidate.metrics.contains_key("missing_share");
    let rules = rules_of(&args, &candidate.quality, has_data_checks)?;
    if rules.is_empty() {
        bail!(
            "nothing to check: without --against there is no champion to compare with, and {} has no monitoring reference to check the holdout against; give --against, --rules, or create its reference",
            args.candidate
        );
    }
    if rules.iter().any(GateRule::needs_champion) && champion.is_none() {
        bail!("the rules compare with the champion: name it with --against MODEL_URI");
    }
    let verdict = gate::evaluate(
        &rules,
        &candidate.metrics,
        champion.as_ref().map(|c| &c.metrics),
    );
    let run_id = if args.no_record {
        None
    } else {
        Some(
            record(
                &client,
                &args.candidate,
                (&candidate.name, &candidate.version),
                &verdict,
                &candidate.metrics,
                args.against.as_deref(),
            )
            .await
            .context("recording the gate on the server (--no-record skips it)")?,
        )
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "passed": verdict.passed,
                "candidate": {"metrics": candidate.metrics, "details": candidate.details},
                "champion": champion.as_ref().map(|c| json!({"metrics": c.metrics, "details": c.details})),
                "rules": verdict.rules,
                "run_id": run_id,
            }))?
        );
    } else {
        print!(
            "{}",
            report_text(&verdict, &args.candidate, args.against.as_deref())
        );
        if let Some(run_id) = &run_id {
            println!(
                "recorded as run {run_id} and tags slipway.gate.* on {}",
                args.candidate
            );
        }
    }
    Ok(if verdict.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_monitor::RawValue;

    #[test]
    fn quantiles_interpolate_as_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!((quantile(&v, 0.99) - 3.97).abs() < 1e-12);
    }

    #[test]
    fn data_quality_is_the_worst_features_shares() {
        let features = vec!["a".to_owned(), "b".to_owned()];
        let ranges = BTreeMap::from([("a".to_owned(), (0.0, 1.0)), ("b".to_owned(), (0.0, 10.0))]);
        let rows = vec![
            vec![0.5, 5.0],
            vec![2.0, f32::NAN],
            vec![-1.0, 3.0],
            vec![0.1, 4.0],
        ];
        assert_eq!(data_quality(&features, &ranges, &rows), (0.25, 0.5));
    }

    #[test]
    fn truths_meet_across_spellings() {
        let of = |cell| Truth::of(cell);
        assert_eq!(of(RawValue::Int(1)).class().as_deref(), Some("1"));
        assert_eq!(of(RawValue::Float(1.0)).class().as_deref(), Some("1"));
        assert_eq!(of(RawValue::Str("yes")).class().as_deref(), Some("yes"));
        assert_eq!(of(RawValue::Str("2.5")).value(), Some(2.5));
        assert_eq!(
            (of(RawValue::Null).class(), of(RawValue::Null).value()),
            (None, None)
        );
        assert!(cpu_seconds().is_some_and(|s| s >= 0.0));
    }
}
