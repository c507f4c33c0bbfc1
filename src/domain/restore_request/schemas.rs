//! User-supplied table schemas for backups that carry none (the Java service's CSV/JSON
//! backups): only their shape is checked here; BigQuery checks the types when loading.

use std::collections::BTreeMap;

use super::SourceTable;
use crate::domain::request_fields::key_path;
use crate::domain::{is_valid_dataset_id, is_valid_table_id};
use crate::error::FieldError;

/// `schemas`: keys are `dataset.table`; values are arrays of BigQuery field objects with at least
/// string `name` and `type`, nested `fields` checked the same way.
pub(super) fn check_schemas(
    schemas: BTreeMap<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<SourceTable, serde_json::Value> {
    let mut checked = BTreeMap::new();
    for (key, schema) in schemas {
        let field = key_path("schemas", &key);
        let name = key
            .split_once('.')
            .filter(|(d, t)| is_valid_dataset_id(d) && is_valid_table_id(t));
        let Some((dataset, table)) = name else {
            errors.push(FieldError::new(
                field,
                format!("`{key}` must name a table as dataset.table"),
            ));
            continue;
        };
        let errors_before = errors.len();
        check_schema_fields(&schema, &field, errors);
        if errors.len() == errors_before {
            checked.insert(
                SourceTable {
                    dataset: dataset.to_owned(),
                    table: table.to_owned(),
                },
                schema,
            );
        }
    }
    checked
}

fn check_schema_fields(fields: &serde_json::Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(items) = fields.as_array() else {
        errors.push(FieldError::new(
            path,
            "must be an array of fields like {\"name\": \"id\", \"type\": \"INT64\"}",
        ));
        return;
    };
    if items.is_empty() {
        errors.push(FieldError::new(path, "must have at least one field"));
    }
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(object) = item.as_object() else {
            errors.push(FieldError::new(
                item_path,
                "must be an object with name and type",
            ));
            continue;
        };
        for key in ["name", "type"] {
            let given = object.get(key).and_then(|v| v.as_str());
            if given.is_none_or(str::is_empty) {
                errors.push(FieldError::new(
                    format!("{item_path}.{key}"),
                    "is required (a non-empty string)",
                ));
            }
        }
        if let Some(nested) = object.get("fields") {
            check_schema_fields(nested, &format!("{item_path}.fields"), errors);
        }
    }
}
