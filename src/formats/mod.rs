//! Formats: Arrow `RecordBatch`es to and from AVRO, CSV, PARQUET and newline-delimited JSON
//! bytes, with every compression BigQuery offers for each format.
//!
//! Pure: no network and no file system — bytes in, bytes out. Depends only on `crate::error`
//! (to convert [`FormatError`] at the module edge). Encoding is CPU work: callers run
//! [`FileEncoder`] on a rayon thread and stream [`FileEncoder::take_output`] to storage.
//!
//! Every file decodes back ([`decode`]) to batches equal to the ones encoded, given the schema
//! recorded at backup time. Where a format has no native type for a BigQuery type, the value is
//! written the way BigQuery writes it on export, so files stay loadable by BigQuery itself.
//!
//! # How each BigQuery type is written
//!
//! | BigQuery (Arrow) | AVRO | PARQUET | JSON (NDJSON) | CSV |
//! |---|---|---|---|---|
//! | INT64 (Int64) | `long` | INT64 | string `"-42"` (as BigQuery exports: exact past 2^53); numbers accepted on read | `-42` |
//! | FLOAT64 (Float64) | `double` | DOUBLE | number, shortest exact form (`0.1`, `1e300`); `"NaN"`, `"Infinity"`, `"-Infinity"` as strings | same text as JSON, unquoted |
//! | NUMERIC (Decimal128(38,9)) | `bytes` decimal(38,9) | FIXED_LEN_BYTE_ARRAY DECIMAL(38,9) | string, shortest exact decimal (`"1.5"`) | `1.5` |
//! | BIGNUMERIC (Decimal256(76,38)) | `bytes` decimal(76,38) | FIXED_LEN_BYTE_ARRAY(32) DECIMAL(76,38) | string, shortest exact decimal (full 2^255 range) | same as JSON, unquoted |
//! | BOOL (Boolean) | `boolean` | BOOLEAN | `true` / `false` | `true` / `false` |
//! | STRING (Utf8) | `string` | BYTE_ARRAY UTF8 | string | text; quoted when it holds the delimiter, `"`, CR or LF, and `""` for the empty string (an empty unquoted field is NULL) |
//! | BYTES (Binary) | `bytes` | BYTE_ARRAY | base64 string (standard alphabet, padded) | base64; `""` for empty bytes |
//! | DATE (Date32) | `int` date | INT32 DATE | `"2024-02-29"` | `2024-02-29` |
//! | TIME (Time64 µs) | `long` time-micros | INT64 TIME(µs) | `"12:34:56.000001"` (always 6 fractional digits) | same, unquoted |
//! | DATETIME (Timestamp µs, no zone) | `long` local-timestamp-micros | INT64 TIMESTAMP(µs, not UTC-adjusted) | `"2024-02-29T12:34:56.000001"` | same, unquoted |
//! | TIMESTAMP (Timestamp µs, "UTC") | `long` timestamp-micros | INT64 TIMESTAMP(µs, UTC-adjusted) | RFC 3339 in UTC: `"2024-02-29T12:34:56.000001Z"` | same, unquoted |
//! | GEOGRAPHY (Utf8, WKT) | `string` | BYTE_ARRAY UTF8 | string (WKT) | WKT text (quoted when it holds the delimiter) |
//! | JSON (Utf8) | `string` | BYTE_ARRAY UTF8 | string holding the JSON text (text kept byte for byte) | text |
//! | STRUCT (Struct) | nested `record` | group | object | rejected (400) |
//! | REPEATED (List) | `array` | LIST | array | rejected (400) |
//! | NULL | union `["null", T]` | definition levels | `null` | empty unquoted field |
//!
//! AVRO and PARQUET files also carry the exact Arrow schema (field metadata such as
//! `ARROW:extension:name`, the `"UTC"` zone) so [`read_embedded_schema`] can restore a backup whose
//! manifest is lost. On read, text formats also accept what BigQuery's own exports hold
//! (`2024-02-29 12:34:56 UTC`, fewer fractional digits, numbers for INT64/NUMERIC), and gzip is
//! detected from the bytes.
//!
//! [`arrow_to_bigquery_fields`] and [`bigquery_fields_to_arrow`] convert between an Arrow schema
//! and a BigQuery schema, for backups that carry only one of the two (the Java service's layout).

mod avro;
mod bigquery_schema;
mod compression;
mod conform;
mod csv;
mod json;
mod ocf;
mod options;
mod parquet;
pub mod sample;
#[cfg(test)]
mod testdata;
mod text;
mod write_text;

use std::io::Read;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use bytes::{Buf, Bytes};

use crate::error::{Error, FieldError};

pub use bigquery_schema::{arrow_to_bigquery_fields, bigquery_fields_to_arrow};
pub use compression::Encoded;
pub use options::{
    Compression, DEFAULT_BATCH_SIZE, DEFAULT_CSV_DELIMITER, DecodeOptions, EncodeOptions, Format,
    ParseNameError, disallowed_compression, file_extension,
};
pub use parquet::{
    FooterParse, ParquetLayout, ROW_GROUP_MAX_BYTES, ROW_GROUP_MAX_ROWS, RowGroupRange,
};

/// Why a file could not be encoded or decoded. Messages name the column and row, never a value
/// (values are user data and errors get logged).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("invalid format options: {}", list(.0))]
    InvalidOptions(Vec<FieldError>),
    #[error("{format}: column `{column}`, row {row}: {message}")]
    Value {
        format: Format,
        column: String,
        row: usize,
        message: String,
    },
    #[error("{format}: the batch does not match the file's schema: {message}")]
    SchemaMismatch { format: Format, message: String },
    #[error("{format}: the file does not fit the table schema: {message}")]
    FileSchema { format: Format, message: String },
    #[error("{format}: the file is corrupt or not {format}: {message}")]
    Corrupt { format: Format, message: String },
    #[error("{format}: encoding failed: {message}")]
    Encode { format: Format, message: String },
}

fn list(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<FormatError> for Error {
    fn from(err: FormatError) -> Self {
        match err {
            FormatError::InvalidOptions(problems) => {
                Error::invalid("the format options are invalid", problems)
            }
            // A backup file that does not read back is bad data the caller must look at, not
            // something a retry or a fix in this service could change.
            e @ (FormatError::Corrupt { .. }
            | FormatError::FileSchema { .. }
            | FormatError::Value { .. }) => Error::invalid(e.to_string(), Vec::new()),
            // Batches come from BigQuery or from our own decoder: a mismatch is a bug here.
            e @ (FormatError::SchemaMismatch { .. } | FormatError::Encode { .. }) => {
                Error::internal(e.to_string())
            }
        }
    }
}

/// Encodes batches into one file, producing bytes as it goes so the caller can upload them while
/// encoding (see [`FileEncoder::take_output`]): memory stays bounded by one batch plus, for
/// PARQUET, one row group (at most [`ROW_GROUP_MAX_BYTES`]).
pub struct FileEncoder {
    format: Format,
    schema: SchemaRef,
    inner: Inner,
    rows: u64,
    taken: u64,
}

enum Inner {
    Avro(avro::AvroEncoder),
    // Boxed: the Parquet writer is several times larger than the others.
    Parquet(Box<parquet::ParquetEncoder>),
    Csv(csv::CsvEncoder),
    Json(json::JsonEncoder),
}

impl FileEncoder {
    /// Checks `opts` against `schema` (see [`EncodeOptions::validate`]) and starts a file.
    pub fn new(schema: SchemaRef, opts: &EncodeOptions) -> Result<Self, FormatError> {
        opts.validate(&schema)
            .map_err(FormatError::InvalidOptions)?;
        let inner = match opts.format {
            Format::Avro => Inner::Avro(avro::AvroEncoder::new(schema.clone(), opts.compression)?),
            Format::Parquet => Inner::Parquet(Box::new(parquet::ParquetEncoder::new(
                schema.clone(),
                opts.compression,
            )?)),
            Format::Csv => Inner::Csv(csv::CsvEncoder::new(schema.clone(), opts)?),
            Format::Json => Inner::Json(json::JsonEncoder::new(schema.clone(), opts.compression)),
        };
        Ok(Self {
            format: opts.format,
            schema,
            inner,
            rows: 0,
            taken: 0,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Encodes one batch. Its columns must be the encoder's, in order and type; names and field
    /// metadata may differ (the Read API adds its own keys) and are taken from the encoder's
    /// schema.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let relabelled;
        let batch = if batch.schema().fields() == self.schema.fields() {
            batch
        } else {
            relabelled = self.relabel(batch)?;
            &relabelled
        };
        match &mut self.inner {
            Inner::Avro(e) => e.write(batch)?,
            Inner::Parquet(e) => e.write(batch)?,
            Inner::Csv(e) => e.write(batch)?,
            Inner::Json(e) => e.write(batch)?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// `batch` with the encoder's field names and metadata; an error if a type differs.
    fn relabel(&self, batch: &RecordBatch) -> Result<RecordBatch, FormatError> {
        let mismatch = |message: String| FormatError::SchemaMismatch {
            format: self.format,
            message,
        };
        let same_types = batch.num_columns() == self.schema.fields().len()
            && batch
                .schema()
                .fields()
                .iter()
                .zip(self.schema.fields())
                .all(|(actual, wanted)| same_shape(actual.data_type(), wanted.data_type()));
        if !same_types {
            return Err(mismatch(
                "the batch's column types differ from the file's".to_string(),
            ));
        }
        conform::conform_batch(batch, &self.schema, self.format)
            .map_err(|e| mismatch(e.to_string()))
    }

    /// Bytes encoded so far and not yet taken. Concatenating every `take_output` and the bytes
    /// from [`FileEncoder::finish`] gives the whole file.
    pub fn take_output(&mut self) -> Encoded {
        let out = match &mut self.inner {
            Inner::Avro(e) => e.take_output(),
            Inner::Parquet(e) => e.take_output(),
            Inner::Csv(e) => e.take_output(),
            Inner::Json(e) => e.take_output(),
        };
        self.taken += out.len() as u64;
        out
    }

    /// Approximate size of the file so far (taken + pending + still inside the encoder, e.g. a
    /// PARQUET row group in progress), for rolling to a new file at a size.
    pub fn estimated_size(&self) -> u64 {
        let pending = match &self.inner {
            Inner::Avro(e) => e.pending_size(),
            Inner::Parquet(e) => e.pending_size(),
            Inner::Csv(e) => e.pending_size(),
            Inner::Json(e) => e.pending_size(),
        };
        self.taken + pending
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the file (PARQUET footer, gzip trailer) and returns the bytes not yet taken.
    pub fn finish(self) -> Result<Encoded, FormatError> {
        match self.inner {
            Inner::Avro(e) => e.finish(),
            Inner::Parquet(e) => (*e).finish(),
            Inner::Csv(e) => e.finish(),
            Inner::Json(e) => e.finish(),
        }
    }
}

/// Whether two types are the same but for field names, nullability and metadata.
fn same_shape(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(x, y)| same_shape(x.data_type(), y.data_type()))
        }
        (DataType::List(x), DataType::List(y)) => same_shape(x.data_type(), y.data_type()),
        _ => a == b,
    }
}

/// Decodes one whole file into batches with exactly `schema` (the schema recorded at backup
/// time): same types, field names, nullability and metadata. Columns are matched by position.
/// The same decoders as [`decode_stream`] and [`ParquetLayout`], over bytes already in memory.
pub fn decode(
    bytes: Bytes,
    schema: SchemaRef,
    opts: &DecodeOptions,
) -> Result<Vec<RecordBatch>, FormatError> {
    opts.validate()?;
    let format = opts.format;
    match format {
        Format::Parquet => catch_panics(format, move || {
            parquet::decode(bytes, &schema, opts.batch_size)
        }),
        Format::Avro | Format::Csv | Format::Json => {
            decode_stream(bytes.reader(), schema, opts)?.collect()
        }
    }
}

/// Decodes an AVRO, CSV or JSON file from `input` as its bytes arrive, a batch of `schema` at a
/// time (blocks and lines are decoded as they come): memory holds a block or a batch of text and
/// the batch being built, never the file. Truncation is an error wherever the format shows it
/// (a cut-off Avro block, gzip stream, CSV record or JSON line). PARQUET keeps its footer at the
/// end and is read row group by row group instead: see [`ParquetLayout`].
pub fn decode_stream<'a>(
    input: impl Read + 'a,
    schema: SchemaRef,
    opts: &DecodeOptions,
) -> Result<BatchDecoder<'a>, FormatError> {
    opts.validate()?;
    let format = opts.format;
    // The decoders below come from other crates; a panic on malformed input there must become
    // an error here, not take down the worker thread.
    catch_panics(format, move || {
        Ok(match format {
            Format::Avro => {
                BatchDecoder::new(format, avro::decode(input, &schema, opts.batch_size)?)
            }
            Format::Csv => BatchDecoder::new(format, csv::decode(input, &schema, opts)?),
            Format::Json => {
                BatchDecoder::new(format, json::decode(input, &schema, opts.batch_size)?)
            }
            Format::Parquet => {
                return Err(FormatError::InvalidOptions(vec![FieldError::new(
                    "format",
                    "PARQUET is read row group by row group (ParquetLayout), not front to back",
                )]));
            }
        })
    })
}

/// Batches decoded one at a time. A panic inside a decoder is an error; after the first error
/// (or the end) it yields nothing more.
pub struct BatchDecoder<'a> {
    format: Format,
    inner: Box<dyn Iterator<Item = Result<RecordBatch, FormatError>> + 'a>,
    done: bool,
}

impl<'a> BatchDecoder<'a> {
    fn new(
        format: Format,
        inner: impl Iterator<Item = Result<RecordBatch, FormatError>> + 'a,
    ) -> Self {
        Self {
            format,
            inner: Box::new(inner),
            done: false,
        }
    }
}

impl Iterator for BatchDecoder<'_> {
    type Item = Result<RecordBatch, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let inner = &mut self.inner;
        let next = catch_panics(self.format, || Ok(inner.next())).transpose();
        match &next {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => self.done = true,
        }
        next.map(|r| r.and_then(|batch| batch))
    }
}

/// The Arrow schema stored in an AVRO or PARQUET file. Files written here give back the exact
/// schema they were written with; other files (e.g. BigQuery's own exports) give the schema
/// their types map to, with UTC timestamps labelled `"UTC"` as BigQuery does.
pub fn read_embedded_schema(bytes: &Bytes, format: Format) -> Result<SchemaRef, FormatError> {
    let bytes = bytes.clone();
    catch_panics(format, move || match format {
        Format::Avro => avro::read_schema(&bytes),
        Format::Parquet => parquet::read_schema(bytes),
        Format::Csv | Format::Json => Err(FormatError::InvalidOptions(vec![FieldError::new(
            "format",
            format!("{format} files carry no schema; only AVRO and PARQUET do"),
        )])),
    })
}

/// What a Parquet file's footer says: its schema (as [`read_embedded_schema`] gives it) and how
/// many rows it holds; read from the file's last bytes, so that a file written elsewhere (by a
/// BigQuery extract job) is described without reading it.
#[derive(Debug, Clone)]
pub struct ParquetFooter {
    pub schema: SchemaRef,
    pub rows: u64,
}

/// [`ParquetFooter`] from the last bytes (`tail`) of a Parquet file of `file_size` bytes.
/// `Ok(None)`: `tail` is shorter than the footer; read more of the file's end.
pub fn read_parquet_footer(
    tail: Bytes,
    file_size: u64,
) -> Result<Option<ParquetFooter>, FormatError> {
    catch_panics(Format::Parquet, move || {
        parquet::read_footer_from_tail(tail, file_size)
            .map(|found| found.map(|(schema, rows)| ParquetFooter { schema, rows }))
    })
}

/// Where a file keeps its embedded schema: at its end for PARQUET (the footer), at its start for
/// AVRO (the header). See [`read_embedded_schema_part`].
pub fn embedded_schema_at_end(format: Format) -> bool {
    format == Format::Parquet
}

/// [`read_embedded_schema`] from part of a file of `file_size` bytes, so a caller can fetch only
/// a header or footer: `part` is the file's first bytes for AVRO, its last bytes for PARQUET
/// ([`embedded_schema_at_end`]). `Ok(None)`: `part` is too short (or unreadable as a part); read
/// the whole file instead.
pub fn read_embedded_schema_part(
    part: Bytes,
    format: Format,
    file_size: u64,
) -> Result<Option<SchemaRef>, FormatError> {
    if part.len() as u64 >= file_size {
        return read_embedded_schema(&part, format).map(Some);
    }
    catch_panics(format, move || match format {
        Format::Avro => Ok(avro::read_schema_from_head(&part)),
        Format::Parquet => parquet::read_schema_from_tail(part, file_size),
        Format::Csv | Format::Json => read_embedded_schema(&part, format).map(Some),
    })
}

fn catch_panics<T>(
    format: Format,
    f: impl FnOnce() -> Result<T, FormatError>,
) -> Result<T, FormatError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the decoder panicked".to_string());
        Err(FormatError::Corrupt { format, message })
    })
}

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
