//! Human summaries and the side-by-side slipway / MLflow report.

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

#[derive(Clone, Copy)]
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

pub fn report(mlflow: Option<&Path>, slipway: Option<&Path>, out_json: Option<&Path>, out_md: Option<&Path>, note: &str) -> Result<()> {
    let empty = json!({"meta": {}, "scenarios": {}});
    // a per-server results file, or a combined report JSON written earlier (bench/results/*.json)
    let load = |p: &Path, which: &str| {
        let d = crate::load(p);
        if d.get("scenarios").is_none() && d.get(which).is_some() { d[which].clone() } else { d }
    };
    let m = mlflow.map(|p| load(p, "mlflow")).unwrap_or_else(|| empty.clone());
    let s = slipway.map(|p| load(p, "slipway")).unwrap_or_else(|| empty.clone());
    let mut md = String::new();
    let mut json_rows = Vec::new();
    let _ = writeln!(md, "# slipway vs MLflow benchmark\n");
    if !note.is_empty() {
        let _ = writeln!(md, "{note}\n");
    }
    for (name, d) in [("MLflow", &m), ("slipway", &s)] {
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
        let size = |d: &Value| {
            ["runs", "steps", "size_mib", "concurrency", "metrics_per_req"]
                .iter()
                .filter_map(|f| num(d, &format!("scenarios.{}.{f}", row.key)).map(|x| format!("{f}={x}")))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (msize, ssize) = (size(&m), size(&s));
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

    // what was not run, errors, checks, CPU notes
    let mut skipped = Vec::new();
    let mut checks = Vec::new();
    let mut cpu_notes = Vec::new();
    let mut other_load = Vec::new();
    let all_keys = ["startup", "idle_memory", "ingest", "ingest_preserialized", "log_metric", "search_5k", "search_100k", "history", "alias", "artifact", "memory_after"];
    for (name, d) in [("MLflow", &m), ("slipway", &s)] {
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
        let doc = json!({"note": note, "rows": json_rows, "not_run": skipped, "checks": checks, "cpu": cpu_notes, "mlflow": m, "slipway": s});
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
