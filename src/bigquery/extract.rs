//! Server-side jobs for the EXTRACT backup method: a temporary dataset, table snapshots at the
//! backup's snapshot time (copy jobs with `operationType: SNAPSHOT` from `table@millis`), and
//! extract jobs writing a snapshot's rows to gs://.
//!
//! Every job gets an id chosen here, so that inserting it again after a lost answer creates
//! nothing twice (BigQuery answers "duplicate" and the job is read by its id). A job that ends
//! with a transient error (rate limits, backend errors) is run again under a new id, a bounded
//! number of times; extract and snapshot jobs may run twice without harm (the same files are
//! written again, a failed snapshot created nothing). A cancelled caller cancels its job.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use google_cloud_gax::paginator::ItemPaginator;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::client::BigQuery;
use super::error::BigQueryError;
use super::retry;
use crate::domain::{DatasetRef, TableRef};
use crate::error::{Error, ErrorKind};

/// How often a running job is polled.
const JOB_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A snapshot or extract job that has not finished after this long is reported as failed.
const JOB_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Runs of one job that ended with a transient error (the first included).
const JOB_ATTEMPTS: u32 = 5;
/// `errorResult.reason`s that say "try again later", not "this job is wrong".
const TRANSIENT_JOB_REASONS: [&str; 4] = [
    "rateLimitExceeded",
    "backendError",
    "internalError",
    "jobBackendError",
];

/// What a finished extract job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOutcome {
    pub job_id: String,
    /// `statistics.extract.destinationUriFileCounts`, one count per destination URI, when
    /// BigQuery reports them (emulators may not).
    pub file_counts: Vec<u64>,
}

/// One extract: the source table, where to, and how.
#[derive(Debug, Clone)]
pub struct ExtractJob<'a> {
    /// The project that runs (and is billed for) the job.
    pub project: &'a str,
    pub location: Option<&'a str>,
    pub source: &'a TableRef,
    /// gs:// URIs, a single file or a `*` wildcard (see `backup::extract`).
    pub destination_uris: Vec<String>,
    /// BigQuery's `destinationFormat` (`PARQUET`).
    pub format: &'a str,
    /// BigQuery's `compression` (`SNAPPY`, `GZIP`, `ZSTD`, `NONE`).
    pub compression: &'a str,
}

impl BigQuery {
    /// Creates a dataset for temporary tables: tables in it expire after `table_expiration` on
    /// their own (a safety net for a process that dies before it removes them), and `labels`
    /// make it recognisable. An existing dataset of that name is an error (names are unique
    /// per backup attempt).
    pub async fn create_temporary_dataset(
        &self,
        dataset: &DatasetRef,
        location: &str,
        table_expiration: Duration,
        labels: &[(&str, &str)],
        description: &str,
    ) -> Result<(), Error> {
        let mut resource = json!({
            "datasetReference": { "projectId": dataset.project, "datasetId": dataset.dataset },
            "defaultTableExpirationMs": table_expiration.as_millis().to_string(),
            "description": description,
            "labels": labels.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        if !location.is_empty() {
            resource["location"] = json!(location);
        }
        let resource = serde_json::from_value(resource)
            .map_err(|e| Error::internal(format!("dataset resource: {e}")))?;
        match self.create_dataset(dataset, resource).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::conflict(format!(
                "the temporary dataset {dataset} exists already"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The datasets of `project` whose id starts with `prefix` and that carry `label` (key,
    /// value), hidden ones included, with all their labels.
    pub async fn datasets_labelled(
        &self,
        project: &str,
        prefix: &str,
        label: (&str, &str),
    ) -> Result<Vec<(DatasetRef, HashMap<String, String>)>, Error> {
        let mut pages = self
            .inner
            .datasets
            .list_datasets()
            .set_project_id(project)
            .set_all(true)
            // Filtered by BigQuery (emulators may ignore it: checked again below).
            .set_filter(format!("labels.{}:{}", label.0, label.1))
            .by_item();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item =
                item.map_err(|e| BigQueryError::api(format!("datasets.list({project})"), e))?;
            if let Some(reference) = item.dataset_reference
                && reference.dataset_id.starts_with(prefix)
                && item.labels.get(label.0).map(String::as_str) == Some(label.1)
            {
                out.push((
                    DatasetRef::new(reference.project_id, reference.dataset_id),
                    item.labels,
                ));
            }
        }
        Ok(out)
    }

    /// Deletes a dataset and every table in it; one that is already gone is not an error.
    pub async fn delete_dataset_and_contents(&self, dataset: &DatasetRef) -> Result<(), Error> {
        self.delete_dataset(dataset, true)
            .await
            .map_err(Error::from)
    }

    /// Snapshots `source` as it was at `at` into `destination` (a copy job with
    /// `operationType: SNAPSHOT` from the time-travel decorator `table@millis`), which expires
    /// at `expires`. Free on BigQuery: a snapshot stores only what later changes in the source.
    pub async fn snapshot_table(
        &self,
        source: &TableRef,
        at: DateTime<Utc>,
        destination: &TableRef,
        expires: DateTime<Utc>,
        location: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let configuration = json!({
            "copy": {
                "sourceTable": {
                    "projectId": source.project,
                    "datasetId": source.dataset,
                    "tableId": format!("{}@{}", source.table, at.timestamp_millis()),
                },
                "destinationTable": {
                    "projectId": destination.project,
                    "datasetId": destination.dataset,
                    "tableId": destination.table,
                },
                "operationType": "SNAPSHOT",
                "destinationExpirationTime": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "writeDisposition": "WRITE_EMPTY",
            }
        });
        let what = format!("snapshot of {source} at {}", at.to_rfc3339());
        self.run_job(&destination.project, location, configuration, &what, cancel)
            .await
            .map(|_| ())
    }

    /// Runs an extract job and waits for it.
    pub async fn extract_table(
        &self,
        job: &ExtractJob<'_>,
        cancel: &CancellationToken,
    ) -> Result<ExtractOutcome, Error> {
        let mut extract = json!({
            "sourceTable": {
                "projectId": job.source.project,
                "datasetId": job.source.dataset,
                "tableId": job.source.table,
            },
            "destinationUris": job.destination_uris,
            "destinationFormat": job.format,
            "compression": job.compression,
        });
        if job.format == "AVRO" {
            extract["useAvroLogicalTypes"] = json!(true);
        }
        let what = format!("extract of {}", job.source);
        let done = self
            .run_job(
                job.project,
                job.location,
                json!({ "extract": extract }),
                &what,
                cancel,
            )
            .await?;
        let file_counts = done["statistics"]["extract"]["destinationUriFileCounts"]
            .as_array()
            .map(|counts| counts.iter().filter_map(json_u64).collect())
            .unwrap_or_default();
        Ok(ExtractOutcome {
            job_id: done["jobReference"]["jobId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            file_counts,
        })
    }

    /// Inserts a job and waits until it is DONE; a job that failed for a transient reason is run
    /// again under a new id (at most [`JOB_ATTEMPTS`] runs). Returns the finished job resource.
    pub(super) async fn run_job(
        &self,
        project: &str,
        location: Option<&str>,
        configuration: Value,
        what: &str,
        cancel: &CancellationToken,
    ) -> Result<Value, Error> {
        let mut run = 0;
        loop {
            run += 1;
            let job_id = format!("bqb_{}", uuid::Uuid::new_v4().simple());
            let started = self
                .insert_job(project, location, &job_id, &configuration)
                .await?;
            let done = self
                .wait_for_job(project, location, &job_id, started, cancel)
                .await?;
            let Some(error) = done["status"].get("errorResult").filter(|e| !e.is_null()) else {
                return Ok(done);
            };
            let reason = error["reason"].as_str().unwrap_or("error");
            let message = error["message"].as_str().unwrap_or("the job failed");
            if run < JOB_ATTEMPTS && TRANSIENT_JOB_REASONS.contains(&reason) {
                tracing::warn!(
                    job_id,
                    attempt = run,
                    reason,
                    "a BigQuery job failed for a transient reason; running it again"
                );
                tokio::time::sleep(retry::delay(run)).await;
                continue;
            }
            let kind = match reason {
                "accessDenied" => ErrorKind::PermissionDenied,
                "notFound" => ErrorKind::NotFound,
                _ => ErrorKind::Upstream,
            };
            return Err(Error::new(
                kind,
                format!("BigQuery job {job_id} ({what}) failed ({reason}): {message}"),
            ));
        }
    }

    /// jobs.insert with our own job id, as plain REST JSON (the typed model writes enums such as
    /// `operationType` as numbers, which BigQuery's JSON API does not take). Transient failures
    /// are tried again with the same id; a job that an attempt created while its answer was
    /// lost is then found by that id.
    async fn insert_job(
        &self,
        project: &str,
        location: Option<&str>,
        job_id: &str,
        configuration: &Value,
    ) -> Result<Value, Error> {
        let mut reference = json!({ "projectId": project, "jobId": job_id });
        if let Some(location) = location {
            reference["location"] = json!(location);
        }
        let job = json!({ "configuration": configuration, "jobReference": reference });
        let url = format!(
            "{}/bigquery/v2/projects/{project}/jobs",
            self.inner.config.endpoint
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .inner
                .http
                .post(&url)
                .headers(self.auth_headers().await?)
                .json(&job)
                .send()
                .await;
            let failure = match sent {
                Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
                    Ok(created) => return Ok(created),
                    Err(e) => e.to_string(),
                },
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    let error = super::rest::status_error(
                        &format!("BigQuery jobs.insert({job_id})"),
                        status,
                        &body,
                    );
                    if status == 409 && attempt > 1 {
                        // "Already exists": an earlier attempt created it.
                        return self.job_by_id(project, location, job_id).await;
                    }
                    if !retry::is_transient_status(status) || attempt >= retry::MAX_ATTEMPTS {
                        return Err(error);
                    }
                    error.to_string()
                }
                Err(e) if attempt < retry::MAX_ATTEMPTS && !e.is_builder() => {
                    // The request may have reached BigQuery and only its answer been lost (a
                    // reset, a timeout): then the job under our id is the one. Asking costs one
                    // GET and does not rest on the server refusing a second insert of that id.
                    if let Ok(created) = self.job_by_id(project, location, job_id).await {
                        tracing::warn!(job_id, error = %e, "the answer to a job insert was lost; the job exists");
                        return Ok(created);
                    }
                    e.to_string()
                }
                Err(e) => {
                    return match self.job_by_id(project, location, job_id).await {
                        Ok(created) if attempt > 1 => Ok(created),
                        _ => Err(Error::upstream(format!(
                            "BigQuery jobs.insert({job_id}) failed: {e}"
                        ))),
                    };
                }
            };
            tracing::warn!(job_id, attempt, error = %failure, "inserting a BigQuery job failed; retrying");
            tokio::time::sleep(retry::delay(attempt)).await;
        }
    }

    /// Polls until the job is DONE. On cancel, asks BigQuery to cancel it (best effort) and
    /// returns a cancelled error.
    async fn wait_for_job(
        &self,
        project: &str,
        location: Option<&str>,
        job_id: &str,
        mut job: Value,
        cancel: &CancellationToken,
    ) -> Result<Value, Error> {
        let started = std::time::Instant::now();
        loop {
            if job["status"]["state"].as_str() == Some("DONE") {
                return Ok(job);
            }
            if started.elapsed() > JOB_TIMEOUT {
                return Err(Error::upstream(format!(
                    "BigQuery job {job_id} did not finish in {JOB_TIMEOUT:?}"
                )));
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    self.cancel_job(project, location, job_id).await;
                    return Err(Error::cancelled(format!("BigQuery job {job_id} was cancelled")));
                }
                () = tokio::time::sleep(JOB_POLL_INTERVAL) => {}
            }
            job = self.job_by_id(project, location, job_id).await?;
        }
    }

    /// The job resource as BigQuery's JSON has it (GET, retried on transient failures).
    async fn job_by_id(
        &self,
        project: &str,
        location: Option<&str>,
        job_id: &str,
    ) -> Result<Value, Error> {
        let mut path = format!("projects/{project}/jobs/{job_id}");
        if let Some(location) = location {
            path.push_str(&format!(
                "?location={}",
                percent_encoding::utf8_percent_encode(location, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        self.rest(Method::GET, &path, None).await
    }

    /// Best effort: a job left running after its caller stopped only costs what it was going to.
    async fn cancel_job(&self, project: &str, location: Option<&str>, job_id: &str) {
        let mut request = self
            .inner
            .jobs
            .cancel_job()
            .set_project_id(project)
            .set_job_id(job_id);
        if let Some(location) = location {
            request = request.set_location(location);
        }
        if let Err(e) = request.send().await {
            tracing::warn!(job_id, error = %e, "cancelling a BigQuery job failed");
        }
    }
}

/// A JSON number or a decimal string (BigQuery's int64 encoding) as u64.
fn json_u64(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}
