//! Encryption settings: the recipients backups are encrypted to when a request names none, and
//! where the identities that decrypt them are (a file, or a Secret Manager secret version).
//! Identities are read when a restore, verify or re-encrypting copy needs them, never at start,
//! so a rotated secret or a remounted file is picked up without a restart.

use std::sync::Arc;

use super::{IdentitySource, Recipients};
use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) const DEFAULT_SECRET_MANAGER_ENDPOINT: &str = "https://secretmanager.googleapis.com";

pub(crate) static RECIPIENTS: Variable = Variable {
    name: "BQB_ENCRYPTION_RECIPIENTS",
    default: "(none: files in clear)",
    doc: "Comma-separated age recipients (`age1…`) or SSH public keys (`ssh-ed25519 …`, `ssh-rsa …`) every backup is encrypted to when its request has no `encryption` block. Public keys only: nothing secret.",
};
pub(crate) static IDENTITIES: Variable = Variable {
    name: "BQB_ENCRYPTION_IDENTITIES",
    default: "(none)",
    doc: "Where the identities that decrypt encrypted backups are (restore, verify, a re-encrypting copy): an absolute path to an age identity file (`AGE-SECRET-KEY-1…` lines, or an unencrypted OpenSSH private key), or a Secret Manager secret version `projects/P/secrets/S/versions/V` holding the same text. Read when needed, never logged.",
};
pub(crate) static SECRET_MANAGER_ENDPOINT: Variable = Variable {
    name: "BQB_SECRET_MANAGER_ENDPOINT",
    default: DEFAULT_SECRET_MANAGER_ENDPOINT,
    doc: "Secret Manager endpoint for `BQB_ENCRYPTION_IDENTITIES` (Application Default Credentials; none over plain `http://`, for tests).",
};

#[derive(Debug, Clone, Default)]
pub struct EncryptionSettings {
    /// `BQB_ENCRYPTION_RECIPIENTS`: the default for requests without an `encryption` block.
    pub default_recipients: Option<Arc<Recipients>>,
    /// `BQB_ENCRYPTION_IDENTITIES`.
    pub identities: Option<IdentitySource>,
    pub secret_manager_endpoint: String,
}

impl PartialEq for EncryptionSettings {
    fn eq(&self, other: &Self) -> bool {
        self.default_recipients.as_ref().map(|r| r.keys())
            == other.default_recipients.as_ref().map(|r| r.keys())
            && self.identities == other.identities
            && self.secret_manager_endpoint == other.secret_manager_endpoint
    }
}

impl Eq for EncryptionSettings {}

impl EncryptionSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let list = read.list(&RECIPIENTS, "");
        let default_recipients = if list.is_empty() {
            None
        } else {
            match Recipients::parse_at(RECIPIENTS.name, &list) {
                Ok(r) => Some(Arc::new(r)),
                Err(errors) => {
                    for e in errors {
                        read.problem(&RECIPIENTS, e.message);
                    }
                    None
                }
            }
        };
        let identities = read
            .text(&IDENTITIES)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .and_then(|text| match IdentitySource::parse(text) {
                Ok(source) => Some(source),
                Err(message) => {
                    read.problem(&IDENTITIES, message);
                    None
                }
            });
        let secret_manager_endpoint =
            read.endpoint(&SECRET_MANAGER_ENDPOINT, DEFAULT_SECRET_MANAGER_ENDPOINT);
        read.finish(Self {
            default_recipients,
            identities,
            secret_manager_endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::read_pairs;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn recipients_and_identities_are_read_and_bad_ones_named() {
        let s = read_pairs(
            &[
                ("BQB_ENCRYPTION_RECIPIENTS", RECIPIENT),
                (
                    "BQB_ENCRYPTION_IDENTITIES",
                    "projects/p/secrets/s/versions/3",
                ),
            ],
            EncryptionSettings::from_source,
        )
        .unwrap();
        assert_eq!(s.default_recipients.unwrap().keys(), [RECIPIENT]);
        assert!(matches!(
            s.identities,
            Some(IdentitySource::SecretVersion(ref n)) if n == "projects/p/secrets/s/versions/3"
        ));
        let err = read_pairs(
            &[
                ("BQB_ENCRYPTION_RECIPIENTS", "age1nope"),
                ("BQB_ENCRYPTION_IDENTITIES", "relative/key.txt"),
            ],
            EncryptionSettings::from_source,
        )
        .unwrap_err();
        assert!(err.contains("BQB_ENCRYPTION_RECIPIENTS"), "{err}");
        assert!(err.contains("BQB_ENCRYPTION_IDENTITIES"), "{err}");
    }
}
