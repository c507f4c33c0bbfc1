//! Deleting backups: one by id, or every backup a keep policy lets go. The manifest goes first
//! (from then on the backup is not listed or restorable, so a crash cannot leave something that
//! looks complete), then its files. A backup a restore is reading (a live restore lease) is
//! never deleted.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use super::lease;
use super::list::backup_ids;
use super::manifest::read_manifest;
use super::retention::{Candidate, Decision, KeepPolicy, decide};
use crate::domain::BackupId;
use crate::error::Error;
use crate::storage::{Store, layout};

/// Restore leases are `backups/{id}/_restore-*.json`.
pub const RESTORE_LEASE_PREFIX: &str = "_restore-";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReport {
    pub backup_id: String,
    pub files_deleted: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    pub policy: KeepPolicy,
    pub decisions: Vec<Decision>,
    pub deleted: Vec<String>,
    /// Backups that should go but could not (a storage error, a restore that started between
    /// the decision and the deletion).
    pub skipped: Vec<Decision>,
}

/// Whether a restore is reading backup `id` right now.
pub async fn restore_in_progress(os: &Arc<dyn ObjectStore>, id: &BackupId) -> Result<bool, Error> {
    let dir = layout::backup_dir(id);
    let entries: Vec<_> = os
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| Error::upstream(format!("listing {dir} failed")).with_source(e))?;
    let now = Utc::now();
    for entry in entries {
        if entry
            .location
            .filename()
            .is_some_and(|f| f.starts_with(RESTORE_LEASE_PREFIX))
            && lease::is_live(lease::last_heartbeat(os, &entry.location).await, now)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes one complete backup: 404 when there is none, 409 while a restore reads it.
pub async fn delete_backup(store: &Store, id: &BackupId) -> Result<DeleteReport, Error> {
    let os = store.object_store();
    if read_manifest(store, id).await?.is_none() {
        return Err(Error::not_found(format!(
            "no complete backup {id} in {}",
            store.uri()
        )));
    }
    if restore_in_progress(os, id).await? {
        return Err(Error::conflict(format!(
            "backup {id} is being restored; delete it once the restore has finished"
        )));
    }
    let manifest = layout::manifest(id);
    os.delete(&manifest)
        .await
        .map_err(|e| Error::upstream(format!("deleting {manifest} failed")).with_source(e))?;
    let dir = layout::backup_dir(id);
    let files: Vec<Path> = os
        .list(Some(&dir))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| Error::upstream(format!("listing {dir} failed")).with_source(e))?;
    let mut deleted = 1;
    for file in files {
        os.delete(&file)
            .await
            .map_err(|e| Error::upstream(format!("backup {id} is no longer listed, but deleting {file} failed; delete again to finish")).with_source(e))?;
        deleted += 1;
    }
    tracing::info!(backup_id = %id, files = deleted, "backup deleted");
    Ok(DeleteReport {
        backup_id: id.to_string(),
        files_deleted: deleted,
    })
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
    for id in backup_ids(store.object_store()).await? {
        if let Some(manifest) = read_manifest(store, &id).await? {
            candidates.push(Candidate {
                id,
                snapshot: manifest.snapshot_time,
                expires_at: manifest.expires_at,
            });
        }
    }
    let mut decisions = decide(&candidates, policy, now);
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
    let mut skipped = Vec::new();
    if !dry_run {
        for decision in decisions.iter().filter(|d| !d.keep) {
            let Ok(id) = BackupId::parse(&decision.backup_id) else {
                continue;
            };
            match delete_backup(store, &id).await {
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
