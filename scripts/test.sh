#!/usr/bin/env bash
# The test command (README quick start, docs/testing.md, CI): installs what is missing (pinned),
# starts the real test services on 127.0.0.1, checks formatting and lints, runs every test (unit +
# integration), and stops the services by PID whatever happens. Exits non-zero on any failure or if a service did not start.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -- storage      extra arguments go to `cargo test` (here: a name filter)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# Outside the clone so that fresh CI clones reuse compiled dependencies.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

[[ ${1:-} == "--" ]] && shift
services=scripts/test-services.sh

# Every temporary file or directory a test makes (file:// repositories, scratch dirs) goes under
# one directory of this run, removed at the end whether the tests passed or not.
test_tmp=$(mktemp -d "${TMPDIR:-/tmp}/bqb-test-run.XXXXXX")
export TMPDIR=$test_tmp

cleanup() {
  "$services" stop || true
  rm -rf "$test_tmp"
}
trap cleanup EXIT

echo "== starting test services (bqemulator, fake-gcs-server + XML shim, moto, azurite)"
"$services" start
eval "$("$services" env)"

echo "== fault proxy self-test (the harness the fault tests rely on)"
python3 scripts/fault_proxy_selftest.py

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets "$@"
