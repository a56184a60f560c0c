//! `slipway model-card MODEL_URI [--format md|html|json] [--data FILE --label COL]`: a version's
//! card as the server gathers it (`GET /api/slipway/v1/model-card`), plus global feature
//! importance by permutation, measured here with the model run through ONNX Runtime on a
//! dataset the reader gives.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use slipway_app::model_card::{FeatureImportance, Importance, ModelCard};
use slipway_monitor::RawValue;
use slipway_plane::plane::monitor::predictions;
use slipway_serving::Runtime;

use crate::drift::read::Table;
use crate::holdout::Truth;
use crate::remote::{Client, ServerArgs, urlencode};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Html,
    Json,
}

#[derive(Debug, Args)]
pub struct ModelCardArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The version: models:/NAME/VERSION or models:/NAME@ALIAS.
    model_uri: String,
    /// Markdown, a standalone HTML page (no script, no outside resource), or the card as JSON.
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Measure global feature importance by permutation on this file (CSV or Parquet: the
    /// model's inputs and the label).
    #[arg(long, value_name = "FILE", requires = "label")]
    data: Option<PathBuf>,
    /// The label column of --data.
    #[arg(long, value_name = "COLUMN", requires = "data")]
    label: Option<String>,
    /// Shuffles per feature (their mean and spread are reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    repeats: u32,
    /// Rows of --data used at most (a uniform sample).
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Write the card here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The ONNX Runtime library (default: $ORT_DYLIB_PATH, then scripts/fetch-onnxruntime.sh's).
    #[arg(long, env = "SLIPWAY_ONNXRUNTIME")]
    onnxruntime: Option<PathBuf>,
}

pub async fn run(args: ModelCardArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let (name, version) = crate::remote::resolve_version(&client, &args.model_uri, None).await?;
    let answer = client
        .call(
            reqwest::Method::GET,
            &format!(
                "/api/slipway/v1/model-card?name={}&version={}",
                urlencode(&name),
                urlencode(&version)
            ),
            None,
        )
        .await?;
    let mut card: ModelCard = serde_json::from_value(answer)
        .context("the server's model card is not understood (is it an older slipway?)")?;
    if let (Some(data), Some(label)) = (&args.data, &args.label) {
        let uri = format!("models:/{name}/{version}");
        card.importance = Some(
            importance(
                &client,
                &uri,
                data,
                label,
                args.repeats,
                args.max_rows,
                args.onnxruntime,
            )
            .await?,
        );
    }
    let text = match args.format {
        Format::Md => markdown(&card),
        Format::Html => html(&card),
        Format::Json => serde_json::to_string_pretty(&card)? + "\n",
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote the card of {name} version {version} to {}",
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The model's score on rows against their labels: accuracy for a classifier, R² for a
/// regressor (the same measures `monitor reference create` reports).
fn score(
    model: &slipway_serving::OnnxModel,
    rows: &[Vec<f32>],
    truth: &[Truth],
    uri: &str,
    data: &Path,
) -> anyhow::Result<(String, f64)> {
    let outputs = crate::holdout::run(model, rows, uri, data)?;
    let predicted: Vec<_> = outputs.iter().flat_map(|o| predictions(o)).collect();
    let performance = crate::monitor::performance(&predicted, truth);
    for metric in ["accuracy", "r2"] {
        if let Some(value) = performance[metric].as_f64() {
            return Ok((metric.to_owned(), value));
        }
    }
    bail!(
        "{uri}: no score could be measured on {} (are the labels the model's classes or values?)",
        data.display()
    )
}

/// Permutation importance (Breiman 2001; scikit-learn's `permutation_importance`): each
/// feature's column shuffled `repeats` times with a fixed seed, the model scored again, the
/// drop from the baseline averaged.
async fn importance(
    client: &Client,
    uri: &str,
    data: &Path,
    label: &str,
    repeats: u32,
    max_rows: usize,
    onnxruntime: Option<PathBuf>,
) -> anyhow::Result<Importance> {
    if max_rows == 0 {
        bail!("--max-rows must be at least 1");
    }
    let fetched = crate::serve::fetch_registered(uri, client).await?;
    let table = Table::open(data)?;
    let columns = table.columns().to_vec();
    if !columns.iter().any(|c| c == label) {
        bail!(
            "{}: no column {label:?} for --label (columns: {})",
            data.display(),
            columns.join(", ")
        );
    }
    let features = crate::holdout::features_of(&fetched, &columns, &[label]);
    let runtime = Runtime::load(onnxruntime.as_deref())?;
    let model = crate::holdout::load(&runtime, &fetched, uri)?;
    crate::holdout::check_width(&model, uri, &features, data, true)?;
    let total = usize::try_from(table.rows()).unwrap_or(usize::MAX);
    let keep: Vec<usize> = if total <= max_rows {
        (0..total).collect()
    } else {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut picked = rng.choose_multiple(0..total, max_rows);
        picked.sort_unstable();
        picked
    };
    let (rows, _) = crate::holdout::feature_rows(&table, data, &features, &keep)?;
    let truth: Vec<Truth> = table.with_column(
        crate::holdout::column_index(&columns, data, label)?,
        |cells| {
            keep.iter()
                .map(|&row| Truth::of(cells.get(row).copied().unwrap_or(RawValue::Null)))
                .collect()
        },
    )?;
    let (metric, baseline) = score(&model, &rows, &truth, uri, data)?;
    let progress = crate::mlflow_source::count_bar(features.len() as u64, "features");
    let mut rng = fastrand::Rng::with_seed(42);
    let mut out = Vec::with_capacity(features.len());
    let mut shuffled = rows.clone();
    for (j, feature) in features.iter().enumerate() {
        let mut drops = Vec::with_capacity(repeats as usize);
        for _ in 0..repeats {
            let mut column: Vec<f32> = rows.iter().map(|r| r[j]).collect();
            rng.shuffle(&mut column);
            for (row, value) in shuffled.iter_mut().zip(&column) {
                row[j] = *value;
            }
            let (_, permuted) = score(&model, &shuffled, &truth, uri, data)?;
            drops.push(baseline - permuted);
        }
        for (row, original) in shuffled.iter_mut().zip(&rows) {
            row[j] = original[j];
        }
        let mean = drops.iter().sum::<f64>() / drops.len() as f64;
        let var = drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / drops.len() as f64;
        out.push(FeatureImportance {
            feature: feature.clone(),
            mean,
            std: var.sqrt(),
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    out.sort_by(|a, b| b.mean.total_cmp(&a.mean).then(a.feature.cmp(&b.feature)));
    Ok(Importance {
        data: data.display().to_string(),
        rows: rows.len() as u64,
        repeats,
        metric,
        baseline,
        features: out,
    })
}

fn time(ms: i64) -> String {
    crate::admin::time(ms)
}

fn number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn or_unstated(value: &Option<String>, tag: &str) -> String {
    value
        .clone()
        .unwrap_or_else(|| format!("not stated (set the model's or the version's `{tag}` tag)"))
}

pub(crate) fn markdown(card: &ModelCard) -> String {
    let mut s = String::new();
    let aliases = card
        .aliases
        .iter()
        .map(|a| format!("@{a}"))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(
        s,
        "# Model card: {} version {} {aliases}\n",
        card.name, card.version
    );
    let _ = writeln!(s, "## Overview\n");
    if let Some(d) = &card.description {
        let _ = writeln!(s, "{d}\n");
    }
    let _ = writeln!(
        s,
        "- **Intended use:** {}",
        or_unstated(&card.intended_use, "intended_use")
    );
    let _ = writeln!(s, "- **Owners:** {}", or_unstated(&card.owners, "owners"));
    let _ = writeln!(
        s,
        "- **Registered** by {} at {}; stage {}",
        card.registered_by.as_deref().unwrap_or("unknown"),
        time(card.registered_at),
        card.stage
    );
    let _ = writeln!(s, "- **Source:** `{}`", card.source);
    if let Some(d) = &card.content_digest {
        let _ = writeln!(s, "- **Files:** `{d}`");
    }
    let _ = writeln!(s, "\n## Training data and code\n");
    if card.datasets.is_empty() {
        let _ = writeln!(s, "No dataset on record.\n");
    } else {
        let _ = writeln!(
            s,
            "| Dataset | Digest | Context | Source |\n|---|---|---|---|"
        );
        for d in &card.datasets {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} |",
                d.name,
                d.digest,
                d.context.as_deref().unwrap_or(""),
                d.source_type
            );
        }
        s.push('\n');
    }
    for (k, v) in &card.code {
        let _ = writeln!(s, "- **{k}:** `{v}`");
    }
    if let Some(run) = &card.run {
        let _ = writeln!(
            s,
            "\nTrained by run `{}` ({}) of experiment {}, started {} by {}, {}.\n",
            run.run_id,
            run.run_name,
            run.experiment_id,
            time(run.start_time),
            run.user,
            run.status
        );
        if !run.params.is_empty() {
            let _ = writeln!(s, "| Parameter | Value |\n|---|---|");
            for (k, v) in &run.params {
                let _ = writeln!(s, "| {k} | {v} |");
            }
            s.push('\n');
        }
    }
    let _ = writeln!(s, "## Evaluation\n");
    if let Some(run) = card.run.as_ref().filter(|r| !r.metrics.is_empty()) {
        let _ = writeln!(
            s,
            "Metrics of the source run:\n\n| Metric | Value |\n|---|---|"
        );
        for (k, v) in &run.metrics {
            let _ = writeln!(s, "| {k} | {} |", number(*v));
        }
        s.push('\n');
    }
    if card.gates.is_empty() {
        let _ = writeln!(s, "No release gate has judged this version.\n");
    } else {
        let _ = writeln!(
            s,
            "Release gates:\n\n| Gate | Result | Champion | Rules | Metrics | When |\n|---|---|---|---|---|---|"
        );
        for g in &card.gates {
            let _ = writeln!(
                s,
                "| #{} | {} | {} | {} | {} | {} |",
                g.id,
                if g.passed { "passed" } else { "failed" },
                g.champion(),
                g.rules.join("; "),
                g.metrics_line(number),
                time(g.created_at)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "### Fairness\n");
    let fairness: Vec<_> = card
        .gates
        .iter()
        .filter(|g| !g.fairness.is_empty())
        .collect();
    if fairness.is_empty() {
        let _ = writeln!(
            s,
            "Not measured: run `slipway gate` with `--sensitive COLUMN`.\n"
        );
    } else {
        for g in fairness {
            for (k, v) in &g.fairness {
                let _ = writeln!(s, "- gate #{}: {k} = {}", g.id, number(*v));
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Feature importance\n");
    match &card.importance {
        None => {
            let _ = writeln!(
                s,
                "Not measured: `slipway model-card {}/{} --data FILE --label COLUMN` measures it.\n",
                card.name, card.version
            );
        }
        Some(imp) => {
            let _ = writeln!(
                s,
                "Permutation importance on `{}` ({} rows, {} shuffles per feature): the drop in {} from {} when the feature's values are shuffled.\n\n| Feature | Drop | ± |\n|---|---|---|",
                imp.data,
                imp.rows,
                imp.repeats,
                imp.metric,
                number(imp.baseline)
            );
            for f in &imp.features {
                let _ = writeln!(s, "| {} | {:.4} | {:.4} |", f.feature, f.mean, f.std);
            }
            s.push('\n');
        }
    }
    let _ = writeln!(s, "## Monitoring\n");
    if card.deployments.is_empty() {
        let _ = writeln!(s, "Not deployed.\n");
    } else {
        let _ = writeln!(
            s,
            "| Deployment | Serves as | Reference | Latest window | Alerts firing |\n|---|---|---|---|---|"
        );
        for d in &card.deployments {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}{} | {} |",
                d.name,
                d.serves_as,
                if d.has_reference { "yes" } else { "no" },
                d.latest_window.as_deref().unwrap_or("none yet"),
                if d.dataset_drift == Some(true) {
                    " (dataset drift)"
                } else {
                    ""
                },
                if d.firing_alerts.is_empty() {
                    "none".to_owned()
                } else {
                    d.firing_alerts.join(", ")
                }
            );
        }
        s.push('\n');
    }
    if !card.promotions.is_empty() {
        let _ = writeln!(s, "## Promotions\n");
        for p in &card.promotions {
            let _ = writeln!(s, "- {p}");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Limitations\n");
    if let Some(l) = &card.limitations {
        let _ = writeln!(s, "{l}\n");
    }
    for c in card.caveats() {
        let _ = writeln!(s, "- {c}");
    }
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The card as a standalone HTML page: the Markdown's content, with the importance as a bar
/// chart (inline SVG) and no script or outside resource.
pub(crate) fn html(card: &ModelCard) -> String {
    let mut s = String::new();
    let title = format!("Model card: {} version {}", card.name, card.version);
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<style>body{{font:14px/1.5 system-ui,sans-serif;max-width:960px;margin:24px auto;color:#1d2430}}\
table{{border-collapse:collapse;margin:8px 0}}td,th{{border-bottom:1px solid #d9dee7;padding:3px 8px;text-align:left}}\
code{{font-size:12px}}.bar{{fill:#1f77b4}}.muted{{color:#677085}}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    // The Markdown's sections, line by line: headings, lists and tables into their elements.
    let markdown = markdown(card);
    let mut in_table = false;
    let mut in_list = false;
    for line in markdown.lines().skip(1) {
        let inline = |text: &str| {
            let mut out = String::new();
            for (i, part) in escape(text).split('`').enumerate() {
                if i % 2 == 1 {
                    let _ = write!(out, "<code>{part}</code>");
                } else {
                    out.push_str(&part.replace("**", ""));
                }
            }
            out
        };
        if in_table && !line.starts_with('|') {
            s.push_str("</table>\n");
            in_table = false;
        }
        if in_list && !line.starts_with("- ") {
            s.push_str("</ul>\n");
            in_list = false;
        }
        if let Some(h) = line.strip_prefix("### ") {
            let _ = writeln!(s, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(s, "<h2>{}</h2>", inline(h));
            if h == "Feature importance"
                && let Some(imp) = &card.importance
            {
                s.push_str(&importance_svg(imp));
            }
        } else if line.starts_with("|---") {
            continue;
        } else if let Some(row) = line.strip_prefix('|') {
            let cells: Vec<&str> = row.trim_end_matches('|').split('|').collect();
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                s.push_str("<table>\n");
                in_table = true;
            }
            s.push_str("<tr>");
            for cell in cells {
                let _ = write!(s, "<{tag}>{}</{tag}>", inline(cell.trim()));
            }
            s.push_str("</tr>\n");
        } else if let Some(item) = line.strip_prefix("- ") {
            if !in_list {
                s.push_str("<ul>\n");
                in_list = true;
            }
            let _ = writeln!(s, "<li>{}</li>", inline(item));
        } else if !line.trim().is_empty() {
            let _ = writeln!(s, "<p>{}</p>", inline(line));
        }
    }
    if in_table {
        s.push_str("</table>\n");
    }
    if in_list {
        s.push_str("</ul>\n");
    }
    s.push_str("</body></html>\n");
    s
}

fn importance_svg(imp: &Importance) -> String {
    let shown: Vec<&FeatureImportance> = imp.features.iter().take(20).collect();
    let top = shown.iter().map(|f| f.mean.abs()).fold(1e-12, f64::max);
    let row = 18.0;
    let height = shown.len() as f64 * row + 10.0;
    let mut s = format!(
        "<svg width=\"720\" height=\"{height}\" viewBox=\"0 0 720 {height}\" role=\"img\" aria-label=\"feature importance\">"
    );
    for (i, f) in shown.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let width = (f.mean.max(0.0) / top * 460.0).max(0.0);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect class=\"bar\" x=\"200\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\"><title>{:.4} ± {:.4}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"11\" class=\"muted\">{:.4}</text>",
            y + 12.0,
            escape(&f.feature),
            row - 4.0,
            f.mean,
            f.std,
            205.0 + width,
            y + 12.0,
            f.mean
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_app::model_card::CardGate;

    fn card() -> ModelCard {
        ModelCard {
            name: "fraud".into(),
            version: 3,
            aliases: vec!["production".into()],
            intended_use: Some("Flag card payments for review <not decline>".into()),
            gates: vec![CardGate {
                id: 7,
                passed: true,
                fairness: [("demographic_parity_difference".to_owned(), 0.03)].into(),
                ..CardGate::default()
            }],
            importance: Some(Importance {
                data: "holdout.csv".into(),
                rows: 500,
                repeats: 5,
                metric: "accuracy".into(),
                baseline: 0.95,
                features: vec![FeatureImportance {
                    feature: "amount".into(),
                    mean: 0.2,
                    std: 0.01,
                }],
            }),
            ..ModelCard::default()
        }
    }

    #[test]
    fn the_markdown_says_what_is_known_and_what_is_not() {
        let md = markdown(&card());
        assert!(md.starts_with("# Model card: fraud version 3 @production"));
        assert!(md.contains("Flag card payments for review"));
        assert!(md.contains("**Owners:** not stated"));
        assert!(md.contains("gate #7: demographic_parity_difference = 0.0300"));
        assert!(md.contains("| amount | 0.2000 | 0.0100 |"));
        assert!(md.contains("No git commit is on record"));
    }

    #[test]
    fn the_html_escapes_what_people_wrote_and_draws_the_importance() {
        let page = html(&card());
        assert!(page.contains("&lt;not decline&gt;"), "escaped");
        assert!(!page.contains("<not decline>"));
        assert!(page.contains("<svg") && page.contains("<title>0.2000 ± 0.0100</title>"));
        assert!(!page.contains("<script"));
        assert_eq!(
            page.matches("<table>").count(),
            page.matches("</table>").count()
        );
    }
}
