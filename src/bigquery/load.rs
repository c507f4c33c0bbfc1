//! Load jobs fed through the service: BigQuery's resumable upload protocol
//! (`POST /upload/bigquery/v2/projects/{p}/jobs?uploadType=resumable`, then chunked `PUT`s),
//! which the official crates do not cover. The job is created only when the final chunk
//! arrives: a [`LoadUpload`] dropped or aborted before [`LoadUpload::finish`] creates nothing,
//! which is what makes a restore all-or-nothing per table.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};

use super::client::BigQuery;
use super::error::BigQueryError;
use super::retry;
use crate::error::{Error, ErrorKind};

/// Upload chunk size: a multiple of 256 KiB, as the protocol requires for non-final chunks.
pub const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;
/// Every chunk but the last is a whole number of these.
const CHUNK_GRANULARITY: usize = 256 * 1024;
/// How often a running job is polled.
const JOB_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A load job that has not finished after this long is reported as failed.
const JOB_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What a finished load job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    pub job_id: String,
    pub output_rows: u64,
}

/// An open resumable upload feeding one load job.
pub struct LoadUpload {
    client: BigQuery,
    http: reqwest::Client,
    session: String,
    /// Chosen here, so that a job whose creation answer was lost can be found by its id.
    job_id: String,
    project: String,
    location: Option<String>,
    pending: BytesMut,
    sent: u64,
}

impl BigQuery {
    /// Starts a load job upload. `configuration` is the job's `configuration` JSON object
    /// (`{"load": {...}}`), with the destination, explicit schema, format and dispositions.
    pub async fn start_load_upload(
        &self,
        project: &str,
        location: Option<&str>,
        configuration: Value,
    ) -> Result<LoadUpload, Error> {
        let http = self.inner.http.clone();
        let url = format!(
            "{}/upload/bigquery/v2/projects/{project}/jobs?uploadType=resumable",
            self.inner.config.endpoint
        );
        let job_id = new_job_id();
        let job = json!({ "configuration": configuration, "jobReference": job_reference(project, location, &job_id) });
        // Opening a session creates nothing (the job comes with the last chunk), so a transient
        // failure is simply tried again.
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let headers = self.auth_headers().await?;
            let sent = http
                .post(&url)
                .headers(headers)
                .header(CONTENT_TYPE, "application/json; charset=UTF-8")
                .header("X-Upload-Content-Type", "application/octet-stream")
                .body(job.to_string())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => break resp,
                Ok(resp)
                    if attempt < retry::MAX_ATTEMPTS
                        && retry::is_transient_status(resp.status().as_u16()) => {}
                Ok(resp) => return Err(http_error("starting a load upload", resp).await),
                Err(e) if attempt < retry::MAX_ATTEMPTS && !e.is_builder() => {}
                Err(e) => {
                    return Err(Error::upstream(format!(
                        "starting a load upload to {project} failed: {e}"
                    )));
                }
            }
            tokio::time::sleep(retry::delay(attempt)).await;
        };
        let session = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::upstream("BigQuery answered a resumable upload without a session URI")
            })?
            .to_string();
        Ok(LoadUpload {
            client: self.clone(),
            http,
            session,
            job_id,
            project: project.to_string(),
            location: location.map(str::to_string),
            pending: BytesMut::new(),
            sent: 0,
        })
    }

    /// Starts a load job over files BigQuery reads itself (`sourceUris`, gs:// only) and waits
    /// for it. `configuration` is the job's `configuration` JSON (`{"load": {...}}`).
    pub async fn load_from_uris(
        &self,
        project: &str,
        location: Option<&str>,
        configuration: Value,
    ) -> Result<LoadOutcome, Error> {
        // The job id is chosen here, so that inserting the job again after a lost answer
        // creates nothing twice: BigQuery answers "duplicate" and the job is read by its id.
        let job_id = new_job_id();
        let job = json!({ "configuration": configuration, "jobReference": job_reference(project, location, &job_id) });
        let job: google_cloud_bigquery_v2::model::Job = serde_json::from_value(job)
            .map_err(|e| Error::internal(format!("load job resource: {e}")))?;
        let operation = format!("jobs.insert(load into {project})");
        let sent = retry::insert(&operation, || {
            self.inner
                .jobs
                .insert_job()
                .set_project_id(project)
                .set_job(job.clone())
                .send()
        })
        .await;
        let started = match sent {
            Ok(started) => serde_json::to_value(&started)
                .map_err(|e| Error::internal(format!("job resource: {e}")))?,
            Err((e, retried)) => {
                let err = BigQueryError::api(operation, e);
                // After a lost answer an earlier attempt may have created the job (BigQuery
                // then answers "duplicate" to the retry): the job under our id is the one.
                match retried {
                    true => match self.job_json(project, location, &job_id).await {
                        Ok(created) => {
                            tracing::warn!(job_id, error = %err, "the load job was created by an earlier attempt");
                            created
                        }
                        Err(_) => return Err(err.into()),
                    },
                    false => return Err(err.into()),
                }
            }
        };
        self.wait_for_load(project, location, started).await
    }

    /// The job resource as JSON.
    async fn job_json(
        &self,
        project: &str,
        location: Option<&str>,
        job_id: &str,
    ) -> Result<Value, Error> {
        let mut request = self
            .inner
            .jobs
            .get_job()
            .set_project_id(project)
            .set_job_id(job_id);
        if let Some(location) = location {
            request = request.set_location(location);
        }
        let job = request
            .send()
            .await
            .map_err(|e| Error::from(BigQueryError::api(format!("jobs.get({job_id})"), e)))?;
        serde_json::to_value(&job).map_err(|e| Error::internal(format!("job resource: {e}")))
    }

    /// Headers carrying the caller's credentials (none when anonymous).
    pub(super) async fn auth_headers(&self) -> Result<http::HeaderMap, Error> {
        use google_cloud_auth::credentials::CacheableResource;
        match self
            .inner
            .credentials
            .headers(http::Extensions::new())
            .await
        {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Ok(http::HeaderMap::new()),
            Err(e) => Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("no credentials for BigQuery: {e}"),
            )),
        }
    }

    /// Waits until a job is DONE and returns its outcome; a job error becomes an error.
    pub async fn wait_for_load(
        &self,
        project: &str,
        location: Option<&str>,
        job: Value,
    ) -> Result<LoadOutcome, Error> {
        let mut job = job;
        let started = std::time::Instant::now();
        loop {
            let state = job["status"]["state"].as_str().unwrap_or_default();
            let job_id = job["jobReference"]["jobId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state == "DONE" {
                if let Some(err) = job["status"].get("errorResult").filter(|e| !e.is_null()) {
                    let reason = err["reason"].as_str().unwrap_or("error");
                    let message = err["message"].as_str().unwrap_or("load job failed");
                    // The request was valid; BigQuery refused the data or the table. That is
                    // BigQuery's answer, not the caller's mistake: an upstream error naming the
                    // table and BigQuery's reason (permission problems stay 403).
                    let kind = match reason {
                        "accessDenied" => ErrorKind::PermissionDenied,
                        _ => ErrorKind::Upstream,
                    };
                    let destination = &job["configuration"]["load"]["destinationTable"];
                    let table = format!(
                        "{}.{}.{}",
                        destination["projectId"].as_str().unwrap_or("?"),
                        destination["datasetId"].as_str().unwrap_or("?"),
                        destination["tableId"].as_str().unwrap_or("?")
                    );
                    return Err(Error::new(
                        kind,
                        format!(
                            "BigQuery rejected load job {job_id} into {table} ({reason}): {message}"
                        ),
                    ));
                }
                let output_rows = job["statistics"]["load"]["outputRows"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| job["statistics"]["load"]["outputRows"].as_u64())
                    .unwrap_or(0);
                return Ok(LoadOutcome {
                    job_id,
                    output_rows,
                });
            }
            if started.elapsed() > JOB_TIMEOUT {
                return Err(Error::upstream(format!(
                    "load job {job_id} did not finish in {JOB_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(JOB_POLL_INTERVAL).await;
            let mut request = self
                .inner
                .jobs
                .get_job()
                .set_project_id(project)
                .set_job_id(&job_id);
            if let Some(location) = location {
                request = request.set_location(location);
            }
            let fresh = request
                .send()
                .await
                .map_err(|e| Error::from(BigQueryError::api(format!("jobs.get({job_id})"), e)))?;
            job = serde_json::to_value(&fresh)
                .map_err(|e| Error::internal(format!("job resource: {e}")))?;
        }
    }
}

impl LoadUpload {
    /// Appends bytes; full chunks are sent as they fill. At least one byte is always held back
    /// so that the final chunk (which creates the job) is never empty. However much is written
    /// at once, at most one chunk (and a byte) is held: a large write is taken a chunk at a time.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let room = (UPLOAD_CHUNK + 1).saturating_sub(self.pending.len());
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = later;
            if self.pending.len() <= UPLOAD_CHUNK {
                continue;
            }
            let chunk = self.pending.split_to(UPLOAD_CHUNK).freeze();
            let range = format!(
                "bytes {}-{}/*",
                self.sent,
                self.sent + chunk.len() as u64 - 1
            );
            self.put(chunk, range, false).await?;
        }
        Ok(())
    }

    /// Sends `chunk`, which is not the upload's last bytes, as it is (no copy) when nothing is
    /// pending and it is a whole number of 256 KiB blocks, as the protocol asks of every chunk
    /// but the last; otherwise takes it as [`Self::write`] does. A file read in ranges of
    /// [`UPLOAD_CHUNK`] goes up range by range, its last range kept back by the caller.
    pub async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Error> {
        if !self.pending.is_empty()
            || chunk.is_empty()
            || !chunk.len().is_multiple_of(CHUNK_GRANULARITY)
        {
            return self.write(&chunk).await;
        }
        let range = format!(
            "bytes {}-{}/*",
            self.sent,
            self.sent + chunk.len() as u64 - 1
        );
        self.put(chunk, range, false).await.map(|_| ())
    }

    /// Bytes accepted so far (sent plus pending).
    pub fn len(&self) -> u64 {
        self.sent + self.pending.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends the final chunk (creating the load job) and waits for the job to finish.
    pub async fn finish(mut self) -> Result<LoadOutcome, Error> {
        if self.pending.is_empty() {
            return Err(Error::internal(
                "a load upload must carry at least one byte",
            ));
        }
        let chunk = std::mem::take(&mut self.pending).freeze();
        let total = self.sent + chunk.len() as u64;
        let range = format!("bytes {}-{}/{total}", self.sent, total - 1);
        let job = match self.put(chunk, range, true).await {
            Ok(job) => job.unwrap_or(Value::Null),
            // The last chunk creates the job: when its answer was lost (and a retry then found
            // the session closed), the job is there under the id chosen for it.
            Err(e) => match self
                .client
                .job_json(&self.project, self.location.as_deref(), &self.job_id)
                .await
            {
                Ok(job) => {
                    tracing::warn!(job_id = %self.job_id, error = %e, "the answer to the last upload chunk was lost; the load job exists");
                    job
                }
                Err(_) => return Err(e),
            },
        };
        self.client
            .wait_for_load(&self.project, self.location.as_deref(), job)
            .await
    }

    /// Sends one chunk, retrying transient failures. Returns the job resource for the final one.
    ///
    /// A chunk sent again after a lost answer is the same bytes at the same offsets, which the
    /// protocol accepts. A `308` says how much the server has persisted (`Range: bytes=0-N`):
    /// when that is less than the chunk, the rest is sent again from there.
    async fn put(
        &mut self,
        chunk: Bytes,
        range: String,
        last: bool,
    ) -> Result<Option<Value>, Error> {
        let end = self.sent + chunk.len() as u64;
        let total = if last {
            end.to_string()
        } else {
            "*".to_string()
        };
        let mut from = self.sent;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (body, range) = if from == self.sent {
                (chunk.clone(), range.clone())
            } else {
                let skip = usize::try_from(from - self.sent).unwrap_or(chunk.len());
                (
                    chunk.slice(skip.min(chunk.len())..),
                    format!("bytes {from}-{}/{total}", end - 1),
                )
            };
            let headers = self.client.auth_headers().await?;
            let result = self
                .http
                .put(&self.session)
                .headers(headers)
                .header(CONTENT_RANGE, &range)
                .body(body)
                .send()
                .await;
            match result {
                Ok(resp) if resp.status().as_u16() == 308 => {
                    // Without a Range header the server keeps nothing back to report: the chunk
                    // was taken whole (what servers that do not report progress answer).
                    let persisted = persisted_bytes(resp.headers()).unwrap_or(end);
                    if persisted >= end && !last {
                        self.sent = end;
                        return Ok(None);
                    }
                    if persisted > from && persisted < end {
                        // Progress: send the rest at once.
                        from = persisted;
                        continue;
                    }
                    if attempt >= retry::MAX_ATTEMPTS {
                        return Err(Error::upstream(format!(
                            "uploading load data failed: BigQuery kept {persisted} of {end} bytes"
                        )));
                    }
                }
                Ok(resp) if resp.status().is_success() && last => {
                    match resp.json::<Value>().await {
                        Ok(job) => {
                            self.sent = end;
                            return Ok(Some(job));
                        }
                        Err(e) if attempt < retry::MAX_ATTEMPTS && !e.is_decode() => {}
                        Err(e) => {
                            return Err(Error::upstream(format!(
                                "the load job answer is not JSON: {e}"
                            )));
                        }
                    }
                }
                Ok(resp)
                    if attempt < retry::MAX_ATTEMPTS
                        && retry::is_transient_status(resp.status().as_u16()) => {}
                Ok(resp) => return Err(http_error("uploading load data", resp).await),
                Err(e) if attempt < retry::MAX_ATTEMPTS && !e.is_builder() => {}
                Err(e) => return Err(Error::upstream(format!("uploading load data failed: {e}"))),
            }
            tokio::time::sleep(retry::delay(attempt)).await;
        }
    }
}

/// A job id of this service's own (BigQuery accepts letters, digits, `_` and `-`).
fn new_job_id() -> String {
    format!("bqb_load_{}", uuid::Uuid::new_v4().simple())
}

fn job_reference(project: &str, location: Option<&str>, job_id: &str) -> Value {
    let mut reference = json!({ "projectId": project, "jobId": job_id });
    if let Some(location) = location {
        reference["location"] = json!(location);
    }
    reference
}

/// The bytes a resumable upload session has persisted, from a `308`'s `Range: bytes=0-N`;
/// `None` without a Range header.
fn persisted_bytes(headers: &http::HeaderMap) -> Option<u64> {
    let range = headers.get(http::header::RANGE)?.to_str().ok()?;
    range
        .strip_prefix("bytes=0-")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|n| n + 1)
}

async fn http_error(what: &str, resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    super::rest::status_error(what, status, &body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_308_range_says_how_many_bytes_the_session_kept() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(super::persisted_bytes(&headers), None);
        headers.insert(http::header::RANGE, "bytes=0-262143".parse().unwrap());
        assert_eq!(super::persisted_bytes(&headers), Some(262_144));
    }
}
