//! PARQUET through the `parquet` crate's Arrow writer and reader, pages compressed with snappy,
//! gzip or zstd. Nested and repeated columns are kept as groups and lists.
//!
//! | BigQuery (Arrow) | Parquet physical (logical) |
//! |---|---|
//! | INT64 | INT64 |
//! | FLOAT64 | DOUBLE (NaN, ±Inf kept) |
//! | NUMERIC (Decimal128(38,9)) | FIXED_LEN_BYTE_ARRAY(16) (DECIMAL(38,9)) |
//! | BIGNUMERIC (Decimal256(76,38)) | FIXED_LEN_BYTE_ARRAY(32) (DECIMAL(76,38)) |
//! | BOOL | BOOLEAN |
//! | STRING, GEOGRAPHY (WKT), JSON | BYTE_ARRAY (STRING) |
//! | BYTES | BYTE_ARRAY |
//! | DATE | INT32 (DATE) |
//! | TIME | INT64 (TIME(MICROS)) |
//! | DATETIME | INT64 (TIMESTAMP(MICROS, not UTC-adjusted)) |
//! | TIMESTAMP | INT64 (TIMESTAMP(MICROS, UTC-adjusted)) |
//! | STRUCT | group |
//! | REPEATED | LIST (3-level) |
//!
//! The Arrow schema, field metadata included, is stored in the footer (`ARROW:schema`), as the
//! `parquet` crate does by default. Row groups close at [`ROW_GROUP_MAX_BYTES`] (estimated,
//! encoded) or [`ROW_GROUP_MAX_ROWS`], whichever comes first, bounding the encoder's memory.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::{Buf, Bytes};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};

use super::compression::{Encoded, SharedBuffer};
use super::conform::{bigquery_labels, conform_batch};
use super::{Compression, Format, FormatError};

/// Footer key under which the `parquet` crate stores the Arrow schema.
const ARROW_SCHEMA_KEY: &str = "ARROW:schema";

/// A row group in progress is flushed once it is estimated to reach this size.
pub const ROW_GROUP_MAX_BYTES: usize = 16 * 1024 * 1024;
/// ... or this many rows.
pub const ROW_GROUP_MAX_ROWS: usize = 1024 * 1024;
/// A column chunk's dictionary grows to at most this many bytes before the column falls back to
/// plain pages. The `parquet` crate's default (1 MiB, as Arrow C++) has a column of distinct
/// values hash every value into the dictionary for half a row group before giving up: a quarter
/// of the encoding time of a mixed table, and larger files (the dictionary pages and 17-bit
/// indices cost more than the plain values they replace). 256 KiB still takes 32,768 distinct
/// INT64 values or some 10,000 short strings (DuckDB stops at a fifth of its row group, 24,576
/// values); columns with fewer distinct values, where dictionaries pay, keep them.
const DICTIONARY_PAGE_MAX_BYTES: usize = 256 * 1024;

pub(super) struct ParquetEncoder {
    writer: ArrowWriter<SharedBuffer>,
    buffer: SharedBuffer,
}

impl ParquetEncoder {
    pub(super) fn new(schema: SchemaRef, compression: Compression) -> Result<Self, FormatError> {
        let compression = match compression {
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
            Compression::Snappy => parquet::basic::Compression::SNAPPY,
            Compression::Gzip => parquet::basic::Compression::GZIP(GzipLevel::default()),
            Compression::Zstd => parquet::basic::Compression::ZSTD(ZstdLevel::default()),
            Compression::Deflate => {
                return Err(encode_error("DEFLATE is not a Parquet codec".to_string()));
            }
        };
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_bytes(Some(ROW_GROUP_MAX_BYTES))
            .set_max_row_group_row_count(Some(ROW_GROUP_MAX_ROWS))
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_MAX_BYTES)
            .set_created_by(format!("bq-backup {}", env!("CARGO_PKG_VERSION")))
            .build();
        let buffer = SharedBuffer::default();
        let writer = ArrowWriter::try_new(buffer.clone(), schema, Some(properties))
            .map_err(|e| encode_error(e.to_string()))?;
        Ok(Self { writer, buffer })
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        self.writer
            .write(batch)
            .map_err(|e| encode_error(e.to_string()))?;
        // The byte limit above is checked as columns are encoded; this catches a row group that
        // a single large batch pushed past it.
        if self.writer.in_progress_size() >= ROW_GROUP_MAX_BYTES {
            self.writer
                .flush()
                .map_err(|e| encode_error(e.to_string()))?;
        }
        Ok(())
    }

    pub(super) fn take_output(&mut self) -> Encoded {
        self.buffer.take()
    }

    /// Bytes not yet taken plus the row group still being built (its estimated encoded size).
    pub(super) fn pending_size(&self) -> u64 {
        (self.buffer.len() + self.writer.in_progress_size()) as u64
    }

    pub(super) fn finish(mut self) -> Result<Encoded, FormatError> {
        self.writer
            .finish()
            .map_err(|e| encode_error(e.to_string()))?;
        Ok(self.buffer.take())
    }
}

fn encode_error(message: String) -> FormatError {
    FormatError::Encode {
        format: Format::Parquet,
        message,
    }
}

fn corrupt(message: String) -> FormatError {
    FormatError::Corrupt {
        format: Format::Parquet,
        message,
    }
}

/// Decodes a whole file into batches of `schema`, row group by row group as
/// [`ParquetLayout`] does for a file read in parts.
pub(super) fn decode(
    bytes: Bytes,
    schema: &SchemaRef,
    batch_size: usize,
) -> Result<Vec<RecordBatch>, FormatError> {
    let footer = match ParquetLayout::parse(&bytes, bytes.len() as u64)? {
        FooterParse::Parsed(footer) => footer,
        FooterParse::NeedTail(_) => return Err(corrupt("the footer is cut off".to_string())),
    };
    let mut batches = Vec::new();
    for group in footer.row_groups() {
        let part = bytes.slice(to_usize(group.start)?..to_usize(group.end)?);
        for batch in footer.decode_row_group(*group, part, schema, batch_size)? {
            batches.push(batch?);
        }
    }
    Ok(batches)
}

fn to_usize(offset: u64) -> Result<usize, FormatError> {
    usize::try_from(offset).map_err(|_| corrupt(format!("offset {offset} is out of range")))
}

/// Where a row group's bytes are in the file (`start..end`), by its index in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupRange {
    pub index: usize,
    pub start: u64,
    pub end: u64,
    pub rows: u64,
}

/// What [`ParquetLayout::parse`] made of the last bytes of a file.
pub enum FooterParse {
    Parsed(ParquetLayout),
    /// The footer is longer than the bytes given: this many bytes from the end hold it.
    NeedTail(u64),
}

/// A PARQUET file's footer, read first (it is at the end): where each row group is, and how to
/// decode one from its bytes alone. A reader fetches and decodes the file row group by row
/// group, so memory holds one row group, never the file.
pub struct ParquetLayout {
    metadata: ArrowReaderMetadata,
    file_size: u64,
    footer_start: u64,
    row_groups: Vec<RowGroupRange>,
}

impl ParquetLayout {
    /// Parses the footer from `tail`, the last bytes of a file of `file_size` bytes.
    pub fn parse(tail: &Bytes, file_size: u64) -> Result<FooterParse, FormatError> {
        let mut reader = ParquetMetaDataReader::new();
        match reader.try_parse_sized(tail, file_size) {
            Ok(()) => {}
            Err(ParquetError::NeedMoreData(needed)) => {
                return Ok(FooterParse::NeedTail(needed as u64));
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
        let metadata = reader.finish().map_err(|e| corrupt(e.to_string()))?;
        // The last 8 bytes: the footer's length (little-endian u32), then the magic `PAR1`.
        let length_at = tail.len().saturating_sub(8);
        let footer_len = tail
            .get(length_at..length_at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt("the file has no footer".to_string()))?;
        let footer_start = file_size
            .checked_sub(8 + u64::from(footer_len))
            .ok_or_else(|| corrupt("the footer is longer than the file".to_string()))?;
        let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
        for (index, group) in metadata.row_groups().iter().enumerate() {
            let mut range: Option<(u64, u64)> = None;
            for column in group.columns() {
                // The bytes the reader reads for a column chunk (`byte_range`), checked here
                // rather than by that method's assertion.
                let start = column
                    .dictionary_page_offset()
                    .unwrap_or(column.data_page_offset());
                let (Ok(start), Ok(len)) = (
                    u64::try_from(start),
                    u64::try_from(column.compressed_size()),
                ) else {
                    return Err(corrupt(format!(
                        "row group {index} has a column chunk at a negative offset or size"
                    )));
                };
                let end = start.saturating_add(len);
                range = Some(range.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
            }
            let (start, end) = range.unwrap_or((footer_start, footer_start));
            if end > footer_start {
                return Err(corrupt(format!(
                    "row group {index} reaches past the start of the footer"
                )));
            }
            row_groups.push(RowGroupRange {
                index,
                start,
                end,
                rows: u64::try_from(group.num_rows()).unwrap_or(0),
            });
        }
        row_groups.sort_by_key(|g| (g.start, g.index));
        let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), Default::default())
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(FooterParse::Parsed(ParquetLayout {
            metadata,
            file_size,
            footer_start,
            row_groups,
        }))
    }

    /// The row groups in file order (by where their bytes start).
    pub fn row_groups(&self) -> &[RowGroupRange] {
        &self.row_groups
    }

    /// Where the footer starts: bytes from the last row group to here hold page indexes or
    /// bloom filters, which decoding does not need (but a checksum covers).
    pub fn footer_start(&self) -> u64 {
        self.footer_start
    }

    /// The rows the footer records, over every row group.
    pub fn rows(&self) -> u64 {
        self.row_groups.iter().map(|g| g.rows).sum()
    }

    /// Decodes row group `group` from `bytes`, the file's bytes `group.start..group.end`, into
    /// batches of `schema`.
    pub fn decode_row_group(
        &self,
        group: RowGroupRange,
        bytes: Bytes,
        schema: &SchemaRef,
        batch_size: usize,
    ) -> Result<super::BatchDecoder<'static>, FormatError> {
        if bytes.len() as u64 != group.end - group.start {
            return Err(corrupt(format!(
                "row group {} needs {} bytes, {} were given",
                group.index,
                group.end - group.start,
                bytes.len()
            )));
        }
        let part = RowGroupBytes {
            start: group.start,
            bytes,
            file_size: self.file_size,
        };
        let schema = schema.clone();
        super::catch_panics(Format::Parquet, || {
            let reader =
                ParquetRecordBatchReaderBuilder::new_with_metadata(part, self.metadata.clone())
                    .with_row_groups(vec![group.index])
                    .with_batch_size(batch_size)
                    .build()
                    .map_err(|e| corrupt(e.to_string()))?;
            let batches = reader.map(move |batch| {
                let batch = batch.map_err(|e| corrupt(e.to_string()))?;
                conform_batch(&batch, &schema, Format::Parquet)
            });
            Ok(super::BatchDecoder::new(Format::Parquet, batches))
        })
    }
}

/// One row group's bytes, served to the `parquet` reader at their offsets in the file.
struct RowGroupBytes {
    start: u64,
    bytes: Bytes,
    file_size: u64,
}

impl Length for RowGroupBytes {
    fn len(&self) -> u64 {
        self.file_size
    }
}

impl ChunkReader for RowGroupBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let available = (self.start + self.bytes.len() as u64).saturating_sub(start);
        Ok(self
            .get_bytes(start, usize::try_from(available).unwrap_or(0))?
            .reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start
            .checked_sub(self.start)
            .and_then(|from| usize::try_from(from).ok());
        match from.and_then(|from| Some(from..from.checked_add(length)?)) {
            Some(range) if range.end <= self.bytes.len() => Ok(self.bytes.slice(range)),
            _ => Err(ParquetError::General(format!(
                "bytes {start}..+{length} lie outside the row group being read ({}..{})",
                self.start,
                self.start + self.bytes.len() as u64
            ))),
        }
    }
}

/// The Arrow schema stored in the footer, or the one the Parquet schema maps to.
pub(super) fn read_schema(bytes: Bytes) -> Result<SchemaRef, FormatError> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| corrupt(e.to_string()))?;
    let has_arrow_schema = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .is_some_and(|kv| kv.iter().any(|entry| entry.key == ARROW_SCHEMA_KEY));
    if has_arrow_schema {
        Ok(builder.schema().clone())
    } else {
        Ok(bigquery_labels(builder.schema()))
    }
}

/// [`read_schema`] from the last bytes of a file of `file_size` bytes (the footer is all it
/// needs). `None` when `tail` is shorter than the footer.
pub(super) fn read_schema_from_tail(
    tail: Bytes,
    file_size: u64,
) -> Result<Option<SchemaRef>, FormatError> {
    Ok(read_footer_from_tail(tail, file_size)?.map(|(schema, _)| schema))
}

/// The schema (as [`read_schema_from_tail`]) and the row count the footer records.
pub(super) fn read_footer_from_tail(
    tail: Bytes,
    file_size: u64,
) -> Result<Option<(SchemaRef, u64)>, FormatError> {
    let mut reader = ParquetMetaDataReader::new();
    match reader.try_parse_sized(&tail, file_size) {
        Ok(()) => {}
        Err(ParquetError::NeedMoreData(_)) => return Ok(None),
        Err(e) => return Err(corrupt(e.to_string())),
    }
    let metadata = reader.finish().map_err(|e| corrupt(e.to_string()))?;
    let file = metadata.file_metadata();
    let key_values = file.key_value_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), key_values)
        .map_err(|e| corrupt(e.to_string()))?;
    let has_arrow_schema =
        key_values.is_some_and(|kv| kv.iter().any(|entry| entry.key == ARROW_SCHEMA_KEY));
    let rows = u64::try_from(file.num_rows())
        .map_err(|_| corrupt(format!("records {} rows", file.num_rows())))?;
    let schema = if has_arrow_schema {
        Arc::new(schema)
    } else {
        bigquery_labels(&schema)
    };
    Ok(Some((schema, rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::sample::all_types_batch;
    use crate::formats::testdata::encode;
    use crate::formats::{EncodeOptions, read_embedded_schema};

    #[test]
    fn parquet_files_carry_the_exact_arrow_schema() {
        let batch = all_types_batch(4);
        let bytes = encode(
            std::slice::from_ref(&batch),
            &EncodeOptions::new(Format::Parquet),
        );
        let schema = read_embedded_schema(&bytes, Format::Parquet).unwrap();
        assert_eq!(schema.fields(), batch.schema().fields());
    }

    /// Compressed bytes of each column chunk of the first row group.
    fn column_sizes(bytes: &Bytes) -> Vec<i64> {
        let mut reader = ParquetMetaDataReader::new();
        reader.try_parse(bytes).unwrap();
        let metadata = reader.finish().unwrap();
        metadata.row_groups()[0]
            .columns()
            .iter()
            .map(|c| c.compressed_size())
            .collect()
    }

    #[test]
    fn dictionaries_stay_where_they_pay_and_give_up_sooner_where_they_do_not() {
        use arrow::array::{ArrayRef, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let rows = 200_000;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let few: StringArray = (0..rows)
            .map(|_| Some(format!("customer-{:05}", next() % 2000)))
            .collect();
        let distinct: Int64Array = (0..rows).map(|_| Some(next() as i64)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("few", DataType::Utf8, true),
            Field::new("distinct", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(few) as ArrayRef, Arc::new(distinct)],
        )
        .unwrap();
        let ours = column_sizes(&encode(
            std::slice::from_ref(&batch),
            &EncodeOptions::new(Format::Parquet),
        ));
        let with = |properties: WriterProperties| {
            let mut out = Vec::new();
            let mut writer =
                ArrowWriter::try_new(&mut out, schema.clone(), Some(properties)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            column_sizes(&Bytes::from(out))
        };
        let snappy =
            || WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY);
        let plain = with(snappy().set_dictionary_enabled(false).build());
        let crate_default = with(snappy().build());
        // 2,000 distinct strings: the dictionary is kept, and it is what makes the column small.
        assert_eq!(ours[0], crate_default[0], "{ours:?} {crate_default:?}");
        assert!(ours[0] * 2 < plain[0], "{ours:?} {plain:?}");
        // Distinct values: smaller than with the crate's default, within a few percent of plain
        // pages (the first 32,768 values still go through the dictionary).
        assert!(ours[1] < crate_default[1], "{ours:?} {crate_default:?}");
        assert!(ours[1] <= plain[1] + plain[1] / 16, "{ours:?} {plain:?}");
    }

    #[test]
    fn the_schema_reads_from_the_footer_alone() {
        let batch = all_types_batch(2000);
        let bytes = encode(
            std::slice::from_ref(&batch),
            &EncodeOptions::new(Format::Parquet),
        );
        let size = bytes.len() as u64;
        let whole = read_embedded_schema(&bytes, Format::Parquet).unwrap();
        let footer_len =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
        let tail = bytes.slice(bytes.len() - footer_len as usize - 8..);
        assert!(
            tail.len() < bytes.len(),
            "the footer is only part of the file"
        );
        assert_eq!(read_schema_from_tail(tail, size).unwrap(), Some(whole));
        let too_short = bytes.slice(bytes.len() - 16..);
        assert_eq!(read_schema_from_tail(too_short, size).unwrap(), None);
    }
}
