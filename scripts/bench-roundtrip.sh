#!/usr/bin/env bash
# Restore throughput next to backup throughput on the same data (not a test):
#   scripts/bench-roundtrip.sh [ROWS]      ROWS defaults to 1000000
# Starts its own services (own ports and state dir), builds the release binary (profile
# `bench`), loads ROWS generated rows into the emulator, times `bq-backup backup` and
# `bq-backup restore` and prints a Markdown table. The emulator does the BigQuery side on this
# machine, so the figures measure bq-backup plus bqemulator, not BigQuery.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
rows=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-bench-target}
export BQB_TEST_SERVICES_DIR=$repo/.bench-services
export BQB_TEST_BQ_REST_PORT=19350 BQB_TEST_BQ_GRPC_PORT=19360 BQB_TEST_GCS_PORT=19370
export BQB_TEST_GCS_SHIM_PORT=19375 BQB_TEST_S3_PORT=19380 BQB_TEST_AZ_PORT=19390
trap 'scripts/test-services.sh stop || true' EXIT
scripts/test-services.sh stop >/dev/null 2>&1 || true
rm -rf "$BQB_TEST_SERVICES_DIR"
scripts/test-services.sh start
eval "$(scripts/test-services.sh env)"
echo "== building the release binary (profile bench)" >&2
# The bench profile (release without LTO, quick to build on 2 cores) writes to release/.
cargo build --locked --profile bench --bin bq-backup
work=$(mktemp -d)
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/roundtrip.py "$CARGO_TARGET_DIR/release/bq-backup" "$BQB_BIGQUERY_ENDPOINT" "$rows" "$work"
echo "load at end: $(uptime)" >&2
rm -rf "$work"
