//! BigQuery resources — tables, datasets, routines — as BigQuery's REST API returns them, kept
//! whole (every field, including ones this service does not know, so that a restore recreates
//! what was there) and read only through the typed accessors here: nowhere else indexes into
//! their JSON.
//!
//! An accessor returns the typed value, `None` (or empty) for an optional field that is absent
//! or null, and a [`ResourceError`] naming the field when its value is not what BigQuery
//! documents: a bad value is never read as an absent one. Callers say whose fault that is (a
//! damaged manifest, an odd answer from BigQuery).
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::TableKind;
use super::model::{Clustering, Dataset, Table, TableSchema, TimePartitioning};
use crate::error::Error;

/// A field of a resource whose value does not have its documented type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct ResourceError {
    /// The field's JSON path in the resource (`timePartitioning`, `view.useLegacySql`).
    pub field: String,
    pub problem: String,
}

impl ResourceError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The REST model type `T` of a resource's fields (what the client sends to create it).
pub fn to_model<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ResourceError> {
    serde_path_to_error::deserialize::<_, T>(Value::Object(fields)).map_err(|e| {
        let field = e.path().to_string();
        ResourceError::new(
            field,
            format!("does not fit the REST model: {}", e.into_inner()),
        )
    })
}

/// The JSON object of a resource, with typed reads of its fields.
trait Fields {
    fn fields(&self) -> &Map<String, Value>;

    /// The value at `path` (dotted), `None` when a part is absent or null.
    fn at(&self, path: &'static str) -> Option<&Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut value = self.fields().get(first)?;
        for part in parts {
            value = value.get(part)?;
        }
        (!value.is_null()).then_some(value)
    }

    fn string(&self, path: &'static str) -> Result<Option<&str>, ResourceError> {
        match self.at(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ResourceError::new(
                path,
                format!("is {other}, not a string"),
            )),
        }
    }

    fn boolean(&self, path: &'static str) -> Result<Option<bool>, ResourceError> {
        match self.at(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ResourceError::new(
                path,
                format!("is {other}, not a boolean"),
            )),
        }
    }

    /// `labels`: string to string; none is empty.
    fn labels_at(&self, path: &'static str) -> Result<BTreeMap<String, String>, ResourceError> {
        self.typed::<BTreeMap<String, String>>(path, "an object of strings")
            .map(Option::unwrap_or_default)
    }

    /// The value at `path` as `T` (a model type of the REST API).
    fn typed<T: DeserializeOwned>(
        &self,
        path: &'static str,
        what: &str,
    ) -> Result<Option<T>, ResourceError> {
        self.at(path)
            .map(|v| {
                T::deserialize(v)
                    .map_err(|e| ResourceError::new(path, format!("is not {what}: {e}")))
            })
            .transpose()
    }
}

/// A table, view or materialized view resource (`tables.get`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TableResource(Map<String, Value>);

impl Fields for TableResource {
    fn fields(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl TableResource {
    /// The resource as `tables.get` answered it.
    pub fn of(table: &Table) -> Result<Self, Error> {
        to_object(table, "table")
    }

    /// A resource that records only a schema (`schema.fields`, BigQuery's JSON): what a backup
    /// without a manifest (the Java service's layout) knows of its tables.
    pub fn with_schema_fields(fields: Value) -> Self {
        let mut map = Map::new();
        map.insert("schema".into(), json!({ "fields": fields }));
        Self(map)
    }

    /// Every field, as recorded.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// `type`: `None` when the resource does not say (a schema-only resource).
    pub fn kind(&self) -> Result<Option<TableKind>, ResourceError> {
        Ok(self.string("type")?.map(TableKind::from_api))
    }

    pub fn description(&self) -> Result<Option<&str>, ResourceError> {
        self.string("description")
    }

    pub fn labels(&self) -> Result<BTreeMap<String, String>, ResourceError> {
        self.labels_at("labels")
    }

    /// `schema`, typed (names, types, modes, nested fields, descriptions, policy tags...).
    pub fn schema(&self) -> Result<Option<TableSchema>, ResourceError> {
        self.typed("schema", "a table schema")
    }

    /// `schema.fields` exactly as recorded, for a load job's schema: a field attribute this
    /// service does not know still reaches BigQuery. Empty when there is no schema (a view).
    pub fn schema_fields(&self) -> Result<&[Value], ResourceError> {
        match self.at("schema.fields") {
            None => Ok(&[]),
            Some(Value::Array(fields)) if fields.iter().all(Value::is_object) => Ok(fields),
            Some(other) => Err(ResourceError::new(
                "schema.fields",
                format!("is {other}, not a list of fields"),
            )),
        }
    }

    pub fn time_partitioning(&self) -> Result<Option<TimePartitioning>, ResourceError> {
        self.typed("timePartitioning", "a time partitioning")
    }

    /// `clustering.fields`: the clustering columns, most significant first; empty when the table
    /// is not clustered.
    pub fn clustering(&self) -> Result<Vec<String>, ResourceError> {
        Ok(self
            .typed::<Clustering>("clustering", "a clustering")?
            .map(|c| c.fields)
            .unwrap_or_default())
    }

    /// `expirationTime` (milliseconds since the epoch, as a string or a number).
    pub fn expiration_time(&self) -> Result<Option<DateTime<Utc>>, ResourceError> {
        let field = "expirationTime";
        let Some(value) = self.at(field) else {
            return Ok(None);
        };
        let ms = match value {
            Value::String(s) => s.parse::<i64>().ok(),
            other => other.as_i64(),
        };
        ms.and_then(DateTime::from_timestamp_millis)
            .map(Some)
            .ok_or_else(|| {
                ResourceError::new(
                    field,
                    format!("is {value}, not milliseconds since the epoch"),
                )
            })
    }

    /// `view.query`: a logical view's SQL, `None` when there is none (or it is empty).
    pub fn view_query(&self) -> Result<Option<&str>, ResourceError> {
        Ok(self.string("view.query")?.filter(|q| !q.is_empty()))
    }

    /// `materializedView.query`, `None` when there is none (or it is empty).
    pub fn materialized_view_query(&self) -> Result<Option<&str>, ResourceError> {
        Ok(self
            .string("materializedView.query")?
            .filter(|q| !q.is_empty()))
    }

    /// `view.useLegacySql`: the view is written in legacy SQL (`[project:dataset.table]`).
    /// BigQuery leaves it out for standard SQL.
    pub fn uses_legacy_sql(&self) -> Result<bool, ResourceError> {
        Ok(self.boolean("view.useLegacySql")?.unwrap_or(false))
    }
}

/// A dataset resource (`datasets.get`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatasetResource(Map<String, Value>);

impl Fields for DatasetResource {
    fn fields(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl DatasetResource {
    /// The resource as `datasets.get` answered it.
    pub fn of(dataset: &Dataset) -> Result<Self, Error> {
        to_object(dataset, "dataset")
    }

    /// Every field, as recorded.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn location(&self) -> Result<Option<&str>, ResourceError> {
        self.string("location")
    }

    pub fn description(&self) -> Result<Option<&str>, ResourceError> {
        self.string("description")
    }

    pub fn labels(&self) -> Result<BTreeMap<String, String>, ResourceError> {
        self.labels_at("labels")
    }
}

/// A routine resource (`routines.get`): kept as BigQuery's own JSON, which the typed model does
/// not reproduce (it writes enums such as `argumentKind` as numbers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoutineResource(Map<String, Value>);

impl Fields for RoutineResource {
    fn fields(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl RoutineResource {
    /// A routine from a REST answer: it must be a JSON object.
    pub fn from_json(value: Value) -> Result<Self, ResourceError> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(ResourceError::new(
                "routine",
                format!("is {other}, not an object"),
            )),
        }
    }

    /// Every field, as recorded.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// `routineReference.routineId`, which every routine has.
    pub fn routine_id(&self) -> Result<&str, ResourceError> {
        self.string("routineReference.routineId")?
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ResourceError::new("routineReference.routineId", "is missing"))
    }

    /// Whether the body is SQL, which names tables (BigQuery leaves `language` out for SQL);
    /// JavaScript and other bodies do not.
    pub fn is_sql(&self) -> Result<bool, ResourceError> {
        Ok(self
            .string("language")?
            .is_none_or(|l| l.is_empty() || l.eq_ignore_ascii_case("SQL")))
    }

    /// `definitionBody`.
    pub fn definition_body(&self) -> Result<Option<&str>, ResourceError> {
        self.string("definitionBody")
    }
}

/// A model type as its REST JSON object.
fn to_object<T: Serialize, R: From<Map<String, Value>>>(model: &T, what: &str) -> Result<R, Error> {
    match serde_json::to_value(model) {
        Ok(Value::Object(map)) => Ok(R::from(map)),
        Ok(other) => Err(Error::internal(format!(
            "a {what} resource serialized as {other}, not an object"
        ))),
        Err(e) => Err(Error::internal(format!("{what} resource: {e}"))),
    }
}

impl From<Map<String, Value>> for TableResource {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl From<Map<String, Value>> for DatasetResource {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(value: Value) -> TableResource {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_table_resource_reads_typed_and_round_trips_whole() {
        let recorded = json!({
            "type": "TABLE", "description": "orders by day", "labels": { "team": "shop" },
            "schema": { "fields": [
                { "name": "id", "type": "INT64", "mode": "REQUIRED", "description": "the id" },
                { "name": "ts", "type": "TIMESTAMP", "newAttribute": { "x": 1 } } ] },
            "timePartitioning": { "type": "DAY", "field": "ts", "expirationMs": "86400000" },
            "clustering": { "fields": ["id", "ts"] },
            "expirationTime": "1893456000000",
            "somethingNew": [1, 2]
        });
        let t = table(recorded.clone());
        assert_eq!(t.kind().unwrap(), Some(TableKind::Table));
        assert_eq!(t.description().unwrap(), Some("orders by day"));
        assert_eq!(t.labels().unwrap()["team"], "shop");
        let schema = t.schema().unwrap().unwrap();
        assert_eq!(schema.fields[0].name, "id");
        assert_eq!(schema.fields[0].mode, "REQUIRED");
        assert_eq!(t.schema_fields().unwrap()[1]["newAttribute"]["x"], 1);
        let partitioning = t.time_partitioning().unwrap().unwrap();
        assert_eq!(partitioning.r#type, "DAY");
        assert_eq!(partitioning.field.as_deref(), Some("ts"));
        assert_eq!(t.clustering().unwrap(), ["id", "ts"]);
        assert_eq!(
            t.expiration_time().unwrap().unwrap().to_rfc3339(),
            "2030-01-01T00:00:00+00:00"
        );
        assert_eq!(t.view_query().unwrap(), None);
        assert!(!t.uses_legacy_sql().unwrap());
        // Kept whole: what this service does not know goes back exactly as recorded.
        assert_eq!(serde_json::to_value(&t).unwrap(), recorded);
    }

    #[test]
    fn absent_fields_read_as_none_or_empty() {
        let t = TableResource::default();
        assert_eq!(t.kind().unwrap(), None);
        assert_eq!(t.description().unwrap(), None);
        assert!(t.labels().unwrap().is_empty());
        assert_eq!(t.schema().unwrap(), None);
        assert!(t.schema_fields().unwrap().is_empty());
        assert_eq!(t.time_partitioning().unwrap(), None);
        assert!(t.clustering().unwrap().is_empty());
        assert_eq!(t.expiration_time().unwrap(), None);
        assert_eq!(t.materialized_view_query().unwrap(), None);
        let nulls = table(json!({ "description": null, "expirationTime": null }));
        assert_eq!(nulls.description().unwrap(), None);
        assert_eq!(nulls.expiration_time().unwrap(), None);
    }

    #[test]
    fn a_bad_value_is_an_error_naming_its_field_never_an_absent_one() {
        let t = table(json!({
            "description": 7, "labels": { "a": 1 }, "schema": { "fields": "id" },
            "timePartitioning": "DAY", "clustering": { "fields": "id" },
            "expirationTime": "soon", "view": { "query": 1, "useLegacySql": "yes" }
        }));
        let field = |r: Result<(), ResourceError>| r.unwrap_err().field;
        assert_eq!(field(t.description().map(drop)), "description");
        assert_eq!(field(t.labels().map(drop)), "labels");
        assert_eq!(field(t.schema().map(drop)), "schema");
        assert_eq!(field(t.schema_fields().map(drop)), "schema.fields");
        assert_eq!(field(t.time_partitioning().map(drop)), "timePartitioning");
        assert_eq!(field(t.clustering().map(drop)), "clustering");
        assert_eq!(field(t.expiration_time().map(drop)), "expirationTime");
        assert_eq!(field(t.view_query().map(drop)), "view.query");
        assert_eq!(field(t.uses_legacy_sql().map(drop)), "view.useLegacySql");
        assert_eq!(
            t.expiration_time().unwrap_err().to_string(),
            "`expirationTime` is \"soon\", not milliseconds since the epoch"
        );
    }

    #[test]
    fn views_say_their_sql_and_its_dialect() {
        let view =
            table(json!({ "type": "VIEW", "view": { "query": "SELECT 1", "useLegacySql": true } }));
        assert_eq!(view.kind().unwrap(), Some(TableKind::View));
        assert_eq!(view.view_query().unwrap(), Some("SELECT 1"));
        assert!(view.uses_legacy_sql().unwrap());
        let mv = table(
            json!({ "type": "MATERIALIZED_VIEW", "materializedView": { "query": "SELECT 2" } }),
        );
        assert_eq!(mv.kind().unwrap(), Some(TableKind::MaterializedView));
        assert_eq!(mv.materialized_view_query().unwrap(), Some("SELECT 2"));
        assert!(!mv.uses_legacy_sql().unwrap());
        let empty = table(json!({ "view": { "query": "" } }));
        assert_eq!(empty.view_query().unwrap(), None);
    }

    #[test]
    fn a_resource_must_be_an_object() {
        assert!(serde_json::from_value::<TableResource>(json!("t")).is_err());
        assert!(serde_json::from_value::<DatasetResource>(json!([])).is_err());
        assert!(RoutineResource::from_json(json!(null)).is_err());
    }

    #[test]
    fn a_schema_only_resource_has_the_fields_it_was_given() {
        let t = TableResource::with_schema_fields(json!([{ "name": "id", "type": "INT64" }]));
        assert_eq!(t.schema_fields().unwrap()[0]["name"], "id");
        assert_eq!(t.kind().unwrap(), None);
    }

    #[test]
    fn a_model_table_is_kept_as_its_rest_json() {
        let model: Table = serde_json::from_value(json!({
            "type": "TABLE", "description": "d",
            "schema": { "fields": [{ "name": "id", "type": "INTEGER" }] }
        }))
        .unwrap();
        let t = TableResource::of(&model).unwrap();
        assert_eq!(t.description().unwrap(), Some("d"));
        assert_eq!(t.schema().unwrap().unwrap().fields[0].r#type, "INTEGER");
    }

    #[test]
    fn a_dataset_resource_reads_typed() {
        let d: DatasetResource = serde_json::from_value(
            json!({ "location": "EU", "description": "x", "labels": { "env": "test" } }),
        )
        .unwrap();
        assert_eq!(d.location().unwrap(), Some("EU"));
        assert_eq!(d.description().unwrap(), Some("x"));
        assert_eq!(d.labels().unwrap()["env"], "test");
        let bad: DatasetResource = serde_json::from_value(json!({ "location": ["EU"] })).unwrap();
        assert_eq!(bad.location().unwrap_err().field, "location");
        let model: Dataset = serde_json::from_value(json!({ "location": "US" })).unwrap();
        assert_eq!(
            DatasetResource::of(&model).unwrap().location().unwrap(),
            Some("US")
        );
    }

    #[test]
    fn a_routine_resource_says_its_id_and_whether_its_body_is_sql() {
        let routine = |v: Value| RoutineResource::from_json(v).unwrap();
        let sql = routine(json!({
            "routineReference": { "projectId": "p", "datasetId": "d", "routineId": "f" },
            "definitionBody": "x + 1"
        }));
        assert_eq!(sql.routine_id().unwrap(), "f");
        assert!(sql.is_sql().unwrap());
        assert_eq!(sql.definition_body().unwrap(), Some("x + 1"));
        let js =
            routine(json!({ "language": "JAVASCRIPT", "routineReference": { "routineId": "g" } }));
        assert!(!js.is_sql().unwrap());
        assert!(routine(json!({ "language": "sql" })).is_sql().unwrap());
        let nameless = routine(json!({ "routineReference": { "routineId": "" } }));
        assert_eq!(
            nameless.routine_id().unwrap_err().field,
            "routineReference.routineId"
        );
        assert!(routine(json!({ "language": 3 })).is_sql().is_err());
    }
}
