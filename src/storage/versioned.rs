//! Typed JSON files in a store — manifests, claims and leases in a backup repository; job
//! records, markers and claims in the state store — each a serde struct with a version, read
//! strictly: a value this build does not know (an unknown status, format or compression) is an
//! error naming its field, never a silent default, and a file of a newer version is refused
//! rather than misread.
//!
//! Versions are major versions: a change an older reader would misread bumps it; adding an
//! optional field does not (readers ignore fields they do not know, so older instances keep
//! reading what newer ones write, as during a rolling upgrade).
//!
//! Depends on nothing else in the crate but `error`.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;

/// A file kept as JSON in a store.
pub trait VersionedFile: Serialize + DeserializeOwned {
    /// What the file is, for messages: `manifest`, `backup claim`.
    const WHAT: &'static str;
    /// The version this build writes, and the newest it reads.
    const VERSION: u32;
    /// The field that holds the version.
    const VERSION_FIELD: &'static str = "version";
    /// Whether a file must name its version. Files that got the field later leave it out when
    /// written before it existed: those are version 1.
    const VERSION_REQUIRED: bool = false;
}

/// The version of files written before their version field existed (serde's default for it).
pub fn version_1() -> u32 {
    1
}

/// Why a file could not be read as its type. The messages read after the file's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("is not valid JSON: {0}")]
    NotJson(String),
    #[error("is not a JSON object")]
    NotAnObject,
    #[error("has no `{0}`")]
    NoVersion(&'static str),
    #[error("has `{field}` {found}, which is not a version (1 or more)")]
    BadVersion { field: &'static str, found: String },
    #[error(
        "is {what} version {found}, written by a newer bq-backup; this one reads up to version {known}: upgrade it"
    )]
    Newer {
        what: &'static str,
        found: u64,
        known: u32,
    },
    /// `path` names the field (`status`, `format.compression`, `tables[0].kind`), empty for the
    /// file as a whole (a missing field is reported at the object that lacks it).
    #[error("does not match {what} version {version}{}: {message}", at(.path))]
    Field {
        what: &'static str,
        version: u64,
        path: String,
        message: String,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at `{path}`")
    }
}

impl FileError {
    /// The file was written by a newer version of this service.
    pub fn is_newer(&self) -> bool {
        matches!(self, Self::Newer { .. })
    }

    /// The error for a file of the state store at `key`: a newer file is a rolling upgrade in
    /// progress (this instance is the old one: another instance can answer), any other problem a
    /// file this service did not write as it reads it.
    pub fn into_state_error(self, key: &impl std::fmt::Display) -> Error {
        if self.is_newer() {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("the state store object {key} {self}"),
            )
        } else {
            Error::internal(format!("the state store object {key} {self}"))
        }
    }
}

/// Reads a `T`, checking its version first.
pub fn decode<T: VersionedFile>(bytes: &[u8]) -> Result<T, FileError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| FileError::NotJson(e.to_string()))?;
    let version = version_of::<T>(&value)?;
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        FileError::Field {
            what: T::WHAT,
            version,
            // serde_path_to_error writes the root as `.`.
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

fn version_of<T: VersionedFile>(value: &Value) -> Result<u64, FileError> {
    let object = value.as_object().ok_or(FileError::NotAnObject)?;
    let version = match object.get(T::VERSION_FIELD) {
        None if T::VERSION_REQUIRED => return Err(FileError::NoVersion(T::VERSION_FIELD)),
        None => 1,
        Some(found) => found
            .as_u64()
            .filter(|v| *v >= 1)
            .ok_or_else(|| FileError::BadVersion {
                field: T::VERSION_FIELD,
                found: found.to_string(),
            })?,
    };
    if version > u64::from(T::VERSION) {
        return Err(FileError::Newer {
            what: T::WHAT,
            found: version,
            known: T::VERSION,
        });
    }
    Ok(version)
}

/// `file` as compact JSON.
pub fn encode<T: VersionedFile>(file: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(file)
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("writing a {}: {e}", T::WHAT)))
}

/// `file` as indented JSON, for the files people read (manifests, job records).
pub fn encode_pretty<T: VersionedFile>(file: &T) -> Result<Bytes, Error> {
    serde_json::to_vec_pretty(file)
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("writing a {}: {e}", T::WHAT)))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Colour {
        Red,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Note {
        #[serde(default = "version_1")]
        version: u32,
        colour: Colour,
        #[serde(default)]
        inner: Vec<Inner>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        colour: Colour,
    }

    impl VersionedFile for Note {
        const WHAT: &'static str = "note";
        const VERSION: u32 = 2;
    }

    #[test]
    fn a_file_without_a_version_is_version_1_and_unknown_fields_are_ignored() {
        let note: Note = decode(br#"{"colour":"RED","addedLater":true}"#).unwrap();
        assert_eq!(note.version, 1);
        let again: Note = decode(&encode(&note).unwrap()).unwrap();
        assert_eq!(again, note);
    }

    #[test]
    fn a_newer_version_is_refused_not_misread() {
        let err = decode::<Note>(br#"{"version":3,"colour":"BLUE"}"#).unwrap_err();
        assert!(err.is_newer());
        assert_eq!(
            err.to_string(),
            "is note version 3, written by a newer bq-backup; this one reads up to version 2: upgrade it"
        );
        for bad in [
            r#"{"version":0}"#,
            r#"{"version":"2"}"#,
            r#"{"version":-1}"#,
        ] {
            let err = decode::<Note>(bad.as_bytes()).unwrap_err();
            assert!(matches!(err, FileError::BadVersion { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn an_unknown_value_is_an_error_naming_its_field() {
        let err = decode::<Note>(br#"{"colour":"BLUE"}"#).unwrap_err();
        let message = err.to_string();
        assert!(
            message
                .starts_with("does not match note version 1 at `colour`: unknown variant `BLUE`"),
            "{message}"
        );
        let err =
            decode::<Note>(br#"{"colour":"RED","inner":[{"colour":"RED"},{"colour":"red"}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("at `inner[1].colour`"), "{err}");
        let err = decode::<Note>(br#"{"version":2}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "does not match note version 2: missing field `colour`"
        );
    }

    #[test]
    fn what_is_not_a_json_object_says_so() {
        assert!(matches!(
            decode::<Note>(b"{\"colour\":"),
            Err(FileError::NotJson(_))
        ));
        assert_eq!(decode::<Note>(b"[1]"), Err(FileError::NotAnObject));
    }

    #[test]
    fn a_required_version_must_be_there() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Strict {}
        impl VersionedFile for Strict {
            const WHAT: &'static str = "strict";
            const VERSION: u32 = 1;
            const VERSION_FIELD: &'static str = "strictVersion";
            const VERSION_REQUIRED: bool = true;
        }
        assert_eq!(
            decode::<Strict>(b"{}").unwrap_err(),
            FileError::NoVersion("strictVersion")
        );
        assert!(decode::<Strict>(br#"{"strictVersion":1}"#).is_ok());
    }
}
