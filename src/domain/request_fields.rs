//! Pieces shared by the backup and restore request types: JSON parsing that names the failing
//! path, Jackson-style lenient scalars for the Java fields, JSON paths for map keys, and the
//! option values both requests carry (storage URI, format, CSV delimiter, parallelism).

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::is_valid_project_id;
use super::storage_uri::{StorageScheme, StorageUri, StorageUriError};
use crate::error::FieldError;

/// Field name used for problems with the body as a whole (not JSON, wrong top-level type).
pub(crate) const BODY_FIELD: &str = "body";

/// Most tables copied at once by one job. Each table holds a Read API stream and an upload
/// buffer, so the bound is about memory, and BigQuery's per-project quotas.
pub(crate) const MAX_PARALLEL_TABLES: u32 = 64;

/// Deserializes a request body; a wrong type, an unknown field or bad JSON becomes one
/// [`FieldError`] naming its JSON path (`bigQuery.tablesToBackup[0].tables`).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // Syntax errors and truncated bodies have no meaningful path (serde_path_to_error shows
        // `?` for a key not yet read); the message carries line and column instead.
        let data_error = inner.classify() == serde_json::error::Category::Data;
        let field = if data_error && path != "." {
            path
        } else {
            BODY_FIELD.to_owned()
        };
        FieldError::new(field, inner.to_string())
    })?;
    // Trailing garbage after the object is a malformed body, not something to ignore.
    deserializer
        .end()
        .map_err(|err| FieldError::new(BODY_FIELD, err.to_string()))?;
    Ok(value)
}

/// `parent.key` for identifier-like keys, `parent["key"]` (JSON-quoted) otherwise, so label
/// keys and `dataset.table` schema keys still give an unambiguous path.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{parent}.{key}")
    } else {
        let quoted = serde_json::Value::String(key.to_owned()).to_string();
        format!("{parent}[{quoted}]")
    }
}

/// Jackson (behind the Java service) coerces `"true"` and `"4"` into booleans and ints, so
/// existing clients may send them as strings. Java-defined fields accept both; our own
/// extension fields are strict.
pub(crate) mod lenient {
    use super::*;

    pub(crate) fn bool_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<bool>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(V)
    }

    pub(crate) fn int_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where the storage URI may be given: the Java field (`…gcsOptions.uri`, gs:// only) and our
/// extension (`…Storage.uri`, any scheme). Exactly one must be present; the URI comes back with
/// the JSON path it was read from (storage errors found later name it).
pub(crate) struct UriFields<'a> {
    pub section: &'a str,
    pub uri: Option<&'a str>,
    pub gcs_uri: Option<&'a str>,
    pub gcs_present: bool,
}

/// The storage URI and the JSON path of the field that held it.
pub(crate) fn resolve_storage_uri(
    fields: UriFields<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<(StorageUri, String)> {
    let section = fields.section;
    let uri_path = format!("{section}.uri");
    let gcs_path = format!("{section}.gcsOptions.uri");
    match (fields.uri, fields.gcs_uri) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                uri_path,
                format!("give either {section}.uri or {section}.gcsOptions.uri, not both"),
            ));
            None
        }
        (Some(text), None) => match StorageUri::parse(text) {
            Ok(uri) => Some((uri, uri_path)),
            Err(err) => {
                errors.push(FieldError::new(uri_path, err.to_string()));
                None
            }
        },
        (None, Some(text)) => match StorageUri::parse(text) {
            Ok(uri) if uri.scheme() == StorageScheme::Gs => Some((uri, gcs_path)),
            Ok(_) | Err(StorageUriError::UnknownScheme) => {
                errors.push(FieldError::new(
                    gcs_path,
                    format!("must start with gs:// (for other stores use {section}.uri)"),
                ));
                None
            }
            Err(err) => {
                errors.push(FieldError::new(gcs_path, err.to_string()));
                None
            }
        },
        (None, None) => {
            let (field, message) = if fields.gcs_present {
                (gcs_path, "is required".to_owned())
            } else {
                (
                    uri_path,
                    format!("is required (or {section}.gcsOptions.uri)"),
                )
            };
            errors.push(FieldError::new(field, message));
            None
        }
    }
}

/// Format and compression names are compared upper-case (`avro` = `AVRO`); a blank value
/// counts as absent, since Java clients often send `""` for unset strings.
pub(crate) fn normalize_name(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_ascii_uppercase)
}

/// The CSV field delimiter as one ASCII byte. Accepts the character itself (`","`, a real tab),
/// the two-character escape `"\t"` and the word `tab`, as BigQuery does. Multi-byte characters
/// are refused because the CSV writer and BigQuery load jobs work on single bytes; quotes and
/// line breaks would make the file unreadable.
pub(crate) fn parse_field_delimiter(value: &str) -> Result<u8, String> {
    let unescaped = match value {
        "\\t" => "\t",
        v if v.eq_ignore_ascii_case("tab") => "\t",
        v => v,
    };
    match unescaped.as_bytes() {
        [b'"' | b'\n' | b'\r'] => Err("must not be a quote or a line break".to_owned()),
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(format!(
            "must be a single ASCII character (or \"\\t\" / \"tab\"), got `{value}`"
        )),
    }
}

/// Maps the Java service's `threadPoolSize` to our table parallelism. Java clients could ask for
/// more than we allow; their request must keep working, so large values are capped (with a
/// warning) rather than rejected. Zero or negative is a mistake in any service.
pub(crate) fn parallelism_from_thread_pool(
    value: i64,
    field: &str,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Option<u32> {
    if value < 1 {
        errors.push(FieldError::new(field, "must be at least 1"));
        return None;
    }
    if value > i64::from(MAX_PARALLEL_TABLES) {
        warnings.push(FieldError::new(
            field,
            format!("capped at {MAX_PARALLEL_TABLES} tables in parallel"),
        ));
        return Some(MAX_PARALLEL_TABLES);
    }
    u32::try_from(value).ok()
}

/// A Google Cloud project id field: required and well-formed.
pub(crate) fn check_project_at(
    field: &str,
    project: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match project {
        None => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(p) if !is_valid_project_id(&p) => {
            errors.push(FieldError::new(
                field,
                format!("`{p}` is not a valid project id: 6–30 lower-case letters, digits and hyphens, starting with a letter"),
            ));
            None
        }
        Some(p) => Some(p),
    }
}

pub(crate) fn invalid_dataset_message(name: &str) -> String {
    format!("`{name}` is not a valid dataset name: 1–1024 letters, digits and underscores")
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keys_are_quoted_in_paths_only_when_needed() {
        assert_eq!(key_path("labels", "env"), "labels.env");
        assert_eq!(key_path("labels", "cost-center_1"), "labels.cost-center_1");
        assert_eq!(
            key_path("schemas", "shop.orders"),
            "schemas[\"shop.orders\"]"
        );
        assert_eq!(
            key_path("labels", "Bad \"Key\""),
            "labels[\"Bad \\\"Key\\\"\"]"
        );
        assert_eq!(key_path("labels", ""), "labels[\"\"]");
    }

    #[test]
    fn field_delimiters_accept_characters_escapes_and_the_word_tab() {
        assert_eq!(parse_field_delimiter(","), Ok(b','));
        assert_eq!(parse_field_delimiter("|"), Ok(b'|'));
        assert_eq!(parse_field_delimiter("\t"), Ok(b'\t'));
        assert_eq!(parse_field_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(parse_field_delimiter("TAB"), Ok(b'\t'));
        for bad in ["", ",,", "é", "\"", "\n", "\\n"] {
            assert!(parse_field_delimiter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_names_are_upper_cased_and_blank_means_absent() {
        assert_eq!(normalize_name(Some(" avro ")).as_deref(), Some("AVRO"));
        assert_eq!(normalize_name(Some("  ")), None);
        assert_eq!(normalize_name(None), None);
    }

    #[test]
    fn trailing_garbage_after_the_body_is_rejected() {
        let err = parse_json::<serde_json::Value>(b"{} x").unwrap_err();
        assert_eq!(err.field, BODY_FIELD);
        let err = parse_json::<serde_json::Value>(b"{").unwrap_err();
        assert_eq!(err.field, BODY_FIELD);
    }
}
