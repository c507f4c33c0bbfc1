//! Client-side encryption (age): encrypted backups round-trip in every format to every store;
//! the files are ciphertext that the reference `age` CLI decrypts into files an independent
//! reader reads, and files the CLI encrypted restore; a missing or wrong identity is a 403 naming
//! the backup before any data moves; a changed byte of ciphertext is found; a copy re-encrypts
//! for other recipients. Identities come from a file (`BQB_ENCRYPTION_IDENTITIES`).

use std::path::{Path as FsPath, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::copy::manifest_bytes;
use crate::faults::{assert_identical, restore_into, rows_of, source_dataset};
use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, TestServices, all_types_schema, open_store, spawn_app_with,
    unique_dataset, unique_root,
};
use crate::independent::{accept_wkb_for_wkt, expected_rows, read_independently};
use bq_backup::domain::TableRef;

/// One age key pair: the identity in a file (as `BQB_ENCRYPTION_IDENTITIES` names it) and its
/// public recipient.
struct Key {
    recipient: String,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

fn key() -> Key {
    let identity = age::x25519::Identity::generate();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("key.txt");
    std::fs::write(&file, format!("{}\n", identity.to_string().expose_secret()))
        .expect("the key file is written");
    Key {
        recipient: identity.to_public().to_string(),
        file,
        _dir: dir,
    }
}

/// A server whose identities are `key`'s (or none).
async fn app_with(key: Option<&Key>) -> TestApp {
    let file = key.map(|k| k.file.display().to_string());
    let extra: Vec<(&str, &str)> = file
        .as_deref()
        .map(|f| vec![("BQB_ENCRYPTION_IDENTITIES", f)])
        .unwrap_or_default();
    spawn_app_with(TestServices::get().settings_with(&extra)).await
}

/// Backs `tables` of `dataset` up into `root`, encrypted to `recipients`; the backup id.
async fn encrypted_backup(
    app: &TestApp,
    dataset: &str,
    tables: &[&str],
    root: &str,
    export: Value,
    recipients: &[&str],
) -> String {
    let (status, answer) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset, "tables": tables }] },
                "backupStorage": { "uri": root, "exportOptions": export },
                "encryption": { "recipients": recipients },
            }),
        )
        .await;
    assert_eq!(status, 200, "backup: {answer}");
    answer["backupId"].as_str().expect("backupId").to_string()
}

async fn manifest(root: &str, id: &str) -> Value {
    serde_json::from_slice(&manifest_bytes(root, id).await).expect("the manifest is JSON")
}

fn files_of(manifest: &Value) -> Vec<Value> {
    manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .flat_map(|t| t["files"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn object(root: &str, key: &str) -> bytes::Bytes {
    open_store(root)
        .object_store()
        .get(&Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .bytes()
        .await
        .expect("readable")
}

/// The manifest says who can open the backup, and every file is age ciphertext whose size and
/// SHA-256 the manifest records, with the SHA-256 of its plaintext beside them. Every file ends
/// in `.age`, whether a backup or a copy encrypted it.
async fn assert_encrypted(root: &str, id: &str, recipients: &[&str]) -> Value {
    let manifest = manifest(root, id).await;
    assert_eq!(manifest["manifestVersion"], 3, "{manifest}");
    assert_eq!(
        manifest["encryption"],
        json!({ "scheme": "AGE", "recipients": recipients })
    );
    let files = files_of(&manifest);
    assert!(!files.is_empty(), "{manifest}");
    for file in &files {
        let path = file["path"].as_str().expect("path");
        assert!(path.ends_with(".age"), "{path}");
        let bytes = object(root, path).await;
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{path} is an age file"
        );
        assert_eq!(file["bytes"], bytes.len() as u64, "{path}");
        assert_eq!(
            file["sha256"],
            hex::encode(Sha256::digest(&bytes)),
            "{path}: the ciphertext's checksum"
        );
        assert_eq!(
            file["plaintextSha256"].as_str().map(str::len),
            Some(64),
            "{file}"
        );
    }
    manifest
}

async fn verify(app: &TestApp, root: &str, id: &str) -> (u16, Value) {
    app.post_json(
        &format!("/api/v1/backups/{id}:verify?uri={root}"),
        &json!({ "wait": true }),
    )
    .await
}

async fn numbers_dataset(prefix: &str) -> String {
    let dataset = unique_dataset(prefix);
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    f.create_table(
        &dataset,
        json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "numbers" },
                "schema": { "fields": [{ "name": "id", "type": "INT64", "mode": "REQUIRED" }, { "name": "label", "type": "STRING" }] } }),
    )
    .await;
    f.insert_rows(
        &dataset,
        "numbers",
        (0..300)
            .map(|i| json!({ "id": i, "label": format!("row {i} ✓") }))
            .collect(),
    )
    .await;
    dataset
}

#[tokio::test]
async fn encrypted_backups_round_trip_in_every_format_to_every_store() {
    let key = key();
    let app = app_with(Some(&key)).await;
    let dataset = numbers_dataset("enc_matrix").await;
    let source = rows_of(&TableRef::new(PROJECT, &dataset, "numbers")).await;
    let formats = [
        json!({ "format": "AVRO", "compression": "SNAPPY" }),
        json!({ "format": "CSV", "compression": "GZIP" }),
        json!({ "format": "JSON", "compression": "NONE" }),
        json!({ "format": "PARQUET", "compression": "ZSTD" }),
    ];
    for (i, scheme) in ["gs", "s3", "az", "file"].into_iter().enumerate() {
        for (j, export) in formats.iter().enumerate() {
            let root = unique_root(scheme);
            let what = format!("{export} to {scheme}://");
            let id = encrypted_backup(
                &app,
                &dataset,
                &["numbers"],
                &root,
                export.clone(),
                &[&key.recipient],
            )
            .await;
            assert_encrypted(&root, &id, &[&key.recipient]).await;
            let (status, report) = verify(&app, &root, &id).await;
            assert_eq!(status, 200, "{what}: {report}");
            assert_eq!(report["ok"], true, "{what}: {report}");
            let target = format!("{dataset}_r{i}{j}");
            let (status, answer) = restore_into(&app, &root, &id, &dataset, &target).await;
            assert_eq!(status, 200, "{what}: {answer}");
            assert_eq!(
                rows_of(&TableRef::new(PROJECT, &target, "numbers")).await,
                source,
                "{what}: restored equal"
            );
        }
    }
}

#[tokio::test]
async fn large_encrypted_backups_restore_equal_from_ranged_parquet_reads_and_streamed_json() {
    // About 9 MB in one table: many age chunks, a multipart upload, PARQUET read by ranges.
    let key = key();
    let app = app_with(Some(&key)).await;
    let dataset = source_dataset("enc_large").await;
    for (n, (scheme, export)) in [
        (
            "gs",
            json!({ "format": "PARQUET", "compression": "SNAPPY" }),
        ),
        ("s3", json!({ "format": "JSON", "compression": "GZIP" })),
    ]
    .into_iter()
    .enumerate()
    {
        let root = unique_root(scheme);
        let id = encrypted_backup(&app, &dataset, &[], &root, export, &[&key.recipient]).await;
        let manifest = assert_encrypted(&root, &id, &[&key.recipient]).await;
        assert!(
            manifest["totals"]["bytes"].as_u64() > Some(2_000_000),
            "{manifest}"
        );
        let (status, report) = verify(&app, &root, &id).await;
        assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
        let target = format!("{dataset}_r{n}");
        let (status, answer) = restore_into(&app, &root, &id, &dataset, &target).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["tables"][0]["method"].as_str(),
            Some("UPLOAD"),
            "encrypted files are decrypted by the service: {answer}"
        );
        assert_identical(&dataset, &target, scheme).await;
    }
}

#[tokio::test]
async fn a_missing_or_wrong_identity_is_a_403_naming_the_backup_before_any_data_moves() {
    let (owner, stranger) = (key(), key());
    let writer = app_with(None).await;
    let dataset = numbers_dataset("enc_wrong_key").await;
    let root = unique_root("s3");
    let id = encrypted_backup(
        &writer,
        &dataset,
        &["numbers"],
        &root,
        json!({ "format": "AVRO" }),
        &[&owner.recipient],
    )
    .await;
    let bigquery = crate::helpers::bigquery_client().await;
    for (app, what) in [
        (app_with(Some(&stranger)).await, "another key"),
        (writer, "no identities"),
    ] {
        let target = format!("{dataset}_{}", what.replace(' ', "_"));
        let (status, answer) = restore_into(&app, &root, &id, &dataset, &target).await;
        assert_eq!(status, 403, "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(&id), "{what}: names the backup: {answer}");
        assert!(
            bigquery
                .find_table(&TableRef::new(PROJECT, &target, "numbers"))
                .await
                .expect("BigQuery answers")
                .is_none(),
            "{what}: nothing was restored"
        );
        let (status, answer) = verify(&app, &root, &id).await;
        assert_eq!(status, 403, "{what}: verify: {answer}");
    }
    // The rightful key opens it.
    let (status, answer) = verify(&app_with(Some(&owner)).await, &root, &id).await;
    assert_eq!((status, &answer["ok"]), (200, &json!(true)), "{answer}");
}

#[tokio::test]
async fn a_changed_byte_of_ciphertext_is_found_by_verify_and_stops_the_restore() {
    let key = key();
    let app = app_with(Some(&key)).await;
    let dataset = numbers_dataset("enc_tamper").await;
    for (n, format) in ["PARQUET", "CSV"].into_iter().enumerate() {
        let root = unique_root("file");
        let id = encrypted_backup(
            &app,
            &dataset,
            &["numbers"],
            &root,
            json!({ "format": format }),
            &[&key.recipient],
        )
        .await;
        let manifest = manifest(&root, &id).await;
        let file = files_of(&manifest)[0]["path"]
            .as_str()
            .expect("path")
            .to_string();
        let local = FsPath::new(root.trim_start_matches("file://")).join(&file);
        let mut bytes = std::fs::read(&local).expect("the file is there");
        // In the payload, past the header: the size stays, a chunk no longer authenticates.
        let at = bytes.len() - 20;
        bytes[at] ^= 0x01;
        std::fs::write(&local, &bytes).expect("tampered");

        let (status, report) = verify(&app, &root, &id).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["ok"], false, "{format}: {report}");
        assert_eq!(report["findings"][0]["file"], file.as_str(), "{report}");

        let target = format!("{dataset}_t{n}");
        let (status, answer) = restore_into(&app, &root, &id, &dataset, &target).await;
        assert_eq!(status, 422, "{format}: {answer}");
        let text = answer.to_string();
        assert!(text.contains(&file), "{format}: names the file: {answer}");
        let restored = crate::helpers::bigquery_client()
            .await
            .find_table(&TableRef::new(PROJECT, &target, "numbers"))
            .await
            .expect("BigQuery answers");
        assert!(
            restored.is_none_or(|t| t.num_rows.unwrap_or(0) == 0),
            "{format}: no row of a damaged backup is restored"
        );
    }
}

/// Runs `age` with `args`; panics with its output when it fails.
fn age_cli(args: &[&str]) {
    let output = Command::new("age")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("the age CLI (Debian package age, installed by scripts/test-services.sh) does not run: {e}")
        });
    assert!(
        output.status.success(),
        "age {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_age_cli_decrypts_our_files_into_files_an_independent_reader_reads() {
    let key = key();
    let app = app_with(None).await;
    let dataset = unique_dataset("enc_cli_out");
    BigQueryFixtures::new()
        .create_all_types_dataset(&dataset)
        .await;
    for format in ["PARQUET", "AVRO"] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = format!("file://{}", dir.path().display());
        let export = json!({ "format": format, "compression": if format == "AVRO" { "DEFLATE" } else { "ZSTD" } });
        let id = encrypted_backup(
            &app,
            &dataset,
            &["all_types"],
            &root,
            export,
            &[&key.recipient],
        )
        .await;
        let mut manifest = manifest(&root, &id).await;
        // Each file decrypted by the CLI beside it, without `.age`; the manifest names those.
        let clear = tempfile::tempdir().expect("a temp dir");
        for file in manifest["tables"][0]["files"]
            .as_array_mut()
            .expect("files")
        {
            let path = file["path"].as_str().expect("path").to_string();
            let plain = path.strip_suffix(".age").expect("an .age file").to_string();
            let out = clear.path().join(&plain);
            std::fs::create_dir_all(out.parent().expect("a parent")).expect("dirs");
            age_cli(&[
                "-d",
                "-i",
                key.file.to_str().expect("utf-8"),
                "-o",
                out.to_str().expect("utf-8"),
                dir.path().join(&path).to_str().expect("utf-8"),
            ]);
            let bytes = std::fs::read(&out).expect("decrypted");
            assert_eq!(
                file["plaintextSha256"],
                hex::encode(Sha256::digest(&bytes)),
                "{path}: the plaintext checksum is of what `age -d` gives"
            );
            file["path"] = json!(plain);
        }
        let fields: Vec<Value> = all_types_schema().as_array().expect("fields").clone();
        let mut actual = read_independently(clear.path(), &manifest);
        let expected = expected_rows(&fields);
        accept_wkb_for_wkt(&mut actual, &expected, "geo");
        assert_eq!(
            actual, expected,
            "{format}: the rows, read by another decoder"
        );
    }
}

#[tokio::test]
async fn files_the_age_cli_encrypted_restore_equal() {
    let key = key();
    let app = app_with(Some(&key)).await;
    let dataset = numbers_dataset("enc_cli_in").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = format!("file://{}", dir.path().display());
    // A backup in clear, whose files the CLI then encrypts in place: the manifest is rewritten
    // as an encrypted backup's (ciphertext size and SHA-256, plaintext SHA-256, recipients).
    let (status, answer) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                "backupStorage": { "uri": root, "exportOptions": { "format": "PARQUET" } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["backupId"].as_str().expect("backupId").to_string();
    let manifest_path = dir.path().join(format!("backups/{id}/manifest.json"));
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    for file in manifest["tables"][0]["files"]
        .as_array_mut()
        .expect("files")
    {
        let path = file["path"].as_str().expect("path").to_string();
        let clear = dir.path().join(&path);
        let sealed = dir.path().join(format!("{path}.age"));
        age_cli(&[
            "-r",
            &key.recipient,
            "-o",
            sealed.to_str().expect("utf-8"),
            clear.to_str().expect("utf-8"),
        ]);
        std::fs::remove_file(&clear).expect("the clear file goes");
        let bytes = std::fs::read(&sealed).expect("encrypted");
        file["plaintextSha256"] = file["sha256"].clone();
        file["sha256"] = json!(hex::encode(Sha256::digest(&bytes)));
        file["bytes"] = json!(bytes.len());
        file["path"] = json!(format!("{path}.age"));
    }
    manifest["encryption"] = json!({ "scheme": "AGE", "recipients": [key.recipient] });
    manifest["manifestVersion"] = json!(3);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("JSON")).expect("written");

    let (status, report) = verify(&app, &root, &id).await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
    let target = format!("{dataset}_r");
    let (status, answer) = restore_into(&app, &root, &id, &dataset, &target).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        rows_of(&TableRef::new(PROJECT, &target, "numbers")).await,
        rows_of(&TableRef::new(PROJECT, &dataset, "numbers")).await
    );
}

#[tokio::test]
async fn a_copy_encrypts_a_clear_backup_and_re_encrypts_an_encrypted_one_for_new_recipients() {
    let (old, new) = (key(), key());
    let app = app_with(Some(&old)).await;
    let dataset = numbers_dataset("enc_copy").await;
    let (gs, s3, file) = (unique_root("gs"), unique_root("s3"), unique_root("file"));
    let id = encrypted_backup(
        &app,
        &dataset,
        &["numbers"],
        &gs,
        json!({ "format": "PARQUET" }),
        &[&old.recipient],
    )
    .await;
    let source = manifest(&gs, &id).await;

    // Re-encrypted for `new`: the plaintext is the same, the ciphertext and recipients are not.
    let (status, accepted) = app
        .post_json(
            &format!("/api/v1/backups/{id}:copy?uri={gs}"),
            &json!({ "to": s3, "encryption": { "recipients": [new.recipient] } }),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = app
        .wait_for_job(accepted["jobId"].as_str().expect("jobId"))
        .await;
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    let copied = assert_encrypted(&s3, &id, &[&new.recipient]).await;
    for (a, b) in files_of(&source).iter().zip(files_of(&copied)) {
        assert_eq!(a["plaintextSha256"], b["plaintextSha256"]);
        assert_ne!(a["sha256"], b["sha256"]);
    }
    let (status, answer) = verify(&app, &s3, &id).await;
    assert_eq!(
        status, 403,
        "the old key no longer opens the copy: {answer}"
    );
    let app_new = app_with(Some(&new)).await;
    let (status, report) = verify(&app_new, &s3, &id).await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");
    let target = format!("{dataset}_c");
    let (status, answer) = restore_into(&app_new, &s3, &id, &dataset, &target).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        rows_of(&TableRef::new(PROJECT, &target, "numbers")).await,
        rows_of(&TableRef::new(PROJECT, &dataset, "numbers")).await
    );

    // A backup in clear, encrypted by its copy.
    let clear_root = unique_root("s3");
    let (status, answer) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                "backupStorage": { "uri": clear_root, "exportOptions": { "format": "AVRO" } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let clear_id = answer["backupId"].as_str().expect("backupId").to_string();
    let (status, accepted) = app
        .post_json(
            &format!("/api/v1/backups/{clear_id}:copy?uri={clear_root}"),
            &json!({ "to": file, "encryption": { "recipients": [new.recipient] }, "wait": true }),
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    let encrypted = assert_encrypted(&file, &clear_id, &[&new.recipient]).await;
    // Under the new names only: nothing in clear reached the target.
    for entry in files_of(&encrypted) {
        let path = entry["path"].as_str().expect("path");
        let clear = path.strip_suffix(".age").expect("an .age file");
        assert!(
            open_store(&file)
                .object_store()
                .head(&Path::from(clear))
                .await
                .is_err(),
            "{clear} was written in clear at the target"
        );
    }
    let (status, report) = verify(&app_new, &file, &clear_id).await;
    assert_eq!((status, &report["ok"]), (200, &json!(true)), "{report}");

    // Re-encrypting needs identities that open the source: 403 before anything is copied.
    let (status, answer) = app_with(None)
        .await
        .post_json(
            &format!("/api/v1/backups/{id}:copy?uri={gs}"),
            &json!({ "to": unique_root("az"), "encryption": { "recipients": [new.recipient] } }),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
}

#[tokio::test]
async fn bad_recipients_and_encrypted_extracts_are_refused_naming_the_field() {
    let app = app_with(None).await;
    let key = key();
    let body = |encryption: Value, method: &str| {
        json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": "any" }] },
            "backupStorage": { "uri": "gs://bqb-test/x", "exportOptions": { "format": "PARQUET" } },
            "method": method,
            "encryption": encryption,
        })
    };
    let (status, answer) = app
        .post_json(
            "/api/v1/backup",
            &body(json!({ "recipients": [key.recipient, "age1nope"] }), "AUTO"),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["details"][0]["field"], "encryption.recipients[1]",
        "{answer}"
    );
    let (status, answer) = app
        .post_json(
            "/api/v1/backup",
            &body(json!({ "recipients": [key.recipient] }), "EXTRACT"),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["details"][0]["field"], "encryption", "{answer}");
    let (status, answer) = app
        .post_json("/api/v1/backup", &body(json!({ "recipients": [] }), "AUTO"))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["details"][0]["field"], "encryption.recipients",
        "{answer}"
    );
}
