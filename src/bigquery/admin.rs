//! Creating and deleting datasets and tables (restore).

use google_cloud_bigquery_v2::model::{Dataset, Table};

use super::client::BigQuery;
use super::error::BigQueryError;
use crate::domain::{DatasetRef, TableRef};

impl BigQuery {
    /// Creates a dataset. `Ok(false)` when it already exists (left as it is).
    pub async fn create_dataset(
        &self,
        dataset: &DatasetRef,
        resource: Dataset,
    ) -> Result<bool, BigQueryError> {
        match self
            .inner
            .datasets
            .insert_dataset()
            .set_project_id(&dataset.project)
            .set_dataset(resource)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = BigQueryError::api(format!("datasets.insert({dataset})"), e);
                if err.kind() == crate::ErrorKind::Conflict {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Creates a table from a full resource (schema, partitioning, clustering, labels, ...).
    pub async fn create_table(
        &self,
        table: &TableRef,
        resource: Table,
    ) -> Result<Table, BigQueryError> {
        self.inner
            .tables
            .insert_table()
            .set_project_id(&table.project)
            .set_dataset_id(&table.dataset)
            .set_table(resource)
            .send()
            .await
            .map_err(|e| BigQueryError::api(format!("tables.insert({table})"), e))
    }

    /// Deletes a table; a table that is already gone is not an error.
    pub async fn delete_table(&self, table: &TableRef) -> Result<(), BigQueryError> {
        match self
            .inner
            .tables
            .delete_table()
            .set_project_id(&table.project)
            .set_dataset_id(&table.dataset)
            .set_table_id(&table.table)
            .send()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = BigQueryError::api(format!("tables.delete({table})"), e);
                if err.kind() == crate::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The table resource, or `None` when it does not exist.
    pub async fn find_table(&self, table: &TableRef) -> Result<Option<Table>, BigQueryError> {
        match self.get_table(table).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
