//! `slipway gate`: a release gate on a holdout. The server runs it (POST
//! /api/slipway/v1/gates): both models read from its registry, the holdout from its artifact
//! store (a local file is uploaded first), measured through slipway's own ONNX serving code;
//! quality, latency, throughput, cost, size, data checks against the version's reference and
//! fairness, judged by the rules (a file, the model's policy's, or the defaults: no worse than
//! the champion beyond a tolerance, the holdout like the reference). The server records the
//! result (a run, a gate record, the version's `slipway.gate.*` tags), so no editor can write a
//! passing one. `--local` measures here and records nothing. Exit code 0 pass, 1 fail, 2 error.
//!
//! [`judge`] is the measuring and judging both paths share; [`OnnxGateRunner`] is the server's
//! GateRunner over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use clap::Args;
use serde_json::{Value, json};
use slipway_core::gate::{GateJob, GateModel, GateOutcome, GateRunner};
use slipway_monitor::performance::{Labeled, classification, regression};
use slipway_pipeline::gate::{self, GateRule};
use slipway_plane::plane::monitor::{Prediction, predictions};
use slipway_serving::{OnnxModel, Output, OutputValue, Runtime};

use crate::drift::read::Table;
use crate::holdout::Truth;
use crate::remote::{Client, ServerArgs, urlencode};

#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The candidate: models:/NAME/VERSION or models:/NAME@ALIAS.
    candidate: String,
    /// The holdout: a local .csv or .parquet file (uploaded to the server's artifact store
    /// first), or runs:/RUN_ID/PATH or mlflow-artifacts:/PATH already there. Without it, the
    /// holdout the model's promotion policy pins.
    #[arg(long, value_name = "FILE|URI")]
    data: Option<String>,
    /// The column with the true labels (or values, for a regressor).
    #[arg(long, value_name = "COL")]
    label: String,
    /// The champion the candidate must not be worse than (e.g. models:/fraud@production);
    /// without it, the version at the model's protected alias, when its policy has one.
    #[arg(long, value_name = "MODEL_URI")]
    against: Option<String>,
    /// A rules file (YAML: `rules: ["f1 >= champion - 0.01", "latency_p99_ms <= 20"]`);
    /// without one, the policy's gate rules, else the defaults. A policy that requires a gate
    /// counts only gates judged by its own rules.
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
    /// Rows timed one at a time for the latency figures (at most 2000).
    #[arg(long, default_value_t = 200)]
    latency_rows: usize,
    /// Measure here, with this machine's ONNX Runtime, and record nothing: a check a policy
    /// does not count (the server runs the gates it records).
    #[arg(long)]
    local: bool,
    /// libonnxruntime, for --local (default: $ORT_DYLIB_PATH, then
    /// scripts/fetch-onnxruntime.sh's cache).
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
    onnxruntime: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What was measured of one model on the holdout.
struct Measured {
    metrics: BTreeMap<String, f64>,
    /// The quality metrics the model's task has (for the default rules).
    quality: Vec<&'static str>,
    details: Value,
}

/// The holdout as both models see it.
struct Holdout {
    table: Table,
    /// Named in messages.
    path: PathBuf,
    truths: Vec<Truth>,
    groups: Option<Vec<String>>,
}

impl Holdout {
    fn open(path: &Path, label: &str, sensitive: Option<&str>) -> anyhow::Result<Holdout> {
        let table = Table::open(path)?;
        let columns = table.columns().to_vec();
        let label_index = crate::holdout::column_index(&columns, path, label)
            .with_context(|| format!("the label column {label}"))?;
        let truths = table.with_column(label_index, |cells| {
            cells.iter().map(|c| Truth::of(*c)).collect::<Vec<_>>()
        })?;
        if truths.is_empty() {
            bail!("{}: the holdout has no rows", path.display());
        }
        let groups = match sensitive {
            Some(column) => {
                let index = crate::holdout::column_index(&columns, path, column)
                    .with_context(|| format!("the sensitive column {column}"))?;
                Some(table.with_column(index, |cells| {
                    cells
                        .iter()
                        .map(|c| Truth::of(*c).class().unwrap_or_else(|| "(missing)".into()))
                        .collect::<Vec<_>>()
                })?)
            }
            None => None,
        };
        Ok(Holdout {
            table,
            path: path.to_owned(),
            truths,
            groups,
        })
    }
}

fn measure(
    job: &GateJob,
    runtime: &Runtime,
    holdout: &Holdout,
    model: &GateModel,
) -> anyhow::Result<Measured> {
    let columns = holdout.table.columns().to_vec();
    let mut left_out = vec![job.label.as_str()];
    left_out.extend(job.sensitive.as_deref());
    let features = crate::holdout::features_from(model.mlmodel.as_deref(), &columns, &left_out);
    let onnx = OnnxModel::from_bytes(runtime, &model.onnx, 1)
        .with_context(|| format!("loading {}", model.uri))?;
    crate::holdout::check_width(&onnx, &model.uri, &features, &holdout.path, true)?;
    let keep: Vec<usize> = (0..holdout.truths.len()).collect();
    let (rows, _) = crate::holdout::feature_rows(&holdout.table, &holdout.path, &features, &keep)?;

    let mut metrics = BTreeMap::new();
    let size = model.onnx.len();
    metrics.insert("model_size_mb".to_owned(), size as f64 / 1e6);

    // Throughput and cost: the whole holdout in batches, timed and its CPU counted.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let outputs = crate::holdout::run(&onnx, &rows, &model.uri, &holdout.path)?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    metrics.insert("throughput_rows_per_s".to_owned(), rows.len() as f64 / wall);
    if let Some(cpu) = cpu {
        let per_1000 = cpu.max(0.0) / rows.len().max(1) as f64 * 1_000.0;
        metrics.insert(
            "cost_per_1000".to_owned(),
            per_1000 * job.cpu_hour_price / 3_600.0,
        );
    }
    // Latency: rows one at a time, as a request of one row is answered.
    let mut latencies: Vec<f64> = rows
        .iter()
        .take(job.latency_rows.max(1))
        .map(|row| {
            let started = Instant::now();
            onnx.predict_rows(std::slice::from_ref(row))
                .map(|_| started.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("timing {} one row at a time", model.uri))?;
    latencies.sort_by(f64::total_cmp);
    metrics.insert("latency_p50_ms".to_owned(), quantile(&latencies, 0.5));
    metrics.insert("latency_p99_ms".to_owned(), quantile(&latencies, 0.99));

    // Quality on the labeled rows.
    let truths = &holdout.truths;
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
        if let Some(groups) = &holdout.groups {
            let outcomes: Vec<slipway_monitor::fairness::Outcome<'_>> = predicted
                .iter()
                .zip(truths)
                .zip(groups)
                .filter_map(|((p, t), group)| {
                    Some(slipway_monitor::fairness::Outcome {
                        group,
                        actual: t.class()? == job.positive,
                        predicted: class_of(p)?.as_str() == job.positive,
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
    if let Some(ranges) = &model.ranges {
        let (missing, out_of_range) = data_quality(&features, ranges, &rows);
        metrics.insert("missing_share".into(), missing);
        metrics.insert("out_of_range_share".into(), out_of_range);
    }
    Ok(Measured {
        metrics,
        quality,
        details: json!({
            "model_uri": model.uri,
            "name": model.name,
            "version": model.version.to_string(),
            "rows": rows.len(),
            "features": features,
            "quality": details_quality,
            "bytes": size,
        }),
    })
}

fn parse_rules(rules: &[String]) -> anyhow::Result<Vec<GateRule>> {
    if rules.is_empty() {
        bail!("a gate needs at least one rule");
    }
    rules
        .iter()
        .map(|r| GateRule::parse(r).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

/// Measures the candidate (and the champion) on the holdout and judges the rules: the one
/// gate, whether the server or `--local` runs it. Blocking: ONNX Runtime works here.
pub(crate) fn judge(
    job: &GateJob,
    runtime: &Runtime,
    holdout_file: &Path,
) -> anyhow::Result<GateOutcome> {
    let holdout = Holdout::open(holdout_file, &job.label, job.sensitive.as_deref())?;
    let candidate = measure(job, runtime, &holdout, &job.candidate)?;
    let champion = job
        .champion
        .as_ref()
        .map(|champion| measure(job, runtime, &holdout, champion))
        .transpose()?;
    let rules = match &job.rules {
        Some(rules) => parse_rules(rules)?,
        None => {
            let mut rules =
                gate::default_rules(&candidate.quality, champion.is_some(), job.tolerance);
            if !candidate.metrics.contains_key("missing_share") {
                rules.retain(|r| r.metric != "missing_share" && r.metric != "out_of_range_share");
            }
            rules
        }
    };
    if rules.is_empty() {
        bail!(
            "nothing to check: there is no champion to compare with (give --against, or protect an alias with a policy), and {} has no monitoring reference to check the holdout against; give rules, a champion, or create its reference",
            job.candidate.uri
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
    Ok(GateOutcome {
        passed: verdict.passed,
        rules: rules.iter().map(|r| r.text.clone()).collect(),
        report: json!({
            "passed": verdict.passed,
            "candidate": {"metrics": candidate.metrics, "details": candidate.details},
            "champion": champion.as_ref().map(|c| json!({"metrics": c.metrics, "details": c.details})),
            "rules": verdict.rules,
        }),
        candidate_metrics: candidate.metrics,
    })
}

/// The server's release gates: [`judge`] on the blocking pool, the holdout in a temporary file
/// (the readers take files), ONNX Runtime loaded on first use.
pub(crate) struct OnnxGateRunner {
    pub(crate) onnxruntime: Option<PathBuf>,
}

#[async_trait]
impl GateRunner for OnnxGateRunner {
    async fn run(&self, job: GateJob) -> slipway_core::Result<GateOutcome> {
        let library = self.onnxruntime.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<GateOutcome> {
            let runtime = Runtime::load(library.as_deref())?;
            let extension = if job.data_name.ends_with(".parquet") {
                ".parquet"
            } else {
                ".csv"
            };
            let mut file = tempfile::Builder::new()
                .prefix("slipway-holdout-")
                .suffix(extension)
                .tempfile()?;
            std::io::Write::write_all(&mut file, &job.data)?;
            judge(&job, &runtime, file.path())
        })
        .await
        .map_err(|e| slipway_core::Error::internal("running a release gate", e))?
        // What fails here is the holdout or the models as given: the caller can fix it.
        .map_err(|e| slipway_core::Error::invalid(format!("release gate: {e:#}")))
    }

    fn check_rules(&self, rules: &[String]) -> slipway_core::Result<()> {
        parse_rules(rules)
            .map(|_| ())
            .map_err(|e| slipway_core::Error::invalid(format!("{e:#}")))
    }
}

fn report_text(report: &Value, candidate: &str, against: Option<&str>) -> String {
    let passed = report["passed"].as_bool().unwrap_or(false);
    let mut out = format!(
        "gate {}: {candidate}{}\n",
        if passed { "PASSED" } else { "FAILED" },
        against.map(|c| format!(" against {c}")).unwrap_or_default()
    );
    for rule in report["rules"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} {:<40} {}\n",
            if rule["passed"].as_bool().unwrap_or(false) {
                "pass"
            } else {
                "FAIL"
            },
            rule["rule"].as_str().unwrap_or_default(),
            rule["explanation"].as_str().unwrap_or_default()
        ));
    }
    out
}

fn is_artifact_uri(data: &str) -> bool {
    data.starts_with("runs:/") || data.starts_with("mlflow-artifacts:")
}

/// Uploads a local holdout into a run of `slipway-gates`, so the server can read it.
pub(crate) async fn upload_holdout(client: &Client, file: &Path) -> anyhow::Result<String> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".csv") || n.ends_with(".parquet"))
        .with_context(|| format!("{}: a holdout is a .csv or .parquet file", file.display()))?
        .to_owned();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let experiment = client
        .experiment_named(slipway_core::gate::GATE_EXPERIMENT)
        .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let run = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/create",
            Some(json!({
                "experiment_id": experiment,
                "start_time": now,
                "run_name": format!("holdout {name}"),
            })),
        )
        .await?;
    let run_id = run["run"]["info"]["run_id"]
        .as_str()
        .context("the server created a run without an id")?
        .to_owned();
    client
        .upload(
            &format!(
                "{experiment}/{run_id}/artifacts/holdout/{}",
                urlencode(&name)
            ),
            bytes,
        )
        .await
        .context("uploading the holdout")?;
    client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/update",
            Some(json!({"run_id": run_id, "status": "FINISHED", "end_time": now})),
        )
        .await?;
    Ok(format!("runs:/{run_id}/holdout/{name}"))
}

pub(crate) fn rules_from_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the rules file {}", path.display()))?;
    let file: gate::RulesFile =
        yaml_serde::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse_rules(&file.rules).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(file.rules)
}

/// `--local`: both models fetched from the registry and measured here.
async fn local_gate(args: &GateArgs, rules: Option<Vec<String>>) -> anyhow::Result<Value> {
    let Some(data) = args.data.as_deref().filter(|d| !is_artifact_uri(d)) else {
        bail!("--local measures a local file: give --data FILE");
    };
    let client = Client::new(&args.server)?;
    let runtime = Runtime::load(args.onnxruntime.as_deref())?;
    let mut models = Vec::new();
    for uri in std::iter::once(&args.candidate).chain(args.against.as_ref()) {
        let fetched = crate::serve::fetch_registered(uri, &client).await?;
        let onnx = std::fs::read(&fetched.file)
            .with_context(|| format!("reading {}", fetched.file.display()))?;
        let mlmodel = fetched
            .file
            .parent()
            .and_then(|folder| std::fs::read_to_string(folder.join("MLmodel")).ok());
        let reference = client
            .call_found(
                reqwest::Method::GET,
                &format!(
                    "/api/slipway/v1/monitoring/references?model_uri={}",
                    urlencode(uri)
                ),
                None,
            )
            .await?;
        let ranges = match reference {
            crate::remote::Found::Yes(found) => Some(
                found["reference"]["ranges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| {
                        Some((
                            r["name"].as_str()?.to_owned(),
                            (r["min"].as_f64()?, r["max"].as_f64()?),
                        ))
                    })
                    .collect(),
            ),
            _ => None,
        };
        models.push(GateModel {
            uri: uri.clone(),
            name: fetched.name.clone(),
            version: fetched.version.parse().unwrap_or_default(),
            onnx: onnx.into(),
            mlmodel,
            ranges,
        });
    }
    let mut models = models.into_iter();
    let job = GateJob {
        candidate: models.next().context("no candidate")?,
        champion: models.next(),
        data: Default::default(),
        data_name: data.to_owned(),
        label: args.label.clone(),
        sensitive: args.sensitive.clone(),
        positive: args.positive.clone(),
        rules,
        tolerance: args.tolerance,
        cpu_hour_price: args.cpu_hour_price,
        latency_rows: args.latency_rows,
    };
    let path = PathBuf::from(data);
    let outcome = tokio::task::spawn_blocking(move || judge(&job, &runtime, &path)).await??;
    Ok(json!({"passed": outcome.passed, "report": outcome.report}))
}

pub async fn gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!("--tolerance must be a number of 0 or more");
    }
    if args.latency_rows == 0 || args.latency_rows > slipway_app::gates::MAX_LATENCY_ROWS {
        bail!(
            "--latency-rows is between 1 and {}",
            slipway_app::gates::MAX_LATENCY_ROWS
        );
    }
    let rules = args.rules.as_deref().map(rules_from_file).transpose()?;
    let (report, gate) = if args.local {
        let done = local_gate(&args, rules).await?;
        (done["report"].clone(), None)
    } else {
        let client = Client::new(&args.server)?;
        let data = match args.data.as_deref() {
            Some(data) if is_artifact_uri(data) => Some(data.to_owned()),
            Some(file) => Some(upload_holdout(&client, Path::new(file)).await?),
            None => None,
        };
        let answer = client
            .call(
                reqwest::Method::POST,
                "/api/slipway/v1/gates",
                Some(json!({
                    "model_uri": args.candidate,
                    "against": args.against,
                    "data": data,
                    "label": args.label,
                    "sensitive": args.sensitive,
                    "positive": args.positive,
                    "rules": rules,
                    "tolerance": args.tolerance,
                    "cpu_hour_price": args.cpu_hour_price,
                    "latency_rows": args.latency_rows,
                })),
            )
            .await
            .context("running the gate on the server (--local measures here instead)")?;
        let mut gate = answer["gate"].clone();
        let report = gate["report"].take();
        (report, Some(gate))
    };
    let passed = report["passed"].as_bool().unwrap_or(false);
    if args.json {
        let mut out = report.clone();
        if let Some(gate) = &gate {
            out["gate"] = gate.clone();
            out["run_id"] = gate["run_id"].clone();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let champion = gate
            .as_ref()
            .and_then(|g| g["champion_version"].as_i64())
            .map(|v| format!("version {v}"))
            .or_else(|| args.against.clone());
        print!(
            "{}",
            report_text(&report, &args.candidate, champion.as_deref())
        );
        match &gate {
            Some(gate) => println!(
                "recorded as gate {} (run {}, on {}), tags slipway.gate.* on {}",
                gate["id"],
                gate["run_id"].as_str().unwrap_or_default(),
                gate["data"].as_str().unwrap_or_default(),
                args.candidate
            ),
            None => println!("measured here (--local): not recorded"),
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// CPU seconds the calling thread has used (user + system), from /proc. The gate's sessions
/// run with one intra-op thread, so ONNX Runtime computes on the caller: this counts the
/// gate's predictions and nothing else the process does meanwhile (a server keeps serving
/// while a gate runs), which neither a wall clock nor the process' total would separate.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
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
