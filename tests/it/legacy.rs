//! Restoring a backup in the Java service's layout (no manifest):
//! `backups/{yyyyMMdd_HHmmss}/{project}/{dataset}/{table}-{shard}.{ext}`, generated here with
//! our own encoders from fixture tables read through the Read API, then restored with the Java
//! service's request shape.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bq_backup::bigquery::ReadOptions;
use bq_backup::domain::TableRef;
use bq_backup::formats::{EncodeOptions, FileEncoder, Format};
use bq_backup::storage::Store;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, bigquery_client, canonical_rows, open_store, spawn_app,
    unique_dataset, unique_root,
};

/// The Java service's backup id format, `yyyyMMdd_HHmmss`.
const BACKUP_ID: &str = "20261120_010203";

/// Writes `bytes` as `backups/{BACKUP_ID}/{PROJECT}/{dataset}/{file}`, as the Java service's
/// extract jobs laid it out; returns the key.
async fn put_java_file(store: &Store, dataset: &str, file: &str, bytes: Bytes) -> String {
    let path = Path::from_iter(["backups", BACKUP_ID, PROJECT, dataset, file]);
    store
        .object_store()
        .put(&path, bytes.into())
        .await
        .expect("the fixture file is written");
    path.to_string()
}

fn encode(batches: &[RecordBatch], format: Format) -> Bytes {
    let schema = batches.first().expect("at least one batch").schema();
    let mut encoder = FileEncoder::new(schema, &EncodeOptions::new(format)).expect("encoder");
    let mut out = Vec::new();
    for batch in batches {
        encoder.write(batch).expect("encodes");
        out.extend_from_slice(&encoder.take_output().to_bytes());
    }
    out.extend_from_slice(&encoder.finish().expect("finishes").to_bytes());
    Bytes::from(out)
}

async fn read_batches(table: &TableRef) -> Vec<RecordBatch> {
    bigquery_client()
        .await
        .open_read(table, &ReadOptions::default())
        .await
        .unwrap()
        .batches()
        .try_collect()
        .await
        .unwrap()
}

/// `batches` with the schema BigQuery's Read API (and its exports) give the fixture: bqemulator
/// reports the REQUIRED `id` as nullable and the JSON `js` without its extension name.
fn as_bigquery_gives_them(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    use bq_backup::formats::sample::{EXTENSION_NAME_KEY, JSON_EXTENSION};
    batches
        .iter()
        .map(|batch| {
            let fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    "id" => f.as_ref().clone().with_nullable(false),
                    "js" => f
                        .as_ref()
                        .clone()
                        .with_metadata(std::collections::HashMap::from([(
                            EXTENSION_NAME_KEY.to_string(),
                            JSON_EXTENSION.to_string(),
                        )])),
                    _ => f.as_ref().clone(),
                })
                .collect();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())
                .expect("the fixture's id has no NULL")
        })
        .collect()
}

async fn rows_of(table: &TableRef) -> Vec<Vec<String>> {
    canonical_rows(&read_batches(table).await)
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    app.post_json("/api/v1/restore?wait=true", body).await
}

/// The Java service's restore body: `gcsOptions` for gs://, `uri` + `importOptions` elsewhere.
fn java_request(root: &str, datasets: &[&str]) -> Value {
    let mut body = if root.starts_with("gs://") {
        json!({ "restoreStorage": { "gcsOptions": {
            "uri": root, "backupTimestamp": BACKUP_ID, "projectIdOfBackup": PROJECT,
            "importOptions": { "header": "true", "writeDisposition": "WRITE_EMPTY" }
        } } })
    } else {
        json!({ "restoreStorage": {
            "uri": root,
            "gcsOptions": { "backupTimestamp": BACKUP_ID },
            "importOptions": { "header": "true", "writeDisposition": "WRITE_EMPTY" }
        } })
    };
    body["bigQuery"] = json!({ "projectId": PROJECT, "datasetsToRestore": datasets });
    body
}

/// `(name, type, mode)` of every field, nested fields inline, with BigQuery's type aliases and
/// the default mode spelled out, so schemas from different sources compare.
fn shape(fields: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for f in fields.as_array().into_iter().flatten() {
        let kind = match f["type"].as_str().unwrap_or_default() {
            "INTEGER" => "INT64",
            "FLOAT" => "FLOAT64",
            "BOOLEAN" => "BOOL",
            "STRUCT" => "RECORD",
            other => other,
        };
        let mode = f["mode"].as_str().unwrap_or("NULLABLE");
        out.push(format!(
            "{} {kind} {mode}",
            f["name"].as_str().unwrap_or_default()
        ));
        for nested in shape(&f["fields"]) {
            out.push(format!("  {nested}"));
        }
    }
    out
}

async fn schema_shape(table: &TableRef) -> Vec<String> {
    let t = bigquery_client().await.get_table(table).await.unwrap();
    shape(&serde_json::to_value(&t.schema.as_ref().unwrap().fields).unwrap())
}

/// Fields of the CSV fixture: the all-types table without GEOGRAPHY (see
/// `create_all_types_dataset_without`) and the RECORD/REPEATED columns CSV cannot hold.
const CSV_EXCLUDED: &[&str] = &["geo", "rec", "tags", "items"];

fn csv_schema() -> Value {
    let fields: Vec<Value> = crate::helpers::all_types_schema()
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !CSV_EXCLUDED.contains(&f["name"].as_str().unwrap()))
        .cloned()
        .collect();
    Value::Array(fields)
}

async fn restores_a_java_layout_backup(scheme: &str) {
    let app = spawn_app().await;
    let fixtures = BigQueryFixtures::new();
    // AVRO (two shards) and PARQUET tables from every type the emulator can load back; a CSV table
    // from the flat types.
    let typed = unique_dataset("java_typed");
    fixtures
        .create_all_types_dataset_without(&typed, &["geo"])
        .await;
    let flat = unique_dataset("java_flat");
    fixtures
        .create_all_types_dataset_without(&flat, CSV_EXCLUDED)
        .await;
    let typed_source = TableRef::new(PROJECT, &typed, "all_types");
    let flat_source = TableRef::new(PROJECT, &flat, "all_types");

    let root = unique_root(scheme);
    let store = open_store(&root);
    let batches = as_bigquery_gives_them(&read_batches(&typed_source).await);
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(all.num_rows(), 3);
    let first = encode(&[all.slice(0, 2)], Format::Avro);
    let second = encode(&[all.slice(2, 1)], Format::Avro);
    put_java_file(&store, &typed, "daily-sales-000000000000.avro", first).await;
    put_java_file(&store, &typed, "daily-sales-000000000001.avro", second).await;
    let parquet = encode(&batches, Format::Parquet);
    put_java_file(&store, &typed, "events_2024-000000000000.parquet", parquet).await;
    let csv = encode(
        &as_bigquery_gives_them(&read_batches(&flat_source).await),
        Format::Csv,
    );
    put_java_file(&store, &flat, "flat-csv-table-000000000000.csv", csv).await;

    let mut request = java_request(&root, &[&typed, &flat]);
    request["schemas"] = json!({ format!("{flat}.flat-csv-table"): csv_schema() });
    let (status, report) = post(&app, &request).await;
    assert_eq!(status, 200, "restore: {report}");
    assert_eq!(report["backupId"], BACKUP_ID, "{report}");
    let tables = report["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3, "{report}");
    assert!(
        tables
            .iter()
            .all(|t| t["rows"] == 3 && t["verified"] == false),
        "{report}"
    );

    let restored = format!("restored_{typed}");
    let source_rows = rows_of(&typed_source).await;
    let source_shape = schema_shape(&typed_source).await;
    for table in ["daily-sales", "events_2024"] {
        let target = TableRef::new(PROJECT, &restored, table);
        assert_eq!(rows_of(&target).await, source_rows, "{table} on {scheme}");
        assert_eq!(schema_shape(&target).await, source_shape, "{table}");
    }
    let target = TableRef::new(PROJECT, format!("restored_{flat}"), "flat-csv-table");
    assert_eq!(rows_of(&target).await, rows_of(&flat_source).await, "CSV");
    assert_eq!(
        schema_shape(&target).await,
        schema_shape(&flat_source).await,
        "the CSV table has the schema the request gave"
    );
}

#[tokio::test]
async fn a_java_layout_backup_in_a_directory_restores() {
    restores_a_java_layout_backup("file").await;
}

#[tokio::test]
async fn a_java_layout_backup_on_s3_restores() {
    restores_a_java_layout_backup("s3").await;
}

#[tokio::test]
async fn a_java_layout_backup_on_gcs_restores_with_the_java_request_unchanged() {
    restores_a_java_layout_backup("gs").await;
}

#[tokio::test]
async fn a_java_layout_parquet_backup_on_gcs_streams_through_the_service() {
    // No checksum was recorded for a Java-layout file, so BigQuery is not handed the files
    // to load: each is decoded with the table's schema on the way.
    let app = spawn_app().await;
    let typed = unique_dataset("java_pq");
    BigQueryFixtures::new()
        .create_all_types_dataset_without(&typed, &["geo"])
        .await;
    let source = TableRef::new(PROJECT, &typed, "all_types");
    let root = unique_root("gs");
    let store = open_store(&root);
    let batches = as_bigquery_gives_them(&read_batches(&source).await);
    let parquet = encode(&batches, Format::Parquet);
    put_java_file(&store, &typed, "events-000000000000.parquet", parquet).await;
    let (status, report) = post(&app, &java_request(&root, &[&typed])).await;
    assert_eq!(status, 200, "restore: {report}");
    assert_eq!(report["tables"][0]["method"], "UPLOAD", "{report}");
    let target = TableRef::new(PROJECT, format!("restored_{typed}"), "events");
    assert_eq!(rows_of(&target).await, rows_of(&source).await);
}

fn small_batch(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: StringArray = ids.iter().map(|i| Some(format!("n{i}"))).collect();
    RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(names)],
    )
    .unwrap()
}

#[tokio::test]
async fn java_layout_requests_are_checked_before_anything_is_written() {
    let app = spawn_app().await;
    let dataset = unique_dataset("java_checks");
    let root = unique_root("file");
    let store = open_store(&root);
    let csv = encode(&[small_batch(&[1, 2])], Format::Csv);
    put_java_file(&store, &dataset, "orders-2024-000000000000.csv", csv).await;

    let (status, answer) = post(&app, &java_request(&root, &[&dataset])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["details"][0]["field"], "schemas", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{dataset}.orders-2024")),
        "the table needing a schema is named: {answer}"
    );

    let mut wrong_format = java_request(&root, &[&dataset]);
    wrong_format["restoreStorage"]["importOptions"]["format"] = json!("AVRO");
    let (status, answer) = post(&app, &wrong_format).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["details"][0]["field"], "restoreStorage.importOptions.format",
        "{answer}"
    );

    let mut other_project = java_request(&root, &[&dataset]);
    other_project["restoreStorage"]["gcsOptions"]["projectIdOfBackup"] = json!("other-project");
    let (status, answer) = post(&app, &other_project).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["details"][0]["field"], "restoreStorage.gcsOptions.projectIdOfBackup",
        "{answer}"
    );

    let bq = bigquery_client().await;
    let target = bq_backup::domain::DatasetRef::new(PROJECT, format!("restored_{dataset}"));
    let missing = bq.get_dataset(&target).await.unwrap_err();
    assert_eq!(
        missing.kind(),
        bq_backup::ErrorKind::NotFound,
        "nothing was created"
    );
}

#[tokio::test]
async fn a_corrupt_java_layout_file_is_named_and_leaves_no_target_table() {
    let app = spawn_app().await;
    let dataset = unique_dataset("java_corrupt");
    let root = unique_root("file");
    let store = open_store(&root);
    let good = encode(&[small_batch(&[1, 2, 3])], Format::Avro);
    let mut bad = encode(&[small_batch(&[4, 5, 6])], Format::Avro).to_vec();
    let cut = bad.len() / 2;
    bad.truncate(cut);
    put_java_file(&store, &dataset, "my-orders-000000000000.avro", good).await;
    let bad_key = put_java_file(
        &store,
        &dataset,
        "my-orders-000000000001.avro",
        Bytes::from(bad),
    )
    .await;

    let (status, answer) = post(&app, &java_request(&root, &[&dataset])).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errorCode"], "BACKUP_DAMAGED", "{answer}");
    assert!(
        answer["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["field"] == bad_key.as_str())),
        "the file is named in details: {answer}"
    );
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "my-orders");
    assert!(
        bigquery_client()
            .await
            .find_table(&target)
            .await
            .unwrap()
            .is_none(),
        "nothing of the table was written"
    );
}

#[tokio::test]
async fn table_names_come_decoded_from_the_keys_and_a_dry_run_shows_the_legacy_plan() {
    let app = spawn_app().await;
    let dataset = unique_dataset("java_names");
    let root = unique_root("s3");
    let store = open_store(&root);
    let avro = encode(&[small_batch(&[1])], Format::Avro);
    put_java_file(&store, &dataset, "żółw tabela-2024-000000000000.avro", avro).await;
    let mut request = java_request(&root, &[&dataset]);
    request["dryRun"] = json!(true);
    let (status, answer) = post(&app, &request).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["plan"]["legacy"], true, "{answer}");
    assert_eq!(
        answer["plan"]["tables"][0]["target"]["tableId"], "żółw tabela-2024",
        "{answer}"
    );
    assert_eq!(answer["plan"]["sourceProject"], PROJECT, "{answer}");
}
