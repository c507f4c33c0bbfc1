//! The files of a copy: streamed from source to target at most [`FILES_AT_ONCE`] at once, each
//! checked against its manifest entry on the way and passed through the copy's transform.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{CopyContext, CopyPlan, Rewritten};
use crate::catalog::checksum::FileHasher;
use crate::catalog::manifest::FileEntry;
use crate::catalog::verify::open_file;
use crate::error::{Error, FieldError, most_telling};
use crate::storage::object_error;
use crate::storage::upload::Upload;

/// Files copied at once. Each holds at most a few upload parts in memory
/// ([`crate::storage::upload::PARTS_IN_FLIGHT`] of 5 MiB, plus the one being filled).
pub const FILES_AT_ONCE: usize = 4;

/// What the files' copy gave: the entries a transform rewrote, and the bytes written.
pub(super) struct Copied {
    pub(super) rewritten: BTreeMap<String, Rewritten>,
    pub(super) written: u64,
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
pub(super) async fn copy_files(plan: &CopyPlan, ctx: &CopyContext) -> Result<Copied, Error> {
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
        .map(|(f, e)| FieldError::new(f.path.clone(), e.message()))
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
    // The same key at the target (it was checked to be a data file of the backup before the
    // copy began), unless it is an earlier backup's (an incremental backup's reused file: it
    // moves under this backup) or the transform renames it.
    let flat = super::flattened(&plan.backup_id, &file.path);
    let keyed = FileEntry {
        path: flat.clone().unwrap_or_else(|| file.path.clone()),
        ..file.clone()
    };
    let renamed = ctx.transform.target_path(&keyed).or(flat);
    let path = match &renamed {
        Some(renamed) => object_store::path::Path::parse(renamed)
            .map_err(|e| Error::internal(format!("{renamed}: {e}")))?,
        None => got.meta.location.clone(),
    };
    let mut upload = Upload::new(plan.target.object_store().clone(), path);
    match pump(plan, ctx, file, got.into_stream(), &mut upload, stop).await {
        Ok(rewritten) => {
            let written = upload
                .finish()
                .await
                .map_err(|e| plan.target.attribute(e))?;
            Ok(match rewritten {
                Some((sha, plaintext_sha256)) => Some(Rewritten {
                    path: renamed,
                    bytes: written,
                    sha256: hex::encode(sha.finalize()),
                    plaintext_sha256,
                }),
                // The same bytes under another key: only the path changes.
                None => renamed.map(|path| Rewritten {
                    path: Some(path),
                    bytes: file.bytes,
                    sha256: String::new(),
                    plaintext_sha256: None,
                }),
            })
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// Moves the bytes of one file into `upload`: each chunk counted and hashed against `file`,
/// then through the transform. `Ok` only when the size and checksum matched; with a transform,
/// the running SHA-256 of what it wrote (and the plaintext's SHA-256 it reported).
async fn pump(
    plan: &CopyPlan,
    ctx: &CopyContext,
    file: &FileEntry,
    mut chunks: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    upload: &mut Upload,
    stop: &CancellationToken,
) -> Result<Option<(Sha256, Option<String>)>, Error> {
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
    let mut plaintext_sha256 = None;
    if let Some(t) = transform.take() {
        let (tail, plain) = t.finish()?;
        plaintext_sha256 = plain;
        write(upload, rewritten.as_mut(), tail, plan, ctx).await?;
    }
    Ok(rewritten.map(|sha| (sha, plaintext_sha256)))
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
