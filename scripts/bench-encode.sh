#!/usr/bin/env bash
# Encode benchmark: bq-backup's FileEncoder writing a generated mixed-type table in each format
# with its default compression, next to DuckDB (COPY ... TO: PARQUET, CSV, JSON), pyarrow
# (PARQUET, CSV) and fastavro (AVRO) writing the same rows. Prints a Markdown table (rows/s,
# input MB/s, output size, peak RSS, time ratio) and keeps the raw JSON lines.
#
#   scripts/bench-encode.sh [ROWS]      ROWS defaults to 10000000
#
# Each run is its own process, so each peak RSS is that run's alone. The numbers are indicative:
# the load average at start and end is printed with them.
#
# Environment:
#   CARGO_TARGET_DIR   default ~/.cache/bq-backup-bench-target (not the test target: its lock)
#   BQB_CACHE_DIR      where scripts/test-services.sh keeps the Python venv (default ~/.cache/bq-backup)
#   BQB_BENCH_DIR      input, outputs and results (default ${TMPDIR:-/tmp}/bq-backup-bench)
#   BQB_BENCH_KEEP=1   keep the output files (by default each is deleted once measured)
#   BQB_BENCH_DUCKDB_1T=0  skip the single-threaded DuckDB runs
set -euo pipefail

rows=${1:-10000000}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-bench-target}
venv=${BQB_CACHE_DIR:-$HOME/.cache/bq-backup}/venv
python=$venv/bin/python
work=${BQB_BENCH_DIR:-${TMPDIR:-/tmp}/bq-backup-bench}
helpers=$repo/scripts/bench
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the clone

log() { printf '[bench-encode] %s\n' "$*" >&2; }

if ! [[ -x $python ]] || ! "$python" -c 'import duckdb, pyarrow, fastavro' 2>/dev/null; then
  log "the Python venv lacks duckdb, pyarrow or fastavro: installing it"
  "$repo/scripts/test-services.sh" install
fi

log "building the benchmark (profile bench) in $CARGO_TARGET_DIR"
bench=$(cd "$repo" && cargo build --profile bench --bench encode --message-format=json-render-diagnostics \
  | "$python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "encode" and m.get("executable"):
        print(m["executable"])')
[[ -x $bench ]] || { log "ERROR: the benchmark binary was not built"; exit 1; }

mkdir -p "$work"
input=$work/input.parquet
results=$work/results.jsonl
: > "$results"
load_start=$(uptime)
log "load at start: $load_start"

# run LABEL OUTPUT COMMAND...: one measured process; its JSON line goes to $results.
run() {
  local label=$1 out=$2; shift 2
  log "$label"
  "$@" | tee -a "$results" >&2
  [[ ${BQB_BENCH_KEEP:-0} == 1 ]] || rm -f "$out"
}

log "writing the $rows-row input table to $input (uncompressed PARQUET)"
"$bench" --bench --rows "$rows" --write-input "$input" > "$work/input.json"
cat "$work/input.json" >&2

for format in avro csv parquet json; do
  out=$work/bq-backup.$format
  run "bq-backup $format" "$out" "$bench" --bench --rows "$rows" --format "$format" --out "$out"
done

cd "$helpers"
run "duckdb: reading the input alone" "$work/none" "$python" duckdb_copy.py "$input" scan -
for format in parquet csv json; do
  out=$work/duckdb.$format
  run "duckdb $format" "$out" "$python" duckdb_copy.py "$input" "$format" "$out"
  if [[ ${BQB_BENCH_DUCKDB_1T:-1} == 1 ]]; then
    run "duckdb $format, 1 thread" "$out" "$python" duckdb_copy.py "$input" "$format" "$out" 1
  fi
done
for format in parquet csv; do
  out=$work/pyarrow.$format
  run "pyarrow $format" "$out" "$python" pyarrow_write.py "$input" "$format" "$out"
done
run "fastavro avro (date/timestamp objects)" "$work/fastavro.avro" \
  "$python" fastavro_write.py "$input" "$work/fastavro.avro"
run "fastavro avro (date/timestamp as ints)" "$work/fastavro.avro" \
  "$python" fastavro_write.py "$input" "$work/fastavro.avro" --ints

load_end=$(uptime)
log "load at end: $load_end"
"$python" report.py "$work/input.json" "$results" "$load_start" "$load_end" | tee "$work/results.md"
log "raw results: $results; table: $work/results.md"
