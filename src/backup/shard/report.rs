//! A shard's report (`backups/{id}/shards/{shard:05}.json`): the files it wrote, per table,
//! with their sizes, checksums and rows. Written once the shard's last file is complete; its
//! presence is what tells the commit that the shard is done.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::catalog::FileEntry;
use crate::domain::{BackupId, TableRef};
use crate::error::Error;
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{Store, create_file, layout, object_error, read_file};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardReport {
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub backup_id: BackupId,
    pub shard: u32,
    pub shards: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The tables the shard read streams of, each with the files it wrote (none for streams
    /// that held no rows).
    pub tables: Vec<ShardTable>,
}

impl VersionedFile for ShardReport {
    const WHAT: &'static str = "shard report";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardTable {
    pub table: TableRef,
    pub files: Vec<FileEntry>,
}

impl ShardReport {
    pub fn rows(&self) -> u64 {
        self.files().map(|f| f.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.files().map(|f| f.bytes).sum()
    }

    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.tables.iter().flat_map(|t| &t.files)
    }
}

/// Writes `report`, create-if-absent; `false` when the shard has a report already.
pub async fn write_report(store: &Store, report: &ShardReport) -> Result<bool, Error> {
    create_file(
        store,
        &layout::shard_report(&report.backup_id, report.shard),
        report,
    )
    .await
}

pub async fn read_report(
    store: &Store,
    id: &BackupId,
    shard: u32,
) -> Result<Option<ShardReport>, Error> {
    read_file(store, &layout::shard_report(id, shard)).await
}

/// The shards of backup `id` that have a report, in order.
pub async fn reported_shards(store: &Store, id: &BackupId) -> Result<Vec<u32>, Error> {
    let dir = layout::shards_dir(id);
    let mut shards: Vec<u32> = store
        .object_store()
        .list(Some(&dir))
        .map_ok(|meta| layout::shard_of_report(id, &meta.location))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| object_error("listing", &dir, e))?
        .into_iter()
        .flatten()
        .collect();
    shards.sort_unstable();
    Ok(shards)
}
