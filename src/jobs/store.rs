//! Job records in the state store (`BQB_STATE_URI`), keys from [`layout`]:
//!
//! ```text
//! jobs/{jobId}.json              the record; written only by the instance running the job
//! jobs/{jobId}.cancel            a cancel request from any instance (the runner polls for it)
//! jobs/_selections/{key}/{epoch}.json   the job backing up a selection right now (409 for a second one)
//! idempotency/pubsub-{kind}-{messageId}.json   what a Pub/Sub delivery started
//! ```
//!
//! Each is a versioned file ([`versioned`]), read strictly. Records not written for
//! `BQB_JOB_RETENTION_DAYS` are swept ([`JobStore::sweep`]).

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::record::{JobKind, JobRecord};
use crate::domain::{JobId, StorageUri};
use crate::error::Error;
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{
    Access, StorageConfig, Store, delete_if_exists, exclusive, get_if_exists, layout, put_if_absent,
};

/// Records read at once when listing.
const READ_CONCURRENCY: usize = 16;

/// A request to cancel a job, from any instance (`jobs/{jobId}.cancel`; only its presence counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelRequest {
    #[serde(default = "versioned::version_1")]
    version: u32,
    job_id: JobId,
    requested_at: DateTime<Utc>,
}

impl VersionedFile for CancelRequest {
    const WHAT: &'static str = "cancel request";
    const VERSION: u32 = 1;
}

/// The holder of a selection's slot (`jobs/_selections/{key}/{epoch}.json`). Its job id is the
/// holder token [`exclusive`] looks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectionRecord {
    #[serde(default = "versioned::version_1")]
    version: u32,
    job_id: JobId,
}

impl VersionedFile for SelectionRecord {
    const WHAT: &'static str = "selection record";
    const VERSION: u32 = 1;
}

/// What one Pub/Sub message started (`idempotency/pubsub-{kind}-{messageId}.json`): written
/// before its job starts, so that a redelivery finds it and starts no second job; then
/// completed with the job it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub message_id: String,
    #[serde(default)]
    pub subscription: Option<String>,
    /// When the first delivery arrived: also what makes the record unique to it, as
    /// [`put_if_absent`] requires.
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
}

impl VersionedFile for DeliveryRecord {
    const WHAT: &'static str = "Pub/Sub delivery record";
    const VERSION: u32 = 1;
}

impl DeliveryRecord {
    /// The record of a message just received, before its job starts.
    pub fn received(message_id: &str, subscription: Option<String>) -> Self {
        Self {
            version: Self::VERSION,
            message_id: message_id.to_string(),
            subscription,
            received_at: Utc::now(),
            job_id: None,
            backup_id: None,
        }
    }
}

/// The key of the record of Pub/Sub message `message_id` pushed for a `kind` job.
fn delivery_path(kind: JobKind, message_id: &str) -> Path {
    layout::pubsub_delivery(&kind.as_str().to_ascii_lowercase(), message_id)
}

/// Reads and writes job records. Cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    store: Store,
}

/// Who holds a selection when it cannot be taken.
pub enum SelectionLock {
    Taken,
    HeldBy(JobId),
}

impl JobStore {
    /// Opens the state store at `uri` (`BQB_STATE_URI`).
    pub fn open(config: &StorageConfig, uri: &str) -> Result<Self, Error> {
        let uri = StorageUri::parse(uri).map_err(|e| {
            Error::invalid(
                format!("BQB_STATE_URI: {e}"),
                vec![crate::error::FieldError::new(
                    "BQB_STATE_URI",
                    e.to_string(),
                )],
            )
        })?;
        // The operator's own setting, not a caller's: no allow-list applies.
        Ok(Self {
            store: config
                .open_configured(&uri, Access::Write)?
                .from_setting("BQB_STATE_URI"),
        })
    }

    pub fn uri(&self) -> String {
        self.store.uri().to_string()
    }

    fn os(&self) -> &std::sync::Arc<dyn ObjectStore> {
        self.store.object_store()
    }

    /// The object at `path`, `None` when absent.
    async fn read(&self, path: &Path) -> Result<Option<bytes::Bytes>, Error> {
        get_if_exists(self.os().as_ref(), path)
            .await
            .map_err(|e| self.read_error(path, e))
    }

    pub async fn save(&self, record: &JobRecord) -> Result<(), Error> {
        let path = layout::job_record(&record.job_id);
        let body = versioned::encode_pretty(record)?;
        self.os()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    /// The stored record, as written (not yet judged for staleness).
    pub async fn load(&self, id: &JobId) -> Result<Option<JobRecord>, Error> {
        let path = layout::job_record(id);
        let Some(bytes) = self.read(&path).await? else {
            return Ok(None);
        };
        versioned::decode(&bytes)
            .map(Some)
            .map_err(|e| e.into_state_error(&path))
    }

    /// Every stored record (unreadable ones are logged and skipped).
    pub async fn list(&self) -> Result<Vec<JobRecord>, Error> {
        let prefix = layout::jobs_dir();
        let listing = self
            .os()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| self.read_error(&prefix, e))?;
        // Cancel requests and anything not named like a record are not records.
        let ids: Vec<JobId> = listing
            .objects
            .iter()
            .filter_map(|o| layout::job_id_of(&o.location))
            .collect();
        let loads = ids.into_iter().map(|id| {
            let store = self.clone();
            async move { (id.clone(), store.load(&id).await) }
        });
        let loaded: Vec<_> = futures::stream::iter(loads)
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        let mut records = Vec::new();
        for (id, result) in loaded {
            match result {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e) => tracing::warn!(job_id = %id, error = %e, "skipping a job record"),
            }
        }
        Ok(records)
    }

    /// Asks the instance running job `id` to cancel it.
    pub async fn request_cancel(&self, id: &JobId) -> Result<(), Error> {
        let path = layout::job_cancel(id);
        let body = versioned::encode(&CancelRequest {
            version: CancelRequest::VERSION,
            job_id: id.clone(),
            requested_at: Utc::now(),
        })?;
        self.os()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    pub async fn cancel_requested(&self, id: &JobId) -> Result<bool, Error> {
        let path = layout::job_cancel(id);
        match self.os().head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.read_error(&path, e)),
        }
    }

    pub async fn clear_cancel(&self, id: &JobId) {
        let path = layout::job_cancel(id);
        if let Err(e) = delete_if_exists(self.os().as_ref(), &path).await {
            tracing::warn!(object_key = %path, error = %e, "removing a cancel request failed")
        }
    }

    /// Records `job` as the one backing up selection `key`, unless a live job already is.
    /// A holder whose record ended or went stale is replaced, by exactly one contender when
    /// several try at once (a slot of [`exclusive`]).
    pub async fn lock_selection(&self, key: &str, job: &JobId) -> Result<SelectionLock, Error> {
        let dir = layout::selection_dir(key);
        let os = self.os().as_ref();
        let (seen, holder) = self.current_holder(&dir).await?;
        if let Some(holder) = holder {
            return Ok(SelectionLock::HeldBy(holder));
        }
        let body = versioned::encode(&SelectionRecord {
            version: SelectionRecord::VERSION,
            job_id: job.clone(),
        })?;
        if exclusive::take(os, &dir, seen.as_ref(), body)
            .await
            .map_err(|e| self.write_error(&dir, e))?
            .is_some()
        {
            return Ok(SelectionLock::Taken);
        }
        // Another contender won between our read and our write.
        let winner = match exclusive::current(os, &dir)
            .await
            .map_err(|e| self.read_error(&dir, e))?
        {
            Some(slot) => Some(Self::selection_holder_of(&slot)?),
            None => None,
        };
        match winner {
            Some(holder) => Ok(SelectionLock::HeldBy(holder)),
            None => Err(Error::conflict(format!(
                "selection {key} was taken and released by another job meanwhile; retry"
            ))),
        }
    }

    /// The live job holding selection `key`, if any (a look, taking nothing).
    pub async fn selection_holder(&self, key: &str) -> Result<Option<JobId>, Error> {
        Ok(self.current_holder(&layout::selection_dir(key)).await?.1)
    }

    /// The selection's current record, and the job holding it when that job still runs.
    async fn current_holder(
        &self,
        dir: &Path,
    ) -> Result<(Option<exclusive::SlotRecord>, Option<JobId>), Error> {
        let seen = exclusive::current(self.os().as_ref(), dir)
            .await
            .map_err(|e| self.read_error(dir, e))?;
        let holder = match seen.as_ref().map(Self::selection_holder_of).transpose()? {
            Some(holder) if self.is_running(&holder).await? => Some(holder),
            _ => None,
        };
        Ok((seen, holder))
    }

    async fn is_running(&self, job: &JobId) -> Result<bool, Error> {
        Ok(self
            .load(job)
            .await?
            .is_some_and(|record| !record.effective(Utc::now()).state.is_terminal()))
    }

    /// Releases selection `key` if `job` still holds it.
    pub async fn unlock_selection(&self, key: &str, job: &JobId) {
        let dir = layout::selection_dir(key);
        let os = self.os().as_ref();
        let result = match exclusive::current(os, &dir).await {
            // The release itself checks the holder token again (the job id) in the record it
            // removes, so a record this build cannot read is only ever left alone.
            Ok(Some(slot)) => match Self::selection_holder_of(&slot) {
                Ok(holder) if &holder == job => {
                    exclusive::release(os, &dir, slot.epoch, &job.to_string())
                        .await
                        .map_err(|e| e.to_string())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(object_key = %dir, error = %e, "releasing a selection failed");
        }
    }

    /// The job a selection's slot record names. A record this build cannot read is an error,
    /// never a free slot: the job it names may be running.
    fn selection_holder_of(slot: &exclusive::SlotRecord) -> Result<JobId, Error> {
        versioned::decode::<SelectionRecord>(&slot.body)
            .map(|record| record.job_id)
            .map_err(|e| e.into_state_error(&slot.path))
    }

    /// Writes `record` for its message (pushed for a `kind` job) unless a record is there;
    /// returns the one there when it is (a redelivery).
    pub async fn claim_delivery(
        &self,
        kind: JobKind,
        record: &DeliveryRecord,
    ) -> Result<Option<DeliveryRecord>, Error> {
        let path = delivery_path(kind, &record.message_id);
        if put_if_absent(self.os().as_ref(), &path, versioned::encode(record)?)
            .await
            .map_err(|e| self.write_error(&path, e))?
        {
            return Ok(None);
        }
        let bytes = self.read(&path).await?.ok_or_else(|| {
            Error::upstream(format!(
                "reading the state store object {path} failed: it was removed meanwhile"
            ))
        })?;
        versioned::decode(&bytes)
            .map(Some)
            .map_err(|e| e.into_state_error(&path))
    }

    /// Replaces the record of a delivery (with the job it started).
    pub async fn record_delivery(
        &self,
        kind: JobKind,
        record: &DeliveryRecord,
    ) -> Result<(), Error> {
        let path = delivery_path(kind, &record.message_id);
        self.os()
            .put(&path, PutPayload::from(versioned::encode(record)?))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    /// Removes the record of a delivery (the job it named could not start).
    pub async fn forget_delivery(&self, kind: JobKind, message_id: &str) {
        let path = delivery_path(kind, message_id);
        if let Err(e) = delete_if_exists(self.os().as_ref(), &path).await {
            tracing::warn!(object_key = %path, error = %e, "removing an idempotency record failed");
        }
    }

    /// Deletes job records, cancel requests and idempotency records last written before
    /// `cutoff`. A live job saves its record every heartbeat, so an old record belongs to a job
    /// that ended (or died) long ago. Returns how many objects went.
    pub async fn sweep(&self, cutoff: chrono::DateTime<Utc>) -> Result<usize, Error> {
        let mut old = Vec::new();
        for prefix in [layout::jobs_dir(), layout::idempotency_dir()] {
            let listing = self
                .os()
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| self.read_error(&prefix, e))?;
            old.extend(
                listing
                    .objects
                    .into_iter()
                    .filter(|o| o.last_modified < cutoff)
                    .map(|o| o.location),
            );
        }
        let mut deleted = 0;
        for path in old {
            match self.os().delete(&path).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(object_key = %path, error = %e, "sweeping an old record failed")
                }
            }
        }
        Ok(deleted)
    }

    /// The state store itself, for other small records (schedule leases).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A failed call on the state store: a missing bucket or refused access there is this
    /// service's setup (`BQB_STATE_URI`), never the caller's (see [`Store::attribute`]).
    fn write_error(&self, path: &Path, e: object_store::Error) -> Error {
        (self.store).call_error("writing the state store object", path, e)
    }

    fn read_error(&self, path: &Path, e: object_store::Error) -> Error {
        (self.store).call_error("reading the state store object", path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn store() -> JobStore {
        let uri = format!("memory://jobs-{}", uuid::Uuid::new_v4().simple());
        JobStore::open(&StorageConfig::default(), &uri).expect("memory stores open")
    }

    async fn put(store: &JobStore, path: &Path, body: &str) {
        store
            .os()
            .put(path, PutPayload::from(body.to_string()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_delivery_is_claimed_once_and_its_record_completed() {
        let store = store();
        let first = DeliveryRecord::received("m-1", Some("projects/p/subscriptions/s".into()));
        assert_eq!(
            store.claim_delivery(JobKind::Backup, &first).await.unwrap(),
            None
        );
        let again = DeliveryRecord::received("m-1", None);
        let found = store.claim_delivery(JobKind::Backup, &again).await.unwrap();
        assert_eq!(found.as_ref(), Some(&first));
        // Another kind of job is another delivery.
        assert_eq!(
            store
                .claim_delivery(JobKind::Restore, &again)
                .await
                .unwrap(),
            None
        );
        let done = DeliveryRecord {
            job_id: Some("job-00000000000000b1".into()),
            ..first.clone()
        };
        store.record_delivery(JobKind::Backup, &done).await.unwrap();
        let found = store.claim_delivery(JobKind::Backup, &again).await.unwrap();
        assert_eq!(
            found.and_then(|r| r.job_id).as_deref(),
            Some("job-00000000000000b1")
        );
        store.forget_delivery(JobKind::Backup, "m-1").await;
        assert_eq!(
            store.claim_delivery(JobKind::Backup, &again).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn records_written_before_versioning_still_read() {
        let store = store();
        // The delivery record as the Pub/Sub endpoint wrote it before it was typed.
        put(
            &store,
            &layout::pubsub_delivery("backup", "42"),
            r#"{"messageId":"42","subscription":null,"receivedAt":"2026-03-01T00:00:00Z","jobId":"job-00000000000000b1","backupId":null}"#,
        )
        .await;
        let found = store
            .claim_delivery(JobKind::Backup, &DeliveryRecord::received("42", None))
            .await
            .unwrap()
            .expect("the old record");
        assert_eq!(found.version, 1);
        assert_eq!(found.job_id.as_deref(), Some("job-00000000000000b1"));
        assert_eq!(found.backup_id, None);
        // A selection held by a job whose record does not exist (it ended long ago) is free.
        put(
            &store,
            &layout::slot_record(&layout::selection_dir("k"), 1),
            r#"{"jobId":"job-00000000000000b2"}"#,
        )
        .await;
        assert!(store.selection_holder("k").await.unwrap().is_none());
        let job = JobId::generate();
        assert!(matches!(
            store.lock_selection("k", &job).await.unwrap(),
            SelectionLock::Taken
        ));
    }

    #[tokio::test]
    async fn an_unreadable_record_is_an_error_naming_it_never_a_default() {
        let store = store();
        let job = JobId::parse("job-00000000000000b3").unwrap();
        let key = layout::job_record(&job);
        put(
            &store,
            &key,
            r#"{"jobId":"job-00000000000000b3","kind":"ARCHIVE"}"#,
        )
        .await;
        let err = store.load(&job).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains(key.as_ref()), "{err}");
        assert!(err.to_string().contains("at `kind`"), "{err}");
        // A newer instance's record during a rolling upgrade: another instance can answer.
        put(&store, &key, r#"{"version":2}"#).await;
        let err = store.load(&job).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        // A selection held by a record this build cannot read is not free.
        put(
            &store,
            &layout::slot_record(&layout::selection_dir("k"), 1),
            r#"{"version":2,"jobId":"job-00000000000000b4"}"#,
        )
        .await;
        assert!(store.selection_holder("k").await.is_err());
        assert!(store.lock_selection("k", &job).await.is_err());
        store.unlock_selection("k", &job).await;
        assert!(
            exclusive::current(store.os().as_ref(), &layout::selection_dir("k"))
                .await
                .unwrap()
                .is_some(),
            "left alone"
        );
    }

    #[tokio::test]
    async fn a_cancel_request_is_a_typed_record_beside_the_job_record() {
        let store = store();
        let job = JobId::generate();
        assert!(!store.cancel_requested(&job).await.unwrap());
        store.request_cancel(&job).await.unwrap();
        assert!(store.cancel_requested(&job).await.unwrap());
        let bytes = store
            .read(&layout::job_cancel(&job))
            .await
            .unwrap()
            .unwrap();
        let request: CancelRequest = versioned::decode(&bytes).unwrap();
        assert_eq!((request.version, request.job_id), (1, job.clone()));
        // Listing records never takes a cancel request for a record.
        assert!(store.list().await.unwrap().is_empty());
        store.clear_cancel(&job).await;
        assert!(!store.cancel_requested(&job).await.unwrap());
    }
}
