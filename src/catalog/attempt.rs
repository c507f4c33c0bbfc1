//! Incomplete backups: what an attempt that failed or died leaves under `backups/{id}/` (data
//! files, on `file://` the staging files of unfinished uploads, a stale claim), and removing it.
//! An attempt has no manifest, so it is never listed or restored; removing it loses nothing.

use object_store::path::Path;

use super::lease::LeaseRecord;
use super::manifest::read_manifest;
use crate::domain::BackupId;
use crate::error::Error;
use crate::storage::layout::{self, BackupObject, SharedLease};
use crate::storage::{Store, exclusive, object_error};

/// The live claim on backup `id` (a backup writing it right now), if any.
pub async fn live_claim(store: &Store, id: &BackupId) -> Result<Option<LeaseRecord>, Error> {
    let dir = layout::claim_dir(id);
    let current = exclusive::current(store.object_store().as_ref(), &dir)
        .await
        .map_err(|e| object_error("reading", &dir, e))?;
    match current {
        Some(slot) => LeaseRecord::live_in(&slot),
        None => Ok(None),
    }
}

/// The live claims on shards of the sharded backup `id` (workers writing it right now).
pub async fn live_shard_claims(store: &Store, id: &BackupId) -> Result<Vec<LeaseRecord>, Error> {
    let dir = layout::shards_dir(id);
    let os = store.object_store();
    let listed = os
        .list_with_delimiter(Some(&dir))
        .await
        .map_err(|e| object_error("listing", &dir, e))?;
    let mut live = Vec::new();
    for claim_dir in listed.common_prefixes {
        let current = exclusive::current(os.as_ref(), &claim_dir)
            .await
            .map_err(|e| object_error("reading", &claim_dir, e))?;
        if let Some(slot) = current
            && let Some(record) = LeaseRecord::live_in(&slot)?
        {
            live.push(record);
        }
    }
    Ok(live)
}

/// What to keep while removing an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The caller holds the claim (a backup cleaning up after itself or its dead predecessor).
    Claim,
    /// Nothing of the attempt: its claim is dead (a delete of the backup id).
    Nothing,
}

/// Removes what an attempt at backup `id` left; the number of objects removed. Refuses (does
/// nothing, returns 0) unless the manifest is known to be absent: when a commit's answer was
/// lost the manifest may have landed, and the files under a manifest are a complete backup.
/// Restore and base leases are never removed (they are their holders' own).
pub async fn remove_attempt(store: &Store, id: &BackupId, keep: Keep) -> Result<u64, Error> {
    if read_manifest(store, id).await?.is_some() {
        tracing::warn!(backup_id = %id, "the backup has a manifest: it is complete, nothing removed");
        return Ok(0);
    }
    let kept = |path: &Path| match layout::backup_object(id, path) {
        BackupObject::Claim => keep == Keep::Claim,
        BackupObject::Manifest
        | BackupObject::Lease(SharedLease::Restore)
        | BackupObject::Lease(SharedLease::Base) => true,
        BackupObject::Lease(SharedLease::Delete)
        | BackupObject::Plan
        | BackupObject::Shard
        | BackupObject::Drill
        | BackupObject::Data
        | BackupObject::Other => false,
    };
    store.remove_all(&layout::backup_dir(id), kept).await
}
