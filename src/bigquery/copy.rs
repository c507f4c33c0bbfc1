//! Copy jobs: one job, which BigQuery applies whole or not at all. They move a restore's staging
//! table into its target, so the target sees every file of a table or none of them, and bring a
//! table back from its snapshot decorator (`table@ms`) in a time-travel recovery.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::client::BigQuery;
use crate::domain::TableRef;
use crate::error::Error;

impl BigQuery {
    /// Copies every row of `source` into `destination`, an existing table (never created here),
    /// with `write_disposition`, and waits for the job; returns its id. Inserting is retried
    /// under the same job id (a copy whose answer was lost is found by it, never run twice), and
    /// a job that failed for a transient reason, having written nothing, is run again.
    ///
    /// Not cancellable: the copy is the moment the target changes, and a cancel sent to BigQuery
    /// while it runs could still lose the race, leaving a caller unsure whether it landed. Once
    /// started, it is waited for.
    pub async fn copy_table(
        &self,
        source: &TableRef,
        destination: &TableRef,
        write_disposition: &str,
        location: Option<&str>,
    ) -> Result<String, Error> {
        let what = format!("copy of {source} into {destination}");
        self.copy(
            source,
            &source.table,
            destination,
            ("CREATE_NEVER", write_disposition),
            location,
            &what,
        )
        .await
    }

    /// A copy job from `source` as it was at `at_ms` (milliseconds since the epoch; the snapshot
    /// decorator `table@ms`, which also reaches a table dropped since, within the time-travel
    /// window) into `destination`, created if needed. What a time-travel recovery by COPY runs.
    pub async fn copy_snapshot(
        &self,
        source: &TableRef,
        at_ms: i64,
        destination: &TableRef,
        write_disposition: &str,
        location: Option<&str>,
    ) -> Result<String, Error> {
        let what = format!("copy of {source}@{at_ms} into {destination}");
        self.copy(
            source,
            &format!("{}@{at_ms}", source.table),
            destination,
            ("CREATE_IF_NEEDED", write_disposition),
            location,
            &what,
        )
        .await
    }

    /// One copy job from table `source_table` of `source`'s dataset into `destination`, with its
    /// create and write dispositions; waits for it and returns its id.
    async fn copy(
        &self,
        source: &TableRef,
        source_table: &str,
        destination: &TableRef,
        (create_disposition, write_disposition): (&str, &str),
        location: Option<&str>,
        what: &str,
    ) -> Result<String, Error> {
        let configuration = json!({
            "copy": {
                "sourceTable": {
                    "projectId": source.project,
                    "datasetId": source.dataset,
                    "tableId": source_table,
                },
                "destinationTable": {
                    "projectId": destination.project,
                    "datasetId": destination.dataset,
                    "tableId": destination.table,
                },
                "operationType": "COPY",
                "createDisposition": create_disposition,
                "writeDisposition": write_disposition,
            }
        });
        let done = self
            .run_job(
                &destination.project,
                location,
                configuration,
                what,
                &CancellationToken::new(),
            )
            .await?;
        Ok(done["jobReference"]["jobId"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}
