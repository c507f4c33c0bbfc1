//! `POST /api/v1/backup` end to end against bqemulator and every store.

use bq_backup::bigquery::ReadOptions;
use bq_backup::catalog::decode_arrow_schema;
use bq_backup::catalog::{Manifest, ManifestStatus};
use bq_backup::domain::TableRef;
use bq_backup::formats::decode;
use bq_backup::storage::Store;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, TestServices, bigquery_client, canonical_rows,
    create_flat_table, open_store, spawn_app, unique_dataset, unique_root,
};

fn request(dataset: &str, uri: &str, format: &str, compression: Option<&str>) -> Value {
    let mut options = json!({ "format": format });
    if let Some(c) = compression {
        options["compression"] = json!(c);
    }
    json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": uri, "exportOptions": options },
        "reason": "integration test",
        "labels": { "suite": "it" }
    })
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    // Waits for the job: these tests check what a finished backup left.
    app.post_json("/api/v1/backup?wait=true", body).await
}

async fn read_manifest(store: &Store, backup_id: &str) -> Manifest {
    let path = Path::from(format!("backups/{backup_id}/manifest.json"));
    let bytes = store
        .object_store()
        .get(&path)
        .await
        .expect("manifest exists")
        .bytes()
        .await
        .unwrap();
    bq_backup::catalog::parse_manifest(path.as_ref(), &bytes).expect("manifest parses")
}

/// Checks every file of `table` against the manifest (size, SHA-256) and decodes it back.
async fn verify_table_files(
    store: &Store,
    manifest: &Manifest,
    table: &TableRef,
) -> Vec<arrow::array::RecordBatch> {
    let entry = manifest.table(table).expect("table in manifest");
    let schema = std::sync::Arc::new(
        decode_arrow_schema(entry.arrow_schema.as_deref().expect("arrow schema")).unwrap(),
    );
    let options = manifest.format.decode_options();
    let mut batches = Vec::new();
    let mut rows = 0;
    assert!(!entry.files.is_empty(), "{table} has files");
    for file in &entry.files {
        let bytes = store
            .object_store()
            .get(&Path::from(file.path.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, file.bytes, "size of {}", file.path);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            file.sha256,
            "checksum of {}",
            file.path
        );
        let decoded = decode(bytes, schema.clone(), &options)
            .unwrap_or_else(|e| panic!("{} decodes: {e}", file.path));
        let file_rows: usize = decoded.iter().map(|b| b.num_rows()).sum();
        assert_eq!(file_rows as u64, file.rows, "rows of {}", file.path);
        rows += file.rows;
        batches.extend(decoded);
    }
    assert_eq!(rows, entry.rows, "table rows = sum of file rows");
    batches
}

/// Backs the all-types dataset up in `format` to `scheme` and checks everything a user would.
async fn backs_up_all_types(scheme: &str, format: &str, compression: Option<&str>) {
    let app = spawn_app().await;
    let dataset = unique_dataset(&format!("bk_{}", format.to_lowercase()));
    let fixtures = BigQueryFixtures::new();
    fixtures.create_all_types_dataset(&dataset).await;
    let root = unique_root(scheme);
    let body = if format == "CSV" {
        // CSV cannot hold RECORD/REPEATED columns: back up a table with only the flat ones.
        create_flat_table(&fixtures, &dataset).await;
        let mut b = request(&dataset, &root, format, compression);
        b["bigQuery"]["tablesToBackup"][0]["tables"] = json!(["flat"]);
        b
    } else {
        request(&dataset, &root, format, compression)
    };
    // This matrix checks the service's own encoders on every store: AUTO would hand gs:// PARQUET
    // to BigQuery's extract jobs (tests/it/extract.rs).
    let mut body = body;
    body["method"] = json!("STREAM");
    let (status, report) = post(&app, &body).await;
    assert_eq!(status, 200, "{report}");
    let table_name = if format == "CSV" { "flat" } else { "all_types" };
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(report["totals"]["rows"], 3, "{report}");
    assert_eq!(report["tables"][0]["rows"], 3);

    let store = open_store(&root);
    let backup_id = report["backupId"].as_str().unwrap();
    let manifest = read_manifest(&store, backup_id).await;
    assert_eq!(manifest.manifest_version, 1);
    assert_eq!(manifest.status, ManifestStatus::Complete);
    assert_eq!(manifest.reason.as_deref(), Some("integration test"));
    assert_eq!(manifest.labels.get("suite").map(String::as_str), Some("it"));
    assert_eq!(manifest.datasets.len(), 1);
    let table = TableRef::new(PROJECT, &dataset, table_name);
    let entry = manifest.table(&table).unwrap();
    let schema = entry.resource.schema().unwrap().expect("a schema");
    assert_eq!(schema.fields[0].name, "id");
    assert_eq!(entry.resource.labels().unwrap()["kind"], "fixture");
    let restored = verify_table_files(&store, &manifest, &table).await;

    // The files hold exactly the rows the Read API returns for the table.
    let bq = bigquery_client().await;
    let source: Vec<_> = bq
        .open_read(&table, &ReadOptions::default())
        .await
        .unwrap()
        .batches()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        canonical_rows(&restored),
        canonical_rows(&source),
        "{format} {compression:?} on {scheme}"
    );
    let extension = manifest.tables[0].files[0]
        .path
        .rsplit_once("part-00000.")
        .map(|(_, e)| e.to_string());
    assert!(extension.is_some(), "{:?}", manifest.tables[0].files);
}

macro_rules! format_store_matrix {
    ($($name:ident: $scheme:literal, $format:literal, $compression:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                backs_up_all_types($scheme, $format, $compression).await;
            }
        )*
    };
}

format_store_matrix! {
    backs_up_every_type_as_avro_to_a_directory: "file", "AVRO", None;
    backs_up_every_type_as_avro_with_zstd_to_gcs: "gs", "AVRO", Some("ZSTD");
    backs_up_every_type_as_avro_with_deflate_to_s3: "s3", "AVRO", Some("DEFLATE");
    backs_up_every_type_as_avro_with_snappy_to_azure: "az", "AVRO", Some("SNAPPY");
    backs_up_every_type_as_parquet_to_a_directory: "file", "PARQUET", None;
    backs_up_every_type_as_parquet_with_gzip_to_gcs: "gs", "PARQUET", Some("GZIP");
    backs_up_every_type_as_parquet_with_zstd_to_s3: "s3", "PARQUET", Some("ZSTD");
    backs_up_every_type_as_uncompressed_parquet_to_azure: "az", "PARQUET", Some("NONE");
    backs_up_every_type_as_json_with_gzip_to_a_directory: "file", "JSON", Some("GZIP");
    backs_up_every_type_as_json_to_gcs: "gs", "JSON", None;
    backs_up_every_type_as_json_with_gzip_to_s3: "s3", "JSON", Some("GZIP");
    backs_up_every_type_as_json_to_azure: "az", "JSON", None;
    backs_up_flat_types_as_csv_to_a_directory: "file", "CSV", None;
    backs_up_flat_types_as_csv_with_gzip_to_gcs: "gs", "CSV", Some("GZIP");
    backs_up_flat_types_as_csv_to_s3: "s3", "CSV", None;
    backs_up_flat_types_as_csv_with_gzip_to_azure: "az", "CSV", Some("GZIP");
}

/// Dataset `sel_*` with tables customers, orders, events_2024, events_2025, tmp-scratch.
async fn selection_dataset() -> String {
    let dataset = unique_dataset("sel");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    for t in [
        "customers",
        "orders",
        "events_2024",
        "events_2025",
        "tmp-scratch",
    ] {
        f.create_table(
            &dataset,
            json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": t },
                    "schema": { "fields": [{ "name": "id", "type": "INT64" }] } }),
        )
        .await;
        f.insert_rows(&dataset, t, vec![json!({ "id": 1 }), json!({ "id": 2 })])
            .await;
    }
    dataset
}

async fn planned_tables(app: &TestApp, mut body: Value) -> Vec<String> {
    body["dryRun"] = json!(true);
    let (status, answer) = post(app, &body).await;
    assert_eq!(status, 200, "{answer}");
    let mut names: Vec<String> = answer["plan"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"]["tableId"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn names_globs_regexes_and_excludes_select_exactly_the_right_tables() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let root = unique_root("file");
    let with = |entry: Value| {
        let mut b = request(&dataset, &root, "AVRO", None);
        b["bigQuery"]["tablesToBackup"] = json!([entry]);
        b
    };
    assert_eq!(
        planned_tables(&app, with(json!({ "datasetName": dataset }))).await,
        [
            "customers",
            "events_2024",
            "events_2025",
            "orders",
            "tmp-scratch"
        ]
    );
    assert_eq!(
        planned_tables(
            &app,
            with(json!({ "datasetName": dataset, "tables": ["orders"] }))
        )
        .await,
        ["orders"]
    );
    assert_eq!(
        planned_tables(&app, with(json!({ "datasetName": dataset, "tables": ["customers"], "tableFilter": "events_*" }))).await,
        ["customers", "events_2024", "events_2025"]
    );
    assert_eq!(
        planned_tables(&app, with(json!({ "datasetName": dataset, "tableFilter": "events_*", "excludeTables": ["events_2024"] }))).await,
        ["events_2025"]
    );
    assert_eq!(
        planned_tables(
            &app,
            with(json!({ "datasetName": dataset, "tableRegex": "^(orders|tmp-.*)$" }))
        )
        .await,
        ["orders", "tmp-scratch"]
    );
    assert_eq!(
        planned_tables(
            &app,
            with(json!({ "datasetName": dataset, "excludeTables": ["tmp-*", "events_*"] }))
        )
        .await,
        ["customers", "orders"]
    );
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_and_writes_nothing() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let mut body = request(
        &dataset,
        &format!("file://{}", dir.path().display()),
        "PARQUET",
        None,
    );
    body["dryRun"] = json!(true);
    let (status, answer) = post(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dryRun"], true);
    assert_eq!(answer["plan"]["tables"].as_array().unwrap().len(), 5);
    assert_eq!(answer["plan"]["format"], "PARQUET");
    assert!(answer["plan"]["backupId"].as_str().is_some());
    for table in answer["plan"]["tables"].as_array().unwrap() {
        assert!(
            table["estimatedOutputBytes"].as_u64().unwrap() > 0,
            "{table}"
        );
        assert_eq!(table["estimatedFiles"], 1, "{table}");
    }
    assert_eq!(answer["plan"]["totals"]["tables"], 5);
    assert_eq!(answer["plan"]["totals"]["rows"], 10);
    assert!(
        answer["plan"]["totals"]["estimatedOutputBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[tokio::test]
async fn named_tables_and_datasets_that_do_not_exist_are_a_404_naming_each() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [
            { "datasetName": dataset, "tables": ["orders", "nope_1", "nope_2"] },
            { "datasetName": "no_such_dataset_here" }
        ]},
        "backupStorage": { "uri": unique_root("file") }
    });
    let (status, answer) = post(&app, &body).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["errorCode"], "RESOURCE_NOT_FOUND");
    let text = answer.to_string();
    for name in ["nope_1", "nope_2", "no_such_dataset_here"] {
        assert!(text.contains(name), "{name} not named: {text}");
    }
    assert_eq!(
        answer["details"][0]["field"],
        "bigQuery.tablesToBackup[0].tables"
    );
    assert_eq!(
        answer["details"][2]["field"],
        "bigQuery.tablesToBackup[1].datasetName"
    );
}

#[tokio::test]
async fn every_invalid_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    let base = || request("some_dataset", "s3://bqb-test/x", "AVRO", None);
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = base();
                b["bigQuery"]["projectId"] = json!("Not A Project");
                b
            },
            "bigQuery.projectId",
        ),
        (
            {
                let mut b = base();
                b["bigQuery"].as_object_mut().unwrap().remove("projectId");
                b
            },
            "bigQuery.projectId",
        ),
        (
            {
                let mut b = base();
                b["bigQuery"]["tablesToBackup"][0]["datasetName"] = json!("bad-name!");
                b
            },
            "bigQuery.tablesToBackup[0].datasetName",
        ),
        (
            {
                let mut b = base();
                b["bigQuery"]["tablesToBackup"][0]["tableRegex"] = json!("(unclosed");
                b
            },
            "bigQuery.tablesToBackup[0].tableRegex",
        ),
        (
            {
                let mut b = base();
                b["backupStorage"]["uri"] = json!("ftp://host/x");
                b
            },
            "backupStorage.uri",
        ),
        (
            {
                let mut b = base();
                b["backupStorage"]["exportOptions"]["format"] = json!("XML");
                b
            },
            "backupStorage.exportOptions.format",
        ),
        (
            {
                let mut b = base();
                b["backupStorage"]["exportOptions"]["compression"] = json!("GZIP");
                b
            },
            "backupStorage.exportOptions.compression",
        ),
        (
            {
                let mut b = base();
                b["backupStorage"]["exportOptions"]["fieldDelimiter"] = json!(";;");
                b
            },
            "backupStorage.exportOptions.fieldDelimiter",
        ),
        (
            {
                let mut b = base();
                b["labels"] = json!({ "Bad Key": "x" });
                b
            },
            "labels",
        ),
        (
            {
                let mut b = base();
                b["asOf"] = json!("2001-01-01T00:00:00Z");
                b
            },
            "asOf",
        ),
        (
            {
                let mut b = base();
                b["maxParallelTables"] = json!(0);
                b
            },
            "maxParallelTables",
        ),
        (
            {
                let mut b = base();
                b["fileSizeBytes"] = json!(10);
                b
            },
            "fileSizeBytes",
        ),
        (
            {
                let mut b = base();
                b["unexpected"] = json!(1);
                b
            },
            "unexpected",
        ),
        (
            {
                let mut b = base();
                b["bigQuery"]["tablesToBackup"] = json!("shop");
                b
            },
            "bigQuery.tablesToBackup",
        ),
        (
            json!({ "bigQuery": { "projectId": PROJECT }, "backupStorage": { "gcsOptions": { "uri": "s3://not-gcs/x" } } }),
            "backupStorage.gcsOptions.uri",
        ),
        (
            json!({ "bigQuery": { "projectId": PROJECT }, "backupTime": { "localDateTime": "2026-11-20T23:59:00", "timezone": "Mars/Olympus" }, "backupStorage": { "uri": "s3://b/x" } }),
            "backupTime.timezone",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = post(&app, &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["errorCode"], "VALIDATION_ERROR", "{field}");
        let fields: Vec<&str> = answer["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["field"].as_str())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "expected {field} in {fields:?}: {answer}"
        );
    }
}

#[tokio::test]
async fn several_problems_are_reported_together() {
    let app = spawn_app().await;
    let body = json!({
        "bigQuery": { "projectId": "X" },
        "backupStorage": { "uri": "nope://", "exportOptions": { "format": "CSV", "compression": "ZSTD" } },
        "maxParallelTables": -1
    });
    let (status, answer) = post(&app, &body).await;
    assert_eq!(status, 400, "{answer}");
    let fields: Vec<&str> = answer["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    for f in [
        "bigQuery.projectId",
        "backupStorage.uri",
        "backupStorage.exportOptions.compression",
        "maxParallelTables",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[tokio::test]
async fn malformed_json_is_a_400_not_a_500() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/v1/backup"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errorCode"], "VALIDATION_ERROR");
    assert_eq!(answer["path"], "/api/v1/backup");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413() {
    let settings = TestServices::get().settings_with(&[("BQB_MAX_BODY_BYTES", "1024")]);
    let app = crate::helpers::spawn_app_with(settings).await;
    let body = json!({ "reason": "x".repeat(4096) });
    let resp = app
        .client
        .post(app.url("/api/v1/backup"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errorCode"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn csv_refuses_nested_columns_before_any_work_starts() {
    let app = spawn_app().await;
    let dataset = unique_dataset("csvnest");
    BigQueryFixtures::new()
        .create_all_types_dataset(&dataset)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (status, answer) = post(
        &app,
        &request(
            &dataset,
            &format!("file://{}", dir.path().display()),
            "CSV",
            None,
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["details"][0]["field"],
        "backupStorage.exportOptions.format"
    );
    assert!(
        answer["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("rec"),
        "{answer}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_same_backup_id_twice_in_one_root_is_a_409() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let root = unique_root("s3");
    let mut body = request(&dataset, &root, "AVRO", None);
    body["bigQuery"]["tablesToBackup"][0]["tables"] = json!(["orders"]);
    body["asOf"] = json!((chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339());
    let (status, first) = post(&app, &body).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = post(&app, &body).await;
    assert_eq!(status, 409, "{second}");
    assert_eq!(second["errorCode"], "RESOURCE_CONFLICT");
    // Java's overwrite: true never replaces a complete backup either.
    body["backupStorage"]["exportOptions"]["overwrite"] = json!(true);
    let (status, _) = post(&app, &body).await;
    assert_eq!(status, 409);
    let store = open_store(&root);
    let manifest = read_manifest(&store, first["backupId"].as_str().unwrap()).await;
    assert_eq!(manifest.totals.rows, 2, "the first backup is intact");
}

#[tokio::test]
async fn a_conflict_visible_when_the_request_arrives_is_a_synchronous_409_not_a_failed_job() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let root = unique_root("file");
    let store = open_store(&root);
    let request_at = |at: chrono::DateTime<chrono::Utc>| {
        let mut body = request(&dataset, &root, "AVRO", None);
        body["bigQuery"]["tablesToBackup"][0]["tables"] = json!(["orders"]);
        body["asOf"] = json!(at.to_rfc3339());
        body
    };

    // The same request twice, the second after the first committed.
    let committed = request_at(chrono::Utc::now() - chrono::Duration::minutes(3));
    let (status, first) = post(&app, &committed).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = app.post_json("/api/v1/backup", &committed).await;
    assert_eq!(status, 409, "answered at once, not accepted: {second}");
    assert_eq!(second["errorCode"], "RESOURCE_CONFLICT", "{second}");
    assert!(
        second["message"]
            .as_str()
            .is_some_and(|m| m.contains("already exists")),
        "{second}"
    );

    // Another id, claimed by a live writer (a fresh heartbeat).
    let at = chrono::Utc::now() - chrono::Duration::minutes(4);
    let backup_id = at.format("%Y%m%d_%H%M%S").to_string();
    let claim = Path::from(format!(
        "backups/{backup_id}/_claim/00000000000000000001.json"
    ));
    let record = json!({ "backupId": backup_id, "purpose": "backup", "holder": "another-process",
                         "heartbeatAt": chrono::Utc::now(), "staleAfterSecs": 60, "host": "elsewhere" });
    store
        .object_store()
        .put(&claim, record.to_string().into())
        .await
        .unwrap();
    let (status, answer) = app.post_json("/api/v1/backup", &request_at(at)).await;
    assert_eq!(status, 409, "answered at once, not accepted: {answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("right now")),
        "{answer}"
    );

    // Only the first request became a job.
    let (status, jobs) = app.get_json("/api/v1/jobs").await;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
}

#[tokio::test]
async fn a_failed_backup_leaves_no_manifest_and_no_files() {
    let dataset = selection_dataset().await;
    let root = unique_root("az");
    let bq = bigquery_client().await;
    let now = chrono::Utc::now();
    let mut body = request(&dataset, &root, "PARQUET", None);
    body["bigQuery"]["tablesToBackup"][0]["tables"] =
        json!(["customers", "orders", "events_2024", "events_2025"]);
    body["maxParallelTables"] = json!(1);
    let order =
        bq_backup::backup::BackupOrder::from_json(body.to_string().as_bytes(), now).unwrap();
    let plan = bq_backup::backup::plan_backup(&bq, order, now, 4)
        .await
        .unwrap();
    // A table that disappears after planning makes the backup fail after others were written.
    let url = format!(
        "{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/orders",
        TestServices::get().bigquery_rest
    );
    let resp = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let store = open_store(&root);
    let ctx = bq_backup::backup::BackupContext {
        bigquery: bq,
        store: store.clone(),
        cancel: tokio_util::sync::CancellationToken::new(),
        progress: None,
        lease: Default::default(),
    };
    let err = bq_backup::backup::run_backup(&plan, &ctx)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("orders"),
        "the failed table is named: {err}"
    );
    let left: Vec<_> = store.object_store().list(None).try_collect().await.unwrap();
    assert!(
        left.is_empty(),
        "nothing is left behind: {:?}",
        left.iter()
            .map(|m| m.location.to_string())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_java_request_shape_backs_up_with_backup_time_in_its_timezone() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let la = chrono_tz::America::Los_Angeles;
    let local = (chrono::Utc::now() - chrono::Duration::minutes(5))
        .with_timezone(&la)
        .naive_local();
    let local = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let root = unique_root("gs");
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset, "tables": ["customers", "orders"], "tableFilter": "events_*" }] },
        "backupStorage": { "gcsOptions": { "uri": root, "exportOptions": {
            "format": "CSV", "overwrite": true, "compression": "GZIP", "header": true, "fieldDelimiter": ",",
            "threadPoolSize": 4, "threadQueueCapacity": 10 } } },
        "backupTime": { "localDateTime": local, "timezone": "America/Los_Angeles" }
    });
    let (status, report) = post(&app, &body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tables"].as_array().unwrap().len(), 4);
    let expected = chrono::NaiveDateTime::parse_from_str(&local, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_local_timezone(la)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let snapshot: chrono::DateTime<chrono::Utc> =
        report["snapshotTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(snapshot, expected);
    assert_eq!(
        report["backupId"],
        expected.format("%Y%m%d_%H%M%S").to_string()
    );
    let manifest = read_manifest(&open_store(&root), report["backupId"].as_str().unwrap()).await;
    assert!(
        manifest
            .tables
            .iter()
            .all(|t| t.files.iter().all(|f| f.path.ends_with(".csv.gz")))
    );
}

#[tokio::test]
async fn a_dead_attempt_is_replaced_by_the_same_request_but_a_live_one_never_is() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let root = unique_root("file");
    let store = open_store(&root);
    let at = chrono::Utc::now() - chrono::Duration::minutes(2);
    let backup_id = at.format("%Y%m%d_%H%M%S").to_string();
    let mut body = request(&dataset, &root, "AVRO", None);
    body["bigQuery"]["tablesToBackup"][0]["tables"] = json!(["orders"]);
    body["asOf"] = json!(at.to_rfc3339());
    let claim_dir = Path::from(format!("backups/{backup_id}/_claim"));
    let claim = claim_dir.clone().join("00000000000000000001.json");
    let leftover = Path::from(format!(
        "backups/{backup_id}/{PROJECT}/{dataset}/orders/part-00000.avro"
    ));
    let record = |heartbeat: chrono::DateTime<chrono::Utc>| {
        json!({ "backupId": backup_id, "purpose": "backup", "holder": "another-process",
                "heartbeatAt": heartbeat, "staleAfterMs": 60000, "host": "elsewhere" })
        .to_string()
    };

    // A live writer (fresh heartbeat): refused even with overwrite.
    store
        .object_store()
        .put(&claim, record(chrono::Utc::now()).into())
        .await
        .unwrap();
    body["backupStorage"]["exportOptions"]["overwrite"] = json!(true);
    let (status, answer) = post(&app, &body).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("right now"),
        "{answer}"
    );

    // An attempt that died (stale heartbeat) with a leftover file: the same request, without
    // overwrite, takes the id over, removes the leftover and commits.
    store
        .object_store()
        .put(
            &claim,
            record(chrono::Utc::now() - chrono::Duration::hours(1)).into(),
        )
        .await
        .unwrap();
    store
        .object_store()
        .put(&leftover, bytes::Bytes::from_static(b"garbage").into())
        .await
        .unwrap();
    body["backupStorage"]["exportOptions"]["overwrite"] = json!(false);
    let (status, report) = post(&app, &body).await;
    assert_eq!(status, 200, "{report}");
    let manifest = read_manifest(&store, &backup_id).await;
    verify_table_files(
        &store,
        &manifest,
        &TableRef::new(PROJECT, &dataset, "orders"),
    )
    .await;
    let claims: Vec<_> = store
        .object_store()
        .list(Some(&claim_dir))
        .try_collect()
        .await
        .unwrap();
    assert!(
        claims.is_empty(),
        "the claim records are removed after commit: {claims:?}"
    );
}

#[tokio::test]
async fn files_roll_at_file_size_bytes_and_every_part_is_in_the_manifest() {
    let app = spawn_app().await;
    let dataset = unique_dataset("roll");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "wide" },
                "schema": { "fields": [{ "name": "id", "type": "INT64" }, { "name": "payload", "type": "STRING" }] } }),
    )
    .await;
    // About 6 MB of text that does not compress away: several 1 MiB files whatever the streams.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in 0..6 {
        let rows = crate::helpers::incompressible_rows(&mut x, chunk * 10_000, 10_000, "payload");
        f.insert_rows(&dataset, "wide", rows).await;
    }
    let root = unique_root("s3");
    let mut body = request(&dataset, &root, "AVRO", None);
    body["fileSizeBytes"] = json!(1024 * 1024);
    let (status, report) = post(&app, &body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["totals"]["rows"], 60_000);
    let store = open_store(&root);
    let manifest = read_manifest(&store, report["backupId"].as_str().unwrap()).await;
    let entry = &manifest.tables[0];
    assert!(
        entry.files.len() >= 5,
        "6 MB in 1 MiB files: {} files",
        entry.files.len()
    );
    for file in &entry.files {
        // A file closes at the first slice (an eighth of the limit) that takes it past the limit.
        assert!(
            file.bytes < 3 * 512 * 1024,
            "{} is {} bytes",
            file.path,
            file.bytes
        );
    }
    let batches =
        verify_table_files(&store, &manifest, &TableRef::new(PROJECT, &dataset, "wide")).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 60_000);
}

#[tokio::test]
async fn no_datasets_means_the_whole_project() {
    let app = spawn_app().await;
    let dataset = selection_dataset().await;
    let body = json!({
        "bigQuery": { "projectId": PROJECT },
        "backupStorage": { "uri": unique_root("file") },
        "dryRun": true
    });
    let (status, answer) = post(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    let datasets: Vec<&str> = answer["plan"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["dataset"]["datasetId"].as_str())
        .collect();
    assert!(
        datasets.contains(&dataset.as_str()),
        "{dataset} not in {datasets:?}"
    );
    let tables = answer["plan"]["tables"].as_array().unwrap();
    let ours = tables
        .iter()
        .filter(|t| t["table"]["datasetId"] == dataset.as_str())
        .count();
    assert_eq!(ours, 5, "every table of every dataset");
}
