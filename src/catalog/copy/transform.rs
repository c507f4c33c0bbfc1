//! The step each file passes through between its check and its upload, and the target manifest
//! that follows from what the step did: [`Identity`] (the files as they are) or [`Encrypting`]
//! (every file encrypted for other recipients, from clear or re-encrypted).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::catalog::manifest::{
    EncryptionEntry, FileEntry, MANIFEST_VERSION_ENCRYPTED, parse_manifest, version_for,
};
use crate::encryption::{AGE_SUFFIX, Identities, Recipients, Recrypt};
use crate::error::{Error, ErrorKind};

/// What each file passes through on its way from source to target, after its bytes were
/// checked against the source's manifest. This is where re-encryption for other recipients
/// plugs in: [`Transform::file`] starts one file's transform (decrypt with the service's
/// identity, encrypt for the new recipients), and [`Transform::edit_manifest`] records at the
/// target what changed for the backup as a whole (its `encryption` block).
pub trait Transform: Send + Sync {
    /// The transform of one file, or `None` when its bytes go to the target as they are (and
    /// its manifest entry stays as it is).
    fn file(&self, entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error>;

    /// The key a file gets at the target, when it is not the source's (a file encrypted by the
    /// copy takes the `.age` suffix a backup gives the files it encrypts).
    fn target_path(&self, _entry: &FileEntry) -> Option<String> {
        None
    }

    /// Edits the target's manifest (as JSON, every field kept) once every file is written.
    /// Called only when some file was transformed.
    fn edit_manifest(&self, _manifest: &mut Value) -> Result<(), Error> {
        Ok(())
    }
}

/// One file's transform: bytes in (already counted against the source's checksum), bytes out.
pub trait FileTransform: Send {
    /// The output for the next piece of input (possibly empty: a transform may buffer).
    fn update(&mut self, input: Bytes) -> Result<Bytes, Error>;
    /// The rest of the output, once all input was given, and the SHA-256 of the file's
    /// plaintext when the output is encrypted.
    fn finish(self: Box<Self>) -> Result<(Bytes, Option<String>), Error>;
}

/// The copy as it is today: every file as it is, the manifest byte for byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Transform for Identity {
    fn file(&self, _entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error> {
        Ok(None)
    }
}

/// Every file encrypted (age) for `recipients`: a source in clear is encrypted, an encrypted
/// one decrypted with `identities` and encrypted again. Each file's plaintext is checked against
/// the source manifest's checksum of it on the way.
pub struct Encrypting {
    pub recipients: Arc<Recipients>,
    /// `Some` when the source is encrypted.
    pub identities: Option<Arc<Identities>>,
}

impl Transform for Encrypting {
    fn file(&self, entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error> {
        let (recrypt, expected) = match &self.identities {
            Some(identities) => (
                Recrypt::reencrypt(identities.clone(), self.recipients.clone())?,
                entry.plaintext_sha256.clone(),
            ),
            // In clear, the plaintext is the file: its SHA-256 (if it records one) was checked.
            None => (
                Recrypt::encrypt(&self.recipients)?,
                Some(entry.sha256.clone()).filter(|s| !s.is_empty()),
            ),
        };
        Ok(Some(Box::new(EncryptingFile {
            recrypt,
            expected: expected.map(|s| s.to_ascii_lowercase()),
            path: entry.path.clone(),
        })))
    }

    fn target_path(&self, entry: &FileEntry) -> Option<String> {
        // A re-encrypted file was sealed already and keeps its name.
        (self.identities.is_none() && !entry.path.ends_with(AGE_SUFFIX))
            .then(|| format!("{}{AGE_SUFFIX}", entry.path))
    }

    fn edit_manifest(&self, manifest: &mut Value) -> Result<(), Error> {
        let entry = EncryptionEntry::age(self.recipients.keys());
        manifest["encryption"] = serde_json::to_value(entry)
            .map_err(|e| Error::internal(format!("encryption block: {e}")))?;
        manifest["manifestVersion"] = MANIFEST_VERSION_ENCRYPTED.into();
        Ok(())
    }
}

struct EncryptingFile {
    recrypt: Recrypt,
    expected: Option<String>,
    path: String,
}

impl FileTransform for EncryptingFile {
    fn update(&mut self, input: Bytes) -> Result<Bytes, Error> {
        self.recrypt.update(input).map_err(|e| about(e, &self.path))
    }

    fn finish(self: Box<Self>) -> Result<(Bytes, Option<String>), Error> {
        let (tail, plain) = self.recrypt.finish().map_err(|e| about(e, &self.path))?;
        if let Some(expected) = &self.expected
            && *expected != plain
        {
            return Err(Error::damaged(
                self.path,
                "decrypts to bytes that do not match its plaintext SHA-256 in the manifest",
            ));
        }
        Ok((tail, Some(plain)))
    }
}

/// A re-encryption failure, about the file at `path`.
fn about(e: Error, path: &str) -> Error {
    match e.kind() {
        ErrorKind::DamagedBackup => Error::damaged(path, e.message().to_string()),
        ErrorKind::PermissionDenied => {
            let message = format!("{path}: {}", e.message());
            e.with_message(message)
        }
        _ => e,
    }
}

/// What a transform made of one file: the size and SHA-256 of the bytes written at the target,
/// the SHA-256 of their plaintext when they are encrypted, and the key they were written to
/// when it is not the source's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub path: Option<String>,
    pub bytes: u64,
    pub sha256: String,
    pub plaintext_sha256: Option<String>,
}

/// The manifest the target gets: the source's bytes as they are when no file was rewritten and
/// the backup is not incremental; otherwise the source's JSON (every field kept, known or not)
/// with each rewritten file's `bytes` and `sha256` (a CRC32C gives way to the SHA-256) and its
/// new key, the tables' and the totals' bytes summed again, the transform's own edits, and for
/// an incremental backup no `incremental` block (its files are all under its own key now).
pub fn target_manifest(
    source: &Bytes,
    rewritten: &BTreeMap<String, Rewritten>,
    transform: &dyn Transform,
) -> Result<Bytes, Error> {
    let bad = |what: &str| Error::internal(format!("rewriting the manifest: {what}"));
    let mut value: Value = serde_json::from_slice(source).map_err(|e| bad(&e.to_string()))?;
    // The copy of an incremental backup holds every file under its own key: a whole backup.
    let incremental = value
        .as_object_mut()
        .and_then(|m| m.remove("incremental"))
        .is_some();
    if rewritten.is_empty() && !incremental {
        return Ok(source.clone());
    }
    let mut total = 0u64;
    let tables = value
        .get_mut("tables")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no tables"))?;
    for table in tables.iter_mut() {
        let Some(files) = table.get_mut("files").and_then(Value::as_array_mut) else {
            continue;
        };
        let mut table_bytes = 0u64;
        for file in files.iter_mut() {
            let path = file.get("path").and_then(Value::as_str).unwrap_or_default();
            if let Some(new) = rewritten.get(path)
                && let Some(fields) = file.as_object_mut()
            {
                fields.insert("bytes".into(), new.bytes.into());
                // An empty checksum: the bytes are the source's (a file only moved), whose
                // checksums stay as recorded.
                if !new.sha256.is_empty() {
                    fields.insert("sha256".into(), new.sha256.clone().into());
                    fields.remove("crc32c");
                }
                if let Some(plain) = &new.plaintext_sha256 {
                    fields.insert("plaintextSha256".into(), plain.clone().into());
                }
                if let Some(renamed) = &new.path {
                    fields.insert("path".into(), renamed.clone().into());
                }
            }
            table_bytes += file.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        }
        table["bytes"] = table_bytes.into();
        total += table_bytes;
    }
    if let Some(totals) = value.get_mut("totals").and_then(Value::as_object_mut) {
        totals.insert("bytes".into(), total.into());
    }
    transform.edit_manifest(&mut value)?;
    let body = serde_json::to_vec_pretty(&value).map_err(|e| bad(&e.to_string()))?;
    // What is written must read back as a manifest.
    let manifest = parse_manifest("the rewritten manifest", &body)?;
    if !incremental {
        return Ok(Bytes::from(body));
    }
    // No longer incremental: the oldest version that holds it, as a backup would write it.
    value["manifestVersion"] =
        version_for(&manifest.tables, manifest.encryption.as_ref(), None).into();
    let body = serde_json::to_vec_pretty(&value).map_err(|e| bad(&e.to_string()))?;
    Ok(Bytes::from(body))
}
