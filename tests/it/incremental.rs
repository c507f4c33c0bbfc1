//! Incremental backups end to end on bqemulator: partitioned tables backed up partition by
//! partition, a chain full → incremental → incremental that reuses the unchanged partitions'
//! files and restores to the last state, verify over the chain, and prune and delete that never
//! break a chain (409 naming the dependents, also while an incremental backup is being written).
//!
//! What bqemulator 1.4.0 cannot show: it gives every partition its table's `last_modified_time`,
//! which DML does not move, so here a change is seen by its row count (see
//! `backup::incremental`); an UPDATE that keeps the count is seen only by real BigQuery's time.

use std::path::Path;
use std::time::Duration;

use bq_backup::domain::TableRef;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, bq_backup, edited, manifest_json, run_sql, spawn_app,
    stdout_json, unique_dataset,
};

/// `events` (partitioned by day on `d`: 2024-01-01 to 2024-01-04 and NULL) and `plain`
/// (unpartitioned).
async fn dataset() -> String {
    let dataset = unique_dataset("incr");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "events" },
                "timePartitioning": { "type": "DAY", "field": "d" },
                "schema": { "fields": [{ "name": "id", "type": "INTEGER" }, { "name": "d", "type": "DATE" }, { "name": "s", "type": "STRING" }] } }),
    )
    .await;
    let rows = (0..20)
        .map(|i| {
            let d = match i % 5 {
                4 => Value::Null,
                day => json!(format!("2024-01-0{}", day + 1)),
            };
            json!({ "id": i, "d": d, "s": format!("row {i}") })
        })
        .collect();
    f.insert_rows(&dataset, "events", rows).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "plain" },
                "schema": { "fields": [{ "name": "id", "type": "INTEGER" }] } }),
    )
    .await;
    f.insert_rows(
        &dataset,
        "plain",
        (0..3).map(|i| json!({ "id": i })).collect(),
    )
    .await;
    dataset
}

fn request(dataset: &str, root: &str, base: Option<&str>) -> Value {
    let mut body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": "PARQUET" } }
    });
    if let Some(base) = base {
        body["incremental"] = json!({ "base": base });
    }
    body
}

/// Backs up and waits; the report. Backup ids are per second: each backup starts in a second
/// of its own.
async fn backup(app: &TestApp, body: &Value) -> Value {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, report) = app.post_json("/api/v1/backup?wait=true", body).await;
    assert_eq!(status, 200, "backup: {report}");
    report
}

/// The line of `table` in a report (`"table": "p.d.t"`), a dry run or a manifest (`"table":
/// {"tableId": …}`).
fn table_report<'a>(report: &'a Value, table: &str) -> &'a Value {
    let named = |t: &&Value| match &t["table"] {
        Value::String(name) => name.ends_with(&format!(".{table}")),
        other => other["tableId"] == table,
    };
    report["tables"]
        .as_array()
        .and_then(|t| t.iter().find(named))
        .unwrap_or_else(|| panic!("{table} in {report}"))
}

fn manifest_table<'a>(manifest: &'a Value, table: &str) -> &'a Value {
    table_report(manifest, table)
}

/// Every file path of `table` in `manifest`, with the partition it names.
fn files(manifest: &Value, table: &str) -> Vec<(String, Option<String>)> {
    manifest_table(manifest, table)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["partition"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The rows of `table`, sorted (read streams come in any order).
async fn rows_of(table: &TableRef) -> Vec<Vec<String>> {
    let mut rows = crate::faults::rows_of(table).await;
    rows.sort();
    rows
}

fn uri(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// A service, the fixture dataset and an empty `file://` repository.
async fn setup() -> (TestApp, String, tempfile::TempDir, String) {
    let app = spawn_app().await;
    let dataset = dataset().await;
    let dir = tempfile::tempdir().unwrap();
    let root = uri(dir.path());
    (app, dataset, dir, root)
}

/// Backs `dataset` up into `root` (incremental on `base`, when given) and waits; the report
/// and the backup id.
async fn backed_up(
    app: &TestApp,
    dataset: &str,
    root: &str,
    base: Option<&str>,
) -> (Value, String) {
    let report = backup(app, &request(dataset, root, base)).await;
    let id = report["backupId"].as_str().unwrap().to_string();
    (report, id)
}

#[tokio::test]
async fn a_chain_of_incremental_backups_reuses_unchanged_partitions_and_restores_the_last_state() {
    let (app, dataset, dir, root) = setup().await;

    // Full: every partition read by itself, each file naming its partition.
    let (full, full_id) = backed_up(&app, &dataset, &root, None).await;
    assert_eq!(
        table_report(&full, "events")["partitions"],
        json!({ "read": 5, "reused": 0, "dropped": 0 }),
        "{full}"
    );
    let full_manifest = manifest_json(dir.path(), &full_id);
    let mut partitions: Vec<String> = files(&full_manifest, "events")
        .into_iter()
        .map(|(_, p)| p.expect("every file names its partition"))
        .collect();
    partitions.sort();
    assert_eq!(
        partitions,
        ["20240101", "20240102", "20240103", "20240104", "__NULL__"]
    );
    assert!(
        manifest_table(&full_manifest, "plain")
            .get("partitions")
            .is_none()
    );
    assert!(full_manifest.get("incremental").is_none());

    // One partition changes, one disappears.
    run_sql(&format!(
        "INSERT INTO {dataset}.events (id, d, s) VALUES (100, DATE '2024-01-02', 'new')"
    ))
    .await;
    run_sql(&format!(
        "DELETE FROM {dataset}.events WHERE d = DATE '2024-01-04'"
    ))
    .await;

    // A dry run says what the incremental backup will do, per table.
    let mut dry = request(&dataset, &root, Some("latest"));
    dry["dryRun"] = json!(true);
    let (status, answer) = app.post_json("/api/v1/backup", &dry).await;
    assert_eq!(status, 200, "{answer}");
    let plan = &answer["plan"];
    assert_eq!(plan["incremental"]["base"], full_id, "{plan}");
    let events = table_report(plan, "events");
    assert_eq!(events["partitions"]["mode"], "INCREMENTAL", "{plan}");
    assert_eq!(events["partitions"]["partitionsToRead"], 1, "{plan}");
    assert_eq!(events["partitions"]["partitionsReused"], 3, "{plan}");
    assert_eq!(events["partitions"]["partitionsDropped"], 1, "{plan}");
    let plain = table_report(plan, "plain");
    assert_eq!(plain["partitions"]["mode"], "FULL", "{plan}");
    assert_eq!(plain["partitions"]["reason"], "not partitioned", "{plan}");

    let (first, first_id) = backed_up(&app, &dataset, &root, Some("latest")).await;
    assert_eq!(
        table_report(&first, "events")["partitions"],
        json!({ "read": 1, "reused": 3, "dropped": 1 }),
        "{first}"
    );
    let first_manifest = manifest_json(dir.path(), &first_id);
    assert_eq!(first_manifest["manifestVersion"], 4);
    assert_eq!(
        first_manifest["incremental"],
        json!({ "base": full_id, "dependsOn": [full_id] })
    );
    let full_files = files(&full_manifest, "events");
    for (path, partition) in files(&first_manifest, "events") {
        let partition = partition.expect("a partition");
        let from_base = path.starts_with(&format!("backups/{full_id}/"));
        assert_eq!(from_base, partition != "20240102", "{path}");
        if from_base {
            // The base's own entry, checksum and all.
            let base_entry = &manifest_table(&full_manifest, "events")["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"] == path)
                .cloned()
                .unwrap();
            let entry = manifest_table(&first_manifest, "events")["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"] == path)
                .cloned()
                .unwrap();
            assert_eq!(&entry, base_entry);
        }
        assert!(
            full_files
                .iter()
                .any(|(_, p)| p.as_deref() == Some(partition.as_str()))
                || partition == "20240102"
        );
    }
    // The unpartitioned table is backed up whole, in this backup's own files.
    assert!(
        files(&first_manifest, "plain")
            .iter()
            .all(|(p, _)| p.starts_with(&format!("backups/{first_id}/")))
    );

    // A new partition: the second incremental reads it alone and reuses files of both earlier
    // backups.
    run_sql(&format!(
        "INSERT INTO {dataset}.events (id, d, s) VALUES (200, DATE '2024-01-05', 'later')"
    ))
    .await;
    let (second, second_id) = backed_up(&app, &dataset, &root, Some(&first_id)).await;
    assert_eq!(
        table_report(&second, "events")["partitions"],
        json!({ "read": 1, "reused": 4, "dropped": 0 }),
        "{second}"
    );
    let second_manifest = manifest_json(dir.path(), &second_id);
    assert_eq!(
        second_manifest["incremental"],
        json!({ "base": first_id, "dependsOn": [full_id, first_id] })
    );

    // Verify reads every file of the chain the backup lists.
    let verify = format!("/api/v1/backups/{second_id}:verify?uri={root}");
    let (status, verified) = app.post_json(&verify, &json!({ "wait": true })).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["chain"], json!([full_id, first_id]), "{verified}");
    assert_eq!(verified["rowsChecked"], 20 + 1 - 4 + 1 + 3, "{verified}");

    // Restoring the last backup gives the tables as they are now.
    let restore = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "restoreStorage": { "uri": root },
        "backupId": second_id
    });
    let (status, restored) = app.post_json("/api/v1/restore?wait=true", &restore).await;
    assert_eq!(status, 200, "{restored}");
    for table in ["events", "plain"] {
        let source = TableRef::new(PROJECT, &dataset, table);
        let target = TableRef::new(PROJECT, format!("restored_{dataset}"), table);
        assert_eq!(rows_of(&target).await, rows_of(&source).await, "{table}");
    }
    // And the first incremental gives them as they were then: no row of 2024-01-05.
    let restore_first = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "targetDatasets": { dataset.clone(): format!("then_{dataset}") },
        "restoreStorage": { "uri": root },
        "backupId": first_id
    });
    let (status, restored) = app
        .post_json("/api/v1/restore?wait=true", &restore_first)
        .await;
    assert_eq!(status, 200, "{restored}");
    let then = rows_of(&TableRef::new(PROJECT, format!("then_{dataset}"), "events")).await;
    assert_eq!(then.len(), 17, "{then:?}");
    assert!(
        then.iter().all(|r| !r.iter().any(|c| c.contains("later"))),
        "{then:?}"
    );
}

#[tokio::test]
async fn a_tampered_file_of_the_base_fails_the_verify_of_the_incremental_backup() {
    let (app, dataset, dir, root) = setup().await;
    let (_, full_id) = backed_up(&app, &dataset, &root, None).await;
    let (incremental, id) = backed_up(&app, &dataset, &root, Some("latest")).await;
    assert_eq!(
        table_report(&incremental, "events")["partitions"]["reused"],
        5,
        "{incremental}"
    );
    let manifest = manifest_json(dir.path(), &id);
    let (reused, _) = files(&manifest, "events")
        .into_iter()
        .find(|(p, _)| p.starts_with(&format!("backups/{full_id}/")))
        .expect("a file of the base");
    let path = dir.path().join(&reused);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let verify = format!("/api/v1/backups/{id}:verify?uri={root}");
    let (status, verified) = app.post_json(&verify, &json!({ "wait": true })).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], false, "{verified}");
    assert_eq!(
        verified["findings"][0]["file"],
        reused.as_str(),
        "{verified}"
    );

    // The base gone behind the service's back: verify names it.
    std::fs::remove_file(dir.path().join(format!("backups/{full_id}/manifest.json"))).unwrap();
    let (_, verified) = app.post_json(&verify, &json!({ "wait": true })).await;
    let problems = verified["findings"].to_string();
    assert!(
        problems.contains(&format!(
            "lists files of backup {full_id}, which is no longer a complete backup"
        )),
        "{verified}"
    );
}

#[tokio::test]
async fn delete_and_prune_never_break_a_chain() {
    let (app, dataset, dir, root) = setup().await;
    let (_, full_id) = backed_up(&app, &dataset, &root, None).await;
    let (_, incr_id) = backed_up(&app, &dataset, &root, Some("latest")).await;

    let (status, refused) = app
        .delete_json(&format!("/api/v1/backups/{full_id}?uri={root}"))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains(&format!(
            "incremental backup {incr_id} depends on backup {full_id}"
        )),
        "{refused}"
    );
    assert!(
        dir.path()
            .join(format!("backups/{full_id}/manifest.json"))
            .exists()
    );

    // keepLast 1 would let the full backup go: it stays, and says why.
    let prune = format!("/api/v1/backups:prune?uri={root}");
    let (status, report) = app.post_json(&prune, &json!({ "keepLast": 1 })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["deleted"], json!([]), "{report}");
    let full_decision = report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["backupId"] == full_id)
        .cloned()
        .unwrap();
    assert_eq!(full_decision["keep"], true, "{report}");
    assert!(
        full_decision["reasons"][0]
            .as_str()
            .unwrap()
            .contains(&incr_id),
        "{report}"
    );
    assert!(
        dir.path()
            .join(format!("backups/{full_id}/manifest.json"))
            .exists()
    );

    // Once the incremental backup is gone, its base may go.
    let (status, deleted) = app
        .delete_json(&format!("/api/v1/backups/{incr_id}?uri={root}"))
        .await;
    assert_eq!(status, 200, "{deleted}");
    let (status, deleted) = app
        .delete_json(&format!("/api/v1/backups/{full_id}?uri={root}"))
        .await;
    assert_eq!(status, 200, "{deleted}");
}

/// The race between deleting a base and writing an incremental backup on it has one winner:
/// a live base lease (an incremental backup being written) makes the delete a 409, and a delete
/// under way (its intent) makes the incremental backup fail without a manifest.
#[tokio::test]
async fn a_delete_and_an_incremental_backup_of_the_same_base_never_both_proceed() {
    let (app, dataset, dir, root) = setup().await;
    let (_, full_id) = backed_up(&app, &dataset, &root, None).await;
    let record = |purpose: &str| {
        json!({ "version": 1, "backupId": full_id, "purpose": purpose, "holder": "it", "heartbeatAt": chrono::Utc::now(), "staleAfterMs": 60_000, "host": "it" })
            .to_string()
    };

    let base_lease = dir.path().join(format!("backups/{full_id}/_base-it.json"));
    std::fs::write(&base_lease, record("base")).unwrap();
    let (status, refused) = app
        .delete_json(&format!("/api/v1/backups/{full_id}?uri={root}"))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("incremental backup taking partitions"),
        "{refused}"
    );
    std::fs::remove_file(&base_lease).unwrap();

    let intent = dir
        .path()
        .join(format!("backups/{full_id}/_deleting-it.json"));
    std::fs::write(&intent, record("delete")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, failed) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &request(&dataset, &root, Some("latest")),
        )
        .await;
    assert_eq!(status, 409, "{failed}");
    assert!(failed.to_string().contains("is being deleted"), "{failed}");
    let ids: Vec<String> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for id in ids.iter().filter(|id| **id != full_id) {
        assert!(
            !dir.path()
                .join(format!("backups/{id}/manifest.json"))
                .exists(),
            "the failed incremental backup {id} left a manifest"
        );
    }
    // Nor a base lease: the delete may go on.
    assert!(
        !std::fs::read_dir(dir.path().join(format!("backups/{full_id}")))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("_base-"))
    );
}

#[tokio::test]
async fn incremental_requests_are_checked_before_anything_is_written() {
    let (app, dataset, dir, root) = setup().await;

    for (edit, field, words) in [
        (
            json!({ "incremental": {} }),
            "incremental.base",
            "is required",
        ),
        (
            json!({ "incremental": { "base": "yesterday" } }),
            "incremental.base",
            "not a backup id",
        ),
        (
            json!({ "incremental": { "base": "latest" }, "shards": 2 }),
            "shards",
            "cannot be incremental",
        ),
        (
            json!({ "incremental": { "base": "latest" }, "method": "EXTRACT" }),
            "method",
            "EXTRACT exports whole tables",
        ),
    ] {
        let body = edited(&request(&dataset, &root, None), &edit);
        let (status, answer) = app.post_json("/api/v1/backup", &body).await;
        assert_eq!(status, 400, "{edit}: {answer}");
        let named = answer["details"].as_array().unwrap().iter().any(|d| {
            d["field"] == field && d["message"].as_str().is_some_and(|m| m.contains(words))
        });
        assert!(named, "{field}: {words} in {answer}");
    }

    let (status, missing) = app
        .post_json(
            "/api/v1/backup",
            &request(&dataset, &root, Some("20200101_000000")),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(
        missing["details"][0]["field"], "incremental.base",
        "{missing}"
    );

    // "latest" in a repository without an earlier backup: a full backup, and it says so.
    let first = backup(&app, &request(&dataset, &root, Some("latest"))).await;
    let warnings = first["warnings"].to_string();
    assert!(warnings.contains("this backup is a full one"), "{first}");
    let manifest = manifest_json(dir.path(), first["backupId"].as_str().unwrap());
    assert!(manifest.get("incremental").is_none(), "{manifest}");
}

/// A copy of an incremental backup to another repository is a whole backup there: the files it
/// lists from its base are copied under its own directory, its manifest there has no
/// `incremental` block, and it verifies and restores without the chain.
#[tokio::test]
async fn a_copy_of_an_incremental_backup_is_a_whole_backup_at_the_target() {
    let (app, dataset, _dir, root) = setup().await;
    let (_, full_id) = backed_up(&app, &dataset, &root, None).await;
    run_sql(&format!(
        "INSERT INTO {dataset}.events (id, d, s) VALUES (300, DATE '2024-01-03', 'copied')"
    ))
    .await;
    let (report, id) = backed_up(&app, &dataset, &root, Some("latest")).await;
    assert_eq!(
        table_report(&report, "events")["partitions"]["reused"],
        4,
        "{report}"
    );

    let offsite = crate::helpers::unique_root("s3");
    let (status, copied) = app
        .post_json(
            &format!("/api/v1/backups/{id}:copy?uri={root}&wait=true"),
            &json!({ "to": offsite }),
        )
        .await;
    assert_eq!(status, 200, "{copied}");
    let store = crate::helpers::open_store(&offsite);
    let manifest = bq_backup::catalog::read_manifest(
        &store,
        &bq_backup::domain::BackupId::parse(&id).unwrap(),
    )
    .await
    .unwrap()
    .expect("the copy is complete");
    assert!(manifest.incremental.is_none(), "{manifest:?}");
    assert!(
        manifest.manifest_version < 4,
        "{}",
        manifest.manifest_version
    );
    let prefix = format!("backups/{id}/");
    for table in &manifest.tables {
        for file in &table.files {
            assert!(
                file.path.starts_with(&prefix),
                "{} is not the copy's own",
                file.path
            );
        }
    }
    // Nothing of the base was written at the target outside the copy's own directory.
    let base = bq_backup::domain::BackupId::parse(&full_id).unwrap();
    assert!(
        bq_backup::catalog::read_manifest(&store, &base)
            .await
            .unwrap()
            .is_none()
    );

    let (status, verified) = app
        .post_json(
            &format!("/api/v1/backups/{id}:verify?uri={offsite}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["rowsChecked"], 24, "{verified}");
    let restore = json!({
        "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
        "targetDatasets": { dataset.clone(): format!("offsite_{dataset}") },
        "restoreStorage": { "uri": offsite },
        "backupId": id
    });
    let (status, restored) = app.post_json("/api/v1/restore?wait=true", &restore).await;
    assert_eq!(status, 200, "{restored}");
    let source = TableRef::new(PROJECT, &dataset, "events");
    let target = TableRef::new(PROJECT, format!("offsite_{dataset}"), "events");
    assert_eq!(rows_of(&target).await, rows_of(&source).await);

    // A download is a copy too; run again, it finds the same flattened backup and leaves it.
    let laptop = tempfile::tempdir().unwrap();
    let local = laptop.path().to_str().unwrap();
    for already_present in [false, true] {
        let output = bq_backup(&["download", &id, "--uri", &root, "--to", local], &[]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = stdout_json(&output);
        assert_eq!(report["alreadyPresent"], already_present, "{report}");
    }
}
