//! Restores that hand PARQUET files to BigQuery as they are (`"method": "UPLOAD_FILES"`): a
//! table backed up in several files is loaded file by file, in parallel, into a staging table,
//! then moved into the target by one copy job. Checked end to end against the emulator: the same
//! rows and schema on file:// and s3://; a damaged file among several writes nothing (no target,
//! no staging table, no job into the target); a cancel removes the staging table; WRITE_APPEND
//! appends every row exactly once, also while BigQuery's jobs endpoint fails (fault proxy).

use std::time::Duration;

use bq_backup::domain::TableRef;
use serde_json::{Value, json};

use crate::faults::proxy::Proxies;
use crate::faults::rows_of;
use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, TestServices, manifest_json, spawn_app, spawn_app_with,
    unique_dataset, unique_root,
};

/// Rows of the source table: several files of 1 MiB in PARQUET.
const ROWS: u64 = 200_000;
const TABLE: &str = "multi";
const STAGING_PREFIX: &str = "bqb_staging_";

fn rest(path: &str) -> String {
    format!(
        "{}/bigquery/v2/projects/{PROJECT}/{path}",
        TestServices::get().bigquery_rest
    )
}

async fn get(path: &str) -> Value {
    let resp = reqwest::get(rest(path)).await.expect("bqemulator answers");
    resp.json().await.unwrap_or(Value::Null)
}

/// A dataset with table `multi`: a REQUIRED described column, nested and repeated columns,
/// partitioned by day and clustered, holding [`ROWS`] rows.
pub(crate) async fn multi_file_dataset(prefix: &str) -> String {
    let dataset = unique_dataset(prefix);
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({
            "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": TABLE },
            "description": "several files",
            "schema": { "fields": [
                { "name": "id", "type": "INT64", "mode": "REQUIRED", "description": "the id" },
                { "name": "s", "type": "STRING" },
                { "name": "ts", "type": "TIMESTAMP" },
                { "name": "n", "type": "NUMERIC" },
                { "name": "rec", "type": "RECORD", "fields": [
                    { "name": "a", "type": "INT64" }, { "name": "b", "type": "STRING" } ] },
                { "name": "arr", "type": "INT64", "mode": "REPEATED" }
            ] },
            "timePartitioning": { "type": "DAY", "field": "ts" },
            "clustering": { "fields": ["s"] }
        }),
    )
    .await;
    let insert = format!(
        "INSERT INTO {dataset}.{TABLE} (id, s, ts, n, rec, arr) SELECT x, CONCAT('row ', CAST(x AS STRING)), \
         TIMESTAMP_ADD(TIMESTAMP '2024-01-01 00:00:00 UTC', INTERVAL x SECOND), CAST(x AS NUMERIC) / 100, \
         STRUCT(x AS a, CAST(x * 7 AS STRING) AS b), [x, x + 1] FROM UNNEST(GENERATE_ARRAY(1, {ROWS})) AS x"
    );
    let resp = reqwest::Client::new()
        .post(rest("queries"))
        .json(&json!({ "query": insert, "useLegacySql": false }))
        .send()
        .await
        .expect("bqemulator answers");
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    dataset
}

/// Backs `dataset` up in PARQUET files of 1 MiB; the backup id and its number of files.
pub(crate) async fn backup_in_files(app: &TestApp, dataset: &str, root: &str) -> (String, u64) {
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "PARQUET" } },
        "fileSizeBytes": 1024 * 1024,
        "wait": true,
    });
    let (status, report) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 200, "backup: {report}");
    let files = report["totals"]["files"].as_u64().unwrap_or(0);
    assert!(
        files >= 3,
        "the table is backed up in several files: {report}"
    );
    (report["backupId"].as_str().unwrap().to_string(), files)
}

/// Restores `dataset` into `target` (waiting for it), with `disposition` when given.
async fn restore(
    app: &TestApp,
    root: &str,
    backup_id: &str,
    dataset: &str,
    target: &str,
    disposition: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": backup_id,
        "targetDatasets": { dataset: target },
    });
    if let Some(disposition) = disposition {
        body["restoreStorage"]["importOptions"] = json!({ "writeDisposition": disposition });
    }
    app.post_json("/api/v1/restore?wait=true", &body).await
}

async fn table_names(dataset: &str) -> Vec<String> {
    get(&format!("datasets/{dataset}/tables?maxResults=1000")).await["tables"]
        .as_array()
        .map(|tables| {
            tables
                .iter()
                .filter_map(|t| t["tableReference"]["tableId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn staging_tables(dataset: &str) -> Vec<String> {
    table_names(dataset)
        .await
        .into_iter()
        .filter(|t| t.starts_with(STAGING_PREFIX))
        .collect()
}

/// The kinds (`load`, `copy`) of the jobs whose destination is `table`.
async fn jobs_into(table: &TableRef) -> Vec<String> {
    let jobs = get("jobs?maxResults=100000").await;
    let mut kinds = Vec::new();
    for job in jobs["jobs"].as_array().into_iter().flatten() {
        for kind in ["load", "copy"] {
            let destination = &job["configuration"][kind]["destinationTable"];
            if destination["datasetId"] == table.dataset.as_str()
                && destination["tableId"] == table.table.as_str()
            {
                kinds.push(kind.to_string());
            }
        }
    }
    kinds
}

/// What a restore must recreate of a table besides its rows.
async fn definition(table: &TableRef) -> Value {
    let t = get(&format!(
        "datasets/{}/tables/{}",
        table.dataset, table.table
    ))
    .await;
    json!({
        "schema": t["schema"],
        "timePartitioning": t["timePartitioning"],
        "clustering": t["clustering"],
        "description": t["description"],
    })
}

async fn several_files_restore_identically(scheme: &str) {
    let app = spawn_app().await;
    let dataset = multi_file_dataset(&format!("files_{scheme}")).await;
    let root = unique_root(scheme);
    let (backup_id, files) = backup_in_files(&app, &dataset, &root).await;
    let target_dataset = format!("{dataset}_r");
    let (status, report) = restore(&app, &root, &backup_id, &dataset, &target_dataset, None).await;
    assert_eq!(status, 200, "{report}");
    let table = &report["tables"][0];
    assert_eq!(table["method"], "UPLOAD_FILES", "{report}");
    assert_eq!(table["rows"], ROWS, "{report}");
    assert_eq!(table["verified"], true, "{report}");

    let source = TableRef::new(PROJECT, &dataset, TABLE);
    let target = TableRef::new(PROJECT, &target_dataset, TABLE);
    assert_eq!(definition(&target).await, definition(&source).await);
    let (restored, original) = (rows_of(&target).await, rows_of(&source).await);
    assert_eq!(restored.len() as u64, ROWS);
    assert!(restored == original, "{scheme}: the rows differ");
    // Every file went through the staging table, then one copy into the target.
    assert_eq!(jobs_into(&target).await, ["copy"], "{files} files");
    assert_eq!(staging_tables(&target_dataset).await, Vec::<String>::new());
}

#[tokio::test]
async fn several_parquet_files_restore_identically_from_a_directory() {
    several_files_restore_identically("file").await;
}

#[tokio::test]
async fn several_parquet_files_restore_identically_from_s3() {
    several_files_restore_identically("s3").await;
}

#[tokio::test]
async fn a_damaged_file_among_several_writes_nothing_of_the_table() {
    let app = spawn_app().await;
    let dataset = multi_file_dataset("files_damaged").await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let (backup_id, files) = backup_in_files(&app, &dataset, &root).await;
    // One byte flipped in the middle of a file in the middle: same size, checksum differs.
    let manifest = manifest_json(dir.path(), &backup_id);
    let file = manifest["tables"][0]["files"][files as usize / 2]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let on_disk = dir.path().join(&file);
    let mut bytes = std::fs::read(&on_disk).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&on_disk, bytes).unwrap();

    let target_dataset = format!("{dataset}_d");
    let (status, answer) = restore(&app, &root, &backup_id, &dataset, &target_dataset, None).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errorCode"], "BACKUP_DAMAGED", "{answer}");
    assert!(
        answer["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["field"] == file.as_str())),
        "the file is named in details: {answer}"
    );
    assert!(answer.to_string().contains("SHA-256"), "{answer}");
    let target = TableRef::new(PROJECT, &target_dataset, TABLE);
    assert_eq!(
        table_names(&target_dataset).await,
        Vec::<String>::new(),
        "no target table, no staging table"
    );
    assert_eq!(
        jobs_into(&target).await,
        Vec::<String>::new(),
        "no job wrote into the target"
    );
}

/// Settings of a server that reaches BigQuery through the fault proxy.
fn through_proxy(proxies: &Proxies) -> bq_backup::config::Settings {
    TestServices::get().settings_with(&[("BQB_BIGQUERY_ENDPOINT", proxies.bigquery.as_str())])
}

#[tokio::test]
async fn cancelling_a_restore_removes_its_staging_table() {
    let proxies = Proxies::lock().await;
    let app = spawn_app_with(through_proxy(&proxies)).await;
    let dataset = multi_file_dataset("files_cancel").await;
    let root = unique_root("file");
    let (backup_id, _) = backup_in_files(&app, &dataset, &root).await;
    // Every upload chunk waits a second: the restore is still loading files when cancelled.
    proxies
        .configure(
            &proxies.bigquery,
            json!({ "pDelay": 1.0, "delaySecs": 1.0, "onlyMethods": "PUT" }),
        )
        .await;
    let target_dataset = format!("{dataset}_c");
    let (status, accepted) = app
        .post_json(
            "/api/v1/restore",
            &json!({
                "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
                "restoreStorage": { "uri": root },
                "backupId": backup_id,
                "targetDatasets": { dataset.clone(): target_dataset.clone() },
            }),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["jobId"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while staging_tables(&target_dataset).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no staging table appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, job) = app.delete_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("CANCELLED")),
        "{job}"
    );
    proxies.quiet_all().await;
    assert_eq!(
        table_names(&target_dataset).await,
        Vec::<String>::new(),
        "neither the staging table nor the target is left: {job}"
    );
    let target = TableRef::new(PROJECT, &target_dataset, TABLE);
    assert_eq!(jobs_into(&target).await, Vec::<String>::new(), "{job}");
}

/// The copy's jobs.insert only (the load jobs go through the upload endpoint).
const COPY_INSERT: &str = "^/bigquery/v2/projects/[^/]+/jobs$";

#[tokio::test]
async fn write_append_appends_every_row_exactly_once_while_the_jobs_endpoint_fails() {
    let proxies = Proxies::lock().await;
    let app = spawn_app_with(through_proxy(&proxies)).await;
    let dataset = multi_file_dataset("files_append").await;
    let root = unique_root("s3");
    let (backup_id, _) = backup_in_files(&app, &dataset, &root).await;
    let target_dataset = format!("{dataset}_a");
    let (status, first) = restore(&app, &root, &backup_id, &dataset, &target_dataset, None).await;
    assert_eq!(status, 200, "{first}");
    let source = TableRef::new(PROJECT, &dataset, TABLE);
    let target = TableRef::new(PROJECT, &target_dataset, TABLE);
    let original = rows_of(&source).await;

    // The copy's insert answered 503, or its answer lost after the copy ran: retried under the
    // same job id, which is looked up before inserting again, so it lands once.
    proxies
        .configure(
            &proxies.bigquery,
            json!({ "seed": 7, "p503": 0.4, "pResetAfter": 0.4, "onlyMethods": "POST", "pathRegex": COPY_INSERT }),
        )
        .await;
    let (status, appended) = restore(
        &app,
        &root,
        &backup_id,
        &dataset,
        &target_dataset,
        Some("WRITE_APPEND"),
    )
    .await;
    let faults = proxies.stats(&proxies.bigquery).await;
    proxies.quiet_all().await;
    assert_eq!(status, 200, "{appended}; faults {faults}");
    assert_eq!(
        appended["tables"][0]["method"], "UPLOAD_FILES",
        "{appended}"
    );
    let injected =
        faults["p503"].as_u64().unwrap_or(0) + faults["resetAfter"].as_u64().unwrap_or(0);
    assert!(injected >= 1, "the copy's insert met faults: {faults}");
    let twice: Vec<Vec<String>> = original
        .iter()
        .flat_map(|row| [row.clone(), row.clone()])
        .collect();
    let restored = rows_of(&target).await;
    assert_eq!(restored.len(), twice.len(), "faults {faults}");
    assert!(
        restored == twice,
        "every row exactly twice: faults {faults}"
    );
    assert_eq!(staging_tables(&target_dataset).await, Vec::<String>::new());

    // A copy BigQuery refuses: the table fails, the target keeps what it had, nothing is left.
    proxies
        .configure(
            &proxies.bigquery,
            json!({ "p403": 1.0, "onlyMethods": "POST", "pathRegex": COPY_INSERT }),
        )
        .await;
    let (status, refused) = restore(
        &app,
        &root,
        &backup_id,
        &dataset,
        &target_dataset,
        Some("WRITE_APPEND"),
    )
    .await;
    proxies.quiet_all().await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(rows_of(&target).await.len(), twice.len(), "unchanged");
    assert_eq!(staging_tables(&target_dataset).await, Vec::<String>::new());
}
