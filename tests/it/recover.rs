//! `POST /api/v1/recover` end to end on bqemulator: tables brought back as they were before a
//! DELETE, under a new name and in place, without a backup; conflicts, the time-travel window and
//! dropped tables refused or planned as they must be.
//!
//! What bqemulator 1.4.0 can serve decides what is proven here: `FOR SYSTEM_TIME AS OF` in
//! queries (the QUERY method) works; `CREATE TABLE … CLONE` is refused (or, for names its parser
//! takes, answered with success while nothing is made), copies of snapshot decorators (`t@ms`)
//! are not found, dropped tables cannot come back, and
//! every dataset's `maxTimeTravelHours` reads 168. So CLONE and COPY are proven only by real
//! BigQuery (their statements are unit-tested), and a clone BigQuery reports done without a
//! table is shown to fail loudly.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, edited, names_field, run_sql, spawn_app, unique_dataset,
};

async fn count(table: &str) -> i64 {
    let answer = run_sql(&format!("SELECT COUNT(*) FROM {table}")).await;
    answer["rows"][0]["f"][0]["v"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a count of {table}: {answer}"))
}

/// A dataset with `orders` (5 rows, partitioned by day) and the instant they were all there,
/// after which 3 were deleted.
async fn orders_then_deleted() -> (String, String) {
    let dataset = unique_dataset("rec");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "orders" },
                "description": "orders by day",
                "timePartitioning": { "type": "DAY", "field": "d" },
                "schema": { "fields": [{ "name": "id", "type": "INTEGER", "mode": "REQUIRED" }, { "name": "d", "type": "DATE" }] } }),
    )
    .await;
    f.insert_rows(
        &dataset,
        "orders",
        (0..5)
            .map(|i| json!({ "id": i, "d": format!("2026-11-2{i}") }))
            .collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    run_sql(&format!("DELETE FROM {dataset}.orders WHERE id >= 2")).await;
    assert_eq!(count(&format!("{dataset}.orders")).await, 2);
    (dataset, before)
}

async fn recover(app: &TestApp, body: &Value) -> (u16, Value) {
    app.post_json("/api/v1/recover?wait=true", body).await
}

#[tokio::test]
async fn a_table_comes_back_as_it_was_under_a_new_name_then_in_place() {
    let app = spawn_app().await;
    let (dataset, before) = orders_then_deleted().await;
    let body = json!({ "projectId": PROJECT, "dataset": dataset, "tables": ["orders"], "asOf": before, "method": "QUERY" });

    let (status, report) = recover(&app, &body).await;
    assert_eq!(status, 200, "{report}");
    let target = report["tables"][0]["target"].as_str().unwrap().to_string();
    assert!(
        target.starts_with(&format!("{PROJECT}.{dataset}.orders_recovered_")),
        "{report}"
    );
    assert_eq!(report["tables"][0]["method"], "QUERY", "{report}");
    let short = target.trim_start_matches(&format!("{PROJECT}."));
    assert_eq!(
        count(short).await,
        5,
        "the recovered copy holds every row of then"
    );
    assert_eq!(
        count(&format!("{dataset}.orders")).await,
        2,
        "the table itself is untouched"
    );
    // Recreated with the table's schema, partitioning and description, not guessed.
    let recovered = crate::helpers::bigquery_client()
        .await
        .get_table(&bq_backup::domain::TableRef::new(
            PROJECT,
            &dataset,
            short.rsplit('.').next().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(recovered.description.as_deref(), Some("orders by day"));
    assert!(recovered.time_partitioning.is_some());

    // The same request again: the target exists, and nothing is overwritten unasked.
    let (status, refused) = recover(&app, &body).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.to_string().contains(&target), "{refused}");

    // In place only when asked with WRITE_TRUNCATE.
    let mut in_place = body.clone();
    in_place["tableSuffix"] = json!("");
    let (status, refused) = recover(&app, &in_place).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["details"][0]["field"], "writeDisposition",
        "{refused}"
    );
    let mut in_place = body.clone();
    in_place["writeDisposition"] = json!("WRITE_TRUNCATE");
    let (status, report) = recover(&app, &in_place).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["tables"][0]["target"],
        format!("{PROJECT}.{dataset}.orders"),
        "{report}"
    );
    assert_eq!(
        count(&format!("{dataset}.orders")).await,
        5,
        "recovered in place"
    );
    // The staging table went again.
    let listed = run_sql(&format!(
        "SELECT table_name FROM `{PROJECT}`.{dataset}.INFORMATION_SCHEMA.TABLES"
    ))
    .await;
    assert!(!listed.to_string().contains("bqb_recover_"), "{listed}");
}

#[tokio::test]
async fn a_dry_run_plans_clones_and_copies_and_a_dropped_table_only_comes_back_by_copy() {
    let app = spawn_app().await;
    let (dataset, before) = orders_then_deleted().await;
    // A table that existed at `before` and is gone now.
    let f = BigQueryFixtures::new();
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "gone" },
                "schema": { "fields": [{ "name": "id", "type": "INTEGER" }] } }),
    )
    .await;
    run_sql(&format!("DROP TABLE {dataset}.gone")).await;

    let body = json!({ "projectId": PROJECT, "dataset": dataset, "tables": ["orders", "gone"], "asOf": before, "dryRun": true });
    let (status, answer) = app.post_json("/api/v1/recover", &body).await;
    assert_eq!(status, 200, "{answer}");
    let tables = answer["plan"]["tables"].as_array().unwrap();
    let method = |name: &str| {
        tables
            .iter()
            .find(|t| t["source"]["tableId"] == name)
            .map(|t| (t["method"].clone(), t["dropped"].clone()))
            .unwrap()
    };
    assert_eq!(method("orders"), (json!("CLONE"), json!(false)), "{answer}");
    assert_eq!(method("gone"), (json!("COPY"), json!(true)), "{answer}");
    assert_eq!(answer["plan"]["windowHours"], 168, "{answer}");

    let mut by_query = body.clone();
    by_query["method"] = json!("QUERY");
    let (status, refused) = app.post_json("/api/v1/recover", &by_query).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["details"][0]["field"], "method", "{refused}");
    assert!(
        refused.to_string().contains("does not exist now"),
        "{refused}"
    );

    // bqemulator cannot clone (it refuses this statement, and answers others with success
    // while making nothing, which the recovery checks for): the job fails, naming the table,
    // and reports no table that is not there.
    let clone =
        json!({ "projectId": PROJECT, "dataset": dataset, "tables": ["orders"], "asOf": before });
    let (status, failed) = recover(&app, &clone).await;
    assert_ne!(status, 200, "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains(&format!("recovering {PROJECT}.{dataset}.orders into")),
        "{failed}"
    );
}

#[tokio::test]
async fn instants_outside_the_window_and_missing_datasets_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let (dataset, before) = orders_then_deleted().await;
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for (edit, status, field) in [
        (json!({ "asOf": long_ago }), 400, "asOf"),
        (json!({ "asOf": later }), 400, "asOf"),
        (json!({ "dataset": "no_such_dataset_here" }), 404, "dataset"),
        (
            json!({ "targetDataset": "no_such_target_here" }),
            404,
            "targetDataset",
        ),
        (
            json!({ "tables": ["orders", "never_was"], "method": "CLONE" }),
            400,
            "method",
        ),
    ] {
        let base =
            json!({ "projectId": PROJECT, "dataset": dataset, "asOf": before, "dryRun": true });
        let (got, answer) = app
            .post_json("/api/v1/recover", &edited(&base, &edit))
            .await;
        assert_eq!(got, status, "{edit}: {answer}");
        assert!(names_field(&answer, field), "{field} in {answer}");
    }
}

/// `asOf: BEFORE_DROP` reads when each named table was dropped from the project's
/// `INFORMATION_SCHEMA.JOBS`. bqemulator does not serve that view, so here the recovery must say
/// that it cannot tell, naming `asOf`, before anything is made; what it asks for is refused as
/// the request's own problem.
#[tokio::test]
async fn before_drop_is_refused_naming_the_field_when_the_drop_cannot_be_found() {
    let app = spawn_app().await;
    let (dataset, _) = orders_then_deleted().await;
    let f = BigQueryFixtures::new();
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "gone" },
                "schema": { "fields": [{ "name": "id", "type": "INTEGER" }] } }),
    )
    .await;
    run_sql(&format!("DROP TABLE {dataset}.gone")).await;
    let base = json!({ "projectId": PROJECT, "dataset": dataset, "asOf": "BEFORE_DROP", "tables": ["gone"] });

    let (status, answer) = recover(&app, &base).await;
    assert_eq!(status, 400, "{answer}");
    assert!(names_field(&answer, "asOf"), "{answer}");
    assert!(
        answer.to_string().contains("INFORMATION_SCHEMA.JOBS"),
        "{answer}"
    );
    let listed = app.get_json("/api/v1/jobs").await.1;
    assert!(
        !listed.to_string().contains("RECOVER"),
        "no job was started: {listed}"
    );

    for (edit, field) in [
        (json!({ "tables": ["orders"] }), "tables[0]"),
        (json!({ "tables": [] }), "tables"),
        (json!({ "method": "CLONE" }), "method"),
    ] {
        let (status, answer) = app
            .post_json("/api/v1/recover", &edited(&base, &edit))
            .await;
        assert_eq!(status, 400, "{edit}: {answer}");
        assert!(names_field(&answer, field), "{field} in {answer}");
    }
}
