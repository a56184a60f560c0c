#!/usr/bin/env bash
# Validate the e2e suite against MLflow's own server (the reference behaviour).
# Usage: tests/e2e/run_mlflow_reference.sh [pytest args...]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${E2E_REF_VENV:-$HERE/.venv-ref}"
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"
if [ ! -x "$VENV/bin/mlflow" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "mlflow==$MLFLOW_VERSION" -r "$HERE/requirements.txt"
fi
WORK="$(mktemp -d /tmp/mlflow-ref.XXXXXX)"
PORT="$("$VENV/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
# own process group, so that uvicorn/job-runner children are stopped with it
setsid "$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$WORK/mlflow.db" \
  --artifacts-destination "$WORK/artifacts" --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PID=$!
cleanup() { kill -TERM -- "-$PID" 2>/dev/null || true; sleep 3; kill -KILL -- "-$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "mlflow server did not start"; tail -50 "$WORK/server.log"; exit 1; }
cd "$HERE"
E2E_TARGET=mlflow E2E_TRACKING_URI="http://127.0.0.1:$PORT" "$VENV/bin/python" -m pytest -q "$@"
