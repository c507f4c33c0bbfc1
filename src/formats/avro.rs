//! AVRO object container files (OCF) through `arrow-avro`, blocks compressed with deflate,
//! snappy or zstandard. One block per written batch.
//!
//! | BigQuery (Arrow) | Avro |
//! |---|---|
//! | INT64 | `long` |
//! | FLOAT64 | `double` (NaN and ±Inf are IEEE values, kept as is) |
//! | NUMERIC (Decimal128(38,9)) | `bytes`, logicalType `decimal`, precision 38, scale 9 |
//! | BIGNUMERIC (Decimal256(76,38)) | `bytes`, logicalType `decimal`, precision 76, scale 38 |
//! | BOOL | `boolean` |
//! | STRING, GEOGRAPHY (WKT), JSON | `string` |
//! | BYTES | `bytes` |
//! | DATE | `int`, logicalType `date` |
//! | TIME | `long`, logicalType `time-micros` |
//! | DATETIME | `long`, logicalType `local-timestamp-micros` |
//! | TIMESTAMP | `long`, logicalType `timestamp-micros` |
//! | STRUCT | nested `record` |
//! | REPEATED | `array` |
//! | NULLABLE | union `["null", T]` |
//!
//! The header also holds the exact Arrow schema (IPC-encoded, then base64, key
//! [`ARROW_SCHEMA_KEY`]), which Avro cannot express (field metadata such as
//! `ARROW:extension:name`, the `"UTC"` zone name); Avro readers ignore unknown header keys. Base64
//! because some readers (fastavro) decode every header value as UTF-8 and refuse the whole file
//! otherwise; raw IPC bytes, as early files hold them, are still read.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Fields, Schema, SchemaRef};
use arrow_avro::compression::CompressionCodec;
use arrow_avro::reader::ReaderBuilder;
use arrow_avro::writer::format::AvroOcfFormat;
use arrow_avro::writer::{Writer, WriterBuilder};
use base64::Engine;

use super::compression::{Encoded, SharedBuffer};
use super::conform::{bigquery_labels, conform_batch};
use super::ocf::FramedRead;
use super::{Compression, Format, FormatError};

/// Header key under which the Arrow schema is stored (Avro reserves the `avro.` prefix only).
pub(super) const ARROW_SCHEMA_KEY: &str = "bq_backup.arrow_schema";

pub(super) struct AvroEncoder {
    writer: Writer<SharedBuffer, AvroOcfFormat>,
    buffer: SharedBuffer,
    /// The schema with Avro-valid names, when some column name is not one (BigQuery's
    /// flexible column names allow spaces, dashes, any letter).
    renamed: Option<SchemaRef>,
}

impl AvroEncoder {
    pub(super) fn new(schema: SchemaRef, compression: Compression) -> Result<Self, FormatError> {
        let codec = match compression {
            Compression::None => None,
            Compression::Deflate => Some(CompressionCodec::Deflate),
            Compression::Snappy => Some(CompressionCodec::Snappy),
            Compression::Zstd => Some(CompressionCodec::ZStandard),
            Compression::Gzip => {
                return Err(encode_error("GZIP is not an Avro block codec".to_string()));
            }
        };
        // Schema-level metadata could hold an `avro.schema` key, which the writer would take
        // verbatim instead of deriving the Avro schema from the fields.
        let avro_fields = avro_names(schema.fields());
        let renamed =
            (&avro_fields != schema.fields()).then(|| Arc::new(Schema::new(avro_fields.clone())));
        let fields_only = Schema::new(avro_fields);
        let buffer = SharedBuffer::default();
        let writer = WriterBuilder::new(fields_only)
            .with_compression(codec)
            .build::<_, AvroOcfFormat>(buffer.clone())
            .map_err(|e| encode_error(e.to_string()))?;
        // The header is all the buffer holds so far: add the Arrow schema to it.
        let header = buffer.take().to_bytes();
        let mut buffer_writer = buffer.clone();
        let header = with_arrow_schema(&header, &schema).unwrap_or(header.to_vec());
        std::io::Write::write_all(&mut buffer_writer, &header)
            .map_err(|e| encode_error(e.to_string()))?;
        Ok(Self {
            writer,
            buffer,
            renamed,
        })
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        let result = match &self.renamed {
            Some(schema) => {
                let renamed = conform_batch(batch, schema, Format::Avro)?;
                self.writer.write(&renamed)
            }
            None => self.writer.write(batch),
        };
        result.map_err(|e| encode_error(e.to_string()))
    }

    pub(super) fn take_output(&mut self) -> Encoded {
        self.buffer.take()
    }

    /// Blocks are written whole on each `write`: nothing is held back.
    pub(super) fn pending_size(&self) -> u64 {
        self.buffer.len() as u64
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
        format: Format::Avro,
        message,
    }
}

fn corrupt(message: String) -> FormatError {
    FormatError::Corrupt {
        format: Format::Avro,
        message,
    }
}

/// `fields` with names Avro accepts (`[A-Za-z_][A-Za-z0-9_]*`, unique among siblings), at
/// every level. Names are restored from the embedded Arrow schema or the table schema on read,
/// where columns are matched by position.
fn avro_names(fields: &Fields) -> Fields {
    let mut taken = std::collections::HashSet::new();
    fields
        .iter()
        .map(|field| {
            let base = avro_name(field.name());
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}_{n}");
                n += 1;
            }
            let data_type = match field.data_type() {
                DataType::Struct(children) => DataType::Struct(avro_names(children)),
                DataType::List(item) => {
                    let item = avro_names(&Fields::from(vec![item.clone()]));
                    DataType::List(item[0].clone())
                }
                other => other.clone(),
            };
            field
                .as_ref()
                .clone()
                .with_name(name)
                .with_data_type(data_type)
        })
        .collect()
}

fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The OCF `header` with one more metadata entry: the IPC-encoded Arrow `schema`. `None` when
/// the header is not laid out as arrow-avro writes it (magic, one map block of 2 entries, end
/// of map, 16-byte sync), in which case the file simply carries no Arrow schema.
fn with_arrow_schema(header: &[u8], schema: &Schema) -> Option<Vec<u8>> {
    const MAGIC: &[u8] = b"Obj\x01";
    const TWO_ENTRIES: u8 = 4; // zig-zag varint of 2
    const THREE_ENTRIES: u8 = 6; // zig-zag varint of 3
    const END_OF_MAP: u8 = 0;
    const SYNC_LEN: usize = 16;
    let end_of_map = header.len().checked_sub(SYNC_LEN + 1)?;
    if !header.starts_with(MAGIC)
        || header.get(MAGIC.len()) != Some(&TWO_ENTRIES)
        || header.get(end_of_map) != Some(&END_OF_MAP)
    {
        return None;
    }
    let ipc = schema_to_ipc(schema)?;
    let mut out = Vec::with_capacity(header.len() + ipc.len() + 64);
    out.extend_from_slice(MAGIC);
    out.push(THREE_ENTRIES);
    out.extend_from_slice(&header[MAGIC.len() + 1..end_of_map]);
    write_avro_bytes(&mut out, ARROW_SCHEMA_KEY.as_bytes());
    write_avro_bytes(
        &mut out,
        base64::engine::general_purpose::STANDARD
            .encode(&ipc)
            .as_bytes(),
    );
    out.extend_from_slice(&header[end_of_map..]);
    Some(out)
}

/// Avro `bytes`: zig-zag varint length, then the bytes.
fn write_avro_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths of a header entry are far below i64::MAX.
    let len = bytes.len() as u64;
    let mut zigzag = len << 1;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

fn schema_to_ipc(schema: &Schema) -> Option<Vec<u8>> {
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema).ok()?;
    writer.finish().ok()?;
    writer.into_inner().ok()
}

fn schema_from_ipc(bytes: &[u8]) -> Result<SchemaRef, FormatError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None)
        .map_err(|e| corrupt(format!("the embedded Arrow schema is unreadable: {e}")))?;
    Ok(reader.schema())
}

/// Decodes an OCF file from `input` as it is read, a batch of `schema` at a time: memory holds
/// one block (compressed and not) and one batch, never the file.
pub(super) fn decode<'a>(
    input: impl Read + 'a,
    schema: &SchemaRef,
    batch_size: usize,
) -> Result<AvroDecoder<'a>, FormatError> {
    let announced = Arc::new(AtomicU64::new(0));
    let framed = FramedRead::new(Box::new(input), announced.clone());
    let reader = ReaderBuilder::new()
        .with_batch_size(batch_size)
        .build(BufReader::new(framed))
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(AvroDecoder {
        reader,
        schema: schema.clone(),
        announced,
        rows: 0,
        done: false,
    })
}

/// The streaming OCF reader: an iterator of batches.
pub(super) struct AvroDecoder<'a> {
    reader: arrow_avro::reader::Reader<BufReader<FramedRead<'a>>>,
    schema: SchemaRef,
    /// Rows announced by the blocks read whole so far.
    announced: Arc<AtomicU64>,
    rows: u64,
    done: bool,
}

impl Iterator for AvroDecoder<'_> {
    type Item = Result<RecordBatch, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.reader.next() {
            Some(Ok(batch)) => {
                self.rows += batch.num_rows() as u64;
                let conformed = conform_batch(&batch, &self.schema, Format::Avro);
                self.done = conformed.is_err();
                Some(conformed)
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(corrupt(e.to_string())))
            }
            None => {
                self.done = true;
                let announced = self.announced.load(Ordering::Relaxed);
                (announced != self.rows).then(|| {
                    Err(corrupt(format!(
                        "the blocks announce {announced} rows but {} were read",
                        self.rows
                    )))
                })
            }
        }
    }
}

/// The Arrow schema written into the header, or the one the Avro schema maps to.
pub(super) fn read_schema(bytes: &[u8]) -> Result<SchemaRef, FormatError> {
    let reader = ReaderBuilder::new()
        .build(bytes)
        .map_err(|e| corrupt(e.to_string()))?;
    if let Some(value) = reader.avro_header().get(ARROW_SCHEMA_KEY) {
        // Base64 text since fastavro refused raw bytes; raw IPC (starts with 0xFF) before that.
        let ipc = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap_or_else(|_| value.to_vec());
        return schema_from_ipc(&ipc);
    }
    Ok(bigquery_labels(&reader.schema()))
}

/// [`read_schema`] from the first bytes of a file (the header is all it needs). `None` when
/// `head` ends before the header does (or is otherwise unreadable: the caller then reads the
/// whole file, which gives the real error).
pub(super) fn read_schema_from_head(head: &[u8]) -> Option<SchemaRef> {
    read_schema(head).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::sample::all_types_batch;
    use crate::formats::testdata::encode;
    use crate::formats::{EncodeOptions, read_embedded_schema};
    use bytes::Bytes;

    #[test]
    fn avro_files_carry_the_exact_arrow_schema() {
        let batch = all_types_batch(4);
        let bytes = encode(
            std::slice::from_ref(&batch),
            &EncodeOptions::new(Format::Avro),
        );
        let schema = read_embedded_schema(&bytes, Format::Avro).unwrap();
        assert_eq!(schema, batch.schema());
    }

    #[test]
    fn every_avro_header_value_is_utf8_text_so_fastavro_opens_the_file() {
        let batch = all_types_batch(2);
        let bytes = encode(&[batch], &EncodeOptions::new(Format::Avro));
        let reader = ReaderBuilder::new().build(&bytes[..]).unwrap();
        let header = reader.avro_header();
        assert!(header.get(ARROW_SCHEMA_KEY).is_some());
        for (key, value) in header.metadata() {
            assert!(
                std::str::from_utf8(value).is_ok(),
                "{} is not UTF-8",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn avro_writes_bigquery_flexible_column_names() {
        use arrow::array::{ArrayRef, Int64Array, StructArray};
        use arrow::datatypes::Field;
        let inner = Fields::from(vec![Field::new("a b", DataType::Int64, true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("my col-1", DataType::Int64, true),
            Field::new("my col_1", DataType::Int64, true),
            Field::new("列", DataType::Struct(inner.clone()), true),
            Field::new("1starts", DataType::Int64, true),
        ]));
        let int = || Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef;
        let record = StructArray::new(inner, vec![int()], None);
        let batch =
            RecordBatch::try_new(schema.clone(), vec![int(), int(), Arc::new(record), int()])
                .unwrap();
        let bytes = encode(
            std::slice::from_ref(&batch),
            &EncodeOptions::new(Format::Avro),
        );
        let opts = crate::formats::DecodeOptions::new(Format::Avro);
        let back = crate::formats::decode(bytes.clone(), schema.clone(), &opts).unwrap();
        assert_eq!(back, vec![batch]);
        assert_eq!(read_embedded_schema(&bytes, Format::Avro).unwrap(), schema);
    }

    #[test]
    fn avro_files_from_other_writers_map_utc_timestamps_to_utc() {
        let batch = all_types_batch(4);
        let mut writer =
            arrow_avro::writer::AvroWriter::new(Vec::new(), batch.schema().as_ref().clone())
                .unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let bytes = Bytes::from(writer.into_inner());
        let schema = read_embedded_schema(&bytes, Format::Avro).unwrap();
        let timestamp = schema.field_with_name("timestamp").unwrap();
        assert_eq!(timestamp.data_type(), batch.schema().field(10).data_type());
    }

    #[test]
    fn the_schema_reads_from_the_header_alone() {
        let batch = all_types_batch(200);
        let bytes = encode(
            std::slice::from_ref(&batch),
            &EncodeOptions::new(Format::Avro),
        );
        let whole = read_embedded_schema(&bytes, Format::Avro).unwrap();
        let header_end = bytes.len() / 2;
        assert_eq!(read_schema_from_head(&bytes[..header_end]), Some(whole));
        assert_eq!(read_schema_from_head(&bytes[..20]), None);
    }
}
