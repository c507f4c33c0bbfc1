//! When tables were dropped: the `DROP TABLE` statements of the project's
//! `INFORMATION_SCHEMA.JOBS` in the dataset's region. What a recovery "as of just before it was
//! dropped" needs, since BigQuery keeps no drop time on anything a caller can read.
//!
//! It sees what jobs did, scripts' statements included: a table deleted through the API
//! (`tables.delete`) or by its expiration leaves no job (only Cloud Audit Logs record those),
//! and a statement run by a job of another project is listed in that project. Reading every
//! user's jobs needs `bigquery.jobs.listAll` on the project (BigQuery Resource Viewer).

use chrono::{DateTime, Utc};

use super::client::BigQuery;
use crate::domain::DatasetRef;
use crate::error::Error;

/// One successful `DROP TABLE` of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDrop {
    pub table: String,
    pub job_id: String,
    /// When the job that dropped it started: the table existed until then.
    pub started: DateTime<Utc>,
}

impl BigQuery {
    /// The newest successful `DROP TABLE` since `since` of each of `tables` of `dataset` (which
    /// is in `location`); a table with none is left out.
    pub async fn table_drops(
        &self,
        dataset: &DatasetRef,
        location: &str,
        tables: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<TableDrop>, Error> {
        let sql = drops_query(dataset, location, tables, since);
        let rows = self.query_rows(&dataset.project, location, &sql).await?;
        let mut drops: Vec<TableDrop> = Vec::new();
        for row in rows {
            let bad = || {
                Error::upstream(format!(
                    "INFORMATION_SCHEMA.JOBS answered a row this service cannot read: {row:?}"
                ))
            };
            let [Some(table), Some(job_id), Some(started)] = row.as_slice() else {
                return Err(bad());
            };
            let started = started
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or_else(bad)?;
            // Newest first: the first row of a table is its last drop.
            if !drops.iter().any(|d| &d.table == table) {
                drops.push(TableDrop {
                    table: table.clone(),
                    job_id: job_id.clone(),
                    started,
                });
            }
        }
        Ok(drops)
    }
}

/// `region-us`, `region-europe-west2`: the qualifier of a location's `INFORMATION_SCHEMA` views
/// (a dataset without a recorded location is in the US multi-region).
pub fn region_qualifier(location: &str) -> String {
    match location.trim() {
        "" => "region-us".to_string(),
        location => format!("region-{}", location.to_ascii_lowercase()),
    }
}

/// A GoogleSQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn drops_query(
    dataset: &DatasetRef,
    location: &str,
    tables: &[String],
    since: DateTime<Utc>,
) -> String {
    let names: Vec<String> = tables.iter().map(|t| literal(t)).collect();
    format!(
        "SELECT ddl_target_table.table_id, job_id, UNIX_MILLIS(start_time) \
         FROM `{project}`.`{region}`.INFORMATION_SCHEMA.JOBS \
         WHERE creation_time >= TIMESTAMP_MILLIS({since}) \
         AND statement_type = 'DROP_TABLE' AND state = 'DONE' AND error_result IS NULL \
         AND ddl_target_table.project_id = {project_literal} \
         AND ddl_target_table.dataset_id = {dataset_literal} \
         AND ddl_target_table.table_id IN ({names}) \
         ORDER BY start_time DESC",
        project = dataset.project,
        region = region_qualifier(location),
        since = since.timestamp_millis(),
        project_literal = literal(&dataset.project),
        dataset_literal = literal(&dataset.dataset),
        names = names.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_reads_the_regions_drop_statements_of_the_named_tables() {
        let since = DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();
        let sql = drops_query(
            &DatasetRef::new("my-project", "shop"),
            "EU",
            &["orders".to_string(), "it's".to_string()],
            since,
        );
        assert_eq!(
            sql,
            "SELECT ddl_target_table.table_id, job_id, UNIX_MILLIS(start_time) \
             FROM `my-project`.`region-eu`.INFORMATION_SCHEMA.JOBS \
             WHERE creation_time >= TIMESTAMP_MILLIS(1764000000000) \
             AND statement_type = 'DROP_TABLE' AND state = 'DONE' AND error_result IS NULL \
             AND ddl_target_table.project_id = 'my-project' \
             AND ddl_target_table.dataset_id = 'shop' \
             AND ddl_target_table.table_id IN ('orders', 'it\\'s') \
             ORDER BY start_time DESC"
        );
    }

    #[test]
    fn a_location_names_its_region() {
        assert_eq!(region_qualifier("US"), "region-us");
        assert_eq!(region_qualifier("europe-west2"), "region-europe-west2");
        assert_eq!(region_qualifier(""), "region-us");
    }
}
