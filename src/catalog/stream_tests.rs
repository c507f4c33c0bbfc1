//! [`super::stream`] against files in a real store (a local directory through object_store):
//! every format back batch by batch, and each check — size, checksum (SHA-256 or CRC32C), rows,
//! presence — failing the file it should.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use super::checksum::crc32c_hex;
use super::manifest::FileEntry;
use super::stream::read_batches;
use super::verify::FileProblem;
use crate::formats::sample::all_types_batch;
use crate::formats::{Compression, DecodeOptions, EncodeOptions, FileEncoder, Format};

struct Repo {
    _dir: tempfile::TempDir,
    os: Arc<dyn ObjectStore>,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let os = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        Self { _dir: dir, os }
    }

    /// Stores `bytes` at `name`; the entry a manifest would record for them.
    async fn put(&self, name: &str, bytes: Bytes, rows: u64) -> FileEntry {
        self.os
            .put(&Path::from(name), PutPayload::from(bytes.clone()))
            .await
            .unwrap();
        FileEntry {
            path: name.to_string(),
            bytes: bytes.len() as u64,
            rows,
            sha256: hex::encode(Sha256::digest(&bytes)),
            crc32c: None,
            plaintext_sha256: None,
            partition: None,
        }
    }
}

/// The batch each format can hold.
fn sample(format: Format, rows: usize) -> RecordBatch {
    let batch = all_types_batch(rows);
    if format != Format::Csv {
        return batch;
    }
    let flat: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !batch.schema().field(i).data_type().is_nested())
        .collect();
    batch.project(&flat).unwrap()
}

fn encode(batches: &[RecordBatch], opts: &EncodeOptions) -> Bytes {
    let mut encoder = FileEncoder::new(batches[0].schema(), opts).unwrap();
    let mut out = Vec::new();
    for batch in batches {
        encoder.write(batch).unwrap();
        out.extend_from_slice(&encoder.take_output().to_bytes());
    }
    out.extend_from_slice(&encoder.finish().unwrap().to_bytes());
    Bytes::from(out)
}

/// Everything [`read_batches`] hands over, and how it ended.
async fn read_all(
    repo: &Repo,
    file: &FileEntry,
    expected: &RecordBatch,
    format: Format,
    check: bool,
) -> (Vec<RecordBatch>, Result<(), FileProblem>) {
    let mut options = DecodeOptions::new(format);
    options.batch_size = 100;
    let mut batches = read_batches(&repo.os, file, expected.schema(), options, check, None);
    let mut read = Vec::new();
    loop {
        match batches.next().await {
            Ok(Some(batch)) => read.push(batch),
            Ok(None) => return (read, Ok(())),
            Err(problem) => return (read, Err(problem)),
        }
    }
}

fn damage(result: Result<(), FileProblem>) -> String {
    match result {
        Err(FileProblem::Damaged(problem)) => problem,
        Err(FileProblem::Storage(e)) => panic!("a storage error, not damage: {e}"),
        Ok(()) => panic!("the file passed its checks"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_streams_back_its_batches_and_passes_its_checks() {
    let repo = Repo::new();
    for format in Format::ALL {
        let batches: Vec<RecordBatch> = (1..=3).map(|n| sample(format, n * 70)).collect();
        let expected = concat_batches(&batches[0].schema(), &batches).unwrap();
        let file = repo
            .put(
                &format!("a.{format}"),
                encode(&batches, &EncodeOptions::new(format)),
                420,
            )
            .await;
        let (read, end) = read_all(&repo, &file, &expected, format, true).await;
        assert!(end.is_ok(), "{format}: {}", damage(end));
        assert!(read.len() > 1, "{format}: batch by batch");
        assert_eq!(
            concat_batches(&expected.schema(), &read).unwrap(),
            expected,
            "{format}"
        );
    }
}

#[tokio::test]
async fn a_parquet_file_of_many_row_groups_and_a_long_footer_streams_back_whole() {
    // Row groups of a few rows make a footer longer than the first read of the file's end, and
    // page indexes between the last row group and the footer: every byte must be hashed once.
    use ::parquet::arrow::ArrowWriter;
    use ::parquet::file::properties::WriterProperties;
    let expected = all_types_batch(600);
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(5))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, expected.schema(), Some(properties)).unwrap();
    writer.write(&expected).unwrap();
    writer.close().unwrap();
    let bytes = Bytes::from(out);
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    assert!(
        footer_len > 64 * 1024,
        "the footer ({footer_len} bytes) is longer than the first read"
    );

    let repo = Repo::new();
    let file = repo.put("many.parquet", bytes, 600).await;
    let (read, end) = read_all(&repo, &file, &expected, Format::Parquet, true).await;
    assert!(end.is_ok(), "{}", damage(end));
    assert_eq!(concat_batches(&expected.schema(), &read).unwrap(), expected);
}

#[tokio::test]
async fn a_checksum_that_does_not_match_fails_the_file_after_its_batches() {
    let repo = Repo::new();
    for format in Format::ALL {
        let expected = sample(format, 50);
        let bytes = encode(std::slice::from_ref(&expected), &EncodeOptions::new(format));
        let mut file = repo.put(&format!("b.{format}"), bytes, 50).await;
        file.sha256 = hex::encode(Sha256::digest(b"other bytes"));
        let (read, end) = read_all(&repo, &file, &expected, format, true).await;
        assert!(
            !read.is_empty(),
            "{format}: found at the end, after the data"
        );
        assert_eq!(
            damage(end),
            "does not match its SHA-256 checksum in the manifest",
            "{format}"
        );
    }
}

#[tokio::test]
async fn a_file_recorded_with_a_crc32c_is_checked_with_it() {
    // What an EXTRACT backup records for the files BigQuery wrote: Cloud Storage's CRC32C and
    // no SHA-256. A SHA-256 check would fail every such file; none at all would pass a changed one.
    let repo = Repo::new();
    for format in Format::ALL {
        let expected = sample(format, 60);
        let bytes = encode(std::slice::from_ref(&expected), &EncodeOptions::new(format));
        let mut file = repo.put(&format!("x.{format}"), bytes.clone(), 60).await;
        file.sha256 = String::new();
        file.crc32c = Some(crc32c_hex(&bytes).to_ascii_uppercase());
        let (read, end) = read_all(&repo, &file, &expected, format, true).await;
        assert!(end.is_ok(), "{format}: {}", damage(end));
        assert_eq!(
            concat_batches(&expected.schema(), &read).unwrap(),
            expected,
            "{format}"
        );

        file.crc32c = Some(crc32c_hex(b"other bytes"));
        let (_, end) = read_all(&repo, &file, &expected, format, true).await;
        assert_eq!(
            damage(end),
            "does not match its CRC32C checksum in the manifest",
            "{format}"
        );
    }
}

#[tokio::test]
async fn a_changed_byte_fails_the_file_as_changed_even_when_it_no_longer_decodes() {
    let repo = Repo::new();
    for format in Format::ALL {
        for &compression in format.allowed_compressions() {
            let expected = sample(format, 50);
            let opts = EncodeOptions {
                compression,
                ..EncodeOptions::new(format)
            };
            let bytes = encode(std::slice::from_ref(&expected), &opts);
            let name = format!("c-{compression}.{format}");
            let mut file = repo.put(&name, bytes.clone(), 50).await;
            let mut changed = bytes.to_vec();
            let middle = changed.len() / 2;
            changed[middle] ^= 0x01;
            let recorded = file.sha256.clone();
            file = repo.put(&name, Bytes::from(changed), 50).await;
            file.sha256 = recorded;
            let mut options = DecodeOptions::new(format);
            options.compression = compression;
            let mut batches = read_batches(&repo.os, &file, expected.schema(), options, true, None);
            let end = loop {
                match batches.next().await {
                    Ok(Some(_)) => {}
                    other => break other.map(|_| ()),
                }
            };
            // Whether or not the decoder noticed first (a broken block or page), the file is
            // reported as changed: that says more than where decoding gave up.
            assert_eq!(
                damage(end),
                "does not match its SHA-256 checksum in the manifest",
                "{format}/{compression}"
            );
        }
    }
}

#[tokio::test]
async fn a_file_of_another_size_fails_before_any_batch() {
    let repo = Repo::new();
    for format in Format::ALL {
        let expected = sample(format, 40);
        let bytes = encode(std::slice::from_ref(&expected), &EncodeOptions::new(format));
        let recorded = repo.put(&format!("d.{format}"), bytes.clone(), 40).await;
        let cut = repo
            .put(&format!("d.{format}"), bytes.slice(..bytes.len() - 10), 40)
            .await;
        let file = FileEntry {
            bytes: recorded.bytes,
            ..cut
        };
        let (read, end) = read_all(&repo, &file, &expected, format, true).await;
        assert!(read.is_empty(), "{format}");
        assert_eq!(
            damage(end),
            format!(
                "has {} bytes, the manifest says {}",
                bytes.len() - 10,
                bytes.len()
            ),
            "{format}"
        );
    }
}

#[tokio::test]
async fn a_row_count_that_does_not_match_fails_the_file() {
    let repo = Repo::new();
    for format in Format::ALL {
        let expected = sample(format, 30);
        let bytes = encode(std::slice::from_ref(&expected), &EncodeOptions::new(format));
        let file = repo.put(&format!("e.{format}"), bytes, 31).await;
        let (_, end) = read_all(&repo, &file, &expected, format, true).await;
        assert_eq!(
            damage(end),
            "holds 30 rows, the manifest says 31",
            "{format}"
        );
    }
}

#[tokio::test]
async fn a_missing_file_is_damage_and_unchecked_files_are_only_decoded() {
    let repo = Repo::new();
    let expected = sample(Format::Avro, 10);
    let bytes = encode(
        std::slice::from_ref(&expected),
        &EncodeOptions::new(Format::Avro),
    );
    let mut file = repo.put("f.avro", bytes, 10).await;
    let missing = FileEntry {
        path: "nothing/here.avro".into(),
        ..file.clone()
    };
    let (_, end) = read_all(&repo, &missing, &expected, Format::Avro, true).await;
    assert_eq!(damage(end), "is missing");
    // A legacy backup records no size, checksum or rows.
    file.bytes = 0;
    file.rows = 0;
    file.sha256 = String::new();
    let (read, end) = read_all(&repo, &file, &expected, Format::Avro, false).await;
    assert!(end.is_ok());
    assert_eq!(concat_batches(&expected.schema(), &read).unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_batches_are_no_longer_wanted_stops() {
    let repo = Repo::new();
    let expected = sample(Format::Json, 2000);
    let bytes = encode(
        std::slice::from_ref(&expected),
        &EncodeOptions::new(Format::Json),
    );
    let file = repo.put("g.json", bytes, 2000).await;
    let mut options = DecodeOptions::new(Format::Json);
    options.batch_size = 10;
    let mut batches = read_batches(&repo.os, &file, expected.schema(), options, true, None);
    assert!(batches.next().await.unwrap().is_some());
    drop(batches);
    // The runtime waits for its blocking threads when it shuts down: a reader stuck on a
    // full channel would hang this test instead of ending it.
}

#[test]
fn text_formats_read_gzip_whatever_the_manifest_says() {
    // Compression for CSV and JSON is recognised from the bytes: one less thing to get wrong.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let repo = Repo::new();
        let expected = sample(Format::Csv, 25);
        let opts = EncodeOptions {
            compression: Compression::Gzip,
            ..EncodeOptions::new(Format::Csv)
        };
        let bytes = encode(std::slice::from_ref(&expected), &opts);
        let file = repo.put("h.csv.gz", bytes, 25).await;
        let (read, end) = read_all(&repo, &file, &expected, Format::Csv, true).await;
        assert!(end.is_ok(), "{}", damage(end));
        assert_eq!(concat_batches(&expected.schema(), &read).unwrap(), expected);
    });
}
