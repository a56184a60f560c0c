#!/usr/bin/env bash
# Serving benchmark: the same `POST /invocations` requests (MLflow's `{"inputs": [[...]]}` body)
# on the MLflow ONNX fixture (logistic regression, 30 features), single-row and 256-row, at 1, 8
# and 32 connections, measured with wrk against each server in turn (one runs at a time, so none
# takes CPU from another). Prints one markdown table, then slipway's req/s at 32 connections as a
# ratio to the ceiling and to MLflow.
#
#   bench/serving/run.sh [--duration S] [--servers ceiling,slipway,slipway-deploy,fastapi,mlflow]
#
# Servers (default: ceiling,slipway,fastapi,mlflow):
#   ceiling     bench/serving/ceiling: bare axum + ort, the least work that answers correctly
#   slipway     `slipway serve` (release build)
#   slipway-tls the same over HTTPS (--tls-cert/--tls-key, an ECDSA P-256 certificate made here);
#               wrk keeps its connections, so this is the cost of encrypting the traffic, not
#               of handshakes
#   slipway-deploy  `slipway server` serving a managed deployment mid-canary (50 % to a
#               candidate), with routing, per-variant metrics, analysis and the prediction log
#   slipway-replica  the same deployment served by `slipway serve --deployment` (the data
#               plane), reporting to the server
#   fastapi     bench/serving/fastapi_server.py: FastAPI + onnxruntime under uvicorn, 1 worker
#               (uvicorn's default)
#   fastapi-2w  the same with `uvicorn --workers 2`, one per core, with uvicorn's lost
#               TCP_NODELAY put back (see fastapi_server.py); not in the default set
#   mlflow      `mlflow models serve --env-manager local` (its default: uvicorn, 1 worker)
#
# Before measuring a server, one request's answer is compared with onnxruntime's recorded output
# for this model (tests/fixtures/models/logreg_breast_cancer.samples.json, the same model.onnx):
# a server that answers wrongly is not measured, since a fast wrong answer is no figure.
#
# Needs: wrk (Debian package `wrk`), curl, python3. Builds slipway and the ceiling in release
# mode (CARGO_TARGET_DIR, default ~/.cache/slipway-target, shared so ort is compiled once);
# installs mlflow, fastapi, uvicorn, onnxruntime and numpy into bench/.venv as needed.
#
# Adding a server: write `start_NAME` (starts it in the background through `start_process`,
# echoes its base URL), optionally `prepare_NAME` (builds and installs, run before anything is
# measured), a label in LABELS, and, if it is not served at /invocations, a path in
# `invocations_path`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
DURATION=10
SERVERS=ceiling,slipway,slipway-deploy,fastapi,mlflow
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (wrk: apt-get install wrk)" >&2; exit 1; }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slipway-target}"
MODEL="$ROOT/tests/fixtures/models/mlflow_logreg_breast_cancer"
SAMPLES="$ROOT/tests/fixtures/models/logreg_breast_cancer.samples.json"
VENV="$ROOT/bench/.venv"
WORK=$(mktemp -d)

declare -A LABELS=(
  [ceiling]="ceiling (axum + ort)"
  [slipway]="slipway serve"
  [slipway-tls]="slipway serve over TLS"
  [fastapi]="FastAPI + onnxruntime (uvicorn, 1 worker)"
  [fastapi-2w]="FastAPI + onnxruntime (uvicorn, 2 workers)"
  [mlflow]="mlflow models serve"
  [slipway-deploy]="slipway server, deployment in a 50% canary (routing, metrics, prediction log)"
  [slipway-replica]="slipway serve --deployment (replica), same canary"
)

# Every server runs in its own session (setsid) so that stopping it also stops the processes it
# spawned (MLflow's uvicorn, uvicorn's workers).
stop_all() {
  for pidfile in "$WORK"/*.pid; do
    stop_process "$pidfile"
  done
  rm -rf "$WORK"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# start_process NAME COMMAND...: runs COMMAND in the background, its output in $WORK/NAME.log.
# The session leader writes its own pid: setsid forks when its caller leads a process group (a
# shell with job control), and then $! would name a process that is already gone.
start_process() {
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

python3 - "$MODEL/serving_input_example.json" "$SAMPLES" "$WORK" <<'PY'
import json, sys
example, samples, work = sys.argv[1:]
rows = json.load(open(example))["inputs"]
one = {"inputs": [rows[0]]}
many = {"inputs": [rows[i % len(rows)] for i in range(256)]}
for name, body in (("1", one), ("256", many)):
    open(f"{work}/body{name}.json", "w").write(json.dumps(body))
    open(f"{work}/post{name}.lua", "w").write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = io.open("{work}/body{name}.json"):read("*a")\n')
recorded = json.load(open(samples))
open(f"{work}/check.json", "w").write(json.dumps({"inputs": recorded["inputs"]}))
open(f"{work}/expected.json", "w").write(json.dumps({"predictions": recorded["outputs"]}))
PY

# ---------- setup shared by several servers ----------

ort_library() {
  [ -n "${ORT:-}" ] || ORT=$("$ROOT/scripts/fetch-onnxruntime.sh")
}

venv_install() { # packages...
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$@" >&2
}

# ---------- the servers: prepare_NAME (optional), start_NAME (echoes the base URL) ----------

prepare_ceiling() {
  cargo build --release -q --manifest-path "$ROOT/bench/serving/ceiling/Cargo.toml"
  ort_library
}
start_ceiling() {
  ORT_DYLIB_PATH="$ORT" start_process ceiling \
    "$CARGO_TARGET_DIR/release/slipway-serving-ceiling" "$MODEL/model.onnx" 5300
  echo http://127.0.0.1:5300
}

prepare_slipway() {
  cargo build --release -q -p slipway
  ort_library
}
start_slipway() {
  start_process slipway \
    "$CARGO_TARGET_DIR/release/slipway" serve -m "$MODEL" --port 5301 --onnxruntime "$ORT"
  echo http://127.0.0.1:5301
}

prepare_slipway_tls() {
  prepare_slipway
  venv_install cryptography
  mkdir -p "$WORK/tls"
  "$VENV/bin/python" - "$WORK/tls" <<'PY'
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
folder = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256()))
open(f"{folder}/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(f"{folder}/key.pem", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
PY
}
start_slipway_tls() {
  start_process slipway-tls \
    "$CARGO_TARGET_DIR/release/slipway" serve -m "$MODEL" --port 5307 --onnxruntime "$ORT" \
    --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem"
  echo https://127.0.0.1:5307
}

prepare_fastapi() {
  venv_install fastapi uvicorn onnxruntime==1.32.0 numpy
}
# Without the access log: a line per request would cost the Python side more than the slipway
# side pays for anything it logs; a hand-written server is free to turn it off.
start_fastapi() {
  MLMODEL_DIR="$MODEL" start_process fastapi "$VENV/bin/uvicorn" --app-dir "$ROOT/bench/serving" \
    fastapi_server:app --host 127.0.0.1 --port 5303 --no-access-log
  echo http://127.0.0.1:5303
}

prepare_fastapi_2w() { prepare_fastapi; }
# Through the module's own launcher: plain `uvicorn --workers 2` leaves Nagle on and would
# measure a 40 ms delayed-ACK stall per request rather than the server (fastapi_server.py says
# why).
start_fastapi_2w() {
  MLMODEL_DIR="$MODEL" start_process fastapi-2w "$VENV/bin/python" "$ROOT/bench/serving/fastapi_server.py" \
    --app-dir "$ROOT/bench/serving" fastapi_server:app --host 127.0.0.1 --port 5304 --no-access-log --workers 2
  echo http://127.0.0.1:5304
}

prepare_mlflow() {
  venv_install mlflow==3.17.2 onnx onnxruntime==1.32.0
}
# As MLflow ships it, access log included.
start_mlflow() {
  PATH="$VENV/bin:$PATH" start_process mlflow \
    "$VENV/bin/mlflow" models serve -m "$MODEL" --env-manager local -p 5302 -h 127.0.0.1
  echo http://127.0.0.1:5302
}

# A managed deployment on `slipway server`, mid-rollout: a canary of version 2 (the same model)
# at 50 %, so every request is routed by weight, measured per variant for the analysis (which
# runs every 30 s), counted in the metrics, and 10 % of them (the default sample) go to the
# prediction log.
prepare_slipway_deploy() { prepare_slipway; }
start_slipway_deploy() {
  local data="$WORK/deploy-data" url=http://127.0.0.1:5305
  start_process slipway-deploy "$CARGO_TARGET_DIR/release/slipway" server --port 5305 \
    --backend-store-uri "sqlite:///$data/slipway.db" --artifacts-destination "$data/artifacts" \
    --onnxruntime "$ORT"
  for _ in $(seq 1 100); do curl -sf "$url/health" >/dev/null && break; sleep 0.1; done
  python3 "$ROOT/bench/serving/register_deployment.py" "$url" "$MODEL" bench >&2
  MLFLOW_TRACKING_URI=$url "$CARGO_TARGET_DIR/release/slipway" deploy create bench \
    --model models:/bench@production >&2
  MLFLOW_TRACKING_URI=$url "$CARGO_TARGET_DIR/release/slipway" deploy update bench \
    --candidate models:/bench/2 --steps 50:1h --interval 30s >&2
  # /deployments/bench/ping and /deployments/bench/invocations under this base.
  echo "$url/deployments/bench"
}

# The same deployment served by a data-plane replica (`slipway serve --deployment`), which
# reports its measurements and prediction log to the server; the server runs beside it.
prepare_slipway_replica() { prepare_slipway; }
start_slipway_replica() {
  local base
  rm -rf "$WORK/deploy-data"   # a fresh database, if slipway-deploy ran before
  base=$(start_slipway_deploy)
  start_process slipway-replica "$CARGO_TARGET_DIR/release/slipway" serve --deployment bench \
    --tracking-uri "${base%/deployments/bench}" --port 5306 --onnxruntime "$ORT"
  echo http://127.0.0.1:5306
}

invocations_path() { # name
  case "$1" in
    *) echo /invocations ;;
  esac
}

wait_ready() { # name url
  for _ in $(seq 1 600); do
    curl "${CURL_TLS[@]}" -sf "$2/ping" >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$WORK/$1.pid" 2>/dev/null)" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1 did not answer $2/ping; the end of its log:" >&2
  tail -n 5 "$WORK/$1.log" >&2
  return 1
}

# check NAME URL [PATH]: the server's predictions for the recorded samples are onnxruntime's,
# labels exactly and probabilities within 1e-5.
check() {
  local answer="$WORK/$1.answer.json"
  if ! curl "${CURL_TLS[@]}" -sS -f -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/check.json" \
      -o "$answer" "$2${3:-/invocations}" 2>"$WORK/$1.curl.err"; then
    echo "$1: the check request failed: $(cat "$WORK/$1.curl.err")" >&2
    return 1
  fi
  python3 - "$WORK/expected.json" "$answer" "$1" <<'PY'
import json, sys
expected_file, answer_file, name = sys.argv[1:]
def same(want, got, at):
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(want) != set(got):
            return f"{at}: {got!r}, expected an object with keys {sorted(want)}"
        return next((d for k in want if (d := same(want[k], got[k], f"{at}.{k}"))), None)
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{at}: {got!r}, expected a list of {len(want)}"
        return next((d for i, w in enumerate(want) if (d := same(w, got[i], f"{at}[{i}]"))), None)
    if isinstance(want, int) and not isinstance(want, bool):
        return None if got == want else f"{at}: {got!r}, expected {want!r}"
    ok = isinstance(got, (int, float)) and abs(got - want) <= 1e-5
    return None if ok else f"{at}: {got!r}, expected {want!r} within 1e-5"
try:
    answer = json.load(open(answer_file))
except ValueError as error:
    sys.exit(f"{name}: the answer is not JSON: {error}")
difference = same(json.load(open(expected_file)), answer, "answer")
if difference:
    sys.exit(f"{name}: wrong answer, {difference}")
PY
}

# measure NAME URL [PATH]: one table row per rows x connections; req/s also in results.tsv.
measure() {
  local name=$1 url=$2 path=${3:-/invocations} rows c out rps p99 non2xx errors
  for rows in 1 256; do
    for c in 1 8 32; do
      out=$(wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${DURATION}s" --latency \
        -s "$WORK/post$rows.lua" "$url$path")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
      non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
      errors=$(echo "$out" | awk '/Socket errors/ { for (i = 3; i <= NF; i++) n += $i; print n }')
      printf '%s\t%s\t%s\t%s\n' "$name" "$rows" "$c" "$rps" >>"$WORK/results.tsv"
      echo "| ${LABELS[$name]:-$name} | $rows | $c | $rps | $p99 | ${non2xx:-0} | ${errors:-0} |"
    done
  done
}

IFS=, read -r -a SELECTED <<<"$SERVERS"
for name in "${SELECTED[@]}"; do
  declare -F "start_${name//-/_}" >/dev/null ||
    { echo "unknown server '$name' (known: ${!LABELS[*]})" >&2; exit 2; }
done
for name in "${SELECTED[@]}"; do
  if declare -F "prepare_${name//-/_}" >/dev/null; then
    "prepare_${name//-/_}"
  fi
done

# The self-signed certificate of slipway-tls, when it was made, is the one curl trusts.
CURL_TLS=()
[ -f "$WORK/tls/cert.pem" ] && CURL_TLS=(--cacert "$WORK/tls/cert.pem")

echo "| server | rows/request | connections | req/s | p99 | non-2xx | socket errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
failed=()
for name in "${SELECTED[@]}"; do
  url=$("start_${name//-/_}")
  path=$(invocations_path "$name")
  if wait_ready "$name" "$url" && check "$name" "$url" "$path"; then
    measure "$name" "$url" "$path"
  else
    echo "| ${LABELS[$name]:-$name} | — | — | not measured: no correct answer (see above) | | | |"
    failed+=("$name")
  fi
  stop_process "$WORK/$name.pid"
  # The replica's server too.
  [ "$name" = slipway-replica ] && stop_process "$WORK/slipway-deploy.pid"
done

# Ratios of req/s at 32 connections (slipway serve, and the deployment mid-canary); "—" where either side was not measured.
echo
echo "| rows/request | slipway serve / ceiling | deployment / ceiling | replica / ceiling | slipway serve / mlflow | deployment / mlflow | over TLS / plain |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for rows in 1 256; do
  awk -F'\t' -v rows="$rows" '
    $2 == rows && $3 == 32 { rps[$1] = $4 }
    function ratio(a, b) { return (a in rps && b in rps && rps[b] > 0) ? sprintf("%.2fx", rps[a] / rps[b]) : "—" }
    END { printf "| %s | %s | %s | %s | %s | %s | %s |\n", rows, ratio("slipway", "ceiling"), ratio("slipway-deploy", "ceiling"), ratio("slipway-replica", "ceiling"), ratio("slipway", "mlflow"), ratio("slipway-deploy", "mlflow"), ratio("slipway-tls", "slipway") }
  ' "$WORK/results.tsv" 2>/dev/null || echo "| $rows | — | — | — | — | — | — |"
done
if [ -x "$VENV/bin/python" ]; then
  echo
  "$VENV/bin/python" - <<'PY'
from importlib.metadata import PackageNotFoundError, version
found = []
for package in ("mlflow", "fastapi", "uvicorn", "onnxruntime", "numpy"):
    try:
        found.append(f"{package} {version(package)}")
    except PackageNotFoundError:
        pass
print("Python side: " + ", ".join(found))
PY
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "wrong or no answer from: ${failed[*]}" >&2
  exit 1
fi
