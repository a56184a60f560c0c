#!/usr/bin/env bash
# The closed loop, end to end, in one command:
#
#   ./examples/closed-loop/run.sh
#
# starts a slipway server and a retraining worker, trains and deploys churn v1, sends traffic,
# shifts the traffic until monitoring alerts, and watches the alert retrain the model (v2),
# gate it and promote it through a canary; then a retrain on corrupted labels (v3) is refused
# by the gate and production stays on v2. It prints the chain as it happens.
#
# Needs: cargo (unless SLIPWAY_BIN names a built binary) and python3. Python packages
# (numpy, scikit-learn, skl2onnx, requests) go into a venv under ~/.cache unless
# CLOSED_LOOP_PYTHON names an interpreter that has them; ONNX Runtime comes from
# scripts/fetch-onnxruntime.sh unless ORT_DYLIB_PATH is set. Everything it writes is under
# CLOSED_LOOP_WORK (default: a new temporary folder), kept for reading afterwards.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="${CLOSED_LOOP_WORK:-$(mktemp -d -t slipway-closed-loop.XXXXXX)}"
mkdir -p "$WORK"
START=$SECONDS

say() { printf '\n\033[1m[%3ds] %s\033[0m\n' $((SECONDS - START)) "$*"; }
fail() { echo "closed-loop: $*" >&2; echo "logs: $WORK/server.log $WORK/worker.log" >&2; exit 1; }

# What it needs, fetched or built once and reused.
if [ -z "${SLIPWAY_BIN:-}" ]; then
  say "building slipway (cargo build --release)"
  cargo build --release -q -p slipway --manifest-path "$ROOT/Cargo.toml"
  SLIPWAY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway"
fi
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$("$ROOT/scripts/fetch-onnxruntime.sh")"
fi
export ORT_DYLIB_PATH
PYTHON="${CLOSED_LOOP_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  VENV="$HOME/.cache/slipway-closed-loop-venv"
  if ! "$VENV/bin/python" -c 'import numpy, sklearn, skl2onnx, requests' 2>/dev/null; then
    say "installing numpy, scikit-learn, skl2onnx, requests into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check numpy scikit-learn skl2onnx requests
  fi
  PYTHON="$VENV/bin/python"
fi
# (Background processes are started from "$SLIPWAY_BIN" itself, so their PIDs are theirs.)
slipway() { "$SLIPWAY_BIN" "$@"; }

PIDS=()
cleanup() {
  touch "$WORK/stop"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MLFLOW_TRACKING_URI="http://127.0.0.1:$PORT"
say "starting slipway server on $MLFLOW_TRACKING_URI (data in $WORK)"
"$SLIPWAY_BIN" server --port "$PORT" --backend-store-uri "sqlite:///$WORK/slipway.db" \
  --artifacts-destination "$WORK/artifacts" --alert-interval 1s >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "$MLFLOW_TRACKING_URI/health" >/dev/null && break; sleep 0.1; done
curl -sf "$MLFLOW_TRACKING_URI/health" >/dev/null || fail "the server did not start"

# The pipeline's folder, with PATH's python being the one with scikit-learn.
PIPELINES="$WORK/pipelines"
mkdir -p "$PIPELINES/churn/data/raw"
cp "$HERE/pipeline/"* "$PIPELINES/churn/"
BIN_DIR="$WORK/bin"
mkdir -p "$BIN_DIR"
# A wrapper, not a link: a venv's interpreter finds its packages from the path it was started as.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PYTHON" >"$BIN_DIR/python"
chmod +x "$BIN_DIR/python"
export PATH="$BIN_DIR:$PATH"
batch() { python "$HERE/generate.py" --out "$PIPELINES/churn/data/raw/batch.csv" "$@"; }
golden() { python "$HERE/generate.py" --rows 1000 --seed 99 --out "$PIPELINES/churn/data/golden.csv" "$@"; }

# Prints retrains whose state changed since last asked, as their chains.
SEEN="$WORK/seen"
: >"$SEEN"
show_history() {
  slipway triggers history --limit 50 | tac | while IFS= read -r line; do
    grep -qxF "$line" "$SEEN" || { echo "  $line"; echo "$line" >>"$SEEN"; }
  done
}
# Waits (printing the chain) until retrain state $1 appears for trigger $2, at most $3 s.
wait_for() {
  local state=$1 trigger=$2 deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    show_history
    if slipway triggers history --trigger "$trigger" --limit 1 --json \
        | python -c "import json,sys; r=json.load(sys.stdin); sys.exit(0 if r and r[0]['state']=='$state' else 1)"; then
      return 0
    fi
    sleep 1
  done
  show_history
  fail "no retrain of $trigger reached '$state' within $3 s"
}

say "act 0: the first model"
batch --shift 0
golden --shift 0
slipway triggers apply "$HERE/triggers.yml"
slipway alerts rules apply "$HERE/alerts.yml" >/dev/null
slipway triggers run churn-first --reason "first model" >/dev/null
slipway triggers worker --pipelines-dir "$PIPELINES" --once 2>>"$WORK/worker.log" \
  || fail "the first retrain failed"
show_history
slipway deploy create churn --model models:/churn/1 --monitor-window 60s \
  --monitor-window-rows 300 >/dev/null
slipway monitor reference create models:/churn/1 --data "$PIPELINES/churn/data/holdout.csv" \
  --label churned | sed 's/^/  /'

say "act 1: traffic as the model was trained for; a worker waits for retrains"
"$SLIPWAY_BIN" triggers worker --pipelines-dir "$PIPELINES" --poll 1s 2>>"$WORK/worker.log" &
PIDS+=($!)
echo 0 >"$WORK/shift"
"$PYTHON" "$HERE/traffic.py" --url "$MLFLOW_TRACKING_URI/deployments/churn/invocations" \
  --shift-file "$WORK/shift" --stop-file "$WORK/stop" &
PIDS+=($!)
sleep 4

say "act 1: the customers change; fresh labeled data lands"
batch --shift 2 --seed 1
golden --shift 2
echo 2 >"$WORK/shift"
wait_for promoted churn-drift 150
slipway alerts list | sed 's/^/  /' || true

say "act 2: a batch with corrupted labels is retrained on by hand"
batch --shift 2 --seed 2 --flip 0.45
slipway triggers run churn-relabel --reason "labels from a new vendor" >/dev/null
wait_for gate_failed churn-relabel 120

STABLE=$(slipway deploy status churn --json | python -c 'import json,sys; print(json.load(sys.stdin)["deployment"]["stable_version"])')
[ "$STABLE" = "2" ] || fail "production is on version $STABLE, not 2"
say "production stays on version $STABLE; the whole history:"
slipway triggers history | tac | sed 's/^/  /'
say "lineage of the version in production:"
slipway lineage models:/churn/2 | sed 's/^/  /'
say "closed loop done in $((SECONDS - START)) s"
