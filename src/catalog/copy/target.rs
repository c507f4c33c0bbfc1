//! The two ends of a copy before it writes: the source's backup (its manifest read strictly,
//! and its bytes as stored) and what the target already holds of it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{Identity, Rewritten, data_files, flattened, target_manifest};
use crate::catalog::attempt::live_claim;
use crate::catalog::lease::LeaseRecord;
use crate::catalog::manifest::{Manifest, parse_manifest};
use crate::domain::BackupId;
use crate::error::{Error, FieldError};
use crate::storage::{Store, get_if_exists, layout, object_error};

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
        (Some(found), Existing::AcceptIdentical) if found == downloaded_manifest(source)? => {
            // As the target holds it: an incremental backup's files under its own directory.
            let held = parse_manifest(path.as_ref(), &found)?;
            match missing_at(target, &held).await?.first() {
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

/// The manifest a copy with no transform (a download) writes of `source`: its own bytes, or,
/// for an incremental backup, flattened — every file under the backup's own directory.
fn downloaded_manifest(source: &SourceBackup) -> Result<Bytes, Error> {
    let moved: BTreeMap<String, Rewritten> = data_files(&source.manifest)
        .filter_map(|(_, file)| {
            let path = flattened(&source.manifest.backup_id, &file.path)?;
            Some((
                file.path.clone(),
                Rewritten {
                    path: Some(path),
                    bytes: file.bytes,
                    sha256: String::new(),
                    plaintext_sha256: None,
                },
            ))
        })
        .collect();
    target_manifest(&source.manifest_bytes, &moved, &Identity)
}

pub(super) fn being_written(target: &Store, id: &BackupId, holder: &LeaseRecord) -> Error {
    Error::conflict(format!(
        "backup {id} in {} is being written right now (its claim was refreshed at {}); retry later",
        target.uri(),
        holder.heartbeat_at.to_rfc3339()
    ))
}

/// The files of `manifest` that `store` lacks or holds with another size, as problems naming
/// each file: one listing of the backup's directory, not a request per file.
pub(super) async fn missing_at(
    store: &Store,
    manifest: &Manifest,
) -> Result<Vec<FieldError>, Error> {
    // The backup's own directory, and those of the backups an incremental one lists files of.
    let owners = std::iter::once(manifest.backup_id).chain(
        manifest
            .incremental
            .iter()
            .flat_map(|i| i.depends_on.iter().copied()),
    );
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for owner in owners {
        let dir = layout::backup_dir(&owner);
        let listed: Vec<(String, u64)> = store
            .object_store()
            .list(Some(&dir))
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .map_err(|e| store.attribute(object_error("listing", &dir, e)))?;
        sizes.extend(listed);
    }
    Ok(data_files(manifest)
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

pub(super) async fn ensure_no_manifest(target: &Store, id: &BackupId) -> Result<(), Error> {
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
