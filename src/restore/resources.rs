//! Manifest resources → the resources BigQuery accepts on insert: output-only fields dropped,
//! references pointed at the target, an expiration already past dropped.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::bigquery::model::{Dataset, Table};
use crate::domain::{DatasetRef, TableRef};
use crate::error::Error;

/// Table fields a restore recreates.
const TABLE_FIELDS: &[&str] = &[
    "description",
    "friendlyName",
    "labels",
    "schema",
    "timePartitioning",
    "rangePartitioning",
    "clustering",
    "requirePartitionFilter",
    "expirationTime",
    "view",
    "materializedView",
    "defaultCollation",
    "defaultRoundingMode",
    "maxStaleness",
];

/// Dataset fields a restore recreates.
const DATASET_FIELDS: &[&str] = &[
    "description",
    "friendlyName",
    "labels",
    "location",
    "defaultTableExpirationMs",
    "defaultPartitionExpirationMs",
    "defaultCollation",
    "defaultRoundingMode",
    "maxTimeTravelHours",
    "storageBillingModel",
    "isCaseInsensitive",
];

fn keep(resource: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| {
            resource
                .get(*f)
                .filter(|v| !v.is_null())
                .map(|v| (f.to_string(), v.clone()))
        })
        .collect()
}

/// The table to insert at `target`. `view_query` replaces a view's SQL (rewritten references).
pub(crate) fn table_for_create(
    resource: &Value,
    target: &TableRef,
    view_query: Option<String>,
    now: DateTime<Utc>,
) -> Result<Table, Error> {
    let mut table = keep(resource, TABLE_FIELDS);
    table.insert(
        "tableReference".into(),
        json!({ "projectId": target.project, "datasetId": target.dataset, "tableId": target.table }),
    );
    let expired = table
        .get("expirationTime")
        .and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| v.as_i64())
        })
        .is_some_and(|ms| ms <= now.timestamp_millis() + 60_000);
    if expired {
        tracing::warn!(table = %target, "the recorded expiration time has passed; the restored table does not expire");
        table.remove("expirationTime");
    }
    if let Some(query) = view_query {
        if let Some(view) = table.get_mut("view").and_then(Value::as_object_mut) {
            view.insert("query".into(), Value::String(query));
        } else if let Some(mv) = table
            .get_mut("materializedView")
            .and_then(Value::as_object_mut)
        {
            mv.insert("query".into(), Value::String(query));
        }
    }
    serde_json::from_value(Value::Object(table)).map_err(|e| {
        Error::internal(format!(
            "the recorded resource of {target} is not a table: {e}"
        ))
    })
}

/// The dataset to insert at `target`, in `location` when given (else the recorded one).
pub(crate) fn dataset_for_create(
    resource: &Value,
    target: &DatasetRef,
    location: Option<&str>,
) -> Result<Dataset, Error> {
    let mut dataset = keep(resource, DATASET_FIELDS);
    dataset.insert(
        "datasetReference".into(),
        json!({ "projectId": target.project, "datasetId": target.dataset }),
    );
    if let Some(location) = location {
        dataset.insert("location".into(), Value::String(location.to_string()));
    }
    serde_json::from_value(Value::Object(dataset)).map_err(|e| {
        Error::internal(format!(
            "the recorded resource of {target} is not a dataset: {e}"
        ))
    })
}

/// Routine fields a restore recreates.
const ROUTINE_FIELDS: &[&str] = &[
    "routineType",
    "language",
    "arguments",
    "returnType",
    "returnTableType",
    "importedLibraries",
    "definitionBody",
    "description",
    "determinismLevel",
    "dataGovernanceType",
    "strictMode",
    "securityMode",
];

/// The routine to insert in `target`, its body pointed at the restored datasets.
pub(crate) fn routine_for_create(
    resource: &Value,
    target: &DatasetRef,
    routine_id: &str,
    mappings: &[(DatasetRef, DatasetRef)],
) -> Value {
    let mut routine = keep(resource, ROUTINE_FIELDS);
    routine.insert(
        "routineReference".into(),
        json!({ "projectId": target.project, "datasetId": target.dataset, "routineId": routine_id }),
    );
    if let Some(Value::String(body)) = routine.get_mut("definitionBody") {
        *body = rewrite_view_query(body, mappings);
    }
    Value::Object(routine)
}

/// Points a view's references to restored datasets at their targets: `src_project.dataset.` and
/// `` `src_project`.`dataset`. `` / `` `src_project.dataset `` forms. References to datasets not
/// restored are left as they are.
pub(crate) fn rewrite_view_query(query: &str, mappings: &[(DatasetRef, DatasetRef)]) -> String {
    let mut out = query.to_string();
    for (source, target) in mappings {
        let forms = [
            (
                format!("`{}.{}.", source.project, source.dataset),
                format!("`{}.{}.", target.project, target.dataset),
            ),
            (
                format!("`{}.{}`", source.project, source.dataset),
                format!("`{}.{}`", target.project, target.dataset),
            ),
            (
                format!("`{}`.`{}`", source.project, source.dataset),
                format!("`{}`.`{}`", target.project, target.dataset),
            ),
            (
                format!("{}.{}.", source.project, source.dataset),
                format!("{}.{}.", target.project, target.dataset),
            ),
        ];
        for (from, to) in forms {
            out = out.replace(&from, &to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_only_fields_are_dropped_and_the_reference_points_at_the_target() {
        let resource = json!({
            "etag": "x", "id": "p:d.t", "numRows": "3", "creationTime": "1",
            "tableReference": { "projectId": "p", "datasetId": "d", "tableId": "t" },
            "description": "orders", "labels": { "team": "a" },
            "schema": { "fields": [{ "name": "id", "type": "INTEGER", "mode": "REQUIRED" }] },
            "timePartitioning": { "type": "DAY", "field": "ts" },
            "clustering": { "fields": ["id"] }
        });
        let target = TableRef::new("q-project", "restored_d", "t");
        let table = table_for_create(&resource, &target, None, Utc::now()).unwrap();
        let back = serde_json::to_value(&table).unwrap();
        assert_eq!(back["tableReference"]["projectId"], "q-project");
        assert_eq!(back["tableReference"]["datasetId"], "restored_d");
        assert_eq!(back["description"], "orders");
        assert_eq!(back["timePartitioning"]["field"], "ts");
        assert_eq!(back["clustering"]["fields"][0], "id");
        assert!(
            back.get("etag").is_none_or(|v| v == "" || v.is_null()),
            "{back}"
        );
        assert!(back.get("numRows").is_none_or(Value::is_null), "{back}");
    }

    #[test]
    fn a_past_expiration_is_dropped_a_future_one_kept() {
        let now = Utc::now();
        let past = json!({ "expirationTime": (now.timestamp_millis() - 1000).to_string() });
        let future = json!({ "expirationTime": (now.timestamp_millis() + 86_400_000).to_string() });
        let t = TableRef::new("p", "d", "t");
        let past = serde_json::to_value(table_for_create(&past, &t, None, now).unwrap()).unwrap();
        let future =
            serde_json::to_value(table_for_create(&future, &t, None, now).unwrap()).unwrap();
        assert!(
            past.get("expirationTime").is_none_or(Value::is_null),
            "{past}"
        );
        assert!(
            future.get("expirationTime").is_some_and(|v| !v.is_null()),
            "{future}"
        );
    }

    #[test]
    fn view_references_to_restored_datasets_are_rewritten() {
        let mappings = vec![(
            DatasetRef::new("prod-1", "shop"),
            DatasetRef::new("dev-1", "restored_shop"),
        )];
        let q = "SELECT * FROM `prod-1.shop.orders` JOIN prod-1.shop.customers USING(id) JOIN `prod-1.shop2.x` USING(id)";
        assert_eq!(
            rewrite_view_query(q, &mappings),
            "SELECT * FROM `dev-1.restored_shop.orders` JOIN dev-1.restored_shop.customers USING(id) JOIN `prod-1.shop2.x` USING(id)"
        );
    }

    #[test]
    fn the_dataset_location_can_be_overridden() {
        let resource =
            json!({ "location": "US", "description": "d", "labels": { "a": "b" }, "etag": "e" });
        let ds =
            dataset_for_create(&resource, &DatasetRef::new("p", "restored_x"), Some("EU")).unwrap();
        let back = serde_json::to_value(&ds).unwrap();
        assert_eq!(back["location"], "EU");
        assert_eq!(back["labels"]["a"], "b");
        assert_eq!(back["datasetReference"]["datasetId"], "restored_x");
    }
}
