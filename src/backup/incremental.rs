//! Partition by partition, and incremental: which partitions of each partitioned table a backup
//! reads, and, for an incremental backup, which it takes over from its base unread.
//!
//! Every STREAM backup (not sharded) reads a partitioned table partition by partition (see
//! `partitions`), so that each of its files holds one partition and names it in the manifest:
//! that is what makes any backup a possible base. An incremental backup (`incremental.base`)
//! then compares, per table, BigQuery's `INFORMATION_SCHEMA.PARTITIONS` with its base's manifest:
//!
//! - a partition the base holds, not modified since the base's snapshot (`last_modified_time`)
//!   and with as many rows as the base read, is reused: the manifest lists the base's files for
//!   it, with their checksums, under their own keys;
//! - every other partition is read at this backup's snapshot; a partition of the base that is no
//!   longer listed is left out (dropped);
//! - a table the base does not hold by partition, whose schema or partitioning changed, or that
//!   is not partitioned at all, is backed up whole.
//!
//! The row count is compared too because it costs nothing and catches a change whatever
//! `last_modified_time` says (bqemulator gives every partition its table's time, which INSERTs
//! do not move). An UPDATE that keeps the count is caught by the time alone: real BigQuery's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::partitions::Scheme;
use super::plan::{BackupPlan, PlannedTable};
use crate::bigquery::{BigQuery, PartitionInfo, TableKind, TableResource};
use crate::catalog::{self, FileEntry, FormatEntry, Manifest, TableEntry};
use crate::domain::{
    BackupId, DatasetRef, ExportMethod, INCREMENTAL_BASE_FIELD, IncrementalBase, TableRef,
};
use crate::error::{Error, ErrorKind, FieldError};
use crate::storage::{Store, layout};

/// Whether a table is backed up whole or against a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableMode {
    Full,
    Incremental,
}

/// How one table is read: partition by partition (`scheme`), reusing `reuse`, or whole.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TablePartitions {
    pub mode: TableMode,
    /// Partitions read at the snapshot (0 when the table is read whole).
    pub partitions_to_read: u64,
    /// Partitions whose files are the base's.
    pub partitions_reused: u64,
    /// Partitions of the base that no longer exist.
    pub partitions_dropped: u64,
    /// Why the table is backed up whole (or fully read) in an incremental backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Read partition by partition with this scheme; `None` = read whole.
    #[serde(skip)]
    pub scheme: Option<Scheme>,
    /// Every partition BigQuery listed: the rest read covers what lies outside all of them.
    #[serde(skip)]
    pub listed: Vec<String>,
    /// The partitions to read.
    #[serde(skip)]
    pub read: Vec<String>,
    /// The base's files of the reused partitions.
    #[serde(skip)]
    pub reuse: Vec<FileEntry>,
    /// The base's Arrow schema of the table, for a table whose every partition is reused.
    #[serde(skip)]
    pub base_arrow_schema: Option<String>,
}

impl TablePartitions {
    fn whole(reason: Option<String>) -> Self {
        Self {
            mode: TableMode::Full,
            partitions_to_read: 0,
            partitions_reused: 0,
            partitions_dropped: 0,
            reason,
            scheme: None,
            listed: Vec::new(),
            read: Vec::new(),
            reuse: Vec::new(),
            base_arrow_schema: None,
        }
    }
}

/// An incremental backup's base, as planned.
#[derive(Debug, Clone)]
pub struct IncrementalPlan {
    pub base: BackupId,
    pub base_snapshot: DateTime<Utc>,
    /// Every backup whose files the plan reuses (the base and those the base reused).
    pub depends_on: Vec<BackupId>,
}

/// What the decision for one table knows of the base.
pub(crate) struct BaseView<'a> {
    pub snapshot: DateTime<Utc>,
    /// `Err`: why no table can reuse the base's files (another format, other recipients).
    pub usable: Result<(), String>,
    pub entry: Option<&'a TableEntry>,
}

/// Decides how a table with `resource` and BigQuery's `listed` partitions is read, against
/// `base` (`None`: not an incremental backup). Pure.
pub(crate) fn decide(
    resource: &TableResource,
    listed: &[&PartitionInfo],
    base: Option<&BaseView<'_>>,
) -> TablePartitions {
    let incremental = base.is_some();
    let whole = |reason: String| TablePartitions::whole(incremental.then_some(reason));
    let scheme = match Scheme::of(resource) {
        Ok(scheme) => scheme,
        Err(reason) => return whole(reason),
    };
    if resource.as_map().contains_key("streamingBuffer") {
        return whole(
            "it has rows in its streaming buffer, which BigQuery does not count in any partition yet: read whole".into(),
        );
    }
    let mut ids: Vec<String> = listed.iter().map(|p| p.id.clone()).collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        if let Err(reason) = scheme.restriction(id) {
            return whole(reason);
        }
    }
    let mut plan = TablePartitions {
        mode: TableMode::Full,
        partitions_to_read: ids.len() as u64,
        scheme: Some(scheme),
        read: ids.clone(),
        listed: ids,
        ..TablePartitions::whole(None)
    };
    let Some(base) = base else {
        return plan;
    };
    let entry = match (&base.usable, base.entry) {
        (Err(reason), _) => Err(reason.clone()),
        (Ok(()), None) => Err("the base does not hold it".to_string()),
        (Ok(()), Some(entry)) if !entry.reusable_by_partition() => {
            Err("the base did not back it up partition by partition".to_string())
        }
        (Ok(()), Some(entry)) if field(&entry.resource, "schema") != field(resource, "schema") => {
            Err("its schema changed since the base".to_string())
        }
        (Ok(()), Some(entry))
            if field(&entry.resource, "timePartitioning")
                != field(resource, "timePartitioning")
                || field(&entry.resource, "rangePartitioning")
                    != field(resource, "rangePartitioning") =>
        {
            Err("its partitioning changed since the base".to_string())
        }
        (Ok(()), Some(entry)) => Ok(entry),
    };
    let entry = match entry {
        Ok(entry) => entry,
        Err(reason) => {
            plan.reason = Some(reason);
            return plan;
        }
    };
    plan.mode = TableMode::Incremental;
    plan.base_arrow_schema = entry.arrow_schema.clone();
    let mut held: BTreeMap<&str, (u64, Vec<&FileEntry>)> = BTreeMap::new();
    for file in &entry.files {
        let Some(partition) = file.partition.as_deref() else {
            continue;
        };
        let slot = held.entry(partition).or_default();
        slot.0 += file.rows;
        slot.1.push(file);
    }
    let now: HashMap<&str, &PartitionInfo> = listed.iter().map(|p| (p.id.as_str(), *p)).collect();
    let mut read = Vec::new();
    for id in &plan.listed {
        let unchanged = held.get(id.as_str()).filter(|(rows, _)| {
            now.get(id.as_str())
                .is_some_and(|info| info.last_modified <= base.snapshot && info.total_rows == *rows)
        });
        match unchanged {
            Some((_, files)) => {
                plan.reuse.extend(files.iter().map(|f| (*f).clone()));
                plan.partitions_reused += 1;
            }
            None => read.push(id.clone()),
        }
    }
    plan.partitions_dropped = held.keys().filter(|id| !now.contains_key(*id)).count() as u64;
    plan.partitions_to_read = read.len() as u64;
    plan.read = read;
    plan
}

fn field<'a>(resource: &'a TableResource, name: &str) -> Option<&'a Value> {
    resource.as_map().get(name)
}

/// Plans how every table of `plan` is read (see the module's doc), and for an incremental
/// backup resolves its base in `store`. A sharded backup reads whole tables.
pub async fn plan_partitions(
    bigquery: &BigQuery,
    store: Option<&Store>,
    plan: &mut BackupPlan,
    base: Option<IncrementalBase>,
) -> Result<(), Error> {
    if plan.shards.is_some() {
        return Ok(());
    }
    let base_manifest = match (base, store) {
        (Some(base), Some(store)) => find_base(store, plan, base).await?,
        _ => None,
    };
    if base.is_some() && base_manifest.is_none() {
        plan.warnings.push(FieldError::new(
            INCREMENTAL_BASE_FIELD,
            format!(
                "{} holds no earlier backup of these tables: this backup is a full one, and the base of the next",
                plan.storage
            ),
        ));
    }
    // Each table's resource, and whether its partitioning is one read partition by partition.
    let resources: Vec<(TableResource, bool)> = plan
        .tables
        .iter()
        .map(|t| {
            TableResource::of(&t.resource).map(|r| {
                let partitioned = Scheme::of(&r).is_ok();
                (r, partitioned)
            })
        })
        .collect::<Result<_, _>>()?;
    // An incremental backup streams what it reads by partition: EXTRACT exports whole tables.
    if base_manifest.is_some() && plan.method == crate::domain::BackupMethod::Auto {
        for (table, (_, partitioned)) in plan.tables.iter_mut().zip(&resources) {
            if table.method == Some(ExportMethod::Extract) && *partitioned {
                table.method = Some(ExportMethod::Stream);
            }
        }
    }
    // Only datasets with a table to read by partition are listed (a query each).
    let partitioned: BTreeSet<DatasetRef> = plan
        .tables
        .iter()
        .zip(&resources)
        .filter(|(t, (_, partitioned))| by_partition_candidate(t) && *partitioned)
        .map(|(t, _)| t.table.dataset_ref())
        .collect();
    let mut listed: HashMap<TableRef, Vec<PartitionInfo>> = HashMap::new();
    let mut unlisted: BTreeSet<DatasetRef> = BTreeSet::new();
    for dataset in partitioned {
        let location = plan
            .datasets
            .iter()
            .find(|d| d.dataset == dataset)
            .map(|d| d.location.clone())
            .unwrap_or_default();
        match bigquery.partitions(&dataset, &location).await {
            Ok(partitions) => {
                for info in partitions {
                    let table = TableRef::new(&dataset.project, &dataset.dataset, &info.table);
                    listed.entry(table).or_default().push(info);
                }
            }
            // A full backup still works without the listing (a service account that may not
            // run queries): its tables are read whole, as before there were partition files.
            Err(e) if base_manifest.is_none() => {
                tracing::warn!(dataset = %dataset, error = %e, "listing the partitions failed; the dataset's tables are read whole");
                plan.warnings.push(FieldError::new(
                    dataset.to_string(),
                    format!("its partitions could not be listed ({}), so its tables were read whole and cannot be the base of an incremental backup; grant bigquery.jobs.create to list them", e.message()),
                ));
                unlisted.insert(dataset);
            }
            Err(e) => return Err(e),
        }
    }
    let usable = base_manifest
        .as_ref()
        .map(|m| compatible(m, plan))
        .unwrap_or(Ok(()));
    for (table, (resource, _)) in plan.tables.iter_mut().zip(&resources) {
        let view = base_manifest.as_ref().map(|m| BaseView {
            snapshot: m.snapshot_time,
            usable: usable.clone(),
            entry: m.table(&table.table),
        });
        let decided =
            if by_partition_candidate(table) && !unlisted.contains(&table.table.dataset_ref()) {
                let partitions: Vec<&PartitionInfo> = listed
                    .get(&table.table)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                decide(resource, &partitions, view.as_ref())
            } else if view.is_some() {
                TablePartitions::whole(Some(match table.method {
                    Some(ExportMethod::Extract) => "exported whole by EXTRACT".to_string(),
                    _ => Scheme::of(resource)
                        .err()
                        .unwrap_or_else(|| "read whole".into()),
                }))
            } else {
                continue;
            };
        if view.is_some() || decided.scheme.is_some() {
            table.partitions = Some(decided);
        }
    }
    plan.incremental = base_manifest.map(|m| IncrementalPlan {
        base: m.backup_id,
        base_snapshot: m.snapshot_time,
        depends_on: depends_on(plan),
    });
    Ok(())
}

/// Tables read by this service (STREAM) whose data is a table's own.
fn by_partition_candidate(table: &PlannedTable) -> bool {
    table.kind == TableKind::Table && table.method == Some(ExportMethod::Stream)
}

/// Every backup whose files `plan` reuses, sorted, never `plan`'s own (none when it reuses
/// nothing: then no backup needs the base kept for it).
fn depends_on(plan: &BackupPlan) -> Vec<BackupId> {
    let mut ids: BTreeSet<BackupId> = plan
        .tables
        .iter()
        .filter_map(|t| t.partitions.as_ref())
        .flat_map(|p| &p.reuse)
        .filter_map(|f| object_store::path::Path::parse(&f.path).ok())
        .filter_map(|key| layout::backup_of_key(&key))
        .collect();
    ids.remove(&plan.backup_id);
    ids.into_iter().collect()
}

/// Whether files of `base` can be listed by a backup written as `plan` says: the same format
/// and compression, the same encryption.
fn compatible(base: &Manifest, plan: &BackupPlan) -> Result<(), String> {
    let ours = FormatEntry::of(&plan.encode);
    if base.format != ours {
        return Err(format!(
            "the base {} is written as {} {}, this backup as {} {}: every partition is read",
            base.backup_id,
            base.format.format.as_str(),
            base.format.compression.as_str(),
            ours.format.as_str(),
            ours.compression.as_str()
        ));
    }
    let theirs: BTreeSet<&String> = base.encryption.iter().flat_map(|e| &e.recipients).collect();
    let ours: BTreeSet<&String> = plan.encryption.iter().flat_map(|r| r.keys()).collect();
    if theirs != ours {
        return Err(format!(
            "the base {} is encrypted for other recipients than this backup: every partition is read",
            base.backup_id
        ));
    }
    Ok(())
}

/// The base's manifest: the one named (404 when it is not a complete backup of `store`, 400
/// when it is not older than this backup), or the newest complete backup older than this one
/// that holds any of the plan's tables (`None` when there is none).
async fn find_base(
    store: &Store,
    plan: &BackupPlan,
    base: IncrementalBase,
) -> Result<Option<Manifest>, Error> {
    let field = || INCREMENTAL_BASE_FIELD.to_string();
    match base {
        IncrementalBase::Id(id) => {
            let manifest = catalog::read_manifest(store, &id).await?.ok_or_else(|| {
                Error::not_found(format!("no complete backup {id} in {}", store.uri()))
                    .with_details(vec![FieldError::new(
                        field(),
                        format!(
                            "backup {id} does not exist (or is incomplete) in {}",
                            store.uri()
                        ),
                    )])
            })?;
            if manifest.snapshot_time >= plan.snapshot_time {
                return Err(Error::invalid(
                    "the base of an incremental backup must be older than it",
                    vec![FieldError::new(
                        field(),
                        format!(
                            "backup {id} was taken at {}, not before this backup's snapshot {}",
                            manifest.snapshot_time.to_rfc3339(),
                            plan.snapshot_time.to_rfc3339()
                        ),
                    )],
                ));
            }
            Ok(Some(manifest))
        }
        IncrementalBase::Latest => {
            let wanted: BTreeSet<&TableRef> = plan.tables.iter().map(|t| &t.table).collect();
            for id in catalog::backup_ids(store.object_store()).await? {
                let manifest = match catalog::read_manifest(store, &id).await {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    // A damaged backup is no base; it is reported by verify and the catalog.
                    Err(e) if e.kind() == ErrorKind::DamagedBackup => continue,
                    Err(e) => return Err(e),
                };
                if manifest.snapshot_time < plan.snapshot_time
                    && manifest.tables.iter().any(|t| wanted.contains(&t.table))
                {
                    return Ok(Some(manifest));
                }
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::partitions::UNPARTITIONED;
    use super::*;

    fn resource(fields: Value) -> TableResource {
        serde_json::from_value(json!({
            "timePartitioning": {"type": "DAY", "field": "d"},
            "schema": {"fields": fields}
        }))
        .unwrap()
    }

    fn fields() -> Value {
        json!([{"name": "id", "type": "INTEGER"}, {"name": "d", "type": "DATE"}])
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn info(id: &str, rows: u64, modified: &str) -> PartitionInfo {
        PartitionInfo {
            table: "t".into(),
            id: id.into(),
            total_rows: rows,
            last_modified: at(modified),
        }
    }

    fn file(backup: &str, partition: &str, rows: u64) -> FileEntry {
        FileEntry {
            path: format!("backups/{backup}/p/d/t/partition-{partition}-part-00000.parquet"),
            bytes: 10,
            rows,
            sha256: "00".into(),
            crc32c: None,
            plaintext_sha256: None,
            partition: Some(partition.into()),
        }
    }

    fn base_entry(files: Vec<FileEntry>) -> TableEntry {
        TableEntry {
            table: TableRef::new("p", "d", "t"),
            kind: TableKind::Table,
            resource: resource(fields()),
            definition: None,
            arrow_schema: Some("schema".into()),
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: 0,
            files,
            format: None,
            method: Some(ExportMethod::Stream),
            partitions: Some(catalog::PartitionsEntry::default()),
        }
    }

    const BASE_SNAPSHOT: &str = "2026-01-02T00:00:00Z";
    const BEFORE: &str = "2026-01-01T12:00:00Z";
    const AFTER: &str = "2026-01-02T06:00:00Z";

    fn view(entry: &TableEntry) -> BaseView<'_> {
        BaseView {
            snapshot: at(BASE_SNAPSHOT),
            usable: Ok(()),
            entry: Some(entry),
        }
    }

    #[test]
    fn a_full_backup_reads_every_listed_partition() {
        let listed = [info("20260101", 5, BEFORE), info("__NULL__", 1, BEFORE)];
        let refs: Vec<&PartitionInfo> = listed.iter().collect();
        let plan = decide(&resource(fields()), &refs, None);
        assert_eq!(plan.mode, TableMode::Full);
        assert_eq!(plan.read, ["20260101", "__NULL__"]);
        assert!(plan.scheme.is_some() && plan.reuse.is_empty() && plan.reason.is_none());
    }

    #[test]
    fn unchanged_partitions_are_reused_changed_new_and_dropped_ones_are_not() {
        let entry = base_entry(vec![
            file("20260102_000000", "20260101", 5),
            file("20260101_000000", "20260102", 7),
            file("20260102_000000", "20260103", 3),
            file("20260102_000000", "20260104", 2),
        ]);
        let listed = [
            // unchanged: reused (a file the base itself reused keeps its own key)
            info("20260101", 5, BEFORE),
            info("20260102", 7, BEFORE),
            // modified after the base's snapshot
            info("20260103", 3, AFTER),
            // 20260104 was dropped; 20260105 is new
            info("20260105", 1, AFTER),
        ];
        let refs: Vec<&PartitionInfo> = listed.iter().collect();
        let plan = decide(&resource(fields()), &refs, Some(&view(&entry)));
        assert_eq!(plan.mode, TableMode::Incremental);
        assert_eq!(plan.read, ["20260103", "20260105"]);
        assert_eq!(plan.partitions_reused, 2);
        assert_eq!(plan.partitions_dropped, 1);
        let reused: Vec<&str> = plan.reuse.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            reused,
            [
                "backups/20260102_000000/p/d/t/partition-20260101-part-00000.parquet",
                "backups/20260101_000000/p/d/t/partition-20260102-part-00000.parquet"
            ]
        );
        assert_eq!(plan.listed.len(), 4);
    }

    #[test]
    fn a_row_count_unlike_the_bases_means_changed_whatever_the_time_says() {
        let entry = base_entry(vec![file("20260102_000000", "20260101", 5)]);
        let listed = [info("20260101", 6, BEFORE)];
        let refs: Vec<&PartitionInfo> = listed.iter().collect();
        let plan = decide(&resource(fields()), &refs, Some(&view(&entry)));
        assert_eq!(plan.read, ["20260101"]);
        assert!(plan.reuse.is_empty());
    }

    #[test]
    fn a_changed_schema_a_whole_base_or_an_unusable_base_reads_every_partition() {
        let listed = [info("20260101", 5, BEFORE)];
        let refs: Vec<&PartitionInfo> = listed.iter().collect();
        let entry = base_entry(vec![file("20260102_000000", "20260101", 5)]);
        let mut wider = fields();
        wider
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "x", "type": "STRING"}));
        let plan = decide(&resource(wider), &refs, Some(&view(&entry)));
        assert_eq!((plan.mode, plan.read.len()), (TableMode::Full, 1));
        assert!(plan.reason.unwrap().contains("schema changed"));

        let mut whole = entry.clone();
        whole.files[0].partition = None;
        let plan = decide(&resource(fields()), &refs, Some(&view(&whole)));
        assert!(plan.reason.unwrap().contains("partition by partition"));

        let unusable = BaseView {
            usable: Err("other format".into()),
            ..view(&entry)
        };
        let plan = decide(&resource(fields()), &refs, Some(&unusable));
        assert_eq!(plan.reason.as_deref(), Some("other format"));
        assert!(plan.reuse.is_empty());

        let missing = BaseView {
            entry: None,
            ..view(&entry)
        };
        let plan = decide(&resource(fields()), &refs, Some(&missing));
        assert!(plan.reason.unwrap().contains("does not hold"));
    }

    #[test]
    fn unpartitioned_streaming_and_odd_partitions_read_the_table_whole() {
        let plain: TableResource =
            serde_json::from_value(json!({"schema": {"fields": fields()}})).unwrap();
        let plan = decide(&plain, &[], None);
        assert!(plan.scheme.is_none() && plan.reason.is_none());
        let entry = base_entry(vec![]);
        let plan = decide(&plain, &[], Some(&view(&entry)));
        assert_eq!(plan.reason.as_deref(), Some("not partitioned"));

        let mut streaming = resource(fields());
        let mut map = streaming.as_map().clone();
        map.insert("streamingBuffer".into(), json!({"estimatedRows": "3"}));
        streaming = serde_json::from_value(Value::Object(map)).unwrap();
        assert!(decide(&streaming, &[], None).scheme.is_none());

        let listed = [info(UNPARTITIONED, 3, BEFORE)];
        let refs: Vec<&PartitionInfo> = listed.iter().collect();
        assert!(decide(&resource(fields()), &refs, None).scheme.is_none());
    }
}
