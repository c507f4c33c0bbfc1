//! Backup repositories: opening one (confined as the caller's [`StorageConfig`] says) and its
//! catalog — list, show, verify, delete and prune — with every storage error naming the field
//! that gave the repository's URI. Needs no BigQuery client: the CLI's catalog commands run
//! without one.

use chrono::Utc;

use crate::catalog::prune::{DeleteReport, PruneReport, delete_backup, prune};
use crate::catalog::retention::KeepPolicy;
use crate::catalog::{self, BackupPage, ListFilter, Manifest, Sample, VerifyReport};
use crate::domain::{BackupId, StorageUri};
use crate::error::{Error, FieldError};
use crate::storage::{Access, StorageConfig, Store};

/// Opens repositories and answers for their catalog. Cheap to clone.
#[derive(Clone)]
pub struct Repositories {
    storage: StorageConfig,
}

impl Repositories {
    pub fn new(storage: StorageConfig) -> Self {
        Self { storage }
    }

    /// How repositories are opened (and confined).
    pub fn storage(&self) -> &StorageConfig {
        &self.storage
    }

    /// Opens the repository whose URI the caller gave in `field`: refused storage and every
    /// later storage error name that field (see [`Store::attribute`]).
    pub fn open(&self, uri: &StorageUri, field: &str, access: Access) -> Result<Store, Error> {
        match self.storage.open(uri, field, access) {
            Ok(store) => Ok(store),
            Err(e) => {
                let e = Error::from(e);
                if e.details().iter().any(|d| d.field == field) {
                    return Err(e);
                }
                let detail = FieldError::new(field, e.message());
                Err(e.with_detail(detail))
            }
        }
    }

    /// One page of the complete backups of `store`, newest first.
    pub async fn list(
        &self,
        store: &Store,
        filter: &ListFilter,
        page_size: usize,
        page_token: Option<&BackupId>,
    ) -> Result<BackupPage, Error> {
        catalog::list_backups(store, filter, page_size, page_token, Utc::now())
            .await
            .map_err(|e| store.attribute(e))
    }

    /// The manifest of complete backup `id`: 404 when there is none.
    pub async fn show(&self, store: &Store, id: &BackupId) -> Result<Manifest, Error> {
        catalog::read_manifest(store, id)
            .await
            .map_err(|e| store.attribute(e))?
            .ok_or_else(|| Error::not_found(format!("no complete backup {id} in {}", store.uri())))
    }

    /// Re-reads every file of backup `id` (or a `sample` of them) against its manifest.
    pub async fn verify(
        &self,
        store: &Store,
        id: &BackupId,
        sample: Option<Sample>,
    ) -> Result<VerifyReport, Error> {
        let manifest = self.show(store, id).await?;
        catalog::verify_backup(store, &manifest, sample)
            .await
            .map_err(|e| store.attribute(e))
    }

    /// Deletes backup `id` (see [`delete_backup`]).
    pub async fn delete(&self, store: &Store, id: &BackupId) -> Result<DeleteReport, Error> {
        delete_backup(store, id)
            .await
            .map_err(|e| store.attribute(e))
    }

    /// Deletes what `policy` lets go (only lists it with `dry_run`).
    pub async fn prune(
        &self,
        store: &Store,
        policy: &KeepPolicy,
        dry_run: bool,
    ) -> Result<PruneReport, Error> {
        prune(store, policy, dry_run, Utc::now())
            .await
            .map_err(|e| store.attribute(e))
    }
}
