//! The results of restore drills, kept beside the backup they drilled
//! (`backups/{id}/drills/{start}-{jobId}.json`, one per drill, never rewritten): what
//! `GET /api/v1/backups/{id}` and the catalog list show, and what proves a backup restores.
//! They go with the backup when it is deleted.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::domain::{BackupId, JobId};
use crate::error::Error;
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{Store, get_if_exists, layout, object_error};

/// The most drill results a backup's details show.
pub const SHOWN: usize = 10;

/// One drill: a restore into scratch datasets, each table compared with the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub backup_id: BackupId,
    pub job_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Every table restored and equal to the manifest (rows and content).
    pub passed: bool,
    /// How long the restore took (the comparison after it not counted).
    pub restore_ms: u64,
    /// Rows restored.
    pub rows: u64,
    /// Rows restored per second of the restore.
    pub rows_per_second: f64,
    pub tables: Vec<DrillTable>,
    /// What failed, when something did (the restore, a comparison, the cleanup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One table of a drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillTable {
    pub table: String,
    /// Where it was restored (a scratch dataset, removed afterwards).
    pub scratch: String,
    /// Rows the manifest records.
    pub expected_rows: u64,
    /// Rows read back from the restored table.
    pub restored_rows: u64,
    /// The content digest of the backup's files (see `digest`).
    pub expected_digest: String,
    /// The content digest of the restored table.
    pub restored_digest: String,
    pub passed: bool,
}

impl VersionedFile for DrillRecord {
    const WHAT: &'static str = "drill record";
    const VERSION: u32 = 1;
}

/// The summary of a drill the catalog shows next to a backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillSummary {
    pub at: DateTime<Utc>,
    pub passed: bool,
    pub restore_ms: u64,
    pub rows_per_second: f64,
}

impl DrillRecord {
    pub fn summary(&self) -> DrillSummary {
        DrillSummary {
            at: self.finished_at,
            passed: self.passed,
            restore_ms: self.restore_ms,
            rows_per_second: self.rows_per_second,
        }
    }
}

/// Writes `record` beside its backup.
pub async fn write_drill(store: &Store, record: &DrillRecord) -> Result<(), Error> {
    let job = JobId::parse(&record.job_id)
        .map_err(|e| Error::internal(format!("drill record of job {}: {e}", record.job_id)))?;
    let path = layout::drill_record(&record.backup_id, record.started_at, &job);
    let body = versioned::encode_pretty(record)?;
    store
        .object_store()
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| object_error("writing", &path, e))?;
    Ok(())
}

/// The drills of backup `id`, newest first, at most `limit`. A record that cannot be read is
/// skipped with a warning: it says nothing about the backup.
pub async fn read_drills(
    store: &Store,
    id: &BackupId,
    limit: usize,
) -> Result<Vec<DrillRecord>, Error> {
    let dir = layout::drills_dir(id);
    let os = store.object_store();
    let mut keys: Vec<_> = os
        .list(Some(&dir))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|e| object_error("listing", &dir, e))?;
    keys.sort();
    keys.reverse();
    let mut records = Vec::new();
    for key in keys.into_iter().take(limit) {
        let Some(bytes) = get_if_exists(os.as_ref(), &key)
            .await
            .map_err(|e| object_error("reading", &key, e))?
        else {
            continue;
        };
        match versioned::decode::<DrillRecord>(&bytes) {
            Ok(record) => records.push(record),
            Err(e) => {
                tracing::warn!(object_key = %key, error = %e, "a drill record cannot be read; skipped")
            }
        }
    }
    Ok(records)
}
