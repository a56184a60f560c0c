#!/usr/bin/env bash
# `slipway drift` against Evidently 0.7's DataDriftPreset on the same files, in the same run:
# ROWS x 20 numeric columns (a third of them shifted), reference vs current, from Parquet (and
# CSV for slipway). Wall time and peak RSS of each (GNU time), and whether slipway's evidently
# mode gives Evidently's methods, verdicts and scores (1e-6 relative).
#
#   bench/drift/run.sh [--rows N] [--no-evidently] [--big]     # default 1,000,000 rows
#
# --big also runs slipway alone on 10,000,000 x 20 (Evidently would need ~30 minutes and
# ~16 GB there). Creates bench/drift/.venv (numpy, pandas<3, pyarrow, evidently==0.7.*), builds
# slipway in release, keeps the data under ~/.cache/slipway-drift-bench, and writes
# bench/results/drift-<timestamp>.json plus a markdown table on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
ROWS=1000000
EVIDENTLY=1
BIG=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift ;;
    --no-evidently) EVIDENTLY=0 ;;
    --big) BIG=1 ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slipway-target}"
SLIPWAY="${SLIPWAY_BIN:-$CARGO_TARGET_DIR/release/slipway}"
[ -n "${SLIPWAY_BIN:-}" ] || cargo build --release -q --locked -p slipway
VENV="$ROOT/bench/drift/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV (evidently 0.7, pandas<3, pyarrow)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "numpy" "pandas<3" "pyarrow" "evidently==0.7.*"
fi
DATA="${DRIFT_BENCH_DATA:-$HOME/.cache/slipway-drift-bench}"
RESULTS="$ROOT/bench/results/drift-$(date -u +%Y%m%d-%H%M%S).json"
mkdir -p "$ROOT/bench/results"

measure() { # LABEL OUTFILE CMD...: wall seconds and peak RSS (MiB) of CMD into OUTFILE.json
  local label=$1 out=$2; shift 2
  /usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S, "max_rss_kib": %M}' -o "$out.time" "$@" > "$out.stdout" || true
  echo "$label done: $(cat "$out.time")" >&2
}

run_size() { # ROWS
  local rows=$1 dir="$DATA/$1"
  if [ ! -f "$dir/current.csv" ]; then
    echo "writing $rows x 20 to $dir" >&2
    "$VENV/bin/python" bench/drift/make_data.py --rows "$rows" --cols 20 --out "$dir" --csv
  fi
  # Warm the page cache, so both tools read the files from memory.
  cat "$dir"/*.parquet "$dir"/*.csv > /dev/null
  measure "slipway parquet ($rows)" "$dir/slipway-parquet" "$SLIPWAY" drift "$dir/reference.parquet" "$dir/current.parquet" --method evidently --format json
  measure "slipway parquet auto ($rows)" "$dir/slipway-parquet-auto" "$SLIPWAY" drift "$dir/reference.parquet" "$dir/current.parquet" --format json
  measure "slipway csv ($rows)" "$dir/slipway-csv" "$SLIPWAY" drift "$dir/reference.csv" "$dir/current.csv" --method evidently --format json
  if [ "$EVIDENTLY" = 1 ] && [ "$rows" -le 2000000 ]; then
    measure "evidently ($rows)" "$dir/evidently" "$VENV/bin/python" bench/drift/evidently_run.py "$dir/reference.parquet" "$dir/current.parquet"
  fi
}

run_size "$ROWS"
[ "$BIG" = 0 ] || run_size 10000000

"$VENV/bin/python" - "$DATA" "$RESULTS" "$ROWS" "$BIG" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, sys
data, results, rows, big, commit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
sizes = [rows] + ([10_000_000] if big else [])
doc = {"commit": commit, "sizes": {}}
print(f"\ncommit {commit}; 20 numeric columns, a third shifted; files in the page cache\n")
print("| rows | tool | input | wall s | CPU s | peak RSS MiB | drifted columns |")
print("|---:|---|---|---:|---:|---:|---:|")
for n in sizes:
    entry = doc["sizes"][str(n)] = {}
    for key, tool, fmt in (("slipway-parquet", "slipway drift --method evidently", "Parquet"),
                           ("slipway-parquet-auto", "slipway drift (auto)", "Parquet"),
                           ("slipway-csv", "slipway drift --method evidently", "CSV"),
                           ("evidently", "Evidently 0.7 DataDriftPreset", "Parquet")):
        base = os.path.join(data, str(n), key)
        if not os.path.exists(base + ".time"):
            continue
        t = json.load(open(base + ".time"))
        out = open(base + ".stdout").read()
        try:
            report = json.loads(out)
        except json.JSONDecodeError:
            report = None
        if key == "evidently" and report:
            drifted = report["drifted"]
        elif report:
            drifted = report["dataset"]["drifted_columns"]
        else:
            drifted = "failed"
        entry[key] = {"time": t, "report": report}
        print(f"| {n:,} | {tool} | {fmt} | {t['wall_s']:.2f} | {t['user_s'] + t['sys_s']:.2f} | "
              f"{t['max_rss_kib'] / 1024:.0f} | {drifted} |")
    ev, sw = entry.get("evidently", {}).get("report"), entry.get("slipway-parquet", {}).get("report")
    if ev and sw:
        worst, disagreements = 0.0, []
        for column in sw["columns"]:
            e = ev["columns"].get(column["name"])
            if e is None:
                disagreements.append(f"{column['name']}: not in Evidently's report")
                continue
            if e["method"] != column["method"]:
                disagreements.append(f"{column['name']}: method {column['method']} vs {e['method']}")
            rel = abs(column["score"] - e["score"]) / max(abs(e["score"]), 1e-300)
            worst = max(worst, rel)
        entry["agreement"] = {"max_relative_score_difference": worst, "disagreements": disagreements}
        ratio = entry["evidently"]["time"]["wall_s"] / max(entry["slipway-parquet"]["time"]["wall_s"], 1e-9)
        print(f"\n{n:,} rows: slipway {ratio:.0f}x faster than Evidently; scores agree within "
              f"{worst:.1e} relative; {len(disagreements)} disagreement(s) {disagreements[:3]}")
json.dump(doc, open(results, "w"), indent=1)
print(f"\nresults: {results}")
PY
