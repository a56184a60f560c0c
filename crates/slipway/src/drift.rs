//! `slipway drift REFERENCE CURRENT`: a batch drift report between two CSV or Parquet files,
//! by the monitoring engine (`slipway-monitor`), as text, JSON or one self-contained HTML file.
//! Exit code 0: no dataset drift; 1: dataset drift; 2: an error (a usage error too, as clap's).
//!
//! Columns are compared independently, on as many threads as the machine has: each thread
//! reads one column of each file, profiles both, tests them and keeps only the verdict (and,
//! for HTML, the few numbers its plot needs), so memory follows the columns in flight, not the
//! files' width.

mod html;
pub(crate) mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use slipway_monitor::{
    ColumnDrift, ColumnProfile, ColumnType, DriftOptions, DriftReport, Mode, ProfileConfig,
    ProfileKind, RawValue, compare_column, decide, infer_column_type,
};

use read::Table;

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The reference dataset (what the model was trained or validated on): a .csv or
    /// .parquet file.
    reference: PathBuf,
    /// The current dataset, compared with the reference: a .csv or .parquet file with the
    /// same columns.
    current: PathBuf,
    /// How a column's drift is decided: `auto`, a significant shift (corrected over the
    /// columns) at least as large as a minimum effect size; `evidently`, Evidently 0.7's
    /// DataDriftPreset defaults, exactly.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    method: Method,
    /// One test for every column, by Evidently's name (ks, wasserstein, psi, jensenshannon,
    /// chisquare, z, g_test, hellinger, kl_div, anderson, ed, t_test, mannw), with its
    /// default threshold unless --threshold is given.
    #[arg(long, value_name = "NAME")]
    stattest: Option<String>,
    /// The threshold of --stattest: a p-value level for tests, a distance for distances.
    #[arg(long, requires = "stattest")]
    threshold: Option<f64>,
    /// Columns to compare as categorical, comma-separated (others are inferred from the
    /// reference, the way Evidently infers them).
    #[arg(long, value_delimiter = ',', value_name = "COL,...")]
    categorical: Vec<String>,
    /// Columns to compare as numerical, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COL,...")]
    numerical: Vec<String>,
    /// Compare only these columns, comma-separated (by default every column; the two files
    /// must then have the same ones).
    #[arg(long, value_delimiter = ',', value_name = "COL,...")]
    columns: Vec<String>,
    /// Dataset drift when at least this share of the tested columns drift.
    #[arg(long, default_value_t = 0.5)]
    drift_share: f64,
    /// The significance level of `auto`, family-wise over the tested columns.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// What to print: a table, the JSON report, or one self-contained HTML page (plots of
    /// each column's reference and current distributions).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    Auto,
    Evidently,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Html,
}

/// Runs the command; the exit code says whether the dataset drifted.
pub fn run(args: DriftArgs) -> ExitCode {
    match drift(&args) {
        Ok(report) if report.dataset.dataset_drift => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", crate::error_text(&error));
            ExitCode::from(2)
        }
    }
}

/// A column to compare: its position in each file and its declared type, if any.
struct Planned {
    name: String,
    reference: usize,
    current: usize,
    declared: Option<ColumnType>,
}

/// What a column's comparison leaves: the verdict, and the plot when HTML is asked for.
struct Compared {
    drift: ColumnDrift,
    plot: Option<html::Plot>,
}

fn drift(args: &DriftArgs) -> anyhow::Result<DriftReport> {
    let options = DriftOptions {
        mode: match args.method {
            Method::Auto => Mode::Auto,
            Method::Evidently => Mode::Evidently,
        },
        stattest: args.stattest.clone(),
        threshold: args.threshold,
        drift_share: args.drift_share,
        alpha: args.alpha,
        ..DriftOptions::default()
    };
    options.validate().map_err(|error| match &args.stattest {
        Some(name) if slipway_monitor::stattest::stattest(name).is_none() => anyhow::anyhow!(
            "--stattest {name}: no such test; one of {}",
            slipway_monitor::stattest::STATTESTS
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => anyhow::Error::new(error),
    })?;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let spinner = progress_spinner(terminal, "reading the two files");
    let (reference, current) = std::thread::scope(|scope| {
        let reference = scope.spawn(|| Table::open(&args.reference));
        let current = Table::open(&args.current);
        let reference = reference
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("reading the reference failed")));
        (reference, current)
    });
    let (reference, current) = (reference?, current?);
    spinner.finish_and_clear();
    let planned = plan(args, &reference, &current)?;
    let compared = compare_all(&planned, &reference, &current, &options, args, terminal)?;
    let (drifts, plots): (Vec<_>, Vec<_>) = compared.into_iter().map(|c| (c.drift, c.plot)).unzip();
    let report = decide(drifts, &options);
    let rendered = match args.format {
        Format::Text => text(&report, args),
        Format::Json => {
            let mut document = serde_json::to_value(&report)?;
            document["reference"] = summary(&args.reference, &reference);
            document["current"] = summary(&args.current, &current);
            document["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
            format!("{}\n", serde_json::to_string_pretty(&document)?)
        }
        Format::Html => html::page(&report, &plots, &args.reference, &args.current),
    };
    match &args.output {
        Some(path) => write_atomically(path, rendered.as_bytes())?,
        None => std::io::stdout().write_all(rendered.as_bytes())?,
    }
    Ok(report)
}

fn summary(path: &Path, table: &Table) -> serde_json::Value {
    serde_json::json!({"path": path.display().to_string(), "rows": table.rows()})
}

/// The columns to compare, matched by name, with the declared types checked against them.
fn plan(args: &DriftArgs, reference: &Table, current: &Table) -> anyhow::Result<Vec<Planned>> {
    let position = |table: &Table, name: &str| table.columns().iter().position(|c| c == name);
    for (table, path) in [(reference, &args.reference), (current, &args.current)] {
        let mut names = BTreeSet::new();
        if let Some(twice) = table.columns().iter().find(|c| !names.insert(c.as_str())) {
            bail!(
                "{}: two columns are named {twice:?}; name each column once",
                path.display()
            );
        }
    }
    let names: Vec<String> = if args.columns.is_empty() {
        let in_reference: BTreeSet<&String> = reference.columns().iter().collect();
        let in_current: BTreeSet<&String> = current.columns().iter().collect();
        if in_reference != in_current {
            let list = |set: BTreeSet<&&String>| {
                set.into_iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let only_reference = list(in_reference.difference(&in_current).collect());
            let only_current = list(in_current.difference(&in_reference).collect());
            bail!(
                "the files have different columns (only in the reference: {}; only in the current: {}); \
                 compare the common ones with --columns",
                if only_reference.is_empty() {
                    "none".to_owned()
                } else {
                    only_reference
                },
                if only_current.is_empty() {
                    "none".to_owned()
                } else {
                    only_current
                },
            );
        }
        reference.columns().to_vec()
    } else {
        args.columns.clone()
    };
    for name in args.categorical.iter().chain(&args.numerical) {
        if !names.contains(name) {
            bail!("--categorical/--numerical name {name:?}, which is not a compared column");
        }
    }
    if let Some(both) = args.categorical.iter().find(|c| args.numerical.contains(c)) {
        bail!("column {both:?} is given as both --categorical and --numerical");
    }
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .map(|name| {
            if !seen.insert(name.clone()) {
                bail!("column {name:?} is named twice in --columns");
            }
            let Some(r) = position(reference, &name) else {
                bail!("column {name:?} is not in {}", args.reference.display());
            };
            let Some(c) = position(current, &name) else {
                bail!("column {name:?} is not in {}", args.current.display());
            };
            let declared = if args.categorical.contains(&name) {
                Some(ColumnType::Categorical)
            } else if args.numerical.contains(&name) {
                Some(ColumnType::Numerical)
            } else {
                None
            };
            Ok(Planned {
                name,
                reference: r,
                current: c,
                declared,
            })
        })
        .collect()
}

/// Every column on its own thread from a shared queue; the verdicts in the files' order.
fn compare_all(
    planned: &[Planned],
    reference: &Table,
    current: &Table,
    options: &DriftOptions,
    args: &DriftArgs,
    terminal: bool,
) -> anyhow::Result<Vec<Compared>> {
    let bar = if terminal && planned.len() > 1 {
        let bar = ProgressBar::new(planned.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} comparing columns {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<usize, anyhow::Result<Compared>>> = Mutex::new(BTreeMap::new());
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(planned.len())
        .max(1);
    let plots = args.format == Format::Html;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(column) = planned.get(index) else {
                        return;
                    };
                    let outcome = compare_one(column, reference, current, options, plots);
                    let failed = outcome.is_err();
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(index, outcome);
                    bar.inc(1);
                    if failed {
                        // Stop handing out columns: the command fails on the first error.
                        next.store(planned.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_values()
        .collect()
}

fn compare_one(
    column: &Planned,
    reference: &Table,
    current: &Table,
    options: &DriftOptions,
    plots: bool,
) -> anyhow::Result<Compared> {
    // A sample this command holds in memory anyway is compared exactly, whatever its size.
    let config = ProfileConfig {
        max_exact_values: usize::MAX,
        ..ProfileConfig::default()
    };
    let (column_type, reference_profile, current_profile) =
        match floats_both(column, reference, current, config)? {
            Some(profiles) => profiles,
            None => {
                let (column_type, reference_profile) =
                    reference.with_column(column.reference, |cells| {
                        let column_type =
                            column.declared.unwrap_or_else(|| infer_column_type(cells));
                        (column_type, profile(cells, kind_of(column_type), config))
                    })?;
                let current_profile = current.with_column(column.current, |cells| {
                    profile(cells, kind_of(column_type), config)
                })?;
                (column_type, reference_profile, current_profile)
            }
        };
    let drift = compare_column(
        &column.name,
        column_type,
        &reference_profile,
        &current_profile,
        options,
    )
    .with_context(|| format!("column {}", column.name))?;
    let plot = plots.then(|| html::Plot::of(&reference_profile, &current_profile));
    Ok(Compared { drift, plot })
}

/// Both sides' profiles straight from their float values, when both columns are Parquet
/// floats compared as numbers (pandas reads them as float64, which Evidently always takes as
/// numerical): no cells are built, and the moments are taken a batch at a time.
fn floats_both(
    column: &Planned,
    reference: &Table,
    current: &Table,
    config: ProfileConfig,
) -> anyhow::Result<Option<(ColumnType, ColumnProfile, ColumnProfile)>> {
    if column.declared == Some(ColumnType::Categorical) {
        return Ok(None);
    }
    let Some(reference_values) = reference.floats(column.reference)? else {
        return Ok(None);
    };
    let reference_profile = float_profile(reference_values, config);
    let Some(current_values) = current.floats(column.current)? else {
        return Ok(None);
    };
    let current_profile = float_profile(current_values, config);
    Ok(Some((
        ColumnType::Numerical,
        reference_profile,
        current_profile,
    )))
}

fn float_profile(values: Vec<f64>, config: ProfileConfig) -> ColumnProfile {
    let mut profile = slipway_monitor::NumericProfile::from_floats(values, config);
    profile.finish();
    ColumnProfile::Numeric(profile)
}

fn kind_of(column_type: ColumnType) -> ProfileKind {
    match column_type {
        ColumnType::Numerical => ProfileKind::Numeric,
        ColumnType::Categorical | ColumnType::Text | ColumnType::Unknown => {
            ProfileKind::Categorical
        }
    }
}

fn profile(cells: &[RawValue<'_>], kind: ProfileKind, config: ProfileConfig) -> ColumnProfile {
    let mut profile = ColumnProfile::new(kind, config);
    for &cell in cells {
        profile.push(cell);
    }
    profile.finish();
    profile
}

fn progress_spinner(terminal: bool, message: &'static str) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

/// The report as a table: one row per column, then the dataset's verdict.
fn text(report: &DriftReport, args: &DriftArgs) -> String {
    let auto = report.mode == Mode::Auto;
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    let mut header = vec![
        "COLUMN",
        "TYPE",
        "N REF",
        "N CUR",
        "METHOD",
        "SCORE",
        "THRESHOLD",
        "DRIFT",
    ];
    if auto {
        header.push("EFFECT [95% CI]");
    }
    header.push("NOTES");
    table.set_header(header);
    for column in &report.columns {
        let mut row = vec![
            column.name.clone(),
            column.column_type.as_str().to_owned(),
            column.n_reference.to_string(),
            column.n_current.to_string(),
            if column.method.is_empty() {
                "-".to_owned()
            } else {
                column.method.clone()
            },
            column.score.map_or("-".to_owned(), number),
            if column.method.is_empty() {
                "-".to_owned()
            } else {
                number(column.threshold)
            },
            if column.drift_detected { "yes" } else { "no" }.to_owned(),
        ];
        if auto {
            row.push(column.effect.as_ref().map_or("-".to_owned(), |e| {
                format!(
                    "{} [{}, {}]",
                    number(e.value),
                    number(e.ci_low),
                    number(e.ci_high)
                )
            }));
        }
        row.push(notes(column));
        table.add_row(row);
    }
    let dataset = &report.dataset;
    let verdict = if dataset.dataset_drift {
        "DATASET DRIFT"
    } else {
        "no dataset drift"
    };
    format!(
        "{} vs {} ({} mode)\n\n{table}\n\n{}: {} of {} tested columns drifted ({:.0} %; dataset drift from {:.0} %)\n",
        args.reference.display(),
        args.current.display(),
        if auto { "auto" } else { "evidently" },
        verdict,
        dataset.drifted_columns,
        dataset.columns,
        dataset.share * 100.0,
        dataset.drift_share * 100.0,
    )
}

/// Data-quality signals, said beside the verdict and never mixed into it.
fn notes(column: &ColumnDrift) -> String {
    let quality = &column.data_quality;
    let mut notes = Vec::new();
    if quality.missing_current > 0 || quality.missing_reference > 0 {
        notes.push(format!(
            "missing {} ref / {} cur ({:.1} %)",
            quality.missing_reference,
            quality.missing_current,
            quality.missing_share_current * 100.0
        ));
    }
    if let (Some(unseen), Some(share)) = (quality.unseen_categories, quality.unseen_share_current)
        && unseen > 0
    {
        notes.push(format!(
            "{unseen} unseen categories ({:.1} %)",
            share * 100.0
        ));
    }
    if let Some(share) = quality.out_of_range_share_current
        && share > 0.0
    {
        notes.push(format!(
            "{:.1} % out of the reference's range",
            share * 100.0
        ));
    }
    if column.score.is_none() {
        notes.push(column.reason.clone());
    }
    notes.join("; ")
}

/// Four significant digits, or scientific notation for small p-values.
fn number(value: f64) -> String {
    if value == 0.0 || (value.abs() >= 1e-3 && value.abs() < 1e6) {
        format!("{:.4}", value)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{value:.3e}")
    }
}

/// Writes the report beside its destination and renames it into place, so a reader never
/// sees half a report.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(directory)
        .with_context(|| format!("cannot write in {}", directory.display()))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
