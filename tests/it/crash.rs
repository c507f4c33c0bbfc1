//! Crash safety: `bq-backup serve` killed with SIGKILL in the middle of a backup, then started
//! again on the same state store. What a killed run leaves must read FAILED in bounded time,
//! never look like a backup, and never block the same request once it reads FAILED.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::faults::SlowBackup;
use crate::faults::proxy::Proxies;
use bq_backup::domain::TableRef;

use crate::faults::{exists, objects_under, rows_of, source_dataset};
use crate::helpers::{
    PROJECT, TestServices, bigquery_client, bq_backup_command, open_store, spawn_app, unique_root,
};

/// A `bq-backup serve` child process, killed (SIGKILL) when dropped.
struct Serve {
    child: Child,
    url: String,
    client: reqwest::Client,
}

impl Serve {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
            .to_string();
        let mut vars = TestServices::get().env_with(extra);
        vars.retain(|(k, _)| k != "PORT");
        vars.push(("PORT".into(), port.clone()));
        let mut command = bq_backup_command(vars);
        command
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("bq-backup serve starts");
        let serve = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = serve
                .client
                .get(format!("{}/healthz", serve.url))
                .send()
                .await
                && resp.status().is_success()
            {
                return serve;
            }
            assert!(Instant::now() < deadline, "serve did not answer /healthz");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(&mut self) {
        // Child::kill sends SIGKILL: no shutdown hook runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("serve answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("serve answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Job `id`'s record once it has SUCCEEDED or FAILED (panics after two minutes).
    async fn job_ended(&self, id: &str) -> Value {
        self.job_until(id, Duration::from_secs(120), |job| {
            ["SUCCEEDED", "FAILED"].contains(&job["state"].as_str().unwrap_or(""))
        })
        .await
    }

    /// Polls job `id` until `done` holds for its record (panics after `limit`).
    async fn job_until(&self, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, job) = self.get(&format!("/api/v1/jobs/{id}")).await;
            if status == 200 && done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id}: {status} {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test]
async fn a_backup_killed_mid_run_reads_failed_and_the_same_request_then_succeeds_at_once() {
    // Every upload through the proxy waits a second, so the backup is still writing when killed.
    let slow = SlowBackup::new("crash").await;
    let (proxies, dataset, root) = (&slow.proxies, &slow.dataset, &slow.root);
    let extra = slow.env();
    let mut first = Serve::start(&extra).await;
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "AVRO" } },
        "asOf": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
    });
    let (status, accepted) = first.post("/api/v1/backup", &body).await;
    assert_eq!(status, 202, "{accepted}");
    let job_id = accepted["jobId"].as_str().expect("jobId").to_string();
    let backup_id = accepted["backupId"].as_str().expect("backupId").to_string();

    // Killed once its claim is written and a table is being written.
    first
        .job_until(&job_id, Duration::from_secs(30), |job| {
            job["state"] == "RUNNING"
                && job["tables"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["state"] == "RUNNING"))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !objects_under(root, &format!("backups/{backup_id}/_claim"))
            .await
            .is_empty(),
        "the killed backup held its claim"
    );
    assert!(
        proxies.stats(&proxies.s3).await["delayed"].as_u64() > Some(0),
        "uploads were slowed down by the proxy"
    );
    first.kill9();
    let killed = Instant::now();
    proxies.quiet_all().await;

    let second = Serve::start(&extra).await;
    let failed = second
        .job_until(&job_id, Duration::from_secs(30), |job| {
            job["state"] == "FAILED"
        })
        .await;
    let reads_failed_after = killed.elapsed();
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("start it again")),
        "{failed}"
    );
    assert!(
        !exists(root, &format!("backups/{backup_id}/manifest.json")).await,
        "a killed backup has no manifest"
    );

    // The same request, as soon as the job reads FAILED: accepted, and it completes.
    let (status, again) = second.post("/api/v1/backup", &body).await;
    assert_eq!(status, 202, "the same request is accepted at once: {again}");
    assert_eq!(again["backupId"], backup_id.as_str());
    let done = second
        .job_ended(again["jobId"].as_str().expect("jobId"))
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let (status, verify) = second
        .post(
            &format!("/api/v1/backups/{backup_id}:verify?uri={root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["ok"], true, "{verify}");
    eprintln!(
        "crash: the killed backup's job read FAILED {:.1} s after the kill",
        reads_failed_after.as_secs_f64()
    );
}

/// What an upload to `file://` leaves when its process is killed: object_store's staging file
/// beside the part (`part-00000.avro#1`), which object_store never lists, and a stale claim.
fn leave_a_killed_attempt(dir: &std::path::Path, backup_id: &str) -> std::path::PathBuf {
    let table_dir = dir.join(format!("backups/{backup_id}/{PROJECT}/d/t"));
    std::fs::create_dir_all(&table_dir).expect("dirs");
    let staging = table_dir.join("part-00000.avro#1");
    std::fs::write(&staging, vec![7u8; 4096]).expect("staging file");
    let claim_dir = dir.join(format!("backups/{backup_id}/_claim"));
    std::fs::create_dir_all(&claim_dir).expect("claim dir");
    std::fs::write(
        claim_dir.join("00000000000000000001.json"),
        json!({ "backupId": backup_id, "purpose": "backup", "holder": "killed",
                "heartbeatAt": chrono::Utc::now() - chrono::Duration::minutes(10),
                "staleAfterMs": 5000, "host": "gone" })
        .to_string(),
    )
    .expect("claim");
    staging
}

#[tokio::test]
async fn staging_files_of_a_killed_upload_are_removed_by_the_rerun_and_by_delete() {
    let app = spawn_app().await;
    let dataset = source_dataset("crash_staging").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = format!("file://{}", dir.path().display());

    // The rerun of the same request (same backup id) removes them before it writes.
    let at = chrono::Utc::now() - chrono::Duration::minutes(2);
    let backup_id = at.format("%Y%m%d_%H%M%S").to_string();
    let staging = leave_a_killed_attempt(dir.path(), &backup_id);
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset, "tables": ["numbers"] }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "AVRO" } },
        "asOf": at.to_rfc3339(),
    });
    let (status, report) = app.post_json("/api/v1/backup?wait=true", &body).await;
    assert_eq!(status, 200, "{report}");
    assert!(!staging.exists(), "the rerun removed {}", staging.display());

    // DELETE of an id that has no manifest removes what the attempt left.
    let other = (at - chrono::Duration::minutes(1))
        .format("%Y%m%d_%H%M%S")
        .to_string();
    let staging = leave_a_killed_attempt(dir.path(), &other);
    let (status, deleted) = app
        .delete_json(&format!("/api/v1/backups/{other}?uri={root}"))
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["incomplete"], true, "{deleted}");
    assert!(!staging.exists(), "DELETE removed {}", staging.display());
    assert!(
        !dir.path().join(format!("backups/{other}")).exists(),
        "nothing of the attempt is left"
    );
    let (status, _) = app
        .delete_json(&format!("/api/v1/backups/{other}?uri={root}"))
        .await;
    assert_eq!(status, 404, "a second delete finds nothing");
}

#[tokio::test]
async fn an_attempt_being_written_cannot_be_deleted() {
    let app = spawn_app().await;
    let root = unique_root("s3");
    let store = open_store(&root);
    let backup_id = "20260101_000000";
    let claim = Path::from(format!(
        "backups/{backup_id}/_claim/00000000000000000001.json"
    ));
    let live = json!({ "backupId": backup_id, "purpose": "backup", "holder": "alive",
                       "heartbeatAt": chrono::Utc::now(), "staleAfterMs": 60000, "host": "here" });
    store
        .object_store()
        .put(&claim, live.to_string().into())
        .await
        .expect("claim written");
    let part = Path::from(format!("backups/{backup_id}/{PROJECT}/d/t/part-00000.avro"));
    store
        .object_store()
        .put(&part, bytes::Bytes::from_static(b"data").into())
        .await
        .expect("part written");
    let (status, answer) = app
        .delete_json(&format!("/api/v1/backups/{backup_id}?uri={root}"))
        .await;
    assert_eq!(status, 409, "{answer}");
    let left: Vec<_> = store
        .object_store()
        .list(Some(&Path::from(format!("backups/{backup_id}"))))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(left.len(), 2, "nothing was removed: {left:?}");
}

#[tokio::test]
async fn a_restore_killed_mid_run_leaves_no_empty_table_or_dataset_it_created() {
    let proxies = Proxies::lock().await;
    let (dataset, _dir, root, backup_id) = avro_backup_of_source("crash_restore").await;

    // The restore is killed after it created its dataset and tables, before any data arrived.
    let mut slow = SlowRestore::start(&proxies, &dataset, &root, &backup_id, "k").await;
    let target = slow.target.clone();
    let target = target.as_str();
    let bq = bigquery_client().await;
    let wide = TableRef::new(PROJECT, target, "wide");
    let deadline = Instant::now() + Duration::from_secs(30);
    while bq.find_table(&wide).await.expect("tables.get").is_none() {
        assert!(
            Instant::now() < deadline,
            "the restore never created {wide}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.first.kill9();
    proxies.quiet_all().await;
    assert!(
        bq.find_table(&wide).await.expect("tables.get").is_some(),
        "the killed restore left its empty table behind"
    );

    // Another instance notices the dead restore and removes what it created and never filled.
    let second = Serve::start(&slow.env(&proxies)).await;
    wait_until_dataset_gone(target).await;
    let (_, job) = second.get(&format!("/api/v1/jobs/{}", slow.job_id)).await;
    assert_eq!(job["state"], "FAILED", "{job}");

    // The same request then restores everything.
    let (status, again) = second.post("/api/v1/restore", &slow.request).await;
    assert_eq!(status, 202, "{again}");
    let done = second
        .job_ended(again["jobId"].as_str().expect("jobId"))
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    for table in ["all_types", "numbers", "wide"] {
        assert_eq!(
            rows_of(&TableRef::new(PROJECT, target, table)).await,
            rows_of(&TableRef::new(PROJECT, &dataset, table)).await,
            "{table}"
        );
    }
}

/// A restore killed while it loads a table's files into a staging table: the next instance
/// removes the staging table (its name carries the dead job's id), then the dataset the restore
/// created, now empty.
#[tokio::test]
async fn a_restore_killed_while_loading_files_leaves_no_staging_table() {
    let proxies = Proxies::lock().await;
    let app = spawn_app().await;
    let dataset = crate::restore_files::multi_file_dataset("crash_files").await;
    let root = unique_root("file");
    let (backup_id, _) = crate::restore_files::backup_in_files(&app, &dataset, &root).await;
    // The restore is killed while the files are loading.
    let mut slow = SlowRestore::start(&proxies, &dataset, &root, &backup_id, "s").await;
    let target = slow.target.clone();
    let target = target.as_str();
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::restore_files::staging_tables(target)
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no staging table appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slow.first.kill9();
    proxies.quiet_all().await;
    assert!(
        !crate::restore_files::staging_tables(target)
            .await
            .is_empty(),
        "the killed restore left its staging table behind"
    );

    let _second = Serve::start(&slow.env(&proxies)).await;
    wait_until_dataset_gone(target).await;
}

/// A restore accepted by a `serve` whose BigQuery calls go through the proxy with every upload
/// chunk held 3 s, so that the test can kill it mid-run; [`Self::env`] starts the next instance
/// on the same state store.
struct SlowRestore {
    first: Serve,
    job_id: String,
    /// `{dataset}_{suffix}`.
    target: String,
    request: Value,
    state_uri: String,
    _state: tempfile::TempDir,
}

impl SlowRestore {
    async fn start(
        proxies: &Proxies,
        dataset: &str,
        root: &str,
        backup_id: &str,
        suffix: &str,
    ) -> Self {
        let state = tempfile::tempdir().expect("temp dir");
        let state_uri = format!("file://{}", state.path().display());
        Self::slow_uploads(proxies).await;
        let target = format!("{dataset}_{suffix}");
        let request = json!({
            "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
            "restoreStorage": { "uri": root },
            "backupId": backup_id,
            "targetDatasets": { dataset: target },
        });
        let first = Serve::start(&Self::env_of(proxies, &state_uri)).await;
        let (status, accepted) = first.post("/api/v1/restore", &request).await;
        assert_eq!(status, 202, "{accepted}");
        Self {
            first,
            job_id: accepted["jobId"].as_str().expect("jobId").to_string(),
            target,
            request,
            state_uri,
            _state: state,
        }
    }

    /// Every upload to BigQuery (a load job's bytes) held 3 s: a restore is slow to fill.
    async fn slow_uploads(proxies: &Proxies) {
        proxies
            .configure(
                &proxies.bigquery,
                json!({ "pDelay": 1.0, "delaySecs": 3.0, "pathRegex": "^/upload/" }),
            )
            .await;
    }

    fn env<'a>(&'a self, proxies: &'a Proxies) -> [(&'a str, &'a str); 3] {
        Self::env_of(proxies, &self.state_uri)
    }

    fn env_of<'a>(proxies: &'a Proxies, state_uri: &'a str) -> [(&'a str, &'a str); 3] {
        [
            ("BQB_BIGQUERY_ENDPOINT", proxies.bigquery.as_str()),
            ("BQB_STATE_URI", state_uri),
            ("BQB_JOB_HEARTBEAT_SECS", "1"),
        ]
    }
}

/// A restore drill killed mid-run: the next instance removes its scratch dataset whole, with
/// what the drill had filled in it (a table with rows here) — a scratch dataset holds nobody
/// else's data, and the drill would have removed it itself.
#[tokio::test]
async fn a_drill_killed_mid_run_leaves_no_scratch_dataset() {
    let proxies = Proxies::lock().await;
    let (dataset, _dir, root, backup_id) = avro_backup_of_source("crash_drill").await;
    let state = tempfile::tempdir().expect("temp dir");
    let state_uri = format!("file://{}", state.path().display());
    SlowRestore::slow_uploads(&proxies).await;
    let env = SlowRestore::env_of(&proxies, &state_uri);
    let mut first = Serve::start(&env).await;
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": backup_id,
        "drill": true,
    });
    let (status, accepted) = first.post("/api/v1/restore", &request).await;
    assert_eq!(status, 202, "{accepted}");

    // Killed once its scratch dataset and tables exist.
    let bq = bigquery_client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let scratch = loop {
        let found = bq
            .list_datasets(PROJECT)
            .await
            .expect("datasets.list")
            .into_iter()
            .map(|d| d.dataset.dataset)
            .find(|d| d.starts_with("bqb_drill_") && d.ends_with(&format!("_{dataset}")));
        if let Some(scratch) = found
            && bq
                .find_table(&TableRef::new(PROJECT, &scratch, "wide"))
                .await
                .expect("tables.get")
                .is_some()
        {
            break scratch;
        }
        assert!(
            Instant::now() < deadline,
            "the drill never created its tables"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill9();
    proxies.quiet_all().await;
    // A table of the scratch dataset with rows, as one the drill had filled before it died.
    let fixtures = crate::helpers::BigQueryFixtures::new();
    fixtures
        .create_table(
            &scratch,
            json!({ "tableReference": { "projectId": PROJECT, "datasetId": scratch, "tableId": "filled" },
                    "schema": { "fields": [{ "name": "id", "type": "INTEGER" }] } }),
        )
        .await;
    fixtures
        .insert_rows(&scratch, "filled", vec![json!({ "id": 1 })])
        .await;

    // Another instance notices the dead drill and removes its scratch dataset, all of it.
    let _second = Serve::start(&env).await;
    wait_until_dataset_gone(&scratch).await;
}

/// The source dataset `{prefix}_…` (`source_dataset`) backed up as AVRO into a new directory:
/// the dataset, the directory, its `file://` root and the backup id.
async fn avro_backup_of_source(prefix: &str) -> (String, tempfile::TempDir, String, String) {
    let dataset = source_dataset(prefix).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = format!("file://{}", dir.path().display());
    let backup_id = crate::helpers::avro_backup(&spawn_app().await, &dataset, &root).await;
    (dataset, dir, root, backup_id)
}

/// Waits until dataset `target` is gone (removed by the recovery of a dead restore).
async fn wait_until_dataset_gone(target: &str) {
    let bq = bigquery_client().await;
    let target_ref = bq_backup::domain::DatasetRef::new(PROJECT, target);
    let deadline = Instant::now() + Duration::from_secs(40);
    while bq
        .find_dataset(&target_ref)
        .await
        .expect("datasets.get")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the dataset the dead restore created is still there: {:?}",
            crate::restore_files::staging_tables(target).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Many processes finding the same dead claim at once: exactly one takes it over, every time,
/// on every kind of store (the takeover is a create-if-absent of the next epoch).
#[tokio::test]
async fn racers_for_one_dead_claim_leave_exactly_one_winner_on_every_store() {
    use bq_backup::catalog::lease::{Claim, Claimed, LeaseTiming};
    use bq_backup::domain::BackupId;
    let dir = tempfile::tempdir().expect("temp dir");
    let roots = [
        format!("file://{}", dir.path().display()),
        unique_root("s3"),
        unique_root("gs"),
        unique_root("az"),
    ];
    let id = BackupId::parse("20260101_000000").expect("id");
    for root in &roots {
        let store = open_store(root);
        for round in 0..10 {
            let claim_dir = Path::from(format!("round-{round}/_claim"));
            // A holder that died a minute ago.
            let dead = json!({ "backupId": id, "purpose": "backup", "holder": "dead",
                               "heartbeatAt": chrono::Utc::now() - chrono::Duration::minutes(1),
                               "staleAfterMs": 5000, "host": "gone" });
            store
                .object_store()
                .put(
                    &claim_dir.clone().join("00000000000000000001.json"),
                    dead.to_string().into(),
                )
                .await
                .expect("dead claim written");
            let racers = (0..6).map(|_| {
                let (os, claim_dir) = (store.object_store().clone(), claim_dir.clone());
                tokio::spawn(async move {
                    Claim::acquire(os, claim_dir, id, LeaseTiming::new(Duration::from_secs(5)))
                        .await
                })
            });
            let mut winners = Vec::new();
            for racer in futures::future::join_all(racers).await {
                match racer.expect("racer ran").expect("the store answers") {
                    Claimed::Held(claim) => winners.push(claim),
                    Claimed::Busy(_) => {}
                }
            }
            assert_eq!(winners.len(), 1, "{root}, round {round}");
            for claim in winners {
                claim.release().await;
            }
        }
    }
}

/// The temporary EXTRACT datasets of backup `backup_id` that exist (found by their labels).
async fn extract_datasets_of(backup_id: &str) -> Vec<String> {
    let url = format!(
        "{}/bigquery/v2/projects/{PROJECT}/datasets?all=true&maxResults=100000",
        TestServices::get().bigquery_rest
    );
    let list: Value = reqwest::get(url)
        .await
        .expect("the emulator answers")
        .json()
        .await
        .expect("a dataset list");
    list["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["labels"]["bq-backup-backup-id"] == backup_id)
        .filter_map(|d| d["datasetReference"]["datasetId"].as_str())
        .map(str::to_string)
        .collect()
}

async fn wait_for_extract_dataset(backup_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while extract_datasets_of(backup_id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "backup {backup_id} created no temporary dataset"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn snapshots_of_a_backup_killed_mid_extract_are_swept_by_the_next_extract_backup_and_a_running_ones_are_not()
 {
    let proxies = Proxies::lock().await;
    let dataset = crate::helpers::unique_dataset("crash_ex");
    let fixtures = crate::helpers::BigQueryFixtures::new();
    fixtures.create_dataset(&dataset, json!({})).await;
    crate::helpers::create_flat_table(&fixtures, &dataset).await;
    let state = tempfile::tempdir().expect("temp dir");
    let state_uri = format!("file://{}", state.path().display());
    // Every job insert waits two seconds: a backup is still snapshotting or extracting when
    // the test acts.
    proxies
        .configure(
            &proxies.bigquery,
            json!({ "pDelay": 1.0, "delaySecs": 2.0, "onlyMethods": "POST", "pathRegex": "/jobs$" }),
        )
        .await;
    let env = [
        ("BQB_BIGQUERY_ENDPOINT", proxies.bigquery.as_str()),
        ("BQB_STATE_URI", state_uri.as_str()),
    ];
    let root = unique_root("gs");
    let request = |minutes_ago: i64| {
        json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
            "backupStorage": { "uri": root, "exportOptions": { "format": "PARQUET" } },
            "method": "EXTRACT",
            "allowConcurrent": true,
            "asOf": (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339(),
        })
    };

    // Killed while it holds its snapshots: they outlive it.
    let mut first = Serve::start(&env).await;
    let (status, killed) = first.post("/api/v1/backup", &request(3)).await;
    assert_eq!(status, 202, "{killed}");
    let killed_id = killed["backupId"].as_str().expect("backupId").to_string();
    wait_for_extract_dataset(&killed_id).await;
    first.kill9();
    let second = Serve::start(&env).await;
    second
        .job_until(
            killed["jobId"].as_str().expect("jobId"),
            Duration::from_secs(30),
            |job| job["state"] == "FAILED",
        )
        .await;
    assert!(
        !extract_datasets_of(&killed_id).await.is_empty(),
        "the killed backup left its temporary dataset"
    );

    // A running backup of the same repository, holding its snapshots.
    let (status, running) = second.post("/api/v1/backup", &request(2)).await;
    assert_eq!(status, 202, "{running}");
    let running_id = running["backupId"].as_str().expect("backupId").to_string();
    wait_for_extract_dataset(&running_id).await;

    // The next EXTRACT backup sweeps the dead backup's dataset, not the running one's.
    let (status, next) = second.post("/api/v1/backup?wait=true", &request(1)).await;
    assert_eq!(status, 200, "{next}");
    assert!(
        extract_datasets_of(&killed_id).await.is_empty(),
        "the dead backup's snapshots were swept"
    );
    let done = second
        .job_ended(running["jobId"].as_str().expect("jobId"))
        .await;
    assert_eq!(
        done["state"], "SUCCEEDED",
        "the running backup kept its snapshots: {done}"
    );
    for id in [&running_id, next["backupId"].as_str().expect("backupId")] {
        assert!(
            extract_datasets_of(id).await.is_empty(),
            "{id} removed its own"
        );
    }
}
