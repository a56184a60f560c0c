//! The HTML drift report: one file with everything inline (styles, SVG plots), so it opens
//! offline, attaches to a ticket and archives as it is.

use std::fmt::Write as _;
use std::path::Path;

use slipway_monitor::profile::SortedData;
use slipway_monitor::{Category, ColumnProfile, DriftReport, Mode};

/// Bins of a numeric column's histogram.
const BINS: usize = 40;
/// Categories drawn per column; the rest are summed as "other".
const TOP_CATEGORIES: usize = 20;

/// What a column's plot draws: the reference's and the current sample's shares per bin or
/// category, over each other.
pub struct Plot {
    labels: Vec<String>,
    reference: Vec<f64>,
    current: Vec<f64>,
}

impl Plot {
    pub fn of(reference: &ColumnProfile, current: &ColumnProfile) -> Plot {
        match (reference, current) {
            (ColumnProfile::Numeric(r), ColumnProfile::Numeric(c)) => {
                let (r_data, c_data) = (r.sorted_data(), c.sorted_data());
                let bounds = [r.range(), c.range()].into_iter().flatten().fold(
                    None::<(f64, f64)>,
                    |acc, (lo, hi)| match acc {
                        None => Some((lo, hi)),
                        Some((a, b)) => Some((a.min(lo), b.max(hi))),
                    },
                );
                let Some((lo, hi)) = bounds else {
                    return Plot::empty();
                };
                let width = if hi > lo {
                    (hi - lo) / BINS as f64
                } else {
                    1.0
                };
                let bins = if hi > lo { BINS } else { 1 };
                let labels = (0..bins)
                    .map(|i| short(lo + width * i as f64))
                    .collect::<Vec<_>>();
                Plot {
                    labels,
                    reference: histogram(&r_data, lo, width, bins),
                    current: histogram(&c_data, lo, width, bins),
                }
            }
            (ColumnProfile::Categorical(r), ColumnProfile::Categorical(c)) => {
                let (r_counts, c_counts) = (r.counts(), c.counts());
                let (r_total, c_total) = (
                    r_counts.values().sum::<u64>() + r.overflow(),
                    c_counts.values().sum::<u64>() + c.overflow(),
                );
                let mut keys: Vec<&Category> = r_counts.keys().chain(c_counts.keys()).collect();
                keys.sort();
                keys.dedup();
                // The most frequent first, by both samples together.
                keys.sort_by_key(|k| {
                    std::cmp::Reverse(
                        r_counts.get(*k).copied().unwrap_or(0)
                            + c_counts.get(*k).copied().unwrap_or(0),
                    )
                });
                let share = |n: u64, total: u64| {
                    if total == 0 {
                        0.0
                    } else {
                        n as f64 / total as f64
                    }
                };
                let mut plot = Plot::empty();
                for key in keys.iter().take(TOP_CATEGORIES) {
                    plot.labels.push(label(key));
                    plot.reference
                        .push(share(r_counts.get(*key).copied().unwrap_or(0), r_total));
                    plot.current
                        .push(share(c_counts.get(*key).copied().unwrap_or(0), c_total));
                }
                if keys.len() > TOP_CATEGORIES || r.overflow() + c.overflow() > 0 {
                    let drawn_r: f64 = plot.reference.iter().sum();
                    let drawn_c: f64 = plot.current.iter().sum();
                    plot.labels.push("(other)".to_owned());
                    plot.reference.push((1.0 - drawn_r).max(0.0));
                    plot.current.push((1.0 - drawn_c).max(0.0));
                }
                plot
            }
            _ => Plot::empty(),
        }
    }

    fn empty() -> Plot {
        Plot {
            labels: Vec::new(),
            reference: Vec::new(),
            current: Vec::new(),
        }
    }

    /// The plot as inline SVG: reference bars in blue, current in orange, half transparent,
    /// so where they differ shows.
    fn svg(&self) -> String {
        if self.labels.is_empty() {
            return "<p class=\"muted\">no values to draw</p>".to_owned();
        }
        let (w, h, pad) = (640.0, 180.0, 24.0);
        let n = self.labels.len() as f64;
        let top = self
            .reference
            .iter()
            .chain(&self.current)
            .fold(0.0f64, |a, &b| a.max(b))
            .max(1e-12);
        let slot = (w - 2.0 * pad) / n;
        let mut svg = format!(
            "<svg viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\" role=\"img\">",
            h + 40.0,
            h + 40.0
        );
        for (i, (r, c)) in self.reference.iter().zip(&self.current).enumerate() {
            let x = pad + slot * i as f64;
            for (value, class, offset) in [(r, "ref", 0.0), (c, "cur", slot * 0.15)] {
                let bar = (h - pad) * value / top;
                let _ = write!(
                    svg,
                    "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {} {:.2} %</title></rect>",
                    x + offset,
                    h - bar,
                    (slot * 0.8).max(1.0),
                    bar,
                    escape(&self.labels[i]),
                    if class == "ref" {
                        "reference"
                    } else {
                        "current"
                    },
                    value * 100.0
                );
            }
        }
        // Every label under a few bars, the first and the last always.
        let every = (self.labels.len() / 8).max(1);
        for (i, text) in self.labels.iter().enumerate() {
            if i % every == 0 || i + 1 == self.labels.len() {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>",
                    pad + slot * i as f64,
                    h + 16.0,
                    escape(&truncate(text, 14))
                );
            }
        }
        svg.push_str("</svg>");
        svg
    }
}

fn histogram(data: &SortedData<'_>, lo: f64, width: f64, bins: usize) -> Vec<f64> {
    let mut counts = vec![0u64; bins];
    let mut add = |value: f64, weight: u64| {
        let bin = (((value - lo) / width) as usize).min(bins - 1);
        counts[bin] += weight;
    };
    match data {
        SortedData::Exact(values) => values.iter().for_each(|&v| add(v, 1)),
        SortedData::Weighted(items) => items.iter().for_each(|w| add(w.value, w.weight)),
    }
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / total).collect()
}

fn label(category: &Category) -> String {
    match category {
        Category::Bool(b) => b.to_string(),
        Category::Int(i) => i.to_string(),
        Category::Float(f) => short(*f),
        Category::Text(t) => t.clone(),
    }
}

fn short(value: f64) -> String {
    if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.2e}")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(chars - 1).collect::<String>())
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn fmt(value: f64) -> String {
    if value == 0.0 || (value.abs() >= 1e-3 && value.abs() < 1e6) {
        format!("{value:.4}")
    } else {
        format!("{value:.3e}")
    }
}

/// The whole page: the dataset's verdict, a summary table, then one section per column with
/// its numbers, its reason and its plot.
pub fn page(
    report: &DriftReport,
    plots: &[Option<Plot>],
    reference: &Path,
    current: &Path,
) -> String {
    let dataset = &report.dataset;
    let mode = if report.mode == Mode::Auto {
        "auto"
    } else {
        "evidently"
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drift: {} vs {}</title><style>{STYLE}</style></head><body>",
        escape(&reference.display().to_string()),
        escape(&current.display().to_string())
    );
    let _ = write!(
        html,
        "<h1>Drift report</h1><p><b>reference</b> {} &nbsp; <b>current</b> {} &nbsp; <b>mode</b> {mode}</p>\
         <p class=\"verdict {}\">{}: {} of {} tested columns drifted ({:.0} %; dataset drift from {:.0} %)</p>",
        escape(&reference.display().to_string()),
        escape(&current.display().to_string()),
        if dataset.dataset_drift { "drift" } else { "ok" },
        if dataset.dataset_drift {
            "Dataset drift"
        } else {
            "No dataset drift"
        },
        dataset.drifted_columns,
        dataset.columns,
        dataset.share * 100.0,
        dataset.drift_share * 100.0
    );
    html.push_str(
        "<p class=\"legend\"><span class=\"swatch ref\"></span>reference <span class=\"swatch cur\"></span>current</p>\
         <table><tr><th>column</th><th>type</th><th>method</th><th>score</th><th>threshold</th><th>drift</th></tr>",
    );
    for column in &report.columns {
        let _ = write!(
            html,
            "<tr><td><a href=\"#c-{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&column.name),
            escape(&column.name),
            column.column_type.as_str(),
            escape(&column.method),
            column.score.map_or("-".to_owned(), fmt),
            fmt(column.threshold),
            if column.drift_detected { "drift" } else { "ok" },
            if column.drift_detected { "drift" } else { "no" }
        );
    }
    html.push_str("</table>");
    for (column, plot) in report.columns.iter().zip(plots) {
        let _ = write!(
            html,
            "<section id=\"c-{}\"><h2>{} <small>{}</small></h2><p>{}: n = {} reference, {} current; {} {} (threshold {}){}</p><p class=\"muted\">{}</p>",
            escape(&column.name),
            escape(&column.name),
            column.column_type.as_str(),
            if column.drift_detected {
                "<b class=\"drift\">drift</b>"
            } else {
                "no drift"
            },
            column.n_reference,
            column.n_current,
            escape(&column.method),
            column.score.map_or("-".to_owned(), fmt),
            fmt(column.threshold),
            column.effect.as_ref().map_or(String::new(), |e| format!(
                "; effect {} {} [{}, {}] at {:.0} %",
                escape(&e.name),
                fmt(e.value),
                fmt(e.ci_low),
                fmt(e.ci_high),
                e.confidence * 100.0
            )),
            escape(&column.reason)
        );
        if let Some(plot) = plot {
            html.push_str(&plot.svg());
        }
        html.push_str("</section>");
    }
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}\
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}\
.drift{color:#b3261e}.ok{color:#1e6b32}.verdict{font-size:1.2rem;font-weight:600}.muted{color:#666}\
rect.ref{fill:#1f77b4;fill-opacity:.55}rect.cur{fill:#ff7f0e;fill-opacity:.55}\
.axis{font-size:10px;fill:#555}.swatch{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem}\
.swatch.ref{background:#1f77b4}.swatch.cur{background:#ff7f0e}section{margin-top:2rem}";
