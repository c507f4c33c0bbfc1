//! Selection → plan: which datasets and tables, at which snapshot time, under which backup id,
//! in which format. Everything the request names is checked to exist here, before any data moves.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::bigquery::model::{Table, TableFieldSchema};
use crate::bigquery::{BigQuery, TableKind};
use crate::domain::{
    BackupId, BackupSpec, DatasetRef, DatasetSelection, StorageUri, TableRef, TableSelector,
};
use crate::error::{Error, ErrorKind, FieldError};
use crate::formats::{Compression, EncodeOptions, Format};

/// Metadata calls made at once while planning.
const PLAN_CONCURRENCY: usize = 8;

/// What a backup will do. Serialised as the dry-run answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPlan {
    pub backup_id: BackupId,
    pub snapshot_time: DateTime<Utc>,
    pub storage_uri: String,
    #[serde(skip)]
    pub storage: StorageUri,
    #[serde(skip)]
    pub encode: EncodeOptions,
    pub format: Format,
    pub compression: Compression,
    pub file_size_bytes: u64,
    pub max_parallel_tables: usize,
    pub overwrite: bool,
    pub reason: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub datasets: Vec<PlannedDataset>,
    /// Tables whose data is exported.
    pub tables: Vec<PlannedTable>,
    /// Views and materialized views: recorded as definitions, not exported.
    pub definitions: Vec<PlannedTable>,
    /// Routines of the selected datasets: recorded as definitions.
    pub routines: Vec<PlannedRoutine>,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    pub warnings: Vec<FieldError>,
    /// The request as received (for the manifest).
    #[serde(skip)]
    pub request: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDataset {
    pub dataset: DatasetRef,
    pub location: String,
    #[serde(skip)]
    pub resource: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRoutine {
    pub dataset: DatasetRef,
    pub routine: String,
    #[serde(skip)]
    pub resource: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTable {
    pub table: TableRef,
    pub kind: TableKind,
    pub rows: u64,
    pub bytes: u64,
    #[serde(skip)]
    pub resource: Table,
}

/// Checks the format choice, resolves the selection against BigQuery, and fixes the snapshot
/// time and backup id. Every problem of the request is reported at once (400), every named
/// dataset or table that does not exist at once (404).
pub async fn plan_backup(
    bigquery: &BigQuery,
    spec: BackupSpec,
    encode: EncodeOptions,
    request: serde_json::Value,
    now: DateTime<Utc>,
    default_parallel_tables: usize,
) -> Result<BackupPlan, Error> {
    let snapshot_time = spec.snapshot_time().unwrap_or(now);
    if let Some(problem) = spec.snapshot_window_error(now) {
        return Err(Error::invalid(
            "the snapshot time is outside BigQuery's time-travel window",
            vec![problem],
        ));
    }

    let entries = match &spec.datasets {
        DatasetSelection::All => bigquery
            .list_datasets(&spec.project)
            .await?
            .into_iter()
            .map(|d| {
                (
                    d.dataset,
                    TableSelector::all(),
                    "bigQuery.projectId".to_string(),
                )
            })
            .collect::<Vec<_>>(),
        DatasetSelection::Listed(list) => list
            .iter()
            .map(|e| (e.dataset.clone(), e.tables.clone(), e.field.clone()))
            .collect(),
    };

    let mut missing = Vec::new();
    let mut datasets = Vec::new();
    let mut routines = Vec::new();
    let mut selected: Vec<TableRef> = Vec::new();
    for (dataset, selector, field) in &entries {
        let resource = match bigquery.get_dataset(dataset).await {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                missing.push(FieldError::new(
                    format!("{field}.datasetName"),
                    format!("dataset {dataset} does not exist"),
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let tables = bigquery.list_tables(dataset).await?;
        for name in selector.named_tables() {
            if !tables.iter().any(|t| &t.table.table == name) {
                missing.push(FieldError::new(
                    format!("{field}.tables"),
                    format!("table {dataset}.{name} does not exist"),
                ));
            }
        }
        selected.extend(
            tables
                .into_iter()
                .filter(|t| selector.matches(&t.table.table))
                .map(|t| t.table),
        );
        for routine in bigquery.list_routines(dataset).await? {
            let name = routine["routineReference"]["routineId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            routines.push(PlannedRoutine {
                dataset: dataset.clone(),
                routine: name,
                resource: routine,
            });
        }
        datasets.push(PlannedDataset {
            dataset: dataset.clone(),
            location: resource.location.clone(),
            resource: serde_json::to_value(&resource)
                .map_err(|e| Error::internal(format!("dataset resource: {e}")))?,
        });
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|m| m.message.as_str()).collect();
        return Err(Error::not_found(names.join("; ")).with_details(missing));
    }

    let lookups: Vec<_> = selected
        .iter()
        .cloned()
        .map(|t| {
            let bigquery = bigquery.clone();
            async move { bigquery.get_table(&t).await }
        })
        .collect();
    let resources: Vec<Table> = futures::stream::iter(lookups)
        .buffered(PLAN_CONCURRENCY)
        .try_collect()
        .await?;
    let mut tables = Vec::new();
    let mut definitions = Vec::new();
    let mut format_problems = Vec::new();
    let mut warnings = spec.warnings.clone();
    for (table, resource) in selected.into_iter().zip(resources) {
        let kind = TableKind::from_api(&resource.r#type);
        let planned = PlannedTable {
            table,
            kind,
            rows: resource.num_rows.unwrap_or(0),
            bytes: resource
                .num_bytes
                .map(|v| u64::try_from(v).unwrap_or(0))
                .unwrap_or(0),
            resource,
        };
        match kind {
            kind if kind.holds_data() => {
                if encode.format == Format::Csv
                    && let Some(column) = nested_column(&planned.resource)
                {
                    format_problems.push(FieldError::new(
                        spec.format_field.clone(),
                        format!("CSV cannot hold the nested or repeated column `{column}` of {}; use AVRO, PARQUET or JSON", planned.table),
                    ));
                }
                tables.push(planned);
            }
            _ => {
                let has_sql = planned
                    .resource
                    .view
                    .as_ref()
                    .is_some_and(|v| !v.query.is_empty())
                    || planned
                        .resource
                        .materialized_view
                        .as_ref()
                        .is_some_and(|m| !m.query.is_empty());
                if matches!(kind, TableKind::View | TableKind::MaterializedView) && !has_sql {
                    warnings.push(FieldError::new(
                        planned.table.to_string(),
                        format!("BigQuery returned no SQL for view {}: it is recorded without a definition and cannot be restored", planned.table),
                    ));
                }
                definitions.push(planned);
            }
        }
    }
    if !format_problems.is_empty() {
        return Err(Error::invalid(
            "the format cannot hold the selected tables",
            format_problems,
        ));
    }

    Ok(BackupPlan {
        backup_id: BackupId::from_snapshot(snapshot_time),
        snapshot_time,
        storage_uri: spec.storage.to_string(),
        storage: spec.storage.clone(),
        format: encode.format,
        compression: encode.compression,
        encode,
        file_size_bytes: spec.file_size_bytes,
        max_parallel_tables: crate::exec::parallel_tables(
            spec.max_parallel_tables,
            default_parallel_tables,
        ),
        overwrite: spec.overwrite,
        reason: spec.reason.clone(),
        labels: spec.labels.clone(),
        expires_at: spec
            .ttl_days
            .map(|d| now + chrono::Duration::days(i64::from(d))),
        estimated_rows: tables.iter().map(|t| t.rows).sum(),
        estimated_bytes: tables.iter().map(|t| t.bytes).sum(),
        datasets,
        tables,
        definitions,
        routines,
        warnings,
        request,
    })
}

/// The first RECORD or REPEATED column, which CSV cannot represent.
fn nested_column(table: &Table) -> Option<String> {
    fn find(fields: &[TableFieldSchema], prefix: &str) -> Option<String> {
        fields.iter().find_map(|f| {
            let name = if prefix.is_empty() {
                f.name.clone()
            } else {
                format!("{prefix}.{}", f.name)
            };
            let nested = matches!(f.r#type.as_str(), "RECORD" | "STRUCT") || f.mode == "REPEATED";
            if nested {
                Some(name)
            } else {
                find(&f.fields, &name)
            }
        })
    }
    find(&table.schema.as_ref()?.fields, "")
}
