#!/usr/bin/env bash
# Serving benchmark (first cut): `slipway serve` against `mlflow models serve` on the MLflow ONNX
# fixture (logistic regression, 30 features), single-row and 256-row `/invocations` requests at
# 1, 8 and 32 connections, measured with wrk. Prints a markdown table.
#
#   bench/serving/run.sh [--duration S] [--servers slipway,mlflow]
#
# Needs: wrk (Debian package `wrk`), python3; installs mlflow, onnx and onnxruntime into
# bench/.venv for the MLflow side; builds slipway in release mode.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
DURATION=10
SERVERS=slipway,mlflow
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slipway-target}"
MODEL="$ROOT/tests/fixtures/models/mlflow_logreg_breast_cancer"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

python3 - "$MODEL/serving_input_example.json" "$WORK" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["inputs"]
one = {"inputs": [rows[0]]}
many = {"inputs": [rows[i % len(rows)] for i in range(256)]}
for name, body in (("1", one), ("256", many)):
    open(f"{sys.argv[2]}/body{name}.json", "w").write(json.dumps(body))
    open(f"{sys.argv[2]}/post{name}.lua", "w").write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = io.open("{sys.argv[2]}/body{name}.json"):read("*a")\n')
PY

wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "$1/ping" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server at $1 did not answer /ping" >&2
  return 1
}

measure() { # name url
  for rows in 1 256; do
    for c in 1 8 32; do
      out=$(wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${DURATION}s" --latency -s "$WORK/post$rows.lua" "$2/invocations")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
      non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
      echo "| $1 | $rows | $c | $rps | $p99 | ${non2xx:-0} |"
    done
  done
}

echo "| server | rows/request | connections | req/s | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
if [[ ",$SERVERS," == *",slipway,"* ]]; then
  cargo build --release -q -p slipway
  ORT=$("$ROOT/scripts/fetch-onnxruntime.sh")
  "$CARGO_TARGET_DIR/release/slipway" serve -m "$MODEL" --port 5301 --onnxruntime "$ORT" >"$WORK/slipway.log" 2>&1 &
  SLIPWAY_PID=$!
  wait_ready http://127.0.0.1:5301
  measure slipway http://127.0.0.1:5301
  kill $SLIPWAY_PID; wait $SLIPWAY_PID 2>/dev/null || true
fi
if [[ ",$SERVERS," == *",mlflow,"* ]]; then
  VENV="$ROOT/bench/.venv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q mlflow==3.17.2 onnx onnxruntime==1.32.0 >&2
  PATH="$VENV/bin:$PATH" "$VENV/bin/mlflow" models serve -m "$MODEL" --env-manager local -p 5302 -h 127.0.0.1 >"$WORK/mlflow.log" 2>&1 &
  MLFLOW_PID=$!
  wait_ready http://127.0.0.1:5302
  measure "mlflow models serve" http://127.0.0.1:5302
  kill $MLFLOW_PID; wait $MLFLOW_PID 2>/dev/null || true
fi
