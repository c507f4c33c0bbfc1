#!/usr/bin/env bash
# Triggers for a deployed bq-backup: a Cloud Scheduler HTTP job (nightly backup) and a Pub/Sub
# topic whose messages are backup requests, pushed to the service, with a dead-letter topic.
# Both authenticate with Google-signed OIDC ID tokens whose audience is the service URL.
#
#   PROJECT_ID=my-project REGION=europe-west1 deploy/scheduler/setup.sh
#   DRY_RUN=1 PROJECT_ID=my-project SERVICE_URL=https://… deploy/scheduler/setup.sh   # print only
#
# Settings (environment):
#   PROJECT_ID     (required) project of the service, the scheduler job and the topics
#   REGION         region of the Cloud Run service and the scheduler job (europe-west1)
#   PLATFORM       cloudrun (grants roles/run.invoker on the service) or gke (the service checks
#                  tokens itself: list the two accounts below in BQB_AUTH_ALLOWED_EMAILS)
#   SERVICE        Cloud Run service name (bq-backup)
#   SERVICE_URL    the URL callers use; read from the Cloud Run service when unset (required
#                  for gke: the HTTPS address of its Ingress/Gateway)
#   SCHEDULE       cron expression of the nightly backup ("0 2 * * *"), TIME_ZONE (Etc/UTC)
#   REQUEST_FILE   the backup request the scheduler sends (deploy/scheduler/backup-request.json)
#   DRY_RUN=1      print the gcloud commands instead of running them
#
# Re-running is safe: what exists is updated, not created twice. The caller needs, on this
# project: roles/cloudscheduler.admin, roles/pubsub.admin, roles/iam.serviceAccountAdmin (or
# roles/iam.serviceAccountUser on the two accounts if they exist), and roles/run.admin on the
# service for PLATFORM=cloudrun.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${PROJECT_ID:?set PROJECT_ID}"
REGION=${REGION:-europe-west1}
PLATFORM=${PLATFORM:-cloudrun}
SERVICE=${SERVICE:-bq-backup}
SCHEDULE=${SCHEDULE:-0 2 * * *}
TIME_ZONE=${TIME_ZONE:-Etc/UTC}
REQUEST_FILE=${REQUEST_FILE:-$here/backup-request.json}
DRY_RUN=${DRY_RUN:-}

scheduler_sa=bq-backup-scheduler@$PROJECT_ID.iam.gserviceaccount.com
pubsub_sa=bq-backup-pubsub@$PROJECT_ID.iam.gserviceaccount.com
topic=bq-backup-requests
dead_letter_topic=bq-backup-requests-dead-letter
subscription=bq-backup-requests-push
job=bq-backup-nightly

run() {
    if [[ -n $DRY_RUN ]]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}
# exists CMD…: whether a `describe` succeeds (never in a dry run: print the create commands).
exists() { [[ -z $DRY_RUN ]] && "$@" >/dev/null 2>&1; }

case $PLATFORM in
cloudrun | gke) ;;
*) echo "PLATFORM must be cloudrun or gke, not '$PLATFORM'" >&2 && exit 2 ;;
esac
[[ -r $REQUEST_FILE ]] || { echo "cannot read REQUEST_FILE $REQUEST_FILE" >&2 && exit 2; }
python3 -m json.tool "$REQUEST_FILE" >/dev/null || { echo "$REQUEST_FILE is not JSON" >&2 && exit 2; }

if [[ -z ${SERVICE_URL:-} ]]; then
    if [[ $PLATFORM == gke || -n $DRY_RUN ]]; then
        echo "set SERVICE_URL (the HTTPS address callers use)" >&2
        exit 2
    fi
    SERVICE_URL=$(gcloud run services describe "$SERVICE" --project "$PROJECT_ID" \
        --region "$REGION" --format 'value(status.url)')
fi
SERVICE_URL=${SERVICE_URL%/}
if [[ -n $DRY_RUN ]]; then
    project_number=PROJECT_NUMBER
else
    project_number=$(gcloud projects describe "$PROJECT_ID" --format 'value(projectNumber)')
fi
pubsub_agent=service-$project_number@gcp-sa-pubsub.iam.gserviceaccount.com
echo "== service URL (OIDC audience): $SERVICE_URL" >&2

echo "== service accounts the triggers call as" >&2
for sa in "$scheduler_sa" "$pubsub_sa"; do
    if ! exists gcloud iam service-accounts describe "$sa" --project "$PROJECT_ID"; then
        run gcloud iam service-accounts create "${sa%%@*}" --project "$PROJECT_ID" \
            --display-name "bq-backup trigger (${sa%%@*})"
    fi
done

if [[ $PLATFORM == cloudrun ]]; then
    echo "== roles/run.invoker on $SERVICE for both" >&2
    for sa in "$scheduler_sa" "$pubsub_sa"; do
        run gcloud run services add-iam-policy-binding "$SERVICE" --project "$PROJECT_ID" \
            --region "$REGION" --member "serviceAccount:$sa" --role roles/run.invoker
    done
else
    echo "== GKE: the service must list $scheduler_sa,$pubsub_sa in BQB_AUTH_ALLOWED_EMAILS" >&2
fi

echo "== Cloud Scheduler job $job ($SCHEDULE, $TIME_ZONE)" >&2
verb=create
exists gcloud scheduler jobs describe "$job" --project "$PROJECT_ID" --location "$REGION" && verb=update
headers_flag=--headers
[[ $verb == update ]] && headers_flag=--update-headers
# The service answers 202 with a job id at once; a retry only follows a refusal (429 when its
# queue is full, 5xx), so a backup is not started twice.
run gcloud scheduler jobs "$verb" http "$job" --project "$PROJECT_ID" --location "$REGION" \
    --schedule "$SCHEDULE" --time-zone "$TIME_ZONE" \
    --uri "$SERVICE_URL/api/v1/backup" --http-method POST \
    "$headers_flag" Content-Type=application/json \
    --message-body-from-file "$REQUEST_FILE" \
    --oidc-service-account-email "$scheduler_sa" --oidc-token-audience "$SERVICE_URL" \
    --attempt-deadline 180s --max-retry-attempts 3 --min-backoff 60s --max-backoff 600s

echo "== Pub/Sub: $topic → $SERVICE_URL/api/v1/backup, dead letters to $dead_letter_topic" >&2
for t in "$topic" "$dead_letter_topic"; do
    if ! exists gcloud pubsub topics describe "$t" --project "$PROJECT_ID"; then
        run gcloud pubsub topics create "$t" --project "$PROJECT_ID"
    fi
done
# A topic keeps nothing without a subscription: this one holds dead letters for inspection.
if ! exists gcloud pubsub subscriptions describe "$dead_letter_topic-hold" --project "$PROJECT_ID"; then
    run gcloud pubsub subscriptions create "$dead_letter_topic-hold" --project "$PROJECT_ID" \
        --topic "$dead_letter_topic" --message-retention-duration 7d
fi
# POST /api/v1/backup takes the push envelope as it comes (message.data = a backup request) and
# answers 202 at once; a refused message is retried, then dead-lettered.
push_flags=(
    --push-endpoint "$SERVICE_URL/api/v1/backup"
    --push-auth-service-account "$pubsub_sa"
    --push-auth-token-audience "$SERVICE_URL"
    --ack-deadline 60
    --dead-letter-topic "$dead_letter_topic"
    --max-delivery-attempts 5
    --min-retry-delay 30s --max-retry-delay 600s
)
if exists gcloud pubsub subscriptions describe "$subscription" --project "$PROJECT_ID"; then
    run gcloud pubsub subscriptions update "$subscription" --project "$PROJECT_ID" "${push_flags[@]}"
else
    run gcloud pubsub subscriptions create "$subscription" --project "$PROJECT_ID" \
        --topic "$topic" "${push_flags[@]}"
fi

echo "== Pub/Sub service agent: OIDC tokens for $pubsub_sa, dead-lettering" >&2
run gcloud iam service-accounts add-iam-policy-binding "$pubsub_sa" --project "$PROJECT_ID" \
    --member "serviceAccount:$pubsub_agent" --role roles/iam.serviceAccountTokenCreator
run gcloud pubsub topics add-iam-policy-binding "$dead_letter_topic" --project "$PROJECT_ID" \
    --member "serviceAccount:$pubsub_agent" --role roles/pubsub.publisher
run gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project "$PROJECT_ID" \
    --member "serviceAccount:$pubsub_agent" --role roles/pubsub.subscriber

cat >&2 <<EOF
== done. Try them:
   gcloud scheduler jobs run $job --project $PROJECT_ID --location $REGION
   gcloud pubsub topics publish $topic --project $PROJECT_ID --message "\$(cat $REQUEST_FILE)"
EOF
