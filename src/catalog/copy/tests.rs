//! The copy of a backup between repositories, on memory stores: what arrives, what a mismatch
//! leaves, and the plug of a transform.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::catalog::attempt::live_claim;
use crate::catalog::lease::LeaseTiming;
use crate::catalog::manifest::FileEntry;
use crate::domain::{BackupId, StorageUri};
use crate::error::{Error, ErrorKind};
use crate::storage::{Access, StorageConfig, Store, get_if_exists, layout};

const V1: &str = include_str!("../../../tests/fixtures/manifests/v1-csv-gzip.json");

fn store(uri: &str) -> Store {
    StorageConfig::default()
        .open(&StorageUri::parse(uri).unwrap(), "uri", Access::Write)
        .unwrap()
}

/// Writes the fixture's backup into `store`: its files with content matching the manifest
/// (sizes and SHA-256 recomputed), one more file that records a CRC32C (as BigQuery's EXTRACT
/// files do), and a field this build does not know.
async fn seed(store: &Store) -> (BackupId, Bytes) {
    let mut value: Value = serde_json::from_str(V1).unwrap();
    value["futureField"] = json!({ "kept": true });
    let id = BackupId::parse(value["backupId"].as_str().unwrap()).unwrap();
    let os = store.object_store();
    let mut total = 0;
    value["manifestVersion"] = json!(2);
    for table in value["tables"].as_array_mut().unwrap() {
        let mut bytes = 0;
        let name = table["table"].to_string();
        let extra = table["files"].as_array().unwrap().first().map(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .replace("part-00000", "part-00001")
        });
        if let Some(path) = extra {
            let body = Bytes::from(format!("extracted {name}").repeat(999));
            os.put(&Path::parse(&path).unwrap(), body.clone().into())
                .await
                .unwrap();
            let crc32c = crate::catalog::checksum::crc32c_hex(&body);
            bytes += body.len() as u64;
            table["files"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "path": path, "bytes": body.len(), "rows": 0, "crc32c": crc32c }));
        }
        for (i, file) in table["files"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
            .filter(|(_, f)| f.get("crc32c").is_none())
        {
            let body = Bytes::from(format!("file {i} of {name}").repeat(1000));
            let path = Path::parse(file["path"].as_str().unwrap()).unwrap();
            file["bytes"] = json!(body.len());
            file["sha256"] = json!(hex::encode(Sha256::digest(&body)));
            bytes += body.len() as u64;
            os.put(&path, body.into()).await.unwrap();
        }
        table["bytes"] = json!(bytes);
        total += bytes;
    }
    value["totals"]["bytes"] = json!(total);
    let body = Bytes::from(serde_json::to_vec_pretty(&value).unwrap());
    os.put(&layout::manifest(&id), body.clone().into())
        .await
        .unwrap();
    (id, body)
}

fn context(transform: Arc<dyn Transform>) -> CopyContext {
    CopyContext {
        cancel: CancellationToken::new(),
        progress: None,
        lease: LeaseTiming::default(),
        transform,
    }
}

async fn plan_for(source: &Store, target: &Store, id: BackupId) -> CopyPlan {
    CopyPlan {
        backup_id: id,
        source: source.clone(),
        target: target.clone(),
        backup: read_source(source, &id).await.unwrap(),
        existing: Existing::Refuse,
    }
}

#[tokio::test]
async fn a_copy_carries_every_file_and_the_manifest_byte_for_byte() {
    let (source, target) = (store("memory://copy-a/src"), store("memory://copy-a/dst"));
    let (id, manifest) = seed(&source).await;
    let report = run_copy(
        &plan_for(&source, &target, id).await,
        &context(Arc::new(Identity)),
    )
    .await
    .unwrap();
    assert!(report.files > 0 && !report.already_present, "{report:?}");
    let copied = get_if_exists(target.object_store().as_ref(), &layout::manifest(&id))
        .await
        .unwrap();
    assert_eq!(copied, Some(manifest), "unknown fields included");
    for (_, file) in data_files(&read_source(&target, &id).await.unwrap().manifest) {
        let path = Path::parse(&file.path).unwrap();
        let read = |store: &Store| {
            let os = store.object_store().clone();
            let path = path.clone();
            async move { os.get(&path).await.unwrap().bytes().await.unwrap() }
        };
        assert_eq!(read(&target).await, read(&source).await, "{}", file.path);
    }
    assert!(
        live_claim(&target, &id).await.unwrap().is_none(),
        "the claim is released"
    );
    // Again: the id exists at the target now.
    let again = run_copy(
        &plan_for(&source, &target, id).await,
        &context(Arc::new(Identity)),
    )
    .await
    .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");
}

#[tokio::test]
async fn a_file_that_does_not_match_fails_the_copy_and_nothing_is_left() {
    let (source, target) = (store("memory://copy-b/src"), store("memory://copy-b/dst"));
    let (id, _) = seed(&source).await;
    let backup = read_source(&source, &id).await.unwrap();
    let victim = data_files(&backup.manifest).next().unwrap().1.path.clone();
    let path = Path::parse(&victim).unwrap();
    let mut body = source
        .object_store()
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    body[3] ^= 1;
    source.object_store().put(&path, body.into()).await.unwrap();
    let err = run_copy(
        &plan_for(&source, &target, id).await,
        &context(Arc::new(Identity)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DamagedBackup, "{err}");
    assert!(err.to_string().contains(&victim), "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert_nothing_at(&target).await;

    // A file BigQuery wrote is checked against its CRC32C.
    let extracted = data_files(&backup.manifest)
        .map(|(_, f)| f)
        .find(|f| f.crc32c.is_some())
        .unwrap();
    let target = store("memory://copy-b/dst2");
    let source = store("memory://copy-b/src2");
    let (id, _) = seed(&source).await;
    let path = Path::parse(&extracted.path).unwrap();
    let mut body = source
        .object_store()
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    body[0] ^= 1;
    source.object_store().put(&path, body.into()).await.unwrap();
    let err = run_copy(
        &plan_for(&source, &target, id).await,
        &context(Arc::new(Identity)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&extracted.path), "{err}");
    assert!(err.to_string().contains("CRC32C"), "{err}");
    assert_nothing_at(&target).await;
}

async fn assert_nothing_at(target: &Store) {
    let left: Vec<_> = target
        .object_store()
        .list(None)
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A stand-in for re-encryption: every byte changes, and the manifest says so.
struct Flip;
struct FlipFile;

impl Transform for Flip {
    fn file(&self, _entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error> {
        Ok(Some(Box::new(FlipFile)))
    }
    fn edit_manifest(&self, manifest: &mut Value) -> Result<(), Error> {
        manifest["flipped"] = json!(true);
        Ok(())
    }
}

impl FileTransform for FlipFile {
    fn update(&mut self, input: Bytes) -> Result<Bytes, Error> {
        Ok(input.iter().map(|b| !b).collect())
    }
    fn finish(self: Box<Self>) -> Result<(Bytes, Option<String>), Error> {
        Ok((Bytes::from_static(b"tail"), None))
    }
}

#[tokio::test]
async fn a_transform_rewrites_the_entries_of_the_files_it_changed() {
    let (source, target) = (store("memory://copy-c/src"), store("memory://copy-c/dst"));
    let (id, _) = seed(&source).await;
    run_copy(
        &plan_for(&source, &target, id).await,
        &context(Arc::new(Flip)),
    )
    .await
    .unwrap();
    let copied = read_source(&target, &id).await.unwrap();
    let raw: Value = serde_json::from_slice(&copied.manifest_bytes).unwrap();
    assert_eq!(raw["flipped"], true);
    assert_eq!(raw["futureField"]["kept"], true);
    let mut total = 0;
    for (table, file) in data_files(&copied.manifest) {
        let body = target
            .object_store()
            .get(&Path::parse(&file.path).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(file.bytes, body.len() as u64);
        assert_eq!(file.sha256, hex::encode(Sha256::digest(&body)));
        assert!(body.ends_with(b"tail"));
        assert_eq!(
            table.bytes,
            table.files.iter().map(|f| f.bytes).sum::<u64>()
        );
        total += file.bytes;
    }
    assert_eq!(copied.manifest.totals.bytes, total);
}

#[tokio::test]
async fn a_download_into_a_directory_that_holds_it_already_copies_nothing() {
    let (source, target) = (store("memory://copy-d/src"), store("memory://copy-d/dst"));
    let (id, _) = seed(&source).await;
    let mut plan = plan_for(&source, &target, id).await;
    plan.existing = Existing::AcceptIdentical;
    let first = run_copy(&plan, &context(Arc::new(Identity))).await.unwrap();
    assert!(!first.already_present);
    let again = run_copy(&plan, &context(Arc::new(Identity))).await.unwrap();
    assert!(again.already_present, "{again:?}");
    // Anything else there is refused: here a stray file of an unfinished download.
    let (other_source, other) = (store("memory://copy-e/src"), store("memory://copy-e/dst"));
    let (id, _) = seed(&other_source).await;
    let stray = layout::backup_dir(&id).join("stray.txt");
    other
        .object_store()
        .put(&stray, Bytes::from_static(b"x").into())
        .await
        .unwrap();
    let mut plan = plan_for(&other_source, &other, id).await;
    plan.existing = Existing::AcceptIdentical;
    let err = run_copy(&plan, &context(Arc::new(Identity)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn an_incremental_backups_files_of_earlier_backups_move_under_its_own_directory() {
    let id = BackupId::parse("20261202_020000").unwrap();
    assert_eq!(
        flattened(
            &id,
            "backups/20261201_020000/p-1/shop/orders/partition-20261130-part-00000.parquet"
        )
        .as_deref(),
        Some("backups/20261202_020000/p-1/shop/orders/partition-20261130-part-00000.parquet")
    );
    let own = "backups/20261202_020000/p-1/shop/orders/partition-20261201-part-00000.parquet";
    assert_eq!(flattened(&id, own), None);
    assert_eq!(flattened(&id, "not/a/backup/key"), None);
}
