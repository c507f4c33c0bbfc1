#!/usr/bin/env bash
# Backup, verify and restore of the same data: time and peak RSS (not a test):
#   scripts/bench-roundtrip.sh [ROWS...]      ROWS defaults to 1000000; several sizes show
#                                             whether memory stays flat (e.g. 1000000 10000000)
# Starts its own services (own ports and state dir), builds the release binary (profile
# `bench`), creates each table of ROWS generated rows inside the emulator, times `bq-backup
# backup` (files of up to BQB_TEST_BENCH_FILE_SIZE bytes, 1 GiB by default), `bq-backup verify`
# and `bq-backup restore` and prints a Markdown table. The emulator does the BigQuery side on this
# machine, so the figures measure bq-backup plus bqemulator, not BigQuery.
# BQB_TEST_BENCH_FORMAT=AVRO for Avro; BQB_READ_STREAMS_PER_TABLE=1 for one file per table;
# BQB_TEST_BENCH_PORT_BASE (default 19300) moves its services; BQB_TEST_BENCH_BINARY runs that
# binary instead of building one (to compare two commits).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-bench-target}
export BQB_TEST_SERVICES_DIR=$repo/.bench-services
base=${BQB_TEST_BENCH_PORT_BASE:-19300}
export BQB_TEST_BQ_REST_PORT=$((base + 50)) BQB_TEST_BQ_GRPC_PORT=$((base + 60)) BQB_TEST_GCS_PORT=$((base + 70))
export BQB_TEST_GCS_SHIM_PORT=$((base + 75)) BQB_TEST_S3_PORT=$((base + 80)) BQB_TEST_AZ_PORT=$((base + 90))
export BQB_TEST_FAULT_BQ_PORT=$((base + 51)) BQB_TEST_FAULT_S3_PORT=$((base + 81)) BQB_TEST_FAULT_GCS_PORT=$((base + 76))
trap 'scripts/test-services.sh stop || true' EXIT
scripts/test-services.sh stop >/dev/null 2>&1 || true
rm -rf "$BQB_TEST_SERVICES_DIR"
scripts/test-services.sh start
eval "$(scripts/test-services.sh env)"
if [[ -n ${BQB_TEST_BENCH_BINARY:-} ]]; then
  # A binary built elsewhere (another commit, to compare): used as it is.
  binary=$BQB_TEST_BENCH_BINARY
else
  echo "== building the release binary (profile bench)" >&2
  # The bench profile (release without LTO, quick to build on 2 cores) writes to release/.
  cargo build --locked --profile bench --bin bq-backup
  binary=$CARGO_TARGET_DIR/release/bq-backup
fi
work=$(mktemp -d)
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/roundtrip.py "$binary" "$BQB_BIGQUERY_ENDPOINT" "$work" "${@:-1000000}"
echo "load at end: $(uptime)" >&2
rm -rf "$work"
