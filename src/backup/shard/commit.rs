//! The commit of a sharded backup: once every shard has a report, the plan's manifest with each
//! table's files from the reports is written create-if-absent. Whichever process tries first
//! after the last report landed writes it; the others find it there. Decided by the store's
//! conditional put, never by timing.

use std::collections::BTreeMap;

use chrono::Utc;

use super::plan::read_plan;
use super::report::{ShardReport, read_report, reported_shards};
use crate::backup::run::totals_of;
use crate::catalog::{self, FileEntry, Manifest};
use crate::domain::{BackupId, TableRef};
use crate::error::{Error, ErrorKind};
use crate::storage::{Store, layout};

/// Where a sharded backup stands after a try at its commit.
#[derive(Debug)]
pub enum Commit {
    /// This call wrote the manifest.
    Written(Box<Manifest>),
    /// The manifest was there already (another shard, or an earlier call, wrote it).
    Committed(Box<Manifest>),
    /// These shards have not reported yet: no manifest.
    Waiting { missing: Vec<u32>, shards: u32 },
}

impl Commit {
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Self::Written(m) | Self::Committed(m) => Some(m),
            Self::Waiting { .. } => None,
        }
    }
}

/// Writes backup `id`'s manifest if every shard has reported (see the module documentation).
pub async fn commit_sharded(store: &Store, id: &BackupId) -> Result<Commit, Error> {
    if let Some(manifest) = catalog::read_manifest(store, id).await? {
        return Ok(Commit::Committed(Box::new(manifest)));
    }
    let Some(plan) = read_plan(store, id).await? else {
        return Err(Error::not_found(format!(
            "backup {id} in {} has no sharded plan ({}): it was not planned with shards, or it was deleted",
            store.uri(),
            layout::plan(id)
        )));
    };
    let reported = reported_shards(store, id).await?;
    let missing: Vec<u32> = (0..plan.shards)
        .filter(|s| reported.binary_search(s).is_err())
        .collect();
    if !missing.is_empty() {
        return Ok(Commit::Waiting {
            missing,
            shards: plan.shards,
        });
    }
    let mut reports = Vec::with_capacity(plan.shards as usize);
    for shard in 0..plan.shards {
        let report = read_report(store, id, shard).await?.ok_or_else(|| {
            Error::conflict(format!(
                "the report of shard {shard} of backup {id} went away while committing (the backup is being deleted?)"
            ))
        })?;
        reports.push(report);
    }
    let mut manifest = plan.manifest;
    complete(&mut manifest, &reports)?;
    match catalog::write_manifest(store, &manifest).await {
        Ok(()) => {
            tracing::info!(backup_id = %id, shards = plan.shards, rows = manifest.totals.rows, "sharded backup committed");
            Ok(Commit::Written(Box::new(manifest)))
        }
        // Another shard committed between our look and our write.
        Err(e) if e.kind() == ErrorKind::Conflict => match catalog::read_manifest(store, id).await?
        {
            Some(written) => Ok(Commit::Committed(Box::new(written))),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Fills the draft `manifest` with every report's files: each table's files (sorted by key),
/// rows and bytes, the totals, and the time it finished. A report about a table the plan does
/// not hold, or from another backup, is refused: the reports are not this plan's.
fn complete(manifest: &mut Manifest, reports: &[ShardReport]) -> Result<(), Error> {
    let id = manifest.backup_id;
    let mut files: BTreeMap<&TableRef, Vec<FileEntry>> = BTreeMap::new();
    for report in reports {
        let key = layout::shard_report(&id, report.shard);
        if report.backup_id != id {
            return Err(Error::damaged(
                key.as_ref(),
                format!("reports on backup {}, not {id}", report.backup_id),
            ));
        }
        for table in &report.tables {
            if !manifest.tables.iter().any(|t| t.table == table.table) {
                return Err(Error::damaged(
                    key.as_ref(),
                    format!("names table {}, which the plan does not hold", table.table),
                ));
            }
            files
                .entry(&table.table)
                .or_default()
                .extend(table.files.iter().cloned());
        }
    }
    for entry in manifest.tables.iter_mut().filter(|t| t.kind.holds_data()) {
        let mut table_files = files.remove(&entry.table).unwrap_or_default();
        table_files.sort_by(|a, b| a.path.cmp(&b.path));
        entry.rows = table_files.iter().map(|f| f.rows).sum();
        entry.bytes = table_files.iter().map(|f| f.bytes).sum();
        entry.files = table_files;
    }
    manifest.totals = totals_of(&manifest.tables);
    manifest.finished_at = Utc::now();
    Ok(())
}
