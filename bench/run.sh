#!/usr/bin/env bash
# slipway vs MLflow benchmark: one command runs the same workload against MLflow's own
# tracking server and against slipway, then prints a side-by-side table with ratios and
# writes bench/results/<timestamp>.{json,md}. `--servers slipway,slipway-auth` also compares
# slipway with authentication off and on. See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")

usage() {
  cat <<'EOF'
Usage: bench/run.sh [options]

  --quick                 fast smoke run (short windows, small data; 100k search not run)
  --scenarios LIST        comma list of: ingest,log-metric,search,history,alias,artifact
                          (start-up time and idle memory are always measured)   [$BENCH_SCENARIOS]
  --servers LIST          mlflow,slipway (default both); slipway-auth adds a second slipway run
                          with --auth after the plain one and an auth-on vs auth-off table
                          (e.g. --servers slipway,slipway-auth)                  [$BENCH_SERVERS]
  --slipway-auth          run the slipway server itself with --auth (an admin user "bench" with a
                          random password, HTTP Basic on every request)   [$BENCH_SLIPWAY_AUTH=1]
  --slipway-auth-scheme S credentials of the auth-on runs: basic (default) or bearer (an API
                          token of the same user)                   [$BENCH_SLIPWAY_AUTH_SCHEME]
  --mlflow-100k           also populate MLflow with 100k runs for the 100k search (takes hours)
  --slipway-backend B     sqlite (default) or postgres (fresh database on 127.0.0.1:5432)
  --slipway-bin PATH      use this slipway binary instead of building it
  --mlflow-results FILE   do not run MLflow; compare with its figures in FILE (an earlier
                          bench/results/<ts>.json)
  --no-build              do not run cargo/pip; use what is already built/installed
  --duration S            measured window of the time-bounded loops (default 20, quick 5)
  --ingest-concurrency N  clients of the log-batch ingest scenario (default 4)
  --threads N             load generator runtime threads (default 1)
  --keep                  keep the temporary databases, artifacts and logs
  -h, --help

Environment overrides (numbers): WARMUP, SEARCH_SMALL_RUNS, SEARCH_LARGE_RUNS, SEARCH_ITERATIONS,
POPULATE_CONCURRENCY, HISTORY_STEPS, HISTORY_REPS, ALIAS_DURATION, ARTIFACT_MIB, ARTIFACT_REPS,
LOG_METRIC_CONCURRENCY, MLFLOW_PRESERIALIZED=1 (also run the pre-serialized ingest on MLflow),
MLFLOW_VERSION, CARGO_TARGET_DIR (slipway build), LOADGEN_TARGET_DIR (load generator build).
EOF
}

QUICK=0
SCENARIOS=${BENCH_SCENARIOS:-ingest,log-metric,search,history,alias,artifact}
SERVERS=${BENCH_SERVERS:-mlflow,slipway}
BENCH_AUTH=${BENCH_SLIPWAY_AUTH:-0}
SLIPWAY_AUTH_SCHEME=${BENCH_SLIPWAY_AUTH_SCHEME:-basic}
MLFLOW_100K=0
SLIPWAY_BACKEND=${SLIPWAY_BACKEND:-sqlite}
SLIPWAY_BIN=${SLIPWAY_BIN:-}
NO_BUILD=0
MLFLOW_RESULTS=
DURATION=
INGEST_CONCURRENCY=${INGEST_CONCURRENCY:-4}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
KEEP=0

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --scenarios=*) SCENARIOS=${1#*=} ;;
    --servers) SERVERS=$2; shift ;;
    --servers=*) SERVERS=${1#*=} ;;
    --slipway-auth) BENCH_AUTH=1 ;;
    --slipway-auth-scheme) SLIPWAY_AUTH_SCHEME=$2; shift ;;
    --slipway-auth-scheme=*) SLIPWAY_AUTH_SCHEME=${1#*=} ;;
    --mlflow-100k) MLFLOW_100K=1 ;;
    --slipway-backend) SLIPWAY_BACKEND=$2; shift ;;
    --slipway-backend=*) SLIPWAY_BACKEND=${1#*=} ;;
    --slipway-bin) SLIPWAY_BIN=$2; shift ;;
    --slipway-bin=*) SLIPWAY_BIN=${1#*=} ;;
    --mlflow-results) MLFLOW_RESULTS=$2; shift ;;
    --mlflow-results=*) MLFLOW_RESULTS=${1#*=} ;;
    --no-build) NO_BUILD=1 ;;
    --duration) DURATION=$2; shift ;;
    --duration=*) DURATION=${1#*=} ;;
    --ingest-concurrency) INGEST_CONCURRENCY=$2; shift ;;
    --threads) LOADGEN_THREADS=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$MLFLOW_RESULTS" ]; then
  [ -f "$MLFLOW_RESULTS" ] || { echo "no such file: $MLFLOW_RESULTS" >&2; exit 2; }
  MLFLOW_RESULTS=$(cd "$(dirname "$MLFLOW_RESULTS")" && pwd)/$(basename "$MLFLOW_RESULTS")
  SERVERS=$(echo ",$SERVERS," | sed 's/,mlflow,/,/g; s/^,//; s/,$//')
fi
case "$SLIPWAY_BACKEND" in sqlite|postgres) ;; *) echo "--slipway-backend must be sqlite or postgres" >&2; exit 2 ;; esac
for srv in ${SERVERS//,/ }; do
  case "$srv" in mlflow|slipway|slipway-auth) ;; *) echo "--servers: unknown server '$srv' (mlflow, slipway, slipway-auth)" >&2; exit 2 ;; esac
done
case "$BENCH_AUTH" in 0|1) ;; *) echo "BENCH_SLIPWAY_AUTH must be 0 or 1" >&2; exit 2 ;; esac
case "$SLIPWAY_AUTH_SCHEME" in basic|bearer) ;; *) echo "--slipway-auth-scheme must be basic or bearer" >&2; exit 2 ;; esac
if [ "$BENCH_AUTH" = 1 ] && [[ ",$SERVERS," == *",slipway-auth,"* ]]; then
  echo "--slipway-auth runs the slipway server itself with --auth; for the auth-off vs auth-on comparison use --servers slipway,slipway-auth without it" >&2
  exit 2
fi
# authentication is chosen by this script only: never inherit it from the caller's environment
unset SLIPWAY_AUTH SLIPWAY_INSECURE_NO_AUTH LOADGEN_AUTHORIZATION 2>/dev/null || true

if [ "$QUICK" = 1 ]; then
  DURATION=${DURATION:-5}
  WARMUP=${WARMUP:-1}
  SEARCH_SMALL_RUNS=${SEARCH_SMALL_RUNS:-500}
  SEARCH_LARGE_RUNS=${SEARCH_LARGE_RUNS:-0}
  SEARCH_ITERATIONS=${SEARCH_ITERATIONS:-10}
  HISTORY_STEPS=${HISTORY_STEPS:-20000}
  HISTORY_REPS=${HISTORY_REPS:-2}
  ALIAS_DURATION=${ALIAS_DURATION:-3}
  ARTIFACT_REPS=${ARTIFACT_REPS:-2}
  MODE=quick
else
  DURATION=${DURATION:-20}
  WARMUP=${WARMUP:-3}
  SEARCH_SMALL_RUNS=${SEARCH_SMALL_RUNS:-5000}
  SEARCH_LARGE_RUNS=${SEARCH_LARGE_RUNS:-100000}
  SEARCH_ITERATIONS=${SEARCH_ITERATIONS:-50}
  HISTORY_STEPS=${HISTORY_STEPS:-100000}
  HISTORY_REPS=${HISTORY_REPS:-5}
  ALIAS_DURATION=${ALIAS_DURATION:-10}
  ARTIFACT_REPS=${ARTIFACT_REPS:-5}
  MODE=full
fi
POPULATE_CONCURRENCY=${POPULATE_CONCURRENCY:-4}
ARTIFACT_MIB=${ARTIFACT_MIB:-10}
LOG_METRIC_CONCURRENCY=${LOG_METRIC_CONCURRENCY:-8}
IDLE_SETTLE=${IDLE_SETTLE:-5}

has_scenario() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }
has_slipway() { has_server slipway || has_server slipway-auth; }
log() { printf '\n\033[1m[bench %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------------------------------------
# versions and builds
REF_DOC="$REPO/../shared/reference/MLFLOW_REST.md"
if [ -z "${MLFLOW_VERSION:-}" ]; then
  MLFLOW_VERSION=$(grep -oE 'MLflow [0-9]+\.[0-9]+\.[0-9]+' "$REF_DOC" 2>/dev/null | head -n1 | cut -d' ' -f2 || true)
  MLFLOW_VERSION=${MLFLOW_VERSION:-3.17.2}
fi
VENV="$BENCH_DIR/.venv"
LOADGEN_TARGET_DIR=${LOADGEN_TARGET_DIR:-$HOME/.cache/slipway-bench-target}
LOADGEN="$LOADGEN_TARGET_DIR/release/loadgen"
SLIPWAY_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slipway-target}

if has_server mlflow && [ "$NO_BUILD" = 0 ]; then
  have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null || true)
  if [ "$have" != "$MLFLOW_VERSION" ]; then
    log "installing mlflow==$MLFLOW_VERSION into $VENV (have: ${have:-none})"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null || true
    if ! "$VENV/bin/pip" install -q "mlflow==$MLFLOW_VERSION"; then
      log "mlflow==$MLFLOW_VERSION is not installable here; installing the newest mlflow instead"
      "$VENV/bin/pip" install -q mlflow
    fi
  fi
fi

if [ "$NO_BUILD" = 0 ] || [ ! -x "$LOADGEN" ]; then
  log "building the load generator (release, target dir $LOADGEN_TARGET_DIR)"
  CARGO_TARGET_DIR="$LOADGEN_TARGET_DIR" cargo build --release --quiet --manifest-path "$BENCH_DIR/loadgen/Cargo.toml"
fi

SLIPWAY_UNAVAILABLE=
if has_slipway; then
  if [ -z "$SLIPWAY_BIN" ]; then
    SLIPWAY_BIN="$SLIPWAY_TARGET_DIR/release/slipway"
    if [ "$NO_BUILD" = 0 ]; then
      log "building slipway (cargo build --release -p slipway, target dir $SLIPWAY_TARGET_DIR)"
      if ! (cd "$REPO" && CARGO_TARGET_DIR="$SLIPWAY_TARGET_DIR" cargo build --release -p slipway); then
        SLIPWAY_UNAVAILABLE="cargo build --release -p slipway failed"
      fi
    fi
  fi
  if [ -z "$SLIPWAY_UNAVAILABLE" ] && [ ! -x "$SLIPWAY_BIN" ]; then
    SLIPWAY_UNAVAILABLE="no slipway binary at $SLIPWAY_BIN"
  fi
fi

# ------------------------------------------------------------------------------------------
# run directory, results, cleanup
TS=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR="$BENCH_DIR/results"
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slipway-bench.XXXXXX")
SERVER_PID=
PG_DBS=

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=
  # the server was started with setsid: its session id is its pid, and every worker it
  # forked stays in that session
  local members
  members=$(pgrep -s "$pid" 2>/dev/null || true)
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null && [ -z "$(pgrep -s "$pid" 2>/dev/null || true)" ]; then break; fi
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  for p in $members $(pgrep -s "$pid" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_server
  for db in $PG_DBS; do
    psql -h 127.0.0.1 -U postgres -d test -q -c "drop database if exists $db" >/dev/null 2>&1 || true
  done
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------
# one server: start, measure start-up + idle memory, scenarios, stop

lg() { "$LOADGEN" --url "$URL" --server-pid "$SERVER_PID" --threads "$LOADGEN_THREADS" --json-out "$RES" "$@"; }

server_alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# run_scen KEY loadgen-args...: a failure is recorded in the results by the load generator
run_scen() {
  local key=$1; shift
  if ! server_alive; then
    "$LOADGEN" --json-out "$RES" --key "$key" skip --reason "server process exited earlier (see log)" >/dev/null
    return 0
  fi
  log "$NAME: $key"
  lg --key "$key" "$@" || log "$NAME: $key FAILED (recorded in the results)"
}

skip() { "$LOADGEN" --json-out "$RES" --key "$1" skip --reason "$2"; }

random_password() { head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; }

# server names: mlflow; slipway (auth off, or on with --slipway-auth); slipway-auth (auth on)
bench_server() {
  NAME=$1
  local dir="$WORK/$NAME"
  mkdir -p "$dir/art"
  RES="$dir/results.json"
  local port
  port=$("$LOADGEN" free-port)
  URL="http://127.0.0.1:$port"
  local cmd version backend auth=off
  unset LOADGEN_AUTHORIZATION
  if [ "$NAME" = slipway-auth ] || { [ "$NAME" = slipway ] && [ "$BENCH_AUTH" = 1 ]; }; then auth=on; fi
  if [ "$NAME" = mlflow ]; then
    backend="sqlite:///$dir/mlflow.db"
    version=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null || echo "?")
    cmd=("$VENV/bin/mlflow" server --backend-store-uri "$backend" --artifacts-destination "$dir/art" --host 127.0.0.1 --port "$port")
  else
    if [ "$SLIPWAY_BACKEND" = postgres ]; then
      local pg_db="slipway_bench_$(date +%s)_$$_${NAME//-/_}"
      if ! psql -h 127.0.0.1 -U postgres -d test -q -c "create database $pg_db" >/dev/null; then
        "$LOADGEN" --json-out "$RES" meta --set server="$NAME" --set status="not run: could not create postgres database"
        return 0
      fi
      PG_DBS="$PG_DBS $pg_db"
      backend="postgresql://postgres@127.0.0.1:5432/$pg_db"
    else
      backend="sqlite:///$dir/slipway.db"
    fi
    version=$("$SLIPWAY_BIN" --version 2>/dev/null | head -n1 || true)
    cmd=("$SLIPWAY_BIN" server --backend-store-uri "$backend" --artifacts-destination "$dir/art" --host 127.0.0.1 --port "$port")
    # Auth on: an admin user created with the CLI before the server starts, credentials sent
    # by the load generator on every request. In the auth comparison the auth-off run creates
    # the same user too, so both servers start on a database already migrated by the CLI.
    if [ "$auth" = on ] || has_server slipway-auth; then
      local pw
      pw=$(random_password)
      log "$NAME: creating the admin user bench (slipway users create)"
      if ! printf '%s' "$pw" | "$SLIPWAY_BIN" users create bench --role admin --password-stdin --create --backend-store-uri "$backend" >"$dir/users.log" 2>&1; then
        cat "$dir/users.log" >&2 || true
        "$LOADGEN" --json-out "$RES" meta --set server="$NAME" --set status="not run: slipway users create failed: $(tail -n 1 "$dir/users.log" 2>/dev/null)"
        return 0
      fi
      if [ "$auth" = on ]; then
        cmd+=(--auth)
        if [ "$SLIPWAY_AUTH_SCHEME" = bearer ]; then
          local token
          if ! token=$("$SLIPWAY_BIN" tokens create --user bench --backend-store-uri "$backend" 2>>"$dir/users.log") || [ -z "$token" ]; then
            "$LOADGEN" --json-out "$RES" meta --set server="$NAME" --set status="not run: slipway tokens create failed: $(tail -n 1 "$dir/users.log" 2>/dev/null)"
            return 0
          fi
          export LOADGEN_AUTHORIZATION="Bearer $token"
        else
          export LOADGEN_AUTHORIZATION="Basic $(printf 'bench:%s' "$pw" | base64 | tr -d '\n')"
        fi
      fi
    fi
  fi
  local auth_meta=()
  if [ "$NAME" != mlflow ]; then
    auth_meta=(--set auth="$auth")
    if [ "$auth" = on ]; then
      if [ "$SLIPWAY_AUTH_SCHEME" = bearer ]; then
        auth_meta+=(--set auth_credentials="an API token of an admin user (Authorization: Bearer) on every request")
      else
        auth_meta+=(--set auth_credentials="HTTP Basic credentials of an admin user (Authorization: Basic) on every request")
      fi
    fi
  fi
  "$LOADGEN" --json-out "$RES" meta --set server="$NAME" --set version="${version:-?}" \
    --set backend="${backend%%:*}" --set url="$URL" --set mode="$MODE" --set ncpu="$(nproc)" \
    --set loadgen_threads="$LOADGEN_THREADS" --set command="${cmd[*]}" ${auth_meta[@]+"${auth_meta[@]}"}

  log "$NAME: starting: ${cmd[*]}"
  local t0
  t0=$(date +%s%N)
  setsid "${cmd[@]}" >"$dir/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  if ! "$LOADGEN" --url "$URL" --json-out "$RES" --key startup wait-health --start-ns "$t0" --pid "$SERVER_PID" --timeout 240; then
    log "$NAME did not become healthy; last lines of its log:"
    tail -n 30 "$dir/server.log" >&2 || true
    "$LOADGEN" --json-out "$RES" meta --set status="not run: server did not answer /health (see log)"
    tail -n 200 "$dir/server.log" >"$RESULTS_DIR/$TS.$NAME.log" 2>/dev/null || true
    stop_server
    return 0
  fi
  if [ "$auth" = on ]; then
    local auth_check
    if ! auth_check=$("$LOADGEN" --url "$URL" check-auth 2>&1); then
      auth_check=${auth_check%%$'\n'*}
      log "$NAME: authentication check failed: $auth_check"
      "$LOADGEN" --json-out "$RES" meta --set status="not run: authentication check failed: $auth_check"
      stop_server
      return 0
    fi
    "$LOADGEN" --json-out "$RES" meta --set auth_check="${auth_check#auth: }"
  fi
  sleep "$IDLE_SETTLE"
  lg --key idle_memory mem --pid "$SERVER_PID" || true

  local common=(--duration "$DURATION" --warmup "$WARMUP")
  if has_scenario ingest; then
    run_scen ingest "${common[@]}" --concurrency "$INGEST_CONCURRENCY" ingest
    if [ "$NAME" != mlflow ] || [ "${MLFLOW_PRESERIALIZED:-0}" = 1 ]; then
      run_scen ingest_preserialized "${common[@]}" --concurrency "$INGEST_CONCURRENCY" ingest --preserialized
    else
      skip ingest_preserialized "run for slipway only (MLflow is server-bound); set MLFLOW_PRESERIALIZED=1 to run it"
    fi
  fi
  if has_scenario log-metric; then
    run_scen log_metric "${common[@]}" --concurrency "$LOG_METRIC_CONCURRENCY" log-metric
  fi
  if has_scenario search; then
    run_scen search_5k search --runs "$SEARCH_SMALL_RUNS" --populate-concurrency "$POPULATE_CONCURRENCY" --iterations "$SEARCH_ITERATIONS"
    if [ "$SEARCH_LARGE_RUNS" = 0 ]; then
      skip search_100k "not run in --quick mode (set SEARCH_LARGE_RUNS to run it)"
    elif [ "$NAME" = mlflow ] && [ "$MLFLOW_100K" = 0 ]; then
      skip search_100k "MLflow's $SEARCH_LARGE_RUNS-run population takes hours here; pass --mlflow-100k to run it"
    else
      run_scen search_100k search --runs "$SEARCH_LARGE_RUNS" --populate-concurrency "$POPULATE_CONCURRENCY" --iterations "$SEARCH_ITERATIONS"
    fi
  fi
  if has_scenario history; then
    run_scen history history --steps "$HISTORY_STEPS" --page-size 25000 --reps "$HISTORY_REPS"
  fi
  if has_scenario alias; then
    run_scen alias --duration "$ALIAS_DURATION" --warmup 1 alias --concurrencies 1,8
  fi
  if has_scenario artifact; then
    run_scen artifact artifact --size-mib "$ARTIFACT_MIB" --reps "$ARTIFACT_REPS"
  fi
  if server_alive; then
    lg --key memory_after mem --pid "$SERVER_PID" || true
  else
    log "$NAME: the server process exited during the run; last lines of its log:"
    tail -n 30 "$dir/server.log" >&2 || true
    "$LOADGEN" --json-out "$RES" meta --set status="server process exited during the run"
  fi
  log "$NAME: stopping"
  stop_server
  unset LOADGEN_AUTHORIZATION
  if grep -qiE 'Traceback|panicked|ERROR' "$dir/server.log" 2>/dev/null; then
    tail -n 200 "$dir/server.log" >"$RESULTS_DIR/$TS.$NAME.log" 2>/dev/null || true
    log "$NAME: its log has errors; last 200 lines saved to bench/results/$TS.$NAME.log"
  fi
}

# run_slipway NAME: bench one slipway configuration (or record why it could not run)
run_slipway() {
  if [ -n "$SLIPWAY_UNAVAILABLE" ]; then
    mkdir -p "$WORK/$1"
    "$LOADGEN" --json-out "$WORK/$1/results.json" meta --set server="$1" --set status="not run: $SLIPWAY_UNAVAILABLE"
    log "$1 not run: $SLIPWAY_UNAVAILABLE"
  else
    bench_server "$1"
  fi
}

MLFLOW_RES=$MLFLOW_RESULTS
SLIPWAY_RES=
SLIPWAY_AUTH_RES=
if has_server mlflow; then
  bench_server mlflow
  MLFLOW_RES="$WORK/mlflow/results.json"
fi
# auth off first, then auth on
if has_server slipway; then
  run_slipway slipway
  SLIPWAY_RES="$WORK/slipway/results.json"
fi
if has_server slipway-auth; then
  run_slipway slipway-auth
  SLIPWAY_AUTH_RES="$WORK/slipway-auth/results.json"
fi
if has_slipway; then
  if [ "$BENCH_AUTH" = 1 ]; then
    AUTH_NOTE="; slipway run with --auth ($SLIPWAY_AUTH_SCHEME credentials on every request)"
  elif has_server slipway-auth; then
    AUTH_NOTE="; slipway run twice: auth off, then auth on (--auth, $SLIPWAY_AUTH_SCHEME credentials on every request)"
  else
    AUTH_NOTE="; slipway auth off"
  fi
else
  AUTH_NOTE=
fi

NOTE="Run $TS, mode **$MODE** on $(nproc) cores; scenarios: $SCENARIOS; ingest clients: $INGEST_CONCURRENCY, log-metric clients: $LOG_METRIC_CONCURRENCY; windows: ${DURATION}s after ${WARMUP}s warm-up; search runs: $SEARCH_SMALL_RUNS / $SEARCH_LARGE_RUNS; history steps: $HISTORY_STEPS; slipway backend: $SLIPWAY_BACKEND$AUTH_NOTE; MLflow 100k search: $([ "$MLFLOW_100K" = 1 ] && echo run || echo 'not run (no --mlflow-100k)')$([ -n "$MLFLOW_RESULTS" ] && echo "; MLflow figures taken from $MLFLOW_RESULTS (not re-run)" || true)."
args=(report --out-json "$RESULTS_DIR/$TS.json" --out-md "$RESULTS_DIR/$TS.md" --note "$NOTE")
[ -n "$MLFLOW_RES" ] && args+=(--mlflow "$MLFLOW_RES")
[ -n "$SLIPWAY_RES" ] && args+=(--slipway "$SLIPWAY_RES")
[ -n "$SLIPWAY_AUTH_RES" ] && args+=(--slipway-auth "$SLIPWAY_AUTH_RES")
echo
"$LOADGEN" "${args[@]}"
echo
echo "results: $RESULTS_DIR/$TS.md and $RESULTS_DIR/$TS.json"
