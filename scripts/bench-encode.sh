#!/usr/bin/env bash
# Encode benchmark: bq-backup's FileEncoder writing a generated mixed-type table in each format
# with its default compression, next to DuckDB (COPY ... TO: PARQUET, CSV, JSON), pyarrow
# (PARQUET, CSV) and fastavro (AVRO) writing the same rows. Prints a Markdown table (rows/s,
# input MB/s, output size, peak RSS, speed ratio) and the ratios of issue 13, and keeps the raw
# JSON lines.
#
#   scripts/bench-encode.sh [ROWS]      ROWS defaults to 10000000
#
# Compared at equal threads, encode against encode: bq-backup and DuckDB each run with 1 and with
# 2 threads (bq-backup's 2 threads encode the two halves of the table into two files, as a backup
# does with its read streams); DuckDB also reads the input alone at each thread count, which the
# report subtracts from its COPY (reading the input is part of its pipeline). pyarrow and fastavro
# write on one thread.
#
# Each run is its own process, so each peak RSS is that run's alone. The numbers are indicative:
# the load average at start and end is printed with them.
#
# Environment:
#   CARGO_TARGET_DIR   default ~/.cache/bq-backup-bench-target (not the test target: its lock)
#   BQB_CACHE_DIR      where scripts/test-services.sh keeps the Python venv (default ~/.cache/bq-backup)
#   BQB_BENCH_DIR      input, outputs and results (default ${TMPDIR:-/tmp}/bq-backup-bench)
#   BQB_BENCH_KEEP=1   keep the input and output files (by default each output is deleted once
#                      measured and the input at the end; results.jsonl and results.md stay)
#   BQB_BENCH_THREADS  thread counts for bq-backup and DuckDB (default "1 2")
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
# The input (675 MB at 10M rows) and any output a failed run left behind; the results stay.
cleanup() {
  [[ ${BQB_BENCH_KEEP:-0} == 1 ]] && return
  rm -f "$input" "$work"/bq-backup.* "$work"/duckdb.* "$work"/pyarrow.* "$work"/fastavro.*
}
trap cleanup EXIT
: > "$results"
load_start=$(uptime)
log "load at start: $load_start"

read -r -a thread_counts <<< "${BQB_BENCH_THREADS:-1 2}"

# run LABEL OUTPUT COMMAND...: one measured process; its JSON line goes to $results. OUTPUT and
# OUTPUT.N (bq-backup with several threads writes one file per thread) are deleted afterwards.
run() {
  local label=$1 out=$2; shift 2
  log "$label"
  "$@" | tee -a "$results" >&2
  [[ ${BQB_BENCH_KEEP:-0} == 1 ]] || rm -f "$out" "$out".[0-9]*
}

log "writing the $rows-row input table to $input (uncompressed PARQUET)"
"$bench" --bench --rows "$rows" --write-input "$input" > "$work/input.json"
cat "$work/input.json" >&2

for format in avro csv parquet json; do
  out=$work/bq-backup.$format
  for threads in "${thread_counts[@]}"; do
    run "bq-backup $format, $threads thread(s)" "$out" \
      "$bench" --bench --rows "$rows" --format "$format" --out "$out" --threads "$threads"
  done
done

cd "$helpers"
for threads in "${thread_counts[@]}"; do
  run "duckdb: reading the input alone, $threads thread(s)" "$work/none" \
    "$python" duckdb_copy.py "$input" read - "$threads"
done
for format in parquet csv json; do
  out=$work/duckdb.$format
  for threads in "${thread_counts[@]}"; do
    run "duckdb $format, $threads thread(s)" "$out" \
      "$python" duckdb_copy.py "$input" "$format" "$out" "$threads"
  done
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
