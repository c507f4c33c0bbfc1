//! Job records in the state store (`BQB_STATE_URI`):
//!
//! ```text
//! jobs/{jobId}.json              the record; written only by the instance running the job
//! jobs/{jobId}.cancel            a cancel request from any instance (the runner polls for it)
//! jobs/_selections/{key}/{epoch}.json   the job backing up a selection right now (409 for a second one)
//! idempotency/{key}.json         what an at-least-once delivery (Pub/Sub messageId) started
//! ```
//!
//! Records not written for `BQB_JOB_RETENTION_DAYS` are swept ([`JobStore::sweep`]).

use chrono::Utc;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::record::JobRecord;
use crate::domain::{JobId, StorageUri};
use crate::error::Error;
use crate::storage::{
    Access, StorageConfig, Store, delete_if_exists, exclusive, get_if_exists, put_if_absent,
};

const JOBS: &str = "jobs";
const SELECTIONS: &str = "_selections";
const IDEMPOTENCY: &str = "idempotency";
/// Records read at once when listing.
const READ_CONCURRENCY: usize = 16;

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

    fn record_path(id: &JobId) -> Path {
        Path::from(JOBS).join(format!("{id}.json").as_str())
    }

    fn cancel_path(id: &JobId) -> Path {
        Path::from(JOBS).join(format!("{id}.cancel").as_str())
    }

    fn selection_dir(key: &str) -> Path {
        Path::from(JOBS).join(SELECTIONS).join(key)
    }

    fn idempotency_path(key: &str) -> Path {
        Path::from(IDEMPOTENCY).join(format!("{key}.json").as_str())
    }

    /// The object at `path`, `None` when absent.
    async fn read(&self, path: &Path) -> Result<Option<bytes::Bytes>, Error> {
        get_if_exists(self.os().as_ref(), path)
            .await
            .map_err(|e| self.read_error(path, e))
    }

    pub async fn save(&self, record: &JobRecord) -> Result<(), Error> {
        let path = Self::record_path(&record.job_id);
        let body = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::internal(format!("job record: {e}")))?;
        self.os()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    /// The stored record, as written (not yet judged for staleness).
    pub async fn load(&self, id: &JobId) -> Result<Option<JobRecord>, Error> {
        let path = Self::record_path(id);
        let Some(bytes) = self.read(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("job record {path} is not readable: {e}")))
    }

    /// Every stored record (unreadable ones are logged and skipped).
    pub async fn list(&self) -> Result<Vec<JobRecord>, Error> {
        let prefix = Path::from(JOBS);
        let listing = self
            .os()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| self.read_error(&prefix, e))?;
        let ids: Vec<JobId> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename()?.strip_suffix(".json"))
            .filter_map(|name| JobId::parse(name).ok())
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
        let path = Self::cancel_path(id);
        let body = serde_json::json!({ "jobId": id, "requestedAt": Utc::now() }).to_string();
        self.os()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    pub async fn cancel_requested(&self, id: &JobId) -> Result<bool, Error> {
        let path = Self::cancel_path(id);
        match self.os().head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.read_error(&path, e)),
        }
    }

    pub async fn clear_cancel(&self, id: &JobId) {
        let path = Self::cancel_path(id);
        if let Err(e) = delete_if_exists(self.os().as_ref(), &path).await {
            tracing::warn!(object_key = %path, error = %e, "removing a cancel request failed")
        }
    }

    /// Records `job` as the one backing up selection `key`, unless a live job already is.
    /// A holder whose record ended or went stale is replaced, by exactly one contender when
    /// several try at once (a slot of [`exclusive`]).
    pub async fn lock_selection(&self, key: &str, job: &JobId) -> Result<SelectionLock, Error> {
        let dir = Self::selection_dir(key);
        let os = self.os().as_ref();
        let (seen, holder) = self.current_holder(&dir).await?;
        if let Some(holder) = holder {
            return Ok(SelectionLock::HeldBy(holder));
        }
        let body = bytes::Bytes::from(serde_json::json!({ "jobId": job }).to_string());
        if exclusive::take(os, &dir, seen.as_ref(), body)
            .await
            .map_err(|e| self.write_error(&dir, e))?
            .is_some()
        {
            return Ok(SelectionLock::Taken);
        }
        // Another contender won between our read and our write.
        let winner = exclusive::current(os, &dir)
            .await
            .map_err(|e| self.read_error(&dir, e))?
            .and_then(|r| Self::selection_holder_of(&r.body));
        match winner {
            Some(holder) => Ok(SelectionLock::HeldBy(holder)),
            None => Err(Error::conflict(format!(
                "selection {key} was taken and released by another job meanwhile; retry"
            ))),
        }
    }

    /// The live job holding selection `key`, if any (a look, taking nothing).
    pub async fn selection_holder(&self, key: &str) -> Result<Option<JobId>, Error> {
        Ok(self.current_holder(&Self::selection_dir(key)).await?.1)
    }

    /// The selection's current record, and the job holding it when that job still runs.
    async fn current_holder(
        &self,
        dir: &Path,
    ) -> Result<(Option<exclusive::SlotRecord>, Option<JobId>), Error> {
        let seen = exclusive::current(self.os().as_ref(), dir)
            .await
            .map_err(|e| self.read_error(dir, e))?;
        let holder = match seen
            .as_ref()
            .and_then(|r| Self::selection_holder_of(&r.body))
        {
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
        let dir = Self::selection_dir(key);
        let os = self.os().as_ref();
        let result = match exclusive::current(os, &dir).await {
            Ok(Some(record)) if Self::selection_holder_of(&record.body).as_ref() == Some(job) => {
                exclusive::release(os, &dir, record.epoch, &job.to_string()).await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(object_key = %dir, error = %e, "releasing a selection failed");
        }
    }

    fn selection_holder_of(body: &[u8]) -> Option<JobId> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value["jobId"].as_str().and_then(|s| JobId::parse(s).ok())
    }

    /// Writes `body` at `key` (under `idempotency/`) unless something is there; returns what is
    /// there when it is. For at-least-once deliveries (Pub/Sub `messageId`).
    pub async fn claim_key(
        &self,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, Error> {
        let path = Self::idempotency_path(key);
        if put_if_absent(
            self.os().as_ref(),
            &path,
            bytes::Bytes::from(body.to_string()),
        )
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
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// Replaces what is stored at idempotency `key`.
    pub async fn put_key(&self, key: &str, body: &serde_json::Value) -> Result<(), Error> {
        let path = Self::idempotency_path(key);
        self.os()
            .put(&path, PutPayload::from(body.to_string()))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    /// Removes idempotency `key` (the job it named could not start).
    pub async fn remove_key(&self, key: &str) {
        let path = Self::idempotency_path(key);
        if let Err(e) = self.os().delete(&path).await {
            tracing::warn!(object_key = %path, error = %e, "removing an idempotency record failed");
        }
    }

    /// Deletes job records, cancel requests and idempotency records last written before
    /// `cutoff`. A live job saves its record every heartbeat, so an old record belongs to a job
    /// that ended (or died) long ago. Returns how many objects went.
    pub async fn sweep(&self, cutoff: chrono::DateTime<Utc>) -> Result<usize, Error> {
        let mut old = Vec::new();
        for dir in [JOBS, IDEMPOTENCY] {
            let prefix = Path::from(dir);
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
