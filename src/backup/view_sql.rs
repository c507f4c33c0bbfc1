//! The SQL of views whose tables.get resource has none. Real BigQuery returns it there; some
//! servers (bqemulator) only answer it from the dataset's `INFORMATION_SCHEMA.VIEWS`. Without it
//! a view is recorded without a definition and cannot be restored, so the plan asks once per
//! dataset that has such a view — and only then, so a backup from BigQuery runs no query job.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;

use crate::bigquery::model::{Table, ViewDefinition};
use crate::bigquery::{BigQuery, TableKind};
use crate::domain::{DatasetRef, TableRef};

/// `INFORMATION_SCHEMA.VIEWS` queries run at once.
const QUERY_CONCURRENCY: usize = 4;

/// A view's SQL and whether it is legacy SQL.
pub(super) type ViewSqlByTable = HashMap<TableRef, (String, bool)>;

/// Fills `view.query` of every view in `selected` whose resource has none: from `known` (what
/// the `includeDependents` scan read already), else from one `INFORMATION_SCHEMA.VIEWS` query per
/// dataset (in its location from `locations`). A failed query is logged and its views stay
/// without SQL, as the plan's warning then says; it never fails the backup.
pub(super) async fn fill_missing_view_sql(
    bigquery: &BigQuery,
    selected: &[TableRef],
    resources: &mut [Table],
    known: &ViewSqlByTable,
    locations: &HashMap<DatasetRef, String>,
) {
    let mut by_dataset: BTreeMap<DatasetRef, Vec<usize>> = BTreeMap::new();
    for (i, (table, resource)) in selected.iter().zip(resources.iter_mut()).enumerate() {
        if !lacks_sql(resource) {
            continue;
        }
        match known.get(table) {
            Some((query, legacy)) => set_sql(resource, query, *legacy),
            None => by_dataset.entry(table.dataset_ref()).or_default().push(i),
        }
    }
    if by_dataset.is_empty() {
        return;
    }
    let answers: Vec<_> = futures::stream::iter(by_dataset.keys().cloned().map(|dataset| {
        let location = locations.get(&dataset).cloned().unwrap_or_default();
        async move {
            let answer = bigquery.view_definitions(&dataset, &location).await;
            (dataset, answer)
        }
    }))
    .buffer_unordered(QUERY_CONCURRENCY)
    .collect()
    .await;
    for (dataset, answer) in answers {
        let views = match answer {
            Ok(views) => views,
            Err(e) => {
                tracing::warn!(%dataset, error = %e, "INFORMATION_SCHEMA.VIEWS could not be read; views without SQL from tables.get are recorded without a definition");
                continue;
            }
        };
        let by_name: HashMap<&str, _> = views.iter().map(|v| (v.view.as_str(), v)).collect();
        for &i in &by_dataset[&dataset] {
            if let Some(view) = by_name.get(selected[i].table.as_str()) {
                set_sql(&mut resources[i], &view.query, view.legacy_sql);
            }
        }
    }
}

/// A logical view whose resource carries no SQL.
fn lacks_sql(resource: &Table) -> bool {
    TableKind::from_api(&resource.r#type) == TableKind::View
        && resource.view.as_ref().is_none_or(|v| v.query.is_empty())
}

/// Records `query` as the view's SQL. The legacy flag stays as the resource says when it says
/// one; otherwise it is the one the SQL came with.
fn set_sql(resource: &mut Table, query: &str, legacy_sql: bool) {
    let legacy_sql = resource
        .view
        .as_ref()
        .and_then(|v| v.use_legacy_sql)
        .unwrap_or(legacy_sql);
    resource.view = Some(
        ViewDefinition::new()
            .set_query(query)
            .set_use_legacy_sql(legacy_sql),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(value: serde_json::Value) -> Table {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_views_without_sql_lack_it() {
        assert!(lacks_sql(&table(json!({ "type": "VIEW" }))));
        assert!(lacks_sql(&table(
            json!({ "type": "VIEW", "view": { "useLegacySql": false } })
        )));
        assert!(!lacks_sql(&table(
            json!({ "type": "VIEW", "view": { "query": "SELECT 1" } })
        )));
        assert!(!lacks_sql(&table(json!({ "type": "TABLE" }))));
        assert!(!lacks_sql(&table(json!({ "type": "MATERIALIZED_VIEW" }))));
    }

    #[test]
    fn the_resource_legacy_flag_wins_over_the_one_the_sql_came_with() {
        let mut said = table(json!({ "type": "VIEW", "view": { "useLegacySql": false } }));
        set_sql(&mut said, "SELECT 1", true);
        let view = said.view.unwrap();
        assert_eq!(view.query, "SELECT 1");
        assert_eq!(view.use_legacy_sql, Some(false));

        let mut silent = table(json!({ "type": "VIEW" }));
        set_sql(&mut silent, "SELECT 1", true);
        assert_eq!(silent.view.unwrap().use_legacy_sql, Some(true));
    }
}
