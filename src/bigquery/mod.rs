//! The BigQuery client: dataset and table metadata over REST (`google-cloud-bigquery-v2`), table
//! data over the Storage Read API as Arrow, snapshot and extract jobs for the EXTRACT method, load and copy jobs for restore (`google-cloud-bigquery`), credentials from
//! `google-cloud-auth` (Application Default Credentials, or anonymous for emulators).
//!
//! Every call retries transient failures through the one policy in [`retry`]. Errors leave this
//! module as [`crate::Error`] with a kind derived from the API status.
//!
//! Depends on `config`, `domain` and `error`; never on `api`, `storage` or `formats`.

mod admin;
mod client;
mod copy;
mod drops;
mod error;
mod extract;
mod load;
mod metadata;
mod partitions;
mod read;
pub mod resource;
mod rest;
pub mod retry;
mod routines;
pub(crate) mod settings;
mod views;

pub use client::{BigQuery, BigQueryConfig};
pub use drops::TableDrop;
pub use error::BigQueryError;
pub use extract::{ExtractJob, ExtractOutcome};
pub use load::{LoadOutcome, LoadUpload, UPLOAD_CHUNK};
pub use metadata::{DatasetInfo, TableInfo, TableKind};
pub use partitions::PartitionInfo;
pub use read::{BatchStream, ReadOptions, StoredSession, TableReader};
pub use resource::{DatasetResource, ResourceError, RoutineResource, TableResource};
pub use settings::BigQuerySettings;
pub use views::ViewSql;

/// The REST model types (Table, TableSchema, Dataset, ...) as BigQuery's JSON defines them; the
/// manifest stores resources in this shape, read through [`resource`].
pub use google_cloud_bigquery_v2::model;
