#!/usr/bin/env bash
# EXTRACT against STREAM on one table (not a test):
#   scripts/bench-extract.sh [ROWS]      ROWS defaults to 1000000
# Uses the test services of the environment when they are running (`eval "$(scripts/test-services.sh
# env)"`), else starts its own (own ports and state dir). Builds the release binary (profile
# `bench`), loads ROWS generated rows into the emulator and backs them up to gs:// with each
# method, printing time and the bytes the CLI process moved over TCP (counted with strace in a
# second run). Needs strace. The emulator does the BigQuery side, and its extract job is DuckDB's
# COPY plus the harness's copy into fake-gcs: the EXTRACT seconds say little about BigQuery, the
# bytes through the service are what carries over.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
rows=${1:-1000000}
command -v strace >/dev/null || { echo "strace is required (apt-get install strace)" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-bench-target}
if [[ -z ${BQB_BIGQUERY_ENDPOINT:-} ]]; then
  export BQB_TEST_SERVICES_DIR=$repo/.bench-services
  export BQB_TEST_BQ_REST_PORT=19350 BQB_TEST_BQ_GRPC_PORT=19360 BQB_TEST_GCS_PORT=19370
  export BQB_TEST_GCS_SHIM_PORT=19375 BQB_TEST_S3_PORT=19380 BQB_TEST_AZ_PORT=19390
  trap 'scripts/test-services.sh stop || true' EXIT
  scripts/test-services.sh stop >/dev/null 2>&1 || true
  rm -rf "$BQB_TEST_SERVICES_DIR"
  scripts/test-services.sh start
  eval "$(scripts/test-services.sh env)"
fi
echo "== building the release binary (profile bench)" >&2
cargo build --locked --profile bench --bin bq-backup
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/extract.py "$CARGO_TARGET_DIR/release/bq-backup" "$BQB_BIGQUERY_ENDPOINT" "$rows" bqb-test
echo "load at end: $(uptime)" >&2
