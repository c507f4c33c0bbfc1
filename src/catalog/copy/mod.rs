//! Copying a complete backup from one repository to another (`POST /api/v1/backups/{id}:copy`,
//! `bq-backup copy`, `download`, `upload`): the same backup id, the same keys, the manifest
//! carried over byte for byte — fields this build does not know included — and written last.
//!
//! The target is written the way a backup writes a repository: under the backup's claim
//! ([`super::lease::Claim`]), so that a copy that fails, is cancelled or dies is an incomplete
//! attempt ([`super::attempt`]): never listed, its files removed on failure or cancel, and what a
//! killed copy leaves removed by the next attempt at the id or by `DELETE` of the id, like an
//! interrupted backup's.
//!
//! Every file streams from source to target (one GET, a put or a multipart upload of bounded
//! parts: [`crate::storage::upload`]), at most [`FILES_AT_ONCE`] at once, and is checked on the
//! way against its manifest entry: its size, and its checksum (SHA-256, or CRC32C for files
//! BigQuery wrote) computed over the bytes as they pass. A file that does not match is never
//! completed at the target, and the copy fails naming it. Files are opaque bytes: the copy
//! neither decodes nor re-encodes them.
//!
//! Each file passes through one [`Transform`] step between the check and the upload:
//! [`Identity`], or [`Encrypting`] (a copy that encrypts for other recipients), which returns the
//! new size and SHA-256 of what it wrote and of its plaintext; the target's manifest is the
//! source's with those entries rewritten and its `encryption` block set ([`target_manifest`]).
//!
//! Depends on `storage`, `encryption`, `exec` (progress), `domain` and `error`. Laid out as: `target` (the
//! two ends before anything is written), `files` (the streamed, checked files), `transform`
//! (the per-file step and the target manifest); the run and its commit here.

mod files;
mod target;
#[cfg(test)]
mod tests;
mod transform;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use files::FILES_AT_ONCE;
pub use target::{Existing, SourceBackup, TargetState, check_target, read_source};
pub use transform::{Encrypting, FileTransform, Identity, Rewritten, Transform, target_manifest};

use self::files::{Copied, copy_files};
use self::target::{being_written, ensure_no_manifest, missing_at};
use super::attempt::{self, Keep};
use super::lease::{Claim, Claimed, LeaseTiming};
use super::manifest::{FileEntry, Manifest, TableEntry};
use crate::domain::BackupId;
use crate::error::{Error, ErrorKind, FieldError};
use crate::exec::Progress;
use crate::storage::layout::{self, BackupObject};
use crate::storage::{Store, object_error, put_if_absent};

/// A copy, checked and ready to run.
pub struct CopyPlan {
    pub backup_id: BackupId,
    pub source: Store,
    pub target: Store,
    pub backup: SourceBackup,
    pub existing: Existing,
}

/// What a copy runs with.
#[derive(Clone)]
pub struct CopyContext {
    /// Cancelled to stop the copy (job cancel, shutdown): no manifest is written at the target.
    pub cancel: CancellationToken,
    /// Told as each table starts and ends, and of every byte written (job records, progress
    /// bars).
    pub progress: Option<Arc<dyn Progress>>,
    /// How often the target's claim is refreshed (and so when a dead copy's claim goes stale).
    pub lease: LeaseTiming,
    pub transform: Arc<dyn Transform>,
}

/// The answer to a finished copy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub backup_id: String,
    pub status: &'static str,
    pub from: String,
    pub to: String,
    /// The manifest at the target.
    pub manifest: String,
    /// The target already held this very backup (a download run again): nothing was copied.
    pub already_present: bool,
    pub tables: u64,
    pub files: u64,
    /// Bytes written at the target.
    pub bytes: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
}

/// Runs `plan`: claims the id at the target, copies and checks every file, writes the manifest
/// last; on failure or cancel removes what it wrote before releasing the claim.
pub async fn run_copy(plan: &CopyPlan, ctx: &CopyContext) -> Result<CopyReport, Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    let id = plan.backup_id;
    if check_target(&plan.target, &plan.backup, plan.existing).await? == TargetState::AlreadyThere {
        tracing::info!(backup_id = %id, "the target holds this backup already; nothing copied");
        return Ok(report(plan, started, started_at, 0, true));
    }
    check_source_files(plan).await?;
    let claim = claim(plan, ctx).await?;
    tracing::info!(backup_id = %id, from = %plan.source.uri(), to = %plan.target.uri(), "copy started");

    let (cancel, watcher) = claim.cancel_on_loss(&ctx.cancel);
    let run = CopyContext {
        cancel: cancel.clone(),
        ..ctx.clone()
    };
    let result = match copy_files(plan, &run).await {
        Ok(copied) => commit(plan, &run, &claim, &copied).await.map(|()| copied),
        Err(e) => Err(e),
    };
    cancel.cancel();
    let _ = watcher.await;
    match result {
        Ok(copied) => {
            claim.release().await;
            let bytes = copied.written;
            tracing::info!(backup_id = %id, bytes, "copy complete");
            Ok(report(plan, started, started_at, bytes, false))
        }
        Err(e) => {
            tracing::warn!(backup_id = %id, error = %e, "copy failed; removing its files at the target");
            // The claim is released only after the cleanup: until then nothing else may start
            // writing the same id there.
            if !claim.lost().is_cancelled()
                && let Err(e) = attempt::remove_attempt(&plan.target, &id, Keep::Claim).await
            {
                tracing::warn!(backup_id = %id, error = %e, "removing a failed copy's files failed; delete the backup id at the target to remove them");
            }
            claim.release().await;
            Err(e)
        }
    }
}

fn report(
    plan: &CopyPlan,
    started: Instant,
    started_at: DateTime<Utc>,
    bytes: u64,
    already_present: bool,
) -> CopyReport {
    let manifest = &plan.backup.manifest;
    CopyReport {
        backup_id: plan.backup_id.to_string(),
        status: "SUCCEEDED",
        from: plan.source.uri().to_string(),
        to: plan.target.uri().to_string(),
        manifest: format!(
            "{}/{}",
            plan.target.uri(),
            layout::manifest(&plan.backup_id)
        ),
        already_present,
        tables: manifest
            .tables
            .iter()
            .filter(|t| t.kind.holds_data())
            .count() as u64,
        files: data_files(manifest).count() as u64,
        bytes,
        started_at,
        finished_at: Utc::now(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Before anything is written at the target: every file the manifest records lies in the
/// backup's own directory, or, for an incremental backup, in that of a backup it depends on
/// (so that a copy can never write outside the backup's directory at the target: see
/// [`flattened`]), and is there at the source with its recorded size. Every problem is named.
async fn check_source_files(plan: &CopyPlan) -> Result<(), Error> {
    let manifest = &plan.backup.manifest;
    let owners: Vec<BackupId> = std::iter::once(plan.backup_id)
        .chain(
            manifest
                .incremental
                .iter()
                .flat_map(|i| i.depends_on.iter().copied()),
        )
        .collect();
    let mut problems: Vec<FieldError> = data_files(manifest)
        .filter_map(|(_, file)| {
            let outside = match Path::parse(&file.path) {
                Ok(path) => !owners
                    .iter()
                    .any(|owner| layout::backup_object(owner, &path) == BackupObject::Data),
                Err(_) => true,
            };
            outside.then(|| {
                FieldError::new(
                    file.path.clone(),
                    format!(
                        "is not a data file of backup {} (`backups/{}/…/…/…/file`)",
                        plan.backup_id, plan.backup_id
                    ),
                )
            })
        })
        .collect();
    if problems.is_empty() {
        problems = missing_at(&plan.source, manifest).await?;
    }
    let Some(first) = problems.first().cloned() else {
        return Ok(());
    };
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (and {} more files)", n - 1),
    };
    Err(Error::new(
        ErrorKind::DamagedBackup,
        format!(
            "backup {} in {} cannot be copied: {} {}{more}; nothing was written at the target",
            plan.backup_id,
            plan.source.uri(),
            first.field,
            first.message
        ),
    )
    .with_details(problems))
}

async fn claim(plan: &CopyPlan, ctx: &CopyContext) -> Result<Claim, Error> {
    let target = &plan.target;
    let id = plan.backup_id;
    let claim = match Claim::acquire(
        target.object_store().clone(),
        layout::claim_dir(&id),
        id,
        ctx.lease,
    )
    .await
    .map_err(|e| target.attribute(e))?
    {
        Claimed::Held(claim) => claim,
        Claimed::Busy(holder) => return Err(being_written(target, &id, &holder)),
    };
    // Committed between the first look and the claim (a writer that finished meanwhile).
    if let Err(e) = ensure_no_manifest(target, &id).await {
        claim.release().await;
        return Err(e);
    }
    if claim.took_over {
        tracing::warn!(backup_id = %id, "an earlier attempt at this backup id died at the target; removing its files");
        if let Err(e) = attempt::remove_attempt(target, &id, Keep::Claim).await {
            claim.release().await;
            return Err(target.attribute(e));
        }
    }
    Ok(claim)
}

/// Writes the manifest at the target, create-if-absent: the commit point of the copy.
async fn commit(
    plan: &CopyPlan,
    ctx: &CopyContext,
    claim: &Claim,
    copied: &Copied,
) -> Result<(), Error> {
    let body = target_manifest(
        &plan.backup.manifest_bytes,
        &copied.rewritten,
        ctx.transform.as_ref(),
    )?;
    if ctx.cancel.is_cancelled() {
        return Err(Error::cancelled(format!(
            "the copy of backup {} was cancelled",
            plan.backup_id
        )));
    }
    if !claim
        .confirm()
        .await
        .map_err(|e| plan.target.attribute(e))?
    {
        return Err(Error::conflict(format!(
            "the copy of backup {} lost its claim at {} to another writer of the same id: no manifest was written",
            plan.backup_id,
            plan.target.uri()
        )));
    }
    let path = layout::manifest(&plan.backup_id);
    // The body is the source's manifest, not unique to this copy as put_if_absent asks: a
    // lost answer read back as these very bytes may be another copy's of the same backup, whose
    // files are the same checked bytes — the same complete backup either way. Writers of the id
    // are kept apart by the claim.
    match put_if_absent(plan.target.object_store().as_ref(), &path, body).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::conflict(format!(
            "backup {} already exists in {}",
            plan.backup_id,
            plan.target.uri()
        ))),
        Err(e) => Err(plan.target.attribute(object_error("writing", &path, e))),
    }
}

/// The key a file of the backup gets at the target: its own, or, for a file an incremental
/// backup lists from an earlier backup, the same name under this backup's directory. The copy of
/// an incremental backup is so a whole backup of its own at the target (its manifest loses its
/// `incremental` block): the target need not hold the chain, and nothing there depends on a
/// backup it may not have. Names cannot clash: each partition's files come from one backup.
pub(super) fn flattened(backup_id: &BackupId, path: &str) -> Option<String> {
    let key = Path::parse(path).ok()?;
    let owner = layout::backup_of_key(&key)?;
    if owner == *backup_id {
        return None;
    }
    let rest = key.prefix_match(&layout::backup_dir(&owner))?;
    let mut flat = layout::backup_dir(backup_id);
    for part in rest {
        flat = flat.join(part);
    }
    Some(flat.to_string())
}

/// Every data file of `manifest`, with its table.
pub(super) fn data_files(manifest: &Manifest) -> impl Iterator<Item = (&TableEntry, &FileEntry)> {
    manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .flat_map(|t| t.files.iter().map(move |f| (t, f)))
}
