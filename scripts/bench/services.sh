# Sourced by the benchmark scripts (bench-roundtrip.sh, bench-shards.sh), from the repository's
# root: their own test services (own ports from BQB_TEST_BENCH_PORT_BASE, default 19300, and their
# own state dir), started fresh and stopped by PID on exit with the work directory `$work`.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-bench-target}
export BQB_TEST_SERVICES_DIR=$PWD/.bench-services
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the clone
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
  # A binary built elsewhere (another commit, to compare): used as it is.
  binary=$BQB_TEST_BENCH_BINARY
else
  echo "== building the release binary (profile bench)" >&2
  # The bench profile (release without LTO, quick to build on 2 cores) writes to release/.
  cargo build --locked --profile bench --bin bq-backup
  binary=$CARGO_TARGET_DIR/release/bq-backup
fi
work=$(mktemp -d)
