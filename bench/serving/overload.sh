#!/usr/bin/env bash
# Overload and soak of one managed deployment, driven open-loop at fixed rates by the load
# generator's `rate` mode (bench/loadgen; latency counted from each request's due time, as wrk2
# does). The deployment (the MLflow ONNX fixture, no rollout) is served by a data-plane replica,
# `slipway serve --deployment bench`, reporting to a `slipway server` on the same machine.
#
#   bench/serving/overload.sh [--rows N] [--p99-target-ms MS] [--max-in-flight N]
#                             [--step-seconds S] [--run-seconds S] [--soak-seconds S]
#                             [--capacity R] [--no-soak] [--target replica|server]
#                             [--max-queue-wait-ms MS] [--no-pin] [--monitor]
#
# 1. capacity: the highest rate (req/s) at which every request is answered 200 within the p99
#    target, nothing is shed and the replica keeps up (admitted >= 98 % of offered). Found by
#    doubling from 100 req/s until a rate fails, then 5 bisection steps (each --step-seconds,
#    after 2 s of warm-up; a failed rate is tried once more, since other load on the machine
#    shows in any window's p99). --capacity R skips the search.
# 2. at capacity for --run-seconds: the reference p50/p99;
# 3. at 2x capacity for --run-seconds: admitted requests' p50/p99 against the reference, the
#    share answered 503 with Retry-After, and anything else (other 5xx, other statuses,
#    transport errors), which should be none;
# 4. soak (unless --no-soak): --soak-seconds (default 600) at 80 % of capacity, percentiles per
#    minute, the replica's RSS every 10 s (and the server's before and after), errors.
#
# Requests carry --rows rows (default 256) of the fixture's 30 features: on 2 cores the
# generator competes with the server for CPU, and a heavier request keeps the generator's
# share of the machine small (single-row requests cost the generator about what they cost
# the server). --target server sends the same requests to the server's own
# /deployments/bench/invocations (its in-flight limit is the default, 64).
#
# CPUs: on a machine with 2 or more, the measured process (replica, or server with --target
# server) is pinned to the last CPU and everything else (the generator, the server the replica
# reports to) to the others, with taskset. Unpinned, a saturated replica takes the generator's
# CPU, the generator falls behind its schedule, and that lag counts as the replica's latency;
# pinned, "capacity" is what one core of replica answers. --no-pin leaves scheduling to the
# kernel. --max-queue-wait-ms is passed to the replica (its default otherwise).
#
# --monitor gives the version a drift monitoring reference (the request body's rows as a CSV,
# `slipway monitor reference create`) before the replica starts, so every request's rows are
# profiled and summaries go to the server every 2 s (windows of 10 s): run once with and once
# without to see what monitoring costs serving (BENCHMARKS.md, "Drift monitoring's cost").
#
# Everything runs on 127.0.0.1; every load loop is bounded by its duration. Results:
# bench/results/overload-<timestamp>.json (every figure) and a markdown summary on stdout.
# Needs: curl, python3, cargo (builds slipway and the load generator in release).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
ROWS=256
P99_TARGET_MS=25
MAX_IN_FLIGHT=64
STEP_SECONDS=8
RUN_SECONDS=30
SOAK_SECONDS=600
CAPACITY=
SOAK=1
TARGET=replica
QUEUE_WAIT=()
PIN=1
MONITOR=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift ;;
    --p99-target-ms) P99_TARGET_MS=$2; shift ;;
    --max-in-flight) MAX_IN_FLIGHT=$2; shift ;;
    --step-seconds) STEP_SECONDS=$2; shift ;;
    --run-seconds) RUN_SECONDS=$2; shift ;;
    --soak-seconds) SOAK_SECONDS=$2; shift ;;
    --capacity) CAPACITY=$2; shift ;;
    --no-soak) SOAK=0 ;;
    --no-pin) PIN=0 ;;
    --monitor) MONITOR=1 ;;
    --max-queue-wait-ms) QUEUE_WAIT=(--max-queue-wait-ms "$2"); shift ;;
    --target) TARGET=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$TARGET" in replica|server) ;; *) echo "--target replica|server" >&2; exit 2 ;; esac
CPUS=$(nproc)
MEASURED_CPU=() OTHER_CPU=()
if [ "$PIN" = 1 ] && [ "$CPUS" -ge 2 ] && command -v taskset >/dev/null; then
  MEASURED_CPU=(taskset -c "$((CPUS - 1))")
  OTHER_CPU=(taskset -c "0-$((CPUS - 2))")
else
  PIN=0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slipway-target}"
LOADGEN_TARGET_DIR="${LOADGEN_TARGET_DIR:-$HOME/.cache/slipway-bench-target}"
SLIPWAY="${SLIPWAY_BIN:-$CARGO_TARGET_DIR/release/slipway}"
LOADGEN="$LOADGEN_TARGET_DIR/release/loadgen"
MODEL="$ROOT/tests/fixtures/models/mlflow_logreg_breast_cancer"
WORK=$(mktemp -d)
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS="$ROOT/bench/results/overload-$STAMP.json"
mkdir -p "$ROOT/bench/results"

stop_process() { # pidfile
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  rm -f "$1"
  kill -- -"$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 -- -"$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 -- -"$pid" 2>/dev/null || true
}
stop_all() {
  stop_process "$WORK/replica.pid"
  stop_process "$WORK/server.pid"
  rm -rf "$WORK"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# In its own session (setsid), the leader writing its own pid (see bench/serving/run.sh).
start_process() { # name command...
  local name=$1
  shift
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$WORK/$name.pid" "$@" \
    >"$WORK/$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do
    [ -s "$WORK/$name.pid" ] && return 0
    sleep 0.1
  done
  echo "$name did not start" >&2
  return 1
}

[ -n "${SLIPWAY_BIN:-}" ] || cargo build --release -q -p slipway
cargo build --release -q --manifest-path "$ROOT/bench/loadgen/Cargo.toml" --target-dir "$LOADGEN_TARGET_DIR"
ORT="${ORT_DYLIB_PATH:-$("$ROOT/scripts/fetch-onnxruntime.sh")}"

python3 - "$MODEL/serving_input_example.json" "$ROWS" "$WORK/body.json" <<'PY'
import json, sys
example, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
inputs = json.load(open(example))["inputs"]
json.dump({"inputs": [inputs[i % len(inputs)] for i in range(rows)]}, open(out, "w"))
PY

# The server, the model (versions 1 and 2, alias production -> 1), the deployment, a replica.
SERVER_PORT=$("$LOADGEN" free-port)
SERVER=http://127.0.0.1:$SERVER_PORT
if [ "$TARGET" = server ]; then SERVER_CPU=("${MEASURED_CPU[@]}"); else SERVER_CPU=("${OTHER_CPU[@]}"); fi
start_process server "${SERVER_CPU[@]}" "$SLIPWAY" server --port "$SERVER_PORT" \
  --backend-store-uri "sqlite:///$WORK/data/slipway.db" --artifacts-destination "$WORK/data/artifacts" \
  --onnxruntime "$ORT"
"$LOADGEN" --url "$SERVER" wait-health --timeout 60 --pid "$(cat "$WORK/server.pid")" >/dev/null
python3 "$ROOT/bench/serving/register_deployment.py" "$SERVER" "$MODEL" bench >&2
if [ "$MONITOR" = 1 ]; then
  python3 - "$WORK/body.json" "$WORK/reference.csv" <<'PY'
import csv, json, sys
rows = json.load(open(sys.argv[1]))["inputs"]
with open(sys.argv[2], "w", newline="") as f:
    out = csv.writer(f)
    out.writerow([f"f{i}" for i in range(len(rows[0]))])
    out.writerows(rows)
PY
  MLFLOW_TRACKING_URI=$SERVER "$SLIPWAY" monitor reference create models:/bench/1 \
    --data "$WORK/reference.csv" --onnxruntime "$ORT" >&2
fi
MLFLOW_TRACKING_URI=$SERVER "$SLIPWAY" deploy create bench --model models:/bench@production \
  --monitor-window 10s >&2
if [ "$TARGET" = replica ]; then
  REPLICA_PORT=$("$LOADGEN" free-port)
  start_process replica "${MEASURED_CPU[@]}" "$SLIPWAY" serve --deployment bench --tracking-uri "$SERVER" \
    --port "$REPLICA_PORT" --onnxruntime "$ORT" --max-in-flight "$MAX_IN_FLIGHT" "${QUEUE_WAIT[@]}"
  BASE=http://127.0.0.1:$REPLICA_PORT
  ENDPOINT=/invocations
  MEASURED_PID=$(cat "$WORK/replica.pid")
else
  BASE=$SERVER
  ENDPOINT=/deployments/bench/invocations
  MEASURED_PID=$(cat "$WORK/server.pid")
fi
for _ in $(seq 1 300); do
  curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" \
    "$BASE$ENDPOINT" -o "$WORK/answer.json" 2>/dev/null && break
  sleep 0.1
done
python3 - "$WORK/answer.json" "$ROWS" <<'PY'
import json, sys
answer = json.load(open(sys.argv[1]))
labels = answer["predictions"]["label"]
assert len(labels) == int(sys.argv[2]) and set(labels) <= {0, 1}, answer
PY

# rate KEY RATE SECONDS [extra loadgen options]: one open-loop run, stored under KEY.
rate() {
  local key=$1 r=$2 seconds=$3
  shift 3
  "${OTHER_CPU[@]}" "$LOADGEN" --url "$BASE" --server-pid "$MEASURED_PID" --json-out "$RESULTS" --key "$key" \
    --warmup 2 --duration "$seconds" rate --path "$ENDPOINT" --body "$WORK/body.json" \
    --rate "$r" "$@" >&2
}
field() { # key python-expression-on-r
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['scenarios'][sys.argv[2]]; print($2)" "$RESULTS" "$1"
}
passes() { # key: within the p99 target, nothing shed or failed, kept up
  field "$1" "int(r['ok'] == r['requests'] and r['requests'] > 0 and r['admitted_latency']['p99_ms'] <= $P99_TARGET_MS and r['ok_per_s'] >= 0.98 * r['offered_per_s'])"
}
# sustains RATE: passes, or passes on a second try. Other processes on a shared 2-core machine
# (a build) stall the replica now and then for tens of milliseconds, which shows in a 10 s
# window's p99 at any rate; a rate the replica cannot sustain fails both tries.
sustains() {
  rate "search-$1" "$1" "$STEP_SECONDS"
  [ "$(passes "search-$1")" = 1 ] && return 0
  rate "search-$1-retry" "$1" "$STEP_SECONDS"
  [ "$(passes "search-$1-retry")" = 1 ]
}

"$LOADGEN" --json-out "$RESULTS" meta --set rows="$ROWS" --set p99_target_ms="$P99_TARGET_MS" \
  --set max_in_flight="$MAX_IN_FLIGHT" --set target="$TARGET" --set pinned="$PIN" --set monitor="$MONITOR" --set max_queue_wait_ms="${QUEUE_WAIT[1]:-default}" --set commit="$(git rev-parse --short HEAD)" \
  --set started="$(date -Iseconds)" --set load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

if [ -z "$CAPACITY" ]; then
  echo "finding capacity: p99 <= $P99_TARGET_MS ms, no 503, >= 98 % of the offered rate answered" >&2
  low=0
  high=0
  r=100
  while [ "$r" -le 200000 ]; do
    if sustains "$r"; then low=$r; r=$((r * 2)); else high=$r; break; fi
  done
  [ "$low" -gt 0 ] || { echo "not even 100 req/s passed" >&2; exit 1; }
  if [ "$high" -gt 0 ]; then
    for _ in 1 2 3 4 5; do
      mid=$(((low + high) / 2))
      if sustains "$mid"; then low=$mid; else high=$mid; fi
    done
  fi
  CAPACITY=$low
fi
echo "capacity: $CAPACITY req/s" >&2
rate at-capacity "$CAPACITY" "$RUN_SECONDS"
rate overload-2x $((CAPACITY * 2)) "$RUN_SECONDS"
rss_of() { awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$(cat "$WORK/$1.pid")/status"; }
SERVER_RSS_BEFORE=$(rss_of server)
if [ "$SOAK" = 1 ]; then
  # Beside the RSS: what the measured process itself holds, every 10 s, from its /metrics
  # (the prediction log's queued values, requests in flight), to tell a queue from the
  # allocator when memory moves.
  (
    while sleep 10; do
      printf '%s ' "$(date +%s)"
      curl -sf "$BASE/metrics" | awk '
        /^slipway_serving_prediction_log_queued_values / {q = $2}
        /^slipway_serving_deployment_in_flight_requests[{]/ {f += $2}
        END {printf "%d %d\n", q, f}'
    done
  ) >"$WORK/gauges.txt" 2>/dev/null &
  GAUGES_PID=$!
  rate soak $((CAPACITY * 8 / 10)) "$SOAK_SECONDS" --interval 60 --rss-every 10
  kill "$GAUGES_PID" 2>/dev/null || true
  GAUGES=$(awk '{q[NR] = $2; f[NR] = $3; if ($2 > qmax) qmax = $2; if ($3 > fmax) fmax = $3}
    END {printf "prediction log queued values: first %d, max %d, last %d; in flight: max %d, last %d (%d samples)", q[1], qmax, q[NR], fmax, f[NR], NR}' "$WORK/gauges.txt")
  "$LOADGEN" --json-out "$RESULTS" meta --set soak_gauges="$GAUGES"
fi
if [ "$MONITOR" = 1 ]; then
  MONITORED=$(curl -sf "$SERVER/metrics" | awk '/^slipway_monitor_(summaries|late_summaries|windows)_total/ {printf "%s %s; ", $1, $2}')
  "$LOADGEN" --json-out "$RESULTS" meta --set monitored="$MONITORED"
fi
SERVER_RSS_AFTER=$(rss_of server)
"$LOADGEN" --json-out "$RESULTS" meta --set capacity="$CAPACITY" --set finished="$(date -Iseconds)" \
  --set load_after="$(cut -d' ' -f1-3 /proc/loadavg)" \
  --set server_mem_before_soak="$SERVER_RSS_BEFORE" --set server_mem_after_soak="$SERVER_RSS_AFTER"

python3 - "$RESULTS" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
meta, s = doc["meta"], doc["scenarios"]
def row(label, r):
    l = r["admitted_latency"]
    print(f"| {label} | {r['offered_per_s']:.0f} | {r['ok_per_s']:.0f} | {l.get('p50_ms', float('nan')):.2f} | "
          f"{l.get('p99_ms', float('nan')):.2f} | {100 * r['shed_share']:.1f} % | "
          f"{r['unavailable_503_without_retry_after'] + r['other_5xx']} | {r['other_status']} | "
          f"{r['transport_errors']} | {r['send_lag']['p99_ms']:.1f} | "
          f"{r['cpu'].get('loadgen_cpu_cores', 0):.2f} / {r['cpu'].get('server_cpu_cores') or 0:.2f} / {r['cpu'].get('other_cpu_cores') or 0:.2f} / {r['cpu'].get('steal_cpu_cores') or 0:.2f} |")
print(f"\n{meta['target']}, {meta['rows']} rows/request, --max-in-flight {meta['max_in_flight']}, "
      f"--max-queue-wait-ms {meta.get('max_queue_wait_ms')}, pinned to its own CPU: {str(meta.get('pinned')) == '1'}, "
      f"p99 target {meta['p99_target_ms']} ms, capacity {meta['capacity']} req/s; commit {meta['commit']}, {meta['started']}\n")
print("| run | offered req/s | admitted req/s | admitted p50 ms | admitted p99 ms | 503 + Retry-After | other 5xx | other status | transport errors | send lag p99 ms | CPU cores: loadgen / measured server / other / stolen |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for key in sorted((k for k in s if k.startswith("search-")), key=lambda k: (int(k.split("-")[1]), k)):
    row(f"capacity search {key.split('-', 1)[1]}", s[key])
for key, label in (("at-capacity", "at capacity"), ("overload-2x", "2x capacity")):
    if key in s:
        row(label, s[key])
if "soak" in s:
    soak = s["soak"]
    row("soak, 80 %", soak)
    print("\nsoak per minute:\n")
    print("| minute | admitted | p50 ms | p99 ms | max ms | 503 | errors | CPU cores: replica / other / stolen |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for i, t in enumerate(soak.get("intervals", [])):
        l = t["admitted_latency"]
        errors = t["unavailable_503_without_retry_after"] + t["other_5xx"] + t["other_status"] + t["transport_errors"]
        c = t.get("cpu", {})
        print(f"| {i + 1} | {t['ok']} | {l.get('p50_ms', 0):.2f} | {l.get('p99_ms', 0):.2f} | {l.get('max_ms', 0):.2f} | {t['shed_503_retry_after']} | {errors} | "
              f"{c.get('server_cpu_cores') or 0:.2f} / {c.get('other_cpu_cores') or 0:.2f} / {c.get('steal_cpu_cores') or 0:.2f} |")
    rss = [x["rss_mib"] for x in soak.get("rss", [])]
    if rss:
        print(f"\nmeasured process RSS over the soak ({len(rss)} samples, every 10 s): first {rss[0]:.1f} MiB, "
              f"min {min(rss):.1f}, max {max(rss):.1f}, last {rss[-1]:.1f}")
        sockets = [x.get("sockets", 0) for x in soak.get("rss", [])]
        print(f"its open sockets (connections from the generator, which opens more while answers are slow): "
              f"first {sockets[0]}, max {max(sockets)}, last {sockets[-1]}")
    print(f"server RSS before / after the soak: {meta.get('server_mem_before_soak')} / {meta.get('server_mem_after_soak')}")
    if meta.get("soak_gauges"):
        print(f"measured process over the soak: {meta['soak_gauges']}")
if meta.get("monitored"):
    print(f"\ndrift monitoring on the server: {meta['monitored']}")
print(f"\nload average before / after: {meta['load_before']} / {meta.get('load_after')}; results: {sys.argv[1]}")
PY
