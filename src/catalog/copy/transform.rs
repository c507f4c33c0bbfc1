//! The step each file passes through between its check and its upload, and the target manifest
//! that follows from what the step did. Re-encryption for other recipients plugs in here.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use crate::catalog::manifest::{FileEntry, parse_manifest};
use crate::error::Error;

/// What each file passes through on its way from source to target, after its bytes were
/// checked against the source's manifest. This is where re-encryption for other recipients
/// plugs in: [`Transform::file`] starts one file's transform (decrypt with the service's
/// identity, encrypt for the new recipients), and [`Transform::edit_manifest`] records at the
/// target what changed for the backup as a whole (its `encryption` block).
pub trait Transform: Send + Sync {
    /// The transform of one file, or `None` when its bytes go to the target as they are (and
    /// its manifest entry stays as it is).
    fn file(&self, entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error>;

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
    /// The rest of the output, once all input was given.
    fn finish(self: Box<Self>) -> Result<Bytes, Error>;
}

/// The copy as it is today: every file as it is, the manifest byte for byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Transform for Identity {
    fn file(&self, _entry: &FileEntry) -> Result<Option<Box<dyn FileTransform>>, Error> {
        Ok(None)
    }
}

/// What a transform made of one file: the size and SHA-256 of the bytes written at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub bytes: u64,
    pub sha256: String,
}

/// The manifest the target gets: the source's bytes as they are when no file was rewritten;
/// otherwise the source's JSON (every field kept, known or not) with each rewritten file's
/// `bytes` and `sha256` (a CRC32C gives way to the SHA-256), the tables' and the totals' bytes
/// summed again, and the transform's own edits.
pub fn target_manifest(
    source: &Bytes,
    rewritten: &BTreeMap<String, Rewritten>,
    transform: &dyn Transform,
) -> Result<Bytes, Error> {
    if rewritten.is_empty() {
        return Ok(source.clone());
    }
    let bad = |what: &str| Error::internal(format!("rewriting the manifest: {what}"));
    let mut value: Value = serde_json::from_slice(source).map_err(|e| bad(&e.to_string()))?;
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
                fields.insert("sha256".into(), new.sha256.clone().into());
                fields.remove("crc32c");
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
    parse_manifest("the rewritten manifest", &body)?;
    Ok(Bytes::from(body))
}
