//! Time-travel recovery (`POST /api/v1/recover`, CLI `recover`): tables brought back as they
//! were at an instant inside BigQuery's time-travel window, without a backup, by BigQuery's own
//! operations — no row passes through this service.
//!
//! Planned while the caller waits: the dataset must exist (404 naming `dataset`) and the instant
//! lie inside its window (`maxTimeTravelHours`, 48 to 168; 400 naming `asOf`) — or, for
//! `BEFORE_DROP`, each named table's last `DROP TABLE` be found in the project's
//! `INFORMATION_SCHEMA.JOBS` within it —, every named table
//! exist now or have been dropped (then only a copy of its snapshot decorator brings it back),
//! and no target exist unless the request says `WRITE_TRUNCATE` (409 naming each). Then, per
//! table, by the method it resolved to (see [`RecoverMethod`]):
//!
//! - CLONE: `CREATE [OR REPLACE] TABLE target CLONE source FOR SYSTEM_TIME AS OF …`;
//! - COPY: a copy job from `source@{ms}` into the target (a dropped table, or in place);
//! - QUERY: the target created with the source's schema, partitioning and clustering as they are
//!   now, then `INSERT INTO target SELECT * FROM source FOR SYSTEM_TIME AS OF …`; into an existing
//!   target through a staging table and an atomic copy. A target this recovery created is removed
//!   again when filling it fails.
//!
//! Depends on `bigquery`, `domain`, `restore` (the create-able table resource) and `error`.
//! (`recovery` is another thing: cleaning up after jobs whose process died.)

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::bigquery::model::Table;
use crate::bigquery::{BigQuery, TableDrop, TableKind, TableResource};
use crate::domain::{
    DatasetRef, MAX_TIME_TRAVEL, RecoverInstant, RecoverMethod, RecoverSpec, TableRef,
    WriteDisposition,
};
use crate::error::{Error, FieldError};
use crate::restore::resources::{staging_table_for_create, table_for_create};

/// BigQuery's time-travel window of a dataset that does not set `maxTimeTravelHours`.
const DEFAULT_WINDOW_HOURS: i64 = 168;
/// How long a QUERY recovery's staging table lives should its removal fail.
const STAGING_TTL: chrono::Duration = chrono::Duration::hours(24);

/// What a recovery will do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverPlan {
    pub dataset: DatasetRef,
    pub location: String,
    /// As asked: an instant, or `BEFORE_DROP` (each table's own instant is in `tables`).
    pub as_of: RecoverInstant,
    /// The dataset's time-travel window.
    pub window_hours: i64,
    pub write_disposition: WriteDisposition,
    pub tables: Vec<RecoverTable>,
}

/// One table of a recovery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverTable {
    pub source: TableRef,
    pub target: TableRef,
    /// `CLONE`, `COPY` or `QUERY`: never `AUTO`.
    pub method: RecoverMethod,
    /// The instant this table comes back to.
    pub as_of: DateTime<Utc>,
    /// The table no longer exists: it comes back from its snapshot decorator.
    pub dropped: bool,
    /// With `asOf` `BEFORE_DROP`: the job whose `DROP TABLE` dropped it (`as_of` is the
    /// millisecond before that job started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_by_job: Option<String>,
    pub target_exists: bool,
    /// The source as it is now (QUERY creates the target from it).
    #[serde(skip)]
    pub resource: Option<Table>,
}

/// The answer to a finished recovery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverReport {
    pub status: &'static str,
    pub as_of: RecoverInstant,
    pub tables: Vec<RecoveredTable>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveredTable {
    pub source: String,
    pub target: String,
    pub method: RecoverMethod,
    pub as_of: DateTime<Utc>,
    /// BigQuery's `numRows` of the target afterwards.
    pub rows: Option<u64>,
    pub duration_ms: u64,
}

/// Checks the request against BigQuery and resolves every table's target and method.
pub async fn plan_recover(
    bigquery: &BigQuery,
    spec: &RecoverSpec,
    now: DateTime<Utc>,
) -> Result<RecoverPlan, Error> {
    let source = DatasetRef::new(&spec.project, &spec.dataset);
    let Some(dataset) = bigquery.find_dataset(&source).await? else {
        return Err(not_found(
            "dataset",
            format!("dataset {source} does not exist"),
        ));
    };
    let window_hours = dataset
        .max_time_travel_hours
        .filter(|h| *h > 0)
        .unwrap_or(DEFAULT_WINDOW_HOURS);
    let window = chrono::Duration::hours(window_hours).min(MAX_TIME_TRAVEL);
    if let RecoverInstant::At(at) = spec.as_of
        && at < now - window
    {
        return Err(Error::invalid(
            "the instant is outside the dataset's time-travel window",
            vec![FieldError::new(
                "asOf",
                format!(
                    "{} is more than {window_hours} hours ago, the time-travel window of {source}: only a backup can bring the tables back as they were then",
                    at.to_rfc3339()
                ),
            )],
        ));
    }
    let target_dataset = DatasetRef::new(&spec.project, &spec.target_dataset);
    if target_dataset != source && bigquery.find_dataset(&target_dataset).await?.is_none() {
        return Err(not_found(
            "targetDataset",
            format!("dataset {target_dataset} does not exist"),
        ));
    }
    let listed = bigquery.list_tables(&source).await?;
    let names: Vec<String> = if spec.tables.is_empty() {
        listed
            .iter()
            .filter(|t| t.kind == TableKind::Table)
            .map(|t| t.table.table.clone())
            .collect()
    } else {
        spec.tables.clone()
    };
    let mut problems = Vec::new();
    let mut conflicts = Vec::new();
    let mut tables = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let field = match spec.tables.is_empty() {
            true => "dataset".to_string(),
            false => format!("tables[{i}]"),
        };
        let table = TableRef::new(&spec.project, &spec.dataset, name);
        let now_there = listed.iter().find(|t| &t.table.table == name);
        if let Some(t) = now_there
            && t.kind != TableKind::Table
        {
            problems.push(FieldError::new(
                field,
                format!(
                    "{table} is a {}: only tables hold data to recover",
                    t.kind.as_str()
                ),
            ));
            continue;
        }
        let dropped = now_there.is_none();
        if spec.as_of == RecoverInstant::BeforeDrop && !dropped {
            problems.push(FieldError::new(
                field,
                format!("{table} exists: asOf BEFORE_DROP brings back a dropped table; give asOf as an instant to recover a table that exists"),
            ));
            continue;
        }
        let target = TableRef::new(&spec.project, &spec.target_dataset, spec.target_table(name));
        let in_place = target == table;
        let method = match (spec.method, dropped) {
            (RecoverMethod::Auto, true) => RecoverMethod::Copy,
            (RecoverMethod::Auto, false) if in_place => RecoverMethod::Copy,
            (RecoverMethod::Auto, false) => RecoverMethod::Clone,
            (method @ (RecoverMethod::Clone | RecoverMethod::Query), true) => {
                problems.push(FieldError::new(
                    "method",
                    format!(
                        "{table} does not exist now: only a copy of its snapshot decorator (COPY, or AUTO) brings back a dropped table, not {}",
                        method.as_str()
                    ),
                ));
                continue;
            }
            (RecoverMethod::Clone, false) if in_place => {
                problems.push(FieldError::new(
                    "method",
                    format!("a table cannot be cloned onto itself ({table}): use COPY or AUTO to recover it in place"),
                ));
                continue;
            }
            (method, _) => method,
        };
        let existing = match in_place {
            true => None,
            false => bigquery.find_table(&target).await?,
        };
        let target_exists = in_place && !dropped || existing.is_some();
        if target_exists && spec.write_disposition != WriteDisposition::WriteTruncate {
            conflicts.push(FieldError::new(
                target.to_string(),
                format!("table {target} exists; set writeDisposition WRITE_TRUNCATE to replace it, or choose another tableSuffix or targetDataset"),
            ));
            continue;
        }
        let resource = match (method, dropped) {
            (RecoverMethod::Query, false) => Some(bigquery.get_table(&table).await?),
            _ => None,
        };
        tables.push(RecoverTable {
            source: table,
            target,
            method,
            as_of: match spec.as_of {
                RecoverInstant::At(at) => at,
                RecoverInstant::BeforeDrop => now,
            },
            dropped,
            dropped_by_job: None,
            target_exists,
            resource,
        });
    }
    if spec.as_of == RecoverInstant::BeforeDrop && problems.is_empty() {
        let since = now - window;
        before_drop(bigquery, &source, &dataset.location, since, &mut tables)
            .await
            .unwrap_or_else(|problem| problems.push(problem));
    }
    if !problems.is_empty() {
        return Err(Error::invalid(
            "the recovery cannot be done as asked",
            problems,
        ));
    }
    if !conflicts.is_empty() {
        let names: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
        return Err(Error::conflict(format!(
            "recovery would overwrite {} (writeDisposition WRITE_EMPTY)",
            names.join(", ")
        ))
        .with_details(conflicts));
    }
    if tables.is_empty() {
        return Err(not_found(
            "dataset",
            format!("dataset {source} holds no table to recover"),
        ));
    }
    Ok(RecoverPlan {
        dataset: source,
        location: dataset.location.clone(),
        as_of: spec.as_of,
        window_hours,
        write_disposition: spec.write_disposition,
        tables,
    })
}

/// Sets each (dropped) table's instant to the millisecond before the job that dropped it last
/// started, as the project's `INFORMATION_SCHEMA.JOBS` tells since `since` (the start of the
/// window): a problem naming `asOf` when it cannot tell.
async fn before_drop(
    bigquery: &BigQuery,
    dataset: &DatasetRef,
    location: &str,
    since: DateTime<Utc>,
    tables: &mut [RecoverTable],
) -> Result<(), FieldError> {
    let names: Vec<String> = tables.iter().map(|t| t.source.table.clone()).collect();
    let drops = match bigquery.table_drops(dataset, location, &names, since).await {
        Ok(drops) => drops,
        // Unreachable or overloaded: the caller may retry, so that is not a problem of the request.
        Err(e) if e.kind() == crate::error::ErrorKind::Unavailable => {
            return Err(FieldError::new(
                "asOf",
                format!(
                    "BigQuery could not be asked when the tables were dropped ({}); try again, or give asOf as an instant when they existed",
                    e.message()
                ),
            ));
        }
        Err(e) => {
            return Err(FieldError::new(
                "asOf",
                format!(
                    "when the tables were dropped cannot be read from the project's INFORMATION_SCHEMA.JOBS ({}; reading every user's jobs needs bigquery.jobs.listAll): give asOf as an instant when they existed",
                    e.message()
                ),
            ));
        }
    };
    let unknown = set_drop_instants(tables, &drops);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(FieldError::new(
        "asOf",
        format!(
            "no DROP TABLE of {} since {} is in the project's INFORMATION_SCHEMA.JOBS: a table deleted through the API, by its expiration or by a job of another project leaves none there (Cloud Audit Logs record when); give asOf as an instant when it existed",
            unknown.join(", "),
            since.to_rfc3339()
        ),
    ))
}

/// Brings each table back to the millisecond before the job that dropped it started; the names
/// of the tables no drop is known of.
fn set_drop_instants(tables: &mut [RecoverTable], drops: &[TableDrop]) -> Vec<String> {
    let mut unknown = Vec::new();
    for table in tables.iter_mut() {
        match drops.iter().find(|d| d.table == table.source.table) {
            Some(drop) => {
                table.as_of = drop.started - chrono::Duration::milliseconds(1);
                table.dropped_by_job = Some(drop.job_id.clone());
            }
            None => unknown.push(table.source.to_string()),
        }
    }
    unknown
}

fn not_found(field: &str, message: String) -> Error {
    Error::not_found(message.clone()).with_details(vec![FieldError::new(field, message)])
}

/// Runs the recovery, one table after another; stops at the first that fails (naming it), the
/// tables before it recovered.
pub async fn run_recover(plan: &RecoverPlan, bigquery: &BigQuery) -> Result<RecoverReport, Error> {
    let started = std::time::Instant::now();
    let mut tables = Vec::new();
    for table in &plan.tables {
        let began = std::time::Instant::now();
        recover_table(plan, bigquery, table).await.map_err(|e| {
            let message = format!(
                "recovering {} into {} failed ({} table(s) recovered before it): {}",
                table.source,
                table.target,
                tables.len(),
                e.message()
            );
            e.with_message(message)
        })?;
        // What BigQuery says it did is checked: the target must be there now.
        let Some(recovered) = bigquery.find_table(&table.target).await? else {
            return Err(Error::upstream(format!(
                "BigQuery reported the {} of {} done, but {} does not exist ({} table(s) recovered before it)",
                table.method.as_str(),
                table.source,
                table.target,
                tables.len()
            )));
        };
        let rows = recovered.num_rows;
        tracing::info!(source = %table.source, target = %table.target, method = table.method.as_str(), "table recovered");
        tables.push(RecoveredTable {
            source: table.source.to_string(),
            target: table.target.to_string(),
            method: table.method,
            as_of: table.as_of,
            rows,
            duration_ms: elapsed_ms(began),
        });
    }
    Ok(RecoverReport {
        status: "SUCCEEDED",
        as_of: plan.as_of,
        tables,
        duration_ms: elapsed_ms(started),
    })
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn recover_table(
    plan: &RecoverPlan,
    bigquery: &BigQuery,
    table: &RecoverTable,
) -> Result<(), Error> {
    let location = plan.location.as_str();
    let at_ms = table.as_of.timestamp_millis();
    match table.method {
        RecoverMethod::Clone => {
            let sql = clone_statement(&table.source, &table.target, at_ms, table.target_exists);
            bigquery
                .execute(&table.target.project, location, &sql)
                .await
        }
        RecoverMethod::Copy | RecoverMethod::Auto => {
            let disposition = match table.target_exists {
                true => WriteDisposition::WriteTruncate,
                false => WriteDisposition::WriteEmpty,
            };
            bigquery
                .copy_snapshot(
                    &table.source,
                    at_ms,
                    &table.target,
                    disposition.as_str(),
                    Some(location).filter(|l| !l.is_empty()),
                )
                .await
                .map(drop)
        }
        RecoverMethod::Query => recover_by_query(plan, bigquery, table).await,
    }
}

/// QUERY: a new target is created and filled (and removed again should filling fail); an
/// existing one is replaced at once by a copy from a filled staging table.
async fn recover_by_query(
    plan: &RecoverPlan,
    bigquery: &BigQuery,
    table: &RecoverTable,
) -> Result<(), Error> {
    let resource = table
        .resource
        .as_ref()
        .ok_or_else(|| Error::internal(format!("no resource planned for {}", table.source)))?;
    let recorded = TableResource::of(resource)?;
    let now = Utc::now();
    let at_ms = table.as_of.timestamp_millis();
    let location = plan.location.as_str();
    let damaged = |e: crate::bigquery::ResourceError| {
        Error::upstream(format!(
            "BigQuery answered a resource for {} whose {e}",
            table.source
        ))
    };
    if !table.target_exists {
        let create = table_for_create(&recorded, &table.target, None, now).map_err(damaged)?;
        bigquery.create_table(&table.target, create).await?;
        let sql = insert_statement(&table.source, &table.target, at_ms);
        if let Err(e) = bigquery
            .execute(&table.target.project, location, &sql)
            .await
        {
            if let Err(removal) = bigquery.delete_table(&table.target).await {
                tracing::warn!(table = %table.target, error = %removal, "removing the table of a failed recovery failed");
            }
            return Err(e);
        }
        return Ok(());
    }
    let random = uuid::Uuid::new_v4().simple().to_string();
    let staging = TableRef::new(
        &table.target.project,
        &table.target.dataset,
        format!("bqb_recover_{}", &random[..16]),
    );
    let existing = bigquery.find_table(&table.target).await?;
    let create = staging_table_for_create(
        &recorded,
        &staging,
        &table.target,
        existing.as_ref(),
        now,
        now + STAGING_TTL,
    )
    .map_err(damaged)?;
    bigquery.create_table(&staging, create).await?;
    let result = async {
        let sql = insert_statement(&table.source, &staging, at_ms);
        bigquery.execute(&staging.project, location, &sql).await?;
        bigquery
            .copy_table(
                &staging,
                &table.target,
                WriteDisposition::WriteTruncate.as_str(),
                Some(location).filter(|l| !l.is_empty()),
            )
            .await
            .map(drop)
    }
    .await;
    if let Err(e) = bigquery.delete_table(&staging).await {
        tracing::warn!(staging = %staging, error = %e, "removing a recovery's staging table failed; it expires within a day");
    }
    result
}

/// `` `project.dataset.table` ``, quoted for GoogleSQL (names hold letters, digits, `_`, `-`).
fn quoted(table: &TableRef) -> String {
    format!("`{}.{}.{}`", table.project, table.dataset, table.table)
}

fn clone_statement(source: &TableRef, target: &TableRef, at_ms: i64, replace: bool) -> String {
    format!(
        "CREATE {}TABLE {} CLONE {} FOR SYSTEM_TIME AS OF TIMESTAMP_MILLIS({at_ms})",
        if replace { "OR REPLACE " } else { "" },
        quoted(target),
        quoted(source)
    )
}

fn insert_statement(source: &TableRef, target: &TableRef, at_ms: i64) -> String {
    format!(
        "INSERT INTO {} SELECT * FROM {} FOR SYSTEM_TIME AS OF TIMESTAMP_MILLIS({at_ms})",
        quoted(target),
        quoted(source)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(name: &str, now: DateTime<Utc>) -> RecoverTable {
        RecoverTable {
            source: TableRef::new("p", "shop", name),
            target: TableRef::new("p", "shop", format!("{name}_recovered")),
            method: RecoverMethod::Copy,
            as_of: now,
            dropped: true,
            dropped_by_job: None,
            target_exists: false,
            resource: None,
        }
    }

    #[test]
    fn a_dropped_table_comes_back_as_it_was_the_millisecond_before_its_drop_began() {
        let now = DateTime::from_timestamp_millis(1_764_700_000_000).unwrap();
        let started = DateTime::from_timestamp_millis(1_764_690_000_000).unwrap();
        let mut tables = vec![dropped("orders", now), dropped("lost", now)];
        let drops = [TableDrop {
            table: "orders".to_string(),
            job_id: "job_1".to_string(),
            started,
        }];
        let unknown = set_drop_instants(&mut tables, &drops);
        assert_eq!(unknown, ["p.shop.lost"]);
        assert_eq!(tables[0].as_of.timestamp_millis(), 1_764_689_999_999);
        assert_eq!(tables[0].dropped_by_job.as_deref(), Some("job_1"));
        assert_eq!(tables[1].as_of, now);
        assert_eq!(tables[1].dropped_by_job, None);
    }

    #[test]
    fn the_statements_name_both_tables_and_the_instant() {
        let source = TableRef::new("my-project", "shop", "orders");
        let target = TableRef::new("my-project", "shop", "orders_recovered");
        assert_eq!(
            clone_statement(&source, &target, 1_764_662_400_000, false),
            "CREATE TABLE `my-project.shop.orders_recovered` CLONE `my-project.shop.orders` FOR SYSTEM_TIME AS OF TIMESTAMP_MILLIS(1764662400000)"
        );
        assert!(clone_statement(&source, &target, 1, true).starts_with("CREATE OR REPLACE TABLE "));
        assert_eq!(
            insert_statement(&source, &target, 5),
            "INSERT INTO `my-project.shop.orders_recovered` SELECT * FROM `my-project.shop.orders` FOR SYSTEM_TIME AS OF TIMESTAMP_MILLIS(5)"
        );
    }
}
