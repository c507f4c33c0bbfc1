//! The `bq-backup` binary as a user runs it: `backup --request FILE` against the test services,
//! configured only through its environment (the same variables the in-process tests use).

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::faults::SlowBackup;
use crate::helpers::{
    BigQueryFixtures, PROJECT, TestServices, bq_backup, spawn_app_with, stdout_json, unique_dataset,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A dataset with the all-types table, and a request backing it up as PARQUET into `root`.
async fn dataset_and_request(dir: &Path, root: &Path) -> (String, std::path::PathBuf) {
    let dataset = unique_dataset("cli");
    BigQueryFixtures::new()
        .create_all_types_dataset(&dataset)
        .await;
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": {
            "uri": format!("file://{}", root.display()),
            "exportOptions": { "format": "PARQUET" }
        },
        "reason": "cli test"
    });
    let file = dir.join("request.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&request).unwrap()).unwrap();
    (dataset, file)
}

#[tokio::test]
async fn the_cli_backs_up_a_dataset_and_prints_the_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let (dataset, request) = dataset_and_request(dir.path(), &root).await;

    let output = bq_backup(&["backup", "--request", request.to_str().unwrap()], &[]);
    assert!(
        output.status.success(),
        "exit {}: {}",
        output.status,
        text(&output.stderr)
    );
    let report = stdout_json(&output);
    assert_eq!(report["status"], "SUCCEEDED", "{report}");
    let backup_id = report["backupId"].as_str().expect("backupId");
    assert_eq!(report["totals"]["rows"], 3, "{report}");
    assert!(report["totals"]["files"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(
        report["tables"][0]["table"],
        format!("{PROJECT}.{dataset}.all_types")
    );
    assert_eq!(report["tables"][0]["rows"], 3);

    let manifest_uri = report["manifest"].as_str().expect("manifest");
    let manifest_path = manifest_uri
        .strip_prefix("file://")
        .unwrap_or_else(|| panic!("a file:// manifest: {manifest_uri}"));
    assert_eq!(
        Path::new(manifest_path),
        root.join("backups").join(backup_id).join("manifest.json")
    );
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(manifest_path).expect("the manifest exists where the summary says"),
    )
    .unwrap();
    assert_eq!(manifest["backupId"], backup_id);
    assert_eq!(manifest["status"], "COMPLETE");
    assert_eq!(manifest["reason"], "cli test");
    assert_eq!(manifest["totals"]["rows"], 3);
    for file in manifest["tables"][0]["files"].as_array().unwrap() {
        let path = root.join(file["path"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            file["bytes"].as_u64(),
            "{}",
            path.display()
        );
    }
}

#[tokio::test]
async fn the_cli_prints_only_json_on_stdout_at_the_default_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let (_, request) = dataset_and_request(dir.path(), &root).await;
    // Logs go to stderr: `bq-backup backup … | jq` must see the summary and nothing else.
    let output = bq_backup(
        &["backup", "--request", request.to_str().unwrap()],
        &[("BQB_LOG_LEVEL", "info")],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(stdout_json(&output)["status"], "SUCCEEDED");
}

#[tokio::test]
async fn the_cli_dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    let (dataset, request) = dataset_and_request(dir.path(), &root).await;

    let output = bq_backup(
        &[
            "backup",
            "--request",
            request.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let answer = stdout_json(&output);
    assert_eq!(answer["dryRun"], true, "{answer}");
    let plan = &answer["plan"];
    assert!(plan["backupId"].as_str().is_some(), "{answer}");
    assert_eq!(plan["format"], "PARQUET");
    let tables = plan["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "{answer}");
    assert_eq!(tables[0]["table"]["datasetId"], dataset.as_str());
    assert_eq!(tables[0]["table"]["tableId"], "all_types");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "a dry run writes nothing"
    );
}

#[tokio::test]
async fn an_invalid_request_file_exits_non_zero_naming_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({
                "bigQuery": { "projectId": "Not A Project" },
                "backupStorage": { "uri": format!("file://{}", root.display()),
                                   "exportOptions": { "format": "XML" } }
            }),
            vec!["bigQuery.projectId", "backupStorage.exportOptions.format"],
        ),
        (
            json!({ "bigQuery": { "projectId": PROJECT }, "backupStorage": { "uri": "s3://bqb-test/x" },
                    "unexpected": 1 }),
            vec!["unexpected"],
        ),
    ];
    for (i, (body, fields)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&file, body.to_string()).unwrap();
        let output = bq_backup(&["backup", "--request", file.to_str().unwrap()], &[]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "case {i} succeeded: {stderr}");
        for field in fields {
            assert!(
                stderr.contains(field),
                "case {i}: {field} not named: {stderr}"
            );
        }
        assert!(
            output.stdout.is_empty(),
            "case {i}: stdout: {}",
            text(&output.stdout)
        );
    }
    assert!(!root.exists(), "nothing written");

    let output = bq_backup(
        &[
            "backup",
            "--request",
            dir.path().join("missing.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("missing.json"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn the_cli_restores_a_backup_and_prints_the_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let dataset = unique_dataset("clirs");
    BigQueryFixtures::new()
        .create_all_types_dataset_without(&dataset, &["geo"])
        .await;
    let backup_request = dir.path().join("backup.json");
    std::fs::write(
        &backup_request,
        json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
            "backupStorage": { "uri": format!("file://{}", root.display()), "exportOptions": { "format": "AVRO" } }
        })
        .to_string(),
    )
    .unwrap();
    let backup = bq_backup(
        &["backup", "--request", backup_request.to_str().unwrap()],
        &[],
    );
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    let backup_id = stdout_json(&backup)["backupId"]
        .as_str()
        .unwrap()
        .to_string();

    let restore_request = dir.path().join("restore.json");
    std::fs::write(
        &restore_request,
        json!({
            "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
            "restoreStorage": { "uri": format!("file://{}", root.display()) },
            "backupId": "latest"
        })
        .to_string(),
    )
    .unwrap();
    let dry = bq_backup(
        &[
            "restore",
            "--request",
            restore_request.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_eq!(stdout_json(&dry)["plan"]["backupId"], backup_id.as_str());

    let restore = bq_backup(
        &["restore", "--request", restore_request.to_str().unwrap()],
        &[],
    );
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    let summary = stdout_json(&restore);
    assert_eq!(summary["status"], "SUCCEEDED");
    assert_eq!(summary["backupId"], backup_id.as_str());
    assert_eq!(summary["rows"], 3);
    assert_eq!(
        summary["tables"][0]["target"],
        format!("{PROJECT}.restored_{dataset}.all_types")
    );

    // Restoring again refuses the now non-empty table: non-zero exit naming it.
    let again = bq_backup(
        &["restore", "--request", restore_request.to_str().unwrap()],
        &[],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains(&format!("restored_{dataset}.all_types")),
        "{}",
        text(&again.stderr)
    );
}

#[tokio::test]
async fn the_cli_lists_shows_and_verifies_backups() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let (_, request) = dataset_and_request(dir.path(), &root).await;
    let backup = bq_backup(&["backup", "--request", request.to_str().unwrap()], &[]);
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    let id = stdout_json(&backup)["backupId"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("file://{}", root.display());

    let table = bq_backup(&["list", "--uri", &uri, "--output", "table"], &[]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let lines: Vec<String> = text(&table.stdout).lines().map(str::to_string).collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("STATUS")
            && lines[0].contains("CREATED AT"),
        "{lines:?}"
    );
    assert!(
        lines[0].contains("SIZE") && lines[0].contains("TABLES") && lines[0].ends_with("REASON"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&id)
            && lines[1].contains("COMPLETE")
            && lines[1].ends_with("cli test"),
        "{lines:?}"
    );

    let json = bq_backup(&["list", "--uri", &uri, "--output", "json"], &[]);
    assert_eq!(stdout_json(&json)["backups"][0]["backupId"], id.as_str());
    let show = bq_backup(&["show", &id, "--uri", &uri, "--output", "json"], &[]);
    assert_eq!(stdout_json(&show)["tables"][0]["rows"], 3);

    let verify = bq_backup(&["verify", &id, "--uri", &uri], &[]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert_eq!(stdout_json(&verify)["ok"], true);
    let manifest: Value = crate::helpers::manifest_json(&root, &id);
    let file = root.join(manifest["tables"][0]["files"][0]["path"].as_str().unwrap());
    std::fs::write(&file, b"not parquet").unwrap();
    let broken = bq_backup(&["verify", &id, "--uri", &uri], &[]);
    assert!(!broken.status.success(), "a damaged backup fails verify");
    assert_eq!(
        stdout_json(&broken)["findings"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn the_cli_is_confined_only_when_allowed_storage_is_set_and_never_creates_on_read() {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let outside_uri = format!("file://{}", outside.path().display());
    let confined = format!("file://{}", allowed.path().display());

    let refused = bq_backup(
        &["list", "--uri", &outside_uri],
        &[("BQB_ALLOWED_STORAGE", confined.as_str())],
    );
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("--uri") && stderr.contains("is refused"),
        "{stderr}"
    );

    // On a laptop (the setting unset) any local path works.
    let listed = bq_backup(
        &["list", "--uri", &outside_uri, "--output", "json"],
        &[("BQB_ALLOWED_STORAGE", "")],
    );
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(stdout_json(&listed)["backups"], json!([]));

    // A read of a directory that does not exist says so and creates nothing.
    let missing = outside.path().join("typo/in/the/path");
    let missing_uri = format!("file://{}", missing.display());
    let read = bq_backup(
        &["list", "--uri", &missing_uri],
        &[("BQB_ALLOWED_STORAGE", "")],
    );
    assert!(!read.status.success());
    assert!(
        text(&read.stderr).contains("does not exist"),
        "{}",
        text(&read.stderr)
    );
    assert!(!outside.path().join("typo").exists());
}

#[test]
fn no_cli_read_of_a_missing_local_repository_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo/in/the/path");
    let uri = format!("file://{}", missing.display());
    let request = dir.path().join("restore.json");
    std::fs::write(
        &request,
        json!({
            "bigQuery": { "projectId": PROJECT },
            "restoreStorage": { "uri": uri },
            "backupId": "20260101_000000",
        })
        .to_string(),
    )
    .unwrap();
    let id = "20260101_000000";
    for args in [
        vec!["list", "--uri", &uri],
        vec!["show", id, "--uri", &uri],
        vec!["verify", id, "--uri", &uri],
        vec!["delete", id, "--uri", &uri],
        vec!["prune", "--uri", &uri, "--keep-last", "1"],
        vec!["restore", "--request", request.to_str().unwrap()],
        vec![
            "restore",
            "--request",
            request.to_str().unwrap(),
            "--dry-run",
        ],
    ] {
        let output = bq_backup(&args, &[("BQB_ALLOWED_STORAGE", "")]);
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success(),
            "{args:?}: {}",
            text(&output.stdout)
        );
        assert!(stderr.contains("does not exist"), "{args:?}: {stderr}");
        assert!(
            !dir.path().join("typo").exists(),
            "{args:?} created {}",
            missing.display()
        );
    }
}

#[test]
fn the_cli_refuses_a_prune_policy_that_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    for (args, expected) in [
        (vec!["--keep-last", "0"], "--keep-last: must be at least 1"),
        (
            vec!["--keep-daily", "3", "--keep-weekly", "0"],
            "--keep-weekly: must be at least 1",
        ),
        (vec![], "--expired-only"),
    ] {
        let mut all = vec!["prune", "--uri", uri.as_str()];
        all.extend(args.iter().copied());
        let output = bq_backup(&all, &[]);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let expired = bq_backup(&["prune", "--uri", uri.as_str(), "--expired-only"], &[]);
    assert!(expired.status.success(), "{}", text(&expired.stderr));
    assert_eq!(stdout_json(&expired)["deleted"], json!([]));
}

/// `bq-backup backup` runs through the service's engine: a backup of a selection that a server
/// sharing its state store (`BQB_STATE_URI`) is backing up is refused, naming the running job,
/// and the CLI's own job is recorded where that server reports it.
#[tokio::test]
async fn the_cli_honours_the_selection_lock_of_a_running_backup_and_records_its_job() {
    // Every upload waits a second: the server's backup is still running when the CLI starts.
    let slow = SlowBackup::new("clilock").await;
    let (proxies, dataset, root) = (&slow.proxies, &slow.dataset, &slow.root);
    let extra = slow.env();
    let app = spawn_app_with(TestServices::get().settings_with(&extra)).await;
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "AVRO" } },
    });
    let (status, accepted) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 202, "{accepted}");
    let running = accepted["jobId"].as_str().expect("jobId").to_string();

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("request.json");
    std::fs::write(&file, body.to_string()).expect("request file written");
    let refused = backup_in_background(&file, &extra).await;
    assert!(
        !refused.status.success(),
        "the CLI backed up a selection being backed up: {}",
        text(&refused.stdout)
    );
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("already running") && stderr.contains(&running),
        "the refusal names the running job {running}: {stderr}"
    );

    proxies.configure(&proxies.s3, json!({})).await;
    let first = app.wait_for_job(&running).await;
    assert_eq!(first["state"], "SUCCEEDED", "{first}");

    // Once it ended, the CLI backs up the same selection, and the server reports the CLI's job.
    let ran = backup_in_background(&file, &extra).await;
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let result = stdout_json(&ran);
    let job_id = result["jobId"].as_str().expect("the result names its job");
    assert_ne!(result["backupId"], first["backupId"], "{result}");
    let (status, job) = app.get_json(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    assert_eq!(job["trigger"]["source"], "cli", "{job}");
    assert_eq!(job["backupId"], result["backupId"], "{job}");
}

/// `bq-backup backup --request FILE` on a blocking thread, so that a server in this test's
/// runtime keeps serving (and heartbeating) meanwhile.
async fn backup_in_background(file: &Path, extra: &[(&str, &str)]) -> Output {
    let file = file.display().to_string();
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        bq_backup(&["backup", "--request", &file], &extra)
    })
    .await
    .expect("the CLI ran")
}
