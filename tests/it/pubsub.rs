//! Pub/Sub push: the envelope starts the job in `message.data` once per `messageId`, whichever
//! instance a redelivery reaches; broken envelopes are 400s naming the field.

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestServices, spawn_app, spawn_app_with, unique_dataset, unique_root,
};

fn envelope(request: &Value, message_id: &str) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(request.to_string());
    json!({
        "message": {
            "data": data,
            "messageId": message_id,
            "message_id": message_id,
            "attributes": { "origin": "test" },
            "publishTime": "2026-11-23T06:00:00.123Z"
        },
        "subscription": "projects/test-project/subscriptions/bq-backup"
    })
}

async fn flat_dataset() -> String {
    let dataset = unique_dataset("psub");
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
        vec![json!({ "id": 1, "s": "a" }), json!({ "id": 2, "s": "b" })],
    )
    .await;
    dataset
}

#[tokio::test]
async fn a_redelivered_message_starts_no_second_job_on_any_instance() {
    let state = tempfile::tempdir().unwrap();
    let state_uri = format!("file://{}", state.path().display());
    let services = TestServices::get();
    let a = spawn_app_with(services.settings_with(&[("BQB_STATE_URI", &state_uri)])).await;
    let b = spawn_app_with(services.settings_with(&[("BQB_STATE_URI", &state_uri)])).await;
    let dataset = flat_dataset().await;
    let root = unique_root("file");
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "PARQUET" } }
    });
    let message_id = format!(
        "{}",
        uuid::Uuid::new_v4().as_u128() % 10_000_000_000_000_000
    );
    let push = envelope(&request, &message_id);

    let (status, first) = a.post_json("/api/v1/backup", &push).await;
    assert_eq!(status, 202, "{first}");
    let job_id = first["jobId"].as_str().unwrap().to_string();

    // Pub/Sub redelivers (the ack was lost), to the other instance this time: 2xx, same job.
    let (status, again) = b.post_json("/api/v1/backup", &push).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["jobId"], job_id.as_str());
    assert_eq!(again["backupId"], first["backupId"]);

    let job = a.wait_for_job(&job_id).await;
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    assert_eq!(job["trigger"]["source"], "pubsub");
    assert_eq!(job["trigger"]["messageId"], message_id.as_str());
    assert_eq!(
        job["trigger"]["subscription"],
        "projects/test-project/subscriptions/bq-backup"
    );
    let (_, jobs) = b.get_json("/api/v1/jobs?kind=BACKUP").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    let (_, backups) = b.get_json(&format!("/api/v1/backups?uri={root}")).await;
    assert_eq!(backups["backups"].as_array().unwrap().len(), 1, "{backups}");

    // After the job ended a redelivery is still the same job.
    let (status, late) = a.post_json("/api/v1/backup", &push).await;
    assert_eq!((status, &late["jobId"]), (200, &json!(job_id)), "{late}");

    // A restore arrives the same way.
    let restore = json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": { "uri": root }, "backupId": "latest", "datasetPrefix": "ps_"
    });
    let (status, accepted) = b
        .post_json(
            "/api/v1/restore",
            &envelope(&restore, &format!("{message_id}1")),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["kind"], "RESTORE");
    let job = b.wait_for_job(accepted["jobId"].as_str().unwrap()).await;
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
}

#[tokio::test]
async fn a_message_whose_job_could_not_start_is_tried_again_on_redelivery() {
    let app = spawn_app().await;
    let request = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": "no_such_dataset_psub" }] },
        "backupStorage": { "uri": unique_root("file") }
    });
    let push = envelope(&request, "777");
    for _ in 0..2 {
        let (status, answer) = app.post_json("/api/v1/backup", &push).await;
        assert_eq!(
            status, 404,
            "each delivery is judged again, not taken as a duplicate: {answer}"
        );
        assert_eq!(answer["errorCode"], "RESOURCE_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_broken_envelope_is_a_400_naming_its_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "message": { "data": "%%% not base64", "messageId": "1" }, "subscription": "s" }),
            "message.data",
        ),
        (
            json!({ "message": { "data": "e30=" }, "subscription": "s" }),
            "message.messageId",
        ),
        (
            json!({ "message": { "data": base64::engine::general_purpose::STANDARD.encode("[1,2]"), "messageId": "2" }, "subscription": "s" }),
            "message.data",
        ),
    ];
    for (body, field) in cases {
        for path in ["/api/v1/backup", "/api/v1/restore"] {
            let (status, answer) = app.post_json(path, &body).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            assert_eq!(answer["errorCode"], "VALIDATION_ERROR");
            let fields: Vec<&str> = answer["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&field), "{field} not in {answer}");
        }
    }
    // A valid envelope whose request is not: the request's own field is named.
    let push = envelope(&json!({ "bigQuery": {} }), "3");
    let (status, answer) = app.post_json("/api/v1/backup", &push).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("projectId"), "{answer}");
}
