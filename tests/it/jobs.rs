//! Jobs: async answers, records readable from another instance, cancel (here and from another
//! instance), the bounded queue, one backup per selection, shutdown, default TTL and prune after
//! backup — all against the real emulator and stores.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::helpers::{
    PROJECT, TestApp, TestServices, dataset_of, manifest_json, spawn_app, spawn_app_with,
    unique_root,
};

/// A dataset whose backup takes seconds (gzipped JSON, one read stream per table): a small table
/// (backed up first) and two 1.5M-row ones made by CTAS queries in the emulator. Tests cancel or
/// interrupt it once the small one is done.
async fn slow_dataset() -> String {
    let dataset = dataset_of(1).await;
    let url = format!(
        "{}/bigquery/v2/projects/{PROJECT}/queries",
        TestServices::get().bigquery_rest
    );
    for table in ["u_big1", "u_big2"] {
        let query = format!(
            "CREATE TABLE {dataset}.{table} AS SELECT x AS id, CONCAT('row ', CAST(x AS STRING)) AS s FROM UNNEST(GENERATE_ARRAY(1, 1500000)) AS x"
        );
        let resp = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "query": query, "useLegacySql": false }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }
    dataset
}

fn backup_request(dataset: &str, root: &str) -> Value {
    json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "JSON", "compression": "GZIP" } },
        "maxParallelTables": 1
    })
}

/// Starts a backup without waiting; the 202 answer.
async fn start(app: &TestApp, body: &Value) -> Value {
    let (status, accepted) = app.post_json("/api/v1/backup", body).await;
    assert_eq!(status, 202, "{accepted}");
    accepted
}

/// Waits until job `id` reports at least one finished table (it is running).
async fn wait_until_running(app: &TestApp, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (_, job) = app.get_json(&format!("/api/v1/jobs/{id}")).await;
        if job["tablesDone"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(job["state"], "RUNNING", "{job}");
            return;
        }
        assert!(
            !["SUCCEEDED", "FAILED", "CANCELLED"].contains(&job["state"].as_str().unwrap_or("")),
            "the job ended before it could be interrupted: {job}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} never started a table");
}

/// Settings for a server running the slow backups: one read stream per table (slower, and fewer
/// streams left for the emulator to abandon when a backup is cancelled).
fn slow_settings(extra: &[(&str, &str)]) -> bq_backup::config::Settings {
    let mut vars = vec![("BQB_READ_STREAMS_PER_TABLE", "1")];
    vars.extend_from_slice(extra);
    TestServices::get().settings_with(&vars)
}

fn shared_state() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    (dir, uri)
}

fn dir_of(root: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(root.strip_prefix("file://").unwrap())
}

#[tokio::test]
async fn a_backup_answers_202_and_its_job_is_followed_to_the_end() {
    let app = spawn_app().await;
    let dataset = dataset_of(2).await;
    let root = unique_root("file");
    let resp = app
        .client
        .post(app.url("/api/v1/backup"))
        .json(&backup_request(&dataset, &root))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["jobId"].as_str().unwrap();
    assert!(id.starts_with("job-"), "{accepted}");
    assert_eq!(accepted["status"], "PENDING");
    assert_eq!(accepted["kind"], "BACKUP");
    assert_eq!(location, format!("/api/v1/jobs/{id}"));
    assert_eq!(accepted["links"]["self"], location);
    let backup_id = accepted["backupId"].as_str().unwrap();

    let job = app.wait_for_job(id).await;
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    assert_eq!(job["backupId"], backup_id);
    assert_eq!(job["result"]["totals"]["rows"], 40, "{job}");
    let tables = job["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    for t in tables {
        assert_eq!(t["state"], "SUCCEEDED", "{t}");
        assert_eq!(t["rows"], 20, "{t}");
        assert!(t["bytes"].as_u64().unwrap() > 0 && t["files"].as_u64().unwrap() >= 1);
    }
    assert!(job["startedAt"].is_string() && job["finishedAt"].is_string());
    // The catalog link names the backup the job wrote.
    let (status, shown) = app.get_json(job["links"]["backup"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["backupId"], backup_id);

    // A restore is a job too; its tables are named by target.
    let restore = json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": { "uri": root }, "backupId": backup_id,
        "targetDatasets": { dataset.clone(): format!("{dataset}_r") }
    });
    let (status, accepted) = app.post_json("/api/v1/restore", &restore).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["kind"], "RESTORE");
    let job = app.wait_for_job(accepted["jobId"].as_str().unwrap()).await;
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["rows"], 40, "{job}");
    assert!(
        job["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "SUCCEEDED"
                && t["table"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{dataset}_r"))),
        "{job}"
    );
}

#[tokio::test]
async fn wait_answers_with_the_result_and_failures_keep_their_status() {
    let app = spawn_app().await;
    let dataset = dataset_of(1).await;
    let root = unique_root("file");
    let mut body = backup_request(&dataset, &root);
    body["wait"] = json!(true);
    let (status, report) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "SUCCEEDED");
    assert!(report["jobId"].as_str().unwrap().starts_with("job-"));
    let (status, job) = app
        .get_json(&format!(
            "/api/v1/jobs/{}",
            report["jobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!((status, job["state"].as_str()), (200, Some("SUCCEEDED")));

    // The same backup id again in the same repository: a conflict seen before any job starts.
    body["asOf"] = json!(report["snapshotTime"]);
    let (status, error) = app.post_json("/api/v1/backup?wait=true", &body).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["errorCode"], "RESOURCE_CONFLICT");
    let (_, failed) = app.get_json("/api/v1/jobs?state=FAILED").await;
    assert_eq!(failed["jobs"].as_array().map(Vec::len), Some(0), "{failed}");

    // A failure only the job can find (a damaged file): the waiting caller gets its status, and
    // the job's record keeps it.
    let backup_id = report["backupId"].as_str().unwrap();
    let dir = std::path::PathBuf::from(root.trim_start_matches("file://"));
    let file = manifest_json(&dir, backup_id)["tables"][0]["files"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = std::fs::read(dir.join(&file)).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(dir.join(&file), bytes).unwrap();
    let restore = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": backup_id,
        "wait": true
    });
    let (status, error) = app.post_json("/api/v1/restore", &restore).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["errorCode"], "BACKUP_DAMAGED");
    let (status, failed) = app.get_json("/api/v1/jobs?state=FAILED").await;
    assert_eq!(status, 200);
    let failed = &failed["jobs"].as_array().unwrap()[0];
    let (_, failed) = app
        .get_json(&format!(
            "/api/v1/jobs/{}",
            failed["jobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(failed["error"]["errorCode"], "BACKUP_DAMAGED", "{failed}");
    assert_eq!(failed["error"]["details"][0]["field"], file, "{failed}");
}

#[tokio::test]
async fn a_job_started_on_one_instance_is_read_listed_and_cancelled_from_another() {
    let (_state, state_uri) = shared_state();
    let a = spawn_app_with(slow_settings(&[("BQB_STATE_URI", &state_uri)])).await;
    let b = spawn_app_with(slow_settings(&[("BQB_STATE_URI", &state_uri)])).await;
    let dataset = dataset_of(2).await;

    let done = start(&a, &backup_request(&dataset, &unique_root("file"))).await;
    let done_id = done["jobId"].as_str().unwrap();
    let job = b.wait_for_job(done_id).await;
    assert_eq!(
        job["state"], "SUCCEEDED",
        "read from the other instance: {job}"
    );
    assert_eq!(job["tables"].as_array().unwrap().len(), 2);

    let slow = slow_dataset().await;
    let root = unique_root("file");
    let running = start(&a, &backup_request(&slow, &root)).await;
    let id = running["jobId"].as_str().unwrap();
    wait_until_running(&b, id).await;
    let (status, listed) = b.get_json("/api/v1/jobs?kind=BACKUP").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id, done_id], "newest first");

    // B does not run it: it records the request and answers 202; A stops at its next heartbeat.
    let (status, requested) = b.delete_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 202, "{requested}");
    assert_eq!(requested["cancelRequested"], true);
    let job = b.wait_for_job(id).await;
    assert_eq!(job["state"], "CANCELLED", "{job}");
    assert!(
        job["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "CANCELLED")
    );
    let backup_dir =
        dir_of(&root).join(format!("backups/{}", running["backupId"].as_str().unwrap()));
    assert!(
        !backup_dir.join("manifest.json").exists(),
        "a cancelled backup has no manifest"
    );
    let (status, listed) = a.get_json(&format!("/api/v1/backups?uri={root}")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["backups"].as_array().unwrap().len(), 0, "{listed}");

    let (status, refused) = b.delete_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 409, "an ended job cannot be cancelled: {refused}");
}

#[tokio::test]
async fn cancel_stops_a_running_backup_without_a_manifest_or_files() {
    let app = spawn_app_with(slow_settings(&[])).await;
    let dataset = slow_dataset().await;
    let root = unique_root("file");
    let accepted = start(&app, &backup_request(&dataset, &root)).await;
    let id = accepted["jobId"].as_str().unwrap();
    wait_until_running(&app, id).await;
    let (status, job) = app.delete_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "stopped while the request waited: {job}");
    assert_eq!(job["state"], "CANCELLED", "{job}");
    assert_eq!(job["error"]["errorCode"], "RESOURCE_CONFLICT");
    let done = job["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "SUCCEEDED")
        .count();
    assert_eq!(done, 1, "the small table, not the big one: {job}");
    let backup_dir = dir_of(&root).join(format!(
        "backups/{}",
        accepted["backupId"].as_str().unwrap()
    ));
    let left: Vec<_> = walk(&backup_dir);
    assert!(
        left.is_empty(),
        "nothing of a cancelled backup is left: {left:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

#[tokio::test]
async fn a_full_queue_is_a_429_and_a_second_backup_of_a_running_selection_a_409() {
    let app = spawn_app_with(slow_settings(&[
        ("BQB_MAX_RUNNING_JOBS", "1"),
        ("BQB_MAX_QUEUED_JOBS", "1"),
    ]))
    .await;
    let slow = slow_dataset().await;
    let other = dataset_of(1).await;
    let root = unique_root("file");
    let first = start(&app, &backup_request(&slow, &root)).await;
    wait_until_running(&app, first["jobId"].as_str().unwrap()).await;

    // The same tables to the same repository while the first runs: 409 naming the job.
    let (status, refused) = app
        .post_json("/api/v1/backup", &backup_request(&slow, &root))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(first["jobId"].as_str().unwrap()),
        "{refused}"
    );

    // Another selection queues (one slot), then the queue is full.
    let queued = start(&app, &backup_request(&other, &unique_root("file"))).await;
    let (_, job) = app
        .get_json(&format!(
            "/api/v1/jobs/{}",
            queued["jobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job["state"], "PENDING", "waits for the running job: {job}");
    let resp = app
        .client
        .post(app.url("/api/v1/backup"))
        .json(&backup_request(&other, &unique_root("file")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "TOO_MANY_REQUESTS");
    // Refused before planning: a dataset that does not exist is not even looked up (a 404
    // would mean BigQuery was asked).
    let (status, body) = app
        .post_json(
            "/api/v1/backup",
            &backup_request("no_such_dataset_while_full", &unique_root("file")),
        )
        .await;
    assert_eq!(status, 429, "{body}");

    // A queued job is cancelled before it starts; allowConcurrent lets the same selection run.
    let (status, job) = app
        .delete_json(&format!(
            "/api/v1/jobs/{}",
            queued["jobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("CANCELLED")),
        "{job}"
    );
    assert!(job["startedAt"].is_null(), "{job}");
    let mut concurrent = backup_request(&slow, &root);
    concurrent["allowConcurrent"] = json!(true);
    // Its own backup id: within the same second as the first it would be the first's id, which
    // a live backup is writing (a synchronous 409 of its own).
    concurrent["asOf"] = json!((chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339());
    let second = start(&app, &concurrent).await;
    for id in [&second["jobId"], &first["jobId"]] {
        let (status, job) = app
            .delete_json(&format!("/api/v1/jobs/{}", id.as_str().unwrap()))
            .await;
        assert_eq!(
            (status, job["state"].as_str()),
            (200, Some("CANCELLED")),
            "{job}"
        );
    }
}

/// What one connection to [`StalledBigQuery`] has sent.
type Connection = Arc<Mutex<Vec<u8>>>;

/// A BigQuery endpoint that accepts connections, keeps what each one sends and never answers:
/// a request planning against it holds its place in the queue for as long as the test needs,
/// and what it keeps shows which requests reached BigQuery at all.
struct StalledBigQuery {
    url: String,
    received: Arc<Mutex<Vec<Connection>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl StalledBigQuery {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Connection>>> = Arc::default();
        let connections = received.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let bytes: Connection = Arc::default();
                connections.lock().unwrap().push(bytes.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Self {
            url,
            received,
            accept,
        }
    }

    /// Everything received so far, connection by connection.
    fn received(&self) -> String {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|c| String::from_utf8_lossy(&c.lock().unwrap()).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for StalledBigQuery {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test]
async fn a_full_instance_answers_429_before_planning_calls_bigquery() {
    let bigquery = StalledBigQuery::start().await;
    let app = spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_BIGQUERY_ENDPOINT", bigquery.url.as_str()),
        ("BQB_MAX_RUNNING_JOBS", "1"),
        ("BQB_MAX_QUEUED_JOBS", "0"),
    ]))
    .await;
    // The one place of the queue goes to a backup that is still planning (BigQuery never
    // answers it).
    let first = backup_request("planning_takes_forever", "memory://full-instance");
    let request = app.client.post(app.url("/api/v1/backup")).json(&first);
    let planning = tokio::spawn(request.send());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bigquery.received().contains("planning_takes_forever") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first backup never asked BigQuery: {}",
            bigquery.received()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A burst against the full instance: every request is answered 429 at once, and none of
    // them reaches BigQuery (a dataset that does not exist would otherwise be looked up).
    let backup = backup_request("no_such_dataset_burst", "memory://full-instance");
    let restore = json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": { "uri": "memory://full-instance-empty" },
        "backupId": "20260101_000000"
    });
    for (path, body) in [
        ("/api/v1/backup", &backup),
        ("/api/v1/backup", &backup),
        ("/api/v1/restore", &restore),
    ] {
        let resp = app
            .client
            .post(app.url(path))
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} must be answered at once, without planning: {e}"));
        assert_eq!(resp.status(), 429, "{path}");
        let retry_after: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after >= 1);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["errorCode"], "TOO_MANY_REQUESTS", "{answer}");
    }
    assert!(
        !bigquery.received().contains("no_such_dataset_burst"),
        "a refused request reached BigQuery: {}",
        bigquery.received()
    );
    planning.abort();
}

#[tokio::test]
async fn shutdown_marks_a_running_job_failed_for_every_instance() {
    let (_state, state_uri) = shared_state();
    let mut a = spawn_app_with(slow_settings(&[("BQB_STATE_URI", &state_uri)])).await;
    let dataset = slow_dataset().await;
    let root = unique_root("file");
    let accepted = start(&a, &backup_request(&dataset, &root)).await;
    let id = accepted["jobId"].as_str().unwrap().to_string();
    wait_until_running(&a, &id).await;

    // What SIGTERM does in `serve`.
    a.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(20), a.handle.take().unwrap())
        .await
        .expect("the server stops within its grace period");
    assert!(stopped.unwrap().is_ok());

    let b = spawn_app_with(slow_settings(&[("BQB_STATE_URI", &state_uri)])).await;
    let (status, job) = b.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shut down"),
        "{job}"
    );
    let backup_dir = dir_of(&root).join(format!(
        "backups/{}",
        accepted["backupId"].as_str().unwrap()
    ));
    assert!(!backup_dir.join("manifest.json").exists());
}

#[tokio::test]
async fn a_job_whose_instance_died_is_reported_failed_not_running() {
    let (state, state_uri) = shared_state();
    let app =
        spawn_app_with(TestServices::get().settings_with(&[("BQB_STATE_URI", &state_uri)])).await;
    // What a killed instance leaves: a RUNNING record whose heartbeat stopped a minute ago.
    let id = "job-00000000000000aa";
    let at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    std::fs::create_dir_all(state.path().join("jobs")).unwrap();
    std::fs::write(
        state.path().join(format!("jobs/{id}.json")),
        json!({
            "jobId": id, "kind": "BACKUP", "state": "RUNNING", "storageUri": "file:///x",
            "createdAt": at, "startedAt": at, "updatedAt": at, "heartbeatSecs": 1,
            "instance": "gone/1", "tables": [{ "table": "p.d.t", "state": "RUNNING", "rows": 0, "bytes": 0, "files": 0 }]
        })
        .to_string(),
    )
    .unwrap();
    let (status, job) = app.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["tables"][0]["state"], "FAILED");
    assert!(job["error"]["message"].as_str().unwrap().contains("gone/1"));
    let (_, listed) = app.get_json("/api/v1/jobs?state=RUNNING").await;
    assert_eq!(listed["jobs"], json!([]), "never listed RUNNING: {listed}");
}

#[tokio::test]
async fn job_routes_reject_bad_ids_filters_and_unknown_jobs() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/jobs/nope").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "id");
    let (status, body) = app.get_json("/api/v1/jobs/job-0123456789abcdef").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app.delete_json("/api/v1/jobs/job-0123456789abcdef").await;
    assert_eq!(status, 404);
    let (status, body) = app
        .get_json("/api/v1/jobs?state=DONE&kind=ARCHIVE&pageSize=0")
        .await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["state", "kind", "pageSize"]);
    let (status, body) = app.post_json("/api/v1/backup?wait=maybe", &json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "wait");
}

#[tokio::test]
async fn jobs_are_listed_newest_first_in_pages() {
    let app = spawn_app().await;
    let dataset = dataset_of(1).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let accepted = start(&app, &backup_request(&dataset, &unique_root("file"))).await;
        let id = accepted["jobId"].as_str().unwrap().to_string();
        app.wait_for_job(&id).await;
        ids.push(id);
    }
    ids.reverse();
    let (status, first) = app.get_json("/api/v1/jobs?pageSize=2").await;
    assert_eq!(status, 200);
    let page: Vec<&str> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str(), ids[1].as_str()]);
    let token = first["nextPageToken"].as_str().unwrap();
    let (_, second) = app
        .get_json(&format!("/api/v1/jobs?pageSize=2&pageToken={token}"))
        .await;
    assert_eq!(second["jobs"][0]["jobId"], ids[2].as_str());
    assert!(second["nextPageToken"].is_null());
}

#[tokio::test]
async fn a_default_ttl_sets_expiry_and_a_keep_policy_prunes_after_each_backup() {
    let app = spawn_app_with(
        TestServices::get()
            .settings_with(&[("BQB_DEFAULT_TTL_DAYS", "3"), ("BQB_PRUNE_KEEP_LAST", "1")]),
    )
    .await;
    let dataset = dataset_of(1).await;
    let root = unique_root("file");
    let mut older = backup_request(&dataset, &root);
    older["asOf"] = json!((chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339());
    older["wait"] = json!(true);
    let (status, first) = app.post_json("/api/v1/backup", &older).await;
    assert_eq!(status, 200, "{first}");
    let first_id = first["backupId"].as_str().unwrap();
    // The TTL counts from when the backup was taken (not from its older snapshot time).
    let expires = expires_at(&root, first_id);
    assert_close(expires, chrono::Utc::now() + chrono::Duration::days(3));

    let mut newer = backup_request(&dataset, &root);
    newer["wait"] = json!(true);
    newer["ttlDays"] = json!(30);
    let (status, second) = app.post_json("/api/v1/backup", &newer).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["prune"]["deleted"], json!([first_id]), "{second}");
    assert!(
        !dir_of(&root)
            .join(format!("backups/{first_id}/manifest.json"))
            .exists()
    );
    // The request's own TTL wins over the default.
    let expires = expires_at(&root, second["backupId"].as_str().unwrap());
    assert_close(expires, chrono::Utc::now() + chrono::Duration::days(30));
}

fn expires_at(root: &str, id: &str) -> chrono::DateTime<chrono::Utc> {
    manifest_json(&dir_of(root), id)["expiresAt"]
        .as_str()
        .expect("the manifest has expiresAt")
        .parse()
        .unwrap()
}

fn assert_close(actual: chrono::DateTime<chrono::Utc>, expected: chrono::DateTime<chrono::Utc>) {
    let off = (actual - expected).num_seconds().abs();
    assert!(off < 120, "{actual} is not close to {expected}");
}

#[tokio::test]
async fn records_older_than_the_retention_are_swept_after_a_job() {
    let (state, state_uri) = shared_state();
    let app = spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_STATE_URI", &state_uri),
        ("BQB_JOB_RETENTION_DAYS", "7"),
    ]))
    .await;
    // What a job and a Pub/Sub delivery of 40 days ago left, and a record of yesterday.
    let old = std::time::SystemTime::now() - Duration::from_secs(40 * 86_400);
    let recent = std::time::SystemTime::now() - Duration::from_secs(86_400);
    let files = [
        ("jobs/job-00000000000000b1.json", old),
        ("jobs/job-00000000000000b1.cancel", old),
        ("idempotency/pubsub-backup-123.json", old),
        ("jobs/job-00000000000000b2.json", recent),
    ];
    for (name, at) in files {
        let path = state.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{}").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }
    let dataset = dataset_of(1).await;
    let mut body = backup_request(&dataset, &unique_root("file"));
    body["wait"] = json!(true);
    let (status, report) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 200, "{report}");

    let gone = |name: &str| !state.path().join(name).exists();
    for _ in 0..50 {
        if gone(files[0].0) && gone(files[1].0) && gone(files[2].0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, _) in &files[..3] {
        assert!(gone(name), "{name} outlived the retention");
    }
    assert!(!gone(files[3].0), "a recent record stays");
    let job = format!("jobs/{}.json", report["jobId"].as_str().unwrap());
    assert!(!gone(&job), "the job just run stays");
}

#[tokio::test]
async fn cancel_stops_a_restore_without_loading_the_table_in_progress() {
    let app = spawn_app_with(slow_settings(&[])).await;
    let dataset = slow_dataset().await;
    let root = unique_root("file");
    let mut backup = backup_request(&dataset, &root);
    backup["wait"] = json!(true);
    // Small files: a restore checks for a cancel before each file, so the big tables must have
    // several (one read stream would otherwise write each of them as one file).
    backup["fileSizeBytes"] = json!(1024 * 1024);
    let (status, report) = app.post_json("/api/v1/backup", &backup).await;
    assert_eq!(status, 200, "{report}");
    assert!(
        report["totals"]["files"].as_u64().unwrap() >= 5,
        "several files per big table: {report}"
    );

    let target = format!("{dataset}_c");
    let restore = json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": { "uri": root, "importOptions": { "threadPoolSize": 1 } },
        "backupId": report["backupId"],
        "targetDatasets": { dataset.clone(): target.clone() }
    });
    let (status, accepted) = app.post_json("/api/v1/restore", &restore).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["jobId"].as_str().unwrap();
    wait_until_running(&app, id).await;
    let (status, job) = app.delete_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("CANCELLED")),
        "{job}"
    );

    // The small table restored before the cancel stays; the big ones are not there at all.
    let url = |table: &str| {
        format!(
            "{}/bigquery/v2/projects/{PROJECT}/datasets/{target}/tables/{table}",
            TestServices::get().bigquery_rest
        )
    };
    let client = reqwest::Client::new();
    let status = |table: &'static str| {
        let req = client.get(url(table));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("t00").await, 200);
    assert_eq!(status("u_big1").await, 404, "{job}");
    assert_eq!(status("u_big2").await, 404, "{job}");
}
