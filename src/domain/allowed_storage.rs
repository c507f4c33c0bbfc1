//! `BQB_ALLOWED_STORAGE`: the storage a server may open for its callers, as a list of URI
//! prefixes (`gs://my-bucket/backups,s3://*,file:///var/lib/bq-backup,memory://`). Parsing and
//! matching only; the storage module adds the checks that need the disk (symlinks).
//!
//! A prefix matches whole path segments (`gs://b/backups` admits `gs://b/backups/x`, not
//! `gs://b/backups2`) and its bucket exactly; `SCHEME://*` admits every bucket of a scheme, and
//! `memory://` every in-memory store. `file://` entries must be absolute directories, and a
//! relative `file://` URI is never admitted by a list: what it names depends on the server's
//! working directory.

use std::fmt;

use super::storage_uri::{StorageScheme, StorageUri};

/// Why a URI is refused; shown to the caller as it is, under the field that held the URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageRefusal {
    #[error(
        "`{uri}` is refused: {scheme}:// storage is not allowed on this server (BQB_ALLOWED_STORAGE lists none)"
    )]
    SchemeNotAllowed { uri: String, scheme: StorageScheme },
    #[error("`{uri}` is refused: it is not under any prefix BQB_ALLOWED_STORAGE allows")]
    NotListed { uri: String },
    #[error(
        "`{uri}` is refused: a relative file:// path cannot be checked against BQB_ALLOWED_STORAGE; use file:///absolute/path"
    )]
    RelativeFile { uri: String },
}

/// Which buckets an entry admits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BucketMatch {
    Any,
    /// The bucket (gs, s3), container (az) or memory store name; `None` only for file://.
    Exactly(Option<String>),
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedPrefix {
    scheme: StorageScheme,
    bucket: BucketMatch,
    /// Path segments under the bucket (for file://, of the absolute directory).
    segments: Vec<String>,
}

impl AllowedPrefix {
    fn admits(&self, uri: &StorageUri) -> bool {
        let bucket_ok = match &self.bucket {
            BucketMatch::Any => true,
            BucketMatch::Exactly(bucket) => bucket.as_deref() == uri.bucket(),
        };
        self.scheme == uri.scheme()
            && bucket_ok
            && segments(uri.prefix()).starts_with(&self.segments)
    }
}

impl fmt::Display for AllowedPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match (&self.bucket, self.scheme) {
            (BucketMatch::Any, StorageScheme::Memory) => return Ok(()),
            (BucketMatch::Any, _) => return f.write_str("*"),
            (BucketMatch::Exactly(bucket), _) => f.write_str(bucket.as_deref().unwrap_or(""))?,
        }
        if self.scheme == StorageScheme::File || !self.segments.is_empty() {
            write!(f, "/{}", self.segments.join("/"))?;
        }
        Ok(())
    }
}

fn segments(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The parsed `BQB_ALLOWED_STORAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAllowList {
    entries: Vec<AllowedPrefix>,
}

impl StorageAllowList {
    /// What `serve` allows when `BQB_ALLOWED_STORAGE` is unset: every gs://, s3:// and az://
    /// bucket (who may write where is the cloud's IAM's business there), but no local directory
    /// and no in-process memory, which only the operator can vouch for.
    pub fn service_default() -> Self {
        Self {
            entries: [StorageScheme::Gs, StorageScheme::S3, StorageScheme::Az]
                .into_iter()
                .map(|scheme| AllowedPrefix {
                    scheme,
                    bucket: BucketMatch::Any,
                    segments: Vec::new(),
                })
                .collect(),
        }
    }

    /// Parses a comma-separated list; every bad entry is reported, each naming itself.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match parse_entry(item) {
                Ok(entry) => entries.push(entry),
                Err(why) => problems.push(format!("`{item}`: {why}")),
            }
        }
        if problems.is_empty() && entries.is_empty() {
            problems.push("lists no storage prefix".to_owned());
        }
        if problems.is_empty() {
            Ok(Self { entries })
        } else {
            Err(problems)
        }
    }

    /// Whether `uri` may be opened.
    pub fn admits(&self, uri: &StorageUri) -> Result<(), StorageRefusal> {
        let text = uri.to_string();
        if uri.scheme() == StorageScheme::File && !uri.is_absolute_file() {
            return Err(StorageRefusal::RelativeFile { uri: text });
        }
        if self.entries.iter().any(|e| e.admits(uri)) {
            return Ok(());
        }
        if self.entries.iter().all(|e| e.scheme != uri.scheme()) {
            return Err(StorageRefusal::SchemeNotAllowed {
                uri: text,
                scheme: uri.scheme(),
            });
        }
        Err(StorageRefusal::NotListed { uri: text })
    }

    /// The local directories listed (`/var/lib/bq-backup`), for the checks on disk.
    pub fn file_dirs(&self) -> impl Iterator<Item = String> + '_ {
        self.entries
            .iter()
            .filter(|e| e.scheme == StorageScheme::File)
            .map(|e| format!("/{}", e.segments.join("/")))
    }
}

impl fmt::Display for StorageAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{entry}")?;
        }
        Ok(())
    }
}

fn parse_entry(item: &str) -> Result<AllowedPrefix, String> {
    let any_bucket = |scheme| AllowedPrefix {
        scheme,
        bucket: BucketMatch::Any,
        segments: Vec::new(),
    };
    if let Some((name, rest)) = item.split_once("://")
        && (rest == "*" || (rest.is_empty() && name.eq_ignore_ascii_case("memory")))
    {
        return match StorageUri::parse(&format!("{name}://any")).map(|u| u.scheme()) {
            Ok(StorageScheme::File) => Err("file:// takes a directory, not `*`".into()),
            Ok(scheme) => Ok(any_bucket(scheme)),
            Err(e) => Err(e.to_string()),
        };
    }
    if item.contains('*') {
        return Err("`*` stands for every bucket and only alone: write `gs://*`".into());
    }
    let uri = StorageUri::parse(item).map_err(|e| e.to_string())?;
    if uri.scheme() == StorageScheme::File && !uri.is_absolute_file() {
        return Err("a file:// entry must be an absolute directory (file:///path)".into());
    }
    Ok(AllowedPrefix {
        scheme: uri.scheme(),
        bucket: BucketMatch::Exactly(uri.bucket().map(str::to_owned)),
        segments: segments(uri.prefix()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> StorageAllowList {
        StorageAllowList::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn admitted(list: &StorageAllowList, uri: &str) -> bool {
        list.admits(&StorageUri::parse(uri).unwrap()).is_ok()
    }

    #[test]
    fn a_prefix_admits_whole_segments_under_it_in_the_same_bucket() {
        let l = list("gs://bkt/backups, s3://other");
        for ok in [
            "gs://bkt/backups",
            "gs://bkt/backups/",
            "gs://bkt/backups/x/y",
            "s3://other",
            "s3://other/any/path",
        ] {
            assert!(admitted(&l, ok), "{ok}");
        }
        for bad in [
            "gs://bkt/backups2",
            "gs://bkt/back",
            "gs://bkt",
            "gs://bkt0/backups",
            "gs://bkt2/backups",
            "s3://other2",
            "s3://bkt/backups",
            "az://bkt/backups",
            "file:///backups",
            "memory://bkt/backups",
        ] {
            assert!(!admitted(&l, bad), "{bad}");
        }
    }

    #[test]
    fn file_entries_are_absolute_directories_and_relative_uris_never_match() {
        let l = list("file:///var/lib/bq-backup");
        assert!(admitted(&l, "file:///var/lib/bq-backup"));
        assert!(admitted(&l, "file:///var/lib/bq-backup/prod"));
        assert!(!admitted(&l, "file:///var/lib/bq-backup-other"));
        assert!(!admitted(&l, "file:///var/lib"));
        assert!(!admitted(&l, "file:///etc"));
        assert!(matches!(
            l.admits(&StorageUri::parse("file://./var/lib/bq-backup").unwrap()),
            Err(StorageRefusal::RelativeFile { .. })
        ));
        assert_eq!(l.file_dirs().collect::<Vec<_>>(), ["/var/lib/bq-backup"]);
        assert!(admitted(&list("file:///"), "file:///anything/at/all"));
        let err = StorageAllowList::parse("file://relative/dir").unwrap_err();
        assert!(err[0].contains("absolute directory"), "{err:?}");
    }

    #[test]
    fn a_star_admits_every_bucket_of_a_scheme_and_memory_is_refused_unless_listed() {
        let l = list("gs://*,memory://");
        assert!(admitted(&l, "gs://any-bucket/x"));
        assert!(admitted(&l, "memory://"));
        assert!(admitted(&l, "memory://tests/p"));
        assert!(!admitted(&l, "s3://any-bucket"));

        let named = list("memory://tests");
        assert!(admitted(&named, "memory://tests/p"));
        assert!(!admitted(&named, "memory://other"));
        assert!(!admitted(&named, "memory://"));

        let default = StorageAllowList::service_default();
        for ok in ["gs://bkt/p", "s3://bkt", "az://container/x"] {
            assert!(admitted(&default, ok), "{ok}");
        }
        let refused = default.admits(&StorageUri::parse("memory://m").unwrap());
        assert_eq!(
            refused.unwrap_err().to_string(),
            "`memory://m` is refused: memory:// storage is not allowed on this server (BQB_ALLOWED_STORAGE lists none)"
        );
        assert!(!admitted(&default, "file:///tmp/x"));
        assert_eq!(default.to_string(), "gs://*,s3://*,az://*");
    }

    #[test]
    fn bad_entries_are_each_named() {
        let err = StorageAllowList::parse("gs://bkt/*, ftp://x, gs://bkt/a/../c, file://*, ok")
            .unwrap_err();
        assert_eq!(err.len(), 5, "{err:?}");
        assert!(err[0].starts_with("`gs://bkt/*`"), "{err:?}");
        assert!(err[1].starts_with("`ftp://x`: must start with"), "{err:?}");
        assert!(err[2].contains("`..`"), "{err:?}");
        assert!(err[3].contains("directory"), "{err:?}");
        assert!(StorageAllowList::parse(" , ").is_err());
    }

    #[test]
    fn the_list_prints_as_it_can_be_written() {
        let text =
            "gs://bkt/backups,s3://*,file:///var/lib/bq-backup,memory://,memory://t/p,file:///";
        assert_eq!(list(text).to_string(), text);
    }
}
