//! Builds the BigQuery clients once (they pool connections internally; clone freely).

use std::sync::Arc;

use google_cloud_auth::credentials::Credentials;
use google_cloud_bigquery::client::Read;
use google_cloud_bigquery_v2::client::{DatasetService, JobService, TableService};

use super::BigQuerySettings;
use super::error::BigQueryError;
use super::retry;

/// What is needed to reach BigQuery: endpoints and whether to send credentials.
#[derive(Debug, Clone)]
pub struct BigQueryConfig {
    /// REST endpoint without `/bigquery/v2` (the client adds it).
    pub endpoint: String,
    /// Storage Read/Write gRPC endpoint; `http://` is plaintext (emulators on loopback).
    pub storage_endpoint: String,
    /// Send no credentials (emulators only).
    pub anonymous: bool,
    /// Project billed for read sessions when the caller names none.
    pub default_project: Option<String>,
    /// Storage Read API streams per table.
    pub read_streams_per_table: usize,
    /// Files of one table a restore loads at once.
    pub load_files_per_table: usize,
}

impl BigQueryConfig {
    pub fn from_settings(settings: &BigQuerySettings) -> Self {
        let BigQuerySettings {
            project_id,
            endpoint,
            storage_endpoint,
            anonymous,
            read_streams_per_table,
            load_files_per_table,
        } = settings.clone();
        Self {
            endpoint,
            storage_endpoint,
            anonymous,
            default_project: project_id,
            read_streams_per_table,
            load_files_per_table,
        }
    }

    /// Builds every client with the one retry policy. Fails when credentials cannot be found.
    pub async fn build(self) -> Result<BigQuery, BigQueryError> {
        let credentials = if self.anonymous {
            google_cloud_auth::credentials::anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| BigQueryError::Build {
                    client: "credentials",
                    source: Box::new(e),
                })?
        };
        macro_rules! build {
            ($client:ty, $name:literal, $endpoint:expr) => {
                <$client>::builder()
                    .with_endpoint($endpoint.clone())
                    .with_credentials(credentials.clone())
                    .with_retry_policy(retry::policy())
                    .with_backoff_policy(retry::backoff())
                    .build()
                    .await
                    .map_err(|e| BigQueryError::Build {
                        client: $name,
                        source: Box::new(e),
                    })?
            };
        }
        let inner = Inner {
            datasets: build!(DatasetService, "datasets", self.endpoint),
            tables: build!(TableService, "tables", self.endpoint),
            jobs: build!(JobService, "jobs", self.endpoint),
            read: build!(Read, "storage read", self.storage_endpoint),
            credentials,
            http: reqwest::Client::new(),
            config: self,
        };
        Ok(BigQuery {
            inner: Arc::new(inner),
        })
    }
}

/// The BigQuery client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BigQuery {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) datasets: DatasetService,
    pub(super) tables: TableService,
    pub(super) jobs: JobService,
    pub(super) read: Read,
    pub(super) credentials: Credentials,
    /// For the calls the official crates do not cover (uploads, REST JSON).
    pub(super) http: reqwest::Client,
    pub(super) config: BigQueryConfig,
}

impl BigQuery {
    pub fn config(&self) -> &BigQueryConfig {
        &self.inner.config
    }
}
