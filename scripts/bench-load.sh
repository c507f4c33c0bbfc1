#!/usr/bin/env bash
# Load benchmark of `bq-backup serve` (not a test): how it sheds a burst of backups and whether
# it stays responsive meanwhile.
#
#   scripts/bench-load.sh [--release] [--out FILE] [--backups N] [--health N] [--tables N]
#                         [--rows N] [--max-running N] [--max-queued N] [--deadline SECS]
#
# Builds the binary (debug by default; --release or BQB_BENCH_PROFILE=release|bench|dev), starts
# the test services unless bqemulator already runs in $BQB_TEST_SERVICES_DIR (and then stops
# them at the end), creates a dataset of TABLES tables x ROWS rows in the emulator (default
# 4 x 5000), starts `serve` on 127.0.0.1 with a file:// state store and repositories in a temp
# dir, then scripts/bench/load.py fires BACKUPS concurrent POST /api/v1/backup (default 200) and
# HEALTH concurrent GET /healthz (default 500) at once and reports: the status histogram of the
# POSTs (only 202/409/429 expected), whether every 429 carries Retry-After, every accepted job's
# end state, /healthz latency during the burst and while the jobs run, and serve's peak RSS
# (VmHWM). --out FILE also writes the report as JSON. Exits non-zero when the report lists a
# problem (a 5xx above all). Everything it started is stopped by PID on exit, the dataset
# deleted and the temp dir removed. Both the emulator and the load generator share the
# machine's cores with serve: latencies are upper bounds.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

profile=${BQB_BENCH_PROFILE:-dev}
out="" backups=200 health=500 tables=4 rows=5000 max_running=2 max_queued=16 deadline=300
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --release) profile=release ;;
    --out) out=$(realpath -m "$2"); shift ;;
    --backups) backups=$2; shift ;;
    --health) health=$2; shift ;;
    --tables) tables=$2; shift ;;
    --rows) rows=$2; shift ;;
    --max-running) max_running=$2; shift ;;
    --max-queued) max_queued=$2; shift ;;
    --deadline) deadline=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
# serve rejects unknown BQB_ variables: the benchmark's own must not reach it.
for v in $(compgen -e | grep '^BQB_BENCH_' || true); do unset "$v"; done
case $profile in
  dev|debug) profile=dev bin_dir=debug ;;
  release|bench) bin_dir=release ;;  # cargo's bench profile writes to release/ too
  *) bin_dir=$profile ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# 700 connections at once on each side.
ulimit -n 8192 2>/dev/null || ulimit -n 4096 2>/dev/null || true

project=test-project
dataset=bench_load_$$
work=$(mktemp -d "${TMPDIR:-/tmp}/bq-backup-bench-load.XXXXXX")
services_started="" server_pid="" dataset_created=""
cleanup() {
  local rc=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    echo "serve stopped (pid $server_pid)" >&2
  fi
  if [[ -n $dataset_created ]]; then
    "$py" scripts/bench/load.py teardown "$BQB_BIGQUERY_ENDPOINT" "$project" "$dataset" || true
  fi
  [[ -n $services_started ]] && { scripts/test-services.sh stop || true; }
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building bq-backup (profile $profile)" >&2
cargo build --locked --profile "$profile" --bin bq-backup
bin=$CARGO_TARGET_DIR/$bin_dir/bq-backup

# Captured first: `grep -q` leaving the pipe early would make `status` die of SIGPIPE, and with
# pipefail the test would say "not running" about services that are.
service_status=$(scripts/test-services.sh status 2>/dev/null || true)
if grep -qx 'bqemulator running (pid [0-9]*)' <<<"$service_status"; then
  echo "== using the test services already running" >&2
else
  echo "== starting the test services" >&2
  services_started=1
  scripts/test-services.sh start
fi
eval "$(scripts/test-services.sh env)"
py=$BQB_TEST_VENV/bin/python
curl -fsS -o /dev/null --max-time 5 "$BQB_BIGQUERY_ENDPOINT/readyz" || { echo "bqemulator is not ready" >&2; exit 1; }

echo "== creating $project.$dataset ($tables tables x $rows rows)" >&2
dataset_created=1
"$py" scripts/bench/load.py setup "$BQB_BIGQUERY_ENDPOINT" "$project" "$dataset" "$tables" "$rows"

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
serve_env=(PORT="$port" BQB_HOST=127.0.0.1 BQB_PROJECT_ID="$project" BQB_LOG_FORMAT=json BQB_LOG_LEVEL=warn
  BQB_STATE_URI="file://$work/state" BQB_MAX_RUNNING_JOBS="$max_running" BQB_MAX_QUEUED_JOBS="$max_queued")
# The storage allow-list is newer than some binaries, which reject settings they do not know.
config_doc=$("$bin" config 2>/dev/null || true)  # not piped into grep -q: SIGPIPE + pipefail
if grep -q BQB_ALLOWED_STORAGE <<<"$config_doc"; then
  serve_env+=(BQB_ALLOWED_STORAGE="file://$work")
  allowed="BQB_ALLOWED_STORAGE=file://$work"
else
  allowed="(this binary has no BQB_ALLOWED_STORAGE)"
fi
echo "== starting serve on 127.0.0.1:$port (jobs: $max_running running + $max_queued queued; $allowed)" >&2
env "${serve_env[@]}" "$bin" serve > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
  curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/readyz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if ! curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz"; then
  tail -n 30 "$work/serve.log" >&2
  echo "serve did not become ready" >&2
  exit 1
fi

echo "== burst: $backups x POST /api/v1/backup + $health x GET /healthz (load: $(uptime | sed 's/.*load average: //'))" >&2
rc=0
"$py" scripts/bench/load.py run --serve "http://127.0.0.1:$port" --pid "$server_pid" \
  --project "$project" --dataset "$dataset" --tables "$tables" --repo "$work/repos" \
  --backups "$backups" --health "$health" --deadline "$deadline" ${out:+--out "$out"} || rc=$?
echo "build profile: $profile; serve errors logged: $(grep -c '"level":"ERROR"\|"severity":"ERROR"' "$work/serve.log" || true); load at end: $(uptime | sed 's/.*load average: //')"
[[ -n $out ]] && echo "report written to $out"
exit "$rc"
