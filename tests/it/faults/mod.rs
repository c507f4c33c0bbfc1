//! Backups and restores under injected storage faults: each run either completes with data
//! identical to the source (verified, restored, compared row by row) or fails cleanly — no
//! manifest, no multipart upload left open, and nothing of the attempt left once the backup id
//! is deleted — over many seeds, in AVRO and PARQUET, on s3:// and gs://.
//!
//! The faults come from [`store::FaultyStore`], wrapped around the real clients (moto, and
//! fake-gcs behind its XML shim) above object_store's own retries: what the service sees when
//! those have run out, and writes whose answer was lost after they landed.

pub mod proxy;
pub mod store;
mod wire;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bq_backup::domain::{StorageUri, TableRef};
use bq_backup::storage::StorageConfig;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde_json::json;

use self::proxy::Proxies;
use self::store::{FaultControl, FaultRates, FaultyStore};
use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, TestServices, bigquery_client, canonical_rows, open_store,
    spawn_app_with_storage, unique_dataset, unique_root,
};

/// Seeds per store and format.
const SEEDS: u64 = 6;

const RATES: FaultRates = FaultRates {
    error: 0.06,
    lost_answer: 0.06,
    slow: 0.08,
    slow_by: Duration::from_millis(300),
};

/// A server whose stores under `root` fail as `control` says.
async fn spawn_faulty_app(root: &str, control: Arc<FaultControl>) -> TestApp {
    // One read stream per table: the wide table becomes one file of several upload parts.
    let settings = TestServices::get().settings_with(&[("BQB_READ_STREAMS_PER_TABLE", "1")]);
    let root = root.to_string();
    let storage = StorageConfig::for_service(&settings.storage).with_wrapper(Arc::new(
        move |uri: &StorageUri, inner: Arc<dyn ObjectStore>| {
            if uri.to_string().starts_with(&root) {
                FaultyStore::wrap(inner, control.clone())
            } else {
                inner
            }
        },
    ));
    spawn_app_with_storage(settings, storage).await
}

pub(crate) async fn rows_of(table: &TableRef) -> Vec<Vec<String>> {
    let batches: Vec<_> = bigquery_client()
        .await
        .open_read(table, &Default::default())
        .await
        .expect("read session")
        .batches()
        .try_collect()
        .await
        .expect("rows");
    canonical_rows(&batches)
}

/// Restores `dataset` of backup `backup_id` in `root` into `target` and waits for it.
pub(crate) async fn restore_into(
    app: &TestApp,
    root: &str,
    backup_id: &str,
    dataset: &str,
    target: &str,
) -> (u16, serde_json::Value) {
    app.post_json(
        "/api/v1/restore?wait=true",
        &json!({
            "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
            "restoreStorage": { "uri": root },
            "backupId": backup_id,
            "targetDatasets": { dataset: target },
        }),
    )
    .await
}

/// Every table of a [`source_dataset`] restored into `target` holds exactly the source's rows.
pub(crate) async fn assert_identical(dataset: &str, target: &str, context: &str) {
    for table in ["all_types", "numbers", "wide"] {
        assert_eq!(
            rows_of(&TableRef::new(PROJECT, target, table)).await,
            rows_of(&TableRef::new(PROJECT, dataset, table)).await,
            "{table} restored identical: {context}"
        );
    }
}

pub(crate) async fn exists(root: &str, key: &str) -> bool {
    use object_store::ObjectStoreExt;
    match open_store(root).object_store().head(&Path::from(key)).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("reading {key}: {e}"),
    }
}

pub(crate) async fn objects_under(root: &str, prefix: &str) -> Vec<Path> {
    open_store(root)
        .object_store()
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .expect("listing the repository")
}

/// A dataset of three tables for the runs of one test: every type (but GEOGRAPHY, which the
/// emulator cannot load back), a small flat one, and one of about 9 MB of text that does not
/// compress away, so that its file is written with a multipart upload of several parts.
/// A backup that runs for seconds: the fault proxies (held), a dataset, an s3:// root behind
/// the S3 proxy whose uploads each wait a second, and a `file://` state store, so that a second
/// server or the CLI can meet the backup while it runs.
pub(crate) struct SlowBackup {
    pub proxies: Proxies,
    pub dataset: String,
    pub root: String,
    pub state_uri: String,
    _state: tempfile::TempDir,
}

impl SlowBackup {
    pub(crate) async fn new(prefix: &str) -> Self {
        let proxies = Proxies::lock().await;
        let dataset = source_dataset(prefix).await;
        let state = tempfile::tempdir().expect("temp dir");
        let state_uri = format!("file://{}", state.path().display());
        proxies
            .configure(
                &proxies.s3,
                json!({ "pDelay": 1.0, "delaySecs": 1.0, "onlyMethods": "PUT,POST" }),
            )
            .await;
        Self {
            proxies,
            dataset,
            root: unique_root("s3"),
            state_uri,
            _state: state,
        }
    }

    /// The variables that point a server or the CLI at the proxy and the state store.
    pub(crate) fn env(&self) -> [(&str, &str); 3] {
        [
            ("BQB_S3_ENDPOINT", self.proxies.s3.as_str()),
            ("BQB_STATE_URI", self.state_uri.as_str()),
            ("BQB_READ_STREAMS_PER_TABLE", "1"),
        ]
    }
}

pub(crate) async fn source_dataset(prefix: &str) -> String {
    let dataset = unique_dataset(prefix);
    let f = BigQueryFixtures::new();
    f.create_all_types_dataset_without(&dataset, &["geo"]).await;
    for table in ["numbers", "wide"] {
        f.create_table(
            &dataset,
            json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": table },
                    "schema": { "fields": [{ "name": "id", "type": "INT64", "mode": "REQUIRED" }, { "name": "label", "type": "STRING" }] } }),
        )
        .await;
    }
    f.insert_rows(
        &dataset,
        "numbers",
        (0..500)
            .map(|i| json!({ "id": i, "label": format!("row {i}") }))
            .collect(),
    )
    .await;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in 0..9 {
        let rows = crate::helpers::incompressible_rows(&mut x, chunk * 10_000, 10_000, "label");
        f.insert_rows(&dataset, "wide", rows).await;
    }
    dataset
}

#[derive(Debug, Default)]
struct Outcomes {
    succeeded: u32,
    failed: u32,
}

/// One backup under faults, then the checks its outcome calls for (with faults switched off).
async fn one_run(scheme: &str, format: &str, dataset: &str, seed: u64, outcomes: &mut Outcomes) {
    let root = unique_root(scheme);
    let control = FaultControl::new(seed, RATES);
    let app = spawn_faulty_app(&root, control.clone()).await;
    // The faults are the service's own writes: STREAM, also for gs:// PARQUET (where AUTO would
    // let BigQuery write the files; wire.rs runs that path under faults).
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": root, "exportOptions": { "format": format } },
        "method": "STREAM",
    });
    let (accepted, answer) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(accepted, 202, "{answer}");
    let backup_id = answer["backupId"].as_str().expect("backupId").to_string();
    let job = app
        .wait_for_job(answer["jobId"].as_str().expect("jobId"))
        .await;
    control.set_enabled(false);
    let succeeded = job["state"] == "SUCCEEDED";
    let context = format!(
        "{format} on {scheme}, seed {seed}: {job}; injected {} faults",
        control.stats.injected()
    );
    if !succeeded {
        assert_eq!(job["state"], "FAILED", "{context}");
        assert!(
            [
                "UPSTREAM_ERROR",
                "UPSTREAM_UNAVAILABLE",
                "RESOURCE_CONFLICT"
            ]
            .contains(&job["error"]["errorCode"].as_str().unwrap_or_default()),
            "a backup under faults fails as an upstream error: {context}"
        );
    }
    assert_eq!(
        control.stats.uploads_left_open(),
        0,
        "every multipart upload begun was completed or aborted: {context}"
    );
    let manifest = format!("backups/{backup_id}/manifest.json");
    let committed = exists(&root, &manifest).await;

    if !succeeded {
        outcomes.failed += 1;
        assert!(!committed, "a failed backup has no manifest: {context}");
        let (listed, page) = app.get_json(&format!("/api/v1/backups?uri={root}")).await;
        assert_eq!(listed, 200, "{page}");
        assert_eq!(
            page["backups"].as_array().map(Vec::len),
            Some(0),
            "a failed backup is never listed: {context}"
        );
        // Whatever a cleanup under faults could not remove, deleting the id removes.
        let left = objects_under(&root, &format!("backups/{backup_id}")).await;
        if !left.is_empty() {
            let (deleted, report) = app
                .delete_json(&format!("/api/v1/backups/{backup_id}?uri={root}"))
                .await;
            assert_eq!(
                deleted, 200,
                "deleting what a failed attempt left: {report}; {context}"
            );
        }
        let left = objects_under(&root, &format!("backups/{backup_id}")).await;
        assert!(
            left.is_empty(),
            "nothing of the attempt is left: {left:?}; {context}"
        );
        return;
    }

    outcomes.succeeded += 1;
    assert!(
        committed,
        "a backup that succeeded has its manifest: {context}"
    );
    // AVRO hands its bytes over block by block, so the wide table's file goes up in several
    // parts; PARQUET's writer hands over whole row groups, here the whole file at its end.
    if format == "AVRO" {
        assert!(
            control.stats.uploads_completed.load(Ordering::Relaxed) > 0,
            "the wide table was written with a multipart upload: {context}"
        );
    }
    let (status, verify) = app
        .post_json(
            &format!("/api/v1/backups/{backup_id}:verify?uri={root}"),
            &json!({ "wait": true }),
        )
        .await;
    assert_eq!(status, 200, "{verify}");
    assert_eq!(
        verify["ok"], true,
        "every file matches the manifest: {verify}; {context}"
    );
    if scheme == "gs" {
        crate::helpers::mirror_gcs_for_bigquery(&root).await;
    }
    let target = format!("{dataset}_r{seed}");
    let (status, restore) = restore_into(&app, &root, &backup_id, dataset, &target).await;
    assert_eq!(status, 200, "restore: {restore}; {context}");
    assert_identical(dataset, &target, &context).await;
}

async fn backups_under_storage_faults(scheme: &str, format: &str) {
    let dataset = source_dataset(&format!("faults_{scheme}_{}", format.to_lowercase())).await;
    let mut outcomes = Outcomes::default();
    let mut injected = 0;
    for seed in 0..SEEDS {
        one_run(scheme, format, &dataset, seed, &mut outcomes).await;
        injected += 1;
    }
    assert_eq!(injected, SEEDS);
    // Both outcomes must have been seen, or the suite proves less than it claims.
    assert!(
        outcomes.failed > 0 && outcomes.succeeded > 0,
        "{format} on {scheme}: expected some runs to fail and some to succeed: {outcomes:?}"
    );
}

#[tokio::test]
async fn avro_backups_to_s3_under_faults_are_identical_or_leave_nothing() {
    backups_under_storage_faults("s3", "AVRO").await;
}

#[tokio::test]
async fn parquet_backups_to_s3_under_faults_are_identical_or_leave_nothing() {
    backups_under_storage_faults("s3", "PARQUET").await;
}

#[tokio::test]
async fn avro_backups_to_gcs_under_faults_are_identical_or_leave_nothing() {
    backups_under_storage_faults("gs", "AVRO").await;
}

#[tokio::test]
async fn parquet_backups_to_gcs_under_faults_are_identical_or_leave_nothing() {
    backups_under_storage_faults("gs", "PARQUET").await;
}

/// A create-if-absent whose answer is lost after it landed is resolved by reading back what
/// landed: every manifest write below lands and then reports an error (or, as a retried create
/// would, "already exists"), and every backup still commits, with all its files.
#[tokio::test]
async fn a_manifest_write_whose_answer_was_lost_still_commits_the_backup() {
    let dataset = source_dataset("faults_lost").await;
    for (seed, scheme) in [(1, "s3"), (2, "gs"), (3, "file"), (4, "s3")] {
        let root = unique_root(scheme);
        let lose_every_answer = FaultRates {
            error: 0.0,
            lost_answer: 1.0,
            slow: 0.0,
            slow_by: Duration::ZERO,
        };
        let control = FaultControl::only_keys_containing(seed, lose_every_answer, "manifest.json");
        let app = spawn_faulty_app(&root, control.clone()).await;
        let body = json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset, "tables": ["numbers"] }] },
            "backupStorage": { "uri": root, "exportOptions": { "format": "AVRO" } },
        });
        let (status, answer) = app.post_json("/api/v1/backup?wait=true", &body).await;
        control.set_enabled(false);
        assert_eq!(status, 200, "{scheme}: {answer}");
        assert_eq!(
            control.stats.lost_answers.load(Ordering::Relaxed),
            1,
            "{scheme}"
        );
        let backup_id = answer["backupId"].as_str().expect("backup id");
        let (status, verify) = app
            .post_json(
                &format!("/api/v1/backups/{backup_id}:verify?uri={root}"),
                &json!({ "wait": true }),
            )
            .await;
        assert_eq!(status, 200, "{verify}");
        assert_eq!(
            verify["ok"], true,
            "{scheme}: the data files are all there: {verify}"
        );
    }
}
