//! Errors that say whose fault they are: a bucket or container that does not exist is the
//! caller's mistake (404 naming the request field that holds the URI), never a 502; and every
//! error body is JSON, the ones the HTTP stack produces included.

use serde_json::{Value, json};

use crate::helpers::{BigQueryFixtures, PROJECT, TestApp, spawn_app, unique_dataset};

/// A dataset with one small table, enough to plan a backup.
async fn small_dataset() -> String {
    let dataset = unique_dataset("blame");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({
            "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "t" },
            "schema": { "fields": [{ "name": "id", "type": "INT64" }] }
        }),
    )
    .await;
    f.insert_rows(&dataset, "t", vec![json!({ "id": 1 })]).await;
    dataset
}

/// Repositories whose bucket or container does not exist, one per cloud store, each given in
/// the field a caller would use for it (gs:// through the Java field).
fn missing_roots(section: &str) -> [(String, &'static str, String); 3] {
    [
        (
            format!("{section}.uri"),
            "s3://no-such-bucket/x",
            "no-such-bucket".into(),
        ),
        (
            format!("{section}.gcsOptions.uri"),
            "gs://no-such-bucket/x",
            "no-such-bucket".into(),
        ),
        (
            format!("{section}.uri"),
            "az://no-such-container/x",
            "no-such-container".into(),
        ),
    ]
}

/// `storage` with the URI at `field` (`…Storage.uri` or `…Storage.gcsOptions.uri`).
fn storage_section(field: &str, uri: &str) -> Value {
    if field.ends_with(".gcsOptions.uri") {
        json!({ "gcsOptions": { "uri": uri } })
    } else {
        json!({ "uri": uri })
    }
}

fn assert_names_the_missing_root(answer: &Value, field: &str, name: &str, context: &str) {
    assert_eq!(
        answer["errorCode"], "RESOURCE_NOT_FOUND",
        "{context}: {answer}"
    );
    let details = answer["details"].as_array().cloned().unwrap_or_default();
    let detail = details
        .iter()
        .find(|d| d["field"] == field)
        .unwrap_or_else(|| panic!("{context}: no detail names {field}: {answer}"));
    assert!(
        detail["message"]
            .as_str()
            .is_some_and(|m| m.contains(name) && m.contains("does not exist")),
        "{context}: the detail says which bucket is missing: {answer}"
    );
}

#[tokio::test]
async fn a_backup_to_a_bucket_or_container_that_does_not_exist_is_refused_at_once_naming_the_field()
{
    let app = spawn_app().await;
    let dataset = small_dataset().await;
    for (field, uri, name) in missing_roots("backupStorage") {
        let body = json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
            "backupStorage": storage_section(&field, uri),
        });
        // Without waiting: the caller learns it now, not from a job that fails later.
        let (status, answer) = app.post_json("/api/v1/backup", &body).await;
        assert_eq!(status, 404, "{uri}: {answer}");
        assert_names_the_missing_root(&answer, &field, &name, uri);
    }
}

#[tokio::test]
async fn a_restore_from_a_bucket_or_container_that_does_not_exist_is_a_404_naming_the_field() {
    let app = spawn_app().await;
    for (field, uri, name) in missing_roots("restoreStorage") {
        let body = json!({
            "bigQuery": { "projectId": PROJECT },
            "restoreStorage": storage_section(&field, uri),
            "backupId": "20260101_000000",
        });
        let (status, answer) = app.post_json("/api/v1/restore", &body).await;
        assert_eq!(status, 404, "{uri}: {answer}");
        assert_names_the_missing_root(&answer, &field, &name, uri);
        let mut latest = body.clone();
        latest["backupId"] = json!("latest");
        let (status, answer) = app.post_json("/api/v1/restore", &latest).await;
        assert_eq!(status, 404, "{uri} (latest): {answer}");
        assert_names_the_missing_root(&answer, &field, &name, uri);
    }
}

/// `path` with `uri` as its query parameter.
fn with_uri(path: &str, uri: &str) -> String {
    format!(
        "{path}?uri={}",
        url::form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
    )
}

#[tokio::test]
async fn the_catalog_of_a_bucket_or_container_that_does_not_exist_is_a_404_naming_uri() {
    let app: TestApp = spawn_app().await;
    for (_, uri, name) in missing_roots("unused") {
        let (status, answer) = app.get_json(&with_uri("/api/v1/backups", uri)).await;
        assert_eq!(status, 404, "list {uri}: {answer}");
        assert_names_the_missing_root(&answer, "uri", &name, uri);

        let one = with_uri("/api/v1/backups/20260101_000000", uri);
        let (status, answer) = app.get_json(&one).await;
        assert_eq!(status, 404, "show {uri}: {answer}");
        assert_names_the_missing_root(&answer, "uri", &name, uri);

        let (status, answer) = app.delete_json(&one).await;
        assert_eq!(status, 404, "delete {uri}: {answer}");
        assert_names_the_missing_root(&answer, "uri", &name, uri);
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_a_json_431() {
    let app = spawn_app().await;
    // 100 KB: below hyper's own buffer, so the service sees it and answers in its own shape.
    let resp = app
        .client
        .get(app.url("/api/v1/jobs"))
        .header("x-padding", "a".repeat(100_000))
        .send()
        .await
        .expect("server answers");
    assert_eq!(resp.status().as_u16(), 431);
    assert!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        resp.headers()
    );
    let body: Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["errorCode"], "REQUEST_HEADERS_TOO_LARGE", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("65536")),
        "{body}"
    );

    // A head of ordinary size passes.
    let (status, _) = app.get_json("/api/v1/jobs").await;
    assert_eq!(status, 200);
}
