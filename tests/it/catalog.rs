//! The catalog: list, show and verify, from manifests in a real store.

use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, dataset_of, spawn_app, unique_dataset, unique_root,
};

/// A dataset with one small table.
async fn dataset() -> String {
    let dataset = unique_dataset("cat");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "t" },
                "schema": { "fields": [{ "name": "id", "type": "INT64" }, { "name": "s", "type": "STRING" }] } }),
    )
    .await;
    f.insert_rows(
        &dataset,
        "t",
        (0..50)
            .map(|i| json!({ "id": i, "s": format!("row {i}") }))
            .collect(),
    )
    .await;
    dataset
}

/// A backup of `dataset` into `root` taken `minutes_ago`, with a label; returns its id.
async fn backup(app: &TestApp, dataset: &str, root: &str, minutes_ago: i64, label: &str) -> String {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "JSON" } },
        "asOf": at.to_rfc3339(), "reason": format!("reason {minutes_ago}"), "labels": { "kind": label }
    });
    let (status, report) = app.post_json("/api/v1/backup?wait=true", &body).await;
    assert_eq!(status, 200, "{report}");
    report["backupId"].as_str().unwrap().to_string()
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.client.get(app.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backupId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn backups_are_listed_newest_first_filtered_and_paginated() {
    let app = spawn_app().await;
    let (a, b) = (dataset().await, dataset().await);
    let root = unique_root("s3");
    let oldest = backup(&app, &a, &root, 3, "daily").await;
    let middle = backup(&app, &b, &root, 2, "weekly").await;
    let newest = backup(&app, &a, &root, 1, "daily").await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let base = format!("/api/v1/backups?uri={}", enc(&root));

    let (status, page) = get(&app, &base).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids(&page),
        [newest.as_str(), middle.as_str(), oldest.as_str()]
    );
    assert_eq!(page["backups"][0]["tables"], 1);
    assert_eq!(page["backups"][0]["rows"], 50);
    assert_eq!(page["backups"][0]["reason"], "reason 1");

    assert_eq!(
        ids(&get(&app, &format!("{base}&dataset={b}")).await.1),
        [middle.as_str()]
    );
    assert_eq!(
        ids(&get(&app, &format!("{base}&label=kind:daily")).await.1),
        [newest.as_str(), oldest.as_str()]
    );
    assert_eq!(
        ids(&get(&app, &format!("{base}&project={PROJECT}&label=kind"))
            .await
            .1)
        .len(),
        3
    );

    let (_, first) = get(&app, &format!("{base}&pageSize=2")).await;
    assert_eq!(ids(&first), [newest.as_str(), middle.as_str()]);
    let token = first["nextPageToken"].as_str().expect("a next page");
    let (_, second) = get(&app, &format!("{base}&pageSize=2&pageToken={token}")).await;
    assert_eq!(ids(&second), [oldest.as_str()]);
    assert!(second["nextPageToken"].is_null());

    // An incomplete backup (no manifest) is never listed.
    let store = crate::helpers::open_store(&root);
    let stray = object_store::path::Path::from("backups/20260101_000000/x/part-00000.json");
    object_store::ObjectStoreExt::put(
        store.object_store().as_ref(),
        &stray,
        bytes::Bytes::from_static(b"{}").into(),
    )
    .await
    .unwrap();
    assert_eq!(ids(&get(&app, &base).await.1).len(), 3);
}

#[tokio::test]
async fn a_damaged_manifest_is_reported_beside_the_listing_and_hides_no_other_backup() {
    let app = spawn_app().await;
    let data = dataset().await;
    let root = unique_root("file");
    let oldest = backup(&app, &data, &root, 3, "daily").await;
    let middle = backup(&app, &data, &root, 2, "daily").await;
    let newest = backup(&app, &data, &root, 1, "daily").await;
    let store = crate::helpers::open_store(&root);
    let key = format!("backups/{middle}/manifest.json");
    object_store::ObjectStoreExt::put(
        store.object_store().as_ref(),
        &object_store::path::Path::from(key.as_str()),
        bytes::Bytes::from_static(b"{ not json").into(),
    )
    .await
    .unwrap();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let base = format!("/api/v1/backups?uri={}", enc(&root));

    let (status, page) = get(&app, &base).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [newest.as_str(), oldest.as_str()]);
    let damaged = page["damaged"]
        .as_array()
        .expect("damaged backups reported");
    assert_eq!(damaged.len(), 1, "{page}");
    assert_eq!(damaged[0]["backupId"], middle.as_str());
    assert!(
        damaged[0]["problem"].as_str().unwrap().contains(&key),
        "the problem names the manifest: {page}"
    );

    // Paginated, the damaged backup is reported once, on the page that reached past it.
    let (_, first) = get(&app, &format!("{base}&pageSize=1")).await;
    assert_eq!(ids(&first), [newest.as_str()]);
    assert!(first.get("damaged").is_none(), "{first}");
    let token = first["nextPageToken"].as_str().expect("a next page");
    let (_, second) = get(&app, &format!("{base}&pageSize=1&pageToken={token}")).await;
    assert_eq!(ids(&second), [oldest.as_str()]);
    assert_eq!(
        second["damaged"][0]["backupId"],
        middle.as_str(),
        "{second}"
    );
}

#[tokio::test]
async fn an_expired_backup_is_listed_as_expired() {
    let app = spawn_app().await;
    let ds = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &ds, &root, 1, "x").await;
    let path = dir.path().join(format!("backups/{id}/manifest.json"));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["expiresAt"] = json!("2026-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let base = format!("/api/v1/backups?uri=file://{}", dir.path().display());
    let (_, page) = get(&app, &format!("{base}&status=EXPIRED")).await;
    assert_eq!(ids(&page), [id.as_str()]);
    assert_eq!(page["backups"][0]["status"], "EXPIRED");
    assert!(ids(&get(&app, &format!("{base}&status=COMPLETE")).await.1).is_empty());
}

#[tokio::test]
async fn show_gives_tables_rows_files_and_the_request() {
    let app = spawn_app().await;
    let ds = dataset().await;
    let root = unique_root("az");
    let id = backup(&app, &ds, &root, 1, "x").await;
    let enc: String = url::form_urlencoded::byte_serialize(root.as_bytes()).collect();
    let (status, body) = get(&app, &format!("/api/v1/backups/{id}?uri={enc}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backupId"], id.as_str());
    assert_eq!(body["tables"][0]["table"]["tableId"], "t");
    assert_eq!(body["tables"][0]["rows"], 50);
    assert_eq!(body["tables"][0]["files"], 1);
    assert_eq!(body["labels"]["kind"], "x");
    assert!(
        body["request"]["asOf"].is_string(),
        "the request as received"
    );
    let (status, missing) = get(&app, &format!("/api/v1/backups/20200101_000000?uri={enc}")).await;
    assert_eq!(status, 404, "{missing}");
}

#[tokio::test]
async fn verify_reports_every_damaged_file_by_name() {
    let app = spawn_app().await;
    let f = BigQueryFixtures::new();
    let ds = dataset().await;
    f.create_table(
        &ds,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": ds, "tableId": "u" },
                "schema": { "fields": [{ "name": "id", "type": "INT64" }] } }),
    )
    .await;
    f.insert_rows(&ds, "u", (0..10).map(|i| json!({ "id": i })).collect())
        .await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &ds, &root, 1, "x").await;
    let verify = format!("/api/v1/backups/{id}:verify?uri={root}");

    let (status, clean) = app.post_json(&verify, &json!({ "wait": true })).await;
    assert_eq!(status, 200, "{clean}");
    assert_eq!(clean["ok"], true, "{clean}");
    assert_eq!(clean["filesChecked"], 2);
    assert_eq!(clean["rowsChecked"], 60);

    let manifest: Value = crate::helpers::manifest_json(dir.path(), &id);
    let files: Vec<String> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["files"][0]["path"].as_str().unwrap().to_string())
        .collect();
    let truncated = dir.path().join(&files[0]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let tampered = dir.path().join(&files[1]);
    let mut bytes = std::fs::read(&tampered).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&tampered, bytes).unwrap();

    let (status, report) = app.post_json(&verify, &json!({ "wait": true })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], false);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{report}");
    let named: Vec<&str> = findings
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    for file in &files {
        assert!(
            named.contains(&file.as_str()),
            "{file} not named in {report}"
        );
    }
    assert!(
        report.to_string().contains("bytes, the manifest says"),
        "{report}"
    );
    assert!(report.to_string().contains("SHA-256"), "{report}");
}

#[tokio::test]
async fn verify_runs_as_a_job_and_reads_only_a_sample_when_asked() {
    let app = spawn_app().await;
    let ds = dataset_of(4).await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &ds, &root, 1, "x").await;
    let verify = format!("/api/v1/backups/{id}:verify?uri={root}");

    // Accepted as a job; its result is the report.
    let (status, accepted) = app.post_json(&verify, &json!({})).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["kind"], "VERIFY", "{accepted}");
    assert_eq!(accepted["backupId"], id.as_str(), "{accepted}");
    let job = app
        .wait_for_job(accepted["jobId"].as_str().expect("jobId"))
        .await;
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["ok"], true, "{job}");
    assert_eq!(job["result"]["filesChecked"], 4, "{job}");
    assert_eq!(job["result"]["filesRead"], 4, "{job}");
    let (_, listed) = app.get_json("/api/v1/jobs?kind=VERIFY").await;
    assert!(
        listed["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["jobId"] == accepted["jobId"])),
        "{listed}"
    );

    // A sample reads some files in full and only looks for the others.
    for (sample, read) in [(json!("50%"), 2), (json!(1), 1), (json!("100%"), 4)] {
        let (status, report) = app
            .post_json(&verify, &json!({ "sample": sample, "wait": true }))
            .await;
        assert_eq!(status, 200, "{sample}: {report}");
        assert_eq!(report["ok"], true, "{sample}: {report}");
        assert_eq!(report["filesChecked"], 4, "{sample}: {report}");
        assert_eq!(report["filesRead"], read, "{sample}: {report}");
        assert_eq!(report["rowsChecked"], 20 * read, "{sample}: {report}");
    }

    // A file gone is found whether or not the sample reads it.
    let manifest = crate::helpers::manifest_json(dir.path(), &id);
    let gone = manifest["tables"][2]["files"][0]["path"]
        .as_str()
        .expect("a file")
        .to_string();
    std::fs::remove_file(dir.path().join(&gone)).unwrap();
    for _ in 0..3 {
        let (status, report) = app
            .post_json(&format!("{verify}&wait=true"), &json!({ "sample": 1 }))
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["ok"], false, "{report}");
        assert_eq!(report["findings"][0]["file"], gone.as_str(), "{report}");
        assert!(
            report["findings"][0]["problem"]
                .as_str()
                .is_some_and(|p| p.contains("missing")),
            "{report}"
        );
    }
}

#[tokio::test]
async fn a_verify_of_a_bad_sample_or_a_missing_backup_starts_no_job() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    for (body, field) in [
        (json!({ "sample": "0%" }), "sample"),
        (json!({ "sample": "half" }), "sample"),
        (json!({ "sample": 0 }), "sample"),
        (json!({ "sampel": 3 }), "body"),
    ] {
        let (status, answer) = app
            .post_json(
                &format!("/api/v1/backups/20260101_000000:verify?uri={root}"),
                &body,
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        let named = answer["details"].as_array().is_some_and(|d| {
            d.iter().any(|d| {
                d["field"] == field
                    || (field == "body"
                        && d["message"].as_str().is_some_and(|m| m.contains("sampel")))
            })
        });
        assert!(named, "{body}: {answer}");
    }
    let (status, answer) = app
        .post_json(
            &format!("/api/v1/backups/20260101_000000:verify?uri={root}"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    let (_, listed) = app.get_json("/api/v1/jobs?kind=VERIFY").await;
    assert_eq!(listed["jobs"], json!([]), "{listed}");
}

#[tokio::test]
async fn catalog_requests_with_bad_parameters_are_400s_naming_them() {
    let app = spawn_app().await;
    for (path, field) in [
        ("/api/v1/backups", "uri"),
        ("/api/v1/backups?uri=ftp://x", "uri"),
        ("/api/v1/backups?uri=s3://bqb-test/x&pageSize=0", "pageSize"),
        (
            "/api/v1/backups?uri=s3://bqb-test/x&pageToken=nope",
            "pageToken",
        ),
        ("/api/v1/backups?uri=s3://bqb-test/x&status=GONE", "status"),
        ("/api/v1/backups/not-an-id?uri=s3://bqb-test/x", "id"),
    ] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["details"][0]["field"], field, "{path}: {body}");
    }
    let (status, _) = get(&app, "/api/v1/backups?uri=s3://bqb-test/x&sort=new").await;
    assert_eq!(status, 400, "unknown query parameters are refused");
}

#[tokio::test]
async fn delete_removes_the_manifest_then_the_files_and_refuses_while_a_restore_reads() {
    let app = spawn_app().await;
    let ds = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &ds, &root, 1, "x").await;
    let url = app.url(&format!("/api/v1/backups/{id}?uri={root}"));

    // A live restore lease (as a running restore on any instance writes it) blocks deletion.
    let lease = dir.path().join(format!("backups/{id}/_restore-abc.json"));
    std::fs::write(
        &lease,
        json!({ "backupId": id, "heartbeatAt": chrono::Utc::now() }).to_string(),
    )
    .unwrap();
    let resp = app.client.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    assert!(
        dir.path()
            .join(format!("backups/{id}/manifest.json"))
            .exists()
    );

    // A stale lease (its restore died) does not.
    std::fs::write(
        &lease,
        json!({ "backupId": id, "heartbeatAt": "2026-01-01T00:00:00Z" }).to_string(),
    )
    .unwrap();
    let resp = app.client.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["backupId"], id.as_str());
    assert!(body["filesDeleted"].as_u64().unwrap() >= 2, "{body}");
    assert!(
        !dir.path().join(format!("backups/{id}")).exists()
            || std::fs::read_dir(dir.path().join(format!("backups/{id}")))
                .unwrap()
                .next()
                .is_none()
    );
    let (_, page) = get(&app, &format!("/api/v1/backups?uri={root}")).await;
    assert!(ids(&page).is_empty());
    assert_eq!(app.client.delete(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn prune_applies_the_keep_policy_and_a_dry_run_deletes_nothing() {
    let app = spawn_app().await;
    let ds = dataset().await;
    let root = unique_root("gs");
    let mut made = Vec::new();
    for minutes in [4, 3, 2, 1] {
        made.push(backup(&app, &ds, &root, minutes, "x").await);
    }
    let enc: String = url::form_urlencoded::byte_serialize(root.as_bytes()).collect();
    let prune = format!("/api/v1/backups:prune?uri={enc}");

    // A policy that keeps nothing, or a body that is no policy, is refused, naming the field,
    // and deletes nothing.
    for (policy, field) in [
        (json!({ "keepLast": 0 }), "keepLast"),
        (json!({ "keepLast": 0, "dryRun": true }), "keepLast"),
        (json!({ "keepLast": 2, "keepDaily": 0 }), "keepDaily"),
        (json!({}), "body"),
        (json!({ "dryRun": false }), "body"),
        (json!({ "keepLast": 2, "expiredOnly": true }), "expiredOnly"),
        (json!({ "keepLast": 2, "dryRun": "yes" }), "dryRun"),
        (json!({ "keepLsat": 2 }), "keepLsat"),
    ] {
        let (status, bad) = app.post_json(&prune, &policy).await;
        assert_eq!(status, 400, "{policy}: {bad}");
        assert_eq!(bad["details"][0]["field"], field, "{policy}: {bad}");
    }
    let resp = app.client.post(app.url(&prune)).send().await.unwrap();
    assert_eq!(resp.status(), 400, "an empty body keeps nothing either");
    assert_eq!(
        ids(&get(&app, &format!("/api/v1/backups?uri={enc}")).await.1).len(),
        4,
        "a refused policy deletes nothing"
    );
    // Expired backups only, said explicitly: none has expired here.
    let (status, expired) = app.post_json(&prune, &json!({ "expiredOnly": true })).await;
    assert_eq!(status, 200, "{expired}");
    assert_eq!(expired["deleted"], json!([]), "{expired}");

    let (status, dry) = app
        .post_json(&prune, &json!({ "keepLast": 2, "dryRun": true }))
        .await;
    assert_eq!(status, 200, "{dry}");
    let keep: Vec<&str> = dry["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["backupId"].as_str().unwrap())
        .collect();
    assert_eq!(keep, [made[3].as_str(), made[2].as_str()]);
    assert!(dry["deleted"].as_array().unwrap().is_empty());
    assert_eq!(
        ids(&get(&app, &format!("/api/v1/backups?uri={enc}")).await.1).len(),
        4,
        "a dry run deletes nothing"
    );

    let (status, done) = app.post_json(&prune, &json!({ "keepLast": 2 })).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["deleted"], json!([made[1], made[0]]));
    assert_eq!(
        ids(&get(&app, &format!("/api/v1/backups?uri={enc}")).await.1),
        [made[3].as_str(), made[2].as_str()]
    );

    let (status, bad) = app.post_json(&prune, &json!({ "keepLast": -1 })).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["details"][0]["field"], "keepLast");
}

#[tokio::test]
async fn prune_keeps_a_backup_a_restore_is_reading_and_says_why() {
    let app = spawn_app().await;
    let ds = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let older = backup(&app, &ds, &root, 2, "x").await;
    let newer = backup(&app, &ds, &root, 1, "x").await;
    let prune = format!("/api/v1/backups:prune?uri={root}");

    // A live restore lease on the backup the policy lets go, as a running restore writes it.
    let lease = dir.path().join(format!("backups/{older}/_restore-it.json"));
    std::fs::write(
        &lease,
        json!({ "backupId": older, "heartbeatAt": chrono::Utc::now() }).to_string(),
    )
    .unwrap();
    let decision_of = |report: &Value, id: &str| -> Value {
        report["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["backupId"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no decision for {id}: {report}"))
    };
    for body in [
        json!({ "keepLast": 1, "dryRun": true }),
        json!({ "keepLast": 1 }),
    ] {
        let (status, report) = app.post_json(&prune, &body).await;
        assert_eq!(status, 200, "{report}");
        let kept = decision_of(&report, &older);
        assert_eq!(kept["keep"], true, "{body}: {report}");
        assert!(
            kept["reasons"][0]
                .as_str()
                .unwrap()
                .contains("a restore is reading it"),
            "{report}"
        );
        assert_eq!(report["deleted"], json!([]), "{report}");
    }
    assert!(
        dir.path()
            .join(format!("backups/{older}/manifest.json"))
            .exists()
    );
    assert_eq!(
        ids(&get(&app, &format!("/api/v1/backups?uri={root}")).await.1),
        [newer.as_str(), older.as_str()]
    );

    // Once the lease is stale (its restore died), the policy applies again.
    std::fs::write(
        &lease,
        json!({ "backupId": older, "heartbeatAt": "2026-01-01T00:00:00Z" }).to_string(),
    )
    .unwrap();
    let (status, report) = app.post_json(&prune, &json!({ "keepLast": 1 })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["deleted"], json!([older]), "{report}");
}

#[tokio::test]
async fn a_restore_leaves_no_lease_behind_when_done() {
    let app = spawn_app().await;
    let ds = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("file://{}", dir.path().display());
    let id = backup(&app, &ds, &root, 1, "x").await;
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [ds] },
        "restoreStorage": { "uri": root }, "backupId": id
    });
    let (status, report) = app.post_json("/api/v1/restore?wait=true", &request).await;
    assert_eq!(status, 200, "{report}");
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join(format!("backups/{id}")))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("_restore-"))
        .collect();
    assert!(leftovers.is_empty(), "the lease is released: {leftovers:?}");
}
