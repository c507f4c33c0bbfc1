#!/usr/bin/env bash
# What an incremental backup costs next to a full one (not a test): a table of ROWS rows in 100
# daily partitions backed up in full, ROWS/1000 rows added to one partition, then backed up
# incrementally; wall time, CPU, the emulator's CPU, bytes written, peak RSS of each, and a
# restore of the chain checked for every row:
#   scripts/bench-incremental.sh [ROWS]    ROWS defaults to 1000000
# Starts its own services (own ports and state dir), builds the release binary (profile `bench`)
# unless BQB_TEST_BENCH_BINARY names one, and removes everything it wrote.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/bench/services.sh
source scripts/bench/services.sh
rows=${1:-1000000}
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/incremental.py "$binary" "$BQB_BIGQUERY_ENDPOINT" "$work" \
  "$(cat "$BQB_TEST_SERVICES_DIR/bqemulator.pid")" "$rows"
echo "load at end: $(uptime)" >&2
