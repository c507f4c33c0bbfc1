//! The partitions of every partitioned table of a dataset in one call: a query of the dataset's
//! `INFORMATION_SCHEMA.PARTITIONS`. What an incremental backup compares with its base.
//!
//! Costs a query job billed at BigQuery's 10 MB minimum; needs `bigquery.jobs.create` in the
//! project and `bigquery.tables.get` on the tables.

use chrono::{DateTime, Utc};

use super::client::BigQuery;
use crate::domain::DatasetRef;
use crate::error::Error;

/// One partition as `INFORMATION_SCHEMA.PARTITIONS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub table: String,
    /// `partition_id`: `20240131`, `2024013114`, `202401`, `2024`, an integer range's start,
    /// `__NULL__` or `__UNPARTITIONED__`.
    pub id: String,
    pub total_rows: u64,
    /// When the partition's data last changed.
    pub last_modified: DateTime<Utc>,
}

impl BigQuery {
    /// Every partition of every table of `dataset` (which is in `location`). An unpartitioned
    /// table is listed as one partition `__NULL__`.
    pub async fn partitions(
        &self,
        dataset: &DatasetRef,
        location: &str,
    ) -> Result<Vec<PartitionInfo>, Error> {
        // Dataset ids are letters, digits and `_` only; the project id is quoted for its dashes.
        let sql = format!(
            "SELECT table_name, partition_id, total_rows, UNIX_MILLIS(last_modified_time) FROM `{}`.{}.INFORMATION_SCHEMA.PARTITIONS",
            dataset.project, dataset.dataset
        );
        let rows = self.query_rows(&dataset.project, location, &sql).await?;
        rows.into_iter()
            .map(|row| {
                let bad = || {
                    Error::upstream(format!(
                        "INFORMATION_SCHEMA.PARTITIONS of {dataset} answered a row this service cannot read: {row:?}"
                    ))
                };
                let [table, id, total_rows, modified] = row.as_slice() else {
                    return Err(bad());
                };
                let (Some(table), Some(id)) = (table.clone(), id.clone()) else {
                    return Err(bad());
                };
                let total_rows = total_rows
                    .as_deref()
                    .unwrap_or("0")
                    .parse::<u64>()
                    .map_err(|_| bad())?;
                let last_modified = modified
                    .as_deref()
                    .and_then(|ms| ms.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(bad)?;
                Ok(PartitionInfo {
                    table,
                    id,
                    total_rows,
                    last_modified,
                })
            })
            .collect()
    }
}
