//! BigQuery settings: the default project, the endpoints, credentials or none, how many
//! Storage Read streams one table is read with, and how many files of one table a restore loads
//! at once.

use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) const DEFAULT_BIGQUERY_ENDPOINT: &str = "https://bigquery.googleapis.com";
pub(crate) const DEFAULT_BIGQUERY_STORAGE_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";
pub(crate) const DEFAULT_READ_STREAMS_PER_TABLE: usize = 4;
pub(crate) const DEFAULT_LOAD_FILES_PER_TABLE: usize = 4;
/// The platform's own project variable (Cloud Run, Cloud Functions, gcloud), used when
/// `BQB_PROJECT_ID` is unset.
const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";

pub(crate) static PROJECT_ID: Variable = Variable {
    name: "BQB_PROJECT_ID",
    default: "$GOOGLE_CLOUD_PROJECT",
    doc: "Default Google Cloud project: billing project for read sessions and jobs, readiness probe, trace ids in logs.",
};
pub(crate) static ENDPOINT: Variable = Variable {
    name: "BQB_BIGQUERY_ENDPOINT",
    default: DEFAULT_BIGQUERY_ENDPOINT,
    doc: "BigQuery REST endpoint (without `/bigquery/v2`). Point it at an emulator for tests.",
};
pub(crate) static STORAGE_ENDPOINT: Variable = Variable {
    name: "BQB_BIGQUERY_STORAGE_ENDPOINT",
    default: DEFAULT_BIGQUERY_STORAGE_ENDPOINT,
    doc: "BigQuery Storage Read/Write gRPC endpoint. `http://` means plaintext (loopback emulators only).",
};
pub(crate) static GOOGLE_ANONYMOUS: Variable = Variable {
    name: "BQB_GOOGLE_ANONYMOUS",
    default: "false",
    doc: "Send no Google credentials (emulators). Otherwise Application Default Credentials: metadata server, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud user credentials, workload identity federation.",
};
pub(crate) static READ_STREAMS_PER_TABLE: Variable = Variable {
    name: "BQB_READ_STREAMS_PER_TABLE",
    default: "4",
    doc: "Storage Read API streams read in parallel per table.",
};
pub(crate) static LOAD_FILES_PER_TABLE: Variable = Variable {
    name: "BQB_LOAD_FILES_PER_TABLE",
    default: "4",
    doc: "Files of one table a restore loads in parallel when BigQuery loads them as they are (PARQUET not on gs://), each through its own load job into a staging table.",
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQuerySettings {
    /// The default project (also the trace project of logs and the readiness probe's).
    pub project_id: Option<String>,
    pub endpoint: String,
    pub storage_endpoint: String,
    pub anonymous: bool,
    pub read_streams_per_table: usize,
    pub load_files_per_table: usize,
}

impl BigQuerySettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let project_id = read
            .text(&PROJECT_ID)
            .map(str::trim)
            .or(read.platform(GOOGLE_CLOUD_PROJECT))
            .map(String::from);
        if let Some(p) = &project_id
            && !crate::domain::is_valid_project_id(p)
        {
            read.problem(
                &PROJECT_ID,
                format!("`{p}` is not a valid Google Cloud project id"),
            );
        }
        let settings = Self {
            project_id,
            endpoint: read.endpoint(&ENDPOINT, DEFAULT_BIGQUERY_ENDPOINT),
            storage_endpoint: read.endpoint(&STORAGE_ENDPOINT, DEFAULT_BIGQUERY_STORAGE_ENDPOINT),
            anonymous: read.flag(&GOOGLE_ANONYMOUS),
            read_streams_per_table: read
                .positive(&READ_STREAMS_PER_TABLE, DEFAULT_READ_STREAMS_PER_TABLE),
            load_files_per_table: read
                .positive(&LOAD_FILES_PER_TABLE, DEFAULT_LOAD_FILES_PER_TABLE),
        };
        read.finish(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::read_pairs;

    fn read(pairs: &[(&str, &str)]) -> Result<BigQuerySettings, String> {
        read_pairs(pairs, BigQuerySettings::from_source)
    }

    #[test]
    fn the_project_falls_back_to_google_cloud_project() {
        let s = read(&[("GOOGLE_CLOUD_PROJECT", "my-proj")]).unwrap();
        assert_eq!(s.project_id.as_deref(), Some("my-proj"));
        let s = read(&[
            ("GOOGLE_CLOUD_PROJECT", "my-proj"),
            ("BQB_PROJECT_ID", "other-proj"),
        ])
        .unwrap();
        assert_eq!(s.project_id.as_deref(), Some("other-proj"));
    }
}
