#!/usr/bin/env bash
# Proves the release binary runs in the container image's runtime, without Docker:
#
#   scripts/check-runtime.sh
#
# 1. builds it as the Dockerfile does (`cargo build --release --locked --bin bq-backup`; honours
#    CARGO_TARGET_DIR, default ./target);
# 2. checks every shared library it needs (ELF NEEDED entries, and `ldd` resolves them all) is in
#    gcr.io/distroless/cc-debian12, and that no symbol needs a glibc newer than bookworm's 2.36 or a
#    libgcc_s newer than bookworm's (gcc 12);
# 3. runs `bq-backup serve` as uid/gid 65532 (distroless `nonroot`) with an otherwise empty
#    environment and PORT on a free port, expects 200 from /healthz, sends SIGTERM and expects exit
#    code 0 within 10 s (Cloud Run's SIGTERM→SIGKILL window).
#
# Prints PASS/FAIL per check and exits non-zero on any FAIL. Not part of scripts/test.sh: release
# builds stay out of CI (about 15 minutes from a cold target dir on 2 cores).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
target_dir=${CARGO_TARGET_DIR:-$repo/target}

# What gcr.io/distroless/cc-debian12 ships, from GoogleContainerTools/distroless:
#   base/config.bzl  BASE_PACKAGES["debian12"] = libc6, libssl3
#   cc/config.bzl    CC_PACKAGES["debian12"]   = libgomp1, libstdc++6, libgcc-s1, gcc-12-base
# We accept glibc (libc6) and libgcc_s only: TLS is rustls, so needing libssl, libstdc++ or libgomp
# would mean a dependency changed underneath us (they do exist in the image, but we would rather
# know).
allowed_libs=(
    libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libutil.so.1
    ld-linux-x86-64.so.2 ld-linux-aarch64.so.1
    libgcc_s.so.1
)
# Debian 12 (bookworm): glibc 2.36, libgcc-s1 built from gcc 12.
max_glibc=2.36
max_libgcc=12.0.0
# Cloud Run sends SIGKILL about 10 s after SIGTERM.
max_stop_secs=10
max_start_secs=10
run_uid=65532

failures=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() {
    printf 'FAIL  %s\n' "$*"
    failures=$((failures + 1))
}
# version_le A B: A <= B in version order.
version_le() { [[ $(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1) == "$1" ]]; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# A child that exited stays a zombie until waited for, and `kill -0` still succeeds on it.
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# --- 1. build ------------------------------------------------------------------------------------
echo "== cargo build --release --locked --bin bq-backup (CARGO_TARGET_DIR=$target_dir)"
t0=$(now)
if CARGO_TARGET_DIR=$target_dir cargo build --release --locked --bin bq-backup; then
    pass "release build ($(elapsed "$t0") s)"
else
    fail "release build"
    exit 1
fi
binary=$target_dir/release/bq-backup
echo "   binary: $binary ($(du -h "$binary" | cut -f1))"

# --- 2. libraries --------------------------------------------------------------------------------
echo "== shared libraries"
mapfile -t needed < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for lib in "${needed[@]}"; do
    if printf '%s\n' "${allowed_libs[@]}" | grep -qxF "$lib"; then
        pass "needs $lib (in distroless/cc-debian12)"
    else
        fail "needs $lib, which distroless/cc-debian12 does not provide (or we do not allow)"
    fi
done
interp=$(readelf -l "$binary" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
case $interp in
/lib64/ld-linux-x86-64.so.2 | /lib/ld-linux-aarch64.so.1) pass "interpreter $interp" ;;
*) fail "unexpected program interpreter '${interp:-none}'" ;;
esac
if ldd "$binary" | grep -q 'not found'; then
    fail "ldd cannot resolve: $(ldd "$binary" | grep 'not found' | tr -s ' \t' ' ')"
else
    pass "ldd resolves every library"
fi
versions=$(objdump -T "$binary")
glibc=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$versions" | sed 's/GLIBC_//' | sort -uV | tail -n1)
if version_le "$glibc" "$max_glibc"; then
    pass "newest glibc symbol version GLIBC_$glibc <= $max_glibc (bookworm)"
else
    fail "needs GLIBC_$glibc, bookworm has $max_glibc (build on bookworm, as the Dockerfile does)"
fi
libgcc=$(grep -o 'GCC_[0-9][0-9.]*' <<<"$versions" | sed 's/GCC_//' | sort -uV | tail -n1)
if [[ -z $libgcc ]] || version_le "$libgcc" "$max_libgcc"; then
    pass "newest libgcc_s symbol version GCC_${libgcc:-none} <= GCC_$max_libgcc (bookworm)"
else
    fail "needs GCC_$libgcc, bookworm's libgcc_s has up to GCC_$max_libgcc"
fi

# --- 3. run as non-root --------------------------------------------------------------------------
echo "== serve as uid $run_uid, empty environment"
work=$(mktemp -d)
chmod 755 "$work"
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && alive "$server_pid"; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# The target dir may sit where uid 65532 cannot read (/root/...): run a copy, as the image does.
install -m 755 "$binary" "$work/bq-backup"
mkdir -m 1777 "$work/tmp"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

run_as=()
if [[ $(id -u) == 0 ]]; then
    # util-linux setpriv (in every Debian): drop to 65532 without needing a passwd entry.
    run_as=(setpriv --reuid="$run_uid" --regid="$run_uid" --clear-groups --)
elif [[ $(id -u) != "$run_uid" ]]; then
    echo "   (not root: running as uid $(id -u), which is non-root too)"
    run_uid=$(id -u)
fi
t0=$(now)
"${run_as[@]}" env -i \
    HOME=/nonexistent \
    PORT="$port" \
    BQB_HOST=127.0.0.1 \
    BQB_LOG_FORMAT=json \
    BQB_STATE_URI="file://$work/tmp/state" \
    BQB_GOOGLE_ANONYMOUS=true \
    BQB_BIGQUERY_ENDPOINT=http://127.0.0.1:1 \
    BQB_BIGQUERY_STORAGE_ENDPOINT=http://127.0.0.1:1 \
    "$work/bq-backup" serve >"$work/server.log" 2>&1 &
server_pid=$!

status=000
deadline=$(($(date +%s) + max_start_secs))
while (($(date +%s) < deadline)) && alive "$server_pid"; do
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/healthz" || true)
    [[ $status == 200 ]] && break
    sleep 0.1
done
if [[ $status == 200 ]]; then
    pass "GET /healthz on PORT=$port answered 200 ($(elapsed "$t0") s after start)"
else
    fail "GET /healthz on PORT=$port: status $status after $(elapsed "$t0") s"
fi
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo "?")
if [[ $uid == "$run_uid" && $uid != 0 ]]; then
    pass "the server runs as uid $uid"
else
    fail "the server runs as uid $uid, expected $run_uid"
fi
# Informational: readiness needs BigQuery, which is unreachable here on purpose (503 expected).
ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/readyz" || true)
echo "   GET /readyz: $ready (BigQuery endpoint is unreachable on purpose)"

t0=$(now)
kill -TERM "$server_pid"
code=
deadline=$(($(date +%s) + max_stop_secs))
while (($(date +%s) < deadline)); do
    if ! alive "$server_pid"; then
        code=0
        wait "$server_pid" || code=$?
        break
    fi
    sleep 0.05
done
if [[ -z $code ]]; then
    fail "still running $max_stop_secs s after SIGTERM"
elif [[ $code == 0 ]]; then
    pass "SIGTERM: exited 0 after $(elapsed "$t0") s"
else
    fail "SIGTERM: exit code $code after $(elapsed "$t0") s"
fi
server_pid=

if ((failures > 0)); then
    echo "== server log"
    cat "$work/server.log"
    echo "== $failures check(s) FAILED"
    exit 1
fi
echo "== all checks passed"
