//! Dataset and table metadata over REST. List calls follow `nextPageToken` through every page.

use google_cloud_bigquery_v2::model::{Dataset, Table};
use google_cloud_gax::paginator::ItemPaginator;

use super::client::BigQuery;
use super::error::BigQueryError;
use crate::domain::{DatasetRef, TableRef};

/// A dataset as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetInfo {
    pub dataset: DatasetRef,
    pub location: String,
}

/// What kind of table a listing entry is; only `Table` holds data to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableKind {
    Table,
    View,
    MaterializedView,
    Snapshot,
    External,
    Other,
}

impl TableKind {
    /// Tables and table snapshots hold data that is exported; views, materialized views and
    /// external tables are recorded as definitions.
    pub fn holds_data(self) -> bool {
        matches!(self, Self::Table | Self::Snapshot)
    }

    /// The REST `type` name (`TABLE`, `VIEW`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "TABLE",
            Self::View => "VIEW",
            Self::MaterializedView => "MATERIALIZED_VIEW",
            Self::Snapshot => "SNAPSHOT",
            Self::External => "EXTERNAL",
            Self::Other => "OTHER",
        }
    }

    /// From the REST `type` field.
    pub fn from_api(t: &str) -> Self {
        match t {
            "TABLE" => Self::Table,
            "VIEW" => Self::View,
            "MATERIALIZED_VIEW" => Self::MaterializedView,
            "SNAPSHOT" => Self::Snapshot,
            "EXTERNAL" => Self::External,
            _ => Self::Other,
        }
    }
}

/// A table as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableInfo {
    pub table: TableRef,
    pub kind: TableKind,
}

impl BigQuery {
    /// Every dataset of `project`, through all pages.
    pub async fn list_datasets(&self, project: &str) -> Result<Vec<DatasetInfo>, BigQueryError> {
        let mut pages = self
            .inner
            .datasets
            .list_datasets()
            .set_project_id(project)
            .by_item();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item =
                item.map_err(|e| BigQueryError::api(format!("datasets.list({project})"), e))?;
            let Some(reference) = item.dataset_reference else {
                continue;
            };
            out.push(DatasetInfo {
                dataset: DatasetRef::new(reference.project_id, reference.dataset_id),
                location: item.location,
            });
        }
        Ok(out)
    }

    /// Every table, view and materialized view of a dataset, through all pages.
    pub async fn list_tables(&self, dataset: &DatasetRef) -> Result<Vec<TableInfo>, BigQueryError> {
        let mut pages = self
            .inner
            .tables
            .list_tables()
            .set_project_id(&dataset.project)
            .set_dataset_id(&dataset.dataset)
            .by_item();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item =
                item.map_err(|e| BigQueryError::api(format!("tables.list({dataset})"), e))?;
            let Some(reference) = item.table_reference else {
                continue;
            };
            out.push(TableInfo {
                table: TableRef::new(
                    reference.project_id,
                    reference.dataset_id,
                    reference.table_id,
                ),
                kind: TableKind::from_api(&item.r#type),
            });
        }
        Ok(out)
    }

    /// The full dataset resource (location, description, labels, default expirations).
    pub async fn get_dataset(&self, dataset: &DatasetRef) -> Result<Dataset, BigQueryError> {
        self.inner
            .datasets
            .get_dataset()
            .set_project_id(&dataset.project)
            .set_dataset_id(&dataset.dataset)
            .send()
            .await
            .map_err(|e| BigQueryError::api(format!("datasets.get({dataset})"), e))
    }

    /// The full table resource: schema, partitioning, clustering, labels, description, row count.
    pub async fn get_table(&self, table: &TableRef) -> Result<Table, BigQueryError> {
        self.inner
            .tables
            .get_table()
            .set_project_id(&table.project)
            .set_dataset_id(&table.dataset)
            .set_table_id(&table.table)
            .send()
            .await
            .map_err(|e| BigQueryError::api(format!("tables.get({table})"), e))
    }

    /// Readiness: BigQuery answered a cheap authenticated call (one dataset of `project`).
    pub async fn ping(&self, project: &str) -> Result<(), BigQueryError> {
        self.inner
            .datasets
            .list_datasets()
            .set_project_id(project)
            .set_max_results(1_u32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| BigQueryError::api(format!("datasets.list({project})"), e))
    }
}
