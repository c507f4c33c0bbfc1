//! Selection → plan: which datasets and tables, at which snapshot time, under which backup id,
//! in which format. Everything the request names is checked to exist here, before any data moves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::dependents::{self, Dependent, ObjectKind};
use super::estimate::OutputEstimate;
use super::extract::EXTRACT_DATASET_PREFIX;
use super::incremental::{IncrementalPlan, TablePartitions};
use super::method;
use super::validate::BackupOrder;
use super::view_sql::{ViewSqlByTable, fill_missing_view_sql};
use crate::bigquery::model::{Table, TableFieldSchema};
use crate::bigquery::{BigQuery, DatasetResource, RoutineResource, TableKind};
use crate::domain::{
    BackupId, BackupMethod, DatasetRef, DatasetSelection, ExportMethod, StorageUri, TableRef,
    TableSelector, sql_paths,
};
use crate::encryption::Recipients;
use crate::error::{Error, ErrorKind, FieldError};
use crate::formats::{Compression, EncodeOptions, Format};

/// Metadata calls made at once while planning.
const PLAN_CONCURRENCY: usize = 8;

/// What a backup will do: the run's input. A dry run answers with its [`BackupPlan::preview`].
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub backup_id: BackupId,
    pub snapshot_time: DateTime<Utc>,
    pub storage: StorageUri,
    /// Where the request gave the storage URI (see `BackupSpec::storage_field`).
    pub storage_field: String,
    pub encode: EncodeOptions,
    /// Every data file is encrypted (age) to these recipients.
    pub encryption: Option<Arc<Recipients>>,
    pub file_size_bytes: u64,
    pub max_parallel_tables: usize,
    /// `method` as requested; each table's own is [`PlannedTable::method`].
    pub method: BackupMethod,
    pub overwrite: bool,
    pub reason: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub include_dependents: bool,
    /// Backups of the same selection may run at once (`allowConcurrent`).
    pub allow_concurrent: bool,
    /// `shards`: run by that many worker processes from a stored plan.
    pub shards: Option<u32>,
    pub datasets: Vec<PlannedDataset>,
    /// Tables whose data is exported.
    pub tables: Vec<PlannedTable>,
    /// Views, materialized views (and external tables): recorded as definitions, not exported.
    /// Ordered so that a view comes after the views it reads (restore creates them in order).
    pub definitions: Vec<PlannedTable>,
    /// Routines of the selected datasets (and dependents): recorded as definitions.
    pub routines: Vec<PlannedRoutine>,
    /// What `includeDependents` added (it is also in `tables`, `definitions` or `routines`),
    /// and why.
    pub dependents: Vec<Dependent>,
    pub totals: PlanTotals,
    pub warnings: Vec<FieldError>,
    /// The request as received (for the manifest).
    pub request: serde_json::Value,
    /// An incremental backup: its base (see `incremental`).
    pub incremental: Option<IncrementalPlan>,
}

/// The dry-run answer, derived from the plan: the tables with their rows, bytes and estimated
/// output, the views and routines recorded as definitions, what `includeDependents` added and
/// why, totals and warnings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPreview<'a> {
    backup_id: &'a BackupId,
    snapshot_time: DateTime<Utc>,
    storage_uri: &'a StorageUri,
    format: Format,
    compression: Compression,
    file_size_bytes: u64,
    max_parallel_tables: usize,
    /// As requested; each table says which it gets.
    method: BackupMethod,
    overwrite: bool,
    reason: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    expires_at: Option<DateTime<Utc>>,
    include_dependents: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<u32>,
    /// An incremental backup: the backup it is taken against.
    #[serde(skip_serializing_if = "Option::is_none")]
    incremental: Option<IncrementalPreview>,
    datasets: &'a [PlannedDataset],
    tables: &'a [PlannedTable],
    views: &'a [PlannedTable],
    routines: &'a [PlannedRoutine],
    dependents: &'a [Dependent],
    totals: &'a PlanTotals,
    /// BigQuery's row count of the tables (= `totals.rows`; the Java service's name).
    estimated_rows: u64,
    /// BigQuery's logical bytes of the tables (= `totals.bytes`).
    estimated_bytes: u64,
    warnings: &'a [FieldError],
}

impl BackupPlan {
    /// This plan with every EXTRACT table streamed instead (`AUTO` refused its snapshots).
    pub(crate) fn streaming_only(&self) -> Self {
        let mut plan = self.clone();
        for table in &mut plan.tables {
            if table.method == Some(ExportMethod::Extract) {
                table.method = Some(ExportMethod::Stream);
            }
        }
        plan
    }

    /// What a dry run answers.
    pub fn preview(&self) -> BackupPreview<'_> {
        BackupPreview {
            backup_id: &self.backup_id,
            snapshot_time: self.snapshot_time,
            storage_uri: &self.storage,
            format: self.encode.format,
            compression: self.encode.compression,
            file_size_bytes: self.file_size_bytes,
            max_parallel_tables: self.max_parallel_tables,
            method: self.method,
            overwrite: self.overwrite,
            reason: self.reason.as_deref(),
            labels: &self.labels,
            expires_at: self.expires_at,
            include_dependents: self.include_dependents,
            shards: self.shards,
            incremental: self.incremental.as_ref().map(|i| IncrementalPreview {
                base: i.base,
                base_snapshot_time: i.base_snapshot,
                depends_on: i.depends_on.clone(),
            }),
            datasets: &self.datasets,
            tables: &self.tables,
            views: &self.definitions,
            routines: &self.routines,
            dependents: &self.dependents,
            totals: &self.totals,
            estimated_rows: self.totals.rows,
            estimated_bytes: self.totals.bytes,
            warnings: &self.warnings,
        }
    }
}

/// The base of an incremental backup, as a dry run shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IncrementalPreview {
    base: BackupId,
    base_snapshot_time: DateTime<Utc>,
    depends_on: Vec<BackupId>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDataset {
    pub dataset: DatasetRef,
    pub location: String,
    #[serde(skip)]
    pub resource: DatasetResource,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRoutine {
    pub dataset: DatasetRef,
    pub routine: String,
    #[serde(skip)]
    pub resource: RoutineResource,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTable {
    pub table: TableRef,
    pub kind: TableKind,
    /// BigQuery's `numRows` (0 for views).
    pub rows: u64,
    /// BigQuery's `numBytes`, logical (0 for views).
    pub bytes: u64,
    /// Tables only: rough output size and file count (see `estimate`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<OutputEstimate>,
    /// Tables only: how the data leaves BigQuery (`STREAM` or `EXTRACT`; see `method`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<ExportMethod>,
    /// Partitioned tables read partition by partition, and every table of an incremental
    /// backup: full or incremental, and how many partitions are read, reused and dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<TablePartitions>,
    #[serde(skip)]
    pub resource: Table,
}

/// Sums over the plan. `bytes` is BigQuery's logical size; `estimatedOutputBytes` a rough
/// guess at the files' size in the chosen format and compression.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanTotals {
    pub tables: u64,
    pub views: u64,
    pub routines: u64,
    pub dependents: u64,
    pub rows: u64,
    pub bytes: u64,
    pub estimated_output_bytes: u64,
    pub estimated_files: u64,
}

/// Checks the format choice, resolves the selection against BigQuery, and fixes the snapshot
/// time and backup id. Every problem of the request is reported at once (400), every named
/// dataset or table that does not exist at once (404).
pub async fn plan_backup(
    bigquery: &BigQuery,
    order: BackupOrder,
    now: DateTime<Utc>,
    default_parallel_tables: usize,
) -> Result<BackupPlan, Error> {
    let BackupOrder {
        spec,
        encode,
        request,
        encryption,
    } = order;
    if encryption.is_some() && spec.method == BackupMethod::Extract {
        return Err(Error::invalid(
            "the backup request is invalid",
            vec![FieldError::new(
                "method",
                "EXTRACT writes files in clear, and this backup is encrypted (its `encryption`, or BQB_ENCRYPTION_RECIPIENTS): use STREAM or AUTO",
            )],
        ));
    }
    // Encrypted files are written by this service alone, and shards read through the Storage
    // Read API: AUTO streams every table.
    let requested_method = match (&encryption, spec.method) {
        (Some(_), BackupMethod::Auto) => BackupMethod::Stream,
        (None, BackupMethod::Auto) if spec.shards.is_some() => BackupMethod::Stream,
        (_, method) => method,
    };
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
            // Another EXTRACT backup's snapshots are not data of the project.
            .filter(|d| !d.dataset.dataset.starts_with(EXTRACT_DATASET_PREFIX))
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
            // list_routines answers only routines that name themselves.
            let name = routine
                .routine_id()
                .map_err(|e| Error::upstream(format!("a routine of {dataset} whose {e}")))?
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
            resource: DatasetResource::of(&resource)?,
        });
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|m| m.message.as_str()).collect();
        return Err(Error::not_found(names.join("; ")).with_details(missing));
    }

    let mut warnings = spec.warnings.clone();
    let mut dependents = Vec::new();
    // The SQL the dependents were found from, by view: recorded when tables.get gave none (other
    // views without it are asked of INFORMATION_SCHEMA.VIEWS below).
    let mut view_sql = ViewSqlByTable::new();
    // Every table of every dataset is selected already when no dataset is listed.
    if spec.include_dependents && matches!(spec.datasets, DatasetSelection::Listed(_)) {
        let catalog = dependents::scan_project(bigquery, &spec.project).await?;
        let added =
            dependents::add_to_plan(&catalog, &spec, &mut datasets, &mut routines, &mut selected)?;
        tracing::info!(
            datasets = catalog.datasets.len(),
            objects = catalog.objects.len(),
            dependents = added.dependents.len(),
            "includeDependents: project scanned"
        );
        dependents = added.dependents;
        warnings.extend(added.warnings);
        view_sql = catalog
            .objects
            .into_iter()
            .filter(|o| o.kind == ObjectKind::Table(TableKind::View))
            .filter_map(|o| Some((o.name, (o.sql?, o.legacy_sql))))
            .collect();
    }

    let lookups: Vec<_> = selected
        .iter()
        .cloned()
        .map(|t| {
            let bigquery = bigquery.clone();
            async move { bigquery.get_table(&t).await }
        })
        .collect();
    let mut resources: Vec<Table> = futures::stream::iter(lookups)
        .buffered(PLAN_CONCURRENCY)
        .try_collect()
        .await?;
    let locations: HashMap<DatasetRef, String> = datasets
        .iter()
        .map(|d| (d.dataset.clone(), d.location.clone()))
        .collect();
    fill_missing_view_sql(bigquery, &selected, &mut resources, &view_sql, &locations).await;
    let mut tables = Vec::new();
    let mut definitions = Vec::new();
    let mut format_problems = Vec::new();
    let mut method_problems = Vec::new();
    for (table, resource) in selected.into_iter().zip(resources) {
        let kind = TableKind::from_api(&resource.r#type);
        let mut planned = PlannedTable {
            table,
            kind,
            rows: resource.num_rows.unwrap_or(0),
            bytes: resource
                .num_bytes
                .map(|v| u64::try_from(v).unwrap_or(0))
                .unwrap_or(0),
            estimate: None,
            method: None,
            partitions: None,
            resource,
        };
        match kind {
            kind if kind.holds_data() => {
                match method::choose(
                    requested_method,
                    spec.storage.scheme(),
                    encode.format,
                    &planned.resource,
                ) {
                    Ok(method) => planned.method = Some(method),
                    Err(reason) => method_problems.push(FieldError::new(
                        "method",
                        format!("EXTRACT cannot export {}: {reason}", planned.table),
                    )),
                }
                if encode.format == Format::Csv
                    && let Some(column) = nested_column(&planned.resource)
                {
                    format_problems.push(FieldError::new(
                        spec.format_field.clone(),
                        format!("CSV cannot hold the nested or repeated column `{column}` of {}; use AVRO, PARQUET or JSON", planned.table),
                    ));
                }
                planned.estimate = Some(OutputEstimate::of(
                    &planned.resource,
                    encode.format,
                    encode.compression,
                    spec.file_size_bytes,
                ));
                tables.push(planned);
            }
            _ => {
                if matches!(kind, TableKind::View | TableKind::MaterializedView)
                    && definition_sql(&planned).is_none()
                {
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
    if !method_problems.is_empty() {
        return Err(Error::invalid(
            "EXTRACT cannot export every selected table faithfully",
            method_problems,
        ));
    }
    let definitions = in_dependency_order(definitions);

    let totals = PlanTotals {
        tables: tables.len() as u64,
        views: definitions.len() as u64,
        routines: routines.len() as u64,
        dependents: dependents.len() as u64,
        rows: tables.iter().map(|t| t.rows).sum(),
        bytes: tables.iter().map(|t| t.bytes).sum(),
        estimated_output_bytes: tables
            .iter()
            .filter_map(|t| t.estimate)
            .map(|e| e.estimated_output_bytes)
            .sum(),
        estimated_files: tables
            .iter()
            .filter_map(|t| t.estimate)
            .map(|e| e.estimated_files)
            .sum(),
    };
    Ok(BackupPlan {
        backup_id: BackupId::from_snapshot(snapshot_time),
        snapshot_time,
        storage: spec.storage.clone(),
        storage_field: spec.storage_field.clone(),
        encode,
        encryption,
        file_size_bytes: spec.file_size_bytes,
        max_parallel_tables: crate::exec::parallel_tables(
            spec.max_parallel_tables,
            default_parallel_tables,
        ),
        method: spec.method,
        overwrite: spec.overwrite,
        reason: spec.reason.clone(),
        labels: spec.labels.clone(),
        expires_at: spec
            .ttl_days
            .map(|d| now + chrono::Duration::days(i64::from(d))),
        include_dependents: spec.include_dependents,
        allow_concurrent: spec.allow_concurrent,
        shards: spec.shards,
        totals,
        datasets,
        tables,
        definitions,
        routines,
        dependents,
        warnings,
        request,
        incremental: None,
    })
}

/// A view's or materialized view's SQL as recorded, if any.
fn definition_sql(planned: &PlannedTable) -> Option<&str> {
    let resource = &planned.resource;
    resource
        .view
        .as_ref()
        .map(|v| v.query.as_str())
        .or_else(|| {
            resource
                .materialized_view
                .as_ref()
                .map(|m| m.query.as_str())
        })
        .filter(|q| !q.is_empty())
}

/// Definitions reordered so that each comes after the definitions its SQL names (BigQuery
/// refuses to create a view over a view that does not exist yet), otherwise in their order.
fn in_dependency_order(definitions: Vec<PlannedTable>) -> Vec<PlannedTable> {
    let key = |t: &TableRef| {
        (
            t.project.to_ascii_lowercase(),
            t.dataset.clone(),
            t.table.clone(),
        )
    };
    let index: HashMap<_, usize> = definitions
        .iter()
        .enumerate()
        .map(|(i, d)| (key(&d.table), i))
        .collect();
    let needs: Vec<Vec<usize>> = definitions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut needs: Vec<usize> = definition_sql(d)
                .map(sql_paths)
                .unwrap_or_default()
                .iter()
                .flat_map(|p| p.candidates(&d.table.project))
                .filter_map(|c| index.get(&key(&c)).copied())
                .filter(|&n| n != i)
                .collect();
            needs.dedup();
            needs
        })
        .collect();
    // Depth-first, needs first; `placed` also stops a (malformed) cycle.
    fn visit(i: usize, needs: &[Vec<usize>], placed: &mut [bool], order: &mut Vec<usize>) {
        if placed[i] {
            return;
        }
        placed[i] = true;
        for &n in &needs[i] {
            visit(n, needs, placed, order);
        }
        order.push(i);
    }
    let mut placed = vec![false; definitions.len()];
    let mut order = Vec::with_capacity(definitions.len());
    for i in 0..definitions.len() {
        visit(i, &needs, &mut placed, &mut order);
    }
    let mut slots: Vec<Option<PlannedTable>> = definitions.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(dataset: &str, name: &str, sql: &str) -> PlannedTable {
        let resource: Table = serde_json::from_value(json!({
            "type": "VIEW", "view": { "query": sql, "useLegacySql": false }
        }))
        .unwrap();
        PlannedTable {
            table: TableRef::new("p-1", dataset, name),
            kind: TableKind::View,
            rows: 0,
            bytes: 0,
            estimate: None,
            method: None,
            partitions: None,
            resource,
        }
    }

    #[test]
    fn views_come_after_the_views_they_read() {
        let ordered = in_dependency_order(vec![
            view(
                "b",
                "top",
                "SELECT * FROM b.middle JOIN `P-1.c.base` USING (id)",
            ),
            view("b", "middle", "SELECT * FROM `p-1`.c.base"),
            view("c", "base", "SELECT * FROM a.t"),
            view("c", "alone", "SELECT 1"),
        ]);
        let names: Vec<&str> = ordered.iter().map(|d| d.table.table.as_str()).collect();
        assert_eq!(names, ["base", "middle", "top", "alone"]);
    }

    #[test]
    fn a_cycle_does_not_lose_or_repeat_views() {
        let ordered = in_dependency_order(vec![
            view("b", "x", "SELECT * FROM b.y"),
            view("b", "y", "SELECT * FROM b.x"),
        ]);
        let names: Vec<&str> = ordered.iter().map(|d| d.table.table.as_str()).collect();
        assert_eq!(names, ["y", "x"]);
    }

    #[test]
    fn a_table_serialises_its_estimate_and_a_view_does_not() {
        let table: Table =
            serde_json::from_value(json!({ "numRows": "10", "numBytes": "1000" })).unwrap();
        let planned = PlannedTable {
            table: TableRef::new("p-1", "a", "t"),
            kind: TableKind::Table,
            rows: 10,
            bytes: 1000,
            estimate: Some(OutputEstimate::of(
                &table,
                Format::Avro,
                Compression::None,
                1 << 20,
            )),
            method: Some(ExportMethod::Extract),
            partitions: None,
            resource: table,
        };
        let json = serde_json::to_value(&planned).unwrap();
        assert_eq!(json["estimatedOutputBytes"], 850);
        assert_eq!(json["estimatedFiles"], 1);
        assert_eq!(json["logicalBytes"], 1000);
        assert_eq!(json["method"], "EXTRACT");
        let json = serde_json::to_value(view("b", "v", "SELECT 1")).unwrap();
        assert!(json.get("estimatedOutputBytes").is_none(), "{json}");
        assert!(json.get("method").is_none(), "{json}");
    }
}
