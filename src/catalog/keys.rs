//! The identities that open an encrypted backup, found before any data moves: read from where
//! `BQB_ENCRYPTION_IDENTITIES` says, and tried on the header of one of the backup's files (every
//! file of a backup is encrypted to the same recipients). A service without identities, or
//! whose identities are not among the recipients, answers 403 naming the backup.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::manifest::Manifest;
use super::stream::store_problem;
use crate::encryption::{self, Identities, OpenError};
use crate::error::Error;
use crate::storage::Store;

/// Bytes read from the start of a file for its age header: a few hundred per recipient.
const HEADER_BYTES: u64 = 64 * 1024;

/// `None` for a backup in clear; for an encrypted one, identities that open it, or 403.
pub async fn identities_for(
    store: &Store,
    manifest: &Manifest,
) -> Result<Option<Arc<Identities>>, Error> {
    let Some(encrypted) = &manifest.encryption else {
        return Ok(None);
    };
    let backup = manifest.backup_id.to_string();
    let settings = store.encryption();
    let Some(source) = &settings.identities else {
        return Err(encryption::no_identities_error(&backup));
    };
    let identities = source.load(settings).await?;
    let first = manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .flat_map(|t| &t.files)
        .next();
    if let Some(file) = first {
        let path = Path::parse(&file.path)
            .map_err(|e| Error::damaged(&file.path, format!("is not a valid key: {e}")))?;
        let head = store
            .object_store()
            .get_range(&path, 0..HEADER_BYTES.min(file.bytes))
            .await
            .map_err(|e| store.attribute(store_problem(&path, e).into_error(&file.path)))?;
        match encryption::check_head(&head, &identities) {
            Ok(()) => {}
            Err(OpenError::NoMatchingKey) => {
                return Err(encryption::no_key_error(&backup, &encrypted.recipients));
            }
            Err(OpenError::Damaged(what)) => return Err(Error::damaged(&file.path, what)),
            Err(OpenError::Io(e)) => {
                return Err(Error::damaged(
                    &file.path,
                    format!("has no readable age header: {e}"),
                ));
            }
        }
    }
    Ok(Some(Arc::new(identities)))
}
