//! One storage suite, run against every backend: fake-gcs (gs://, through the XML shim), moto
//! (s3://), azurite (az://) and a temporary directory (file://).

use bq_backup::storage::Store;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart,
};

use crate::helpers::{open_store, unique_root};

/// 6 MiB + 3 bytes of non-repeating data: more than one 5 MiB part.
fn big_payload() -> Bytes {
    let mut data = Vec::with_capacity(6 * 1024 * 1024 + 3);
    let mut x: u32 = 0x1234_5678;
    while data.len() < 6 * 1024 * 1024 + 3 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x & 0xff) as u8);
    }
    Bytes::from(data)
}

async fn suite(store: Store) {
    let os = store.object_store().clone();
    let one = Path::from("a/b/one.txt");
    let two = Path::from("a/two.txt");
    let other = Path::from("z/other.txt");

    // put, get
    os.put(&one, PutPayload::from_static(b"0123456789"))
        .await
        .unwrap();
    os.put(&two, PutPayload::from_static(b"two")).await.unwrap();
    os.put(&other, PutPayload::from_static(b"other"))
        .await
        .unwrap();
    let got = os.get(&one).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"0123456789");

    // ranged get
    let opts = GetOptions {
        range: Some(GetRange::Bounded(2..5)),
        ..Default::default()
    };
    let part = os
        .get_opts(&one, opts)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&part[..], b"234");

    // list with prefix
    let mut listed: Vec<String> = os
        .list(Some(&Path::from("a")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, vec!["a/b/one.txt", "a/two.txt"]);
    let head = os.head(&one).await.unwrap();
    assert_eq!(head.size, 10);

    // create-if-absent: the manifest's commit point
    let manifest = Path::from("m/manifest.json");
    os.put_opts(
        &manifest,
        PutPayload::from_static(b"{}"),
        PutMode::Create.into(),
    )
    .await
    .unwrap();
    let again = os
        .put_opts(
            &manifest,
            PutPayload::from_static(b"{\"x\":1}"),
            PutMode::Create.into(),
        )
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "second create must fail: {again:?}"
    );
    assert_eq!(
        &os.get(&manifest).await.unwrap().bytes().await.unwrap()[..],
        b"{}"
    );

    // multipart put larger than one 5 MiB part
    let data = big_payload();
    let big = Path::from("big/part-00000.bin");
    let upload = os.put_multipart(&big).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    for chunk in data.chunks(1024 * 1024) {
        writer.write(chunk);
    }
    writer.finish().await.unwrap();
    let back = os.get(&big).await.unwrap().bytes().await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "multipart content differs");

    // delete
    os.delete(&one).await.unwrap();
    let gone = os.get(&one).await;
    assert!(
        matches!(gone, Err(object_store::Error::NotFound { .. })),
        "{gone:?}"
    );
    for p in [&two, &other, &manifest, &big] {
        os.delete(p).await.unwrap();
    }
}

#[tokio::test]
async fn storage_suite_passes_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    suite(open_store(&format!("file://{}", dir.path().display()))).await;
}

#[tokio::test]
async fn storage_suite_passes_on_gcs() {
    suite(open_store(&unique_root("gs"))).await;
}

#[tokio::test]
async fn storage_suite_passes_on_s3() {
    suite(open_store(&unique_root("s3"))).await;
}

#[tokio::test]
async fn storage_suite_passes_on_azure() {
    suite(open_store(&unique_root("az"))).await;
}

#[tokio::test]
async fn storage_suite_passes_in_memory() {
    suite(open_store(&format!(
        "memory://{}",
        uuid::Uuid::new_v4().simple()
    )))
    .await;
}

#[tokio::test]
async fn a_relative_file_uri_is_rooted_at_the_working_directory() {
    let name = format!("target-it-{}", uuid::Uuid::new_v4().simple());
    let store = open_store(&format!("file://./{name}"));
    store
        .object_store()
        .put(&Path::from("x.txt"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    let on_disk = std::path::Path::new(&name).join("x.txt");
    assert!(on_disk.exists(), "{} should exist", on_disk.display());
    std::fs::remove_dir_all(&name).unwrap();
}
