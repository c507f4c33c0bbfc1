//! Newline-delimited JSON, optionally gzipped: one object per row, keys in column order.
//!
//! | BigQuery type | written as |
//! |---|---|
//! | INT64 | string `"-42"`: BigQuery's export choice, exact where JSON readers use doubles; numbers are read too |
//! | FLOAT64 | number in its shortest exact form (`0.1`, `1e300`); `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | NUMERIC, BIGNUMERIC | string, shortest exact decimal (`"1.5"`); numbers are read too |
//! | BOOL | `true` / `false` |
//! | STRING, GEOGRAPHY (WKT) | string |
//! | JSON | string holding the JSON text, so the text comes back byte for byte |
//! | BYTES | base64 string |
//! | DATE, TIME, DATETIME, TIMESTAMP | strings: `"2024-02-29"`, `"12:34:56.000001"`, `"2024-02-29T12:34:56.000001"`, `"2024-02-29T12:34:56.000001Z"` |
//! | STRUCT | object |
//! | REPEATED | array (a missing or `null` array reads as empty, as in BigQuery) |
//! | NULL | `null` |
//!
//! Reading uses arrow-json's tape parser with every leaf read as text (numbers keep their exact
//! digits), then [`super::text`] parses each leaf into its type.

use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};

use super::compression::{Encoded, TextSink, maybe_gunzip};
use super::text::{LeafFormatter, Style};
use super::{Compression, Format, FormatError};

pub(super) struct JsonEncoder {
    schema: SchemaRef,
    sink: TextSink,
    rows: usize,
    /// Text bytes per row of the last batch, to size the next batch's buffer.
    bytes_per_row: usize,
}

impl JsonEncoder {
    pub(super) fn new(schema: SchemaRef, compression: Compression) -> Self {
        Self {
            schema,
            sink: TextSink::new(compression == Compression::Gzip),
            rows: 0,
            bytes_per_row: 0,
        }
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(mismatch(
                "the batch's columns differ from the file's".to_string(),
            ));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| Ok((json_key(field.name()), Node::new(column, field.name())?)))
            .collect::<Result<Vec<_>, FormatError>>()?;
        let rows = batch.num_rows();
        let capacity = match self.bytes_per_row {
            0 => batch.get_array_memory_size(),
            // A little over the last batch's rate, so that one reservation is usually enough.
            known => rows * (known + known / 8 + 1),
        };
        let first_row = self.rows;
        let mut written = 0;
        self.sink.write_batch(
            capacity,
            |text| {
                let start = text.len();
                for row in 0..rows {
                    text.push(b'{');
                    for (i, (key, node)) in columns.iter().enumerate() {
                        if i > 0 {
                            text.push(b',');
                        }
                        text.extend_from_slice(key);
                        node.write(row, text)
                            .map_err(|(column, message)| FormatError::Value {
                                format: Format::Json,
                                column,
                                row: first_row + row,
                                message,
                            })?;
                    }
                    text.extend_from_slice(b"}\n");
                }
                written = text.len() - start;
                Ok(())
            },
            encode_error,
        )?;
        self.rows += rows;
        self.bytes_per_row = written.div_ceil(rows.max(1));
        Ok(())
    }

    pub(super) fn take_output(&mut self) -> Encoded {
        self.sink.take().into()
    }

    pub(super) fn pending_size(&self) -> u64 {
        self.sink.pending_size() as u64
    }

    pub(super) fn finish(self) -> Result<Encoded, FormatError> {
        self.sink.finish().map(Encoded::from).map_err(encode_error)
    }
}

fn encode_error(e: std::io::Error) -> FormatError {
    FormatError::Encode {
        format: Format::Json,
        message: e.to_string(),
    }
}

fn mismatch(message: String) -> FormatError {
    FormatError::SchemaMismatch {
        format: Format::Json,
        message,
    }
}

/// `"name":`, escaped once per batch.
fn json_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 3);
    write_json_string(&mut key, name.as_bytes());
    key.push(b':');
    key
}

/// What each byte becomes inside a JSON string: 0 for itself, `u` for `\u00XX`, or the letter
/// after a backslash (`"`, `\\`, `n`, `r`, `t`). Bytes from 0x80 up (UTF-8) stay as they are.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` (UTF-8) as a JSON string: runs of bytes that need no escape are copied whole.
fn write_json_string(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in text.iter().enumerate() {
        let escape = ESCAPES[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&text[run..i]);
        run = i + 1;
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(&text[run..]);
    out.push(b'"');
}

/// One column of a batch, ready to write row by row.
enum Node<'a> {
    Leaf(LeafFormatter<'a>, String),
    Struct(&'a StructArray, Vec<(Vec<u8>, Node<'a>)>),
    List(&'a ListArray, Box<Node<'a>>),
}

impl<'a> Node<'a> {
    fn new(array: &'a ArrayRef, path: &str) -> Result<Self, FormatError> {
        Ok(match array.data_type() {
            DataType::Struct(fields) => {
                let array = array.as_struct();
                let children = array
                    .columns()
                    .iter()
                    .zip(fields)
                    .map(|(child, field)| {
                        let child_path = format!("{path}.{}", field.name());
                        Ok((json_key(field.name()), Node::new(child, &child_path)?))
                    })
                    .collect::<Result<Vec<_>, FormatError>>()?;
                Node::Struct(array, children)
            }
            DataType::List(_) => {
                let array = array.as_list::<i32>();
                Node::List(array, Box::new(Node::new(array.values(), path)?))
            }
            other => Node::Leaf(
                LeafFormatter::new(array).ok_or_else(|| {
                    mismatch(format!(
                        "column `{path}` has type {other}, not a BigQuery type"
                    ))
                })?,
                path.to_string(),
            ),
        })
    }

    /// Writes the value at `index`; on error, the column path and the reason.
    fn write(&self, index: usize, out: &mut Vec<u8>) -> Result<(), (String, String)> {
        match self {
            Node::Leaf(leaf, path) => {
                if leaf.is_null(index) {
                    out.extend_from_slice(b"null");
                    return Ok(());
                }
                // Only strings can hold bytes JSON must escape; every other type's text (digits,
                // dates, base64, `NaN`) goes in as it is, quoted or bare as its style says.
                if let Some(strings) = leaf.strings() {
                    write_json_string(out, strings.value(index).as_bytes());
                    return Ok(());
                }
                let start = out.len();
                out.push(b'"');
                match leaf.write(index, out) {
                    Ok(Style::Quoted) => out.push(b'"'),
                    Ok(Style::Bare) => {
                        out.remove(start);
                    }
                    Err(message) => {
                        out.truncate(start);
                        return Err((path.clone(), message));
                    }
                }
            }
            Node::Struct(array, children) => {
                if array.is_null(index) {
                    out.extend_from_slice(b"null");
                    return Ok(());
                }
                out.push(b'{');
                for (i, (key, child)) in children.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    child.write(index, out)?;
                }
                out.push(b'}');
            }
            Node::List(array, item) => {
                if array.is_null(index) {
                    out.extend_from_slice(b"null");
                    return Ok(());
                }
                let offsets = array.value_offsets();
                out.push(b'[');
                for (i, value) in (offsets[index]..offsets[index + 1]).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    // Offsets of a valid ListArray are non-negative.
                    child_write(item, value, out)?;
                }
                out.push(b']');
            }
        }
        Ok(())
    }
}

fn child_write(item: &Node<'_>, offset: i32, out: &mut Vec<u8>) -> Result<(), (String, String)> {
    let index = usize::try_from(offset)
        .map_err(|_| ("(list)".to_string(), "negative list offset".to_string()))?;
    item.write(index, out)
}

/// Decodes NDJSON (gzipped or not) from `input` as it is read, a batch of `schema` at a time.
pub(super) fn decode<'a>(
    input: impl Read + 'a,
    schema: &SchemaRef,
    batch_size: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, FormatError>> + 'a, FormatError> {
    let text = maybe_gunzip(input).map_err(|e| corrupt(format!("gzip: {e}")))?;
    let shadow = Arc::new(Schema::new(
        schema.fields().iter().map(text_field).collect::<Vec<_>>(),
    ));
    let reader = arrow::json::ReaderBuilder::new(shadow)
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .build(BufReader::new(text))
        .map_err(|e| corrupt(e.to_string()))?;
    let schema = schema.clone();
    let mut first_row = 0;
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|e| corrupt(e.to_string()))?;
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| from_text(column, field, field.name(), first_row))
            .collect::<Result<Vec<_>, _>>()?;
        first_row += batch.num_rows();
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| FormatError::FileSchema {
            format: Format::Json,
            message: e.to_string(),
        })
    }))
}

fn corrupt(message: String) -> FormatError {
    FormatError::Corrupt {
        format: Format::Json,
        message,
    }
}

/// `field` with every leaf read as (nullable) text, the shape kept.
fn text_field(field: &FieldRef) -> Field {
    let data_type = match field.data_type() {
        DataType::Struct(children) => DataType::Struct(Fields::from(
            children.iter().map(text_field).collect::<Vec<_>>(),
        )),
        DataType::List(item) => DataType::List(Arc::new(text_field(item))),
        _ => DataType::Utf8,
    };
    Field::new(field.name(), data_type, true)
}

/// The text-read `array` parsed into `target`'s type, recursively.
fn from_text(
    array: &ArrayRef,
    target: &Field,
    path: &str,
    first_row: usize,
) -> Result<ArrayRef, FormatError> {
    let schema_error = |message: String| FormatError::FileSchema {
        format: Format::Json,
        message: format!("column `{path}`: {message}"),
    };
    Ok(match (array.data_type(), target.data_type()) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let array = array.as_struct();
            let children = array
                .columns()
                .iter()
                .zip(fields)
                .map(|(child, field)| {
                    from_text(child, field, &format!("{path}.{}", field.name()), first_row)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(
                StructArray::try_new(fields.clone(), children, array.nulls().cloned())
                    .map_err(|e| schema_error(e.to_string()))?,
            )
        }
        (DataType::List(_), DataType::List(item)) => {
            let array = array.as_list::<i32>();
            let values = from_text(array.values(), item, path, 0)?;
            let nulls = list_nulls(array, target.is_nullable());
            Arc::new(
                ListArray::try_new(item.clone(), array.offsets().clone(), values, nulls)
                    .map_err(|e| schema_error(e.to_string()))?,
            )
        }
        (_, leaf) => {
            super::text::parse_leaf(array.as_string::<i32>(), leaf).map_err(|(row, message)| {
                FormatError::Value {
                    format: Format::Json,
                    column: path.to_string(),
                    row: first_row + row,
                    message,
                }
            })?
        }
    })
}

/// A REPEATED column is never NULL in BigQuery: a missing or `null` array is empty. arrow-json
/// gives NULL lists no values, so dropping their validity leaves empty lists.
fn list_nulls(array: &ListArray, nullable: bool) -> Option<NullBuffer> {
    let nulls = array.nulls().cloned();
    if nullable {
        return nulls;
    }
    let all_empty = nulls.as_ref().is_none_or(|n| {
        n.iter()
            .enumerate()
            .all(|(i, valid)| valid || array.value_length(i) == 0)
    });
    if all_empty { None } else { nulls }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testdata::encode;
    use crate::formats::{DecodeOptions, EncodeOptions, decode as decode_file};
    use arrow::array::{Int64Array, ListArray};
    use arrow::datatypes::Int64Type;
    use bytes::Bytes;

    fn json() -> EncodeOptions {
        EncodeOptions::new(Format::Json)
    }

    #[test]
    fn json_writes_int64_as_strings_and_floats_as_numbers() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(i64::MAX), None])),
                Arc::new(arrow::array::Float64Array::from(vec![
                    Some(1e300),
                    Some(f64::NAN),
                ])),
            ],
        )
        .unwrap();
        let text = encode(&[batch], &json());
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "{\"i\":\"9223372036854775807\",\"f\":1e300}\n{\"i\":null,\"f\":\"NaN\"}\n"
        );
    }

    #[test]
    fn json_reads_a_missing_repeated_column_as_an_empty_array() {
        let item = Arc::new(Field::new("item", DataType::Int64, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("tags", DataType::List(item.clone()), false),
        ]));
        let text = Bytes::from_static(
            b"{\"id\":1}\n{\"id\":2,\"tags\":null}\n{\"id\":3,\"tags\":[4,\"5\"]}\n",
        );
        let batches = decode_file(text, schema.clone(), &DecodeOptions::new(Format::Json)).unwrap();
        let tags = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![]),
            Some(vec![]),
            Some(vec![Some(4), Some(5)]),
        ]);
        let tags = ListArray::new(item, tags.offsets().clone(), tags.values().clone(), None);
        let expected = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(tags)],
        )
        .unwrap();
        assert_eq!(batches, vec![expected]);
    }
}
