//! Wire-level faults: the service talks to moto, the GCS shim and BigQuery's REST port through
//! the fault proxies (`scripts/fault_proxy.py`), which answer 503, reset connections before the
//! request reaches the server, and reset them after it acted (the answer is lost). Everything
//! transient is retried in one place per dependency, so backups and restores complete with data
//! identical to the source — or, when a fault outlasts the retries, fail cleanly.

use serde_json::{Value, json};

use super::proxy::Proxies;
use super::{assert_identical, exists, restore_into, source_dataset};
use crate::helpers::{PROJECT, TestServices, spawn_app_with, unique_root};

const SEEDS: u64 = 3;

fn faults(seed: u64) -> Value {
    json!({ "seed": seed, "p503": 0.12, "pResetBefore": 0.04, "pResetAfter": 0.04 })
}

/// BigQuery's faults alternate by seed: every call with faults that strike before the server
/// acts (503, reset before forwarding), upload chunks included; or lost answers too, on the REST
/// calls only. bqemulator ignores the job id an upload's metadata names and forgets a session
/// once its last chunk landed, so there a lost answer to the last chunk cannot be told from a
/// chunk that never arrived; BigQuery keeps the id, and the service looks the job up by it.
fn bigquery_faults(seed: u64) -> Value {
    if seed.is_multiple_of(2) {
        json!({ "seed": seed, "p503": 0.12, "pResetBefore": 0.06, "pResetAfter": 0.0, "pathRegex": "" })
    } else {
        json!({ "seed": seed, "p503": 0.12, "pResetBefore": 0.04, "pResetAfter": 0.04, "pathRegex": "^/bigquery/" })
    }
}

async fn round_trips_under_wire_faults(scheme: &str, format: &str) {
    let proxies = Proxies::lock().await;
    let dataset = source_dataset(&format!("wire_{scheme}_{}", format.to_lowercase())).await;
    let storage_proxy = if scheme == "s3" {
        &proxies.s3
    } else {
        &proxies.gcs
    };
    let (storage_var, storage_endpoint) = if scheme == "s3" {
        ("BQB_S3_ENDPOINT", proxies.s3.as_str())
    } else {
        ("STORAGE_EMULATOR_HOST", proxies.gcs.as_str())
    };
    let app = spawn_app_with(TestServices::get().settings_with(&[
        ("BQB_BIGQUERY_ENDPOINT", proxies.bigquery.as_str()),
        (storage_var, storage_endpoint),
        ("BQB_READ_STREAMS_PER_TABLE", "1"),
    ]))
    .await;
    let mut succeeded = 0;
    for seed in 0..SEEDS {
        let root = unique_root(scheme);
        proxies.configure(storage_proxy, faults(seed)).await;
        proxies
            .configure(&proxies.bigquery, bigquery_faults(seed + 100))
            .await;
        let (status, backup) = app
            .post_json(
                "/api/v1/backup?wait=true",
                &json!({
                    "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                    "backupStorage": { "uri": root, "exportOptions": { "format": format } },
                }),
            )
            .await;
        let injected = proxies.stats(storage_proxy).await;
        let context = format!(
            "{format} on {scheme}, seed {seed}: {status} {backup}; storage faults {injected}"
        );
        if status != 200 {
            // A fault that outlasted the retries: a clean failure, nothing committed.
            assert!(status == 502 || status == 503, "{context}");
            let id = backup["details"]
                .as_array()
                .and_then(|_| backup["message"].as_str())
                .and_then(|m| m.split_whitespace().nth(1))
                .unwrap_or_default();
            if !id.is_empty() {
                assert!(
                    !exists(&root, &format!("backups/{id}/manifest.json")).await,
                    "{context}"
                );
            }
            continue;
        }
        let backup_id = backup["backupId"].as_str().expect("backupId").to_string();
        if scheme == "gs" {
            proxies.quiet_all().await;
            crate::helpers::mirror_gcs_for_bigquery(&root).await;
            proxies.configure(storage_proxy, faults(seed)).await;
            proxies
                .configure(&proxies.bigquery, bigquery_faults(seed + 100))
                .await;
        }
        let target = format!("{dataset}_w{seed}");
        let (status, restore) = restore_into(&app, &root, &backup_id, &dataset, &target).await;
        let bigquery_faults = proxies.stats(&proxies.bigquery).await;
        proxies.quiet_all().await;
        let context =
            format!("{context}; restore {status} {restore}; BigQuery faults {bigquery_faults}");
        assert_eq!(
            status, 200,
            "the restore retried every transient fault: {context}"
        );
        assert_identical(&dataset, &target, &context).await;
        succeeded += 1;
    }
    assert!(
        succeeded >= 2,
        "{format} on {scheme}: transient faults are retried, so most runs succeed ({succeeded} of {SEEDS})"
    );
}

#[tokio::test]
async fn avro_round_trips_through_faulty_s3_and_bigquery_wires_are_identical() {
    round_trips_under_wire_faults("s3", "AVRO").await;
}

/// PARQUET on s3:// is restored by sending its files as they are (`UPLOAD_FILES`): the wide
/// table's file goes up in two upload chunks, its ranges read through the faulty S3 wire.
#[tokio::test]
async fn parquet_round_trips_through_faulty_s3_and_bigquery_wires_are_identical() {
    round_trips_under_wire_faults("s3", "PARQUET").await;
}

/// PARQUET to gs:// is backed up by EXTRACT (AUTO): snapshot and extract jobs, the checksum
/// listing and the footer reads all go through the faulty wires.
#[tokio::test]
async fn parquet_round_trips_through_faulty_gcs_and_bigquery_wires_are_identical() {
    round_trips_under_wire_faults("gs", "PARQUET").await;
}
