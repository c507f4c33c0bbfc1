//! Deleting backups: one by id, or every backup a keep policy lets go. The manifest goes first
//! (from then on the backup is not listed or restorable, so a crash cannot leave something that
//! looks complete), then its files. A backup a restore is reading (a live restore lease) is
//! never deleted, nor one an incremental backup lists files of (409 naming it), nor one an
//! incremental backup being written takes partitions from (a live base lease).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use super::attempt;
use super::lease::{self, Lease, LeaseTiming};
use super::list::backup_ids;
use super::manifest::read_manifest;
use super::retention::{Candidate, Decision, KeepPolicy, decide, keep_bases};
use crate::domain::BackupId;
use crate::error::{Error, ErrorKind};
use crate::storage::layout::{self, BackupObject, SharedLease};
use crate::storage::{Store, object_error};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReport {
    pub backup_id: String,
    pub files_deleted: u64,
    /// The backup had no manifest: what an attempt that failed or died left was removed.
    pub incomplete: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    pub policy: KeepPolicy,
    pub decisions: Vec<Decision>,
    pub deleted: Vec<String>,
    /// Backups that should go but could not (a storage error, a restore that started between
    /// the decision and the deletion), and backups whose manifest is damaged (no policy can
    /// judge them).
    pub skipped: Vec<Decision>,
}

/// Whether a restore is reading backup `id` right now.
pub async fn restore_in_progress(os: &Arc<dyn ObjectStore>, id: &BackupId) -> Result<bool, Error> {
    live_lease(os, id, SharedLease::Restore).await
}

/// Whether a record of `lease` on backup `id` is held by a live operation.
async fn live_lease(
    os: &Arc<dyn ObjectStore>,
    id: &BackupId,
    lease: SharedLease,
) -> Result<bool, Error> {
    let dir = layout::backup_dir(id);
    let entries: Vec<_> = os
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| object_error("listing", &dir, e))?;
    for entry in entries {
        if layout::backup_object(id, &entry.location) == BackupObject::Lease(lease)
            && lease::is_live_at(os.as_ref(), &entry.location).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes backup `id`: a complete one (409 while a restore reads it), or what an incomplete
/// attempt left (409 while it is being written); 404 when there is neither.
///
/// A delete and a restore starting at once must not both proceed: the delete first writes its
/// intent (`_deleting.json`, a short lease) and then looks for restore leases, while a restore
/// first writes its lease and then looks for an intent (`restore::run`). Whichever writes
/// second sees the other's record.
pub async fn delete_backup(store: &Store, id: &BackupId) -> Result<DeleteReport, Error> {
    delete_known(store, id, &mut KnownBases::default()).await
}

/// What is known of which backups each backup lists files of. A manifest never changes once
/// written, so one read of each serves every delete of a prune; the backup ids are listed afresh
/// for each delete, and one seen for the first time (written meanwhile) is read then.
#[derive(Debug, Default)]
struct KnownBases(HashMap<BackupId, Vec<BackupId>>);

async fn delete_known(
    store: &Store,
    id: &BackupId,
    known: &mut KnownBases,
) -> Result<DeleteReport, Error> {
    let os = store.object_store();
    match read_manifest(store, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return delete_attempt(store, id).await,
        // A damaged manifest still marks a committed backup: deleting it is how a user gets
        // rid of it.
        Err(e) if e.kind() == ErrorKind::DamagedBackup => {}
        Err(e) => return Err(e),
    }
    let intent = Lease::hold(os.clone(), *id, SharedLease::Delete, LeaseTiming::default()).await?;
    let result = delete_complete(store, id, known).await;
    intent.release().await;
    result
}

async fn delete_complete(
    store: &Store,
    id: &BackupId,
    known: &mut KnownBases,
) -> Result<DeleteReport, Error> {
    let os = store.object_store();
    if restore_in_progress(os, id).await? {
        return Err(Error::conflict(format!(
            "backup {id} is being restored; delete it once the restore has finished"
        )));
    }
    // Leases first, then manifests: an incremental backup holds its base lease until its
    // manifest is written, so one of the two looks sees it.
    if live_lease(os, id, SharedLease::Base).await? {
        return Err(Error::conflict(format!(
            "an incremental backup taking partitions from backup {id} is being written; delete it once that backup has finished"
        )));
    }
    let dependents = dependents_of(store, id, known).await?;
    if !dependents.is_empty() {
        let names: Vec<String> = dependents.iter().map(ToString::to_string).collect();
        return Err(Error::conflict(format!(
            "incremental backup{} {} depend{} on backup {id} (listing its files): delete {} first",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            if names.len() == 1 { "s" } else { "" },
            if names.len() == 1 { "it" } else { "them" },
        )));
    }
    let manifest = layout::manifest(id);
    os.delete(&manifest)
        .await
        .map_err(|e| object_error("deleting", &manifest, e))?;
    let deleted = 1 + store
        .remove_all(&layout::backup_dir(id), |path| {
            layout::backup_object(id, path) == BackupObject::Lease(SharedLease::Delete)
        })
        .await
        .map_err(|e| {
            let message = format!(
                "backup {id} is no longer listed, but removing its files failed; delete again to finish: {}",
                e.message()
            );
            e.with_message(message)
        })?;
    tracing::info!(backup_id = %id, files = deleted, "backup deleted");
    Ok(DeleteReport {
        backup_id: id.to_string(),
        files_deleted: deleted,
        incomplete: false,
    })
}

/// Removes what an incomplete attempt at `id` left, unless it is still being written.
async fn delete_attempt(store: &Store, id: &BackupId) -> Result<DeleteReport, Error> {
    if let Some(holder) = attempt::live_claim(store, id).await? {
        return Err(Error::conflict(format!(
            "backup {id} is being written right now (its claim was refreshed at {}); it cannot be deleted",
            holder.heartbeat_at.to_rfc3339()
        )));
    }
    if let Some(holder) = attempt::live_shard_claims(store, id).await?.first() {
        return Err(Error::conflict(format!(
            "a shard of sharded backup {id} is being run right now (its claim was refreshed at {}); it cannot be deleted",
            holder.heartbeat_at.to_rfc3339()
        )));
    }
    let removed = attempt::remove_attempt(store, id, attempt::Keep::Nothing).await?;
    if removed == 0 {
        return Err(Error::not_found(format!(
            "no backup {id} in {}",
            store.uri()
        )));
    }
    tracing::info!(backup_id = %id, files = removed, "an incomplete backup's files deleted");
    Ok(DeleteReport {
        backup_id: id.to_string(),
        files_deleted: removed,
        incomplete: true,
    })
}

/// The complete backups that list files of backup `id` (incremental backups taken on it or on
/// a backup that reused its files). Only newer backups are read: a base is always older than
/// the backups that depend on it (ids order by snapshot). A damaged manifest cannot say: it is
/// left out (verify and the catalog report it).
async fn dependents_of(
    store: &Store,
    id: &BackupId,
    known: &mut KnownBases,
) -> Result<Vec<BackupId>, Error> {
    let mut found = Vec::new();
    for other in backup_ids(store.object_store()).await? {
        if other <= *id {
            continue;
        }
        if let Entry::Vacant(slot) = known.0.entry(other) {
            match read_manifest(store, &other).await {
                Ok(Some(manifest)) => {
                    let bases = manifest.incremental.map(|i| i.depends_on);
                    slot.insert(bases.unwrap_or_default());
                }
                // Not complete (yet): read again next time.
                Ok(None) => continue,
                Err(e) if e.kind() == ErrorKind::DamagedBackup => continue,
                Err(e) => return Err(e),
            }
        }
        if known.0.get(&other).is_some_and(|bases| bases.contains(id)) {
            found.push(other);
        }
    }
    Ok(found)
}

/// Whether a delete of backup `id` is under way (a live `_deleting-*.json` intent).
pub async fn delete_in_progress(os: &Arc<dyn ObjectStore>, id: &BackupId) -> Result<bool, Error> {
    live_lease(os, id, SharedLease::Delete).await
}

/// Applies `policy` (and every `expiresAt`) to the complete backups of `store`. A policy that
/// keeps nothing is refused (400 naming the field) before anything is read; a backup a restore
/// is reading (a live restore lease) is kept whatever the policy says, with that reason — in a
/// dry run too, so that it shows what a real run would do.
pub async fn prune(
    store: &Store,
    policy: &KeepPolicy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<PruneReport, Error> {
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(Error::invalid("the keep policy is invalid", problems));
    }
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let mut known = KnownBases::default();
    for id in backup_ids(store.object_store()).await? {
        match read_manifest(store, &id).await {
            Ok(Some(manifest)) => {
                candidates.push(Candidate {
                    id,
                    snapshot: manifest.snapshot_time,
                    expires_at: manifest.expires_at,
                });
                let bases = manifest.incremental.map(|i| i.depends_on);
                known.0.insert(id, bases.unwrap_or_default());
            }
            Ok(None) => {}
            // Its age is unknown, so no policy can decide on it; one damaged backup must not stop
            // the pruning of the others either. Reported, left for a person to delete.
            Err(e) if e.kind() == ErrorKind::DamagedBackup => skipped.push(Decision {
                backup_id: id.to_string(),
                keep: true,
                reasons: vec![format!("{}; delete it by its id", e.message())],
            }),
            Err(e) => return Err(e),
        }
    }
    let mut decisions = decide(&candidates, policy, now);
    keep_bases(&mut decisions, &known.0);
    for decision in decisions.iter_mut().filter(|d| !d.keep) {
        let Ok(id) = BackupId::parse(&decision.backup_id) else {
            continue;
        };
        if restore_in_progress(store.object_store(), &id).await? {
            decision.keep = true;
            decision.reasons = vec![format!(
                "a restore is reading it (live restore lease): kept until the restore ends, although otherwise: {}",
                decision.reasons.join(", ")
            )];
        }
    }
    let mut deleted = Vec::new();
    if !dry_run {
        for decision in decisions.iter().filter(|d| !d.keep) {
            let Ok(id) = BackupId::parse(&decision.backup_id) else {
                continue;
            };
            match delete_known(store, &id, &mut known).await {
                Ok(_) => deleted.push(decision.backup_id.clone()),
                Err(e) => {
                    let mut d = decision.clone();
                    d.reasons.push(format!("not deleted: {e}"));
                    skipped.push(d);
                }
            }
        }
    }
    Ok(PruneReport {
        dry_run,
        policy: *policy,
        decisions,
        deleted,
        skipped,
    })
}
