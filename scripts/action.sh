#!/usr/bin/env bash
# Start a backup or restore on a running bq-backup service and follow the job to its end.
#
#   scripts/action.sh backup  request.json [URL]      URL defaults to http://127.0.0.1:8080
#   scripts/action.sh restore request.json https://bq-backup-….a.run.app
#
# Posts FILE to URL/api/v1/{backup|restore}; on 202 polls GET URL/api/v1/jobs/{jobId} until the
# job is SUCCEEDED, FAILED or CANCELLED. Progress goes to stderr, the final JSON (the job, or the
# answer itself when the service answered at once: a dry run or `"wait": true`) to stdout.
# Exit code: 0 when the job succeeded, 1 when it failed or was cancelled or the service answered
# with an HTTP error (its JSON error is printed), 2 for bad usage.
#
# Authentication: `Authorization: Bearer $ACTION_TOKEN` when ACTION_TOKEN is set (e.g. the
# service's AUTH_MODE=bearer secret); otherwise, for an https URL with gcloud on PATH, an ID token
# from `gcloud auth print-identity-token` (Cloud Run with IAM, AUTH_MODE=google-oidc), fetched
# again every 45 minutes. Also read: ACTION_POLL_SECS (2), the pause between polls.
# Needs curl and python3 only.
set -euo pipefail

usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
(($# >= 2 && $# <= 3)) || usage
kind=$1
file=$2
url=${3:-http://127.0.0.1:8080}
url=${url%/}
poll_secs=${ACTION_POLL_SECS:-2}
case $kind in
backup | restore) ;;
*) usage ;;
esac
[[ -r $file ]] || {
    echo "action.sh: cannot read $file" >&2
    exit 2
}
[[ $poll_secs =~ ^[0-9]+([.][0-9]+)?$ ]] || {
    echo "action.sh: ACTION_POLL_SECS must be a number of seconds" >&2
    exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- authentication ------------------------------------------------------------------------------
token=
token_at=0
token_mode=none
if [[ -n ${ACTION_TOKEN:-} ]]; then
    token_mode=static
    token=$ACTION_TOKEN
elif [[ $url == https://* ]] && command -v gcloud >/dev/null 2>&1; then
    token_mode=gcloud
fi
# Google ID tokens live one hour: fetch a new one well before that on long jobs.
refresh_token() {
    if [[ $token_mode == gcloud ]] && (($(date +%s) - token_at > 2700)); then
        token=$(gcloud auth print-identity-token) || {
            echo "action.sh: gcloud auth print-identity-token failed" >&2
            exit 1
        }
        token_at=$(date +%s)
    fi
}

# http METHOD URL [BODY_FILE]: prints the status code; the body lands in $work/body.
http() {
    refresh_token
    local args=(-sS -o "$work/body" -w '%{http_code}' -X "$1" --max-time 120
        -H 'Accept: application/json')
    [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n ${3:-} ]] && args+=(-H 'Content-Type: application/json' --data-binary "@$3")
    rm -f "$work/body"
    local code
    # -w prints 000 when nothing came back; curl's own message goes to stderr.
    code=$(curl "${args[@]}" "$2") || true
    echo "${code:-000}"
}

# json EXPR: evaluates a Python expression over the body (`j`), prints the result ('' for None).
json() {
    python3 - "$work/body" "$1" <<'EOF'
import json, sys
try:
    with open(sys.argv[1], "rb") as f:
        j = json.load(f)
    v = eval(sys.argv[2], {"j": j})
except Exception:
    v = None
print("" if v is None else v)
EOF
}

# Prints the body (pretty when it is JSON) to stdout or stderr.
show_body() {
    [[ -e $work/body ]] || return 0
    python3 -m json.tool "$work/body" 2>/dev/null || cat "$work/body"
    echo
}

fail_http() {
    local status=$1 what=$2
    if [[ $status == 000 ]]; then
        echo "action.sh: $what: no answer from $url" >&2
    else
        echo "action.sh: $what: HTTP $status $(json 'j.get("errorCode","")') $(json 'j.get("message","")')" >&2
        show_body >&2
    fi
    exit 1
}

# --- start ---------------------------------------------------------------------------------------
status=$(http POST "$url/api/v1/$kind" "$file")
case $status in
202) ;;
2??)
    # Answered at once (a dry run, or `"wait": true`): nothing to follow.
    show_body
    state=$(json 'j.get("state") or j.get("status")')
    [[ $state == FAILED || $state == CANCELLED ]] && exit 1
    exit 0
    ;;
*) fail_http "$status" "POST /api/v1/$kind" ;;
esac
job_id=$(json 'j.get("jobId")')
self=$(json '(j.get("links") or {}).get("self")')
[[ -n $job_id ]] || {
    echo "action.sh: the 202 answer names no jobId:" >&2
    show_body >&2
    exit 1
}
[[ -n $self ]] || self=/api/v1/jobs/$job_id
backup_id=$(json 'j.get("backupId")')
echo "action.sh: $kind job $job_id started${backup_id:+ (backup $backup_id)}" >&2
job_url=$url$self
[[ $self == http://* || $self == https://* ]] && job_url=$self

# --- follow --------------------------------------------------------------------------------------
start=$(date +%s)
last=
trap 'echo; echo "action.sh: stopped following; job $job_id goes on (cancel: DELETE $job_url)" >&2; exit 130' INT
# A GET may land on an instance that is starting or stopping: a few failed polls in a row are
# tolerated before giving up.
max_poll_failures=5
poll_failures=0
while :; do
    status=$(http GET "$job_url")
    if [[ $status == 000 || $status == 429 || $status == 5?? ]] &&
        ((++poll_failures < max_poll_failures)); then
        echo "action.sh: GET $self: HTTP $status, trying again ($poll_failures/$max_poll_failures)" >&2
        sleep "$poll_secs"
        continue
    fi
    [[ $status == 200 ]] || fail_http "$status" "GET $self"
    poll_failures=0
    state=$(json 'j.get("state")')
    progress=$(json '", ".join(f"{n} {s}" for s, n in sorted(__import__("collections").Counter(t.get("state", "?") for t in (j.get("tables") or [])).items()))')
    line="$state${progress:+ (tables: $progress)}"
    if [[ $line != "$last" ]]; then
        echo "action.sh: [$(($(date +%s) - start))s] $line" >&2
        last=$line
    fi
    case $state in
    SUCCEEDED)
        show_body
        exit 0
        ;;
    FAILED | CANCELLED)
        show_body
        echo "action.sh: job $job_id $state: $(json '(j.get("error") or {}).get("message", "")')" >&2
        exit 1
        ;;
    PENDING | RUNNING) ;;
    *)
        echo "action.sh: unexpected job state '$state'" >&2
        show_body >&2
        exit 1
        ;;
    esac
    sleep "$poll_secs"
done
