//! Schedules run by the service itself (`BQB_SCHEDULE_FILE`): two replicas sharing one state
//! store and one schedule file run each tick once, the scheduled backups land in the
//! repository, `GET /api/v1/schedules` shows next runs, the newest claimed tick and failures,
//! and a bad schedule file stops `serve` with exit code 2 naming the schedule and field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, TestServices, create_flat_table, manifest_json, open_store,
    spawn_app, spawn_app_with, unique_dataset,
};

/// Writes a schedule file with one `[[schedule]]` per `(name, cron, request, extra TOML)`.
fn schedule_file(dir: &Path, schedules: &[(&str, &str, Value, &str)]) -> String {
    let mut text = String::new();
    for (name, cron, request, extra) in schedules {
        text.push_str(&format!(
            "[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\ntimezone = \"Europe/Berlin\"\n\
             kind = \"backup\"\nrequest = '''{request}'''\n{extra}\n\n"
        ));
    }
    let path = dir.join("schedules.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let resp = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

/// Every JSON object stored under `prefix` in the store at `uri`.
async fn stored_objects(uri: &str, prefix: &str) -> Vec<Value> {
    let store = open_store(uri);
    let os = store.object_store();
    let metas: Vec<_> = os
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut objects = Vec::new();
    for meta in metas {
        if !meta.location.as_ref().ends_with(".json") {
            continue;
        }
        let bytes = os.get(&meta.location).await.unwrap().bytes().await.unwrap();
        objects.push(serde_json::from_slice(&bytes).unwrap());
    }
    objects
}

async fn stop(mut app: TestApp) {
    app.shutdown.cancel();
    if let Some(handle) = app.handle.take() {
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the app stops")
            .expect("the app task ends")
            .expect("the app stops cleanly");
    }
}

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[tokio::test]
async fn two_replicas_run_each_tick_once_and_the_backups_land() {
    let fixtures = BigQueryFixtures::new();
    let dataset = unique_dataset("sched");
    fixtures.create_dataset(&dataset, json!({})).await;
    create_flat_table(&fixtures, &dataset).await;

    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    let repository_uri = format!("file://{}", repository.display());
    let state_uri = format!("file://{}", dir.path().join("state").display());
    // Every other second: ticks overlap with running backups, hence allowConcurrent.
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": repository_uri, "exportOptions": { "format": "JSON" } },
        "reason": "scheduled",
        "allowConcurrent": true
    });
    let file = schedule_file(dir.path(), &[("every-2s", "*/2 * * * * *", request, "")]);
    let settings = || {
        TestServices::get().settings_with(&[
            ("BQB_SCHEDULE_FILE", file.as_str()),
            ("BQB_STATE_URI", state_uri.as_str()),
        ])
    };
    let a = spawn_app_with(settings()).await;
    let b = spawn_app_with(settings()).await;

    // Wait for three scheduled backups to succeed (on either replica).
    let deadline = Instant::now() + Duration::from_secs(90);
    let succeeded = loop {
        let jobs = get_json(&a, "/api/v1/jobs?pageSize=1000").await;
        let done: Vec<Value> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["trigger"]["source"] == "schedule" && j["state"] == "SUCCEEDED")
            .cloned()
            .collect();
        if done.len() >= 3 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "three scheduled backups did not succeed in time: {jobs:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Both replicas list the schedule with next runs ahead and the newest claimed tick.
    let mut instances = BTreeSet::new();
    let mut claimers = Vec::new();
    for app in [&a, &b] {
        let listed = get_json(app, "/api/v1/schedules").await;
        instances.insert(listed["instance"].as_str().unwrap().to_string());
        let schedules = listed["schedules"].as_array().unwrap();
        assert_eq!(schedules.len(), 1, "{listed:#}");
        let s = &schedules[0];
        assert_eq!(s["name"], "every-2s");
        assert_eq!(s["kind"], "backup");
        assert_eq!(s["cron"], "*/2 * * * * *");
        assert_eq!(s["timezone"], "Europe/Berlin");
        assert_eq!(s["enabled"], true);
        let now = Utc::now() - chrono::Duration::seconds(1);
        let next: Vec<DateTime<Utc>> = s["nextRuns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                // The local time is the same instant on Berlin's wall clock.
                let local = DateTime::parse_from_rfc3339(r["local"].as_str().unwrap()).unwrap();
                let utc = instant(&r["utc"]);
                assert_eq!(local, utc, "{r}");
                assert!(
                    r["local"].as_str().unwrap().ends_with("+01:00")
                        || r["local"].as_str().unwrap().ends_with("+02:00")
                );
                utc
            })
            .collect();
        assert_eq!(next.len(), 3, "{s:#}");
        assert!(next[0] > now, "next runs lie ahead: {s:#}");
        assert!(
            next.windows(2)
                .all(|w| w[1] - w[0] == chrono::Duration::seconds(2))
        );
        // The newest claim, read from the shared store: at least as new as a finished job's.
        let claim = &s["lastClaim"];
        let newest_done = succeeded
            .iter()
            .map(|j| instant(&j["trigger"]["tick"]))
            .max()
            .unwrap();
        assert!(instant(&claim["tick"]["utc"]) >= newest_done, "{claim:#}");
        assert!(claim["error"].is_null(), "{claim:#}");
        claimers.push(claim["instance"].as_str().unwrap().to_string());
        assert!(s["lastError"].is_null(), "{s:#}");
    }
    assert_eq!(instances.len(), 2, "each replica has its own instance id");
    assert!(
        claimers.iter().all(|c| instances.contains(c)),
        "{claimers:?}"
    );

    stop(a).await;
    stop(b).await;

    // One job per tick, and it is the one its claim names.
    let claims = stored_objects(&state_uri, "schedules/every-2s").await;
    let jobs: Vec<Value> = stored_objects(&state_uri, "jobs")
        .await
        .into_iter()
        .filter(|j| j["trigger"]["source"] == "schedule")
        .collect();
    let mut jobs_per_tick: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for job in &jobs {
        assert_eq!(job["trigger"]["schedule"], "every-2s");
        let tick = job["trigger"]["tick"].as_str().unwrap().to_string();
        jobs_per_tick.entry(tick).or_default().push(job);
    }
    for (tick, jobs) in &jobs_per_tick {
        assert_eq!(jobs.len(), 1, "tick {tick} started {} jobs", jobs.len());
    }
    assert!(claims.len() >= 3, "{claims:#?}");
    let mut claimed_ticks = BTreeSet::new();
    for claim in &claims {
        let tick = instant(&claim["tick"]);
        assert!(claimed_ticks.insert(tick), "one claim per tick");
        assert_eq!(tick.timestamp() % 2, 0, "ticks are the cron's: {claim}");
        assert!(instances.contains(claim["instance"].as_str().unwrap()));
        if let Some(job_id) = claim["jobId"].as_str() {
            let job = jobs
                .iter()
                .find(|j| j["jobId"] == job_id)
                .unwrap_or_else(|| panic!("claim names a stored job: {claim}"));
            assert_eq!(instant(&job["trigger"]["tick"]), tick);
            assert_eq!(job["trigger"]["instance"], claim["instance"]);
        }
    }
    // Every scheduled job came from a claimed tick.
    for tick in jobs_per_tick.keys() {
        assert!(claimed_ticks.contains(&tick.parse::<DateTime<Utc>>().unwrap()));
    }

    // The succeeded backups are complete in the repository, each a different backup.
    let mut ids = BTreeSet::new();
    for job in &succeeded {
        let id = job["backupId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "backup ids differ");
        let manifest = manifest_json(&repository, id);
        assert_eq!(manifest["status"], "COMPLETE");
        assert_eq!(manifest["reason"], "scheduled");
    }
}

#[tokio::test]
async fn a_tick_that_cannot_start_its_job_is_reported_and_a_disabled_schedule_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state_uri = format!("memory://sched-{}", uuid::Uuid::new_v4().simple());
    let missing = unique_dataset("sched_missing");
    let request = |dataset: &str| {
        json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
            "backupStorage": { "uri": format!("file://{}", dir.path().join("repo").display()) }
        })
    };
    let file = schedule_file(
        dir.path(),
        &[
            ("missing-dataset", "* * * * * *", request(&missing), ""),
            (
                "paused",
                "* * * * * *",
                request(&missing),
                "enabled = false",
            ),
        ],
    );
    let app = spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_SCHEDULE_FILE", file.as_str()),
        ("BQB_STATE_URI", state_uri.as_str()),
    ]))
    .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = get_json(&app, "/api/v1/schedules").await;
        if listed["schedules"][0]["lastClaim"]["error"].is_object() {
            break listed;
        }
        assert!(Instant::now() < deadline, "no failed tick: {listed:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let failing = &listed["schedules"][0];
    assert_eq!(failing["name"], "missing-dataset");
    let error = &failing["lastError"];
    assert_eq!(error["errorCode"], "RESOURCE_NOT_FOUND", "{failing:#}");
    assert!(
        error["message"].as_str().unwrap().contains(&missing),
        "{error}"
    );
    let claim = &failing["lastClaim"];
    assert!(claim["jobId"].is_null(), "{claim}");
    assert_eq!(claim["error"]["errorCode"], "RESOURCE_NOT_FOUND");
    assert_eq!(claim["instance"], listed["instance"]);

    let paused = &listed["schedules"][1];
    assert_eq!(paused["name"], "paused");
    assert_eq!(paused["enabled"], false);
    assert_eq!(paused["nextRuns"], json!([]));
    assert!(
        paused["lastClaim"].is_null() && paused["lastError"].is_null(),
        "{paused:#}"
    );

    // No job was started, and the disabled schedule claimed nothing.
    let jobs = get_json(&app, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "{jobs:#}");
    assert!(
        stored_objects(&state_uri, "schedules/paused")
            .await
            .is_empty()
    );
    stop(app).await;
}

#[tokio::test]
async fn without_a_schedule_file_the_list_is_empty() {
    let app = spawn_app().await;
    let listed = get_json(&app, "/api/v1/schedules").await;
    assert_eq!(listed["schedules"], json!([]));
    assert!(!listed["instance"].as_str().unwrap().is_empty(), "{listed}");
}

#[test]
fn serve_refuses_a_bad_schedule_file_naming_the_file_schedule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedules.toml");
    std::fs::write(
        &path,
        r#"
[[schedule]]
name = "nightly"
cron = "30 25 * * *"
kind = "backup"
request = '{ "bigQuery": { "projectId": "p" }, "backupStorage": { "uri": "ftp://x" } }'
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bq-backup"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BQB_SCHEDULE_FILE", &path)
        .env("PORT", "0")
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let file = path.display().to_string();
    for needle in [
        format!("BQB_SCHEDULE_FILE {file} is invalid: schedule[\"nightly\"].cron:"),
        format!(
            "BQB_SCHEDULE_FILE {file} is invalid: schedule[\"nightly\"].request.backupStorage.uri:"
        ),
    ] {
        assert!(stderr.contains(&needle), "{needle} missing from {stderr}");
    }
}

#[test]
fn serve_refuses_a_schedule_whose_storage_is_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedules.toml");
    // A valid schedule, but its repository is a local directory the (default) allow-list
    // does not serve: every tick would be refused, so the start is.
    std::fs::write(
        &path,
        format!(
            r#"
[[schedule]]
name = "local"
cron = "0 3 * * *"
kind = "backup"
request = '{{ "bigQuery": {{ "projectId": "test-project" }}, "backupStorage": {{ "uri": "file://{}/repo" }} }}'
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bq-backup"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BQB_SCHEDULE_FILE", &path)
        .env(
            "BQB_STATE_URI",
            format!("file://{}/state", dir.path().display()),
        )
        .env("BQB_HOST", "127.0.0.1")
        .env("PORT", "0")
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that accepted the file would run until stopped: give it 30 s, then stop it, so
    // that the test fails instead of hanging.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let needle = format!(
        "BQB_SCHEDULE_FILE {} is invalid: schedule[\"local\"].request.backupStorage.uri:",
        path.display()
    );
    assert!(stderr.contains(&needle), "{needle} missing from {stderr}");
    assert!(
        stderr.contains("file:// storage is not allowed"),
        "{stderr}"
    );
    assert!(!dir.path().join("repo").exists());
}
