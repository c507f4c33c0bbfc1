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

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;

use super::compression::SharedBuffer;
use super::conform::{bigquery_labels, conform_batch};
use super::{Compression, Format, FormatError};

/// Footer key under which the `parquet` crate stores the Arrow schema.
const ARROW_SCHEMA_KEY: &str = "ARROW:schema";

/// A row group in progress is flushed once it is estimated to reach this size.
pub const ROW_GROUP_MAX_BYTES: usize = 16 * 1024 * 1024;
/// ... or this many rows.
pub const ROW_GROUP_MAX_ROWS: usize = 1024 * 1024;

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

    pub(super) fn take_output(&mut self) -> Bytes {
        self.buffer.take()
    }

    /// Bytes not yet taken plus the row group still being built (its estimated encoded size).
    pub(super) fn pending_size(&self) -> u64 {
        (self.buffer.len() + self.writer.in_progress_size()) as u64
    }

    pub(super) fn finish(mut self) -> Result<Bytes, FormatError> {
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

/// Decodes a whole file into batches of `schema`.
pub(super) fn decode(
    bytes: Bytes,
    schema: &SchemaRef,
    batch_size: usize,
) -> Result<Vec<RecordBatch>, FormatError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    reader
        .map(|batch| {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            conform_batch(&batch, schema, Format::Parquet)
        })
        .collect()
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
        std::sync::Arc::new(schema)
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
