//! Human summaries, the side-by-side slipway / MLflow report and the slipway auth-on / auth-off
//! comparison.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for p in path.split('.') {
        cur = cur.get(p)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

fn num(v: &Value, path: &str) -> Option<f64> {
    get(v, path).and_then(|x| x.as_f64())
}

pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "-".into()
    } else if a >= 100_000.0 {
        // thousands separators
        let s = format!("{:.0}", x);
        let (neg, digits) = s.strip_prefix('-').map(|d| (true, d)).unwrap_or((false, &s));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if neg { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{:.0}", x)
    } else if a >= 10.0 {
        format!("{:.1}", x)
    } else if a >= 1.0 {
        format!("{:.2}", x)
    } else if a >= 0.01 {
        format!("{:.3}", x)
    } else if a == 0.0 {
        "0".into()
    } else if a >= 0.0001 {
        format!("{:.4}", x)
    } else {
        format!("{:.2e}", x)
    }
}

/// One-screen summary of a scenario result, printed after each scenario.
pub fn print_summary(key: &str, v: &Value) {
    let line = |label: &str, v: &Value| {
        let mut s = String::new();
        for (k, name) in [
            ("points_per_s", "points/s"),
            ("req_per_s", "req/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("max_ms", "max ms"),
            ("count", "n"),
            ("errors", "errors"),
            ("mib_per_s", "MiB/s"),
        ] {
            if let Some(x) = num(v, k) {
                let _ = write!(s, "  {name}={}", fmt_num(x));
            }
        }
        if let Some(c) = get(v, "cpu.bottleneck_note").and_then(|x| x.as_str()) {
            let _ = write!(s, "\n      cpu: {c}");
        }
        if let Some(c) = get(v, "check").and_then(|x| x.as_str()) {
            let _ = write!(s, "\n      check: {c}");
        }
        if let Some(e) = get(v, "first_error").or(get(v, "error")).and_then(|x| x.as_str()) {
            let _ = write!(s, "\n      first error: {}", e.chars().take(300).collect::<String>());
        }
        println!("  {label}:{s}");
    };
    println!("== {key}");
    match key {
        "startup" => println!("  {:.3} s", num(v, "seconds").unwrap_or(f64::NAN)),
        k if k.contains("memory") => println!(
            "  RSS sum {:.1} MiB, PSS sum {:.1} MiB over {} processes",
            num(v, "rss_mib").unwrap_or(f64::NAN),
            num(v, "pss_mib").unwrap_or(f64::NAN),
            num(v, "processes").unwrap_or(0.0)
        ),
        _ => {
            let subs: Vec<(&String, &Value)> = v
                .as_object()
                .map(|o| o.iter().filter(|(_, x)| x.is_object() && x.get("p50_ms").is_some()).collect())
                .unwrap_or_default();
            if v.get("p50_ms").is_some() || subs.is_empty() {
                line("result", v);
            }
            let top_level_shown = v.get("p50_ms").is_some();
            for (k, x) in subs {
                line(k, x);
            }
            if !top_level_shown {
                if let Some(c) = get(v, "check").and_then(|x| x.as_str()) {
                    println!("  check: {c}");
                }
                if let Some(c) = get(v, "cpu.bottleneck_note").and_then(|x| x.as_str()) {
                    println!("  cpu: {c}");
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
    Info,
}

#[derive(Clone, Copy)]
enum Target {
    None,
    RatioMin(f64),
    Max(f64),
    Min(f64),
}

struct Row {
    key: &'static str,
    path: &'static str,
    label: String,
    better: Better,
    target: Target,
    target_text: &'static str,
}

fn rows(m: &Value, s: &Value) -> Vec<Row> {
    let runs = |k: &str, default: &str| {
        num(s, &format!("scenarios.{k}.runs"))
            .or(num(m, &format!("scenarios.{k}.runs")))
            .map(|r| format!("{}", r as u64))
            .unwrap_or_else(|| default.into())
    };
    let steps = num(s, "scenarios.history.steps").or(num(m, "scenarios.history.steps")).map(|r| r as u64).unwrap_or(100_000);
    let r = |key, path, label: &str, better, target, target_text| Row { key, path, label: label.to_string(), better, target, target_text };
    use Better::*;
    use Target as T;
    vec![
        r("startup", "seconds", "start-up: spawn -> /health 200 (s)", Lower, T::Max(0.5), "<= 0.5 s"),
        r("idle_memory", "rss_mib", "idle memory, RSS sum of process tree (MiB)", Lower, T::Max(50.0), "<= 50 MiB"),
        r("idle_memory", "pss_mib", "idle memory, PSS sum (MiB)", Lower, T::None, ""),
        r("idle_memory", "processes", "server processes", Info, T::None, ""),
        r("ingest", "points_per_s", "ingest log-batch: metric points/s", Higher, T::RatioMin(100.0), ">= 100x MLflow"),
        r("ingest", "req_per_s", "ingest log-batch: req/s", Higher, T::None, ""),
        r("ingest", "p50_ms", "ingest log-batch: p50 (ms)", Lower, T::None, ""),
        r("ingest", "p99_ms", "ingest log-batch: p99 (ms)", Lower, T::None, ""),
        r("ingest", "cpu.loadgen_cpu_cores", "ingest: load generator CPU (cores)", Info, T::None, ""),
        r("ingest", "cpu.server_cpu_cores", "ingest: server CPU (cores)", Info, T::None, ""),
        r("ingest_preserialized", "points_per_s", "ingest, pre-serialized bodies: points/s", Higher, T::Min(500_000.0), ">= 500k/s (if generator not bottleneck)"),
        r("ingest_preserialized", "p50_ms", "ingest, pre-serialized: p50 (ms)", Lower, T::None, ""),
        r("ingest_preserialized", "p99_ms", "ingest, pre-serialized: p99 (ms)", Lower, T::None, ""),
        r("ingest_preserialized", "cpu.loadgen_cpu_cores", "ingest, pre-serialized: load generator CPU (cores)", Info, T::None, ""),
        r("log_metric", "req_per_s", "log-metric c=8: req/s", Higher, T::RatioMin(100.0), ">= 100x MLflow"),
        r("log_metric", "p50_ms", "log-metric c=8: p50 (ms)", Lower, T::None, ""),
        r("log_metric", "p99_ms", "log-metric c=8: p99 (ms)", Lower, T::Max(5.0), "< 5 ms"),
        r("search_5k", "p50_ms", &format!("search-runs over {} runs: p50 (ms)", runs("search_5k", "5000")), Lower, T::Max(10.0), "<= 10 ms (5k runs)"),
        r("search_5k", "p99_ms", &format!("search-runs over {} runs: p99 (ms)", runs("search_5k", "5000")), Lower, T::None, ""),
        r("search_5k", "populate_runs_per_s", "  populate: runs/s (create + log-batch)", Higher, T::None, ""),
        r("search_100k", "p50_ms", &format!("search-runs over {} runs: p50 (ms)", runs("search_100k", "100000")), Lower, T::Max(50.0), "<= 50 ms (100k runs)"),
        r("search_100k", "p99_ms", &format!("search-runs over {} runs: p99 (ms)", runs("search_100k", "100000")), Lower, T::None, ""),
        r("search_100k", "populate_runs_per_s", "  populate: runs/s (create + log-batch)", Higher, T::None, ""),
        r("history", "paged.p50_ms", &format!("history {steps} steps, paged 25k (total ms, p50)"), Lower, T::Max(100.0), "<= 100 ms"),
        r("history", "paged.p99_ms", &format!("history {steps} steps, paged 25k (total ms, max of reps)"), Lower, T::None, ""),
        r("history", "single.p50_ms", &format!("history {steps} steps, one request (ms, p50)"), Lower, T::None, ""),
        r("history", "log_points_per_s", "  logging the history: points/s", Higher, T::None, ""),
        r("alias", "c1.p50_ms", "get-by-alias c=1: p50 (ms)", Lower, T::Max(1.0), "<= 1 ms"),
        r("alias", "c1.p99_ms", "get-by-alias c=1: p99 (ms)", Lower, T::None, ""),
        r("alias", "c1.req_per_s", "get-by-alias c=1: req/s", Higher, T::None, ""),
        r("alias", "c8.p50_ms", "get-by-alias c=8: p50 (ms)", Lower, T::None, ""),
        r("alias", "c8.p99_ms", "get-by-alias c=8: p99 (ms)", Lower, T::None, ""),
        r("alias", "c8.req_per_s", "get-by-alias c=8: req/s", Higher, T::None, ""),
        r("artifact", "put.mib_per_s", "artifact PUT: MiB/s", Higher, T::None, ""),
        r("artifact", "put.p50_ms", "artifact PUT: p50 (ms)", Lower, T::None, ""),
        r("artifact", "get.mib_per_s", "artifact GET: MiB/s", Higher, T::None, ""),
        r("artifact", "get.p50_ms", "artifact GET: p50 (ms)", Lower, T::None, ""),
        r("memory_after", "rss_mib", "memory after the workload, RSS sum (MiB)", Lower, T::None, ""),
    ]
}

fn cell(doc: &Value, key: &str, path: &str) -> (Option<f64>, String) {
    match get(doc, &format!("scenarios.{key}")) {
        None => (None, "not run".into()),
        Some(sc) if sc.get("skipped").is_some() => (None, "not run".into()),
        Some(sc) => match num(sc, path) {
            Some(x) => (Some(x), fmt_num(x)),
            None => (None, "n/a".into()),
        },
    }
}

/// The result files given to `loadgen report`.
pub struct Inputs<'a> {
    pub mlflow: Option<&'a Path>,
    pub slipway: Option<&'a Path>,
    /// slipway run with authentication on, compared with `slipway` (auth off).
    pub slipway_auth: Option<&'a Path>,
}

/// The data sizes of a scenario: a ratio between two runs means something only when they match.
fn sizes(d: &Value, key: &str) -> String {
    ["runs", "steps", "size_mib", "concurrency", "metrics_per_req"]
        .iter()
        .filter_map(|f| num(d, &format!("scenarios.{key}.{f}")).map(|x| format!("{f}={x}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Figures held to issue 3's "the tracking benchmarks with auth on stay within 5% of auth off"
/// (scenario key, field), in the order they are shown.
const AUTH_GATED: [(&str, &str); 11] = [
    ("ingest", "points_per_s"),
    ("ingest_preserialized", "points_per_s"),
    ("log_metric", "req_per_s"),
    ("log_metric", "p99_ms"),
    ("search_5k", "p50_ms"),
    ("search_100k", "p50_ms"),
    ("history", "paged.p50_ms"),
    ("alias", "c1.p50_ms"),
    ("alias", "c1.req_per_s"),
    ("alias", "c8.p50_ms"),
    ("alias", "c8.req_per_s"),
];
const AUTH_TOLERANCE_PCT: f64 = 5.0;

/// Loops whose server CPU time per request is derived for the auth comparison
/// (scenario, sub-result, field path of the derived figure, label).
const CPU_PER_REQ: [(&str, &str, &str, &str); 5] = [
    ("ingest", "", "server_cpu_us_per_req", "ingest log-batch"),
    ("ingest_preserialized", "", "server_cpu_us_per_req", "ingest, pre-serialized"),
    ("log_metric", "", "server_cpu_us_per_req", "log-metric c=8"),
    ("alias", "c1", "c1.server_cpu_us_per_req", "get-by-alias c=1"),
    ("alias", "c8", "c8.server_cpu_us_per_req", "get-by-alias c=8"),
];

/// Adds `server_cpu_us_per_req` (server CPU time per request, microseconds) to the loops of
/// `CPU_PER_REQ`: less sensitive to other load on the machine than throughput and latency.
fn with_cpu_per_req(d: &Value) -> Value {
    let mut d = d.clone();
    for (key, sub, _, _) in CPU_PER_REQ {
        let base = if sub.is_empty() { format!("scenarios.{key}") } else { format!("scenarios.{key}.{sub}") };
        let (Some(cores), Some(rps)) = (num(&d, &format!("{base}.cpu.server_cpu_cores")), num(&d, &format!("{base}.req_per_s"))) else { continue };
        if rps <= 0.0 {
            continue;
        }
        let target = if sub.is_empty() { &mut d["scenarios"][key] } else { &mut d["scenarios"][key][sub] };
        if let Some(o) = target.as_object_mut() {
            o.insert("server_cpu_us_per_req".into(), json!(cores / rps * 1e6));
        }
    }
    d
}

fn worse_text(w: f64) -> String {
    if w >= 0.0 { format!("{w:.1}% worse") } else { format!("{:.1}% better", -w) }
}

/// Appends the auth-on vs auth-off table to `md`; returns its rows as JSON and the one-line verdict.
fn auth_table(off: &Value, on: &Value, md: &mut String) -> (Vec<Value>, String) {
    let (off, on) = (&with_cpu_per_req(off), &with_cpu_per_req(on));
    let mut json_rows = Vec::new();
    let _ = writeln!(md, "\n## slipway: authentication on vs off\n");
    let _ = writeln!(
        md,
        "Same binary, backend and workload, run one after the other on fresh databases; auth on = `slipway server --auth` with {}. \
         change = (on - off) / off. Gate (issue 3): auth on at most {AUTH_TOLERANCE_PCT}% worse than auth off on the gated figures \
         (throughput >= {:.0}% of auth off, latency <= {:.0}% of auth off). Short `--quick` windows vary by more than 5% from run to run: \
         quote full runs on a quiet machine. The server CPU time per request (server CPU / req/s) is less sensitive to other load on the \
         machine than throughput and latency.\n",
        get(on, "meta.auth_credentials").and_then(|x| x.as_str()).unwrap_or("credentials on every request"),
        100.0 - AUTH_TOLERANCE_PCT,
        100.0 + AUTH_TOLERANCE_PCT
    );
    let _ = writeln!(md, "| metric | auth off | auth on | on/off | change | within {AUTH_TOLERANCE_PCT}% |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
    let mut measured = 0;
    let mut failed = Vec::new();
    // the gated figures first, then every other figure both runs measured
    let mut all = rows(off, on);
    all.retain(|r| r.path != "processes");
    for (key, _, path, label) in CPU_PER_REQ {
        all.push(Row {
            key,
            path,
            label: format!("{label}: server CPU per request (us)"),
            better: Better::Lower,
            target: Target::None,
            target_text: "",
        });
    }
    all.sort_by_key(|r| AUTH_GATED.iter().position(|g| *g == (r.key, r.path)).unwrap_or(usize::MAX));
    let mut others_started = false;
    for row in all {
        let gated = AUTH_GATED.contains(&(row.key, row.path));
        let (fv, ft) = cell(off, row.key, row.path);
        let (nv, nt) = cell(on, row.key, row.path);
        if fv.is_none() && nv.is_none() {
            continue;
        }
        if !gated && !others_started {
            others_started = true;
            let _ = writeln!(md, "| *other figures (not gated)* | | | | | |");
        }
        let (fsize, nsize) = (sizes(off, row.key), sizes(on, row.key));
        let comparable = fsize.is_empty() || nsize.is_empty() || fsize == nsize;
        let ratio = match (fv, nv) {
            (Some(a), Some(b)) if a != 0.0 && comparable => Some(b / a),
            _ => None,
        };
        let change = ratio.map(|r| (r - 1.0) * 100.0);
        // how much worse auth on is, in percent (negative: better)
        let worse = match (row.better, change) {
            (Better::Higher, Some(c)) => Some(-c),
            (Better::Lower, Some(c)) => Some(c),
            _ => None,
        };
        let bottleneck = [off, on]
            .iter()
            .any(|d| get(d, &format!("scenarios.{}.cpu.loadgen_bottleneck", row.key)).and_then(|b| b.as_bool()).unwrap_or(false));
        let verdict = if !gated {
            String::new()
        } else {
            let v = match worse {
                None if !comparable => format!("not comparable (off {fsize}; on {nsize})"),
                None => "not measured".to_string(),
                Some(w) if w <= AUTH_TOLERANCE_PCT => {
                    measured += 1;
                    format!("PASS ({})", worse_text(w))
                }
                Some(w) => {
                    measured += 1;
                    failed.push(format!("{} ({})", row.label.trim(), worse_text(w)));
                    format!("FAIL ({})", worse_text(w))
                }
            };
            if bottleneck && row.better == Better::Higher { format!("{v}; load generator was the bottleneck") } else { v }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            row.label,
            ft,
            nt,
            ratio.map(fmt_num).unwrap_or_else(|| if comparable { String::new() } else { "sizes differ".into() }),
            change.map(|c| format!("{c:+.1}%")).unwrap_or_default(),
            verdict
        );
        json_rows.push(json!({
            "scenario": row.key, "field": row.path, "label": row.label,
            "auth_off": fv, "auth_on": nv, "ratio_on_over_off": ratio, "change_pct": change,
            "worse_pct": worse, "gated": gated, "verdict": verdict,
        }));
    }
    let summary = if measured == 0 {
        "no gated figure was measured by both runs".to_string()
    } else if failed.is_empty() {
        format!("PASS: auth on is within {AUTH_TOLERANCE_PCT}% of auth off on all {measured} gated figures measured")
    } else {
        format!("FAIL: auth on is more than {AUTH_TOLERANCE_PCT}% worse than auth off on {} of {measured} gated figures: {}", failed.len(), failed.join("; "))
    };
    let _ = writeln!(md, "\n**{summary}.**");
    (json_rows, summary)
}

pub fn report(inputs: &Inputs, out_json: Option<&Path>, out_md: Option<&Path>, note: &str) -> Result<()> {
    let empty = json!({"meta": {}, "scenarios": {}});
    // a per-server results file, or a combined report JSON written earlier (bench/results/*.json)
    let load = |p: &Path, which: &str| {
        let d = crate::load(p);
        if d.get("scenarios").is_none() && d.get(which).is_some() { d[which].clone() } else { d }
    };
    let m = inputs.mlflow.map(|p| load(p, "mlflow")).unwrap_or_else(|| empty.clone());
    let s = inputs.slipway.map(|p| load(p, "slipway")).unwrap_or_else(|| empty.clone());
    let sa = inputs.slipway_auth.map(|p| load(p, "slipway_auth"));
    let mut servers: Vec<(&str, &Value)> = vec![("MLflow", &m), ("slipway", &s)];
    if let Some(sa) = &sa {
        servers.push(("slipway (auth on)", sa));
    }
    let mut md = String::new();
    let mut json_rows = Vec::new();
    let _ = writeln!(md, "# slipway vs MLflow benchmark\n");
    if !note.is_empty() {
        let _ = writeln!(md, "{note}\n");
    }
    for &(name, d) in &servers {
        let meta = d.get("meta").and_then(|x| x.as_object()).cloned().unwrap_or_default();
        let txt: Vec<String> = meta.iter().map(|(k, v)| format!("{k}={}", v.as_str().map(String::from).unwrap_or(v.to_string()))).collect();
        let _ = writeln!(md, "- **{name}**: {}", if txt.is_empty() { "not run".into() } else { txt.join(", ") });
    }
    let _ = writeln!(md, "\nratio = slipway / MLflow; speed-up = how many times better slipway is (throughput: s/m, latency/size: m/s). Targets apply to slipway.\n");
    let _ = writeln!(md, "| metric | MLflow | slipway | slipway/MLflow | speed-up | target | verdict |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---|");
    for row in rows(&m, &s) {
        let (mv, mt) = cell(&m, row.key, row.path);
        let (sv, st) = cell(&s, row.key, row.path);
        if mv.is_none() && sv.is_none() && mt == "not run" && st == "not run" && matches!(row.target, Target::None) {
            continue;
        }
        // the data sizes of the two runs must match for a ratio to mean anything
        let (msize, ssize) = (sizes(&m, row.key), sizes(&s, row.key));
        let comparable = msize.is_empty() || ssize.is_empty() || msize == ssize;
        let ratio = match (mv, sv) {
            (Some(a), Some(b)) if a != 0.0 && comparable => Some(b / a),
            _ => None,
        };
        let speedup = match (row.better, ratio) {
            (Better::Higher, Some(r)) => Some(r),
            (Better::Lower, Some(r)) if r != 0.0 => Some(1.0 / r),
            _ => None,
        };
        let verdict = match (row.target, sv) {
            (Target::None, _) => String::new(),
            (_, None) => "not measured".into(),
            (Target::RatioMin(x), Some(_)) => match ratio {
                Some(r) if r >= x => "PASS".into(),
                Some(_) => "FAIL".into(),
                None if !comparable => format!("not comparable (MLflow {msize}; slipway {ssize})"),
                None => "no MLflow figure".into(),
            },
            (Target::Max(x), Some(v)) => if v <= x { "PASS".into() } else { "FAIL".into() },
            (Target::Min(x), Some(v)) => {
                let bottleneck = get(&s, &format!("scenarios.{}.cpu.loadgen_bottleneck", row.key)).and_then(|b| b.as_bool()).unwrap_or(false);
                if v >= x {
                    "PASS".into()
                } else if bottleneck {
                    "n/a: load generator was the bottleneck".into()
                } else {
                    "FAIL".into()
                }
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            mt,
            st,
            ratio.map(fmt_num).unwrap_or_else(|| if comparable { String::new() } else { "sizes differ".into() }),
            speedup.map(|x| format!("{}x", fmt_num(x))).unwrap_or_default(),
            row.target_text,
            verdict
        );
        json_rows.push(json!({
            "scenario": row.key, "field": row.path, "label": row.label,
            "mlflow": mv, "slipway": sv, "ratio_slipway_over_mlflow": ratio, "speedup": speedup,
            "target": row.target_text, "verdict": verdict,
        }));
    }

    let auth = sa.as_ref().map(|sa| auth_table(&s, sa, &mut md));

    // what was not run, errors, checks, CPU notes
    let mut skipped = Vec::new();
    let mut checks = Vec::new();
    let mut cpu_notes = Vec::new();
    let mut other_load = Vec::new();
    let all_keys = ["startup", "idle_memory", "ingest", "ingest_preserialized", "log_metric", "search_5k", "search_100k", "history", "alias", "artifact", "memory_after"];
    for &(name, d) in &servers {
        if d.get("meta").and_then(|x| x.as_object()).map(|o| o.is_empty()).unwrap_or(true) {
            skipped.push(format!("{name}: not run at all"));
            continue;
        }
        if let Some(st) = get(d, "meta.status").and_then(|x| x.as_str()) {
            skipped.push(format!("{name}: {st}"));
            if st.starts_with("not run") {
                continue;
            }
        }
        for k in all_keys {
            match get(d, &format!("scenarios.{k}")) {
                None => skipped.push(format!("{name} {k}: not run (not selected)")),
                Some(sc) => {
                    if let Some(r) = sc.get("skipped").and_then(|x| x.as_str()) {
                        skipped.push(format!("{name} {k}: not run: {r}"));
                    }
                    collect_notes(name, k, sc, &mut checks, &mut cpu_notes, &mut other_load);
                }
            }
        }
    }
    if !other_load.is_empty() {
        let avg = other_load.iter().sum::<f64>() / other_load.len() as f64;
        let max = other_load.iter().cloned().fold(0.0, f64::max);
        if avg >= 0.2 {
            let _ = writeln!(
                md,
                "\n**Warning: other processes on the machine used {avg:.2} CPU cores on average (up to {max:.2}) during the measured windows; figures are depressed and noisy. Re-run on a quiet machine for numbers to quote.**"
            );
        }
    }
    let _ = writeln!(md, "\n## Not run / skipped\n");
    if skipped.is_empty() {
        let _ = writeln!(md, "Everything ran.");
    }
    for x in &skipped {
        let _ = writeln!(md, "- {x}");
    }
    let _ = writeln!(md, "\n## Correctness checks and errors\n");
    if checks.is_empty() {
        let _ = writeln!(md, "All answers checked were as expected, no request errors.");
    }
    for x in &checks {
        let _ = writeln!(md, "- {x}");
    }
    let _ = writeln!(md, "\n## CPU during the measured windows (is the load generator the bottleneck?)\n");
    for x in &cpu_notes {
        let _ = writeln!(md, "- {x}");
    }
    print!("{md}");
    if let Some(p) = out_md {
        std::fs::write(p, &md)?;
    }
    if let Some(p) = out_json {
        let mut doc = json!({"note": note, "rows": json_rows, "not_run": skipped, "checks": checks, "cpu": cpu_notes, "mlflow": m, "slipway": s});
        if let (Some(sa), Some((rows, summary))) = (sa, auth) {
            doc["auth_rows"] = json!(rows);
            doc["auth_verdict"] = json!(summary);
            doc["slipway_auth"] = sa;
        }
        std::fs::write(p, serde_json::to_vec_pretty(&doc)?)?;
    }
    Ok(())
}

fn collect_notes(name: &str, key: &str, v: &Value, checks: &mut Vec<String>, cpu: &mut Vec<String>, other: &mut Vec<f64>) {
    fn walk(name: &str, path: &str, v: &Value, checks: &mut Vec<String>, cpu: &mut Vec<String>, other: &mut Vec<f64>) {
        let Some(o) = v.as_object() else { return };
        if let Some(c) = o.get("check").and_then(|x| x.as_str()) {
            if c != "ok" {
                checks.push(format!("{name} {path}: {c}"));
            }
        }
        let errors = o.get("errors").and_then(|x| x.as_u64()).unwrap_or(0) + o.get("populate_errors").and_then(|x| x.as_u64()).unwrap_or(0);
        if errors > 0 || o.contains_key("error") {
            let e = o.get("first_error").or(o.get("error")).and_then(|x| x.as_str()).unwrap_or("");
            checks.push(format!("{name} {path}: {errors} failed request(s): {}", e.chars().take(300).collect::<String>()));
        }
        if let Some(c) = o.get("cpu") {
            if let Some(x) = c.get("other_cpu_cores").and_then(|x| x.as_f64()) {
                other.push(x);
            }
            if let Some(n) = c.get("bottleneck_note").and_then(|x| x.as_str()) {
                let flag = if c.get("loadgen_bottleneck").and_then(|x| x.as_bool()).unwrap_or(false) { " **[load generator is the bottleneck]**" } else { "" };
                cpu.push(format!("{name} {path}: {n}{flag}"));
            }
        }
        for (k, x) in o {
            if x.is_object() && k != "cpu" {
                walk(name, &format!("{path}.{k}"), x, checks, cpu, other);
            }
        }
    }
    walk(name, key, v, checks, cpu, other);
}
