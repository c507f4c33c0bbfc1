//! Sharded backups: planned by the service (`"shards": N`), run by N `bq-backup worker`
//! processes, committed by whichever finishes last. The manifest and data equal a backup of the
//! same snapshot by one process; a killed worker leaves no manifest until its shard is run again;
//! a worker never touches another shard's files.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::faults::{SlowBackup, assert_identical, objects_under, restore_into, source_dataset};
use crate::helpers::{
    PROJECT, TestApp, TestServices, bq_backup_command, open_store, spawn_app, unique_root,
};

/// A `bq-backup worker` for shard `shard` of `shards`, with `extra` variables.
fn worker(
    root: &str,
    id: &str,
    shard: u32,
    shards: u32,
    extra: &[(&str, &str)],
) -> std::process::Command {
    let mut command = bq_backup_command(TestServices::get().env_with(extra));
    command.args([
        "worker",
        "--repository",
        root,
        "--backup-id",
        id,
        "--shard",
        &shard.to_string(),
        "--shards",
        &shards.to_string(),
    ]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

fn run(mut command: std::process::Command) -> Output {
    command.output().expect("bq-backup runs")
}

/// The JSON a worker printed; panics with its stderr when it failed.
fn answer(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "the worker failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the worker prints JSON")
}

/// A backup request for every table of `dataset` to `root` in `format`, run as `shards` shards.
fn sharded_request(dataset: &str, root: &str, format: &str, shards: u32) -> Value {
    json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": format } },
        "shards": shards,
    })
}

/// Starts a sharded backup of `dataset` to `root` at `as_of`: the job's id and the backup's.
async fn plan_sharded(
    app: &TestApp,
    dataset: &str,
    root: &str,
    shards: u32,
    as_of: &str,
) -> (String, String) {
    let mut request = sharded_request(dataset, root, "PARQUET", shards);
    request["asOf"] = json!(as_of);
    let (status, accepted) = app.post_json("/api/v1/backup", &request).await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["jobId"].as_str().expect("jobId").to_string();
    let id = accepted["backupId"].as_str().expect("backupId").to_string();
    // The job writes the plan before it waits for the shards.
    let plan = format!("backups/{id}/plan.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exists(root, &plan).await {
        let (_, record) = app.get_json(&format!("/api/v1/jobs/{job}")).await;
        assert_ne!(record["state"], "FAILED", "{record}");
        assert!(Instant::now() < deadline, "no plan after 60 s: {record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (job, id)
}

async fn exists(root: &str, key: &str) -> bool {
    crate::faults::exists(root, key).await
}

async fn manifest(root: &str, id: &str) -> Value {
    let bytes = open_store(root)
        .object_store()
        .get(&Path::from(format!("backups/{id}/manifest.json")))
        .await
        .expect("a manifest")
        .bytes()
        .await
        .expect("readable");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A manifest's tables without what differs between two backups of one snapshot: how the rows
/// were cut into files (their names, sizes and checksums).
fn tables_of(manifest: &Value) -> Vec<Value> {
    manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            let mut t = t.clone();
            let files = t["files"].as_array().map_or(0, Vec::len);
            t["files"] = json!(files > 0);
            t["bytes"] = json!(t["bytes"].as_u64().is_some_and(|b| b > 0));
            t
        })
        .collect()
}

fn now_minus_seconds(seconds: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_write_the_backup_one_process_writes_of_the_same_snapshot() {
    let app = spawn_app().await;
    let dataset = source_dataset("shards").await;
    let (sharded_root, single_root) = (unique_root("s3"), unique_root("file"));
    let as_of = now_minus_seconds(1);
    let (job, id) = plan_sharded(&app, &dataset, &sharded_root, 3, &as_of).await;

    // Shards 0 and 1, at once: no manifest while shard 2 has not reported, and the backup is not
    // listed.
    let running: Vec<_> = [0, 1]
        .map(|shard| {
            worker(&sharded_root, &id, shard, 3, &[])
                .spawn()
                .expect("starts")
        })
        .into_iter()
        .collect();
    for child in running {
        let done = answer(&child.wait_with_output().expect("the worker ends"));
        assert_eq!(done["ran"], true, "{done}");
        assert_eq!(done["commit"]["status"], "WAITING", "{done}");
        assert!(
            done["commit"]["missing"]
                .as_array()
                .expect("missing")
                .contains(&json!(2)),
            "{done}"
        );
    }
    assert!(!exists(&sharded_root, &format!("backups/{id}/manifest.json")).await);
    let (status, listed) = app
        .get_json(&format!("/api/v1/backups?uri={sharded_root}"))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.to_string().contains(&id), "listed early: {listed}");
    let (_, record) = app.get_json(&format!("/api/v1/jobs/{job}")).await;
    assert_eq!(record["state"], "RUNNING", "{record}");

    // The last shard commits (or the job does, if it looks first: one conditional put wins).
    let last = answer(&run(worker(&sharded_root, &id, 2, 3, &[])));
    assert!(
        ["WRITTEN", "COMMITTED"].contains(&last["commit"]["status"].as_str().unwrap_or("")),
        "{last}"
    );
    let record = app.wait_for_job(&job).await;
    assert_eq!(record["state"], "SUCCEEDED", "{record}");
    assert_eq!(record["shards"]["reported"], 3, "{record}");
    // A worker run again after the commit changes nothing.
    let again = answer(&run(worker(&sharded_root, &id, 1, 3, &[])));
    assert_eq!(
        (&again["ran"], &again["commit"]["status"]),
        (&json!(false), &json!("COMMITTED")),
        "{again}"
    );

    // The same snapshot by one process.
    let (status, single) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                "backupStorage": { "uri": single_root, "exportOptions": { "format": "PARQUET" } },
                "asOf": as_of,
            }),
        )
        .await;
    assert_eq!(status, 200, "{single}");
    assert_eq!(single["backupId"], json!(id), "one snapshot, one id");
    let (sharded, single) = (
        manifest(&sharded_root, &id).await,
        manifest(&single_root, &id).await,
    );
    let (sharded_tables, single_tables) = (tables_of(&sharded), tables_of(&single));
    assert!(
        sharded_tables == single_tables,
        "the manifests' tables differ:\nsharded: {}\nsingle:  {}",
        serde_json::to_string(&sharded_tables).unwrap_or_default(),
        serde_json::to_string(&single_tables).unwrap_or_default()
    );
    assert_eq!(sharded["totals"]["rows"], single["totals"]["rows"]);
    assert_eq!(sharded["snapshotTime"], single["snapshotTime"]);
    // Every file is one a shard wrote, and the big table was spread over several shards.
    let files: Vec<String> = sharded["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    assert!(files.iter().all(|f| f.contains("/shard-0000")), "{files:?}");

    let (status, report) = app
        .post_json(
            &format!("/api/v1/backups/{id}:verify?uri={sharded_root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
    let target = format!("{dataset}_sharded");
    let (status, restored) = restore_into(&app, &sharded_root, &id, &dataset, &target).await;
    assert_eq!(status, 200, "{restored}");
    assert_identical(&dataset, &target, "sharded backup restored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_leaves_no_manifest_and_its_rerun_completes_the_backup() {
    let slow = SlowBackup::new("shard_kill").await;
    let app = spawn_app().await;
    let root = slow.root.clone();
    let (job, id) = plan_sharded(&app, &slow.dataset, &root, 3, &now_minus_seconds(1)).await;

    // Shard 2 writes through the S3 proxy, where every upload waits a second: it is killed as
    // soon as its claim is in the store, so its files are at most on their way and its report,
    // which can only follow them, is not sent yet.
    let mut killed = worker(
        &root,
        &id,
        2,
        3,
        &[("BQB_S3_ENDPOINT", slow.proxies.s3.as_str())],
    )
    .spawn()
    .expect("the worker starts");
    let claim = format!("backups/{id}/shards/_claim-00002");
    let deadline = Instant::now() + Duration::from_secs(30);
    while objects_under(&root, &claim).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the worker never claimed its shard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no cleanup runs.
    let _ = killed.kill();
    let _ = killed.wait();
    // What an interrupted run may leave: a file of its own, complete but in no report.
    let table_dir = format!("backups/{id}/{PROJECT}/{}/numbers", slow.dataset);
    let leftover = Path::from(format!("{table_dir}/shard-00002-part-00099.parquet"));
    open_store(&root)
        .object_store()
        .put(
            &leftover,
            bytes::Bytes::from_static(b"left by a killed run").into(),
        )
        .await
        .expect("a leftover file");

    for (shard, missing) in [(0, json!([1, 2])), (1, json!([2]))] {
        let done = answer(&run(worker(&root, &id, shard, 3, &[])));
        assert_eq!(done["commit"]["status"], "WAITING", "{done}");
        assert_eq!(done["commit"]["missing"], missing, "{done}");
    }
    assert!(!exists(&root, &format!("backups/{id}/manifest.json")).await);
    // A commit by hand names what is missing and writes nothing.
    let mut commit = bq_backup_command(TestServices::get().env_with(&[]));
    commit.args(["commit", "--repository", &root, "--backup-id", &id]);
    let waiting = answer(&run(commit));
    assert_eq!(
        (&waiting["status"], &waiting["missing"]),
        (&json!("WAITING"), &json!([2])),
        "{waiting}"
    );
    assert!(!exists(&root, &format!("backups/{id}/manifest.json")).await);
    // The job follows the reports (it looks once a heartbeat).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, record) = app.get_json(&format!("/api/v1/jobs/{job}")).await;
        assert_eq!(record["state"], "RUNNING", "{record}");
        if record["shards"]["missing"] == json!([2]) {
            assert_eq!(record["shards"]["reported"], 2, "{record}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never saw two reports: {record}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let others_files = shard_files(&root, &id, &[0, 1]).await;

    // The rerun of shard 2 waits for the killed run's claim to go stale (409 until then), then
    // removes its files and completes the backup.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rerun = loop {
        let output = run(worker(&root, &id, 2, 3, &[]));
        if output.status.success() {
            break answer(&output);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("being run by another worker"),
            "the rerun failed otherwise: {stderr}"
        );
        assert!(
            Instant::now() < deadline,
            "the killed run's claim never went stale"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(rerun["ran"], true, "{rerun}");
    let record = app.wait_for_job(&job).await;
    assert_eq!(record["state"], "SUCCEEDED", "{record}");
    assert!(
        !exists(&root, leftover.as_ref()).await,
        "the killed run's file is gone"
    );
    assert_eq!(
        shard_files(&root, &id, &[0, 1]).await,
        others_files,
        "the other shards' files are untouched"
    );
    // Every data file under the backup is in its manifest.
    let manifest = manifest(&root, &id).await;
    let listed: Vec<String> = manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    let mut stored = shard_files(&root, &id, &[0, 1, 2]).await;
    stored.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(stored, listed_sorted);
    let target = format!("{}_rerun", slow.dataset);
    let (status, restored) = restore_into(&app, &root, &id, &slow.dataset, &target).await;
    assert_eq!(status, 200, "{restored}");
    assert_identical(&slow.dataset, &target, "after a killed shard's rerun").await;
}

/// The data files of `shards` under backup `id`, sorted.
async fn shard_files(root: &str, id: &str, shards: &[u32]) -> Vec<String> {
    let mut files: Vec<String> = objects_under(root, &format!("backups/{id}"))
        .await
        .into_iter()
        .map(|p| p.to_string())
        .filter(|p| {
            shards
                .iter()
                .any(|s| p.contains(&format!("/shard-{s:05}-part-")))
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn bad_shard_requests_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let dataset = crate::helpers::dataset_of(1).await;
    let root = unique_root("gs");
    for (body, field) in [
        (json!({ "shards": 0 }), "shards"),
        (json!({ "shards": 10_001 }), "shards"),
        (json!({ "shards": 2, "method": "EXTRACT" }), "shards"),
    ] {
        let mut request = json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
            "backupStorage": { "uri": root },
        });
        for (k, v) in body.as_object().expect("object") {
            request[k] = v.clone();
        }
        let (status, answer) = app.post_json("/api/v1/backup", &request).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["details"]
                .as_array()
                .expect("details")
                .iter()
                .any(|d| d["field"] == field),
            "{body}: {answer}"
        );
    }

    // A worker of a backup never planned, or with a count the plan does not have.
    let missing = run(worker(&root, "20260101_000000", 0, 2, &[]));
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no sharded plan"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let (job, id) = plan_sharded(&app, &dataset, &root, 2, &now_minus_seconds(1)).await;
    let wrong = run(worker(&root, &id, 0, 3, &[]));
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("shards") && stderr.contains("planned with 2"),
        "{stderr}"
    );
    let unset = bq_backup_command(TestServices::get().env_with(&[]))
        .args(["worker", "--repository", &root, "--backup-id", &id])
        .output()
        .expect("runs");
    assert!(!unset.status.success());
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert!(
        stderr.contains("--shard") && stderr.contains("CLOUD_RUN_TASK_INDEX"),
        "{stderr}"
    );

    // DELETE of the incomplete backup removes the plan: the job following it fails, and a
    // worker started later finds none.
    let (status, deleted) = app
        .delete_json(&format!("/api/v1/backups/{id}?uri={root}"))
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert!(!exists(&root, &format!("backups/{id}/plan.json")).await);
    let record = app.wait_for_job(&job).await;
    assert_eq!(record["state"], "FAILED", "{record}");
    let late = run(worker(&root, &id, 0, 2, &[]));
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("no sharded plan"),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
}

/// Serves `router` on a free local port; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    endpoint
}

/// A server that starts sharded backups' workers with Cloud Run Job `job` at `endpoint`, and
/// its answer to a sharded backup of `dataset` (2 shards) to `root`, waited for.
async fn launched_backup(
    job: &str,
    endpoint: &str,
    dataset: &str,
    root: &str,
) -> (TestApp, u16, Value) {
    let app = crate::helpers::spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_SHARD_LAUNCHER", "cloud-run"),
        ("BQB_SHARD_CLOUD_RUN_JOB", job),
        ("BQB_CLOUD_RUN_ENDPOINT", endpoint),
    ]))
    .await;
    let (status, answer) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &sharded_request(dataset, root, "AVRO", 2),
        )
        .await;
    (app, status, answer)
}

/// A container's `env` list as name and value pairs.
fn env_pairs(env: &Value) -> Vec<(String, String)> {
    env.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `bq-backup ARGS` started as a platform starts a task: the test services' settings, the
/// variables the launch request gave, and the platform's own (`CLOUD_RUN_TASK_INDEX`, ...).
fn start_task(
    args: &[String],
    work: &[(String, String)],
    platform: &[(&str, String)],
) -> std::process::Child {
    let mut vars = TestServices::get().env_with(&[]);
    vars.extend(work.iter().cloned());
    vars.extend(platform.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut command = bq_backup_command(vars);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("a task starts")
}

/// What the stand-in for the Cloud Run Admin API saw and started.
#[derive(Default)]
struct FakeCloudRun {
    requests: Vec<Value>,
    tasks: Vec<std::process::Child>,
}

/// A stand-in for the Cloud Run Admin API's `jobs.run` (Google publishes no emulator of it, and
/// no real one can be reached from here): it answers as Cloud Run does, with a long-running
/// operation, and runs the execution's tasks as local `bq-backup worker` processes with what
/// Cloud Run gives a task — `CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_COUNT`, and the request's
/// container overrides — so the launch path is followed end to end.
async fn fake_cloud_run(job: &str) -> (String, std::sync::Arc<std::sync::Mutex<FakeCloudRun>>) {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(FakeCloudRun::default()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        &format!("/v2/{job}:run"),
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let state = state.clone();
            async move {
                let tasks = body["overrides"]["taskCount"].as_u64().unwrap_or(1);
                let overrides = env_pairs(&body["overrides"]["containerOverrides"][0]["env"]);
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.requests.push(body.clone());
                for index in 0..tasks {
                    let platform = [
                        ("CLOUD_RUN_TASK_INDEX", index.to_string()),
                        ("CLOUD_RUN_TASK_COUNT", tasks.to_string()),
                    ];
                    state.tasks.push(start_task(&["worker".into()], &overrides, &platform));
                }
                axum::Json(json!({
                    "name": "projects/p/locations/l/operations/op-1",
                    "metadata": { "name": "projects/p/locations/l/jobs/bq-backup-worker/executions/bq-backup-worker-x1" },
                }))
            }
        }),
    );
    (serve(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_runs_a_cloud_run_job_execution_with_a_task_per_shard() {
    let job = "projects/p/locations/l/jobs/bq-backup-worker";
    let (endpoint, seen) = fake_cloud_run(job).await;
    let dataset = crate::helpers::dataset_of(3).await;
    let root = unique_root("az");
    let (app, status, done) = launched_backup(job, &endpoint, &dataset, &root).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["totals"]["rows"], 60, "{done}");
    assert_eq!(done["launched"]["launcher"], "cloud-run", "{done}");
    assert_eq!(
        done["launched"]["execution"],
        "projects/p/locations/l/jobs/bq-backup-worker/executions/bq-backup-worker-x1"
    );
    let id = done["backupId"].as_str().expect("backupId");
    let (request, tasks) = {
        let mut state = seen.lock().unwrap_or_else(|p| p.into_inner());
        (state.requests.clone(), std::mem::take(&mut state.tasks))
    };
    assert_eq!(request.len(), 1, "one execution: {request:?}");
    assert_eq!(
        request[0],
        bq_backup::backup::shard::cloud_run_overrides(
            &[
                ("BQB_BACKUP_ID", id.to_string()),
                ("BQB_REPOSITORY", root.clone())
            ],
            2
        )
    );
    let mut written = 0;
    for task in tasks {
        let done = answer(&task.wait_with_output().expect("the task ends"));
        assert_eq!(done["shards"], 2, "{done}");
        written += u64::from(done["commit"]["status"] == "WRITTEN");
    }
    assert!(written <= 1, "one manifest write at most by the tasks");
    let (status, report) = app
        .post_json(
            &format!("/api/v1/backups/{id}:verify?uri={root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
}

#[tokio::test]
async fn a_refused_launch_fails_the_backup_and_withdraws_its_plan() {
    // A Cloud Run Admin API that refuses the service (no run.jobs.runWithOverrides).
    let app = axum::Router::new().route(
        "/v2/projects/p/locations/l/jobs/w:run",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::FORBIDDEN,
                axum::Json(json!({ "error": { "code": 403, "message": "Permission 'run.jobs.runWithOverrides' denied" } })),
            )
        }),
    );
    let endpoint = serve(app).await;
    let dataset = crate::helpers::dataset_of(1).await;
    let root = unique_root("file");
    let (_app, status, failed) =
        launched_backup("projects/p/locations/l/jobs/w", &endpoint, &dataset, &root).await;
    assert_eq!(status, 403, "{failed}");
    let text = failed.to_string();
    assert!(
        text.contains("BQB_SHARD_CLOUD_RUN_JOB") && text.contains("runWithOverrides"),
        "{text}"
    );
    let plans: Vec<_> = objects_under(&root, "backups")
        .await
        .into_iter()
        .filter(|p| p.as_ref().ends_with("plan.json"))
        .collect();
    assert!(plans.is_empty(), "the plan is withdrawn: {plans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_restore_by_two_workers_restores_every_table_equal() {
    // The workers find the plan in the service's state store: one shared directory.
    let state = tempfile::tempdir().expect("a temp dir");
    let state_uri = format!("file://{}", state.path().display());
    let shared = [("BQB_STATE_URI", state_uri.as_str())];
    let app = crate::helpers::spawn_app_with(TestServices::get().settings_with(&shared)).await;
    let dataset = source_dataset("shard_restore").await;
    let root = unique_root("s3");
    crate::helpers::avro_backup(&app, &dataset, &root).await;
    let target = format!("{dataset}_shards");
    let (status, accepted) = app
        .post_json(
            "/api/v1/restore",
            &json!({
                "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
                "restoreStorage": { "uri": root },
                "backupId": "latest",
                "targetDatasets": { dataset.as_str(): target },
                "shards": 2,
            }),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["jobId"].as_str().expect("jobId").to_string();
    let plan = state
        .path()
        .join(format!("sharded-restores/{job}/plan.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !plan.exists() {
        assert!(Instant::now() < deadline, "no restore plan after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restore_worker = |shard: u32| {
        let mut command = bq_backup_command(TestServices::get().env_with(&shared));
        command
            .args([
                "worker",
                "--restore-job",
                &job,
                "--shard",
                &shard.to_string(),
                "--shards",
                "2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let running: Vec<_> = [0, 1]
        .map(|shard| restore_worker(shard).spawn().expect("starts"))
        .into_iter()
        .collect();
    let mut tables = 0;
    for child in running {
        let done = answer(&child.wait_with_output().expect("the worker ends"));
        assert_eq!(done["ran"], true, "{done}");
        tables += done["tables"].as_u64().unwrap_or(0);
    }
    assert_eq!(tables, 3, "every table restored by exactly one shard");
    let record = app.wait_for_job(&job).await;
    assert_eq!(record["state"], "SUCCEEDED", "{record}");
    assert_eq!(record["shards"]["reported"], 2, "{record}");
    assert_eq!(
        record["result"]["tables"].as_array().map(Vec::len),
        Some(3),
        "{record}"
    );
    assert_identical(&dataset, &target, "sharded restore").await;
    // A shard run again after it reported does nothing.
    let again = answer(&run(restore_worker(0)));
    assert_eq!(again["ran"], false, "{again}");
    // A run that restored its tables but died before its report: the rerun finds them restored
    // (their rows are the manifest's), restores nothing twice, and reports.
    let report = state
        .path()
        .join(format!("sharded-restores/{job}/shards/00000.json"));
    let first: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the report")).expect("JSON");
    std::fs::remove_file(&report).expect("the report removed");
    let rerun = answer(&run(restore_worker(0)));
    assert_eq!(
        (&rerun["ran"], &rerun["tables"]),
        (&json!(true), &json!(0)),
        "{rerun}"
    );
    let before: Vec<&str> = first["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["target"].as_str().expect("target"))
        .collect();
    assert_eq!(rerun["restoredBefore"], json!(before), "{rerun}");
    assert_identical(&dataset, &target, "after a shard's rerun").await;
}

/// A stand-in for the Kubernetes API (no API server can run here: no container runtime): it
/// answers the service's read of its own pod with `pod`, and runs a created Indexed Job's
/// completions as local `bq-backup worker` processes with what Kubernetes gives each pod —
/// `JOB_COMPLETION_INDEX` — and the Job's container variables that name the work.
async fn fake_kubernetes(pod: Value) -> (String, std::sync::Arc<std::sync::Mutex<FakeCloudRun>>) {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(FakeCloudRun::default()));
    let state = seen.clone();
    let app = axum::Router::new()
        .route(
            "/api/v1/namespaces/bq/pods/{name}",
            axum::routing::get(move || async move { axum::Json(pod) }),
        )
        .route(
            "/apis/batch/v1/namespaces/bq/jobs",
            axum::routing::post(move |axum::Json(job): axum::Json<Value>| {
                let state = state.clone();
                async move {
                    let completions = job["spec"]["completions"].as_u64().unwrap_or(1);
                    let container = &job["spec"]["template"]["spec"]["containers"][0];
                    // The variables naming the work; the rest are the service's own settings,
                    // which the test services' stand in for.
                    let work: Vec<(String, String)> = env_pairs(&container["env"])
                        .into_iter()
                        .filter(|(name, _)| {
                            bq_backup::config::COMMAND_VARIABLES.contains(&name.as_str())
                        })
                        .collect();
                    let args: Vec<String> = container["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect();
                    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                    state.requests.push(job.clone());
                    for index in 0..completions {
                        let platform = [("JOB_COMPLETION_INDEX", index.to_string())];
                        state.tasks.push(start_task(&args, &work, &platform));
                    }
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(json!({ "metadata": { "name": "bq-backup-shards-x7k2p", "namespace": "bq" } })),
                    )
                }
            }),
        );
    (serve(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_creates_an_indexed_job_of_its_own_pod_with_a_completion_per_shard() {
    let pod = json!({
        "metadata": { "name": "bq-backup-0", "namespace": "bq" },
        "spec": {
            "serviceAccountName": "bq-backup",
            "containers": [{
                "name": "bq-backup",
                "image": "registry/bq-backup:test",
                "args": ["serve"],
                "env": [{ "name": "BQB_PROJECT_ID", "value": PROJECT }],
            }],
        },
    });
    let (endpoint, seen) = fake_kubernetes(pod).await;
    let app = crate::helpers::spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_SHARD_LAUNCHER", "kubernetes"),
        ("BQB_KUBERNETES_ENDPOINT", endpoint.as_str()),
        ("BQB_KUBERNETES_NAMESPACE", "bq"),
    ]))
    .await;
    let dataset = crate::helpers::dataset_of(2).await;
    let root = unique_root("gs");
    let (status, done) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &sharded_request(&dataset, &root, "JSON", 3),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["totals"]["rows"], 40, "{done}");
    assert_eq!(
        (&done["launched"]["launcher"], &done["launched"]["job"]),
        (&json!("kubernetes"), &json!("bq-backup-shards-x7k2p")),
        "{done}"
    );
    let (jobs, tasks) = {
        let mut state = seen.lock().unwrap_or_else(|p| p.into_inner());
        (state.requests.clone(), std::mem::take(&mut state.tasks))
    };
    assert_eq!(jobs.len(), 1, "one Indexed Job: {jobs:?}");
    let template = &jobs[0]["spec"]["template"]["spec"];
    assert_eq!(jobs[0]["spec"]["completionMode"], "Indexed");
    assert_eq!(template["serviceAccountName"], "bq-backup");
    assert_eq!(
        template["containers"][0]["image"],
        "registry/bq-backup:test"
    );
    for task in tasks {
        let done = answer(&task.wait_with_output().expect("the pod ends"));
        assert_eq!(done["shards"], 3, "{done}");
    }
    let id = done["backupId"].as_str().expect("backupId");
    let (status, report) = app
        .post_json(
            &format!("/api/v1/backups/{id}:verify?uri={root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encrypted_sharded_backup_encrypts_every_shards_files_for_its_recipients() {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let keys = tempfile::tempdir().expect("a temp dir");
    let key_file = keys.path().join("key.txt");
    std::fs::write(&key_file, identity.to_string().expose_secret()).expect("the key file");
    let key_file = key_file.display().to_string();
    let job = "projects/p/locations/l/jobs/bq-backup-worker";
    let (endpoint, seen) = fake_cloud_run(job).await;
    let app = crate::helpers::spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_SHARD_LAUNCHER", "cloud-run"),
        ("BQB_SHARD_CLOUD_RUN_JOB", job),
        ("BQB_CLOUD_RUN_ENDPOINT", endpoint.as_str()),
        ("BQB_ENCRYPTION_IDENTITIES", key_file.as_str()),
    ]))
    .await;
    let dataset = crate::helpers::dataset_of(2).await;
    let root = unique_root("file");
    let mut request = sharded_request(&dataset, &root, "PARQUET", 2);
    request["encryption"] = json!({ "recipients": [recipient] });
    let (status, done) = app.post_json("/api/v1/backup?wait=true", &request).await;
    assert_eq!(status, 200, "{done}");
    let tasks = std::mem::take(&mut seen.lock().unwrap_or_else(|p| p.into_inner()).tasks);
    for task in tasks {
        answer(&task.wait_with_output().expect("the task ends"));
    }
    let id = done["backupId"].as_str().expect("backupId");
    let manifest = manifest(&root, id).await;
    assert_eq!(
        manifest["encryption"],
        json!({ "scheme": "AGE", "recipients": [recipient] })
    );
    let files: Vec<Value> = manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!files.is_empty(), "{manifest}");
    for file in &files {
        let path = file["path"].as_str().expect("path");
        assert!(path.contains("/shard-") && path.ends_with(".age"), "{path}");
        assert_eq!(
            file["plaintextSha256"].as_str().map(str::len),
            Some(64),
            "{file}"
        );
        let bytes = open_store(&root)
            .object_store()
            .get(&Path::from(path))
            .await
            .expect("the file")
            .bytes()
            .await
            .expect("readable");
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{path} is an age file"
        );
    }
    let (status, report) = app
        .post_json(
            &format!("/api/v1/backups/{id}:verify?uri={root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
}
