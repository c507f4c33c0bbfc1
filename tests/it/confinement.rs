//! Storage confinement (`BQB_ALLOWED_STORAGE`): `serve` opens only the storage its operator
//! allows, wherever a caller names it (backup, restore, dry runs, Pub/Sub, every catalog
//! route), no URI climbs out of an allowed directory, and a read never creates anything.

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{BUCKET, PROJECT, TestApp, TestServices, spawn_app_with};

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A server allowed one temporary directory and one prefix of the test bucket; a sibling
/// directory outside it. Both directories go when the test ends, passed or not.
async fn confined_app() -> (TestApp, tempfile::TempDir, tempfile::TempDir) {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let list = format!("file://{},gs://{BUCKET}/allowed", allowed.path().display());
    let app = spawn_app_with(
        TestServices::get().settings_with(&[("BQB_ALLOWED_STORAGE", list.as_str())]),
    )
    .await;
    (app, allowed, outside)
}

fn backup_to(storage: Value) -> Value {
    json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": "any_dataset" }] },
        "backupStorage": storage
    })
}

fn restore_from(storage: Value) -> Value {
    json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": storage,
        "backupId": "20260101_000000"
    })
}

/// Asserts a 400 VALIDATION_ERROR whose first detail names `field` and says why.
#[track_caller]
fn assert_refused(status: u16, body: &Value, field: &str, why: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorCode"], "VALIDATION_ERROR", "{body}");
    assert_eq!(body["details"][0]["field"], field, "{body}");
    let message = body["details"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "`{why}` missing: {body}");
}

async fn request(app: &TestApp, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.client.request(method, app.url(path));
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.expect("server answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_refuses_storage_outside_the_allowed_prefixes_and_writes_nothing_there() {
    let (app, _allowed, outside) = confined_app().await;
    let target = outside.path().join("made-by-a-caller");
    let target_uri = format!("file://{}", target.display());

    let refused_backups = [
        (backup_to(json!({ "uri": target_uri })), "backupStorage.uri"),
        (
            {
                let mut dry = backup_to(json!({ "uri": target_uri }));
                dry["dryRun"] = json!(true);
                dry
            },
            "backupStorage.uri",
        ),
        // Whole segments: `allowed2` is not under `allowed`; the bucket must match exactly.
        (
            backup_to(json!({ "gcsOptions": { "uri": format!("gs://{BUCKET}/allowed2") } })),
            "backupStorage.gcsOptions.uri",
        ),
        (
            backup_to(json!({ "gcsOptions": { "uri": "gs://another-bucket/allowed" } })),
            "backupStorage.gcsOptions.uri",
        ),
        (
            backup_to(json!({ "uri": "memory://anything" })),
            "backupStorage.uri",
        ),
    ];
    for (body, field) in &refused_backups {
        let (status, answer) = app.post_json("/api/v1/backup", body).await;
        assert_refused(status, &answer, field, "is refused");
    }

    let refused_restores = [
        (
            restore_from(json!({ "uri": target_uri })),
            "restoreStorage.uri",
        ),
        (
            restore_from(json!({ "gcsOptions": { "uri": format!("gs://{BUCKET}/elsewhere") } })),
            "restoreStorage.gcsOptions.uri",
        ),
    ];
    for (body, field) in &refused_restores {
        let (status, answer) = app.post_json("/api/v1/restore", body).await;
        assert_refused(status, &answer, field, "is refused");
    }

    // A Pub/Sub push carries the same request: refused the same way.
    let data = base64::engine::general_purpose::STANDARD
        .encode(backup_to(json!({ "uri": target_uri })).to_string());
    let envelope = json!({
        "message": { "data": data, "messageId": format!("confine-{}", uuid::Uuid::new_v4()) },
        "subscription": "projects/test-project/subscriptions/bq-backup"
    });
    let (status, answer) = app.post_json("/api/v1/backup", &envelope).await;
    assert_refused(status, &answer, "backupStorage.uri", "is refused");

    let uri = enc(&target_uri);
    for (method, path, body) in catalog_requests(&uri) {
        let (status, answer) = request(&app, method, &path, body.as_ref()).await;
        assert_refused(status, &answer, "uri", "is refused");
    }

    assert!(
        !target.exists(),
        "nothing was created at {}",
        target.display()
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing was written outside the allowed directory"
    );
}

#[tokio::test]
async fn a_read_of_a_missing_allowed_directory_is_a_404_naming_the_field_and_creates_nothing() {
    let (app, allowed, _outside) = confined_app().await;
    let missing = allowed.path().join("no/such/repository");
    let missing_uri = format!("file://{}", missing.display());
    let uri = enc(&missing_uri);

    for (method, path, body) in catalog_requests(&uri) {
        let (status, answer) = request(&app, method, &path, body.as_ref()).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["errorCode"], "RESOURCE_NOT_FOUND", "{answer}");
        assert_eq!(answer["details"][0]["field"], "uri", "{answer}");
    }
    let (status, answer) = app
        .post_json(
            "/api/v1/restore",
            &restore_from(json!({ "uri": missing_uri })),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["details"][0]["field"], "restoreStorage.uri",
        "{answer}"
    );

    assert!(
        !allowed.path().join("no").exists(),
        "a read created {}",
        missing.display()
    );
}

#[tokio::test]
async fn dot_segments_and_symlinks_cannot_lead_out_of_an_allowed_directory() {
    let (app, allowed, outside) = confined_app().await;
    let outside_name = outside.path().file_name().unwrap().to_string_lossy();

    // `..`, and its percent-encoded spellings, are refused by the URI parser itself.
    let climbing = format!("file://{}/../{outside_name}", allowed.path().display());
    let (status, answer) = app
        .post_json("/api/v1/backup", &backup_to(json!({ "uri": climbing })))
        .await;
    assert_refused(status, &answer, "backupStorage.uri", "`..`");
    for spelling in ["%2e%2e", "%2E%2E", "..%2F..", ".%2e"] {
        let uri = format!(
            "file://{}/{spelling}/{outside_name}",
            allowed.path().display()
        );
        let (status, answer) = app
            .get_json(&format!("/api/v1/backups?uri={}", enc(&uri)))
            .await;
        assert_refused(status, &answer, "uri", "`..`");
    }

    // A symlink inside the allowed directory that leads out of it is followed, and refused.
    let link = allowed.path().join("link");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    let through_link = format!("file://{}/new/tree", link.display());
    let (status, answer) = app
        .get_json(&format!("/api/v1/backups?uri={}", enc(&through_link)))
        .await;
    assert_refused(status, &answer, "uri", "outside the directories");
    let (status, answer) = app
        .post_json("/api/v1/backup", &backup_to(json!({ "uri": through_link })))
        .await;
    assert_refused(
        status,
        &answer,
        "backupStorage.uri",
        "outside the directories",
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing was created through the link"
    );
}

#[tokio::test]
async fn by_default_serve_refuses_memory_and_local_storage_but_not_cloud_buckets() {
    // An empty value is an unset setting: the service's default applies. The job records still
    // live in memory:// (BQB_STATE_URI is the operator's, not a caller's, and needs no entry).
    let app =
        spawn_app_with(TestServices::get().settings_with(&[("BQB_ALLOWED_STORAGE", "")])).await;
    let local = tempfile::tempdir().unwrap();

    let (status, answer) = app
        .post_json(
            "/api/v1/backup",
            &backup_to(json!({ "uri": "memory://confine" })),
        )
        .await;
    assert_refused(
        status,
        &answer,
        "backupStorage.uri",
        "memory:// storage is not allowed on this server",
    );
    let (status, answer) = app.get_json("/api/v1/backups?uri=memory://confine").await;
    assert_refused(status, &answer, "uri", "memory:// storage is not allowed");
    let (status, answer) = app
        .get_json(&format!(
            "/api/v1/backups?uri={}",
            enc(&format!("file://{}", local.path().display()))
        ))
        .await;
    assert_refused(status, &answer, "uri", "file:// storage is not allowed");

    let bucket = format!("s3://{BUCKET}/confine-{}", uuid::Uuid::new_v4().simple());
    let (status, page) = app
        .get_json(&format!("/api/v1/backups?uri={}", enc(&bucket)))
        .await;
    assert_eq!(status, 200, "any bucket is allowed by default: {page}");
    let (status, jobs) = app.get_json("/api/v1/jobs").await;
    assert_eq!(status, 200, "the memory:// state store works: {jobs}");
}

/// Every catalog request naming the (encoded) repository `uri`: list, show, verify, delete,
/// prune.
fn catalog_requests(uri: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", format!("/api/v1/backups?uri={uri}"), None),
        (
            "GET",
            format!("/api/v1/backups/20260101_000000?uri={uri}"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/backups/20260101_000000:verify?uri={uri}"),
            None,
        ),
        (
            "DELETE",
            format!("/api/v1/backups/20260101_000000?uri={uri}"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/backups:prune?uri={uri}"),
            Some(json!({ "keepLast": 1 })),
        ),
    ]
}
