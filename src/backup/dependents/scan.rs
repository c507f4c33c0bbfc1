//! Reads a project's [`Catalog`] from BigQuery: datasets, tables, the SQL of views (from
//! `INFORMATION_SCHEMA.VIEWS`, else tables.get) and materialized views, and routines.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use super::{Catalog, CatalogDataset, CatalogObject, ObjectKind};
use crate::bigquery::{BigQuery, DatasetInfo, TableKind};
use crate::domain::TableRef;
use crate::error::{Error, ErrorKind};

/// Datasets scanned at once.
const SCAN_CONCURRENCY: usize = 8;

/// Reads the catalog of `project`: every dataset, its tables, the SQL of its views and
/// materialized views, and its routines.
pub(crate) async fn scan_project(bigquery: &BigQuery, project: &str) -> Result<Catalog, Error> {
    let datasets = bigquery.list_datasets(project).await?;
    let scans: Vec<Option<DatasetScan>> = futures::stream::iter(
        datasets
            .into_iter()
            .map(|info| scan_dataset(bigquery, info)),
    )
    .buffered(SCAN_CONCURRENCY)
    .try_collect()
    .await?;
    let mut catalog = Catalog {
        project: project.to_string(),
        ..Catalog::default()
    };
    for scan in scans.into_iter().flatten() {
        catalog.datasets.push(scan.dataset);
        catalog.objects.extend(scan.objects);
        catalog.views_without_sql.extend(scan.views_without_sql);
    }
    Ok(catalog)
}

struct DatasetScan {
    dataset: CatalogDataset,
    objects: Vec<CatalogObject>,
    views_without_sql: Vec<TableRef>,
}

/// One dataset of [`scan_project`]; `None` when it vanished meanwhile.
async fn scan_dataset(
    bigquery: &BigQuery,
    info: DatasetInfo,
) -> Result<Option<DatasetScan>, Error> {
    let resource = match bigquery.get_dataset(&info.dataset).await {
        Ok(resource) => resource,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let location = if resource.location.is_empty() {
        info.location.clone()
    } else {
        resource.location.clone()
    };
    let tables = match bigquery.list_tables(&info.dataset).await {
        Ok(tables) => tables,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let views: HashMap<String, (String, bool)> = if tables.iter().any(|t| t.kind == TableKind::View)
    {
        match bigquery.view_definitions(&info.dataset, &location).await {
            Ok(views) => views
                .into_iter()
                .map(|v| (v.view, (v.query, v.legacy_sql)))
                .collect(),
            Err(e) => {
                tracing::warn!(dataset = %info.dataset, error = %e, "INFORMATION_SCHEMA.VIEWS could not be read; reading each view instead");
                HashMap::new()
            }
        }
    } else {
        HashMap::new()
    };

    let mut objects = Vec::new();
    let mut views_without_sql = Vec::new();
    for table in tables {
        let (sql, legacy_sql) = match table.kind {
            TableKind::View => match views.get(&table.table.table) {
                Some((query, legacy)) => (Some(query.clone()), *legacy),
                None => view_sql_from_table(bigquery, &table.table).await?,
            },
            TableKind::MaterializedView => view_sql_from_table(bigquery, &table.table).await?,
            _ => (None, false),
        };
        if matches!(table.kind, TableKind::View | TableKind::MaterializedView) && sql.is_none() {
            views_without_sql.push(table.table.clone());
        }
        objects.push(CatalogObject {
            name: table.table,
            kind: ObjectKind::Table(table.kind),
            sql,
            legacy_sql,
            routine: None,
        });
    }
    let routines = match bigquery.list_routines(&info.dataset).await {
        Ok(routines) => routines,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for routine in routines {
        // A field BigQuery answered in a shape it does not document is BigQuery's odd answer.
        let odd = |e| Error::upstream(format!("a routine of {} whose {e}", info.dataset));
        let name = info.dataset.table(routine.routine_id().map_err(odd)?);
        let sql = match routine.is_sql().map_err(odd)? {
            true => routine.definition_body().map_err(odd)?.map(str::to_string),
            false => None,
        };
        objects.push(CatalogObject {
            name,
            kind: ObjectKind::Routine,
            sql,
            legacy_sql: false,
            routine: Some(routine),
        });
    }
    Ok(Some(DatasetScan {
        dataset: CatalogDataset {
            dataset: info.dataset,
            location,
            case_insensitive: resource.is_case_insensitive.unwrap_or(false),
            resource: Some(resource),
        },
        objects,
        views_without_sql,
    }))
}

/// A view's or materialized view's SQL from tables.get; `None` when BigQuery gives none (or the
/// view vanished meanwhile).
async fn view_sql_from_table(
    bigquery: &BigQuery,
    table: &TableRef,
) -> Result<(Option<String>, bool), Error> {
    let resource = match bigquery.get_table(table).await {
        Ok(resource) => resource,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((None, false)),
        Err(e) => return Err(e.into()),
    };
    if let Some(view) = resource.view.filter(|v| !v.query.is_empty()) {
        return Ok((Some(view.query), view.use_legacy_sql.unwrap_or(false)));
    }
    Ok((
        resource
            .materialized_view
            .map(|m| m.query)
            .filter(|q| !q.is_empty()),
        false,
    ))
}
