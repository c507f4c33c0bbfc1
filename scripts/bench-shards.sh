#!/usr/bin/env bash
# One sharded backup run by 1, 2 and 4 worker processes: wall time from the workers' start to the
# commit, rows/s and the speed-up against one worker, the workers' CPU seconds and peak RSS, the
# emulator's CPU (not a test):
#   scripts/bench-shards.sh [ROWS [WORKERS...]]    ROWS defaults to 2000000, WORKERS to 1 2 4
# Starts its own services (own ports and state dir), builds the release binary (profile `bench`)
# unless BQB_TEST_BENCH_BINARY names one, creates the table inside the emulator, and removes
# everything it wrote. Every process shares this machine's cores with the emulator: the figures
# show how far more processes help here, not how BigQuery scales.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-bench-target}
export BQB_TEST_SERVICES_DIR=$repo/.bench-services
export PYTHONDONTWRITEBYTECODE=1
base=${BQB_TEST_BENCH_PORT_BASE:-19300}
export BQB_TEST_BQ_REST_PORT=$((base + 50)) BQB_TEST_BQ_GRPC_PORT=$((base + 60)) BQB_TEST_GCS_PORT=$((base + 70))
export BQB_TEST_GCS_SHIM_PORT=$((base + 75)) BQB_TEST_S3_PORT=$((base + 80)) BQB_TEST_AZ_PORT=$((base + 90))
export BQB_TEST_FAULT_BQ_PORT=$((base + 51)) BQB_TEST_FAULT_S3_PORT=$((base + 81)) BQB_TEST_FAULT_GCS_PORT=$((base + 76))

work=
cleanup() {
  [[ -n $work ]] && rm -rf "$work"
  scripts/test-services.sh stop || true
}
trap cleanup EXIT
scripts/test-services.sh stop >/dev/null 2>&1 || true
rm -rf "$BQB_TEST_SERVICES_DIR"
scripts/test-services.sh start
eval "$(scripts/test-services.sh env)"

if [[ -n ${BQB_TEST_BENCH_BINARY:-} ]]; then
  binary=$BQB_TEST_BENCH_BINARY
else
  cargo build --locked --profile bench --bin bq-backup
  binary=$CARGO_TARGET_DIR/release/bq-backup
fi
work=$(mktemp -d)
rows=${1:-2000000}
shift || true
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/shards.py "$binary" "$BQB_BIGQUERY_ENDPOINT" "$work" \
  "$(cat "$BQB_TEST_SERVICES_DIR/bqemulator.pid")" "$rows" "$@"
echo "load at end: $(uptime)" >&2
