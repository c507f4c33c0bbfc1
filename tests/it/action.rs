//! `scripts/action.sh` against a live server: posts a request, follows its job to the end,
//! prints the final job; exits non-zero (with the JSON error on stderr) when the service refuses.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{BigQueryFixtures, PROJECT, TestApp, spawn_app, unique_dataset, unique_root};

fn action(app: &TestApp, kind: &str, request: &Value) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/action.sh"))
        .arg(kind)
        .arg(&file)
        .arg(&app.address)
        .env("ACTION_POLL_SECS", "0.2")
        .env_remove("ACTION_TOKEN")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_follows_a_backup_and_a_restore_to_their_end() {
    let app = spawn_app().await;
    let dataset = unique_dataset("act");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "t" },
                "schema": { "fields": [{ "name": "id", "type": "INT64" }] } }),
    )
    .await;
    f.insert_rows(&dataset, "t", (0..5).map(|i| json!({ "id": i })).collect())
        .await;
    let root = unique_root("file");
    let backup = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root }
    });
    // The script runs blocking; the server lives on this runtime, so run it on a blocking thread.
    let (code, job, stderr) = tokio::task::block_in_place(|| action(&app, "backup", &backup));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["totals"]["rows"], 5, "{job}");

    let restore = json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": { "uri": root }, "backupId": job["backupId"], "datasetPrefix": "act_"
    });
    let (code, job, stderr) = tokio::task::block_in_place(|| action(&app, "restore", &restore));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        (job["kind"].as_str(), job["state"].as_str()),
        (Some("RESTORE"), Some("SUCCEEDED")),
        "{job}"
    );

    // Refused at once (no such dataset): the JSON error is printed and the exit code says so.
    let missing = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": "act_missing_ds" }] },
        "backupStorage": { "uri": unique_root("file") }
    });
    let (code, _, stderr) = tokio::task::block_in_place(|| action(&app, "backup", &missing));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("HTTP 404 RESOURCE_NOT_FOUND"), "{stderr}");
}
