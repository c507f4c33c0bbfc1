//! Leases: small records an operation writes under a backup's directory and refreshes while it
//! runs, so that other instances (sharing nothing but the store) can tell a live operation from
//! one that died.
//!
//! - The backup claim (`backups/{id}/_claim/`: the id is being written) is exclusive: a slot of
//!   [`crate::storage::exclusive`], taken over from a dead holder by exactly one instance.
//! - Restore leases (`backups/{id}/_restore-{token}.json`: the backup is being read, so it must
//!   not be deleted) and delete intents (`_deleting-{token}.json`) are shared: one record per
//!   holder, each removed only by its own holder. Keys come from [`layout`].
//!
//! Every record says how long it stays live without a refresh (`staleAfterMs`), so that
//! instances configured with different heartbeats still judge each other's records alike. A
//! record that cannot be read (not JSON, a value this build does not know, a newer version) is
//! never taken for a dead one: what holds it may be alive, so the operation that needs it gone
//! stops with an error naming the record.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::domain::BackupId;
use crate::error::Error;
use crate::storage::layout::{self, SharedLease};
use crate::storage::versioned::{self, FileError, VersionedFile};
use crate::storage::{self, exclusive, get_if_exists};

/// A record not refreshed for this many heartbeats belongs to an operation that died: one beat
/// less than a job record's 6 (`jobs::record::STALE_HEARTBEATS`), so that the claim of a job
/// that died is stale by the time the job reads FAILED, and the same request succeeds at once.
pub const STALE_AFTER_HEARTBEATS: u32 = 5;

/// Tries at releasing a claim.
const RELEASE_ATTEMPTS: u32 = 3;

/// How often a holder refreshes its lease, and so when it is judged dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub heartbeat: Duration,
}

impl LeaseTiming {
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            heartbeat: heartbeat.max(Duration::from_millis(100)),
        }
    }

    pub fn stale_after(&self) -> Duration {
        self.heartbeat * STALE_AFTER_HEARTBEATS
    }
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

/// What a lease is held for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeasePurpose {
    /// The backup is being written (the claim).
    Backup,
    /// The backup is being read by a restore.
    Restore,
    /// The backup is being deleted.
    Delete,
    /// An incremental backup is being written on the backup (it will list some of its files).
    Base,
}

impl From<SharedLease> for LeasePurpose {
    fn from(lease: SharedLease) -> Self {
        match lease {
            SharedLease::Restore => Self::Restore,
            SharedLease::Delete => Self::Delete,
            SharedLease::Base => Self::Base,
        }
    }
}

/// A lease record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// Records written before this field are version 1.
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub backup_id: BackupId,
    /// Records written by versions before this field have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<LeasePurpose>,
    /// Unique to the holder: how a holder recognises its own record.
    #[serde(default)]
    pub holder: String,
    pub heartbeat_at: DateTime<Utc>,
    /// Records written by versions before this field went stale after 5 minutes.
    #[serde(default = "legacy_stale_after_ms")]
    pub stale_after_ms: u64,
    #[serde(default)]
    pub host: String,
}

impl VersionedFile for LeaseRecord {
    const WHAT: &'static str = "lease record";
    const VERSION: u32 = 1;
}

fn legacy_stale_after_ms() -> u64 {
    300_000
}

impl LeaseRecord {
    fn new(backup_id: BackupId, purpose: LeasePurpose, holder: &str, timing: LeaseTiming) -> Self {
        Self {
            version: Self::VERSION,
            backup_id,
            purpose: Some(purpose),
            holder: holder.to_string(),
            heartbeat_at: Utc::now(),
            stale_after_ms: u64::try_from(timing.stale_after().as_millis()).unwrap_or(u64::MAX),
            host: std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into()),
        }
    }

    fn bytes(&self) -> Bytes {
        // Strings, numbers and a time: serializing cannot fail.
        versioned::encode(self).expect("a lease record always serializes")
    }

    /// The record stored at `key`, read strictly (see the module's doc for why an unreadable
    /// one is an error).
    pub fn parse(key: &impl std::fmt::Display, bytes: &[u8]) -> Result<Self, Error> {
        versioned::decode(bytes).map_err(|e| unreadable(key, e))
    }

    /// The record of a slot's holder, when that holder is alive.
    pub fn live_in(slot: &exclusive::SlotRecord) -> Result<Option<Self>, Error> {
        Ok(Some(Self::parse(&slot.path, &slot.body)?).filter(|r| r.is_live(Utc::now())))
    }

    /// Whether the holder refreshed the record recently enough to be alive.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        let stale =
            chrono::Duration::milliseconds(i64::try_from(self.stale_after_ms).unwrap_or(i64::MAX));
        now - self.heartbeat_at < stale
    }
}

/// A lease record that cannot be read: whatever holds it may be alive (a newer bq-backup, whose
/// records this one does not understand), so it is a conflict, not a free slot.
fn unreadable(key: &impl std::fmt::Display, e: FileError) -> Error {
    let remedy = if e.is_newer() {
        "upgrade this instance"
    } else {
        "remove it once no backup, restore or delete of this backup is running"
    };
    Error::conflict(format!("the lease record {key} {e}; {remedy}"))
}

/// Whether the lease record at `path` is held by a live operation.
pub async fn is_live_at(os: &dyn ObjectStore, path: &Path) -> Result<bool, Error> {
    let bytes = get_if_exists(os, path)
        .await
        .map_err(|e| storage::object_error("reading", path, e))?;
    match bytes {
        Some(bytes) => Ok(LeaseRecord::parse(path, &bytes)?.is_live(Utc::now())),
        None => Ok(false),
    }
}

/// The outcome of asking for the exclusive claim on a backup id.
pub enum Claimed {
    /// This process holds it.
    Held(Claim),
    /// A live operation holds it.
    Busy(LeaseRecord),
}

/// The exclusive claim on writing one backup id, refreshed in the background until released.
pub struct Claim {
    os: Arc<dyn ObjectStore>,
    dir: Path,
    epoch: u64,
    holder: String,
    /// Fires when the claim was lost (taken over after this process was judged dead): whoever
    /// holds this claim must stop writing and write no manifest.
    lost: CancellationToken,
    stop: CancellationToken,
    refresher: tokio::task::JoinHandle<()>,
    /// Whether a dead holder's claim was taken over (its files may be left).
    pub took_over: bool,
}

impl Claim {
    /// Claims `dir` for backup `id`: free, or held by an operation that died, it becomes ours;
    /// held by a live one, the answer is [`Claimed::Busy`]. When several processes race for the
    /// same claim exactly one gets it.
    pub async fn acquire(
        os: Arc<dyn ObjectStore>,
        dir: Path,
        id: BackupId,
        timing: LeaseTiming,
    ) -> Result<Claimed, Error> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let err = |e| storage::object_error("claiming", &dir, e);
        let seen = exclusive::current(os.as_ref(), &dir).await.map_err(err)?;
        if let Some(seen) = &seen
            && let Some(record) = LeaseRecord::live_in(seen)?
        {
            return Ok(Claimed::Busy(record));
        }
        let record = LeaseRecord::new(id, LeasePurpose::Backup, &holder, timing);
        let Some(epoch) = exclusive::take(os.as_ref(), &dir, seen.as_ref(), record.bytes())
            .await
            .map_err(err)?
        else {
            // Another process took it between our read and our write: it is alive.
            let winner = match exclusive::current(os.as_ref(), &dir).await.map_err(err)? {
                Some(slot) => LeaseRecord::parse(&slot.path, &slot.body)?,
                // ...and released it already: it was alive a moment ago.
                None => record,
            };
            return Ok(Claimed::Busy(winner));
        };
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let refresher = tokio::spawn(keep_claim(
            os.clone(),
            dir.clone(),
            epoch,
            id,
            holder.clone(),
            timing,
            lost.clone(),
            stop.clone(),
        ));
        Ok(Claimed::Held(Claim {
            os,
            dir,
            epoch,
            holder,
            lost,
            stop,
            refresher,
            took_over: seen.is_some(),
        }))
    }

    /// Cancelled when this claim was lost to another process.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// A child of `parent` that is also cancelled when this claim is lost, and the task that
    /// watches for it (it ends once the child is cancelled): the work done under a claim stops
    /// like a cancel when another process took the id over, as two writers must never mix their
    /// files under one id.
    pub fn cancel_on_loss(
        &self,
        parent: &CancellationToken,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let cancel = parent.child_token();
        let watcher = tokio::spawn({
            let (lost, cancel) = (self.lost.clone(), cancel.clone());
            async move {
                tokio::select! {
                    () = lost.cancelled() => cancel.cancel(),
                    () = cancel.cancelled() => {}
                }
            }
        });
        (cancel, watcher)
    }

    /// Checks with the store that the claim is still ours (before the commit point).
    pub async fn confirm(&self) -> Result<bool, Error> {
        exclusive::holds(self.os.as_ref(), &self.dir, self.epoch, &self.holder)
            .await
            .map_err(|e| storage::object_error("reading", &self.dir, e))
    }

    /// Stops refreshing and removes the claim, if it is still ours.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.refresher.await;
        // A bulk delete is not retried by the client after a reset: a few tries of our own,
        // since a claim left behind blocks the id until it goes stale.
        for attempt in 1..=RELEASE_ATTEMPTS {
            match exclusive::release(self.os.as_ref(), &self.dir, self.epoch, &self.holder).await {
                Ok(()) => return,
                Err(e) if attempt < RELEASE_ATTEMPTS => {
                    tracing::debug!(object_key = %self.dir, attempt, error = %e, "releasing a backup claim failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::warn!(object_key = %self.dir, error = %e, "releasing a backup claim failed; it goes stale by itself")
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn keep_claim(
    os: Arc<dyn ObjectStore>,
    dir: Path,
    epoch: u64,
    id: BackupId,
    holder: String,
    timing: LeaseTiming,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(timing.heartbeat) => {}
        }
        let record = LeaseRecord::new(id, LeasePurpose::Backup, &holder, timing);
        match exclusive::refresh(os.as_ref(), &dir, epoch, &holder, record.bytes()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(backup_id = %id, object_key = %dir, "the backup claim was taken over by another process; stopping");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(backup_id = %id, object_key = %dir, error = %e, "refreshing the backup claim failed");
            }
        }
    }
}

/// A shared lease (a restore reading a backup): one record per holder, refreshed in the
/// background until released.
pub struct Lease {
    os: Arc<dyn ObjectStore>,
    path: Path,
    stop: CancellationToken,
    refresher: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Writes a new record of `lease` on backup `id` (its key names this holder's token) and
    /// keeps it refreshed.
    pub async fn hold(
        os: Arc<dyn ObjectStore>,
        id: BackupId,
        lease: SharedLease,
        timing: LeaseTiming,
    ) -> Result<Self, Error> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let path = layout::shared_lease(&id, lease, &holder);
        let purpose = LeasePurpose::from(lease);
        let record = LeaseRecord::new(id, purpose, &holder, timing);
        os.put(&path, PutPayload::from(record.bytes()))
            .await
            .map_err(|e| storage::object_error("writing", &path, e))?;
        let stop = CancellationToken::new();
        let (task_os, task_path, task_stop) = (os.clone(), path.clone(), stop.clone());
        let refresher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = task_stop.cancelled() => return,
                    () = tokio::time::sleep(timing.heartbeat) => {}
                }
                let record = LeaseRecord::new(id, purpose, &holder, timing);
                if let Err(e) = task_os
                    .put(&task_path, PutPayload::from(record.bytes()))
                    .await
                {
                    tracing::warn!(backup_id = %id, object_key = %task_path, error = %e, "refreshing a lease failed");
                }
            }
        });
        Ok(Self {
            os,
            path,
            stop,
            refresher,
        })
    }

    /// Stops refreshing and removes the record (its name is this holder's alone).
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.refresher.await;
        if let Err(e) = storage::delete_if_exists(self.os.as_ref(), &self.path).await {
            tracing::warn!(object_key = %self.path, error = %e, "removing a lease failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[test]
    fn a_record_is_live_until_its_own_staleness_passes() {
        let id = BackupId::parse("20261121_075959").unwrap();
        let record = LeaseRecord::new(
            id,
            LeasePurpose::Backup,
            "h",
            LeaseTiming::new(Duration::from_secs(10)),
        );
        let now = record.heartbeat_at;
        assert!(record.is_live(now + chrono::Duration::seconds(49)));
        assert!(!record.is_live(now + chrono::Duration::seconds(51)));
    }

    #[test]
    fn records_written_before_versioning_still_read() {
        let key = "backups/20261121_075959/_restore-abc.json";
        // As older builds (and the integration tests) write them: no version, maybe no purpose.
        let minimal = br#"{"backupId":"20261121_075959","heartbeatAt":"2026-11-21T08:00:00Z"}"#;
        let record = LeaseRecord::parse(&key, minimal).unwrap();
        assert_eq!((record.version, record.purpose), (1, None));
        assert_eq!(record.stale_after_ms, 300_000);
        let full = br#"{"backupId":"20261121_075959","purpose":"backup","holder":"killed",
            "heartbeatAt":"2026-11-21T08:00:00Z","staleAfterMs":5000,"host":"gone"}"#;
        let record = LeaseRecord::parse(&key, full).unwrap();
        assert_eq!(record.purpose, Some(LeasePurpose::Backup));
        assert_eq!(record.stale_after_ms, 5000);
    }

    #[test]
    fn a_record_is_written_with_its_version_and_purpose() {
        let id = BackupId::parse("20261121_075959").unwrap();
        let timing = LeaseTiming::default();
        let record = LeaseRecord::new(id, LeasePurpose::Restore, "h", timing);
        let json: serde_json::Value = serde_json::from_slice(&record.bytes()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["purpose"], "restore");
        assert_eq!(json["backupId"], "20261121_075959");
        assert_eq!(LeaseRecord::parse(&"k", &record.bytes()).unwrap(), record);
    }

    #[test]
    fn an_unreadable_record_is_a_conflict_naming_it_never_a_dead_holder() {
        let key = "backups/20261121_075959/_claim/00000000000000000001.json";
        let unknown = br#"{"backupId":"20261121_075959","purpose":"compact","heartbeatAt":"2026-11-21T08:00:00Z"}"#;
        let err = LeaseRecord::parse(&key, unknown).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Conflict);
        let message = err.to_string();
        assert!(message.contains(key), "{message}");
        assert!(
            message.contains("at `purpose`: unknown variant `compact`"),
            "{message}"
        );
        let newer = br#"{"version":2,"backupId":"20261121_075959"}"#;
        let message = LeaseRecord::parse(&key, newer).unwrap_err().to_string();
        assert!(message.contains("lease record version 2"), "{message}");
        assert!(message.contains("upgrade this instance"), "{message}");
    }

    #[tokio::test]
    async fn a_claim_whose_record_cannot_be_read_is_not_taken_over() {
        let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let id = BackupId::parse("20261121_075959").unwrap();
        let dir = layout::claim_dir(&id);
        // A holder of a newer bq-backup, long silent by our reading of time: still not ours.
        let newer = Bytes::from_static(
            br#"{"version":2,"backupId":"20261121_075959","heartbeatAt":"2000-01-01T00:00:00Z"}"#,
        );
        exclusive::take(os.as_ref(), &dir, None, newer)
            .await
            .unwrap();
        let err = match Claim::acquire(os.clone(), dir.clone(), id, LeaseTiming::default()).await {
            Err(e) => e,
            Ok(_) => panic!("an unreadable claim was taken over"),
        };
        assert_eq!(err.kind(), crate::error::ErrorKind::Conflict, "{err}");
        assert!(
            err.to_string().contains("00000000000000000001.json"),
            "{err}"
        );
        assert_eq!(
            exclusive::current(os.as_ref(), &dir)
                .await
                .unwrap()
                .unwrap()
                .epoch,
            1,
            "nothing was written over it"
        );
    }

    #[tokio::test]
    async fn a_live_claim_is_busy_and_a_dead_one_is_taken_over_once() {
        let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let id = BackupId::parse("20261121_075959").unwrap();
        let dir = layout::claim_dir(&id);
        let fast = LeaseTiming::new(Duration::from_millis(100));
        let Claimed::Held(first) = Claim::acquire(os.clone(), dir.clone(), id, fast)
            .await
            .unwrap()
        else {
            panic!("a free claim is taken");
        };
        assert!(matches!(
            Claim::acquire(os.clone(), dir.clone(), id, fast)
                .await
                .unwrap(),
            Claimed::Busy(_)
        ));
        // The first holder stops refreshing (as if paused or dead) and goes stale.
        first.stop.cancel();
        tokio::time::sleep(fast.stale_after() + Duration::from_millis(100)).await;
        let Claimed::Held(second) = Claim::acquire(os.clone(), dir.clone(), id, fast)
            .await
            .unwrap()
        else {
            panic!("a dead claim is taken over");
        };
        assert!(second.took_over);
        assert!(
            !first.confirm().await.unwrap(),
            "the first holder sees it lost"
        );
        first.release().await;
        assert!(
            second.confirm().await.unwrap(),
            "the old holder's release left the new claim"
        );
        second.release().await;
        assert!(
            exclusive::current(os.as_ref(), &dir)
                .await
                .unwrap()
                .is_none()
        );
    }
}
