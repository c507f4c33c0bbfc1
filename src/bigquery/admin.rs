//! Creating and deleting datasets and tables (restore).

use google_cloud_bigquery_v2::model::{Dataset, Table};

use super::client::BigQuery;
use super::error::BigQueryError;
use super::retry;
use crate::domain::{DatasetRef, TableRef};
use crate::error::Error;

impl BigQuery {
    /// Creates a dataset. `Ok(false)` when it already exists (left as it is). A dataset found
    /// by a retry ([`retry::insert`]) is this call's own when it was created after the first
    /// attempt began (the first attempt landed and only its answer was lost).
    pub async fn create_dataset(
        &self,
        dataset: &DatasetRef,
        resource: Dataset,
    ) -> Result<bool, BigQueryError> {
        let began = chrono::Utc::now();
        let operation = format!("datasets.insert({dataset})");
        let sent = retry::insert(&operation, || {
            self.inner
                .datasets
                .insert_dataset()
                .set_project_id(&dataset.project)
                .set_dataset(resource.clone())
                .send()
        })
        .await;
        let (e, retried) = match sent {
            Ok(_) => return Ok(true),
            Err(failed) => failed,
        };
        let err = BigQueryError::api(operation, e);
        match err.kind() {
            crate::ErrorKind::Conflict if retried => {
                let found = self.get_dataset(dataset).await?;
                Ok(created_since(found.creation_time, began))
            }
            crate::ErrorKind::Conflict => Ok(false),
            _ => Err(err),
        }
    }

    /// Creates a table from a full resource (schema, partitioning, clustering, labels, ...). A
    /// table found by a retry ([`retry::insert`]) is this call's own only when it was created
    /// after the first attempt began and is empty.
    pub async fn create_table(
        &self,
        table: &TableRef,
        resource: Table,
    ) -> Result<Table, BigQueryError> {
        let began = chrono::Utc::now();
        let operation = format!("tables.insert({table})");
        let sent = retry::insert(&operation, || {
            self.inner
                .tables
                .insert_table()
                .set_project_id(&table.project)
                .set_dataset_id(&table.dataset)
                .set_table(resource.clone())
                .send()
        })
        .await;
        let (e, retried) = match sent {
            Ok(created) => return Ok(created),
            Err(failed) => failed,
        };
        let err = BigQueryError::api(operation, e);
        if !retried || err.kind() != crate::ErrorKind::Conflict {
            return Err(err);
        }
        match self.find_table(table).await? {
            Some(found)
                if created_since(found.creation_time, began)
                    && found.num_rows.is_none_or(|n| n == 0) =>
            {
                Ok(found)
            }
            _ => Err(err),
        }
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

    /// The dataset resource, or `None` when it does not exist.
    pub async fn find_dataset(
        &self,
        dataset: &DatasetRef,
    ) -> Result<Option<Dataset>, BigQueryError> {
        match self.get_dataset(dataset).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a dataset only if nothing is in it: `true` when it is gone (or was already),
    /// `false` when it still holds something and was kept.
    pub async fn delete_dataset_if_empty(
        &self,
        dataset: &DatasetRef,
    ) -> Result<bool, BigQueryError> {
        match self.delete_dataset(dataset, false).await {
            Ok(()) => Ok(true),
            // "still in use": BigQuery answers 400 for a dataset that is not empty.
            Err(e)
                if matches!(
                    e.kind(),
                    crate::ErrorKind::InvalidInput | crate::ErrorKind::Conflict
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a restore drill's scratch dataset with everything in it. Refuses any dataset whose
    /// name is not a drill's (`bqb_drill_…`): a user's dataset is never deleted with contents.
    pub async fn delete_scratch_dataset(&self, dataset: &DatasetRef) -> Result<(), Error> {
        if !dataset
            .dataset
            .starts_with(crate::domain::DRILL_DATASET_PREFIX)
        {
            return Err(Error::internal(format!(
                "refusing to delete {dataset} with its tables: not a drill's scratch dataset"
            )));
        }
        self.delete_dataset(dataset, true)
            .await
            .map_err(Error::from)
    }

    /// `datasets.delete`, with its tables when `contents`; one already gone is not an error.
    pub(super) async fn delete_dataset(
        &self,
        dataset: &DatasetRef,
        contents: bool,
    ) -> Result<(), BigQueryError> {
        match self
            .inner
            .datasets
            .delete_dataset()
            .set_project_id(&dataset.project)
            .set_dataset_id(&dataset.dataset)
            .set_delete_contents(contents)
            .send()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = BigQueryError::api(format!("datasets.delete({dataset})"), e);
                match err.kind() {
                    crate::ErrorKind::NotFound => Ok(()),
                    _ => Err(err),
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

/// Whether a resource created at `creation_ms` (epoch milliseconds, BigQuery's clock) was
/// created by a call that began at `began` (ours): a few seconds of clock skew are allowed.
fn created_since(creation_ms: i64, began: chrono::DateTime<chrono::Utc>) -> bool {
    creation_ms >= began.timestamp_millis() - 5_000
}
