#!/usr/bin/env bash
# One sharded backup run by 1, 2 and 4 worker processes: wall time from the workers' start to the
# commit, rows/s and the speed-up against one worker, the workers' CPU seconds and peak RSS, the
# emulator's CPU (not a test):
#   scripts/bench-shards.sh [ROWS [WORKERS...]]    ROWS defaults to 2000000, WORKERS to 1 2 4
# Starts its own services (own ports and state dir), builds the release binary (profile `bench`)
# unless BQB_TEST_BENCH_BINARY names one, creates the table inside the emulator, and removes
# everything it wrote. Every process shares this machine's cores with the emulator: the figures
# show how far more processes help here, not how BigQuery scales. BQB_TEST_BENCH_PIN=1 pins
# worker i to core i mod cores, each worker as if on a one-core machine of its own.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/bench/services.sh
source scripts/bench/services.sh
rows=${1:-2000000}
shift || true
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/shards.py "$binary" "$BQB_BIGQUERY_ENDPOINT" "$work" \
  "$(cat "$BQB_TEST_SERVICES_DIR/bqemulator.pid")" "$rows" "$@"
echo "load at end: $(uptime)" >&2
