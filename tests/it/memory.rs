//! Restore and verify stream a file, and a backup streams a table: their memory does not follow
//! its size. Each command runs as its own process (the CLI, as a user runs it) and its peak RSS
//! is read exactly from `wait4`.
//!
//! The large files are written here with bq-backup's own encoder (the bytes a backup writes) into
//! a copy of a real backup of a small table, its manifest updated with their size, rows and
//! SHA-256: pushing hundreds of MB through the emulator's Read API first would only slow the
//! test down. Restore then loads them into the emulator for real.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use bq_backup::formats::{EncodeOptions, FileEncoder, Format};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestServices, bq_backup_command, manifest_json, unique_dataset,
};

const MIB: u64 = 1024 * 1024;

/// A finished child process: its peak resident set and what it printed.
struct Measured {
    peak_rss_mib: f64,
    stdout: String,
    stderr: String,
    success: bool,
}

/// Starts the command given as arguments and reports `wait4`'s exit code and peak RSS of it.
///
/// A process started straight from this test binary would report the test binary's own peak:
/// std spawns with `vfork`, and Linux carries the old address space's high-water mark across
/// `exec` into `ru_maxrss`, so every child would show this (large, multi-test) process's peak.
/// Python's few MB are the floor here instead, far below what bq-backup itself uses.
const WAIT4: &str = r#"
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"#;

/// Runs `bq-backup args…` and measures its peak RSS exactly (`ru_maxrss`, KiB on Linux).
fn run_measured(args: &[&str]) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let (out, err, report) = (
        dir.path().join("stdout"),
        dir.path().join("stderr"),
        dir.path().join("wait4"),
    );
    let mut inner = bq_backup_command(TestServices::get().env_with(&[("BQB_LOG_LEVEL", "warn")]));
    inner.args(args);
    let venv =
        std::env::var("BQB_TEST_VENV").expect("BQB_TEST_VENV (scripts/test-services.sh env)");
    let mut command = Command::new(format!("{venv}/bin/python"));
    command
        .arg("-c")
        .arg(WAIT4)
        .arg(&report)
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let status = command.status().expect("python runs");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.success(), "the wait4 wrapper failed: {stderr}");
    let report = std::fs::read_to_string(&report).unwrap();
    let (code, peak_kib) = report.split_once(' ').expect("exit code and peak");
    Measured {
        peak_rss_mib: peak_kib.parse::<f64>().unwrap() / 1024.0,
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr,
        success: code == "0",
    }
}

fn write_request(dir: &Path, name: &str, body: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

/// `rows` rows of `schema` (`id`, `payload`): ids from 0, payloads of 200 pseudo-random
/// lowercase letters (xorshift), which no codec shrinks much.
fn batches(schema: &SchemaRef, rows: u64) -> impl Iterator<Item = RecordBatch> + '_ {
    const BATCH: u64 = 8192;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..rows.div_ceil(BATCH)).map(move |n| {
        let first = n * BATCH;
        let count = BATCH.min(rows - first);
        let ids = Int64Array::from_iter_values((first..first + count).map(|i| i as i64));
        let payloads = StringArray::from_iter_values((0..count).map(|_| {
            let mut text = String::with_capacity(200);
            for _ in 0..25 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut word = state;
                for _ in 0..8 {
                    text.push(char::from(b'a' + (word % 26) as u8));
                    word /= 26;
                }
            }
            text
        }));
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids) as ArrayRef, Arc::new(payloads) as ArrayRef],
        )
        .unwrap()
    })
}

/// A copy of the one-table backup at `small_root` (backup `id`) in `root`, its only file replaced
/// by `count` files of about `target_bytes` each in `format` (the same rows in each), and the
/// manifest recording them. Returns the size of all of them.
fn with_large_files(
    small_root: &Path,
    root: &Path,
    id: &str,
    format: Format,
    target_bytes: u64,
    count: usize,
) -> u64 {
    let mut manifest = manifest_json(small_root, id);
    let table = &mut manifest["tables"][0];
    let schema: SchemaRef = Arc::new(
        bq_backup::catalog::decode_arrow_schema(table["arrowSchema"].as_str().unwrap()).unwrap(),
    );
    let first = table["files"][0]["path"].as_str().unwrap().to_string();
    // About 208 bytes a row in either format.
    let rows = target_bytes / 208;
    let mut encoder = FileEncoder::new(schema.clone(), &EncodeOptions::new(format)).unwrap();
    let mut bytes = Vec::new();
    for batch in batches(&schema, rows) {
        encoder.write(&batch).unwrap();
        bytes.extend_from_slice(&encoder.take_output().to_bytes());
    }
    bytes.extend_from_slice(&encoder.finish().unwrap().to_bytes());
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    let mut files = Vec::new();
    for n in 0..count {
        // part-00000.ext, part-00001.ext, ...: the first file's name with the part number changed.
        let file = first.replace("part-00000", &format!("part-{n:05}"));
        let path = root.join(&file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        files.push(json!({ "path": file, "bytes": size, "rows": rows, "sha256": sha256 }));
    }
    let (rows, size) = (rows * count as u64, size * count as u64);
    table["files"] = json!(files);
    table["rows"] = json!(rows);
    table["bytes"] = json!(size);
    manifest["totals"]["rows"] = json!(rows);
    manifest["totals"]["bytes"] = json!(size);
    let manifest_path = root.join(format!("backups/{id}/manifest.json"));
    std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    size
}

/// Peak RSS (MiB) of `verify` and of `restore` (into datasets prefixed `prefix`) of backup `id`.
fn verify_and_restore(
    dir: &Path,
    root: &Path,
    id: &str,
    dataset: &str,
    prefix: &str,
) -> (f64, f64) {
    let uri = format!("file://{}", root.display());
    let verify = run_measured(&["verify", id, "--uri", &uri]);
    assert!(
        verify.success,
        "verify failed: {}\n{}",
        verify.stdout, verify.stderr
    );
    let report: Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let request = write_request(
        dir,
        &format!("{prefix}restore.json"),
        &json!({
            "bigQuery": { "projectId": PROJECT, "datasetsToRestore": [dataset] },
            "restoreStorage": { "uri": uri },
            "backupId": id,
            "datasetPrefix": prefix,
        }),
    );
    let restore = run_measured(&["restore", "--request", request.to_str().unwrap()]);
    assert!(
        restore.success,
        "restore failed: {}\n{}",
        restore.stdout, restore.stderr
    );
    let summary: Value = serde_json::from_str(&restore.stdout).unwrap();
    assert_eq!(summary["status"], "SUCCEEDED", "{summary}");
    assert_eq!(summary["rows"], report["rowsChecked"], "{summary}");
    (verify.peak_rss_mib, restore.peak_rss_mib)
}

async fn drop_dataset(dataset: &str) {
    let url = format!(
        "{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}?deleteContents=true",
        TestServices::get().bigquery_rest
    );
    // Frees the emulator's memory for the tests that follow; a failure here changes no result.
    let _ = reqwest::Client::new().delete(url).send().await;
}

/// Backs up a small table in `format`, then verifies and restores it and two copies whose one
/// file is 32 and 128 MiB: the peak memory of both commands must not follow the file.
async fn memory_stays_flat_as_the_file_grows(format: Format) {
    memory_stays_flat_as_the_files_grow(format, 1, 32 * MIB, 128 * MIB).await;
}

/// Backs up a small table in `format`, then verifies and restores it and two copies whose
/// `count` files are `small` and `large` bytes each: the peak memory of both commands must not
/// follow the files.
async fn memory_stays_flat_as_the_files_grow(format: Format, count: usize, small: u64, large: u64) {
    let dir = tempfile::tempdir().unwrap();
    let dataset = unique_dataset("mem");
    let fixtures = BigQueryFixtures::new();
    fixtures.create_dataset(&dataset, json!({})).await;
    fixtures
        .create_table(
            &dataset,
            json!({
                "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "big" },
                "schema": { "fields": [
                    { "name": "id", "type": "INT64", "mode": "REQUIRED" },
                    { "name": "payload", "type": "STRING" }
                ] }
            }),
        )
        .await;
    fixtures
        .insert_rows(
            &dataset,
            "big",
            vec![
                json!({ "id": 1, "payload": "a" }),
                json!({ "id": 2, "payload": "b" }),
            ],
        )
        .await;
    let tiny = dir.path().join("tiny");
    let backup = run_measured(&[
        "backup",
        "--request",
        write_request(dir.path(), "backup.json", &json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
            "backupStorage": { "uri": format!("file://{}", tiny.display()), "exportOptions": { "format": format.as_str() } },
            "fileSizeBytes": 5_368_709_120_u64
        }))
        .to_str()
        .unwrap(),
    ]);
    assert!(backup.success, "backup failed: {}", backup.stderr);
    let id = serde_json::from_str::<Value>(&backup.stdout).unwrap()["backupId"]
        .as_str()
        .unwrap()
        .to_string();

    let (small_root, large_root) = (dir.path().join("small"), dir.path().join("large"));
    let small = with_large_files(&tiny, &small_root, &id, format, small, count);
    let large = with_large_files(&tiny, &large_root, &id, format, large, count);

    let (verify_tiny, restore_tiny) = verify_and_restore(dir.path(), &tiny, &id, &dataset, "t_");
    let (verify_small, restore_small) =
        verify_and_restore(dir.path(), &small_root, &id, &dataset, "s_");
    let (verify_large, restore_large) =
        verify_and_restore(dir.path(), &large_root, &id, &dataset, "l_");
    for prefix in ["t_", "s_", "l_"] {
        drop_dataset(&format!("{prefix}{dataset}")).await;
    }
    drop_dataset(&dataset).await;

    let (small_mib, large_mib) = (small as f64 / MIB as f64, large as f64 / MIB as f64);
    let figures = format!(
        "{format}: {count} file(s) of {small_mib:.0} and {large_mib:.0} MiB in all; peak RSS MiB: verify {verify_tiny:.0} (tiny) / {verify_small:.0} / {verify_large:.0}, restore {restore_tiny:.0} (tiny) / {restore_small:.0} / {restore_large:.0}"
    );
    eprintln!("{figures}");
    // Flat: a file four times as large may cost a little more (allocator noise), nowhere near
    // the extra bytes themselves. Holding the file once would add all of them.
    let allowed = (large_mib - small_mib) / 4.0;
    assert!(
        verify_large - verify_small < allowed,
        "verify grows with the file: {figures}"
    );
    assert!(
        restore_large - restore_small < allowed,
        "restore grows with the file: {figures}"
    );
    // And well below the files themselves above what a tiny restore needs. Verify reads up to
    // four files at once, each a row group at a time: 4 files of 48 MiB took 89-100 MiB above
    // the tiny one (holding them would take 192 MiB more), one file of 128 MiB about 22.
    assert!(verify_large - verify_tiny < large_mib * 0.75, "{figures}");
    assert!(restore_large - restore_tiny < large_mib * 0.75, "{figures}");
}

#[tokio::test]
async fn restore_and_verify_of_a_large_parquet_file_use_bounded_memory() {
    memory_stays_flat_as_the_file_grows(Format::Parquet).await;
}

#[tokio::test]
async fn restore_and_verify_of_a_large_avro_file_use_bounded_memory() {
    memory_stays_flat_as_the_file_grows(Format::Avro).await;
}

/// Several PARQUET files of a table are loaded at once (`BQB_LOAD_FILES_PER_TABLE`, 4), each
/// through a staging table: memory holds two 8 MiB ranges per file, whatever the files' size.
#[tokio::test]
async fn restore_of_several_large_parquet_files_at_once_uses_bounded_memory() {
    memory_stays_flat_as_the_files_grow(Format::Parquet, 4, 16 * MIB, 48 * MIB).await;
}

/// Creates `dataset.table` of `rows` rows inside the emulator (one CTAS query: nothing uploads):
/// the benchmark's mixed columns plus 64 characters of random digits, about 150 bytes a row in
/// memory, little of which a codec can take away.
async fn generated_table(dataset: &str, table: &str, rows: u64) {
    let query = format!(
        "CREATE TABLE `{dataset}.{table}` AS
         SELECT id,
                RAND() * 1000 AS amount,
                CAST(MOD(id, 100000) / 100 AS NUMERIC) AS price,
                MOD(id, 3) = 0 AS flag,
                CONCAT(CAST(RAND() AS STRING), CAST(RAND() AS STRING), CAST(RAND() AS STRING)) AS noise,
                DATE_ADD(DATE '2026-01-01', INTERVAL MOD(id, 365) DAY) AS day,
                TIMESTAMP_ADD(TIMESTAMP '2026-01-01 00:00:00+00', INTERVAL id SECOND) AS ts
         FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS id"
    );
    let url = format!(
        "{}/bigquery/v2/projects/{PROJECT}/queries",
        TestServices::get().bigquery_rest
    );
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&json!({ "query": query, "useLegacySql": false, "timeoutMs": 600_000 }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success() && body["jobComplete"] == true && body.get("errors").is_none(),
        "{status}: {body}"
    );
}

/// A PARQUET backup of `dataset`'s table `table` into `root`, with files large enough that each
/// writer writes one file.
fn measured_backup(dir: &Path, dataset: &str, table: &str, root: &Path) -> Measured {
    let request = write_request(
        dir,
        &format!("{table}.json"),
        &json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset, "tables": [table] }] },
            "backupStorage": { "uri": format!("file://{}", root.display()), "exportOptions": { "format": "PARQUET" } },
            "fileSizeBytes": 1_073_741_824_u64
        }),
    );
    run_measured(&["backup", "--request", request.to_str().unwrap()])
}

/// The report of a backup that must have succeeded.
fn report(backup: &Measured) -> Value {
    assert!(
        backup.success,
        "backup failed: {}\n{}",
        backup.stdout, backup.stderr
    );
    serde_json::from_str(&backup.stdout).unwrap()
}

/// A backup's memory does not follow the table: four times the rows (hundreds of MiB of Arrow
/// data) cost about the same peak RSS, well under 256 MiB. Each read stream's batches are queued
/// for a few writers (one per core), each holding one Parquet row group and its upload, whatever
/// the size of the table or of its files. Both tables are large enough that every writer fills
/// and flushes whole row groups (about 70 bytes a row: 21 MiB per writer for the smaller), so
/// what is compared is the same steady state, shorter or longer.
#[tokio::test]
async fn backup_of_a_large_parquet_table_uses_bounded_memory() {
    const SMALL: u64 = 600_000;
    const LARGE: u64 = 2_400_000;
    let dir = tempfile::tempdir().unwrap();
    let dataset = unique_dataset("bmem");
    BigQueryFixtures::new()
        .create_dataset(&dataset, json!({}))
        .await;
    generated_table(&dataset, "small", SMALL).await;
    generated_table(&dataset, "large", LARGE).await;
    let small = measured_backup(dir.path(), &dataset, "small", &dir.path().join("s"));
    let large = measured_backup(dir.path(), &dataset, "large", &dir.path().join("l"));
    drop_dataset(&dataset).await;

    let (small_report, large_report) = (report(&small), report(&large));
    assert_eq!(small_report["totals"]["rows"], SMALL, "{small_report}");
    assert_eq!(large_report["totals"]["rows"], LARGE, "{large_report}");
    let mib = |r: &Value| r["totals"]["bytes"].as_f64().unwrap_or(0.0) / MIB as f64;
    let figures = format!(
        "PARQUET backup peak RSS: {:.0} MiB for {SMALL} rows ({:.0} MiB of files in {} files), {:.0} MiB for {LARGE} rows ({:.0} MiB in {} files)",
        small.peak_rss_mib,
        mib(&small_report),
        small_report["totals"]["files"],
        large.peak_rss_mib,
        mib(&large_report),
        large_report["totals"]["files"],
    );
    eprintln!("{figures}");
    // Flat: the extra rows are 120 MiB of files and several times that of Arrow data, so a
    // backup holding what it read would grow by far more than 96 MiB; the peaks may differ by
    // allocator noise and by how often the writers' row group flushes coincide (more often in
    // a longer backup, and more so on a loaded machine), not by the data. (Measured in a debug
    // build: 134 → 183 MiB, up to +66 MiB under a full CI run's load; with a writer per read
    // stream, four here, as before the queue: 140 → 244 MiB.)
    assert!(large.peak_rss_mib - small.peak_rss_mib < 96.0, "{figures}");
    assert!(large.peak_rss_mib <= 256.0, "{figures}");
}

/// A copy of the one-table backup at `small_root` (backup `id`) in `root`, its only file replaced
/// by `count` files of `size` pseudo-random bytes each and the manifest recording their size and
/// SHA-256: a copy treats files as opaque bytes, so they need not decode.
fn with_opaque_files(small_root: &Path, root: &Path, id: &str, size: u64, count: usize) {
    let mut manifest = manifest_json(small_root, id);
    let table = &mut manifest["tables"][0];
    let first = table["files"][0]["path"].as_str().unwrap().to_string();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let bytes: Vec<u8> = (0..size.div_ceil(8))
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .take(usize::try_from(size).unwrap())
        .collect();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let mut files = Vec::new();
    for n in 0..count {
        let file = first.replace("part-00000", &format!("part-{n:05}"));
        let path = root.join(&file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        files.push(json!({ "path": file, "bytes": size, "rows": 0, "sha256": sha256 }));
    }
    table["files"] = json!(files);
    table["rows"] = json!(0);
    table["bytes"] = json!(size * count as u64);
    manifest["totals"]["bytes"] = json!(size * count as u64);
    let manifest_path = root.join(format!("backups/{id}/manifest.json"));
    std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// `bq-backup copy` streams every file (four at once, two 5 MiB parts in flight each): its peak
/// memory does not follow the files' size.
#[tokio::test]
async fn a_copy_of_large_files_uses_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny");
    let app = crate::helpers::spawn_app().await;
    let dataset = crate::helpers::dataset_of(1).await;
    let (status, answer) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                "backupStorage": { "uri": format!("file://{}", tiny.display()) },
            }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["backupId"].as_str().unwrap().to_string();
    let mut peaks = Vec::new();
    for size in [16 * MIB, 64 * MIB] {
        let (from, to) = (
            dir.path().join(format!("from-{size}")),
            dir.path().join(format!("to-{size}")),
        );
        with_opaque_files(&tiny, &from, &id, size, 4);
        let copy = run_measured(&[
            "copy",
            &id,
            "--from",
            &format!("file://{}", from.display()),
            "--to",
            &format!("file://{}", to.display()),
        ]);
        assert!(
            copy.success,
            "copy failed: {}\n{}",
            copy.stdout, copy.stderr
        );
        let report: Value = serde_json::from_str(&copy.stdout).unwrap();
        assert_eq!(report["bytes"], 4 * size, "{report}");
        assert_eq!(
            std::fs::read(to.join(format!("backups/{id}/manifest.json"))).unwrap(),
            std::fs::read(from.join(format!("backups/{id}/manifest.json"))).unwrap()
        );
        peaks.push(copy.peak_rss_mib);
        // Room on the disk for the next size.
        std::fs::remove_dir_all(&from).unwrap();
        std::fs::remove_dir_all(&to).unwrap();
    }
    let figures = format!(
        "copy of 4 files of 16 and 64 MiB: peak RSS {:.0} / {:.0} MiB",
        peaks[0], peaks[1]
    );
    eprintln!("{figures}");
    // Holding the files would add 192 MiB; streaming adds next to nothing.
    assert!(peaks[1] - peaks[0] < 48.0, "{figures}");
}
