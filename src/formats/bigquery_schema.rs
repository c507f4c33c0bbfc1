//! Arrow schema ↔ BigQuery schema (the REST API's `schema.fields` JSON), for backups that carry no
//! BigQuery schema of their own (the Java service's layout): the Arrow schema embedded in an AVRO
//! or PARQUET file becomes the table to create, and a user-supplied BigQuery schema becomes the
//! Arrow schema a CSV or JSON file is decoded with.
//!
//! Both directions use the Arrow types BigQuery's Storage Read API produces (the table in the
//! module docs of [`crate::formats`]), so what [`bigquery_fields_to_arrow`] returns decodes and
//! re-encodes like any backup written by this service. Pure: no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Metadata, Schema, TimeUnit};
use serde_json::{Map, Value, json};

use super::sample::{EXTENSION_NAME_KEY, GEOGRAPHY_EXTENSION, JSON_EXTENSION};
use crate::error::FieldError;

/// Field metadata key under which arrow-avro keeps BigQuery's Avro `sqlType` hint (BigQuery's
/// own Avro exports mark GEOGRAPHY and JSON columns with it). The value may be JSON-quoted.
const AVRO_SQL_TYPE_KEY: &str = "sqlType";

/// NUMERIC's largest precision and scale; any other decimal is a BIGNUMERIC.
const NUMERIC_MAX_PRECISION: u8 = 38;
const NUMERIC_MAX_SCALE: i8 = 9;

/// The BigQuery fields (`[{"name", "type", "mode", "fields"?}]`) of an Arrow schema. Every column
/// whose type has no BigQuery equivalent is reported, named by its path (`rec.inner.x`).
pub fn arrow_to_bigquery_fields(schema: &Schema) -> Result<Value, Vec<FieldError>> {
    let mut problems = Vec::new();
    let fields = schema
        .fields()
        .iter()
        .map(|f| bigquery_field(f, f.name(), &mut problems))
        .collect();
    if problems.is_empty() {
        Ok(Value::Array(fields))
    } else {
        Err(problems)
    }
}

fn bigquery_field(field: &Field, path: &str, problems: &mut Vec<FieldError>) -> Value {
    let (element, mode) = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) => {
            if matches!(item.data_type(), DataType::List(_) | DataType::LargeList(_)) {
                problems.push(FieldError::new(
                    path,
                    "a list of lists has no BigQuery type (ARRAY<ARRAY<…>> is not allowed)",
                ));
            }
            (item.as_ref(), "REPEATED")
        }
        _ if field.is_nullable() => (field, "NULLABLE"),
        _ => (field, "REQUIRED"),
    };
    let mut out = Map::new();
    out.insert("name".into(), json!(field.name()));
    let sql_type = match element.data_type() {
        DataType::Struct(children) => {
            let nested: Vec<Value> = children
                .iter()
                .map(|c| bigquery_field(c, &format!("{path}.{}", c.name()), problems))
                .collect();
            out.insert("fields".into(), Value::Array(nested));
            "RECORD"
        }
        other => leaf_type(other, element.metadata()).unwrap_or_else(|| {
            problems.push(FieldError::new(
                path,
                format!("Arrow type {other} has no BigQuery equivalent"),
            ));
            "STRING"
        }),
    };
    out.insert("type".into(), json!(sql_type));
    out.insert("mode".into(), json!(mode));
    Value::Object(out)
}

fn leaf_type(data_type: &DataType, metadata: &Metadata) -> Option<&'static str> {
    Some(match data_type {
        DataType::Int64 => "INT64",
        DataType::Float64 => "FLOAT64",
        DataType::Decimal128(p, s) if *p <= NUMERIC_MAX_PRECISION && *s <= NUMERIC_MAX_SCALE => {
            "NUMERIC"
        }
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => "BIGNUMERIC",
        DataType::Boolean => "BOOL",
        DataType::Utf8 | DataType::LargeUtf8 => text_type(metadata),
        DataType::Binary | DataType::LargeBinary => "BYTES",
        DataType::Date32 => "DATE",
        DataType::Time64(TimeUnit::Microsecond) => "TIME",
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "TIMESTAMP",
        DataType::Timestamp(TimeUnit::Microsecond, None) => "DATETIME",
        _ => return None,
    })
}

/// STRING, unless the column is marked as GEOGRAPHY or JSON: by the Read API's
/// `ARROW:extension:name`, or by BigQuery's Avro `sqlType` hint.
fn text_type(metadata: &Metadata) -> &'static str {
    let extension = metadata.get(EXTENSION_NAME_KEY).map(String::as_str);
    let hint = metadata
        .get(AVRO_SQL_TYPE_KEY)
        .map(|v| v.trim_matches('"').to_ascii_uppercase());
    match (extension, hint.as_deref()) {
        (Some(GEOGRAPHY_EXTENSION), _) | (_, Some("GEOGRAPHY")) => "GEOGRAPHY",
        (Some(JSON_EXTENSION), _) | (_, Some("JSON")) => "JSON",
        _ => "STRING",
    }
}

/// The Arrow schema a file of a table with these BigQuery fields decodes to: the inverse of
/// [`arrow_to_bigquery_fields`], with the types the Storage Read API uses (NUMERIC as
/// Decimal128(38, 9), BIGNUMERIC as Decimal256(76, 38), TIMESTAMP with zone `"UTC"`, REPEATED as
/// a non-null list of non-null items). `fields` is a JSON array of BigQuery field objects; legacy
/// type names (`INTEGER`, `FLOAT`, `BOOLEAN`, `STRUCT`, `BIGDECIMAL`) are accepted. Problems are
/// named by column path.
pub fn bigquery_fields_to_arrow(fields: &Value) -> Result<Schema, Vec<FieldError>> {
    let mut problems = Vec::new();
    let converted = arrow_fields(fields, "", &mut problems);
    if problems.is_empty() {
        Ok(Schema::new(converted))
    } else {
        Err(problems)
    }
}

fn arrow_fields(fields: &Value, parent: &str, problems: &mut Vec<FieldError>) -> Fields {
    let Some(items) = fields.as_array() else {
        problems.push(FieldError::new(
            if parent.is_empty() { "fields" } else { parent },
            "must be an array of BigQuery fields",
        ));
        return Fields::empty();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item["name"].as_str().unwrap_or_default();
            let path = match (parent.is_empty(), name.is_empty()) {
                (_, true) => format!("{parent}[{i}]"),
                (true, false) => name.to_string(),
                (false, false) => format!("{parent}.{name}"),
            };
            arrow_field(item, name, &path, problems)
        })
        .collect()
}

fn arrow_field(item: &Value, name: &str, path: &str, problems: &mut Vec<FieldError>) -> Field {
    let sql_type = item["type"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let mode = item["mode"]
        .as_str()
        .unwrap_or("NULLABLE")
        .to_ascii_uppercase();
    let mut metadata = HashMap::new();
    let data_type = match sql_type.as_str() {
        "INT64" | "INTEGER" => DataType::Int64,
        "FLOAT64" | "FLOAT" => DataType::Float64,
        "NUMERIC" | "DECIMAL" => DataType::Decimal128(38, 9),
        "BIGNUMERIC" | "BIGDECIMAL" => DataType::Decimal256(76, 38),
        "BOOL" | "BOOLEAN" => DataType::Boolean,
        "STRING" => DataType::Utf8,
        "BYTES" => DataType::Binary,
        "DATE" => DataType::Date32,
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "GEOGRAPHY" | "JSON" => {
            let extension = if sql_type == "JSON" {
                JSON_EXTENSION
            } else {
                GEOGRAPHY_EXTENSION
            };
            metadata.insert(EXTENSION_NAME_KEY.to_string(), extension.to_string());
            DataType::Utf8
        }
        "RECORD" | "STRUCT" => DataType::Struct(arrow_fields(&item["fields"], path, problems)),
        other => {
            problems.push(FieldError::new(
                path,
                if other.is_empty() {
                    "has no type".to_string()
                } else {
                    format!("type {other} cannot be restored from a file")
                },
            ));
            DataType::Null
        }
    };
    match mode.as_str() {
        "REPEATED" => {
            let item = Field::new("item", data_type, false).with_metadata(metadata);
            Field::new(name, DataType::List(Arc::new(item)), false)
        }
        "REQUIRED" => Field::new(name, data_type, false).with_metadata(metadata),
        "NULLABLE" => Field::new(name, data_type, true).with_metadata(metadata),
        other => {
            problems.push(FieldError::new(
                path,
                format!("mode {other} must be NULLABLE, REQUIRED or REPEATED"),
            ));
            Field::new(name, data_type, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::sample::all_types_schema;

    #[test]
    fn every_read_api_type_maps_to_its_bigquery_type() {
        let fields = arrow_to_bigquery_fields(&all_types_schema()).unwrap();
        let summary: Vec<String> = fields
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {} {}", f["name"], f["type"], f["mode"]).replace('"', ""))
            .collect();
        assert_eq!(
            summary,
            [
                "int64 INT64 NULLABLE",
                "float64 FLOAT64 NULLABLE",
                "numeric NUMERIC NULLABLE",
                "bignumeric BIGNUMERIC NULLABLE",
                "bool BOOL NULLABLE",
                "string STRING NULLABLE",
                "bytes BYTES NULLABLE",
                "date DATE NULLABLE",
                "time TIME NULLABLE",
                "datetime DATETIME NULLABLE",
                "timestamp TIMESTAMP NULLABLE",
                "geography GEOGRAPHY NULLABLE",
                "json JSON NULLABLE",
                "record RECORD NULLABLE",
                "repeated_int64 INT64 REPEATED",
                "repeated_record RECORD REPEATED",
            ]
        );
        assert_eq!(
            fields[13]["fields"],
            json!([
                { "name": "a", "type": "INT64", "mode": "NULLABLE" },
                { "name": "inner", "type": "RECORD", "mode": "NULLABLE", "fields": [
                    { "name": "x", "type": "STRING", "mode": "NULLABLE" },
                    { "name": "y", "type": "FLOAT64", "mode": "NULLABLE" }
                ]}
            ])
        );
        assert_eq!(fields[15]["fields"][0]["name"], "name");
    }

    #[test]
    fn the_bigquery_schema_maps_back_to_the_exact_read_api_schema() {
        let schema = all_types_schema();
        let fields = arrow_to_bigquery_fields(&schema).unwrap();
        assert_eq!(bigquery_fields_to_arrow(&fields).unwrap(), *schema);
    }

    #[test]
    fn decimals_beyond_numeric_are_bignumeric_and_required_columns_stay_required() {
        let schema = Schema::new(vec![
            Field::new("small", DataType::Decimal128(10, 2), false),
            Field::new("wide_scale", DataType::Decimal128(38, 10), true),
            Field::new("s", DataType::LargeUtf8, true),
        ]);
        let fields = arrow_to_bigquery_fields(&schema).unwrap();
        assert_eq!(fields[0]["type"], "NUMERIC");
        assert_eq!(fields[0]["mode"], "REQUIRED");
        assert_eq!(fields[1]["type"], "BIGNUMERIC");
        assert_eq!(fields[2]["type"], "STRING");
    }

    #[test]
    fn bigquery_avro_sql_type_hints_mark_geography_and_json() {
        let hinted = |hint: &str| {
            Field::new("c", DataType::Utf8, true).with_metadata(HashMap::from([(
                AVRO_SQL_TYPE_KEY.to_string(),
                hint.to_string(),
            )]))
        };
        let schema = Schema::new(vec![hinted("\"GEOGRAPHY\""), hinted("JSON")]);
        let fields = arrow_to_bigquery_fields(&schema).unwrap();
        assert_eq!(fields[0]["type"], "GEOGRAPHY");
        assert_eq!(fields[1]["type"], "JSON");
    }

    #[test]
    fn arrow_types_without_a_bigquery_type_are_named_by_column_path() {
        let schema = Schema::new(vec![
            Field::new("ok", DataType::Int64, true),
            Field::new(
                "rec",
                DataType::Struct(Fields::from(vec![Field::new("u", DataType::UInt32, true)])),
                true,
            ),
            Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]);
        let problems = arrow_to_bigquery_fields(&schema).unwrap_err();
        let named: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(named, ["rec.u", "ns"]);
    }

    #[test]
    fn legacy_type_names_and_modes_are_understood() {
        let fields = json!([
            { "name": "id", "type": "INTEGER", "mode": "REQUIRED" },
            { "name": "price", "type": "FLOAT" },
            { "name": "ok", "type": "boolean" },
            { "name": "tags", "type": "STRING", "mode": "REPEATED" },
            { "name": "s", "type": "STRUCT", "fields": [{ "name": "x", "type": "BIGDECIMAL" }] }
        ]);
        let schema = bigquery_fields_to_arrow(&fields).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        assert!(schema.field(1).is_nullable());
        assert_eq!(schema.field(2).data_type(), &DataType::Boolean);
        assert!(
            matches!(schema.field(3).data_type(), DataType::List(item) if item.data_type() == &DataType::Utf8)
        );
        assert!(
            matches!(schema.field(4).data_type(), DataType::Struct(f) if f[0].data_type() == &DataType::Decimal256(76, 38))
        );
    }

    #[test]
    fn unknown_types_and_modes_are_named_by_column_path() {
        let fields = json!([
            { "name": "r", "type": "RECORD", "fields": [{ "name": "iv", "type": "INTERVAL" }] },
            { "name": "m", "type": "STRING", "mode": "OPTIONAL" },
            { "name": "t" }
        ]);
        let problems = bigquery_fields_to_arrow(&fields).unwrap_err();
        let named: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(named, ["r.iv", "m", "t"]);
    }
}
