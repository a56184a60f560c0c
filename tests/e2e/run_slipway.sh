#!/usr/bin/env bash
# Run the e2e suite against slipway: tests/e2e/run_slipway.sh /path/to/slipway [pytest args...]
# Optional: E2E_BACKEND_STORE_URI=postgresql://... (a fresh database) instead of SQLite.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$(realpath "${1:?usage: run_slipway.sh SLIPWAY_BIN [pytest args]}")"; shift
VENV="${E2E_VENV:-$HERE/.venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import mlflow, pytest, pandas' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi
cd "$HERE"
unset E2E_TRACKING_URI
SLIPWAY_BIN="$BIN" E2E_TARGET=slipway "$VENV/bin/python" -m pytest -q "$@"
