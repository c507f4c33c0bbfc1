//! The catalog as users see it: backups listed from their manifests (a backup without one is not
//! complete and never listed), newest first, filtered and paginated; one backup in detail.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::ObjectStore;
use serde::Serialize;

use super::drills::{DrillSummary, read_drills};
use super::manifest::{Manifest, read_manifest};
use crate::domain::BackupId;
use crate::error::{Error, ErrorKind};
use crate::formats::{Compression, Format};
use crate::storage::{Store, layout, object_error};

/// Manifests read at once while listing.
const LIST_CONCURRENCY: usize = 8;
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Which backups to list. Every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub project: Option<String>,
    pub dataset: Option<String>,
    /// `key` (present) or `key` = value.
    pub label: Option<(String, Option<String>)>,
    /// `COMPLETE` (not expired) or `EXPIRED`.
    pub status: Option<String>,
}

/// One backup in a listing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    pub backup_id: String,
    /// `COMPLETE`, or `EXPIRED` once `expiresAt` has passed.
    pub status: &'static str,
    pub snapshot_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub format: Format,
    pub compression: Compression,
    pub datasets: Vec<String>,
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
    /// An incremental backup: the backup it was taken against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The newest restore drill of the backup, if it was ever drilled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillSummary>,
}

impl BackupSummary {
    pub fn of(manifest: &Manifest, now: DateTime<Utc>) -> Self {
        Self {
            backup_id: manifest.backup_id.to_string(),
            status: if manifest.expires_at.is_some_and(|e| e <= now) {
                "EXPIRED"
            } else {
                "COMPLETE"
            },
            snapshot_time: manifest.snapshot_time,
            created_at: manifest.created_at,
            finished_at: manifest.finished_at,
            expires_at: manifest.expires_at,
            reason: manifest.reason.clone(),
            labels: manifest.labels.clone(),
            format: manifest.format.format,
            compression: manifest.format.compression,
            datasets: manifest
                .datasets
                .iter()
                .map(|d| format!("{}.{}", d.project, d.dataset))
                .collect(),
            tables: manifest.totals.tables,
            rows: manifest.totals.rows,
            bytes: manifest.totals.bytes,
            files: manifest.totals.files,
            base: manifest.incremental.as_ref().map(|i| i.base.to_string()),
            last_drill: None,
        }
    }

    fn matches(&self, manifest: &Manifest, filter: &ListFilter) -> bool {
        let project_ok = filter
            .project
            .as_ref()
            .is_none_or(|p| manifest.datasets.iter().any(|d| &d.project == p));
        let dataset_ok = filter
            .dataset
            .as_ref()
            .is_none_or(|ds| manifest.datasets.iter().any(|d| &d.dataset == ds));
        let label_ok =
            filter
                .label
                .as_ref()
                .is_none_or(|(k, v)| match (manifest.labels.get(k), v) {
                    (Some(_), None) => true,
                    (Some(actual), Some(wanted)) => actual == wanted,
                    (None, _) => false,
                });
        let status_ok = filter
            .status
            .as_ref()
            .is_none_or(|s| s.eq_ignore_ascii_case(self.status));
        project_ok && dataset_ok && label_ok && status_ok
    }
}

/// A page of a listing; `next_page_token` continues it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPage {
    pub backups: Vec<BackupSummary>,
    pub next_page_token: Option<String>,
    /// Backups met on this page whose manifest cannot be read (not valid JSON, an unknown
    /// version or value): they are not listed as backups, but one of them must neither hide
    /// the others nor go unnoticed. Filters cannot apply to them. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedBackup>,
}

/// A backup whose manifest exists but cannot be read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DamagedBackup {
    pub backup_id: String,
    /// What is wrong, naming the manifest's key.
    pub problem: String,
}

/// Backup ids under `backups/`, newest first (manifest or not).
pub async fn backup_ids(os: &Arc<dyn ObjectStore>) -> Result<Vec<BackupId>, Error> {
    let root = layout::backups_root();
    let listing = os
        .list_with_delimiter(Some(&root))
        .await
        .map_err(|e| object_error("listing", &root, e))?;
    // Directories that are not backup ids are not backups (a person's notes, another tool's).
    let mut ids: Vec<BackupId> = listing
        .common_prefixes
        .iter()
        .filter_map(layout::backup_id_of)
        .collect();
    ids.sort();
    ids.reverse();
    Ok(ids)
}

/// Complete backups matching `filter`, newest first, `page_size` at a time after `page_token`
/// (the last id of the previous page).
pub async fn list_backups(
    store: &Store,
    filter: &ListFilter,
    page_size: usize,
    page_token: Option<&BackupId>,
    now: DateTime<Utc>,
) -> Result<BackupPage, Error> {
    let ids: Vec<BackupId> = backup_ids(store.object_store())
        .await?
        .into_iter()
        .filter(|id| page_token.is_none_or(|t| id < t))
        .collect();
    let mut backups = Vec::new();
    let mut last = None;
    let reads: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let store = store.clone();
            async move { read_manifest(&store, &id).await.map_err(|e| (id, e)) }
        })
        .collect();
    let mut reads = futures::stream::iter(reads).buffered(LIST_CONCURRENCY);
    let mut more = false;
    let mut damaged = Vec::new();
    // Damaged backups met after the last listed one come again on the next page.
    let mut damaged_before_last = 0;
    while let Some(read) = reads.next().await {
        let manifest = match read {
            Ok(Some(manifest)) => manifest,
            Ok(None) => continue,
            Err((id, e)) if e.kind() == ErrorKind::DamagedBackup => {
                damaged.push(DamagedBackup {
                    backup_id: id.to_string(),
                    problem: e.message().to_string(),
                });
                continue;
            }
            Err((_, e)) => return Err(e),
        };
        let summary = BackupSummary::of(&manifest, now);
        if !summary.matches(&manifest, filter) {
            continue;
        }
        if backups.len() == page_size {
            more = true;
            damaged.truncate(damaged_before_last);
            break;
        }
        last = Some(manifest.backup_id);
        backups.push(summary);
        damaged_before_last = damaged.len();
    }
    for summary in &mut backups {
        if let Ok(id) = BackupId::parse(&summary.backup_id) {
            summary.last_drill = read_drills(store, &id, 1)
                .await?
                .first()
                .map(|d| d.summary());
        }
    }
    Ok(BackupPage {
        backups,
        next_page_token: if more {
            last.map(|id| id.to_string())
        } else {
            None
        },
        damaged,
    })
}
