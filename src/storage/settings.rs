//! Storage settings: which storage `serve` may open for its callers, and the emulators and
//! S3-compatible endpoints the backends talk to. Credentials stay with `object_store`, which
//! reads the standard `AWS_*` and `AZURE_STORAGE_*` variables itself.

use crate::domain::StorageAllowList;
use crate::encryption::EncryptionSettings;
use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) const DEFAULT_AZURITE_URL: &str = "http://127.0.0.1:10000";

pub(crate) static GCS_EMULATOR_HOST: Variable = Variable {
    name: "STORAGE_EMULATOR_HOST",
    default: "(none)",
    doc: "When set, gs:// goes to this GCS emulator over HTTP without credentials.",
};
pub(crate) static S3_ENDPOINT: Variable = Variable {
    name: "BQB_S3_ENDPOINT",
    default: "(AWS)",
    doc: "S3-compatible endpoint for s3:// (MinIO, R2, moto); path-style requests when set. Credentials and region come from the standard `AWS_*` variables.",
};
pub(crate) static S3_ALLOW_HTTP: Variable = Variable {
    name: "BQB_S3_ALLOW_HTTP",
    default: "false",
    doc: "Allow a plain-HTTP `BQB_S3_ENDPOINT`.",
};
pub(crate) static AZURE_USE_EMULATOR: Variable = Variable {
    name: "BQB_AZURE_USE_EMULATOR",
    default: "false",
    doc: "az:// goes to Azurite with its well-known development account. Otherwise the standard `AZURE_STORAGE_*` variables apply.",
};
pub(crate) static AZURITE_URL: Variable = Variable {
    name: "AZURITE_BLOB_STORAGE_URL",
    default: DEFAULT_AZURITE_URL,
    doc: "Azurite blob endpoint used when `BQB_AZURE_USE_EMULATOR=true`.",
};
pub(crate) static ALLOWED_STORAGE: Variable = Variable {
    name: "BQB_ALLOWED_STORAGE",
    default: "(gs, s3, az: any bucket)",
    doc: "The storage `serve` may read and write for its callers, as comma-separated URI prefixes matched on whole path segments with the bucket exact: `gs://my-bucket/backups,s3://*,file:///var/lib/bq-backup`. `SCHEME://*` = every bucket of a scheme; `memory://` = in-memory stores (tests). Unset: every gs://, s3:// and az:// bucket (IAM decides), no `file://` and no `memory://`. A `file://` entry must be an absolute directory. `BQB_STATE_URI` needs no entry. The CLI is confined only when this is set. See \"Storage confinement\".",
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageSettings {
    /// `BQB_ALLOWED_STORAGE` as given; `None` when unset (each command applies its own default).
    pub allowed: Option<StorageAllowList>,
    pub gcs_emulator_host: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_allow_http: bool,
    pub azure_use_emulator: bool,
    pub azurite_url: String,
    /// How the files of a backup are encrypted and decrypted (`src/encryption/settings.rs`):
    /// every store opened with these settings carries them.
    pub encryption: EncryptionSettings,
}

impl StorageSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let allowed = read.text(&ALLOWED_STORAGE).and_then(|text| {
            StorageAllowList::parse(text)
                .map_err(|errors| {
                    for e in errors {
                        read.problem(&ALLOWED_STORAGE, e);
                    }
                })
                .ok()
        });
        // The emulator convention (as Google's client libraries read it) is a bare host:port.
        let gcs_emulator_host = read.text(&GCS_EMULATOR_HOST).map(|h| {
            let h = h.trim().trim_end_matches('/');
            if h.contains("://") {
                h.to_string()
            } else {
                format!("http://{h}")
            }
        });
        let s3_endpoint = read
            .text(&S3_ENDPOINT)
            .map(|_| read.endpoint(&S3_ENDPOINT, ""));
        let encryption = EncryptionSettings::from_source(source);
        let settings = Self {
            allowed,
            gcs_emulator_host,
            s3_endpoint,
            s3_allow_http: read.flag(&S3_ALLOW_HTTP),
            azure_use_emulator: read.flag(&AZURE_USE_EMULATOR),
            azurite_url: read.endpoint(&AZURITE_URL, DEFAULT_AZURITE_URL),
            encryption: EncryptionSettings::default(),
        };
        match (read.finish(settings), encryption) {
            (Ok(settings), Ok(encryption)) => Ok(Self {
                encryption,
                ..settings
            }),
            (Err(mut problems), Err(more)) => {
                problems.extend(more);
                Err(problems)
            }
            (Err(problems), Ok(_)) | (Ok(_), Err(problems)) => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::read_pairs;

    fn read(pairs: &[(&str, &str)]) -> Result<StorageSettings, String> {
        read_pairs(pairs, StorageSettings::from_source)
    }

    #[test]
    fn allowed_storage_is_parsed_and_each_bad_entry_named() {
        assert_eq!(
            read_pairs(&[], StorageSettings::from_source)
                .unwrap()
                .allowed,
            None
        );
        let s = read(&[(
            "BQB_ALLOWED_STORAGE",
            "gs://bkt/backups, file:///var/lib/bq-backup",
        )])
        .unwrap();
        assert_eq!(
            s.allowed.map(|a| a.to_string()).as_deref(),
            Some("gs://bkt/backups,file:///var/lib/bq-backup")
        );
        let err = read(&[("BQB_ALLOWED_STORAGE", "file://relative,gs://bkt/../x")]).unwrap_err();
        let text = err;
        assert!(
            text.contains("BQB_ALLOWED_STORAGE: `file://relative`: a file:// entry must be an absolute directory"),
            "{text}"
        );
        assert!(
            text.contains("BQB_ALLOWED_STORAGE: `gs://bkt/../x`"),
            "{text}"
        );
    }

    #[test]
    fn storage_emulator_host_without_scheme_means_http() {
        let s = read(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")]).unwrap();
        assert_eq!(
            s.gcs_emulator_host.as_deref(),
            Some("http://127.0.0.1:4443")
        );
    }
}
