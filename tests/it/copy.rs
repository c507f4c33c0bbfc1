//! Copying a backup between repositories (`POST /api/v1/backups/{id}:copy`, `bq-backup copy`,
//! `download`, `upload`) and importing one copied by other means: what arrives verifies and
//! restores equal; what fails — a tampered file, a store that keeps failing, a process killed
//! mid-copy — leaves nothing listed at the target.

use std::path::{Path as FsPath, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::faults::proxy::Proxies;
use crate::faults::{assert_identical, objects_under, restore_into, source_dataset};
use crate::helpers::{
    PROJECT, TestApp, TestServices, bq_backup, bq_backup_command, dataset_of, open_store,
    spawn_app, spawn_app_with, stdout_json, unique_root,
};

/// Backs `dataset` up into `root` (STREAM, so that this service writes every file) and waits.
async fn backup(app: &TestApp, dataset: &str, root: &str, format: &str) -> String {
    let (status, answer) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                "backupStorage": { "uri": root, "exportOptions": { "format": format } },
                "method": "STREAM",
            }),
        )
        .await;
    assert_eq!(status, 200, "backup: {answer}");
    answer["backupId"].as_str().expect("backupId").to_string()
}

async fn copy(app: &TestApp, id: &str, from: &str, body: &Value) -> (u16, Value) {
    app.post_json(&format!("/api/v1/backups/{id}:copy?uri={from}"), body)
        .await
}

/// Copies and waits for the job; its final record.
async fn copy_job(app: &TestApp, id: &str, from: &str, to: &str) -> Value {
    let (status, accepted) = copy(app, id, from, &json!({ "to": to })).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["kind"], "COPY", "{accepted}");
    app.wait_for_job(accepted["jobId"].as_str().expect("jobId"))
        .await
}

async fn verify(app: &TestApp, id: &str, root: &str) -> Value {
    let (status, report) = app
        .post_json(
            &format!("/api/v1/backups/{id}:verify?uri={root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "every file matches at {root}: {report}");
    report
}

async fn listed(app: &TestApp, root: &str) -> Vec<String> {
    let (status, page) = app.get_json(&format!("/api/v1/backups?uri={root}")).await;
    assert_eq!(status, 200, "{page}");
    page["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["backupId"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub(crate) async fn manifest_bytes(root: &str, id: &str) -> bytes::Bytes {
    open_store(root)
        .object_store()
        .get(&Path::from(format!("backups/{id}/manifest.json")))
        .await
        .expect("the manifest is there")
        .bytes()
        .await
        .expect("readable")
}

/// The keys under `backups/{id}/` at `root`, relative to it, sorted.
async fn keys(root: &str, id: &str) -> Vec<String> {
    let mut keys: Vec<String> = objects_under(root, &format!("backups/{id}"))
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    keys.sort();
    keys
}

/// The manifest's key and its files' keys: what a complete backup holds and nothing else.
fn expected_keys(manifest: &[u8], id: &str) -> Vec<String> {
    let manifest: Value = serde_json::from_slice(manifest).expect("JSON");
    let mut keys: Vec<String> = manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
        .map(|f| f["path"].as_str().expect("path").to_string())
        .chain([format!("backups/{id}/manifest.json")])
        .collect();
    keys.sort();
    keys
}

fn file_root(dir: &FsPath) -> String {
    format!("file://{}", dir.display())
}

#[tokio::test]
async fn a_backup_copied_gs_to_s3_to_file_verifies_at_each_step_and_restores_equal() {
    let app = spawn_app().await;
    // Three tables, one of them about 9 MB: its file goes through a multipart upload.
    let dataset = source_dataset("copy_chain").await;
    let (gs, s3) = (unique_root("gs"), unique_root("s3"));
    let dir = tempfile::tempdir().unwrap();
    let file = file_root(dir.path());
    let id = backup(&app, &dataset, &gs, "AVRO").await;
    let original = manifest_bytes(&gs, &id).await;

    let to_s3 = copy_job(&app, &id, &gs, &s3).await;
    assert_eq!(to_s3["state"], "SUCCEEDED", "{to_s3}");
    assert_eq!(to_s3["result"]["backupId"], id.as_str(), "{to_s3}");
    assert!(
        to_s3["result"]["bytes"].as_u64() > Some(8_000_000),
        "{to_s3}"
    );
    verify(&app, &id, &s3).await;
    assert_eq!(listed(&app, &s3).await, [id.as_str()]);

    let to_file = copy_job(&app, &id, &s3, &file).await;
    assert_eq!(to_file["state"], "SUCCEEDED", "{to_file}");
    verify(&app, &id, &file).await;
    assert_eq!(listed(&app, &file).await, [id.as_str()]);

    // The same backup everywhere: the manifest byte for byte, and nothing but its files.
    for root in [&s3, &file] {
        assert_eq!(manifest_bytes(root, &id).await, original, "{root}");
        assert_eq!(
            keys(root, &id).await,
            expected_keys(&original, &id),
            "{root}"
        );
    }
    let target = format!("{dataset}_copied");
    let (status, restored) = restore_into(&app, &file, &id, &dataset, &target).await;
    assert_eq!(status, 200, "{restored}");
    assert_identical(&dataset, &target, "restored from the copy of a copy").await;
}

#[tokio::test]
async fn a_copy_of_a_tampered_backup_fails_naming_the_file_and_leaves_nothing_at_the_target() {
    let app = spawn_app().await;
    let dataset = dataset_of(3).await;
    let dir = tempfile::tempdir().unwrap();
    let source = file_root(dir.path());
    let id = backup(&app, &dataset, &source, "AVRO").await;
    let manifest: Value = serde_json::from_slice(&manifest_bytes(&source, &id).await).unwrap();
    let victim = manifest["tables"][1]["files"][0]["path"]
        .as_str()
        .expect("a file")
        .to_string();
    // The same size, one bit changed: only the checksum can tell.
    let on_disk = dir.path().join(&victim);
    let mut body = std::fs::read(&on_disk).unwrap();
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    std::fs::write(&on_disk, body).unwrap();

    let target = unique_root("s3");
    let job = copy_job(&app, &id, &source, &target).await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["error"]["errorCode"], "BACKUP_DAMAGED", "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&victim), "the error names the file: {job}");
    assert!(message.contains("SHA-256"), "{job}");
    assert!(listed(&app, &target).await.is_empty());
    let left = objects_under(&target, "backups").await;
    assert!(left.is_empty(), "nothing is left at the target: {left:?}");
}

#[tokio::test]
async fn a_copy_is_refused_for_an_unknown_backup_a_bad_target_and_an_id_the_target_holds() {
    let app = spawn_app().await;
    let dataset = dataset_of(1).await;
    let dir = tempfile::tempdir().unwrap();
    let source = file_root(dir.path());
    let id = backup(&app, &dataset, &source, "AVRO").await;
    let target = unique_root("s3");

    let field_of = |answer: &Value| -> Vec<String> {
        answer["details"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["field"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (status, answer) = copy(&app, "20200101_000000", &source, &json!({ "to": target })).await;
    assert_eq!(status, 404, "an unknown backup: {answer}");
    for (body, field) in [
        (json!({ "to": "ftp://somewhere/x" }), "to"),
        (json!({ "to": "s3://UPPER/x" }), "to"),
        (json!({}), "to"),
        (json!({ "to": source }), "to"),
        (json!({ "to": format!("{source}/") }), "to"),
        (
            json!({ "to": target, "encryption": { "recipients": ["age1x"] } }),
            "encryption.recipients[0]",
        ),
        (json!({ "to": target, "overwrite": true }), "overwrite"),
    ] {
        let (status, answer) = copy(&app, &id, &source, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["errorCode"], "VALIDATION_ERROR", "{answer}");
        assert!(
            field_of(&answer).contains(&field.to_string()),
            "{body}: names `{field}`: {answer}"
        );
    }
    let (status, answer) = copy(&app, "not-an-id", &source, &json!({ "to": target })).await;
    assert_eq!(status, 400, "{answer}");
    assert!(field_of(&answer).contains(&"id".to_string()), "{answer}");

    let (status, done) = app
        .post_json(
            &format!("/api/v1/backups/{id}:copy?uri={source}&wait=true"),
            &json!({ "to": target }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let before = manifest_bytes(&target, &id).await;
    let (status, answer) = copy(&app, &id, &source, &json!({ "to": target })).await;
    assert_eq!(status, 409, "the target holds the id: {answer}");
    assert_eq!(answer["errorCode"], "RESOURCE_CONFLICT", "{answer}");
    assert_eq!(
        manifest_bytes(&target, &id).await,
        before,
        "never overwritten"
    );
    let (_, jobs) = app.get_json("/api/v1/jobs?kind=COPY").await;
    assert!(
        jobs["jobs"].as_array().is_some_and(|j| !j.is_empty()),
        "{jobs}"
    );
}

#[tokio::test]
async fn a_copy_whose_target_keeps_failing_leaves_nothing_listed_there() {
    let proxies = Proxies::lock().await;
    let dataset = dataset_of(3).await;
    let dir = tempfile::tempdir().unwrap();
    let source = file_root(dir.path());
    let app = spawn_app_with(
        TestServices::get().settings_with(&[("BQB_S3_ENDPOINT", proxies.s3.as_str())]),
    )
    .await;
    let id = backup(&app, &dataset, &source, "AVRO").await;
    // Every PUT of one table's file is refused beyond the client's retries; the others land.
    proxies
        .configure(
            &proxies.s3,
            json!({ "p503": 1.0, "onlyMethods": "PUT", "pathRegex": "/t01/" }),
        )
        .await;
    let target = unique_root("s3");
    let job = copy_job(&app, &id, &source, &target).await;
    let stats = proxies.stats(&proxies.s3).await;
    proxies.quiet_all().await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        ["UPSTREAM_UNAVAILABLE", "UPSTREAM_ERROR"]
            .contains(&job["error"]["errorCode"].as_str().unwrap_or_default()),
        "{job}"
    );
    assert!(stats["p503"].as_u64() > Some(1), "{stats}");
    assert!(listed(&app, &target).await.is_empty());
    let left = objects_under(&target, "backups").await;
    assert!(
        left.is_empty(),
        "the files that landed were removed: {left:?}"
    );
}

#[tokio::test]
async fn a_cancelled_copy_removes_what_it_wrote_at_the_target() {
    let proxies = Proxies::lock().await;
    let dataset = dataset_of(6).await;
    let dir = tempfile::tempdir().unwrap();
    let source = file_root(dir.path());
    let app = spawn_app_with(
        TestServices::get().settings_with(&[("BQB_S3_ENDPOINT", proxies.s3.as_str())]),
    )
    .await;
    let id = backup(&app, &dataset, &source, "AVRO").await;
    // Every write through the proxy waits a second: the copy is still writing when cancelled.
    proxies
        .configure(
            &proxies.s3,
            json!({ "pDelay": 1.0, "delaySecs": 1.0, "onlyMethods": "PUT,POST" }),
        )
        .await;
    let target = unique_root("s3");
    let (status, accepted) = copy(&app, &id, &source, &json!({ "to": target })).await;
    assert_eq!(status, 202, "{accepted}");
    let job_id = accepted["jobId"].as_str().expect("jobId").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !keys(&target, &id).await.iter().any(|k| k.contains("/t0")) {
        assert!(Instant::now() < deadline, "the copy wrote no file");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, cancelled) = app.delete_json(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "CANCELLED", "{cancelled}");
    proxies.quiet_all().await;
    assert!(listed(&app, &target).await.is_empty());
    let left = objects_under(&target, "backups").await;
    assert!(left.is_empty(), "what it wrote is gone: {left:?}");
}

#[tokio::test]
async fn a_copy_killed_mid_run_leaves_nothing_listed_and_is_cleaned_like_a_killed_backup() {
    let proxies = Proxies::lock().await;
    let app = spawn_app().await;
    let dataset = dataset_of(6).await;
    let dir = tempfile::tempdir().unwrap();
    let source = file_root(dir.path());
    let id = backup(&app, &dataset, &source, "AVRO").await;
    let target = unique_root("s3");
    // Every write through the proxy waits a second: the copy is still writing when killed.
    proxies
        .configure(
            &proxies.s3,
            json!({ "pDelay": 1.0, "delaySecs": 1.0, "onlyMethods": "PUT,POST" }),
        )
        .await;
    let state = tempfile::tempdir().unwrap();
    let state_uri = file_root(state.path());
    let mut command = bq_backup_command(TestServices::get().env_with(&[
        ("BQB_S3_ENDPOINT", proxies.s3.as_str()),
        ("BQB_STATE_URI", state_uri.as_str()),
    ]));
    command
        .args(["copy", &id, "--from", &source, "--to", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("bq-backup copy starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = keys(&target, &id).await;
        if written.iter().any(|k| k.contains("/t0")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the copy wrote no file: {written:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Child::kill sends SIGKILL: no cleanup runs.
    child.kill().expect("killed");
    let _ = child.wait();
    proxies.quiet_all().await;
    let left = keys(&target, &id).await;
    assert!(
        left.iter().any(|k| k.contains("/_claim/")),
        "the killed copy held its claim: {left:?}"
    );
    assert!(
        !left.iter().any(|k| k.ends_with("manifest.json")),
        "{left:?}"
    );
    assert!(listed(&app, &target).await.is_empty(), "never listed");

    // As for a killed backup: once its claim is stale (5 heartbeats of 1 s), deleting the id
    // removes what it left, and the same copy then succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let deleted = loop {
        let (status, report) = app
            .delete_json(&format!("/api/v1/backups/{id}?uri={target}"))
            .await;
        if status == 200 {
            break report;
        }
        assert_eq!(status, 409, "live until stale: {report}");
        assert!(Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(deleted["incomplete"], true, "{deleted}");
    assert!(keys(&target, &id).await.is_empty());
    let again = copy_job(&app, &id, &source, &target).await;
    assert_eq!(again["state"], "SUCCEEDED", "{again}");
    verify(&app, &id, &target).await;
    let manifest = manifest_bytes(&target, &id).await;
    assert_eq!(keys(&target, &id).await, expected_keys(&manifest, &id));
}

#[tokio::test]
async fn download_and_upload_round_trip_through_a_local_directory() {
    let app = spawn_app().await;
    let dataset = dataset_of(2).await;
    let source = unique_root("s3");
    let id = backup(&app, &dataset, &source, "PARQUET").await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("laptop");
    let local_text = local.to_str().unwrap();

    let output = bq_backup(
        &["download", &id, "--uri", &source, "--to", local_text],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = stdout_json(&output);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    assert_eq!(report["alreadyPresent"], false, "{report}");
    let original = manifest_bytes(&source, &id).await;
    assert_eq!(
        std::fs::read(local.join(format!("backups/{id}/manifest.json"))).unwrap(),
        original.to_vec()
    );
    for key in expected_keys(&original, &id) {
        assert!(local.join(&key).is_file(), "{key}");
    }
    // Again: a finished download is left as it is.
    let output = bq_backup(
        &["download", &id, "--uri", &source, "--to", local_text],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_json(&output)["alreadyPresent"], true);

    let target = unique_root("s3");
    let output = bq_backup(&["upload", local_text, "--uri", &target], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_json(&output)["status"], "SUCCEEDED");
    verify(&app, &id, &target).await;
    assert_eq!(manifest_bytes(&target, &id).await, original);
    // A backup's own directory is an upload's DIR too; the id exists there now: refused.
    let own = local.join(format!("backups/{id}"));
    let output = bq_backup(&["upload", own.to_str().unwrap(), "--uri", &target], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[tokio::test]
async fn download_refuses_a_directory_holding_something_else_and_upload_checks_local_files() {
    let app = spawn_app().await;
    let dataset = dataset_of(2).await;
    let source = unique_root("s3");
    let id = backup(&app, &dataset, &source, "AVRO").await;
    let dir = tempfile::tempdir().unwrap();

    // Something else in the backup's directory: refused, left as it is.
    let busy = dir.path().join("busy");
    let stray = busy.join(format!("backups/{id}/notes.txt"));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, "mine").unwrap();
    let output = bq_backup(
        &[
            "download",
            &id,
            "--uri",
            &source,
            "--to",
            busy.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&stray).unwrap(), "mine");

    // A local file that lost its end: the upload fails before writing anything.
    let local = dir.path().join("local");
    let output = bq_backup(
        &[
            "download",
            &id,
            "--uri",
            &source,
            "--to",
            local.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = manifest_bytes(&source, &id).await;
    let victim = expected_keys(&manifest, &id)
        .into_iter()
        .find(|k| !k.ends_with("manifest.json"))
        .unwrap();
    let on_disk: PathBuf = local.join(&victim);
    let body = std::fs::read(&on_disk).unwrap();
    std::fs::write(&on_disk, &body[..body.len() - 1]).unwrap();
    let target = unique_root("s3");
    let output = bq_backup(&["upload", local.to_str().unwrap(), "--uri", &target], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&victim), "names the file: {stderr}");
    assert!(objects_under(&target, "backups").await.is_empty());

    // Not a backup's directory at all.
    let output = bq_backup(
        &["upload", dir.path().to_str().unwrap(), "--uri", &target],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds no complete backup"), "{stderr}");
}

/// Copies every file under `from` to `to`, as `cp -r` would.
fn copy_tree(from: &FsPath, to: &FsPath) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_backup_copied_by_other_means_is_listed_once_its_manifest_is_there_and_verifies() {
    let app = spawn_app().await;
    let dataset = dataset_of(2).await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let id = backup(&app, &dataset, &file_root(&source), "CSV").await;
    let backup_dir = format!("backups/{id}");

    // A plain recursive copy of the backup's directory, manifest last, into another repository.
    let imported = dir.path().join("imported");
    let staged = imported.join("staging");
    copy_tree(&source.join(&backup_dir), &staged);
    let manifest = std::fs::read(staged.join("manifest.json")).unwrap();
    std::fs::remove_file(staged.join("manifest.json")).unwrap();
    std::fs::create_dir_all(imported.join("backups")).unwrap();
    std::fs::rename(&staged, imported.join(&backup_dir)).unwrap();
    let root = file_root(&imported);
    assert!(
        listed(&app, &root).await.is_empty(),
        "not before its manifest"
    );
    std::fs::write(imported.join(&backup_dir).join("manifest.json"), &manifest).unwrap();
    assert_eq!(listed(&app, &root).await, [id.as_str()]);
    verify(&app, &id, &root).await;

    // Object by object into a bucket (as `aws s3 sync` would), checked with the CLI.
    let bucket = unique_root("s3");
    let store = open_store(&bucket);
    let mut keys: Vec<String> = expected_keys(&manifest, &id);
    // The manifest last.
    keys.sort_by_key(|k| k.ends_with("manifest.json"));
    for key in keys {
        let body = std::fs::read(source.join(&key)).unwrap();
        store
            .object_store()
            .put(&Path::parse(&key).unwrap(), body.into())
            .await
            .unwrap();
    }
    let output = bq_backup(&["list", "--uri", &bucket, "--output", "json"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_json(&output)["backups"][0]["backupId"], id.as_str());
    let output = bq_backup(&["verify", &id, "--uri", &bucket], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_json(&output)["ok"], true);
}
