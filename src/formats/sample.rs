//! Sample data: one Arrow batch holding every BigQuery type the way the Storage Read API delivers
//! it, with the values that break naive encoders (NULLs, NaN/±Inf, unicode, empty strings,
//! BIGNUMERIC extremes, min/max dates and timestamps, 2-level nested records, repeated records).
//!
//! Used by the format unit tests, the integration tests and the benchmark. Depends on arrow only.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    Float64Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit, i256};

/// Field metadata key BigQuery's Read API uses to mark GEOGRAPHY and JSON columns.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Extension name of a GEOGRAPHY column (WKT text).
pub const GEOGRAPHY_EXTENSION: &str = "google:sqlType:geography";
/// Extension name of a JSON column (JSON text).
pub const JSON_EXTENSION: &str = "google:sqlType:json";

/// Smallest and largest DATE BigQuery accepts: 0001-01-01 and 9999-12-31, as days since 1970.
const MIN_DATE: i32 = -719_162;
const MAX_DATE: i32 = 2_932_896;
/// Smallest and largest DATETIME/TIMESTAMP: 0001-01-01 00:00:00 and 9999-12-31 23:59:59.999999 (µs).
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;
/// Last microsecond of the day (TIME 23:59:59.999999).
const MAX_TIME: i64 = 86_399_999_999;
/// NUMERIC(38, 9) extremes: ±99999999999999999999999999999.999999999 (unscaled 10^38 - 1).
const MAX_NUMERIC: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

fn with_extension(field: Field, extension: &str) -> Field {
    field.with_metadata(HashMap::from([(
        EXTENSION_NAME_KEY.to_string(),
        extension.to_string(),
    )]))
}

/// Fields of the `record` column: `{a INT64, inner STRUCT<x STRING, y FLOAT64>}`.
fn record_fields() -> Fields {
    Fields::from(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("inner", DataType::Struct(inner_fields()), true),
    ])
}

fn inner_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Utf8, true),
        Field::new("y", DataType::Float64, true),
    ])
}

/// Fields of one element of the `repeated_record` column: `{name STRING, value INT64}`.
fn item_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Int64, true),
    ])
}

/// The schema of [`all_types_batch`]: one column per BigQuery type, as the Storage Read API
/// describes it (REPEATED columns are non-null lists of non-null items).
pub fn all_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("int64", DataType::Int64, true),
        Field::new("float64", DataType::Float64, true),
        Field::new("numeric", DataType::Decimal128(38, 9), true),
        Field::new("bignumeric", DataType::Decimal256(76, 38), true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("string", DataType::Utf8, true),
        Field::new("bytes", DataType::Binary, true),
        Field::new("date", DataType::Date32, true),
        Field::new("time", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new(
            "datetime",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        with_extension(
            Field::new("geography", DataType::Utf8, true),
            GEOGRAPHY_EXTENSION,
        ),
        with_extension(Field::new("json", DataType::Utf8, true), JSON_EXTENSION),
        Field::new("record", DataType::Struct(record_fields()), true),
        Field::new(
            "repeated_int64",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, false))),
            false,
        ),
        Field::new(
            "repeated_record",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(item_fields()),
                false,
            ))),
            false,
        ),
    ]))
}

/// Picks the `row`-th value of a cycle of interesting values.
fn pick<T: Clone>(cycle: &[T], row: usize) -> T {
    cycle[row % cycle.len()].clone()
}

/// A batch of `rows` rows covering every BigQuery type. Rows cycle through edge cases, so any
/// `rows >= 8` holds every special value at least once; row `i` is deterministic.
pub fn all_types_batch(rows: usize) -> RecordBatch {
    let big_max = i256::MAX; // BIGNUMERIC's largest value: 2^255 - 1 unscaled, scale 38.
    let big_min = i256::MIN;
    let int64: Int64Array = (0..rows)
        .map(|r| {
            pick(
                &[
                    Some(0),
                    Some(i64::MAX),
                    Some(i64::MIN),
                    None,
                    Some(-42),
                    Some(1),
                ],
                r,
            )
        })
        .collect();
    let float64: Float64Array = (0..rows)
        .map(|r| {
            pick(
                &[
                    Some(f64::NAN),
                    Some(f64::INFINITY),
                    Some(f64::NEG_INFINITY),
                    None,
                    Some(0.1),
                    Some(f64::MAX),
                    Some(f64::MIN_POSITIVE),
                    Some(-1.5e-300),
                ],
                r,
            )
        })
        .collect();
    let numeric = (0..rows)
        .map(|r| {
            pick(
                &[
                    Some(MAX_NUMERIC),
                    Some(-MAX_NUMERIC),
                    None,
                    Some(0),
                    Some(1_500_000_000),
                    Some(-1),
                ],
                r,
            )
        })
        .collect::<Decimal128Array>()
        .with_precision_and_scale(38, 9)
        .expect("38, 9 is a valid decimal precision and scale");
    let bignumeric = (0..rows)
        .map(|r| {
            pick(
                &[
                    Some(big_max),
                    Some(big_min),
                    None,
                    Some(i256::ZERO),
                    Some(i256::from_i128(-1)),
                    Some(i256::from_i128(
                        123_456_789_000_000_000_000_000_000_000_000_000,
                    )),
                ],
                r,
            )
        })
        .collect::<Decimal256Array>()
        .with_precision_and_scale(76, 38)
        .expect("76, 38 is a valid decimal precision and scale");
    let boolean: BooleanArray = (0..rows)
        .map(|r| pick(&[Some(true), Some(false), None], r))
        .collect();
    let strings = [
        Some("plain"),
        Some(""),
        None,
        Some("héllo wörld 🌍 日本語"),
        Some("comma, \"quote\"\nnew line\r\n\ttab"),
        Some(" leading and trailing spaces "),
        Some("NULL"),
        Some("\\N"),
    ];
    let string: StringArray = (0..rows).map(|r| pick(&strings, r)).collect();
    let byte_values: [Option<&[u8]>; 5] = [
        Some(b"\x00\x01\xfe\xff"),
        Some(b""),
        None,
        Some("unicode ü".as_bytes()),
        Some(b"plain"),
    ];
    let bytes: BinaryArray = (0..rows).map(|r| pick(&byte_values, r)).collect();
    let date: Date32Array = (0..rows)
        .map(|r| {
            pick(
                &[Some(MIN_DATE), Some(MAX_DATE), None, Some(0), Some(19_000)],
                r,
            )
        })
        .collect();
    let time: Time64MicrosecondArray = (0..rows)
        .map(|r| pick(&[Some(0), Some(MAX_TIME), None, Some(45_296_000_001)], r))
        .collect();
    let micros = [
        Some(MIN_MICROS),
        Some(MAX_MICROS),
        None,
        Some(0),
        Some(-1),
        Some(1_700_000_000_123_456),
    ];
    let datetime: TimestampMicrosecondArray = (0..rows).map(|r| pick(&micros, r)).collect();
    let timestamp: TimestampMicrosecondArray = (0..rows)
        .map(|r| pick(&micros, r + 1))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let geography: StringArray = (0..rows)
        .map(|r| {
            pick(
                &[
                    Some("POINT(1 2)"),
                    None,
                    Some("LINESTRING(0 0, 1 1, 2 0)"),
                    Some("GEOMETRYCOLLECTION EMPTY"),
                ],
                r,
            )
        })
        .collect();
    let json: StringArray = (0..rows)
        .map(|r| {
            pick(
                &[
                    Some(r#"{"a":1,"b":[true,null,"x"]}"#),
                    None,
                    Some("null"),
                    Some(r#""just a string""#),
                    Some("12345678901234567890"),
                ],
                r,
            )
        })
        .collect();
    let schema = all_types_schema();
    let record = record_array(rows);
    let repeated_int64 = repeated_int64_array(rows);
    let repeated_record = repeated_record_array(rows);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(int64),
        Arc::new(float64),
        Arc::new(numeric),
        Arc::new(bignumeric),
        Arc::new(boolean),
        Arc::new(string),
        Arc::new(bytes),
        Arc::new(date),
        Arc::new(time),
        Arc::new(datetime),
        Arc::new(timestamp),
        Arc::new(geography),
        Arc::new(json),
        Arc::new(record),
        Arc::new(repeated_int64),
        Arc::new(repeated_record),
    ];
    RecordBatch::try_new(schema, columns).expect("columns are built to match all_types_schema")
}

/// `record`: NULL every 4th row; its `inner` NULL every 3rd row; leaves NULL now and then.
fn record_array(rows: usize) -> StructArray {
    let x: StringArray = (0..rows)
        .map(|r| pick(&[Some("ünï"), Some(""), None, Some("x")], r))
        .collect();
    let y: Float64Array = (0..rows)
        .map(|r| {
            pick(
                &[Some(f64::NAN), Some(2.5), None, Some(f64::NEG_INFINITY)],
                r,
            )
        })
        .collect();
    let inner_nulls = NullBuffer::from((0..rows).map(|r| r % 3 != 2).collect::<Vec<_>>());
    let inner = StructArray::new(
        inner_fields(),
        vec![Arc::new(x), Arc::new(y)],
        Some(inner_nulls),
    );
    let a: Int64Array = (0..rows)
        .map(|r| pick(&[Some(7), None, Some(i64::MIN)], r))
        .collect();
    let nulls = NullBuffer::from((0..rows).map(|r| r % 4 != 3).collect::<Vec<_>>());
    StructArray::new(
        record_fields(),
        vec![Arc::new(a), Arc::new(inner)],
        Some(nulls),
    )
}

/// `repeated_int64`: row `r` holds `r % 4` values (so some rows hold an empty list).
fn repeated_int64_array(rows: usize) -> ListArray {
    let lengths: Vec<usize> = (0..rows).map(|r| r % 4).collect();
    let total: usize = lengths.iter().sum();
    let values: Int64Array = (0..total)
        .map(|i| pick(&[i64::MIN, 0, i64::MAX, -5], i))
        .collect();
    ListArray::new(
        Arc::new(Field::new("item", DataType::Int64, false)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    )
}

/// `repeated_record`: row `r` holds `r % 3` records, whose leaves may be NULL.
fn repeated_record_array(rows: usize) -> ListArray {
    let lengths: Vec<usize> = (0..rows).map(|r| r % 3).collect();
    let total: usize = lengths.iter().sum();
    let names: StringArray = (0..total)
        .map(|i| pick(&[Some("first"), None, Some(""), Some("ß∂ƒ")], i))
        .collect();
    let values: Int64Array = (0..total)
        .map(|i| pick(&[Some(1), Some(i64::MAX), None], i))
        .collect();
    let items = StructArray::new(item_fields(), vec![Arc::new(names), Arc::new(values)], None);
    ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(item_fields()), false)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(items),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn the_sample_batch_holds_nulls_in_every_nullable_column() {
        let batch = all_types_batch(24);
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if field.is_nullable() {
                assert!(column.null_count() > 0, "{} has no NULL", field.name());
            } else {
                assert_eq!(column.null_count(), 0, "{}", field.name());
            }
        }
    }
}
