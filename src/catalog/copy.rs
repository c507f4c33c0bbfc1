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
//! Each file passes through one [`Transform`] step between the check and the upload. Today
//! there is only [`Identity`]; a transform that changes the bytes (decrypting and encrypting for
//! other recipients) returns the new size and SHA-256 of what it wrote, and the target's
//! manifest is the source's with those entries rewritten ([`target_manifest`]).
//!
//! Depends on `storage`, `exec` (progress), `domain` and `error`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::attempt::{self, Keep, live_claim};
use super::checksum::FileHasher;
use super::lease::{Claim, Claimed, LeaseRecord, LeaseTiming};
use super::manifest::{FileEntry, Manifest, TableEntry, parse_manifest};
use super::verify::open_file;
use crate::domain::BackupId;
use crate::error::{Error, ErrorKind, FieldError, most_telling};
use crate::exec::Progress;
use crate::storage::layout::{self, BackupObject};
use crate::storage::upload::Upload;
use crate::storage::{Store, get_if_exists, object_error, put_if_absent};

/// Files copied at once. Each holds at most a few upload parts in memory
/// ([`crate::storage::upload::PARTS_IN_FLIGHT`] of 5 MiB, plus the one being filled).
pub const FILES_AT_ONCE: usize = 4;

/// A complete backup as found in the source repository: its manifest read strictly (so that
/// its files can be checked), and its bytes as stored (what the target gets).
#[derive(Debug, Clone)]
pub struct SourceBackup {
    pub manifest: Manifest,
    pub manifest_bytes: Bytes,
}

/// Reads the manifest of backup `id` in `store`: 404 when there is none (no backup, or an
/// incomplete one, or a backup in the Java service's layout, which has no manifest to copy).
pub async fn read_source(store: &Store, id: &BackupId) -> Result<SourceBackup, Error> {
    let path = layout::manifest(id);
    let bytes = get_if_exists(store.object_store().as_ref(), &path)
        .await
        .map_err(|e| store.attribute(object_error("reading", &path, e)))?
        .ok_or_else(|| Error::not_found(format!("no complete backup {id} in {}", store.uri())))?;
    let manifest = parse_manifest(path.as_ref(), &bytes)?;
    if manifest.backup_id != *id {
        return Err(Error::damaged(
            path.to_string(),
            format!("names backup {} instead", manifest.backup_id),
        ));
    }
    Ok(SourceBackup {
        manifest,
        manifest_bytes: bytes,
    })
}

/// What the target may already hold of the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing but a dead attempt (taken over and removed, as a backup does): a complete backup
    /// or a live attempt with the id is a 409. For copies between repositories.
    Refuse,
    /// Nothing at all, or the very same complete backup (the same manifest bytes, every file
    /// there with its size), in which case nothing is copied. For `download` into a directory:
    /// running it again is harmless, and whatever else is there is refused.
    AcceptIdentical,
}

/// What the target holds of the backup, as far as a copy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// The copy may write it.
    Free,
    /// It holds the same complete backup already ([`Existing::AcceptIdentical`] only).
    AlreadyThere,
}

/// Looks at the target before (and again under the claim during) a copy; refuses what `rule`
/// does not allow with a 409 that says what is in the way.
pub async fn check_target(
    target: &Store,
    source: &SourceBackup,
    rule: Existing,
) -> Result<TargetState, Error> {
    let id = &source.manifest.backup_id;
    let path = layout::manifest(id);
    let found = get_if_exists(target.object_store().as_ref(), &path)
        .await
        .map_err(|e| target.attribute(object_error("reading", &path, e)))?;
    match (found, rule) {
        (Some(found), Existing::AcceptIdentical) if found == source.manifest_bytes => {
            match missing_at(target, &source.manifest).await?.first() {
                None => Ok(TargetState::AlreadyThere),
                Some(problem) => Err(Error::conflict(format!(
                    "backup {id} in {} has the same manifest but {}: it is damaged; delete it and copy again",
                    target.uri(),
                    problem.message
                ))),
            }
        }
        (Some(_), Existing::AcceptIdentical) => Err(Error::conflict(format!(
            "{} holds a different backup {id}: a complete backup is never overwritten",
            target.uri()
        ))),
        (Some(_), Existing::Refuse) => Err(Error::conflict(format!(
            "backup {id} already exists in {}: a complete backup is never overwritten",
            target.uri()
        ))),
        (None, rule) => {
            if let Some(holder) = live_claim(target, id)
                .await
                .map_err(|e| target.attribute(e))?
            {
                return Err(being_written(target, id, &holder));
            }
            if rule == Existing::AcceptIdentical {
                let dir = layout::backup_dir(id);
                let any = target.object_store().list(Some(&dir)).next().await;
                match any {
                    Some(Ok(meta)) => {
                        return Err(Error::conflict(format!(
                            "{}/{dir} is not empty ({} and maybe more) and holds no finished copy of backup {id}: remove it (`bq-backup delete {id} --uri {}`) and try again",
                            target.uri(),
                            meta.location,
                            target.uri()
                        )));
                    }
                    Some(Err(e)) => return Err(target.attribute(object_error("listing", &dir, e))),
                    None => {}
                }
            }
            Ok(TargetState::Free)
        }
    }
}

fn being_written(target: &Store, id: &BackupId, holder: &LeaseRecord) -> Error {
    Error::conflict(format!(
        "backup {id} in {} is being written right now (its claim was refreshed at {}); retry later",
        target.uri(),
        holder.heartbeat_at.to_rfc3339()
    ))
}

/// The files of `manifest` that `store` lacks or holds with another size, as problems naming
/// each file: one listing of the backup's directory, not a request per file.
async fn missing_at(store: &Store, manifest: &Manifest) -> Result<Vec<FieldError>, Error> {
    let dir = layout::backup_dir(&manifest.backup_id);
    let sizes: HashMap<String, u64> = store
        .object_store()
        .list(Some(&dir))
        .map_ok(|meta| (meta.location.to_string(), meta.size))
        .try_collect()
        .await
        .map_err(|e| store.attribute(object_error("listing", &dir, e)))?;
    Ok(files(manifest)
        .filter_map(|(_, file)| {
            let problem = match sizes.get(&file.path) {
                None => "is missing".to_string(),
                Some(size) if *size != file.bytes => {
                    format!("has {size} bytes, the manifest says {}", file.bytes)
                }
                Some(_) => return None,
            };
            Some(FieldError::new(file.path.clone(), problem))
        })
        .collect())
}

/// Every data file of `manifest`, with its table.
pub(super) fn files(manifest: &Manifest) -> impl Iterator<Item = (&TableEntry, &FileEntry)> {
    manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .flat_map(|t| t.files.iter().map(move |f| (t, f)))
}

/// What each file passes through on its way from source to target, after its bytes were
/// checked against the source's manifest. This is where re-encryption for other recipients
/// plugs in: [`Transform::file`] starts one file's transform (decrypt with the service's
/// identity, encrypt for the new recipients), and [`Transform::edit_manifest`] records at the
/// target what changed for the backup as a whole (its `encryption` block).
pub trait Transform: Send + Sync {
    /// The transform of one file, or `None` when its bytes go to the target as they are (and
    /// its manifest entry stays as it is).
    fn file(&self, entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error>;

    /// Edits the target's manifest (as JSON, every field kept) once every file is written.
    /// Called only when some file was transformed.
    fn edit_manifest(&self, _manifest: &mut Value) -> Result<(), Error> {
        Ok(())
    }
}

/// One file's transform: bytes in (already counted against the source's checksum), bytes out.
pub trait FileTransform: Send {
    /// The output for the next piece of input (possibly empty: a transform may buffer).
    fn update(&mut self, input: Bytes) -> Result<Bytes, Error>;
    /// The rest of the output, once all input was given.
    fn finish(self: Box<Self>) -> Result<Bytes, Error>;
}

/// The copy as it is today: every file as it is, the manifest byte for byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Transform for Identity {
    fn file(&self, _entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error> {
        Ok(None)
    }
}

/// What a transform made of one file: the size and SHA-256 of the bytes written at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub bytes: u64,
    pub sha256: String,
}

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

    // Losing the claim (this process was judged dead and another took the id over) stops the
    // copy like a cancel: two writers must never mix their files under one id.
    let cancel = ctx.cancel.child_token();
    let watcher = tokio::spawn({
        let (lost, cancel) = (claim.lost().clone(), cancel.clone());
        async move {
            tokio::select! {
                () = lost.cancelled() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        }
    });
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
        files: files(manifest).count() as u64,
        bytes,
        started_at,
        finished_at: Utc::now(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Before anything is written at the target: every file the manifest records lies in the
/// backup's own directory (so that a copy can never write outside it, over another backup) and
/// is there at the source with its recorded size. Every problem is named.
async fn check_source_files(plan: &CopyPlan) -> Result<(), Error> {
    let manifest = &plan.backup.manifest;
    let mut problems: Vec<FieldError> = files(manifest)
        .filter_map(|(_, file)| {
            let outside = match Path::parse(&file.path) {
                Ok(path) => layout::backup_object(&plan.backup_id, &path) != BackupObject::Data,
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

async fn ensure_no_manifest(target: &Store, id: &BackupId) -> Result<(), Error> {
    let path = layout::manifest(id);
    let found = get_if_exists(target.object_store().as_ref(), &path)
        .await
        .map_err(|e| target.attribute(object_error("reading", &path, e)))?;
    match found {
        Some(_) => Err(Error::conflict(format!(
            "backup {id} already exists in {}: a complete backup is never overwritten",
            target.uri()
        ))),
        None => Ok(()),
    }
}

/// What the files' copy gave: the entries a transform rewrote, and the bytes written.
struct Copied {
    rewritten: BTreeMap<String, Rewritten>,
    written: u64,
}

/// One table's files as they go: started once, finished when its last file is in place.
struct TableTally {
    name: String,
    rows: u64,
    bytes: u64,
    files: u64,
    started: AtomicBool,
    left: AtomicUsize,
}

/// Copies every file, at most [`FILES_AT_ONCE`] at once. The first failure stops the others;
/// every file that failed is named in the error.
async fn copy_files(plan: &CopyPlan, ctx: &CopyContext) -> Result<Copied, Error> {
    let manifest = &plan.backup.manifest;
    let tables: Vec<TableTally> = manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .map(|t| TableTally {
            name: t.table.to_string(),
            rows: t.rows,
            bytes: t.bytes,
            files: t.files.len() as u64,
            started: AtomicBool::new(false),
            left: AtomicUsize::new(t.files.len()),
        })
        .collect();
    if let Some(progress) = &ctx.progress {
        // A table without files (an empty table) has nothing to copy.
        for table in tables.iter().filter(|t| t.files == 0) {
            progress.table_started(&table.name);
            progress.table_finished(&table.name, table.rows, table.bytes, 0);
        }
    }
    let stop = ctx.cancel.child_token();
    let work: Vec<_> = manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .zip(&tables)
        .flat_map(|(entry, tally)| entry.files.iter().map(move |file| (tally, file)))
        .map(|(tally, file)| {
            let stop = stop.clone();
            async move {
                let result = if stop.is_cancelled() {
                    Err(Error::cancelled("cancelled"))
                } else {
                    if let Some(progress) = &ctx.progress
                        && !tally.started.swap(true, Ordering::Relaxed)
                    {
                        progress.table_started(&tally.name);
                    }
                    copy_file(plan, ctx, file, &stop).await
                };
                match &result {
                    Ok(_) => {
                        if let Some(progress) = &ctx.progress
                            && tally.left.fetch_sub(1, Ordering::Relaxed) == 1
                        {
                            progress.table_finished(
                                &tally.name,
                                tally.rows,
                                tally.bytes,
                                tally.files,
                            );
                        }
                    }
                    Err(e) => {
                        if let Some(progress) = &ctx.progress
                            && !e.is_cancelled()
                        {
                            progress.table_failed(&tally.name, e);
                        }
                        stop.cancel();
                    }
                }
                (file, result)
            }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(work)
        .buffer_unordered(FILES_AT_ONCE)
        .collect()
        .await;
    if ctx.cancel.is_cancelled() {
        return Err(Error::cancelled(format!(
            "the copy of backup {} was cancelled",
            plan.backup_id
        )));
    }
    let mut copied = Copied {
        rewritten: BTreeMap::new(),
        written: 0,
    };
    let mut failures = Vec::new();
    for (file, result) in results {
        match result {
            Ok(done) => {
                copied.written += done.as_ref().map_or(file.bytes, |r| r.bytes);
                if let Some(rewritten) = done {
                    copied.rewritten.insert(file.path.clone(), rewritten);
                }
            }
            // Files stopped because another failed are not failures of their own.
            Err(e) if e.is_cancelled() => {}
            Err(e) => failures.push((file, e)),
        }
    }
    if failures.is_empty() {
        return Ok(copied);
    }
    failures.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let lead = most_telling(failures.iter().map(|(_, e)| e)).unwrap_or_default();
    let details = failures
        .iter()
        .map(|(f, e)| FieldError::new(f.path.clone(), e.to_string()))
        .collect::<Vec<_>>();
    let names = failures
        .iter()
        .map(|(f, _)| f.path.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // The source is the leading failure, so that a storage failure can still be attributed to
    // the field that named its repository.
    let (_, lead) = failures.swap_remove(lead);
    Err(Error::new(
        lead.kind(),
        format!(
            "the copy of backup {} failed for {names}: {}; nothing is listed at {}",
            plan.backup_id,
            lead.message(),
            plan.target.uri()
        ),
    )
    .with_details(details)
    .with_source(lead))
}

/// Streams one file from source to target through the transform, checking its size and
/// checksum on the way. The upload is completed only once every byte matched: a file that does
/// not is never visible at the target. `Some` when the transform rewrote it.
async fn copy_file(
    plan: &CopyPlan,
    ctx: &CopyContext,
    file: &FileEntry,
    stop: &CancellationToken,
) -> Result<Option<Rewritten>, Error> {
    let got = open_file(plan.source.object_store(), &file.path)
        .await
        .map_err(|p| plan.source.attribute(p.into_error(&file.path)))?;
    // The same key at the target: it was checked to be a data file of the backup before the
    // copy began.
    let path = got.meta.location.clone();
    let mut upload = Upload::new(plan.target.object_store().clone(), path);
    match pump(plan, ctx, file, got.into_stream(), &mut upload, stop).await {
        Ok(rewritten) => {
            let written = upload
                .finish()
                .await
                .map_err(|e| plan.target.attribute(e))?;
            Ok(rewritten.map(|sha| Rewritten {
                bytes: written,
                sha256: hex::encode(sha.finalize()),
            }))
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// Moves the bytes of one file into `upload`: each chunk counted and hashed against `file`,
/// then through the transform. `Ok` only when the size and checksum matched; with a transform,
/// the running SHA-256 of what it wrote.
async fn pump(
    plan: &CopyPlan,
    ctx: &CopyContext,
    file: &FileEntry,
    mut chunks: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    upload: &mut Upload,
    stop: &CancellationToken,
) -> Result<Option<Sha256>, Error> {
    let mut transform = ctx.transform.file(file)?;
    let mut rewritten = transform.as_ref().map(|_| Sha256::new());
    let mut hasher = FileHasher::for_entry(file);
    let mut size = 0u64;
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return Err(Error::cancelled("cancelled")),
            chunk = chunks.next() => chunk,
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| {
            plan.source
                .attribute(object_error("reading", upload.path(), e))
        })?;
        size += chunk.len() as u64;
        if size > file.bytes {
            // Stop at once: a file larger than recorded is not this backup's, however long.
            return Err(Error::damaged(
                file.path.clone(),
                format!(
                    "has more than the {} bytes its manifest records",
                    file.bytes
                ),
            ));
        }
        // Chunks are tens of KiB: hashing one takes microseconds, less than handing it to the
        // rayon pool and back.
        hasher.update(&chunk);
        let out = match transform.as_mut() {
            Some(t) => t.update(chunk)?,
            None => chunk,
        };
        write(upload, rewritten.as_mut(), out, plan, ctx).await?;
    }
    if size != file.bytes {
        return Err(Error::damaged(
            file.path.clone(),
            format!("has {size} bytes, the manifest says {}", file.bytes),
        ));
    }
    hasher
        .check()
        .map_err(|problem| Error::damaged(file.path.clone(), problem))?;
    if let Some(t) = transform.take() {
        let tail = t.finish()?;
        write(upload, rewritten.as_mut(), tail, plan, ctx).await?;
    }
    Ok(rewritten)
}

/// Hands `out` to the upload (and the transformed file's checksum), telling the progress.
async fn write(
    upload: &mut Upload,
    rewritten: Option<&mut Sha256>,
    out: Bytes,
    plan: &CopyPlan,
    ctx: &CopyContext,
) -> Result<(), Error> {
    if out.is_empty() {
        return Ok(());
    }
    if let Some(sha) = rewritten {
        sha.update(&out);
    }
    let len = out.len() as u64;
    upload
        .write(out)
        .await
        .map_err(|e| plan.target.attribute(e))?;
    if let Some(progress) = &ctx.progress {
        progress.bytes_written(len);
    }
    Ok(())
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

/// The manifest the target gets: the source's bytes as they are when no file was rewritten;
/// otherwise the source's JSON (every field kept, known or not) with each rewritten file's
/// `bytes` and `sha256` (a CRC32C gives way to the SHA-256), the tables' and the totals' bytes
/// summed again, and the transform's own edits.
pub fn target_manifest(
    source: &Bytes,
    rewritten: &BTreeMap<String, Rewritten>,
    transform: &dyn Transform,
) -> Result<Bytes, Error> {
    if rewritten.is_empty() {
        return Ok(source.clone());
    }
    let bad = |what: &str| Error::internal(format!("rewriting the manifest: {what}"));
    let mut value: Value = serde_json::from_slice(source).map_err(|e| bad(&e.to_string()))?;
    let mut total = 0u64;
    let tables = value
        .get_mut("tables")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no tables"))?;
    for table in tables.iter_mut() {
        let Some(files) = table.get_mut("files").and_then(Value::as_array_mut) else {
            continue;
        };
        let mut table_bytes = 0u64;
        for file in files.iter_mut() {
            let path = file.get("path").and_then(Value::as_str).unwrap_or_default();
            if let Some(new) = rewritten.get(path)
                && let Some(fields) = file.as_object_mut()
            {
                fields.insert("bytes".into(), new.bytes.into());
                fields.insert("sha256".into(), new.sha256.clone().into());
                fields.remove("crc32c");
            }
            table_bytes += file.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        }
        table["bytes"] = table_bytes.into();
        total += table_bytes;
    }
    if let Some(totals) = value.get_mut("totals").and_then(Value::as_object_mut) {
        totals.insert("bytes".into(), total.into());
    }
    transform.edit_manifest(&mut value)?;
    let body = serde_json::to_vec_pretty(&value).map_err(|e| bad(&e.to_string()))?;
    // What is written must read back as a manifest.
    parse_manifest("the rewritten manifest", &body)?;
    Ok(Bytes::from(body))
}
