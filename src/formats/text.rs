//! Leaf values as text, shared by CSV and JSON: how each BigQuery type is written (the way
//! BigQuery writes it on export) and read back exactly.
//!
//! | type | written | also read |
//! |---|---|---|
//! | INT64 | `-42` | `+42` |
//! | FLOAT64 | shortest text that reads back to the same bits (`0.1`, `1e300`), `NaN`, `Infinity`, `-Infinity` | `inf`, `nan` in any case |
//! | NUMERIC, BIGNUMERIC | shortest exact decimal (`1.5`, `-0.000000001`, `0`) | trailing zeros, `+` |
//! | BOOL | `true`, `false` | any case, `1`, `0` |
//! | STRING, GEOGRAPHY, JSON | the text itself | |
//! | BYTES | base64, standard alphabet with padding | |
//! | DATE | `2024-02-29` | |
//! | TIME | `12:34:56.000001` (always 6 fractional digits) | 0–6 digits |
//! | DATETIME | `2024-02-29T12:34:56.000001` | a space for `T`, 0–6 digits |
//! | TIMESTAMP | `2024-02-29T12:34:56.000001Z` (RFC 3339, UTC) | a space for `T`, 0–6 digits, `Z`, ` UTC`, `±HH:MM`, `±HH`, no zone (UTC) |
//!
//! Errors name the column and row but never the value: values are user data and errors are
//! logged.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder,
    Date32Builder, Decimal128Builder, Decimal256Array, Decimal256Builder, Float64Builder,
    Int64Builder, StringArray, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Decimal256Type, Float64Type, Int64Type, TimeUnit, i256,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::write_text::{
    MICROS_PER_DAY, write_date, write_datetime, write_decimal_text, write_decimal128,
    write_finite_float, write_int, write_time,
};

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// How JSON must write a value's text: as a string, or bare (numbers, booleans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Quoted,
    Bare,
}

/// Writes the values of one leaf column as text. Holds the column's validity and value slices
/// directly: this runs once per value, and going through `dyn Array` each time showed in
/// profiles.
pub(super) struct LeafFormatter<'a> {
    nulls: Option<&'a NullBuffer>,
    values: Values<'a>,
}

enum Values<'a> {
    Int64(&'a [i64]),
    Float64(&'a [f64]),
    Decimal128(&'a [i128], i8),
    Decimal256(&'a Decimal256Array, i8),
    Boolean(&'a BooleanArray),
    Utf8(&'a StringArray),
    Binary(&'a BinaryArray),
    Date32(&'a [i32]),
    Time64(&'a [i64]),
    /// Microseconds since the epoch; `true` for TIMESTAMP (a zone: UTC), `false` for DATETIME.
    Timestamp(&'a [i64], bool),
}

impl<'a> LeafFormatter<'a> {
    /// `None` when `array` is not a leaf type of BigQuery's Read API schema.
    pub(super) fn new(array: &'a ArrayRef) -> Option<Self> {
        let values = match array.data_type() {
            DataType::Int64 => Values::Int64(array.as_primitive::<Int64Type>().values()),
            DataType::Float64 => Values::Float64(array.as_primitive::<Float64Type>().values()),
            DataType::Decimal128(_, scale) => {
                Values::Decimal128(array.as_primitive::<Decimal128Type>().values(), *scale)
            }
            DataType::Decimal256(_, scale) => {
                Values::Decimal256(array.as_primitive::<Decimal256Type>(), *scale)
            }
            DataType::Boolean => Values::Boolean(array.as_boolean()),
            DataType::Utf8 => Values::Utf8(array.as_string::<i32>()),
            DataType::Binary => Values::Binary(array.as_binary::<i32>()),
            DataType::Date32 => Values::Date32(array.as_primitive::<Date32Type>().values()),
            DataType::Time64(TimeUnit::Microsecond) => Values::Time64(
                array
                    .as_primitive::<arrow::datatypes::Time64MicrosecondType>()
                    .values(),
            ),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => Values::Timestamp(
                array
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .values(),
                zone.is_some(),
            ),
            _ => return None,
        };
        Some(Self {
            nulls: array.nulls(),
            values,
        })
    }

    pub(super) fn is_null(&self, row: usize) -> bool {
        self.nulls.is_some_and(|nulls| nulls.is_null(row))
    }

    /// The column's strings when it is a STRING (GEOGRAPHY, JSON) column: the only leaf whose
    /// text may need escaping or quoting for its own sake.
    pub(super) fn strings(&self) -> Option<&'a StringArray> {
        match self.values {
            Values::Utf8(a) => Some(a),
            _ => None,
        }
    }

    /// Whether a value's text can be empty: STRING and BYTES (whose empty value CSV must quote
    /// to tell it from NULL). Every other type always writes something.
    pub(super) fn can_be_empty(&self) -> bool {
        matches!(self.values, Values::Utf8(_) | Values::Binary(_))
    }

    /// Appends the text of the (non-null) value at `row` to `out`. The error says why the value
    /// cannot be written (a date outside what the text form can hold); `out` is then unchanged.
    pub(super) fn write(&self, row: usize, out: &mut Vec<u8>) -> Result<Style, String> {
        match self.values {
            // INT64 is quoted in JSON, as BigQuery exports it: readers that parse numbers as
            // doubles would lose precision past 2^53.
            Values::Int64(v) => {
                write_int(out, v[row]);
                Ok(Style::Quoted)
            }
            Values::Float64(v) => Ok(write_float(out, v[row])),
            Values::Decimal128(v, scale) => {
                write_decimal128(out, v[row], scale);
                Ok(Style::Quoted)
            }
            Values::Decimal256(a, scale) => {
                write_decimal_text(out, &a.value(row).to_string(), scale);
                Ok(Style::Quoted)
            }
            Values::Boolean(a) => {
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" });
                Ok(Style::Bare)
            }
            Values::Utf8(a) => {
                out.extend_from_slice(a.value(row).as_bytes());
                Ok(Style::Quoted)
            }
            Values::Binary(a) => {
                let bytes = a.value(row);
                let start = out.len();
                // Padded base64 of n bytes: 4 characters per started 3 bytes.
                out.resize(start + bytes.len().div_ceil(3) * 4, 0);
                let written = BASE64
                    .encode_slice(bytes, &mut out[start..])
                    .map_err(|e| e.to_string())?;
                out.truncate(start + written);
                Ok(Style::Quoted)
            }
            Values::Date32(v) => {
                if !write_date(out, i64::from(v[row])) {
                    return Err("the DATE is outside years 1 to 9999".to_string());
                }
                Ok(Style::Quoted)
            }
            Values::Time64(v) => {
                if !write_time(out, v[row]) {
                    return Err("the TIME is outside 00:00:00 to 23:59:59.999999".to_string());
                }
                Ok(Style::Quoted)
            }
            Values::Timestamp(v, utc) => {
                if !write_datetime(out, v[row]) {
                    return Err("the timestamp is outside years 1 to 9999".to_string());
                }
                if utc {
                    out.push(b'Z');
                }
                Ok(Style::Quoted)
            }
        }
    }
}

fn write_float(out: &mut Vec<u8>, value: f64) -> Style {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
        Style::Quoted
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
        Style::Quoted
    } else {
        // Rust's shortest round-trip form, switching to exponents for very large or small
        // magnitudes (`1e300`), which keeps it a valid JSON number; spelling the value out
        // would take 300 digits.
        write_finite_float(out, value);
        Style::Bare
    }
}

/// Parses a column of text (NULL where the file had none) into `target`, a leaf type.
/// An empty text is NULL except for STRING and BYTES, where it is the empty value. On error,
/// returns the row and the reason.
pub(super) fn parse_leaf(
    texts: &StringArray,
    target: &DataType,
) -> Result<ArrayRef, (usize, String)> {
    let keeps_empty = matches!(target, DataType::Utf8 | DataType::Binary);
    let values = texts.iter().map(|text| match text {
        Some("") if !keeps_empty => None,
        other => other,
    });
    let array: ArrayRef = match target {
        DataType::Utf8 => Arc::new(texts.clone()),
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                b.append_option(
                    v.map(|s| parse_int(s).ok_or((row, "not an INT64")))
                        .transpose()
                        .map_err(own)?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                b.append_option(
                    v.map(|s| parse_float(s).ok_or((row, "not a FLOAT64")))
                        .transpose()
                        .map_err(own)?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Decimal128(precision, scale) => {
            let mut b = Decimal128Builder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                let parsed = v
                    .map(|s| {
                        parse_decimal(s, *scale, |d| d.parse::<i128>().ok()).map_err(|e| (row, e))
                    })
                    .transpose()?;
                b.append_option(parsed);
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| (0, e.to_string()))?,
            )
        }
        DataType::Decimal256(precision, scale) => {
            let mut b = Decimal256Builder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                let parsed = v
                    .map(|s| {
                        parse_decimal(s, *scale, |d| d.parse::<i256>().ok()).map_err(|e| (row, e))
                    })
                    .transpose()?;
                b.append_option(parsed);
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| (0, e.to_string()))?,
            )
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                b.append_option(
                    v.map(|s| parse_bool(s).ok_or((row, "not a BOOL")))
                        .transpose()
                        .map_err(own)?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Binary => {
            let mut b = BinaryBuilder::with_capacity(texts.len(), 0);
            for (row, v) in values.enumerate() {
                let decoded = v
                    .map(|s| BASE64.decode(s).map_err(|_| (row, "not base64 BYTES")))
                    .transpose()
                    .map_err(own)?;
                b.append_option(decoded);
            }
            Arc::new(b.finish())
        }
        DataType::Date32 => {
            let mut b = Date32Builder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                b.append_option(
                    v.map(|s| parse_date(s).ok_or((row, "not a DATE (YYYY-MM-DD)")))
                        .transpose()
                        .map_err(own)?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let mut b = Time64MicrosecondBuilder::with_capacity(texts.len());
            for (row, v) in values.enumerate() {
                b.append_option(
                    v.map(|s| parse_time(s).ok_or((row, "not a TIME (HH:MM:SS[.ffffff])")))
                        .transpose()
                        .map_err(own)?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(texts.len())
                .with_timezone_opt(zone.clone());
            for (row, v) in values.enumerate() {
                let parsed = match zone {
                    Some(_) => v.map(|s| {
                        parse_timestamp(s).ok_or((
                            row,
                            "not a TIMESTAMP (RFC 3339, at most 6 fractional digits)",
                        ))
                    }),
                    None => v.map(|s| {
                        parse_datetime(s)
                            .ok_or((row, "not a DATETIME (YYYY-MM-DDTHH:MM:SS[.ffffff])"))
                    }),
                };
                b.append_option(parsed.transpose().map_err(own)?);
            }
            Arc::new(b.finish())
        }
        other => return Err((0, format!("type {other} cannot be read from text"))),
    };
    Ok(array)
}

fn own((row, message): (usize, &str)) -> (usize, String) {
    (row, message.to_string())
}

fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

fn parse_float(s: &str) -> Option<f64> {
    // Rust's parser is exact (correctly rounded) and knows `NaN`, `inf` and `Infinity` in any
    // case, with a sign.
    s.trim().parse().ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Some(false)
    } else {
        None
    }
}

/// Parses `[+-]digits[.digits]` into the unscaled integer at `scale`, exactly: more fractional
/// digits than the scale holds are an error unless they are zeros.
fn parse_decimal<T>(s: &str, scale: i8, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    let invalid = || "not a decimal number".to_string();
    let s = s.trim();
    let (sign, unsigned) = match s.as_bytes().first() {
        Some(b'-') => ("-", &s[1..]),
        Some(b'+') => ("", &s[1..]),
        _ => ("", s),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(invalid());
    }
    let scale = usize::try_from(scale)
        .map_err(|_| "negative decimal scales are not supported".to_string())?;
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!("more than {scale} fractional digits"));
    }
    let digits = format!("{sign}{int}{kept:0<scale$}");
    parse(&digits).ok_or_else(|| "the decimal is out of range".to_string())
}

fn parse_date(s: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

fn time_micros(time: NaiveTime) -> Option<i64> {
    let nanos = time.nanosecond();
    // Sub-microsecond digits would be lost; a leap second (nanos >= 1e9) is not a BigQuery TIME.
    if !nanos.is_multiple_of(1000) || nanos >= 1_000_000_000 {
        return None;
    }
    Some(i64::from(time.num_seconds_from_midnight()) * 1_000_000 + i64::from(nanos / 1000))
}

fn parse_time(s: &str) -> Option<i64> {
    time_micros(NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f").ok()?)
}

/// A date and time without zone, with `T` or a space between them, and whatever follows.
fn parse_naive_prefix(s: &str) -> Option<(NaiveDateTime, &str)> {
    let s = s.trim();
    let (dt, rest) = NaiveDateTime::parse_and_remainder(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_and_remainder(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Some((dt, rest))
}

fn naive_micros(dt: NaiveDateTime) -> Option<i64> {
    let days = i64::from(dt.date().num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE);
    days.checked_mul(MICROS_PER_DAY)?
        .checked_add(time_micros(dt.time())?)
}

fn parse_datetime(s: &str) -> Option<i64> {
    match parse_naive_prefix(s)? {
        (dt, "") => naive_micros(dt),
        _ => None,
    }
}

fn parse_timestamp(s: &str) -> Option<i64> {
    let (dt, zone) = parse_naive_prefix(s)?;
    let offset_seconds = parse_offset(zone.trim())?;
    naive_micros(dt)?.checked_sub(offset_seconds * 1_000_000)
}

/// Seconds east of UTC for `Z`, `UTC`, `+HH:MM`, `+HHMM`, `+HH` (or nothing: BigQuery reads a
/// TIMESTAMP without zone as UTC).
fn parse_offset(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") || zone.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(digits: &str, scale: i8) -> String {
        let mut out = Vec::new();
        write_decimal_text(&mut out, digits, scale);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decimals_are_written_in_their_shortest_exact_form() {
        assert_eq!(decimal("1500000000", 9), "1.5");
        assert_eq!(decimal("-1", 9), "-0.000000001");
        assert_eq!(decimal("0", 9), "0");
        assert_eq!(decimal("-3000000000", 9), "-3");
        assert_eq!(decimal("12", 0), "12");
    }

    #[test]
    fn bignumeric_extremes_read_back_exactly() {
        for value in [i256::MAX, i256::MIN] {
            let text = decimal(&value.to_string(), 38);
            let back = parse_decimal(&text, 38, |d| d.parse::<i256>().ok()).unwrap();
            assert_eq!(back, value, "{text}");
        }
    }

    #[test]
    fn decimals_with_more_digits_than_the_scale_are_rejected() {
        assert!(parse_decimal("0.0000000001", 9, |d| d.parse::<i128>().ok()).is_err());
        assert_eq!(
            parse_decimal("1.5000000000000", 9, |d| d.parse::<i128>().ok()),
            Ok(1_500_000_000)
        );
    }

    #[test]
    fn timestamps_in_bigquery_export_forms_are_read() {
        let expected = Some(1_700_000_000_123_456);
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.123456Z"), expected);
        assert_eq!(parse_timestamp("2023-11-14 22:13:20.123456 UTC"), expected);
        assert_eq!(
            parse_timestamp("2023-11-15T00:13:20.123456+02:00"),
            expected
        );
        assert_eq!(parse_timestamp("2023-11-14 22:13:20.123456"), expected);
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.1234567Z"), None);
        assert_eq!(parse_datetime("2023-11-14T22:13:20Z"), None);
    }
}
