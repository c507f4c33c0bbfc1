//! The root of a backup repository, as the user writes it: `gs://bucket/prefix`,
//! `s3://bucket/prefix`, `az://container/prefix`, `file:///abs/path`, `file://./relative`,
//! `file://relative/path` or `memory://name/prefix`. Parsing only: turning it into an object
//! store is the storage module's job.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a backup repository lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageScheme {
    /// Google Cloud Storage, `gs://bucket/prefix`.
    Gs,
    /// Amazon S3 or an S3-compatible store, `s3://bucket/prefix`.
    S3,
    /// Azure Blob Storage, `az://container/prefix` (the account comes from configuration).
    Az,
    /// A local directory, `file:///abs/path` or `file://relative/path`.
    File,
    /// In-process memory, for tests and demos: `memory://name/prefix` or just `memory://`.
    Memory,
}

impl StorageScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gs => "gs",
            Self::S3 => "s3",
            Self::Az => "az",
            Self::File => "file",
            Self::Memory => "memory",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        // Schemes are case-insensitive in URLs (RFC 3986 §3.1); we print them in lower case.
        Some(match name.to_ascii_lowercase().as_str() {
            "gs" => Self::Gs,
            "s3" => Self::S3,
            "az" => Self::Az,
            "file" => Self::File,
            "memory" => Self::Memory,
            _ => return None,
        })
    }
}

impl fmt::Display for StorageScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a storage URI was rejected. The messages are shown to users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageUriError {
    #[error("must start with gs://, s3://, az://, file:// or memory://")]
    UnknownScheme,
    #[error("bucket name missing")]
    BucketMissing,
    #[error("invalid bucket name `{name}`: {rule}")]
    InvalidBucket { name: String, rule: &'static str },
    #[error("path missing after file:// (use file:///absolute/path or file://./relative/path)")]
    FilePathMissing,
    #[error("the path must not contain empty segments (`//`)")]
    EmptySegment,
    #[error("the path must not contain `.` or `..` segments (nor percent-encoded ones)")]
    DotSegment,
    #[error("must not contain control characters, `?` or `#`")]
    ForbiddenCharacter,
}

/// Whether a `file://` root is absolute or relative to the working directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileRoot {
    Absolute,
    Relative,
}

/// A parsed, checked storage URI.
///
/// Invariants: `bucket` is `Some` for gs/s3/az (and for a named memory store), `None` for file;
/// `prefix` has no leading or trailing `/` and no empty segments. For `file://` the prefix is the
/// path itself (without the leading `/` or `./`), and whether it is absolute is kept separately.
///
/// [`Display`](fmt::Display) prints a canonical form that parses back to an equal value:
/// trailing slashes are dropped, and relative file paths print as `file://./relative`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageUri {
    scheme: StorageScheme,
    bucket: Option<String>,
    prefix: String,
    file_root: FileRoot,
}

impl StorageUri {
    pub fn parse(text: &str) -> Result<Self, StorageUriError> {
        if text.chars().any(|c| c.is_control() || c == '?' || c == '#') {
            return Err(StorageUriError::ForbiddenCharacter);
        }
        let (scheme, rest) = text
            .split_once("://")
            .and_then(|(name, rest)| Some((StorageScheme::from_name(name)?, rest)))
            .ok_or(StorageUriError::UnknownScheme)?;
        match scheme {
            StorageScheme::File => Self::parse_file(rest),
            StorageScheme::Memory => {
                let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
                let prefix = clean_prefix(path)?;
                let bucket = (!name.is_empty()).then(|| name.to_owned());
                if bucket.is_none() && !prefix.is_empty() {
                    return Err(StorageUriError::BucketMissing);
                }
                Ok(Self::bucketed(scheme, bucket, prefix))
            }
            StorageScheme::Gs | StorageScheme::S3 | StorageScheme::Az => {
                let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
                if name.is_empty() {
                    return Err(StorageUriError::BucketMissing);
                }
                check_bucket(scheme, name)?;
                let prefix = clean_prefix(path)?;
                Ok(Self::bucketed(scheme, Some(name.to_owned()), prefix))
            }
        }
    }

    fn bucketed(scheme: StorageScheme, bucket: Option<String>, prefix: String) -> Self {
        Self {
            scheme,
            bucket,
            prefix,
            file_root: FileRoot::Absolute,
        }
    }

    /// `file:///abs` is absolute; `file://./rel`, `file://.` and `file://rel/path` are relative
    /// to the working directory. `file://host/path` is deliberately *not* read as a host name:
    /// nobody backs up to another machine through file://, but many type `file://backups`.
    fn parse_file(rest: &str) -> Result<Self, StorageUriError> {
        let (file_root, path) = if let Some(abs) = rest.strip_prefix('/') {
            (FileRoot::Absolute, abs)
        } else if rest == "." {
            (FileRoot::Relative, "")
        } else if let Some(rel) = rest.strip_prefix("./") {
            (FileRoot::Relative, rel)
        } else if rest.is_empty() {
            return Err(StorageUriError::FilePathMissing);
        } else {
            (FileRoot::Relative, rest)
        };
        // No `..` here either: a storage URI names a place, and a path that can climb out of
        // one directory is how a caller would escape the directories a server allows.
        let prefix = clean_prefix(path)?;
        Ok(Self {
            scheme: StorageScheme::File,
            bucket: None,
            prefix,
            file_root,
        })
    }

    pub fn scheme(&self) -> StorageScheme {
        self.scheme
    }

    /// The bucket (gs, s3), container (az) or store name (memory); `None` for file:// and for an
    /// unnamed `memory://`.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    /// The path inside the bucket (or, for file://, the directory path), without leading or
    /// trailing `/`; empty for a bucket root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this is a file:// URI with an absolute path (`file:///…`), as opposed to one
    /// relative to the working directory.
    pub fn is_absolute_file(&self) -> bool {
        self.scheme == StorageScheme::File && self.file_root == FileRoot::Absolute
    }

    /// For file:// only: the local directory, `/abs/path` or `./relative/path` (`.` for the
    /// working directory itself).
    pub fn file_path(&self) -> Option<String> {
        if self.scheme != StorageScheme::File {
            return None;
        }
        Some(match (self.file_root, self.prefix.is_empty()) {
            (FileRoot::Absolute, _) => format!("/{}", self.prefix),
            (FileRoot::Relative, true) => ".".to_owned(),
            (FileRoot::Relative, false) => format!("./{}", self.prefix),
        })
    }
}

/// Bucket naming rules, checked here so a typo fails at validation rather than as an opaque
/// error from the cloud at run time. GCS allows `_` and dotted names up to 222 characters; S3
/// and Azure are stricter.
fn check_bucket(scheme: StorageScheme, name: &str) -> Result<(), StorageUriError> {
    let invalid = |rule: &'static str| StorageUriError::InvalidBucket {
        name: name.to_owned(),
        rule,
    };
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ends_ok = edge_ok(name.chars().next()) && edge_ok(name.chars().last());
    match scheme {
        StorageScheme::Gs => {
            let max = if name.contains('.') { 222 } else { 63 };
            if !(3..=max).contains(&name.len()) {
                return Err(invalid(
                    "GCS bucket names have 3–63 characters (222 with dots)",
                ));
            }
            let chars_ok = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !chars_ok || !ends_ok {
                return Err(invalid(
                    "use lower-case letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit",
                ));
            }
        }
        StorageScheme::S3 => {
            if !(3..=63).contains(&name.len()) {
                return Err(invalid("S3 bucket names have 3–63 characters"));
            }
            let chars_ok = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !chars_ok || !ends_ok {
                return Err(invalid(
                    "use lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit",
                ));
            }
        }
        StorageScheme::Az => {
            if !(3..=63).contains(&name.len()) {
                return Err(invalid("Azure container names have 3–63 characters"));
            }
            let chars_ok = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !chars_ok || !ends_ok || name.contains("--") {
                return Err(invalid(
                    "use lower-case letters, digits and single `-`, starting and ending with a letter or digit",
                ));
            }
        }
        StorageScheme::File | StorageScheme::Memory => {}
    }
    Ok(())
}

/// Strips leading and trailing slashes and rejects empty, `.` and `..` segments: object stores
/// cannot hold them as keys, and on a local disk they would let a URI climb out of the directory
/// it seems to name. A segment is also read percent-decoded (`%2e%2e`, `..%2f`), so that no
/// later decoding step can turn it into a dot segment.
fn clean_prefix(path: &str) -> Result<String, StorageUriError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() {
            return Err(StorageUriError::EmptySegment);
        }
        if is_dot_segment(segment) {
            return Err(StorageUriError::DotSegment);
        }
    }
    Ok(trimmed.to_owned())
}

/// Whether `segment`, as written or percent-decoded, is or holds a `.`/`..` path step (`..`,
/// `%2E%2e`, `..%2F`, `%2e%2e%5c`: a decoded `/` or `\` splits it into steps).
fn is_dot_segment(segment: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    [segment, decoded.as_ref()].iter().any(|text| {
        text.split(['/', '\\'])
            .any(|step| step == "." || step == "..")
    })
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if self.scheme == StorageScheme::File {
            return match self.file_root {
                FileRoot::Absolute => write!(f, "/{}", self.prefix),
                FileRoot::Relative if self.prefix.is_empty() => f.write_str("."),
                FileRoot::Relative => write!(f, "./{}", self.prefix),
            };
        }
        if let Some(bucket) = &self.bucket {
            f.write_str(bucket)?;
        }
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl FromStr for StorageUri {
    type Err = StorageUriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for StorageUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StorageUri {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (StorageScheme, Option<String>, String) {
        let uri = StorageUri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (
            uri.scheme(),
            uri.bucket().map(str::to_owned),
            uri.prefix().to_owned(),
        )
    }

    #[test]
    fn cloud_uris_split_into_bucket_and_prefix() {
        use StorageScheme::*;
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            parts("gs://backup-bucket/nightly"),
            (Gs, some("backup-bucket"), "nightly".into())
        );
        assert_eq!(
            parts("gs://backup-bucket"),
            (Gs, some("backup-bucket"), String::new())
        );
        assert_eq!(
            parts("gs://backup-bucket/"),
            (Gs, some("backup-bucket"), String::new())
        );
        assert_eq!(
            parts("gs://b_1.example.com/a/b/"),
            (Gs, some("b_1.example.com"), "a/b".into())
        );
        assert_eq!(
            parts("s3://my-bucket/team/x"),
            (S3, some("my-bucket"), "team/x".into())
        );
        assert_eq!(
            parts("az://container/p"),
            (Az, some("container"), "p".into())
        );
        assert_eq!(
            parts("memory://tests/p"),
            (Memory, some("tests"), "p".into())
        );
        assert_eq!(parts("memory://"), (Memory, None, String::new()));
        assert_eq!(parts("GS://bucket/x"), (Gs, some("bucket"), "x".into()));
    }

    #[test]
    fn file_uris_may_be_absolute_or_relative_to_the_working_directory() {
        let abs = StorageUri::parse("file:///var/backups/bq/").unwrap();
        assert_eq!(abs.scheme(), StorageScheme::File);
        assert_eq!(abs.bucket(), None);
        assert_eq!(abs.prefix(), "var/backups/bq");
        assert_eq!(abs.file_path().as_deref(), Some("/var/backups/bq"));

        let dot = StorageUri::parse("file://./demo-backups").unwrap();
        assert_eq!(dot.prefix(), "demo-backups");
        assert_eq!(dot.file_path().as_deref(), Some("./demo-backups"));

        let bare = StorageUri::parse("file://relative/path").unwrap();
        assert_eq!(bare.file_path().as_deref(), Some("./relative/path"));
        assert_eq!(bare.bucket(), None);

        assert_eq!(
            StorageUri::parse("file://.")
                .unwrap()
                .file_path()
                .as_deref(),
            Some(".")
        );
        assert_eq!(StorageUri::parse("gs://bucket").unwrap().file_path(), None);
    }

    #[test]
    fn display_prints_a_canonical_form_that_parses_back() {
        for canonical in [
            "gs://backup-bucket/nightly",
            "gs://backup-bucket",
            "s3://b-1/a/b",
            "az://container",
            "memory://",
            "memory://t/p",
            "file:///abs/path",
            "file:///",
            "file://./demo-backups",
            "file://.",
        ] {
            let uri = StorageUri::parse(canonical).unwrap();
            assert_eq!(uri.to_string(), canonical);
        }
        for (input, canonical) in [
            ("gs://bucket/p/", "gs://bucket/p"),
            ("file://relative/path", "file://./relative/path"),
            ("file://./x/", "file://./x"),
            ("S3://bucket", "s3://bucket"),
        ] {
            let uri = StorageUri::parse(input).unwrap();
            assert_eq!(uri.to_string(), canonical);
            assert_eq!(StorageUri::parse(canonical).unwrap(), uri);
        }
        let json = serde_json::to_string(&StorageUri::parse("gs://bucket/p").unwrap()).unwrap();
        assert_eq!(json, "\"gs://bucket/p\"");
        assert!(serde_json::from_str::<StorageUri>("\"ftp://x\"").is_err());
    }

    #[test]
    fn unknown_schemes_are_rejected_with_the_list_of_supported_ones() {
        for bad in [
            "http://bucket/x",
            "bucket/x",
            "gs:/bucket",
            "",
            "gcs://bucket",
        ] {
            let err = StorageUri::parse(bad).unwrap_err();
            assert_eq!(err, StorageUriError::UnknownScheme, "{bad}");
            assert_eq!(
                err.to_string(),
                "must start with gs://, s3://, az://, file:// or memory://"
            );
        }
    }

    #[test]
    fn a_missing_bucket_is_named_as_such() {
        for bad in ["gs://", "s3:///prefix", "az://", "memory:///prefix"] {
            let err = StorageUri::parse(bad).unwrap_err();
            assert_eq!(err.to_string(), "bucket name missing", "{bad}");
        }
    }

    #[test]
    fn bucket_names_follow_each_clouds_rules() {
        for bad in [
            "gs://Upper",
            "gs://ab",
            "gs://-bucket",
            "s3://under_score",
            "az://a--b",
            "az://dot.ted",
        ] {
            assert!(
                matches!(
                    StorageUri::parse(bad),
                    Err(StorageUriError::InvalidBucket { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn odd_paths_are_rejected() {
        assert_eq!(
            StorageUri::parse("gs://bucket/a//b"),
            Err(StorageUriError::EmptySegment)
        );
        assert_eq!(
            StorageUri::parse("gs://bucket/a/../b"),
            Err(StorageUriError::DotSegment)
        );
        assert_eq!(
            StorageUri::parse("gs://bucket/a/../b")
                .unwrap_err()
                .to_string(),
            "the path must not contain `.` or `..` segments (nor percent-encoded ones)"
        );
        assert_eq!(
            StorageUri::parse("file://"),
            Err(StorageUriError::FilePathMissing)
        );
        assert_eq!(
            StorageUri::parse("gs://bucket/a?x=1"),
            Err(StorageUriError::ForbiddenCharacter)
        );
        assert_eq!(
            StorageUri::parse("gs://bucket/a\nb"),
            Err(StorageUriError::ForbiddenCharacter)
        );
    }

    #[test]
    fn no_uri_can_climb_out_of_the_directory_it_names() {
        for bad in [
            "file:///var/lib/bq-backup/..",
            "file:///var/lib/bq-backup/../../etc",
            "file://../shared/b",
            "file://./a/../../b",
            "file:///tmp/./x",
            "file:///tmp/%2e%2e/etc",
            "file:///tmp/%2E%2e/etc",
            "file:///tmp/.%2E",
            "file:///tmp/%2e",
            "file:///tmp/..%2Fetc",
            "file:///tmp/x%2F..%2F..%2Fetc",
            "file:///tmp/%2e%2e%5cetc",
            "file:///tmp/..\\etc",
            "gs://bucket/%2e%2e/x",
            "s3://bucket/p/..",
            "memory://m/../x",
        ] {
            assert_eq!(
                StorageUri::parse(bad),
                Err(StorageUriError::DotSegment),
                "{bad}"
            );
        }
        for bad in ["file:///tmp//x", "s3://bucket/a//b"] {
            assert_eq!(
                StorageUri::parse(bad),
                Err(StorageUriError::EmptySegment),
                "{bad}"
            );
        }
        // Dots inside a name are fine, and so are `file://.` and `file://./x` (the working
        // directory is the syntax's own, not a path step).
        for ok in [
            "file:///tmp/a..b/.hidden/...",
            "gs://bucket/v1.2/x.",
            "file://.",
            "file://./x",
        ] {
            assert!(StorageUri::parse(ok).is_ok(), "{ok}");
        }
    }
}
