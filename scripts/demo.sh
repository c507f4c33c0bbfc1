#!/usr/bin/env bash
# The README's first command: a real backup + restore on the embedded default (the local BigQuery
# emulator and a file:// store), from nothing.
#
#   1. installs (pinned, cached) and starts the test services on 127.0.0.1
#   2. creates a sample dataset: several tables, every type, a partitioned + clustered table, a view
#   3. builds and starts `bq-backup serve`
#   4. backs the dataset up to file://$repo/demo-backups as Parquet and lists the backup
#   5. restores it into restored_<dataset>
#   6. prints source vs restored row counts and a content checksum per table
#   7. stops everything it started, by PID
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bq-backup-target}
# Its own state dir and ports: the demo never touches services a developer already runs.
export BQB_TEST_SERVICES_DIR=$repo/.demo-services
export BQB_TEST_BQ_REST_PORT=${DEMO_BQ_REST_PORT:-19150} BQB_TEST_BQ_GRPC_PORT=${DEMO_BQ_GRPC_PORT:-19160}
export BQB_TEST_GCS_PORT=${DEMO_GCS_PORT:-19170} BQB_TEST_GCS_SHIM_PORT=${DEMO_GCS_SHIM_PORT:-19175}
export BQB_TEST_S3_PORT=${DEMO_S3_PORT:-19180} BQB_TEST_AZ_PORT=${DEMO_AZ_PORT:-19190}
port=${DEMO_PORT:-18080}
project=test-project
dataset=demo_shop
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

server_pid=""
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
    echo "bq-backup stopped (pid $server_pid)"
  fi
  scripts/test-services.sh stop || true
}
trap cleanup EXIT

say "starting the local services (first run installs them: a few minutes)"
scripts/test-services.sh stop >/dev/null 2>&1 || true
rm -rf "$BQB_TEST_SERVICES_DIR"   # the demo's own emulator state: every run starts clean
scripts/test-services.sh start
eval "$(scripts/test-services.sh env)"
py=$BQB_TEST_VENV/bin/python
rest=$BQB_BIGQUERY_ENDPOINT

say "building bq-backup (first run: several minutes)"
cargo build --locked --quiet --bin bq-backup
bin=$CARGO_TARGET_DIR/debug/bq-backup

say "creating $project.$dataset: all_types (every type), events (partitioned + clustered), customers, view big_spenders"
"$py" scripts/demo/sample.py create "$rest" "$project" "$dataset"

# The backup repository: an absolute directory, since `serve` opens file:// only under a directory
# BQB_ALLOWED_STORAGE lists (and never a relative one: it would depend on the server's working dir).
backups="file://$repo/demo-backups"

say "starting bq-backup serve on 127.0.0.1:$port (storage allowed: $backups)"
PORT=$port BQB_HOST=127.0.0.1 BQB_PROJECT_ID=$project BQB_LOG_FORMAT=json BQB_LOG_LEVEL=warn \
  BQB_STATE_URI="file://$BQB_TEST_SERVICES_DIR/state" BQB_ALLOWED_STORAGE="$backups" \
  "$bin" serve > "$BQB_TEST_SERVICES_DIR/bq-backup.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/readyz"; echo

say "backup: POST /api/v1/backup → $backups (PARQUET), a job followed by scripts/action.sh"
cat > "$BQB_TEST_SERVICES_DIR/backup-request.json" <<JSON
{"bigQuery": {"projectId": "$project", "tablesToBackup": [{"datasetName": "$dataset"}]},
 "backupStorage": {"uri": "$backups", "exportOptions": {"format": "PARQUET"}},
 "reason": "demo"}
JSON
ACTION_POLL_SECS=0.5 scripts/action.sh backup "$BQB_TEST_SERVICES_DIR/backup-request.json" "http://127.0.0.1:$port" \
  > "$BQB_TEST_SERVICES_DIR/backup-job.json"
"$py" -m json.tool "$BQB_TEST_SERVICES_DIR/backup-job.json"
backup_id=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["backupId"])' "$BQB_TEST_SERVICES_DIR/backup-job.json")

say "the catalog: bq-backup list / show (read from the manifests)"
"$bin" list --uri "$backups" --output table
echo
"$bin" show "$backup_id" --uri "$backups" --output table

say "restore: POST /api/v1/restore → $project.restored_$dataset (a job too)"
cat > "$BQB_TEST_SERVICES_DIR/restore-request.json" <<JSON
{"bigQuery": {"projectId": "$project", "datasetsToRestore": ["$dataset"]},
 "restoreStorage": {"uri": "$backups"}, "backupId": "$backup_id"}
JSON
ACTION_POLL_SECS=0.5 scripts/action.sh restore "$BQB_TEST_SERVICES_DIR/restore-request.json" "http://127.0.0.1:$port" \
  > "$BQB_TEST_SERVICES_DIR/restore.json"
"$py" -m json.tool "$BQB_TEST_SERVICES_DIR/restore.json"

say "source vs restored"
printf '%-14s %10s %10s  %-16s %-16s %s\n' table source restored "source sum" "restored sum" ""
status=0
for table in all_types events customers; do
  read -r src_rows src_sum < <("$py" scripts/demo/sample.py checksum "$rest" "$project" "$dataset" "$table")
  read -r dst_rows dst_sum < <("$py" scripts/demo/sample.py checksum "$rest" "$project" "restored_$dataset" "$table")
  verdict=identical; [[ $src_rows == "$dst_rows" && $src_sum == "$dst_sum" ]] || { verdict=DIFFERENT; status=1; }
  printf '%-14s %10s %10s  %-16s %-16s %s\n' "$table" "$src_rows" "$dst_rows" "$src_sum" "$dst_sum" "$verdict"
done
# bqemulator's tables.get returns no SQL for views (real BigQuery does): the backup read it from
# the dataset's INFORMATION_SCHEMA.VIEWS, so the view is restored, reading the restored table.
"$py" - "$BQB_TEST_SERVICES_DIR/restore.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
for v in r["views"]:
    print(f"view restored: {v}")
for w in r["warnings"]:
    print(f"warning: {w['field']}: {w['message']}")
PY
exit $status
