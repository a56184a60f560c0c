#!/usr/bin/env bash
# Runs every test slipway has: the Rust workspace tests (unit, store contract suite on SQLite and
# PostgreSQL, HTTP-level API tests, ONNX fixture models through ONNX Runtime) and the end-to-end
# suite that drives the real `mlflow` Python client against a running `slipway server` on
# SQLite and on PostgreSQL.
#
#   ./scripts/test.sh
#
# Needs: cargo, python3 (3.10+); starts moto's S3 server from the venv for the S3 artifact
# tests (the PostgreSQL pass keeps its artifacts there); installs Debian's prometheus (promtool),
# prometheus-alertmanager, kubernetes-client (kubectl), skopeo, umoci, postgresql-client, chromium and chromium-driver with apt-get when missing. PostgreSQL is used when reachable at SLIPWAY_TEST_PG_URL
# (default postgres://postgres@127.0.0.1:5432/test); without it the PostgreSQL parts are skipped
# with a printed reason, except when CI=true, where a missing PostgreSQL fails the run.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SLIPWAY_TEST_PG_URL="${SLIPWAY_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
E2E_VENV="${E2E_VENV:-$ROOT/.venv}"
CI="${CI:-false}"
SKIPPED=()

START=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

pg_reachable() {
  python3 - "$SLIPWAY_TEST_PG_URL" <<'PY'
import socket, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
try:
    socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=3).close()
except OSError:
    sys.exit(1)
PY
}

if pg_reachable; then
  PG=yes
else
  PG=no
  if [ "$CI" = "true" ]; then
    echo "error: CI=true but PostgreSQL is unreachable at $SLIPWAY_TEST_PG_URL; CI must run the PostgreSQL tests" >&2
    exit 1
  fi
  SKIPPED+=("PostgreSQL store contract and e2e runs: nothing listens at $SLIPWAY_TEST_PG_URL (set SLIPWAY_TEST_PG_URL or start PostgreSQL)")
fi

# The e2e suite's Python environment is downloaded and installed while Rust compiles: pip waits on
# the network, the compiler on the CPU, and a new machine needs both.
VENV_LOG="$(mktemp)"
trap 'rm -f "$VENV_LOG"' EXIT
(
  if [ ! -x "$E2E_VENV/bin/python" ]; then
    python3 -m venv "$E2E_VENV"
  fi
  if ! "$E2E_VENV/bin/python" -c 'import mlflow, pytest, pandas, psycopg' 2>/dev/null \
     || ! cmp -s tests/e2e/requirements.txt "$E2E_VENV/.slipway-requirements" ; then
    echo "installing tests/e2e/requirements.txt into $E2E_VENV"
    "$E2E_VENV/bin/pip" install --disable-pip-version-check -q -r tests/e2e/requirements.txt
    cp tests/e2e/requirements.txt "$E2E_VENV/.slipway-requirements"
  else
    echo "$E2E_VENV is up to date with tests/e2e/requirements.txt"
  fi
) >"$VENV_LOG" 2>&1 &
VENV_PID=$!

# Debian's promtool (package prometheus) checks and unit-tests the shipped alerting rules, and a
# real Alertmanager (prometheus-alertmanager) receives slipway's alerts in the e2e suite. They
# are installed with apt-get when missing, beside the compile like the venv.
DEBIAN_NEED=()
command -v promtool >/dev/null || DEBIAN_NEED+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || DEBIAN_NEED+=(prometheus-alertmanager)
# `kubectl kustomize` renders the Kubernetes overlays (any kubectl from 1.20 on; Debian's is 1.20).
command -v kubectl >/dev/null || DEBIAN_NEED+=(kubernetes-client)
# PostgreSQL backups run PostgreSQL's own pg_dump and pg_restore.
command -v pg_dump >/dev/null || DEBIAN_NEED+=(postgresql-client)
# skopeo and umoci read and unpack the OCI images `slipway image build` writes.
command -v skopeo >/dev/null || DEBIAN_NEED+=(skopeo)
command -v umoci >/dev/null || DEBIAN_NEED+=(umoci)
# The console's browser suite drives Debian's Chromium through its ChromeDriver (Selenium).
command -v chromium >/dev/null || DEBIAN_NEED+=(chromium)
command -v chromedriver >/dev/null || DEBIAN_NEED+=(chromium-driver)
APT_LOG="$(mktemp)"
trap 'rm -f "$VENV_LOG" "$APT_LOG"' EXIT
APT_PID=
if [ "${#DEBIAN_NEED[@]}" -gt 0 ]; then
  SUDO=
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo -n"; fi
  if command -v apt-get >/dev/null; then
    echo "installing Debian packages ${DEBIAN_NEED[*]} with apt-get (promtool and Alertmanager for the alerting tests, kubectl for the Kubernetes manifests, skopeo and umoci for the images, Chromium for the console's browser tests)"
    (
      $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
        --no-install-recommends "${DEBIAN_NEED[@]}"
    ) >"$APT_LOG" 2>&1 &
    APT_PID=$!
  fi
fi

step "ONNX Runtime for the serving tests (scripts/fetch-onnxruntime.sh)"
if ORT_LIB=$("$ROOT/scripts/fetch-onnxruntime.sh"); then
  export ORT_DYLIB_PATH="$ORT_LIB"
  echo "using $ORT_DYLIB_PATH"
elif [ "$CI" = "true" ]; then
  echo "error: CI=true but ONNX Runtime could not be fetched; CI must run the serving tests" >&2
  exit 1
else
  SKIPPED+=("ONNX model tests: ONNX Runtime could not be fetched from PyPI (run scripts/fetch-onnxruntime.sh or set ORT_DYLIB_PATH)")
fi

step "Rust tests (cargo test --workspace)"
cargo test --workspace --locked

step "Building the slipway binary for the end-to-end suite"
cargo build --locked -p slipway
BIN="$CARGO_TARGET_DIR/debug/slipway"

if [ "${#DEBIAN_NEED[@]}" -gt 0 ]; then
  step "Waiting for apt-get (${DEBIAN_NEED[*]})"
  if [ -z "$APT_PID" ] || ! wait "$APT_PID"; then
    cat "$APT_LOG" >&2
    if [ "$CI" = "true" ]; then
      echo "error: CI=true but ${DEBIAN_NEED[*]} could not be installed with apt-get (output above); CI must run the alerting, Kubernetes, image and browser tests" >&2
      exit 1
    fi
    SKIPPED+=("promtool, Alertmanager, Kubernetes manifest, image and console browser tests: Debian packages ${DEBIAN_NEED[*]} could not be installed (apt-get install ${DEBIAN_NEED[*]})")
  else
    echo "installed ${DEBIAN_NEED[*]}"
  fi
fi

step "Waiting for the end-to-end suite's Python environment ($E2E_VENV)"
if ! wait "$VENV_PID"; then
  cat "$VENV_LOG" >&2
  echo "error: could not prepare the Python environment $E2E_VENV (pip's output above)" >&2
  exit 1
fi
cat "$VENV_LOG"

# S3: moto's server (from the venv) on a free port, a bucket on it, and the AWS_* variables
# slipway reads. The artifact store's contract runs against it here, and the PostgreSQL pass
# below keeps its server's artifacts in it (the SQLite pass keeps them in a folder).
step "S3-compatible storage (moto's server) for the S3 artifact tests"
S3=no
S3_LOG="$(mktemp)"
S3_PORT=$("$E2E_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$E2E_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$S3_LOG" 2>&1 &
S3_PID=$!
trap 'kill "$S3_PID" 2>/dev/null; rm -f "$VENV_LOG" "$APT_LOG" "$S3_LOG"' EXIT
export AWS_ACCESS_KEY_ID=slipway-test AWS_SECRET_ACCESS_KEY=slipway-test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
S3_BUCKET="slipway-test"
if "$E2E_VENV/bin/python" - "$S3_BUCKET" <<'PY'
import sys, time, boto3, botocore
client = boto3.client("s3")
for _ in range(100):
    try:
        client.create_bucket(Bucket=sys.argv[1])
        break
    except botocore.exceptions.EndpointConnectionError:
        time.sleep(0.2)
else:
    sys.exit("moto's server did not answer")
PY
then
  S3=yes
  echo "moto's S3 server at $AWS_ENDPOINT_URL, bucket $S3_BUCKET"
  SLIPWAY_TEST_S3_URL="s3://$S3_BUCKET/contract" \
    cargo test --locked -p slipway-artifacts --features s3 --test artifact_store s3::
elif [ "$CI" = "true" ]; then
  cat "$S3_LOG" >&2
  echo "error: CI=true but moto's S3 server could not be started (output above); CI must run the S3 tests" >&2
  exit 1
else
  cat "$S3_LOG" >&2
  SKIPPED+=("S3 artifact tests: moto's S3 server could not be started (output above)")
fi

# The two backends' passes are independent (each test starts its own servers on free ports,
# with its own database and temporary folders), and mostly wait on servers and subprocesses:
# they run at once. The SQLite pass prints as it goes; the PostgreSQL pass's output follows it.
E2E_TMP="$(mktemp -d)"
e2e_pass() { # NAME [VAR=VALUE ...]
  local name=$1
  shift
  ( cd tests/e2e && env SLIPWAY_BIN="$BIN" E2E_TARGET=slipway "$@" \
      "$E2E_VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=10 \
      --basetemp="$E2E_TMP/$name" )
}
PG_STATUS=0
if [ "$PG" = yes ]; then
  DB="slipway_e2e_$(date +%s)_$$"
  "$E2E_VENV/bin/python" - "$SLIPWAY_TEST_PG_URL" "$DB" create <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f"CREATE DATABASE {sys.argv[2]}")
PY
  BASE="${SLIPWAY_TEST_PG_URL%/*}"
  ARTIFACTS_ON=()
  [ "$S3" = yes ] && ARTIFACTS_ON=(E2E_ARTIFACTS_DESTINATION="s3://$S3_BUCKET/e2e-$DB")
  e2e_pass postgresql E2E_BACKEND_STORE_URI="${BASE/postgres:/postgresql:}/$DB" "${ARTIFACTS_ON[@]}" \
    >"$E2E_TMP/postgresql.log" 2>&1 &
  PG_PID=$!
  step "End-to-end: real mlflow client against slipway on SQLite (PostgreSQL's pass runs beside it)"
else
  step "End-to-end: real mlflow client against slipway on SQLite"
fi
set +e
if [ "$PG" = yes ]; then
  # Backend-independent tests (the conversions) run once, in the PostgreSQL pass.
  e2e_pass sqlite E2E_BACKEND_INDEPENDENT_ELSEWHERE=1
else
  e2e_pass sqlite
fi
SQLITE_STATUS=$?
set -e
if [ "$PG" = yes ]; then
  step "End-to-end: real mlflow client against slipway on PostgreSQL"
  set +e
  wait "$PG_PID"
  PG_STATUS=$?
  set -e
  cat "$E2E_TMP/postgresql.log"
  "$E2E_VENV/bin/python" - "$SLIPWAY_TEST_PG_URL" "$DB" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f"DROP DATABASE IF EXISTS {sys.argv[2]} WITH (FORCE)")
PY
fi
rm -rf "$E2E_TMP"
[ "$SQLITE_STATUS" -eq 0 ] || { echo "error: the end-to-end suite failed on SQLite (above)" >&2; exit "$SQLITE_STATUS"; }
[ "$PG_STATUS" -eq 0 ] || { echo "error: the end-to-end suite failed on PostgreSQL (above)" >&2; exit "$PG_STATUS"; }

step "Summary"
echo "All test suites passed."
if [ "${#SKIPPED[@]}" -gt 0 ]; then
  for reason in "${SKIPPED[@]}"; do echo "SKIPPED: $reason"; done
fi
