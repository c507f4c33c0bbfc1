//! Request → restore plan: the backup (by id or the latest), the tables and their target names,
//! and every refusal (missing backup, dataset or table: 404; a manifest whose files could not be
//! restored — unreadable schema or format, columns the format cannot hold: 422; a target that
//! would be overwritten against the write disposition: 409) found before any data moves.

use std::sync::Arc;

use serde::Serialize;

use super::legacy::legacy_manifest;
use crate::bigquery::{BigQuery, TableKind};
use crate::catalog::backup_ids;
use crate::catalog::keys::identities_for;
use crate::catalog::verify::{decode_options, table_schema};
use crate::catalog::{self, Manifest, TableEntry};
use crate::domain::{
    BackupId, BackupSelector, DatasetRef, RestoreSpec, TableRef, WriteDisposition,
};
use crate::encryption::Identities;
use crate::error::{Error, FieldError};
use crate::formats::{EncodeOptions, Format};
use crate::storage::Store;

/// What a restore will do: the run's input. A dry run answers with its
/// [`RestorePlan::preview`].
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub backup_id: BackupId,
    pub storage_uri: String,
    pub source_project: String,
    pub target_project: String,
    pub disposition: WriteDisposition,
    pub location: Option<String>,
    pub datasets: Vec<RestoreDataset>,
    pub tables: Vec<RestoreTable>,
    pub views: Vec<RestoreTable>,
    pub max_parallel_tables: usize,
    pub warnings: Vec<FieldError>,
    /// The backup's manifest (for a backup in the Java service's layout, the one restore
    /// synthesizes: see [`Manifest::legacy`]).
    pub manifest: Arc<Manifest>,
    /// An encrypted backup: the identities that open it (checked on one file's header while
    /// planning, so a service that cannot decrypt answers 403 before anything is created).
    pub keys: Option<Arc<Identities>>,
}

/// The dry-run answer, derived from the plan.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePreview<'a> {
    backup_id: &'a BackupId,
    storage_uri: &'a str,
    source_project: &'a str,
    target_project: &'a str,
    write_disposition: WriteDisposition,
    location: Option<&'a str>,
    datasets: &'a [RestoreDataset],
    tables: &'a [RestoreTable],
    views: &'a [RestoreTable],
    max_parallel_tables: usize,
    /// The backup is in the Java service's layout (no manifest): schemas come from the files or
    /// the request, and files are decoded but cannot be checked against checksums or row counts
    /// (`rows` of its tables are unknown and shown as 0).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    legacy: bool,
    warnings: &'a [FieldError],
}

impl RestorePlan {
    /// What a dry run answers.
    pub fn preview(&self) -> RestorePreview<'_> {
        RestorePreview {
            backup_id: &self.backup_id,
            storage_uri: &self.storage_uri,
            source_project: &self.source_project,
            target_project: &self.target_project,
            write_disposition: self.disposition,
            location: self.location.as_deref(),
            datasets: &self.datasets,
            tables: &self.tables,
            views: &self.views,
            max_parallel_tables: self.max_parallel_tables,
            legacy: self.manifest.legacy,
            warnings: &self.warnings,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDataset {
    pub source: DatasetRef,
    pub target: DatasetRef,
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTable {
    pub source: TableRef,
    pub target: TableRef,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    /// The target exists already (appended to or truncated, as the request says).
    pub target_exists: bool,
}

pub async fn plan_restore(
    bigquery: &BigQuery,
    store: &Store,
    spec: &RestoreSpec,
    default_parallel_tables: usize,
) -> Result<RestorePlan, Error> {
    let manifest = find_manifest(store, spec).await?;
    let keys = identities_for(store, &manifest).await?;
    let source_project = manifest
        .tables
        .first()
        .map(|t| t.table.project.clone())
        .or_else(|| manifest.datasets.first().map(|d| d.project.clone()))
        .unwrap_or_default();
    let mut missing = Vec::new();
    if let Some(asked) = &spec.source_project
        && !manifest.tables.is_empty()
        && asked != &source_project
    {
        missing.push(FieldError::new(
            "restoreStorage.gcsOptions.projectIdOfBackup",
            format!(
                "backup {} holds project {source_project}, not {asked}",
                manifest.backup_id
            ),
        ));
    }
    for ds in spec.datasets.iter().flatten() {
        if !manifest.datasets.iter().any(|d| &d.dataset == ds) {
            missing.push(FieldError::new(
                "bigQuery.datasetsToRestore",
                format!("dataset {ds} is not in backup {}", manifest.backup_id),
            ));
        }
    }
    for choice in &spec.tables {
        let found = manifest.tables.iter().any(|t| {
            t.table.table == choice.table
                && choice
                    .dataset
                    .as_deref()
                    .is_none_or(|d| d == t.table.dataset)
        });
        if !found {
            let name = choice
                .dataset
                .as_ref()
                .map_or(choice.table.clone(), |d| format!("{d}.{}", choice.table));
            missing.push(FieldError::new(
                "tables",
                format!("table {name} is not in backup {}", manifest.backup_id),
            ));
        }
    }
    if !missing.is_empty() {
        let text: Vec<&str> = missing.iter().map(|m| m.message.as_str()).collect();
        return Err(Error::not_found(text.join("; ")).with_details(missing));
    }

    let target_of =
        |dataset: &str| DatasetRef::new(spec.target_project.clone(), spec.target_dataset(dataset));
    let datasets: Vec<RestoreDataset> = manifest
        .datasets
        .iter()
        .filter(|d| spec.selects_dataset(&d.dataset))
        .map(|d| RestoreDataset {
            source: DatasetRef::new(d.project.clone(), d.dataset.clone()),
            target: target_of(&d.dataset),
            location: spec
                .location
                .clone()
                .or_else(|| Some(d.location.clone()).filter(|l| !l.is_empty())),
        })
        .collect();

    let mut tables = Vec::new();
    let mut views = Vec::new();
    let mut conflicts = Vec::new();
    let mut unreadable = Vec::new();
    for entry in manifest
        .tables
        .iter()
        .filter(|t| spec.selects_table(&t.table.dataset, &t.table.table))
    {
        if entry.kind.holds_data() && !entry.files.is_empty() {
            unreadable.extend(file_problems(&manifest, entry));
        }
        let target = target_of(&entry.table.dataset).table(entry.table.table.clone());
        let existing = bigquery.find_table(&target).await?;
        let is_view = matches!(entry.kind, TableKind::View | TableKind::MaterializedView);
        if let Some(existing) = &existing {
            let has_rows = existing.num_rows.unwrap_or(0) > 0;
            if spec.write_disposition == WriteDisposition::WriteEmpty && (has_rows || is_view) {
                conflicts.push(FieldError::new(
                    target.to_string(),
                    if is_view {
                        format!("view {target} exists; set writeDisposition WRITE_TRUNCATE to replace it")
                    } else {
                        format!("table {target} is not empty; set writeDisposition WRITE_TRUNCATE or WRITE_APPEND to write into it")
                    },
                ));
            }
        }
        let planned = RestoreTable {
            source: entry.table.clone(),
            target,
            rows: entry.rows,
            bytes: entry.bytes,
            files: entry.files.len(),
            target_exists: existing.is_some(),
        };
        if is_view {
            views.push(planned)
        } else {
            tables.push(planned)
        }
    }
    if !unreadable.is_empty() {
        // The damage a run would meet at its first file, found without reading any.
        let key = manifest.key();
        let text: Vec<String> = unreadable
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        let summary = Error::damaged(key, text.join("; "));
        let mut details = summary.details().to_vec();
        details.extend(unreadable);
        return Err(summary.with_details(details));
    }
    if !conflicts.is_empty() {
        let names: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
        return Err(Error::conflict(format!(
            "restore would overwrite {} (writeDisposition WRITE_EMPTY)",
            names.join(", ")
        ))
        .with_details(conflicts));
    }
    Ok(RestorePlan {
        backup_id: manifest.backup_id,
        storage_uri: store.uri().to_string(),
        source_project,
        target_project: spec.target_project.clone(),
        disposition: spec.write_disposition,
        location: spec.location.clone(),
        datasets,
        tables,
        views,
        max_parallel_tables: crate::exec::parallel_tables(
            spec.max_parallel_tables,
            default_parallel_tables,
        ),
        warnings: spec.warnings.clone(),
        manifest: Arc::new(manifest),
        keys,
    })
}

/// Why the files of `entry` could not be restored, found from the manifest alone (what the run
/// would meet before loading anything): an unreadable Arrow schema or format, a column the
/// format cannot hold or the load file cannot carry, columns other than the table schema's (the
/// load job matches them by name). Each problem is named by the table.
fn file_problems(manifest: &Manifest, entry: &TableEntry) -> Vec<FieldError> {
    let table = entry.table.to_string();
    let problem = |message: String| FieldError::new(table.clone(), message);
    let damage = |e: Error| {
        let message = e
            .details()
            .first()
            .map_or_else(|| e.message().to_string(), |d| d.message.clone());
        vec![problem(message)]
    };
    let schema = match table_schema(manifest, entry) {
        Ok(schema) => schema,
        Err(e) => return damage(e),
    };
    let options = decode_options(manifest, entry);
    let mut problems = Vec::new();
    // The files' format (compression, delimiter, columns it can hold), then the Parquet file
    // the load job reads (columns of BigQuery's types only).
    let file = EncodeOptions {
        format: options.format,
        compression: options.compression,
        csv_header: options.csv_header,
        csv_delimiter: options.csv_delimiter,
    };
    let load = EncodeOptions::new(Format::Parquet);
    for (opts, what) in [(file, "its files"), (load, "the load job's file")] {
        if let Err(found) = opts.validate(&schema) {
            problems.extend(found.into_iter().map(|p| {
                problem(format!(
                    "{what} ({}): `{}`: {}",
                    opts.format, p.field, p.message
                ))
            }));
            break;
        }
    }
    // Absent (or empty) in a resource that records no schema: nothing to compare with.
    match entry.resource.schema_fields() {
        Err(e) => problems.push(problem(format!("its recorded table resource's {e}"))),
        Ok(fields) if !fields.is_empty() => {
            let recorded: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
            let in_files: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            if recorded != in_files {
                problems.push(problem(format!(
                    "its files hold {} columns that differ from the {} of its table schema (in name or order)",
                    in_files.len(),
                    recorded.len()
                )));
            }
        }
        Ok(_) => {}
    }
    problems
}

/// The manifest of the requested backup, or of the newest complete one for `latest`. A backup
/// without a manifest may be in the Java service's layout: its manifest is then synthesized from
/// its files (for `latest`, only when no backup has a manifest).
async fn find_manifest(store: &Store, spec: &RestoreSpec) -> Result<Manifest, Error> {
    let not_found = |message: String| {
        Error::not_found(message.clone())
            .with_details(vec![FieldError::new(spec.backup_field.clone(), message)])
    };
    match &spec.backup {
        BackupSelector::Id(id) => {
            if let Some(manifest) = catalog::read_manifest(store, id).await? {
                return Ok(manifest);
            }
            legacy_manifest(store, spec, id)
                .await?
                .ok_or_else(|| not_found(format!("no complete backup {id} in {}", store.uri())))
        }
        BackupSelector::Latest => {
            let ids = backup_ids(store.object_store()).await?;
            for id in &ids {
                if let Some(manifest) = catalog::read_manifest(store, id).await? {
                    return Ok(manifest);
                }
            }
            for id in &ids {
                if let Some(manifest) = legacy_manifest(store, spec, id).await? {
                    return Ok(manifest);
                }
            }
            Err(not_found(format!("no complete backup in {}", store.uri())))
        }
    }
}
