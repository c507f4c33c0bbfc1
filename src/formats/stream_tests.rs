//! The streaming decoders against the batches written: however the bytes are split into reads,
//! the same batches come back; a file cut off or damaged where its format can tell is an error.

use std::io::{Cursor, Read};
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::properties::WriterProperties;
use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use bytes::Bytes;

use super::sample::all_types_batch;
use super::testdata::{encode, flat_batch};
use super::*;

/// Every streamed format with every compression it allows.
fn streamed() -> Vec<EncodeOptions> {
    [Format::Avro, Format::Csv, Format::Json]
        .into_iter()
        .flat_map(|format| {
            format
                .allowed_compressions()
                .iter()
                .map(move |&compression| EncodeOptions {
                    compression,
                    ..EncodeOptions::new(format)
                })
        })
        .collect()
}

/// Two small batches (two Avro blocks) of what the format can hold, and the file they make.
fn file(opts: &EncodeOptions) -> (RecordBatch, Bytes) {
    let sample = |rows| match opts.format {
        Format::Csv => flat_batch(rows),
        _ => all_types_batch(rows),
    };
    let batches = [sample(1), sample(2)];
    let bytes = encode(&batches, opts);
    (
        concat_batches(&batches[0].schema(), &batches).unwrap(),
        bytes,
    )
}

/// Reads at most one byte per call: every byte boundary is a read boundary.
struct OneByte<R>(R);

impl<R: Read> Read for OneByte<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let end = buf.len().min(1);
        self.0.read(&mut buf[..end])
    }
}

fn decode_from(
    input: impl Read,
    expected: &RecordBatch,
    opts: &EncodeOptions,
) -> Result<RecordBatch, FormatError> {
    let mut decode_opts = DecodeOptions::matching(opts);
    decode_opts.batch_size = 2;
    let batches =
        decode_stream(input, expected.schema(), &decode_opts)?.collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&expected.schema(), &batches).unwrap())
}

#[test]
fn a_file_split_into_reads_at_any_byte_decodes_to_the_batches_written() {
    for opts in streamed() {
        let (expected, bytes) = file(&opts);
        let name = format!("{}/{}", opts.format, opts.compression);
        let one_byte = decode_from(OneByte(Cursor::new(bytes.clone())), &expected, &opts);
        assert_eq!(one_byte.unwrap(), expected, "{name}: one byte at a time");
        for at in 0..=bytes.len() {
            let split = Read::chain(
                Cursor::new(bytes.slice(..at)),
                Cursor::new(bytes.slice(at..)),
            );
            let back = decode_from(split, &expected, &opts)
                .unwrap_or_else(|e| panic!("{name}: split at {at}: {e}"));
            assert_eq!(back, expected, "{name}: split at {at}");
        }
    }
}

#[test]
fn a_file_cut_off_anywhere_is_an_error_where_the_format_can_tell() {
    for opts in streamed() {
        let (expected, bytes) = file(&opts);
        let name = format!("{}/{}", opts.format, opts.compression);
        let whole_prefixes: Vec<usize> = (1..bytes.len())
            .filter(|&at| decode_from(Cursor::new(bytes.slice(..at)), &expected, &opts).is_ok())
            .collect();
        match (opts.format, opts.compression) {
            // Gzip ends with a length and CRC: any cut shows.
            (_, Compression::Gzip) => {
                assert!(whole_prefixes.is_empty(), "{name}: {whole_prefixes:?}")
            }
            // Whole blocks only: after the header (no rows) and after the first of two blocks.
            (Format::Avro, _) => assert_eq!(whole_prefixes.len(), 2, "{name}: {whole_prefixes:?}"),
            // Text can only end at a line break: a cut there leaves a shorter file (the
            // manifest's size, checksum and rows catch that), anywhere else it is an error.
            _ => {
                assert!(!whole_prefixes.is_empty(), "{name}");
                for at in whole_prefixes {
                    // JSON's last line may lack its line break.
                    let ends = if opts.format == Format::Json {
                        &b"\n}"[..]
                    } else {
                        b"\n"
                    };
                    assert!(ends.contains(&bytes[at - 1]), "{name}: cut at {at}");
                }
            }
        }
    }
}

#[test]
fn an_avro_block_with_a_damaged_sync_marker_is_an_error() {
    let opts = EncodeOptions::new(Format::Avro);
    let (expected, bytes) = file(&opts);
    let mut damaged = bytes.to_vec();
    // The file ends with the last block's sync marker.
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let err = decode_from(Cursor::new(damaged), &expected, &opts).unwrap_err();
    assert!(err.to_string().contains("sync marker"), "{err}");
}

#[test]
fn parquet_is_not_read_front_to_back() {
    let opts = EncodeOptions::new(Format::Parquet);
    let batch = all_types_batch(3);
    let bytes = encode(std::slice::from_ref(&batch), &opts);
    let result = decode_stream(
        bytes.reader(),
        batch.schema(),
        &DecodeOptions::matching(&opts),
    );
    assert!(matches!(result, Err(FormatError::InvalidOptions(_))));
}

/// A PARQUET file of `rows` rows in row groups of `group_rows`, as the `parquet` crate writes it
/// (the Arrow schema in the footer, page indexes after the last row group).
fn parquet_in_groups(rows: usize, group_rows: usize) -> (RecordBatch, Bytes) {
    let batch = all_types_batch(rows);
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    (batch, Bytes::from(out))
}

#[test]
fn parquet_reads_its_footer_first_then_each_row_group_from_its_own_bytes() {
    let (batch, bytes) = parquet_in_groups(40, 7);
    let size = bytes.len() as u64;
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let needed = u64::from(footer_len) + 8;
    // Too short a tail says how much is needed.
    let short = bytes.slice(bytes.len() - 8..);
    let Ok(FooterParse::NeedTail(asked)) = ParquetLayout::parse(&short, size) else {
        panic!("an 8-byte tail cannot hold the footer");
    };
    assert_eq!(asked, needed);
    let tail = bytes.slice(bytes.len() - asked as usize..);
    let Ok(FooterParse::Parsed(footer)) = ParquetLayout::parse(&tail, size) else {
        panic!("the footer parses from the tail it asked for");
    };
    assert_eq!(footer.rows(), 40);
    assert_eq!(footer.footer_start(), size - needed);
    let groups = footer.row_groups();
    assert_eq!(groups.len(), 6);
    assert_eq!(groups[0].start, 4, "after the leading magic");
    for pair in groups.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "row groups follow each other");
    }
    assert!(
        groups[5].end < footer.footer_start(),
        "page indexes come after them"
    );

    let mut decoded = Vec::new();
    for group in groups {
        let part = bytes.slice(group.start as usize..group.end as usize);
        let batches: Vec<RecordBatch> = footer
            .decode_row_group(*group, part, &batch.schema(), 3)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            group.rows
        );
        decoded.extend(batches);
    }
    assert_eq!(concat_batches(&batch.schema(), &decoded).unwrap(), batch);
    // The whole-file decoder reads the same way.
    let whole = decode(
        bytes.clone(),
        batch.schema(),
        &DecodeOptions::new(Format::Parquet),
    );
    assert_eq!(
        concat_batches(&batch.schema(), &whole.unwrap()).unwrap(),
        batch
    );
}

#[test]
fn a_parquet_row_group_given_the_wrong_bytes_is_an_error() {
    let (batch, bytes) = parquet_in_groups(20, 10);
    let Ok(FooterParse::Parsed(footer)) = ParquetLayout::parse(&bytes, bytes.len() as u64) else {
        panic!("the whole file holds its footer");
    };
    let [first, second] = footer.row_groups() else {
        panic!("two row groups");
    };
    let schema = batch.schema();
    let short = bytes.slice(first.start as usize..first.end as usize - 1);
    assert!(footer.decode_row_group(*first, short, &schema, 8).is_err());
    // Bytes of the same length from elsewhere in the file are not the group's.
    let len = (first.end - first.start) as usize;
    let elsewhere = bytes.slice(second.start as usize..second.start as usize + len);
    let decoded: Result<Vec<_>, _> = match footer.decode_row_group(*first, elsewhere, &schema, 8) {
        Ok(batches) => batches.collect(),
        Err(e) => Err(e),
    };
    assert!(decoded.is_err());
    let cut = bytes.slice(..bytes.len() - 1);
    assert!(ParquetLayout::parse(&cut, cut.len() as u64).is_err());
}

#[test]
fn the_decoders_stop_after_the_first_error() {
    let opts = EncodeOptions::new(Format::Csv);
    let schema = Arc::new(flat_batch(1).schema().project(&[0]).unwrap());
    let mut decode_opts = DecodeOptions::matching(&opts);
    decode_opts.csv_header = false;
    decode_opts.batch_size = 1;
    let text: &[u8] = b"1\nnot a number\n3\n";
    let results: Vec<_> = decode_stream(text, schema, &decode_opts).unwrap().collect();
    assert_eq!(results.len(), 2, "one batch, one error, then nothing");
    assert!(results[0].is_ok() && results[1].is_err());
}
