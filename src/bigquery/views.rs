//! The SQL of every logical view of a dataset in one call: a query of the dataset's
//! `INFORMATION_SCHEMA.VIEWS` (jobs.query, then jobs.getQueryResults until complete and through
//! every page), instead of one tables.get per view.
//!
//! Costs a query job: it needs `bigquery.jobs.create` in the project, and BigQuery bills
//! INFORMATION_SCHEMA queries at its 10 MB minimum. Callers fall back to tables.get when refused.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::BigQuery;
use crate::domain::DatasetRef;
use crate::error::Error;

/// How long one jobs.query / getQueryResults call waits for the job, and how many waits before
/// giving up (metadata queries finish in seconds).
const WAIT_MS: u32 = 30_000;
const MAX_WAITS: usize = 20;
const PAGE_ROWS: u32 = 10_000;

/// One view as `INFORMATION_SCHEMA.VIEWS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSql {
    pub view: String,
    pub query: String,
    /// `use_standard_sql = 'NO'`.
    pub legacy_sql: bool,
}

impl BigQuery {
    /// The SQL of every logical view (not materialized views, which the view does not list) of
    /// `dataset`, which is in `location`.
    pub async fn view_definitions(
        &self,
        dataset: &DatasetRef,
        location: &str,
    ) -> Result<Vec<ViewSql>, Error> {
        // Dataset ids are letters, digits and `_` only; the project id is quoted for its dashes.
        let sql = format!(
            "SELECT table_name, view_definition, use_standard_sql FROM `{}`.{}.INFORMATION_SCHEMA.VIEWS",
            dataset.project, dataset.dataset
        );
        let rows = self.query_rows(&dataset.project, location, &sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut cells = row.into_iter();
                let view = cells.next().flatten()?;
                let query = cells.next().flatten()?;
                let legacy_sql = cells.next().flatten().as_deref() == Some("NO");
                Some(ViewSql {
                    view,
                    query,
                    legacy_sql,
                })
            })
            .collect())
    }

    /// Runs one GoogleSQL statement (DDL or DML) as a query job and waits for it to end.
    pub async fn execute(&self, project: &str, location: &str, sql: &str) -> Result<(), Error> {
        self.query_rows(project, location, sql).await.map(drop)
    }

    /// Runs a read-only GoogleSQL query and returns every row's cells as text (`None` = NULL).
    pub(super) async fn query_rows(
        &self,
        project: &str,
        location: &str,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, Error> {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "timeoutMs": WAIT_MS,
            "maxResults": PAGE_ROWS,
            "requestId": uuid::Uuid::new_v4().to_string(),
        });
        if !location.is_empty() {
            body["location"] = json!(location);
        }
        let mut page = self
            .rest(
                Method::POST,
                &format!("projects/{project}/queries"),
                Some(&body),
            )
            .await?;
        let job = page["jobReference"].clone();
        let mut rows = Vec::new();
        let mut waits = 0;
        loop {
            check_query_errors(&page, sql)?;
            let complete = page["jobComplete"].as_bool().unwrap_or(false);
            if complete {
                rows.extend(page_rows(&page));
            }
            let token = page["pageToken"].as_str().filter(|t| !t.is_empty());
            if complete && token.is_none() {
                return Ok(rows);
            }
            if !complete {
                waits += 1;
                if waits > MAX_WAITS {
                    return Err(Error::upstream(format!(
                        "BigQuery did not finish the query `{sql}` in time"
                    )));
                }
            }
            let job_id = job["jobId"].as_str().unwrap_or_default();
            let mut path = format!(
                "projects/{project}/queries/{}?timeoutMs={WAIT_MS}&maxResults={PAGE_ROWS}",
                encode(job_id)
            );
            if let Some(location) = job["location"].as_str().filter(|l| !l.is_empty()) {
                path.push_str(&format!("&location={}", encode(location)));
            }
            if let Some(token) = token.filter(|_| complete) {
                path.push_str(&format!("&pageToken={}", encode(token)));
            }
            page = self.rest(Method::GET, &path, None).await?;
        }
    }
}

/// A finished query whose job failed: BigQuery answers with `errors` and no result schema.
fn check_query_errors(page: &Value, sql: &str) -> Result<(), Error> {
    let failed = page["errors"].as_array().is_some_and(|e| !e.is_empty())
        && page["schema"]["fields"]
            .as_array()
            .is_none_or(|f| f.is_empty());
    if failed {
        let message = page["errors"][0]["message"].as_str().unwrap_or("failed");
        return Err(Error::upstream(format!(
            "BigQuery query `{sql}` failed: {message}"
        )));
    }
    Ok(())
}

fn page_rows(page: &Value) -> impl Iterator<Item = Vec<Option<String>>> + '_ {
    page["rows"].as_array().into_iter().flatten().map(|row| {
        row["f"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cell| cell["v"].as_str().map(str::to_string))
            .collect()
    })
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_out_as_text_cells_with_nulls() {
        let page = json!({ "rows": [
            { "f": [{ "v": "v1" }, { "v": "SELECT 1" }, { "v": "YES" }] },
            { "f": [{ "v": "v2" }, { "v": null }, { "v": "NO" }] }
        ] });
        let rows: Vec<_> = page_rows(&page).collect();
        assert_eq!(
            rows[0],
            [
                Some("v1".into()),
                Some("SELECT 1".into()),
                Some("YES".into())
            ]
        );
        assert_eq!(rows[1][1], None);
    }

    #[test]
    fn a_failed_job_is_an_error_and_warnings_beside_a_result_are_not() {
        let failed = json!({ "jobComplete": true, "schema": { "fields": [] },
                             "errors": [{ "message": "Binder Error" }] });
        let err = check_query_errors(&failed, "SELECT x").unwrap_err();
        assert!(err.to_string().contains("Binder Error"), "{err}");
        let warned = json!({ "jobComplete": true, "schema": { "fields": [{ "name": "a" }] },
                             "errors": [{ "message": "a warning" }] });
        assert!(check_query_errors(&warned, "SELECT a").is_ok());
    }
}
