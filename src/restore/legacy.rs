//! Backups in the Java service's layout: no manifest, no checksums, no row counts, one directory
//! per project and dataset, and the files BigQuery's extract job wrote for the URI
//! `{table}-*.{ext}`:
//!
//! ```text
//! backups/{yyyyMMdd_HHmmss}/{project}/{dataset}/{table}-{shard}.{avro|parquet|csv|json}[.gz]
//! ```
//!
//! When a backup id has no manifest, [`legacy_manifest`] lists its directory and, if it holds
//! files of this layout, synthesizes an in-memory [`Manifest`] marked `legacy`, which the rest of
//! restore executes like any other: tables created with a schema (never autodetect), every file
//! decoded, one all-or-nothing load job per table. Only the checks that need recorded values
//! (size, SHA-256, row counts) are skipped.
//!
//! - Table names: the extension is stripped (`.avro`, `.parquet`, `.csv`, `.json`, `.csv.gz`,
//!   `.json.gz`, any case), then everything from the last `-` on is the shard, as the `{table}-*`
//!   pattern says: `my-table-000000000000.avro` → `my-table`, `a-b-x.csv` → `a-b`. A name
//!   without `-`, an unknown extension, or an object at another depth is not a file of this
//!   layout and is ignored (logged). Key parts are percent-decoded (object_store encodes
//!   non-ASCII and reserved characters) to get the real names.
//! - Format: from the extension; a request's `…importOptions.format` must match it (400).
//! - Schema: AVRO and PARQUET files carry one; it is read from the first file of each table
//!   (only its header or footer is fetched) and converted to a BigQuery schema. CSV and JSON files
//!   carry none: the request's `schemas["dataset.table"]` is required (400 listing the tables
//!   without one).
//! - Project: the directory under the backup id. `projectIdOfBackup` picks one (404 when
//!   absent); without it the backup must hold exactly one (400 otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;

use crate::bigquery::{DatasetResource, TableKind, TableResource};
use crate::catalog::encode_arrow_schema;
use crate::catalog::{
    DatasetEntry, FileEntry, FormatEntry, MANIFEST_VERSION, Manifest, ManifestStatus, TableEntry,
    Totals,
};
use crate::domain::{BackupId, RestoreSpec, SourceTable, TableRef};
use crate::error::{Error, FieldError};
use crate::exec::on_rayon;
use crate::formats::{
    Compression, EncodeOptions, Format, arrow_to_bigquery_fields, bigquery_fields_to_arrow,
    embedded_schema_at_end, read_embedded_schema, read_embedded_schema_part,
};
use crate::storage::{Store, layout, object_error};

/// Bytes fetched from the start (AVRO header) or end (PARQUET footer) of a file to read its
/// schema; the whole file is read only when the header or footer is larger.
const SCHEMA_PROBE_BYTES: u64 = 1024 * 1024;

const PROJECT_FIELD: &str = "restoreStorage.gcsOptions.projectIdOfBackup";

/// Extensions of the Java layout, longest first so `.csv.gz` wins over `.csv`.
const EXTENSIONS: [(&str, Format, Compression); 6] = [
    (".csv.gz", Format::Csv, Compression::Gzip),
    (".json.gz", Format::Json, Compression::Gzip),
    (".parquet", Format::Parquet, Compression::Snappy),
    (".avro", Format::Avro, Compression::None),
    (".csv", Format::Csv, Compression::None),
    (".json", Format::Json, Compression::None),
];

/// What a data file's name says: its table, format and (for CSV/JSON) outer compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataFileName {
    pub table: String,
    pub format: Format,
    pub compression: Compression,
}

/// Parses `{table}-{shard}.{ext}` (see the module docs); `None` for any other name.
pub(crate) fn parse_data_file_name(name: &str) -> Option<DataFileName> {
    let lower = name.to_ascii_lowercase();
    let (stem, format, compression) =
        EXTENSIONS.iter().find_map(|(ext, format, compression)| {
            lower
                .ends_with(ext)
                // ASCII lower-casing keeps byte offsets, so the stem is a prefix of `name`.
                .then(|| (name.get(..name.len() - ext.len()), *format, *compression))
        })?;
    let (table, _shard) = stem?.rsplit_once('-')?;
    (!table.is_empty()).then(|| DataFileName {
        table: table.to_string(),
        format,
        compression,
    })
}

/// One data file of the Java layout, with decoded names.
#[derive(Debug, Clone)]
struct LegacyFile {
    project: String,
    dataset: String,
    name: DataFileName,
    /// The key as listed: what to read.
    location: Path,
    size: u64,
}

/// The manifest of a Java-layout backup `id`, synthesized from its files; `None` when the
/// directory holds no file of that layout (no such backup, or an incomplete one of ours).
pub(super) async fn legacy_manifest(
    store: &Store,
    spec: &RestoreSpec,
    id: &BackupId,
) -> Result<Option<Manifest>, Error> {
    let files = list_data_files(store, id).await?;
    if files.is_empty() {
        return Ok(None);
    }
    let project = choose_project(&files, spec, id)?;
    let files: Vec<LegacyFile> = files.into_iter().filter(|f| f.project == project).collect();
    let datasets: BTreeSet<String> = files.iter().map(|f| f.dataset.clone()).collect();
    let mut tables: BTreeMap<SourceTable, Vec<LegacyFile>> = BTreeMap::new();
    for file in files {
        if spec.selects_table(&file.dataset, &file.name.table) {
            let key = SourceTable {
                dataset: file.dataset.clone(),
                table: file.name.table.clone(),
            };
            tables.entry(key).or_default().push(file);
        }
    }
    let formats = table_formats(&tables, spec)?;
    require_schemas(&formats, spec)?;

    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (source, files) in &tables {
        let format = formats
            .get(source)
            .copied()
            .ok_or_else(|| Error::internal(format!("no format for {}", name_of(source))))?;
        match table_entry(store, spec, &project, source, files, format).await? {
            Ok(entry) => entries.push(entry),
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        return Err(Error::invalid(
            format!(
                "backup {id} (Java layout) has columns that cannot be restored: {}",
                fields.join(", ")
            ),
            problems,
        ));
    }
    Ok(Some(manifest(id, &project, datasets, entries)))
}

/// Every file at `backups/{id}/{project}/{dataset}/{file}` whose name fits the layout.
async fn list_data_files(store: &Store, id: &BackupId) -> Result<Vec<LegacyFile>, Error> {
    let prefix = layout::backup_dir(id);
    let listed: Vec<_> = store
        .object_store()
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| object_error("listing", &prefix, e))?;
    let mut files = Vec::new();
    for meta in listed {
        let name = layout::java_layout_file(id, &meta.location).and_then(|key| {
            parse_data_file_name(&key.file).map(|name| (key.project, key.dataset, name))
        });
        match name {
            Some((project, dataset, name)) => files.push(LegacyFile {
                project,
                dataset,
                name,
                location: meta.location.clone(),
                size: meta.size,
            }),
            None => {
                tracing::debug!(object_key = %meta.location, "not a Java-layout data file; ignored")
            }
        }
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(files)
}

fn choose_project(
    files: &[LegacyFile],
    spec: &RestoreSpec,
    id: &BackupId,
) -> Result<String, Error> {
    let projects: BTreeSet<&str> = files.iter().map(|f| f.project.as_str()).collect();
    let listed = projects.iter().copied().collect::<Vec<_>>().join(", ");
    match (&spec.source_project, projects.len()) {
        (Some(asked), _) if projects.contains(asked.as_str()) => Ok(asked.clone()),
        (Some(asked), _) => {
            let message = format!("backup {id} (Java layout) holds project {listed}, not {asked}");
            Err(Error::not_found(message.clone())
                .with_details(vec![FieldError::new(PROJECT_FIELD, message)]))
        }
        (None, 1) => Ok(listed),
        (None, _) => Err(Error::invalid(
            format!("backup {id} (Java layout) holds several projects: {listed}"),
            vec![FieldError::new(
                PROJECT_FIELD,
                format!("is required to choose one of {listed}"),
            )],
        )),
    }
}

/// Each table's format: one per table, and the request's `format` when it names one.
fn table_formats(
    tables: &BTreeMap<SourceTable, Vec<LegacyFile>>,
    spec: &RestoreSpec,
) -> Result<BTreeMap<SourceTable, Format>, Error> {
    let asked: Option<Format> = match spec.format.as_deref() {
        None => None,
        Some(text) => Some(text.parse().map_err(|e: crate::formats::ParseNameError| {
            Error::invalid(
                "the import format is unknown",
                vec![FieldError::new(spec.format_field.clone(), e.to_string())],
            )
        })?),
    };
    let mut formats = BTreeMap::new();
    let mut problems = Vec::new();
    for (source, files) in tables {
        let found: BTreeSet<&str> = files.iter().map(|f| f.name.format.as_str()).collect();
        let Some(first) = files.first().map(|f| f.name.format) else {
            continue;
        };
        let listed = found.iter().copied().collect::<Vec<_>>().join(" and ");
        if found.len() > 1 {
            problems.push(FieldError::new(
                spec.format_field.clone(),
                format!(
                    "table {} has files in {listed}; a table's files must share one format",
                    name_of(source)
                ),
            ));
        } else if let Some(asked) = asked.filter(|a| *a != first) {
            problems.push(FieldError::new(
                spec.format_field.clone(),
                format!(
                    "is {asked}, but the files of table {} are {first}",
                    name_of(source)
                ),
            ));
        }
        formats.insert(source.clone(), first);
    }
    if problems.is_empty() {
        Ok(formats)
    } else {
        Err(Error::invalid(
            format!(
                "the backup's file formats do not match {}",
                spec.format_field
            ),
            problems,
        ))
    }
}

/// CSV and JSON files carry no schema: every such table needs a `schemas` entry.
fn require_schemas(
    formats: &BTreeMap<SourceTable, Format>,
    spec: &RestoreSpec,
) -> Result<(), Error> {
    let missing: Vec<String> = formats
        .iter()
        .filter(|(source, format)| {
            matches!(format, Format::Csv | Format::Json) && !spec.schemas.contains_key(*source)
        })
        .map(|(source, _)| name_of(source))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let listed = missing.join(", ");
    Err(Error::invalid(
        format!("CSV and JSON backups carry no schema: give schemas for {listed}"),
        vec![FieldError::new(
            "schemas",
            format!(
                "needs the BigQuery schema of {listed} (e.g. {{\"{}\": [{{\"name\": \"id\", \"type\": \"INT64\"}}]}})",
                missing.first().map(String::as_str).unwrap_or_default()
            ),
        )],
    ))
}

/// The manifest entry of one table, or the problems with its schema (as field errors).
async fn table_entry(
    store: &Store,
    spec: &RestoreSpec,
    project: &str,
    source: &SourceTable,
    files: &[LegacyFile],
    format: Format,
) -> Result<Result<TableEntry, Vec<FieldError>>, Error> {
    let first = files
        .first()
        .ok_or_else(|| Error::internal(format!("{} has no files", name_of(source))))?;
    let (fields, schema, prefix): (Value, SchemaRef, String) = match format {
        Format::Avro | Format::Parquet => {
            let schema = file_schema(store, first).await?;
            let prefix = format!("{}: {}", first.location, name_of(source));
            match arrow_to_bigquery_fields(&schema) {
                Ok(fields) => (fields, schema, prefix),
                Err(problems) => return Ok(Err(prefixed(&prefix, problems))),
            }
        }
        Format::Csv | Format::Json => {
            let fields = spec.schemas.get(source).cloned().unwrap_or_default();
            let prefix = format!("schemas[\"{}\"]", name_of(source));
            match bigquery_fields_to_arrow(&fields) {
                Ok(schema) => (fields, Arc::new(schema), prefix),
                Err(problems) => return Ok(Err(prefixed(&prefix, problems))),
            }
        }
    };
    // The file's format must hold the columns (CSV: no RECORD/REPEATED), and restore re-encodes
    // every file as PARQUET for the load job.
    for check in [format, Format::Parquet] {
        if let Err(problems) = EncodeOptions::new(check).validate(&schema) {
            return Ok(Err(prefixed(&prefix, problems)));
        }
    }
    let format_entry = FormatEntry {
        format,
        compression: first.name.compression,
        csv_header: spec.csv_header,
        csv_delimiter: spec.field_delimiter,
    };
    Ok(Ok(TableEntry {
        table: TableRef::new(project, &source.dataset, &source.table),
        kind: TableKind::Table,
        resource: TableResource::with_schema_fields(fields),
        definition: None,
        arrow_schema: Some(encode_arrow_schema(&schema)),
        rows: 0,
        bytes: files.iter().map(|f| f.size).sum(),
        files: files
            .iter()
            .map(|f| FileEntry {
                path: f.location.to_string(),
                bytes: f.size,
                rows: 0,
                sha256: String::new(),
                crc32c: None,
                plaintext_sha256: None,
                partition: None,
            })
            .collect(),
        format: Some(format_entry),
        method: None,
        partitions: None,
    }))
}

fn prefixed(prefix: &str, problems: Vec<FieldError>) -> Vec<FieldError> {
    problems
        .into_iter()
        .map(|p| FieldError::new(format!("{prefix}.{}", p.field), p.message))
        .collect()
}

/// The embedded schema of an AVRO or PARQUET file, fetching only its header or footer when
/// they fit in [`SCHEMA_PROBE_BYTES`].
async fn file_schema(store: &Store, file: &LegacyFile) -> Result<SchemaRef, Error> {
    let os = store.object_store();
    let format = file.name.format;
    let size = file.size;
    let read_error = |e: object_store::Error| object_error("reading", &file.location, e);
    let corrupt = |e: crate::formats::FormatError| {
        Error::damaged(
            file.location.to_string(),
            format!("has no readable {format} schema: {e}"),
        )
    };
    let probe = SCHEMA_PROBE_BYTES.min(size);
    if probe > 0 {
        let range = if embedded_schema_at_end(format) {
            size - probe..size
        } else {
            0..probe
        };
        let part = os
            .get_range(&file.location, range)
            .await
            .map_err(read_error)?;
        if let Some(schema) = on_rayon(move || read_embedded_schema_part(part, format, size))
            .await?
            .map_err(corrupt)?
        {
            return Ok(schema);
        }
    }
    let whole = os
        .get(&file.location)
        .await
        .map_err(read_error)?
        .bytes()
        .await
        .map_err(read_error)?;
    on_rayon(move || read_embedded_schema(&whole, format))
        .await?
        .map_err(corrupt)
}

fn manifest(
    id: &BackupId,
    project: &str,
    datasets: BTreeSet<String>,
    tables: Vec<TableEntry>,
) -> Manifest {
    let format = tables
        .first()
        .and_then(|t| t.format)
        .unwrap_or_else(|| FormatEntry::of(&EncodeOptions::new(Format::Avro)));
    let totals = Totals {
        tables: tables.len() as u64,
        rows: 0,
        bytes: tables.iter().map(|t| t.bytes).sum(),
        files: tables.iter().map(|t| t.files.len() as u64).sum(),
    };
    let time = id.snapshot_time();
    Manifest {
        manifest_version: MANIFEST_VERSION,
        backup_id: *id,
        status: ManifestStatus::Complete,
        snapshot_time: time,
        created_at: time,
        finished_at: time,
        expires_at: None,
        reason: None,
        labels: BTreeMap::new(),
        tool: "Java service layout (no manifest)".to_string(),
        request: Value::Null,
        format,
        totals,
        datasets: datasets
            .into_iter()
            .map(|dataset| DatasetEntry {
                project: project.to_string(),
                dataset,
                location: String::new(),
                resource: DatasetResource::default(),
            })
            .collect(),
        tables,
        routines: Vec::new(),
        legacy: true,
        encryption: None,
        incremental: None,
    }
}

fn name_of(source: &SourceTable) -> String {
    format!("{}.{}", source.dataset, source.table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(name: &str) -> Option<String> {
        parse_data_file_name(name).map(|n| n.table)
    }

    #[test]
    fn the_table_name_ends_at_the_last_dash() {
        assert_eq!(
            table_of("my-table-000000000000.avro").as_deref(),
            Some("my-table")
        );
        assert_eq!(
            table_of("events_2024-000000000001.parquet").as_deref(),
            Some("events_2024")
        );
        assert_eq!(
            table_of("a-b-c-d-000000000002.csv").as_deref(),
            Some("a-b-c-d")
        );
        assert_eq!(
            table_of("daily-sales-x.json").as_deref(),
            Some("daily-sales")
        );
        assert_eq!(table_of("plain-0.avro").as_deref(), Some("plain"));
        assert_eq!(
            table_of("my table ü-000000000000.AVRO").as_deref(),
            Some("my table ü")
        );
    }

    #[test]
    fn names_outside_the_layout_are_not_data_files() {
        assert_eq!(table_of("nodash.avro"), None);
        assert_eq!(table_of("-000000000000.avro"), None);
        assert_eq!(table_of("t-000000000000.txt"), None);
        assert_eq!(table_of("manifest.json"), None);
        assert_eq!(table_of("_claim.json"), None);
    }

    #[test]
    fn the_extension_gives_format_and_outer_compression() {
        let parsed = |n: &str| {
            let p = parse_data_file_name(n).unwrap();
            (p.format, p.compression)
        };
        assert_eq!(parsed("t-0.csv.gz"), (Format::Csv, Compression::Gzip));
        assert_eq!(parsed("t-0.json.GZ"), (Format::Json, Compression::Gzip));
        assert_eq!(parsed("t-0.json"), (Format::Json, Compression::None));
        assert_eq!(
            parsed("t-0.parquet"),
            (Format::Parquet, Compression::Snappy)
        );
        assert_eq!(parsed("t-0.avro"), (Format::Avro, Compression::None));
        // `.gz` alone is no format of the layout.
        assert_eq!(table_of("t-0.avro.gz"), None);
    }

    #[test]
    fn key_parts_are_percent_decoded() {
        let id = BackupId::parse("20261121_075959").unwrap();
        let part = object_store::path::PathPart::from("żółw 1-000000000000.avro");
        assert_ne!(part.as_ref(), "żółw 1-000000000000.avro");
        let key = layout::backup_dir(&id).join("p").join("d").join(part);
        let file = layout::java_layout_file(&id, &key).unwrap();
        assert_eq!(file.file, "żółw 1-000000000000.avro");
    }
}
