#!/usr/bin/env bash
# Backup, verify and restore of the same data: wall time, CPU seconds and peak RSS (not a test):
#   scripts/bench-roundtrip.sh [ROWS...]      ROWS defaults to 1000000; several sizes show
#                                             whether memory stays flat (e.g. 1000000 5000000)
# Starts its own services (own ports and state dir), builds the release binary (profile
# `bench`), creates each table of ROWS generated rows inside the emulator, times `bq-backup
# backup` (files of up to BQB_TEST_BENCH_FILE_SIZE bytes, 1 GiB by default) on every core and
# under `taskset -c 0`, the same backup by the Python reference client (google-cloud-bigquery-
# storage, 4 streams, Arrow, pyarrow writing Parquet), `bq-backup verify` and `bq-backup restore`,
# and prints a Markdown table and the ratios of issue 13 (1 → 2 core scaling, bq-backup against
# the Python client, restore throughput / backup throughput). The emulator does the BigQuery side
# on this machine, so the figures measure bq-backup plus bqemulator, not BigQuery; keep ROWS to
# 5000000 or fewer (the emulator holds its tables in RAM).
# BQB_TEST_BENCH_FORMAT=AVRO for Avro (no Python client then: it writes Parquet);
# BQB_READ_STREAMS_PER_TABLE=1 for one file per table; BQB_TEST_BENCH_PORT_BASE (default 19300)
# moves its services; BQB_TEST_BENCH_BINARY runs that binary instead of building one (to compare
# two commits); BQB_TEST_BENCH_REFERENCE=0 skips the Python client (and its venv).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# The Python reference client's own venv, pinned, apart from the test services' (whose pins the
# emulator depends on): what a user would install to back up a table with the Read API.
CLIENT_PACKAGES=(
  "google-cloud-bigquery-storage[pyarrow]==2.43.0" "google-api-core==2.44.0"
  "grpcio==1.85.3" "protobuf==7.36.2" "pyarrow==22.0.0"
)
client_venv=${BQB_TEST_CACHE_DIR:-$HOME/.cache/bq-backup}/bench-client-venv
client_python=
if [[ ${BQB_TEST_BENCH_REFERENCE:-1} == 1 ]]; then
  if ! [[ -f $client_venv/.stamp && "$(cat "$client_venv/.stamp")" == "${CLIENT_PACKAGES[*]}" ]]; then
    echo "== installing the Python reference client into $client_venv (pinned)" >&2
    rm -rf "$client_venv"
    python3 -m venv "$client_venv"
    "$client_venv/bin/pip" install --quiet --disable-pip-version-check "${CLIENT_PACKAGES[@]}"
    echo "${CLIENT_PACKAGES[*]}" > "$client_venv/.stamp"
  fi
  client_python=$client_venv/bin/python
fi

# shellcheck source=scripts/bench/services.sh
source scripts/bench/services.sh
echo "load at start: $(uptime)" >&2
"$BQB_TEST_VENV/bin/python" scripts/bench/roundtrip.py "$binary" "$BQB_BIGQUERY_ENDPOINT" \
  "127.0.0.1:$BQB_TEST_BQ_GRPC_PORT" "$work" "$(cat "$BQB_TEST_SERVICES_DIR/bqemulator.pid")" \
  "$client_python" "${@:-1000000}"
echo "load at end: $(uptime)" >&2
