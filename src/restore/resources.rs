//! Manifest resources → the resources BigQuery accepts on insert: output-only fields dropped,
//! references pointed at the target, an expiration already past dropped. Recorded resources are
//! read through their accessors ([`crate::bigquery::resource`]); a field that does not read is a
//! [`ResourceError`], which the caller reports as a damaged manifest.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::sql_rewrite::rewrite_references;
use crate::bigquery::model::{Dataset, Table};
use crate::bigquery::resource::to_model;
use crate::bigquery::{DatasetResource, ResourceError, RoutineResource, TableResource};
use crate::domain::{DatasetRef, TableRef};

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

/// The recorded `fields` of a resource, whole (values are copied as recorded, for fidelity).
fn keep(resource: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
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
    resource: &TableResource,
    target: &TableRef,
    view_query: Option<String>,
    now: DateTime<Utc>,
) -> Result<Table, ResourceError> {
    to_model(table_fields(resource, target, view_query, now)?)
}

/// The fields of [`table_for_create`]'s table, before they become the REST model.
fn table_fields(
    resource: &TableResource,
    target: &TableRef,
    view_query: Option<String>,
    now: DateTime<Utc>,
) -> Result<Map<String, Value>, ResourceError> {
    let mut table = keep(resource.as_map(), TABLE_FIELDS);
    table.insert(
        "tableReference".into(),
        json!({ "projectId": target.project, "datasetId": target.dataset, "tableId": target.table }),
    );
    let expired = resource
        .expiration_time()?
        .is_some_and(|at| at <= now + chrono::Duration::seconds(60));
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
    Ok(table)
}

/// Fields that must match between a copy job's source and its destination.
const COPY_MATCHED_FIELDS: &[&str] = &["timePartitioning", "rangePartitioning", "clustering"];

/// The staging table a restore loads `target`'s files into before one copy job moves them all
/// in: the recorded table as [`table_for_create`] makes it (the definition of a target this
/// restore creates), but with the partitioning and clustering of `existing`, the target as it
/// is when the restore did not create it, since a copy needs them to match. No labels (it is
/// nobody's table), a description naming the target, and an expiration at `expires`: a safety
/// net for a staging table whose removal failed.
pub(crate) fn staging_table_for_create(
    resource: &TableResource,
    staging: &TableRef,
    target: &TableRef,
    existing: Option<&Table>,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> Result<Table, ResourceError> {
    let mut table = table_fields(resource, staging, None, now)?;
    if let Some(existing) = existing {
        let existing = match serde_json::to_value(existing) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for field in COPY_MATCHED_FIELDS {
            table.remove(*field);
            if let Some(value) = existing.get(*field).filter(|v| !v.is_null()) {
                table.insert((*field).to_string(), value.clone());
            }
        }
        table.remove("requirePartitionFilter");
    }
    for field in ["labels", "friendlyName"] {
        table.remove(field);
    }
    table.insert(
        "description".into(),
        Value::String(format!(
            "Staging table of a bq-backup restore into {target}; removed when that restore ends."
        )),
    );
    table.insert(
        "expirationTime".into(),
        Value::String(expires.timestamp_millis().to_string()),
    );
    to_model(table)
}

/// The dataset to insert at `target`, in `location` when given (else the recorded one).
pub(crate) fn dataset_for_create(
    resource: &DatasetResource,
    target: &DatasetRef,
    location: Option<&str>,
) -> Result<Dataset, ResourceError> {
    let mut dataset = keep(resource.as_map(), DATASET_FIELDS);
    dataset.insert(
        "datasetReference".into(),
        json!({ "projectId": target.project, "datasetId": target.dataset }),
    );
    if let Some(location) = location {
        dataset.insert("location".into(), Value::String(location.to_string()));
    }
    to_model(dataset)
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

/// The routine to insert in `target`, its body pointed at the restored datasets when it is SQL
/// (`source_project` is where the routine was; JavaScript and other bodies name no tables).
pub(crate) fn routine_for_create(
    resource: &RoutineResource,
    source_project: &str,
    target: &DatasetRef,
    routine_id: &str,
    mappings: &[(DatasetRef, DatasetRef)],
) -> Result<Value, ResourceError> {
    let mut routine = keep(resource.as_map(), ROUTINE_FIELDS);
    routine.insert(
        "routineReference".into(),
        json!({ "projectId": target.project, "datasetId": target.dataset, "routineId": routine_id }),
    );
    if resource.is_sql()?
        && let Some(body) = resource.definition_body()?
    {
        routine.insert(
            "definitionBody".into(),
            Value::String(rewrite_references(
                body,
                source_project,
                &target.project,
                mappings,
            )),
        );
    }
    Ok(Value::Object(routine))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

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
        let table = table_for_create(&recorded(resource), &target, None, Utc::now()).unwrap();
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
        let past = serde_json::to_value(table_for_create(&recorded(past), &t, None, now).unwrap())
            .unwrap();
        let future =
            serde_json::to_value(table_for_create(&recorded(future), &t, None, now).unwrap())
                .unwrap();
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
    fn sql_routine_bodies_are_rewritten_javascript_ones_are_not() {
        let mappings = vec![(
            DatasetRef::new("prod-1", "shop"),
            DatasetRef::new("prod-1", "restored_shop"),
        )];
        let target = DatasetRef::new("prod-1", "restored_shop");
        let body = "(SELECT SUM(total) FROM shop.orders WHERE note != 'shop.orders')";
        let rewritten = "(SELECT SUM(total) FROM restored_shop.orders WHERE note != 'shop.orders')";
        for language in [json!(null), json!("SQL")] {
            let resource = json!({ "language": language, "definitionBody": body,
                                   "routineType": "SCALAR_FUNCTION", "etag": "e" });
            let routine =
                routine_for_create(&recorded(resource), "prod-1", &target, "total", &mappings)
                    .unwrap();
            assert_eq!(routine["definitionBody"], rewritten, "{language}");
            assert_eq!(routine["routineReference"]["datasetId"], "restored_shop");
            assert!(routine.get("etag").is_none());
        }
        let js = json!({ "language": "JAVASCRIPT", "definitionBody": "return shop.orders;" });
        let routine = routine_for_create(&recorded(js), "prod-1", &target, "f", &mappings).unwrap();
        assert_eq!(routine["definitionBody"], "return shop.orders;");
    }

    #[test]
    fn a_routine_restored_into_another_project_names_the_project() {
        let mappings = vec![(
            DatasetRef::new("prod-1", "shop"),
            DatasetRef::new("dev-1", "shop"),
        )];
        let resource = json!({ "definitionBody": "SELECT * FROM shop.orders", "routineType": "TABLE_VALUED_FUNCTION" });
        let target = DatasetRef::new("dev-1", "shop");
        let resource: RoutineResource = recorded(resource);
        let routine =
            routine_for_create(&resource, "prod-1", &target, "all_orders", &mappings).unwrap();
        // Unqualified names resolve in the routine's own (new) project, where the dataset is.
        assert_eq!(routine["definitionBody"], "SELECT * FROM shop.orders");
        let cross = routine_for_create(
            &resource,
            "prod-1",
            &DatasetRef::new("other-1", "fns"),
            "all_orders",
            &mappings,
        )
        .unwrap();
        assert_eq!(cross["definitionBody"], "SELECT * FROM `dev-1.shop.orders`");
    }

    #[test]
    fn a_recorded_field_that_does_not_read_is_an_error_naming_it() {
        let t = TableRef::new("p", "d", "t");
        let bad = recorded(json!({ "expirationTime": "tomorrow" }));
        let err = table_for_create(&bad, &t, None, Utc::now()).unwrap_err();
        assert_eq!(err.field, "expirationTime");
        let odd = recorded(json!({ "timePartitioning": { "type": 5 } }));
        let err = table_for_create(&odd, &t, None, Utc::now()).unwrap_err();
        assert_eq!(err.field, "timePartitioning.type", "{err}");
        let routine = recorded(json!({ "language": ["SQL"], "definitionBody": "SELECT 1" }));
        let err =
            routine_for_create(&routine, "p", &DatasetRef::new("p", "d"), "f", &[]).unwrap_err();
        assert_eq!(err.field, "language");
    }

    #[test]
    fn the_dataset_location_can_be_overridden() {
        let resource =
            json!({ "location": "US", "description": "d", "labels": { "a": "b" }, "etag": "e" });
        let ds = dataset_for_create(
            &recorded(resource),
            &DatasetRef::new("p", "restored_x"),
            Some("EU"),
        )
        .unwrap();
        let back = serde_json::to_value(&ds).unwrap();
        assert_eq!(back["location"], "EU");
        assert_eq!(back["labels"]["a"], "b");
        assert_eq!(back["datasetReference"]["datasetId"], "restored_x");
    }
}
