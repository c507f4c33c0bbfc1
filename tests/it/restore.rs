//! `POST /api/v1/restore` end to end: back up with the service, restore, compare.

use bq_backup::bigquery::ReadOptions;
use bq_backup::domain::TableRef;
use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, bigquery_client, canonical_rows, spawn_app, unique_dataset,
    unique_root,
};

/// Posts and waits for the job: these tests check what a finished backup or restore left.
async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    app.post_json(&format!("{path}?wait=true"), body).await
}

async fn backup(
    app: &TestApp,
    dataset: &str,
    root: &str,
    format: &str,
    compression: Option<&str>,
) -> String {
    let mut options = json!({ "format": format });
    if let Some(c) = compression {
        options["compression"] = json!(c);
    }
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": options }
    });
    let (status, report) = post(app, "/api/v1/backup", &body).await;
    assert_eq!(status, 200, "backup: {report}");
    report["backupId"].as_str().unwrap().to_string()
}

fn restore_request(root: &str, backup_id: &str, dataset: &str) -> Value {
    json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": backup_id
    })
}

async fn rows_of(table: &TableRef) -> Vec<Vec<String>> {
    let bq = bigquery_client().await;
    let batches: Vec<_> = bq
        .open_read(table, &ReadOptions::default())
        .await
        .unwrap()
        .batches()
        .try_collect()
        .await
        .unwrap();
    canonical_rows(&batches)
}

/// Columns each restore fixture leaves out: `geo` (see `create_all_types_dataset_without`), and
/// for CSV the RECORD and REPEATED columns CSV cannot hold.
fn excluded(format: &str) -> &'static [&'static str] {
    if format == "CSV" {
        &["geo", "rec", "tags", "items"]
    } else {
        &["geo"]
    }
}

async fn round_trip(scheme: &str, format: &str, compression: Option<&str>) {
    let app = spawn_app().await;
    let dataset = unique_dataset(&format!("rt_{}", format.to_lowercase()));
    BigQueryFixtures::new()
        .create_all_types_dataset_without(&dataset, excluded(format))
        .await;
    let root = unique_root(scheme);
    let backup_id = backup(&app, &dataset, &root, format, compression).await;
    if scheme == "gs" {
        crate::helpers::mirror_gcs_for_bigquery(&root).await;
    }
    let (status, report) = post(
        &app,
        "/api/v1/restore",
        &restore_request(&root, &backup_id, &dataset),
    )
    .await;
    assert_eq!(status, 200, "restore: {report}");
    assert_eq!(report["tables"][0]["rows"], 3, "{report}");
    // Parquet on gs:// is loaded by BigQuery from the files, elsewhere its files are sent to
    // BigQuery as they are; every other format is decoded and re-encoded on its way.
    let method = match (scheme, format) {
        ("gs", "PARQUET") => "GCS_LOAD_JOB",
        (_, "PARQUET") => "UPLOAD_FILES",
        _ => "UPLOAD",
    };
    assert_eq!(report["tables"][0]["method"], method, "{report}");
    let source = TableRef::new(PROJECT, &dataset, "all_types");
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "all_types");
    assert_eq!(
        rows_of(&target).await,
        rows_of(&source).await,
        "{format} on {scheme}"
    );
}

macro_rules! round_trips {
    ($($name:ident: $scheme:literal, $format:literal, $compression:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                round_trip($scheme, $format, $compression).await;
            }
        )*
    };
}

round_trips! {
    restores_every_type_from_parquet_in_a_directory: "file", "PARQUET", None;
    restores_every_type_from_zstd_parquet_on_gcs: "gs", "PARQUET", Some("ZSTD");
    restores_every_type_from_parquet_on_s3: "s3", "PARQUET", None;
    restores_every_type_from_gzip_parquet_on_azure: "az", "PARQUET", Some("GZIP");
    restores_every_type_from_avro_in_a_directory: "file", "AVRO", Some("DEFLATE");
    restores_every_type_from_avro_on_gcs: "gs", "AVRO", None;
    restores_every_type_from_zstd_avro_on_s3: "s3", "AVRO", Some("ZSTD");
    restores_every_type_from_snappy_avro_on_azure: "az", "AVRO", Some("SNAPPY");
    restores_every_type_from_json_in_a_directory: "file", "JSON", None;
    restores_every_type_from_gzip_json_on_gcs: "gs", "JSON", Some("GZIP");
    restores_every_type_from_json_on_s3: "s3", "JSON", None;
    restores_every_type_from_gzip_json_on_azure: "az", "JSON", Some("GZIP");
    restores_flat_types_from_gzip_csv_in_a_directory: "file", "CSV", Some("GZIP");
    restores_flat_types_from_csv_on_gcs: "gs", "CSV", None;
    restores_flat_types_from_gzip_csv_on_s3: "s3", "CSV", Some("GZIP");
    restores_flat_types_from_csv_on_azure: "az", "CSV", None;
}

/// Dataset with a partitioned + clustered table carrying descriptions, labels and modes.
async fn metadata_dataset() -> String {
    let dataset = unique_dataset("meta");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({ "team": "data" })).await;
    f.create_table(
        &dataset,
        json!({
            "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "events" },
            "description": "partitioned and clustered",
            "labels": { "tier": "gold" },
            "timePartitioning": { "type": "DAY", "field": "ts" },
            "clustering": { "fields": ["country", "id"] },
            "schema": { "fields": [
                { "name": "id", "type": "INT64", "mode": "REQUIRED", "description": "event id" },
                { "name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED" },
                { "name": "country", "type": "STRING", "description": "ISO code" },
                { "name": "tags", "type": "STRING", "mode": "REPEATED" }
            ]}
        }),
    )
    .await;
    f.insert_rows(
        &dataset,
        "events",
        vec![
            json!({ "id": 1, "ts": "2026-11-20T01:00:00Z", "country": "PL", "tags": ["a"] }),
            json!({ "id": 2, "ts": "2026-11-21T02:00:00Z", "country": "DE", "tags": [] }),
        ],
    )
    .await;
    dataset
}

#[tokio::test]
async fn schema_partitioning_clustering_descriptions_and_labels_are_recreated() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let root = unique_root("s3");
    let backup_id = backup(&app, &dataset, &root, "AVRO", None).await;
    let (status, report) = post(
        &app,
        "/api/v1/restore",
        &restore_request(&root, &backup_id, &dataset),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let bq = bigquery_client().await;
    let source = bq
        .get_table(&TableRef::new(PROJECT, &dataset, "events"))
        .await
        .unwrap();
    let target = bq
        .get_table(&TableRef::new(
            PROJECT,
            format!("restored_{dataset}"),
            "events",
        ))
        .await
        .unwrap();
    let fields = |t: &bq_backup::bigquery::model::Table| {
        serde_json::to_value(&t.schema.as_ref().unwrap().fields).unwrap()
    };
    assert_eq!(
        fields(&target),
        fields(&source),
        "schema with modes and descriptions"
    );
    assert_eq!(
        serde_json::to_value(&target.time_partitioning).unwrap(),
        serde_json::to_value(&source.time_partitioning).unwrap()
    );
    assert_eq!(
        serde_json::to_value(&target.clustering).unwrap(),
        serde_json::to_value(&source.clustering).unwrap()
    );
    assert_eq!(target.labels, source.labels);
    assert_eq!(target.description, source.description);
    let ds = bq
        .get_dataset(&bq_backup::domain::DatasetRef::new(
            PROJECT,
            format!("restored_{dataset}"),
        ))
        .await
        .unwrap();
    assert_eq!(ds.labels.get("team").map(String::as_str), Some("data"));
    assert_eq!(
        rows_of(&TableRef::new(
            PROJECT,
            format!("restored_{dataset}"),
            "events"
        ))
        .await
        .len(),
        2
    );
}

#[tokio::test]
async fn a_non_empty_target_is_refused_unless_the_request_says_truncate_or_append() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let root = unique_root("file");
    let backup_id = backup(&app, &dataset, &root, "PARQUET", None).await;
    let request = restore_request(&root, &backup_id, &dataset);
    let (status, first) = post(&app, "/api/v1/restore", &request).await;
    assert_eq!(status, 200, "{first}");
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "events");

    let (status, refused) = post(&app, "/api/v1/restore", &request).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["errorCode"], "RESOURCE_CONFLICT");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&target.to_string()),
        "{refused}"
    );
    assert_eq!(rows_of(&target).await.len(), 2, "untouched");

    let mut append = request.clone();
    append["restoreStorage"]["importOptions"] = json!({ "writeDisposition": "WRITE_APPEND" });
    let (status, answer) = post(&app, "/api/v1/restore", &append).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(rows_of(&target).await.len(), 4, "appended");

    let mut truncate = request.clone();
    truncate["restoreStorage"]["importOptions"] = json!({ "writeDisposition": "WRITE_TRUNCATE" });
    let (status, answer) = post(&app, "/api/v1/restore", &truncate).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(rows_of(&target).await.len(), 2, "replaced");
}

/// Backs up the metadata dataset in `format` to a directory, damages its first file with
/// `damage`, restores, and checks the refusal is a damaged backup (422, not a 5xx: neither the
/// caller's nor a dependency's fault) naming the file, and leaves no target table. Returns the
/// answer for further checks.
async fn restore_of_a_damaged_file(format: &str, damage: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Value {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, format, None).await;
    let manifest = crate::helpers::manifest_json(dir.path(), &backup_id);
    let file = manifest["tables"][0]["files"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let on_disk = dir.path().join(&file);
    std::fs::write(&on_disk, damage(std::fs::read(&on_disk).unwrap())).unwrap();

    let (status, answer) = post(
        &app,
        "/api/v1/restore",
        &restore_request(&root, &backup_id, &dataset),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errorCode"], "BACKUP_DAMAGED", "{answer}");
    assert!(
        answer["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["field"] == file.as_str())),
        "the file is named in details: {answer}"
    );
    let bq = bigquery_client().await;
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "events");
    assert!(
        bq.find_table(&target).await.unwrap().is_none(),
        "nothing of the table was written"
    );
    answer
}

#[tokio::test]
async fn a_tampered_file_names_the_file_and_leaves_no_target_table() {
    let answer = restore_of_a_damaged_file("JSON", |mut bytes| {
        bytes[10] ^= 0x01;
        bytes
    })
    .await;
    assert!(answer.to_string().contains("SHA-256"), "{answer}");
}

#[tokio::test]
async fn a_truncated_file_is_refused_before_anything_is_loaded() {
    let answer = restore_of_a_damaged_file("AVRO", |bytes| bytes[..bytes.len() / 2].to_vec()).await;
    assert!(
        answer.to_string().contains("bytes, the manifest says"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_dry_run_finds_a_manifest_whose_files_could_not_be_restored() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, "AVRO", None).await;
    let key = format!("backups/{backup_id}/manifest.json");
    let original = crate::helpers::manifest_json(dir.path(), &backup_id);
    let recorded = original["tables"][0]["arrowSchema"].as_str().unwrap();
    let schema = bq_backup::catalog::decode_arrow_schema(recorded).unwrap();
    let fewer_columns =
        bq_backup::catalog::encode_arrow_schema(&schema.project(&[0, 1, 2]).unwrap());
    let cases: [(&str, Value, &str); 3] = [
        (
            "/tables/0/arrowSchema",
            json!("bm90IGFuIEFycm93IHNjaGVtYQ=="),
            "unreadable Arrow schema",
        ),
        (
            "/format/format",
            json!("CSV"),
            "CSV cannot hold RECORD or REPEATED columns",
        ),
        (
            "/tables/0/arrowSchema",
            json!(fewer_columns),
            "3 columns that differ from the 4",
        ),
    ];
    let mut request = restore_request(&root, &backup_id, &dataset);
    request["dryRun"] = json!(true);
    for (pointer, value, expected) in cases {
        let mut manifest = original.clone();
        *manifest.pointer_mut(pointer).unwrap() = value;
        std::fs::write(dir.path().join(&key), manifest.to_string()).unwrap();
        let (status, answer) = post(&app, "/api/v1/restore", &request).await;
        assert_eq!(status, 422, "{pointer}: {answer}");
        assert_eq!(answer["errorCode"], "BACKUP_DAMAGED", "{answer}");
        let details = answer["details"].as_array().unwrap();
        assert!(
            details.iter().any(|d| d["field"] == key.as_str()),
            "{answer}"
        );
        let table = format!("{PROJECT}.{dataset}.events");
        assert!(
            details.iter().any(|d| d["field"] == table.as_str()
                && d["message"].as_str().unwrap().contains(expected)),
            "{pointer}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_truncated_manifest_is_a_damaged_backup_to_restore_and_show_and_can_still_be_deleted() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, "AVRO", None).await;
    let key = format!("backups/{backup_id}/manifest.json");
    let on_disk = dir.path().join(&key);
    let whole = std::fs::read(&on_disk).unwrap();
    std::fs::write(&on_disk, &whole[..whole.len() / 2]).unwrap();
    let names_the_manifest = |answer: &Value| {
        answer["errorCode"] == "BACKUP_DAMAGED"
            && answer["details"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["field"] == key.as_str()))
    };

    let (status, answer) = post(
        &app,
        "/api/v1/restore",
        &restore_request(&root, &backup_id, &dataset),
    )
    .await;
    assert_eq!(status, 422, "restore: {answer}");
    assert!(names_the_manifest(&answer), "restore: {answer}");
    let bq = bigquery_client().await;
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "events");
    assert!(bq.find_table(&target).await.unwrap().is_none());

    let uri = url::form_urlencoded::byte_serialize(root.as_bytes()).collect::<String>();
    let show = format!("/api/v1/backups/{backup_id}?uri={uri}");
    let (status, answer) = app.get_json(&show).await;
    assert_eq!(status, 422, "show: {answer}");
    assert!(names_the_manifest(&answer), "show: {answer}");

    // A damaged backup is not stuck: deleting it by its id works.
    let (status, answer) = app.delete_json(&show).await;
    assert_eq!(status, 200, "delete: {answer}");
    assert!(!on_disk.exists(), "the manifest is gone");
}

#[tokio::test]
async fn a_manifest_with_a_status_or_version_this_build_does_not_know_is_refused_not_misread() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, "PARQUET", None).await;
    let key = format!("backups/{backup_id}/manifest.json");
    let on_disk = dir.path().join(&key);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&on_disk).unwrap()).unwrap();
    let request = restore_request(&root, &backup_id, &dataset);
    let bq = bigquery_client().await;
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "events");

    // A status no bq-backup writes: the manifest is damaged, named with its field.
    manifest["status"] = json!("PARTIAL");
    std::fs::write(&on_disk, manifest.to_string()).unwrap();
    let (status, answer) = post(&app, "/api/v1/restore", &request).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errorCode"], "BACKUP_DAMAGED", "{answer}");
    assert!(
        answer["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["field"] == key.as_str()
                && d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("`status`")))),
        "the manifest and its field are named: {answer}"
    );
    assert!(bq.find_table(&target).await.unwrap().is_none());

    // A manifest of a newer bq-backup: refused with what to do, not read as this version.
    manifest["status"] = json!("COMPLETE");
    // (Versions 2 to 4 are read: EXTRACT backups, whose files carry a CRC32C; encrypted
    // backups; incremental backups.)
    manifest["manifestVersion"] = json!(5);
    std::fs::write(&on_disk, manifest.to_string()).unwrap();
    let (status, answer) = post(&app, "/api/v1/restore", &request).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains(&key) && m.contains("upgrade")),
        "{answer}"
    );
    assert!(bq.find_table(&target).await.unwrap().is_none());
}

#[tokio::test]
async fn latest_restores_the_newest_complete_backup() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let root = unique_root("az");
    let older = backup(&app, &dataset, &root, "PARQUET", None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = backup(&app, &dataset, &root, "PARQUET", None).await;
    assert!(newer > older);
    let mut request = restore_request(&root, "latest", &dataset);
    request["dryRun"] = json!(true);
    let (status, plan) = post(&app, "/api/v1/restore", &request).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["plan"]["backupId"], newer);
    assert_eq!(
        plan["plan"]["tables"][0]["target"]["datasetId"],
        format!("restored_{dataset}")
    );
    let bq = bigquery_client().await;
    let target = TableRef::new(PROJECT, format!("restored_{dataset}"), "events");
    assert!(
        bq.find_table(&target).await.unwrap().is_none(),
        "a dry run writes nothing"
    );
}

#[tokio::test]
async fn a_missing_backup_is_a_404_naming_the_field() {
    let app = spawn_app().await;
    let (status, answer) = post(
        &app,
        "/api/v1/restore",
        &restore_request(&unique_root("s3"), "20260101_000000", "shop"),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["details"][0]["field"], "backupId");
}

#[tokio::test]
async fn target_dataset_mapping_and_table_subsets_are_honoured() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    BigQueryFixtures::new()
        .create_table(
            &dataset,
            json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "other" },
                    "schema": { "fields": [{ "name": "x", "type": "INT64" }] } }),
        )
        .await;
    let root = unique_root("gs");
    let backup_id = backup(&app, &dataset, &root, "AVRO", None).await;
    crate::helpers::mirror_gcs_for_bigquery(&root).await;
    let target_dataset = unique_dataset("mapped");
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": backup_id,
        "tables": [format!("{dataset}.events")],
        "targetDatasets": { dataset.clone(): target_dataset.clone() }
    });
    let (status, report) = post(&app, "/api/v1/restore", &request).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tables"].as_array().unwrap().len(), 1);
    assert_eq!(
        report["tables"][0]["target"],
        format!("{PROJECT}.{target_dataset}.events")
    );
    let bq = bigquery_client().await;
    assert!(
        bq.find_table(&TableRef::new(PROJECT, &target_dataset, "other"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn views_are_recreated_after_their_tables_with_references_rewritten() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let f = BigQueryFixtures::new();
    // The common form, `dataset.table` without project, next to a literal and a comment that
    // spell the same name and must stay as written. Double-quoted literals: bqemulator drops
    // single quotes from the SQL its INFORMATION_SCHEMA.VIEWS answers.
    let sql = format!(
        "SELECT id, country, \"{dataset}.events\" AS note -- not {dataset}.events_old\nFROM {dataset}.events WHERE country = \"PL\""
    );
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "polish_events" },
                "view": { "query": sql, "useLegacySql": false } }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, "AVRO", None).await;

    // bqemulator's tables.get returns no SQL for views (real BigQuery does): the backup, without
    // includeDependents, read it from the dataset's INFORMATION_SCHEMA.VIEWS instead.
    let path = dir
        .path()
        .join(format!("backups/{backup_id}/manifest.json"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        manifest["totals"]["tables"], 1,
        "totals count tables with data, not views"
    );
    let view = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"]["tableId"] == "polish_events")
        .expect("the view is recorded");
    assert_eq!(view["kind"], "VIEW");
    assert_eq!(view["files"], json!([]), "views are not exported");
    assert_eq!(view["definition"], json!(sql), "{view}");
    assert_eq!(view["resource"]["view"]["query"], json!(sql), "{view}");
    assert_eq!(view["resource"]["view"]["useLegacySql"], false, "{view}");

    let target = restore_the_view(&app, &root, &backup_id, &dataset, "polish_events").await;
    // The rewritten SQL reads the restored table: with the source table gone, only a rewritten
    // reference can still answer.
    drop_source_events(&dataset).await;
    let answer = query(format!("SELECT id, country, note FROM `{target}`")).await;
    assert_eq!(
        answer["rows"],
        json!([{ "f": [{ "v": "1" }, { "v": "PL" }, { "v": format!("{dataset}.events") }] }]),
        "{answer}"
    );
}

/// Restores the backup of `dataset` into `restored_{dataset}` and checks that `view` came back
/// as a view; its full name.
async fn restore_the_view(
    app: &TestApp,
    root: &str,
    backup_id: &str,
    dataset: &str,
    view: &str,
) -> String {
    let (status, report) = post(
        app,
        "/api/v1/restore",
        &restore_request(root, backup_id, dataset),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let target = format!("{PROJECT}.restored_{dataset}.{view}");
    assert_eq!(report["views"], json!([target]), "{report}");
    let restored = bigquery_client()
        .await
        .get_table(&TableRef::new(PROJECT, format!("restored_{dataset}"), view))
        .await
        .expect("the restored view");
    assert_eq!(restored.r#type, "VIEW");
    target
}

/// A GoogleSQL query on the emulator; its answer.
async fn query(sql: String) -> Value {
    let rest = &crate::helpers::TestServices::get().bigquery_rest;
    reqwest::Client::new()
        .post(format!("{rest}/bigquery/v2/projects/{PROJECT}/queries"))
        .json(&json!({ "query": sql, "useLegacySql": false }))
        .send()
        .await
        .expect("the emulator answers")
        .json::<Value>()
        .await
        .expect("a JSON answer")
}

/// Deletes the source table `events` of `dataset`: only a view rewritten to the restored table
/// still answers.
async fn drop_source_events(dataset: &str) {
    let rest = &crate::helpers::TestServices::get().bigquery_rest;
    let gone = reqwest::Client::new()
        .delete(format!(
            "{rest}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/events"
        ))
        .send()
        .await
        .expect("the emulator answers");
    assert!(gone.status().is_success());
}

#[tokio::test]
async fn a_view_with_aliases_named_like_its_dataset_keeps_them_when_rewritten() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let f = BigQueryFixtures::new();
    // A table alias spelled like the dataset, an array of it in FROM, and an UNNEST alias: only
    // the table's name is a dataset; rewriting the aliases too would break the view.
    let sql = format!(
        "SELECT {dataset}.id, tag FROM {dataset}.events AS {dataset}, UNNEST({dataset}.tags) AS tag WHERE {dataset}.country = \"PL\""
    );
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "polish_tags" },
                "view": { "query": sql, "useLegacySql": false } }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, "AVRO", None).await;
    let target = restore_the_view(&app, &root, &backup_id, &dataset, "polish_tags").await;
    // The SQL as restored: only the table's dataset changed, byte for byte.
    let definition = query(format!(
        "SELECT view_definition FROM restored_{dataset}.INFORMATION_SCHEMA.VIEWS WHERE table_name = \"polish_tags\""
    ))
    .await;
    let expected = sql.replace(
        &format!("FROM {dataset}.events"),
        &format!("FROM restored_{dataset}.events"),
    );
    assert_eq!(
        definition["rows"],
        json!([{ "f": [{ "v": expected }] }]),
        "{definition}"
    );
    // With the source table gone, the restored view answers from the restored table.
    drop_source_events(&dataset).await;
    let answer = query(format!("SELECT id, tag FROM `{target}`")).await;
    assert_eq!(
        answer["rows"],
        json!([{ "f": [{ "v": "1" }, { "v": "a" }] }]),
        "{answer}"
    );
}

#[tokio::test]
async fn routines_are_recorded_and_recreated_in_the_restored_dataset() {
    let app = spawn_app().await;
    let dataset = metadata_dataset().await;
    let rest = &crate::helpers::TestServices::get().bigquery_rest;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{rest}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/routines"))
        .json(&json!({
            "routineReference": { "projectId": PROJECT, "datasetId": dataset, "routineId": "add_one" },
            "routineType": "SCALAR_FUNCTION", "language": "SQL", "definitionBody": "x + 1",
            "arguments": [{ "name": "x", "dataType": { "typeKind": "INT64" } }],
            "returnType": { "typeKind": "INT64" }, "description": "adds one"
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    // A SQL routine naming a table of its dataset without project, as most do.
    let body = format!("SELECT id FROM {dataset}.events WHERE country = c");
    let created = http
        .post(format!("{rest}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/routines"))
        .json(&json!({
            "routineReference": { "projectId": PROJECT, "datasetId": dataset, "routineId": "events_in" },
            "routineType": "TABLE_VALUED_FUNCTION", "language": "SQL", "definitionBody": body,
            "arguments": [{ "name": "c", "dataType": { "typeKind": "STRING" } }]
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let backup_id = backup(&app, &dataset, &root, "PARQUET", None).await;
    let manifest: Value = crate::helpers::manifest_json(dir.path(), &backup_id);
    let recorded = |name: &str| {
        manifest["routines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["routine"] == name)
            .unwrap_or_else(|| panic!("{name} is recorded: {}", manifest["routines"]))
            .clone()
    };
    assert_eq!(recorded("add_one")["resource"]["definitionBody"], "x + 1");
    assert_eq!(recorded("events_in")["resource"]["definitionBody"], body);

    let (status, report) = post(
        &app,
        "/api/v1/restore",
        &restore_request(&root, &backup_id, &dataset),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let mut routines: Vec<&str> = report["routines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    routines.sort();
    assert_eq!(
        routines,
        [
            format!("{PROJECT}.restored_{dataset}.add_one"),
            format!("{PROJECT}.restored_{dataset}.events_in")
        ]
    );
    let restored = |name: &str| {
        let url = format!(
            "{rest}/bigquery/v2/projects/{PROJECT}/datasets/restored_{dataset}/routines/{name}"
        );
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let add_one = restored("add_one").await;
    assert_eq!(add_one["definitionBody"], "x + 1", "{add_one}");
    assert_eq!(add_one["description"], "adds one");
    assert_eq!(add_one["returnType"]["typeKind"], "INT64");
    // The body reads the restored table, not the source one.
    let events_in = restored("events_in").await;
    assert_eq!(
        events_in["definitionBody"],
        format!("SELECT id FROM restored_{dataset}.events WHERE country = c"),
        "{events_in}"
    );
}
