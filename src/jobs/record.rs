//! A job's record: what `GET /api/v1/jobs/{id}` answers, stored as `jobs/{jobId}.json` in the
//! state store so that any instance can answer for any job.
//!
//! Only the instance running a job writes its record (at each state change and heartbeat), so
//! writes never race; other instances only read it, and ask for a cancel through a separate
//! marker object (see [`super::store`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::JobId;
use crate::error::{Error, ErrorKind, FieldError};
use crate::exec::ShardsProgress;
use crate::storage::versioned::{self, VersionedFile};

/// A record not saved for this many heartbeats belongs to an instance that died.
pub const STALE_HEARTBEATS: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    Backup,
    Restore,
    /// A backup's files re-read against its manifest.
    Verify,
    /// A backup copied to another repository (`POST /api/v1/backups/{id}:copy`, the CLI's
    /// `copy`, `download` and `upload`).
    Copy,
    /// Tables brought back by BigQuery time travel (`POST /api/v1/recover`, the CLI's
    /// `recover`).
    Recover,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "BACKUP",
            Self::Restore => "RESTORE",
            Self::Verify => "VERIFY",
            Self::Copy => "COPY",
            Self::Recover => "RECOVER",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "BACKUP" => Some(Self::Backup),
            "RESTORE" => Some(Self::Restore),
            "VERIFY" => Some(Self::Verify),
            "COPY" => Some(Self::Copy),
            "RECOVER" => Some(Self::Recover),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether the job has ended (it will not change again).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// One table of a job, as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableProgress {
    pub table: String,
    pub state: JobState,
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TableProgress {
    pub fn pending(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            state: JobState::Pending,
            rows: 0,
            bytes: 0,
            files: 0,
            error: None,
        }
    }
}

/// Why a job failed, in a form that survives storage (and becomes the same HTTP error again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl From<&Error> for JobError {
    fn from(e: &Error) -> Self {
        Self {
            kind: e.kind(),
            message: e.message().to_string(),
            details: e.details().to_vec(),
        }
    }
}

impl From<&JobError> for Error {
    fn from(e: &JobError) -> Self {
        Error::new(e.kind, e.message.clone()).with_details(e.details.clone())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// The record's storage version (records written before this field are version 1); not
    /// part of what the API shows.
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub job_id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The backup repository the job writes or reads.
    pub storage_uri: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Last time the running instance saved this record (its heartbeat).
    pub updated_at: DateTime<Utc>,
    /// The heartbeat interval of the instance running the job (staleness is judged by it).
    pub heartbeat_secs: u64,
    /// Which instance runs the job (host name and process).
    pub instance: String,
    #[serde(default)]
    pub cancel_requested: bool,
    /// A human note on the state (why it was interrupted, what is waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What started it: `{"source": "http"}`, a Pub/Sub message, a schedule.
    #[serde(default)]
    pub trigger: BTreeMap<String, String>,
    pub tables: Vec<TableProgress>,
    /// The report of a job that succeeded.
    #[serde(default)]
    pub result: Option<Value>,
    /// Why a job failed or was cancelled.
    #[serde(default)]
    pub error: Option<JobError>,
    /// The request as received.
    #[serde(default)]
    pub request: Value,
    /// A sharded backup's shards, as the job follows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardsProgress>,
}

impl VersionedFile for JobRecord {
    const WHAT: &'static str = "job record";
    const VERSION: u32 = 1;
}

impl JobRecord {
    /// What an ended job came to: its result (with `jobId` added) or its error.
    pub fn outcome(&self) -> Result<Value, Error> {
        match (self.state, &self.result, &self.error) {
            (JobState::Succeeded, Some(result), _) => {
                let mut body = result.clone();
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("jobId".into(), Value::String(self.job_id.to_string()));
                }
                Ok(body)
            }
            (_, _, Some(error)) => Err(Error::from(error)),
            (state, _, None) => Err(Error::internal(format!(
                "job {} ended {} without a result",
                self.job_id,
                state.as_str()
            ))),
        }
    }

    /// Whether the instance running this job has stopped saving it: a PENDING or RUNNING record
    /// not refreshed for [`STALE_HEARTBEATS`] heartbeats.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        let heartbeat = Duration::from_secs(self.heartbeat_secs.max(1));
        let limit = chrono::Duration::from_std(heartbeat * STALE_HEARTBEATS)
            .unwrap_or(chrono::Duration::MAX);
        !self.state.is_terminal() && now - self.updated_at > limit
    }

    /// The record as callers should see it: a job whose instance died is FAILED, never
    /// RUNNING forever.
    pub fn effective(mut self, now: DateTime<Utc>) -> Self {
        if self.is_stale(now) {
            let note = format!(
                "the instance running this job ({}) stopped saving its progress at {}; it did not finish (no manifest was written for a backup) — start it again",
                self.instance,
                self.updated_at.to_rfc3339()
            );
            self.state = JobState::Failed;
            self.finished_at = Some(self.updated_at);
            self.error = Some(JobError {
                kind: ErrorKind::Upstream,
                message: note.clone(),
                details: Vec::new(),
            });
            self.message = Some(note);
            for t in &mut self.tables {
                if !t.state.is_terminal() {
                    t.state = JobState::Failed;
                }
            }
        }
        self
    }

    /// Totals over the tables done so far.
    pub fn tables_done(&self) -> usize {
        self.tables
            .iter()
            .filter(|t| t.state == JobState::Succeeded)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: JobState, updated_secs_ago: i64) -> JobRecord {
        let now = Utc::now();
        JobRecord {
            version: JobRecord::VERSION,
            job_id: JobId::from_bits(1),
            kind: JobKind::Backup,
            state,
            backup_id: None,
            storage_uri: "memory://x".into(),
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now - chrono::Duration::seconds(updated_secs_ago),
            heartbeat_secs: 10,
            instance: "host-1".into(),
            cancel_requested: false,
            message: None,
            trigger: BTreeMap::new(),
            tables: vec![TableProgress::pending("p.d.t")],
            result: None,
            error: None,
            request: Value::Null,
            shards: None,
        }
    }

    #[test]
    fn a_running_job_whose_instance_stopped_is_reported_failed() {
        let now = Utc::now();
        let live = record(JobState::Running, 30).effective(now);
        assert_eq!(live.state, JobState::Running);
        let dead = record(JobState::Running, 61).effective(now);
        assert_eq!(dead.state, JobState::Failed);
        assert_eq!(dead.tables[0].state, JobState::Failed);
        assert!(dead.error.is_some_and(|e| e.message.contains("host-1")));
        let pending = record(JobState::Pending, 600).effective(now);
        assert_eq!(pending.state, JobState::Failed);
    }

    #[test]
    fn an_ended_job_is_never_stale() {
        let done = record(JobState::Succeeded, 100_000).effective(Utc::now());
        assert_eq!(done.state, JobState::Succeeded);
    }

    #[test]
    fn errors_survive_the_record() {
        let e = Error::invalid("bad", vec![FieldError::new("a.b", "wrong")]);
        let stored = JobError::from(&e);
        let json = serde_json::to_string(&stored).unwrap();
        let back: JobError = serde_json::from_str(&json).unwrap();
        let again = Error::from(&back);
        assert_eq!(again.kind(), ErrorKind::InvalidInput);
        assert_eq!(again.details(), e.details());
    }

    #[test]
    fn states_parse_case_insensitively() {
        assert_eq!(JobState::parse("running"), Some(JobState::Running));
        assert_eq!(JobState::parse("DONE"), None);
        assert_eq!(JobKind::parse("restore"), Some(JobKind::Restore));
    }
}
