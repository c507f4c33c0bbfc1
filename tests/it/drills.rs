//! Restore drills end to end on bqemulator: a drill restores a real backup into scratch
//! datasets, compares every table (rows and content digest) with the backup, removes the scratch
//! datasets and records the result beside the backup, where the catalog shows it and the
//! metrics count it; a drill of a backup with a tampered file fails, says which file, and is
//! recorded as failed, its scratch datasets removed all the same.

use bq_backup::domain::DatasetRef;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, bigquery_client, edited, names_field, spawn_app,
    unique_dataset,
};

/// `events` (partitioned by day, with a repeated column) and `plain`.
async fn dataset() -> String {
    let dataset = unique_dataset("drill");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "events" },
                "timePartitioning": { "type": "DAY", "field": "ts" },
                "schema": { "fields": [
                    { "name": "id", "type": "INTEGER", "mode": "REQUIRED" },
                    { "name": "ts", "type": "TIMESTAMP" },
                    { "name": "name", "type": "STRING" },
                    { "name": "tags", "type": "STRING", "mode": "REPEATED" }
                ] } }),
    )
    .await;
    let rows = (0..30)
        .map(|i| {
            json!({ "id": i, "ts": format!("2026-11-{:02}T10:00:00Z", 20 + i % 3), "name": format!("event {i}"), "tags": [format!("t{}", i % 4)] })
        })
        .collect();
    f.insert_rows(&dataset, "events", rows).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "plain" },
                "schema": { "fields": [{ "name": "id", "type": "INTEGER" }, { "name": "amount", "type": "FLOAT" }] } }),
    )
    .await;
    f.insert_rows(
        &dataset,
        "plain",
        (0..5)
            .map(|i| json!({ "id": i, "amount": f64::from(i) * 1.5 }))
            .collect(),
    )
    .await;
    dataset
}

async fn backup(app: &TestApp, dataset: &str, root: &str, format: &str) -> String {
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": format } }
    });
    let (status, report) = app.post_json("/api/v1/backup?wait=true", &body).await;
    assert_eq!(status, 200, "backup: {report}");
    report["backupId"].as_str().unwrap().to_string()
}

fn drill(root: &str, backup_id: &str, dataset: &str) -> Value {
    json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": backup_id,
        "drill": true
    })
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The scratch dataset of a drill's table line (`project.dataset.table`) no longer exists.
async fn assert_scratch_removed(table: &Value) {
    let scratch = table["scratch"].as_str().expect("a scratch table");
    let dataset = scratch.split('.').nth(1).unwrap();
    assert!(dataset.starts_with("bqb_drill_"), "{scratch}");
    let found = bigquery_client()
        .await
        .find_dataset(&DatasetRef::new(PROJECT, dataset))
        .await
        .unwrap();
    assert!(
        found.is_none(),
        "the scratch dataset {dataset} is still there"
    );
}

async fn a_drill_passes_and_is_recorded(format: &str) {
    let app = spawn_app().await;
    let dataset = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &dataset, &root, format).await;

    let (status, record) = app
        .post_json("/api/v1/restore?wait=true", &drill(&root, &id, &dataset))
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["passed"], true, "{record}");
    assert_eq!(record["backupId"], id.as_str(), "{record}");
    assert_eq!(record["rows"], 35, "{record}");
    assert!(record["restoreMs"].as_u64().unwrap() > 0, "{record}");
    assert!(record["rowsPerSecond"].as_f64().unwrap() > 0.0, "{record}");
    let tables = record["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{record}");
    for table in tables {
        assert_eq!(table["passed"], true, "{record}");
        assert_eq!(table["expectedRows"], table["restoredRows"], "{record}");
        assert_eq!(table["expectedDigest"], table["restoredDigest"], "{record}");
        assert_scratch_removed(table).await;
    }
    // Beside the backup, shown by the catalog.
    let drills = std::fs::read_dir(dir.path().join(format!("backups/{id}/drills")))
        .unwrap()
        .count();
    assert_eq!(drills, 1);
    let (status, shown) = app
        .get_json(&format!("/api/v1/backups/{id}?uri={root}"))
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["lastDrill"]["passed"], true, "{shown}");
    assert_eq!(shown["drills"][0]["tables"], record["tables"], "{shown}");
    let (status, listed) = app.get_json(&format!("/api/v1/backups?uri={root}")).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["backups"][0]["lastDrill"]["passed"], true,
        "{listed}"
    );
    // And counted, with the time of the last success per repository for alerting.
    let scraped = metrics(&app).await;
    assert!(
        scraped.contains(&format!(
            "bqbackup_drills_total{{repository=\"{root}\",result=\"passed\"}} 1"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "bqbackup_drill_last_success_timestamp_seconds{{repository=\"{root}\"}}"
        )),
        "{scraped}"
    );
}

#[tokio::test]
async fn a_drill_of_a_parquet_backup_passes_and_is_recorded_beside_it() {
    a_drill_passes_and_is_recorded("PARQUET").await;
}

#[tokio::test]
async fn a_drill_of_an_avro_backup_passes_and_is_recorded_beside_it() {
    a_drill_passes_and_is_recorded("AVRO").await;
}

#[tokio::test]
async fn a_drill_of_a_tampered_backup_fails_names_the_file_and_is_recorded_as_failed() {
    let app = spawn_app().await;
    let dataset = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &dataset, &root, "AVRO").await;
    let manifest = crate::helpers::manifest_json(dir.path(), &id);
    let file = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"]["tableId"] == "plain")
        .map(|t| t["files"][0]["path"].as_str().unwrap().to_string())
        .unwrap();
    let path = dir.path().join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    let (status, failed) = app
        .post_json("/api/v1/restore?wait=true", &drill(&root, &id, &dataset))
        .await;
    assert_eq!(status, 422, "{failed}");
    assert_eq!(failed["errorCode"], "BACKUP_DAMAGED", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("restore drill"),
        "{failed}"
    );
    assert!(
        failed.to_string().contains(&file),
        "the file is named: {failed}"
    );

    let (_, shown) = app
        .get_json(&format!("/api/v1/backups/{id}?uri={root}"))
        .await;
    assert_eq!(shown["lastDrill"]["passed"], false, "{shown}");
    let recorded = &shown["drills"][0];
    assert!(
        recorded["problem"].as_str().unwrap().contains(&file),
        "{shown}"
    );
    // No scratch dataset of the drill is left behind.
    let datasets = bigquery_client()
        .await
        .list_datasets(PROJECT)
        .await
        .unwrap();
    let left: Vec<String> = datasets
        .iter()
        .map(|d| d.dataset.dataset.clone())
        .filter(|d| d.starts_with("bqb_drill_") && d.ends_with(&dataset))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let scraped = metrics(&app).await;
    assert!(
        scraped.contains(&format!(
            "bqbackup_drills_total{{repository=\"{root}\",result=\"failed\"}} 1"
        )),
        "{scraped}"
    );
}

#[tokio::test]
async fn a_drill_names_its_own_targets_and_refuses_fields_that_would_name_them() {
    let app = spawn_app().await;
    let root = "file:///tmp/bqb-drill-unused";
    for (edit, field) in [
        (json!({ "datasetPrefix": "x_" }), "datasetPrefix"),
        (json!({ "targetDatasets": { "a": "b" } }), "targetDatasets"),
        (json!({ "shards": 2 }), "shards"),
        (
            json!({ "restoreStorage": { "uri": root, "importOptions": { "writeDisposition": "WRITE_TRUNCATE" } } }),
            "restoreStorage.importOptions.writeDisposition",
        ),
    ] {
        let body = edited(&drill(root, "20260101_000000", "a"), &edit);
        let (status, answer) = app.post_json("/api/v1/restore", &body).await;
        assert_eq!(status, 400, "{edit}: {answer}");
        assert!(names_field(&answer, field), "{field} in {answer}");
    }
}

/// A drill in the schedule file (a restore schedule whose request says `"drill": true`) runs on
/// its ticks and leaves its passing record beside the backup.
#[tokio::test]
async fn a_scheduled_drill_runs_and_records_its_result() {
    let dataset = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().join("repo").display());
    let id = {
        let app = spawn_app().await;
        backup(&app, &dataset, &root, "PARQUET").await
    };
    let request = drill(&root, "latest", &dataset);
    let file = dir.path().join("schedules.toml");
    std::fs::write(
        &file,
        format!(
            "[[schedule]]\nname = \"drill\"\ncron = \"*/5 * * * * *\"\nkind = \"restore\"\nrequest = '''{request}'''\n"
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let app = crate::helpers::spawn_app_with(
        crate::helpers::TestServices::get().settings_with(&[("BQB_SCHEDULE_FILE", file.as_str())]),
    )
    .await;
    let drills = dir.path().join(format!("repo/backups/{id}/drills"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let record: Value = loop {
        let first = std::fs::read_dir(&drills)
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read(e.path()).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if let Some(record) = first {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "no drill ran");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(record["passed"], true, "{record}");
    assert_eq!(record["backupId"], id.as_str(), "{record}");
    assert_eq!(record["rows"], 35, "{record}");
    drop(app);
}
