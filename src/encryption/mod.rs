//! Client-side encryption of backup files with [age](https://age-encryption.org): every data
//! file is encrypted as it streams (age's STREAM construction, 64 KiB chunks, each
//! authenticated) to one or more recipients — X25519 (`age1…`) or SSH public keys — and
//! decrypted with identities the service reads from a file or a Secret Manager secret version.
//! The files stay standard: `age -d -i key.txt part-00000.parquet.age | any Parquet reader`.
//!
//! What the bucket holder can learn: the manifest (kept in clear: schema, table names, row
//! counts, sizes, checksums, the recipients' public keys), the files' sizes and times. What they
//! cannot: any row, nor change one without the change being found (every chunk carries a MAC,
//! and the manifest records the SHA-256 of the ciphertext and of the plaintext).
//!
//! Pure crypto and key handling; the clients layer because identities may come from Secret
//! Manager over the network ([`secret`]).

mod recrypt;
mod secret;
pub mod settings;

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use age::stream::StreamReader;
use bytes::Bytes;

pub use recrypt::Recrypt;
pub use settings::EncryptionSettings;

use crate::error::{Error, ErrorKind, FieldError};

/// The scheme recorded in a manifest's `encryption` block.
pub const SCHEME_AGE: &str = "AGE";

/// The suffix of every file encrypted by a backup or a copy (`data.parquet.age`).
pub const AGE_SUFFIX: &str = ".age";

/// One recipient as given, parsed.
enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

/// The public keys a backup is encrypted to, as given (each once, in order) and parsed.
pub struct Recipients {
    keys: Vec<String>,
    parsed: Vec<Recipient>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

impl Recipients {
    /// Parses `list` (request field or setting `field`): every bad entry is named by its index.
    pub fn parse_at(field: &str, list: &[String]) -> Result<Self, Vec<FieldError>> {
        if list.is_empty() {
            return Err(vec![FieldError::new(
                field,
                "must name at least one recipient (an age1… public key or an SSH public key)",
            )]);
        }
        let mut errors = Vec::new();
        let mut keys = Vec::new();
        let mut parsed = Vec::new();
        for (i, given) in list.iter().enumerate() {
            let key = given.trim();
            match parse_recipient(key) {
                Ok(recipient) => {
                    if !keys.iter().any(|k| k == key) {
                        keys.push(key.to_string());
                        parsed.push(recipient);
                    }
                }
                Err(message) => errors.push(FieldError::new(format!("{field}[{i}]"), message)),
            }
        }
        if errors.is_empty() {
            Ok(Self { keys, parsed })
        } else {
            Err(errors)
        }
    }

    /// The public keys as given (for the manifest).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.parsed.iter().map(|r| match r {
            Recipient::X25519(r) => r as &dyn age::Recipient,
            Recipient::Ssh(r) => r as &dyn age::Recipient,
        })
    }
}

fn parse_recipient(key: &str) -> Result<Recipient, String> {
    if key.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err(
            "is a secret key: give its public key instead (`age-keygen -y key.txt` prints it)"
                .into(),
        );
    }
    if key.starts_with("age1") {
        return key
            .parse::<age::x25519::Recipient>()
            .map(Recipient::X25519)
            .map_err(|e| format!("is not a valid age recipient: {e}"));
    }
    if key.starts_with("ssh-") {
        return key
            .parse::<age::ssh::Recipient>()
            .map(Recipient::Ssh)
            .map_err(|e| format!("is not a supported SSH public key: {e:?}"));
    }
    Err(
        "must be an age recipient (`age1…`) or an SSH public key (`ssh-ed25519 …`, `ssh-rsa …`)"
            .into(),
    )
}

/// Where the identities are (`BQB_ENCRYPTION_IDENTITIES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    File(std::path::PathBuf),
    /// `projects/P/secrets/S/versions/V`.
    SecretVersion(String),
}

impl IdentitySource {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("projects/") {
            let parts: Vec<&str> = text.split('/').collect();
            let ok = parts.len() == 6
                && parts[2] == "secrets"
                && parts[4] == "versions"
                && parts.iter().all(|p| !p.is_empty());
            return if ok {
                Ok(Self::SecretVersion(text.to_string()))
            } else {
                Err(format!(
                    "`{text}` is not a secret version: write projects/PROJECT/secrets/SECRET/versions/VERSION (or `latest`)"
                ))
            };
        }
        let path = std::path::PathBuf::from(text);
        if path.is_absolute() {
            Ok(Self::File(path))
        } else {
            Err(format!(
                "`{text}` must be an absolute path to an identity file or projects/P/secrets/S/versions/V"
            ))
        }
    }

    /// Reads and parses the identities (the file, or the secret over the network).
    pub async fn load(&self, settings: &EncryptionSettings) -> Result<Identities, Error> {
        let (text, name) = match self {
            Self::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the identity file {} (BQB_ENCRYPTION_IDENTITIES) cannot be read: {e}",
                            path.display()
                        ),
                    )
                })?;
                (text, path.display().to_string())
            }
            Self::SecretVersion(name) => (
                secret::access(&settings.secret_manager_endpoint, name).await?,
                name.clone(),
            ),
        };
        Identities::parse(&text).map_err(|message| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the identities in {name} (BQB_ENCRYPTION_IDENTITIES) {message}"),
            )
        })
    }
}

/// Secret keys that decrypt files: age X25519 identities and unencrypted SSH private keys.
pub struct Identities {
    list: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys, ***)", self.list.len())
    }
}

impl Identities {
    /// Parses an age identity file (`AGE-SECRET-KEY-1…` lines, `#` comments) or one OpenSSH
    /// private key. `Err` says what is wrong, without any of the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains("-----BEGIN") {
            let identity = age::ssh::Identity::from_buffer(text.as_bytes(), None)
                .map_err(|e| format!("are not a readable SSH private key: {e}"))?;
            return match identity {
                age::ssh::Identity::Unencrypted(_) => Ok(Self {
                    list: vec![Box::new(identity)],
                }),
                age::ssh::Identity::Encrypted(_) => Err(
                    "are an SSH key protected by a passphrase, which a service cannot type: give an unencrypted key".into(),
                ),
                age::ssh::Identity::Unsupported(_) => {
                    Err("are an SSH key of a kind age does not support".into())
                }
            };
        }
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|e| format!("cannot be parsed: {e}"))?;
        let list = file
            .into_identities()
            .map_err(|e| format!("cannot be used: {e}"))?;
        if list.is_empty() {
            return Err("hold no identity (no AGE-SECRET-KEY-1… line)".into());
        }
        Ok(Self { list })
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.list.iter().map(|i| i.as_ref() as &dyn age::Identity)
    }
}

/// Why an age file could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// None of the identities is one of the file's recipients.
    NoMatchingKey,
    /// Not an age file, or a damaged header.
    Damaged(String),
    /// Reading the input failed.
    Io(std::io::Error),
}

impl OpenError {
    fn from_age(e: age::DecryptError) -> Self {
        match e {
            age::DecryptError::NoMatchingKeys => Self::NoMatchingKey,
            age::DecryptError::Io(io) => Self::Io(io),
            other => Self::Damaged(format!("is not a readable age file: {other}")),
        }
    }
}

/// Opens the age file `input` with `identities`: the plaintext as a reader. Every chunk is
/// authenticated as it is read, and a file cut short fails at its end; read to the end before
/// trusting what was read.
pub fn open<R: BufRead>(input: R, identities: &Identities) -> Result<StreamReader<R>, OpenError> {
    age::Decryptor::new_buffered(input)
        .map_err(OpenError::from_age)?
        .decrypt(identities.as_dyn())
        .map_err(OpenError::from_age)
}

/// Whether `identities` open the age file whose first bytes are `head` (the header is a few
/// hundred bytes per recipient): a check made before any data moves.
pub fn check_head(head: &[u8], identities: &Identities) -> Result<(), OpenError> {
    open(head, identities).map(drop)
}

/// Opens an age file for reading with seeks (PARQUET's footer first, then its row groups).
pub fn open_seekable<R: std::io::Read + std::io::Seek>(
    input: R,
    identities: &Identities,
) -> Result<StreamReader<R>, OpenError> {
    age::Decryptor::new(input)
        .map_err(OpenError::from_age)?
        .decrypt(identities.as_dyn())
        .map_err(OpenError::from_age)
}

/// Where the encryptor's output collects between two calls.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn take(&self) -> Bytes {
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Bytes::from(std::mem::take(&mut *held))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encrypts one file as its plaintext arrives: plaintext in, ciphertext out, at most one
/// 64 KiB chunk held between calls.
pub struct Encryptor {
    writer: age::stream::StreamWriter<Sink>,
    sink: Sink,
}

impl Encryptor {
    pub fn new(recipients: &Recipients) -> Result<Self, Error> {
        let sink = Sink::default();
        let failed = |e: &dyn std::fmt::Display| Error::internal(format!("age encryption: {e}"));
        let writer = age::Encryptor::with_recipients(recipients.as_dyn())
            .map_err(|e| failed(&e))?
            .wrap_output(sink.clone())
            .map_err(|e| failed(&e))?;
        Ok(Self { writer, sink })
    }

    /// The ciphertext that `plain` completed (possibly empty).
    pub fn write(&mut self, plain: &[u8]) -> Result<Bytes, Error> {
        self.writer
            .write_all(plain)
            .map_err(|e| Error::internal(format!("age encryption: {e}")))?;
        Ok(self.sink.take())
    }

    /// The rest of the ciphertext: the last (authenticated-as-last) chunk.
    pub fn finish(self) -> Result<Bytes, Error> {
        self.writer
            .finish()
            .map_err(|e| Error::internal(format!("age encryption: {e}")))?;
        Ok(self.sink.take())
    }
}

/// The error for a backup that the service's identities cannot open (403).
pub fn no_key_error(backup: &str, recipients: &[String]) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "backup {backup} is encrypted to {} and none of the identities in BQB_ENCRYPTION_IDENTITIES opens it",
            recipients.join(", ")
        ),
    )
}

/// The error for an encrypted backup when no identities are configured (403).
pub fn no_identities_error(backup: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "backup {backup} is encrypted and this service has no identities to decrypt it: set BQB_ENCRYPTION_IDENTITIES"
        ),
    )
}

#[cfg(test)]
mod tests;
