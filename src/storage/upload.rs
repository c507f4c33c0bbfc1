//! One object written from bytes that arrive in pieces, in bounded memory whatever its size:
//! below one part it is a single put at the end; from the first full part on it is a multipart
//! upload with at most [`PARTS_IN_FLIGHT`] parts uploading at once. Nothing is visible at the
//! key before [`Upload::finish`]; [`Upload::abort`] leaves no part behind (best effort).
//!
//! Used by the backup's file writers (`backup::writer`) and the copy of a backup between
//! repositories (`catalog::copy`). Depends on `error` and this module's error conversion only.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::object_error;
use crate::error::Error;

/// Upload part size: S3's minimum for every part but the last; also the single-put threshold.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one object uploading at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// An object being written.
pub struct Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// Bytes not yet handed to a multipart upload (until the first part is full).
    buffered: Vec<Bytes>,
    buffered_len: usize,
    multipart: Option<WriteMultipart>,
    written: u64,
}

impl Upload {
    /// Starts writing `path` (nothing is sent before the first part is full).
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self {
            store,
            path,
            buffered: Vec::new(),
            buffered_len: 0,
            multipart: None,
            written: 0,
        }
    }

    /// The key being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes handed over so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Hands `bytes` over; waits while [`PARTS_IN_FLIGHT`] parts are uploading, so that memory
    /// holds at most those, one part being filled, and `bytes`.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.written += bytes.len() as u64;
        if let Some(upload) = self.multipart.as_mut() {
            // Part by part, waiting for capacity before each. The parts are slices of `bytes`,
            // not copies: its memory is freed as its last part completes.
            let mut bytes = bytes;
            while !bytes.is_empty() {
                let piece = bytes.split_to(bytes.len().min(PART_SIZE));
                upload
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| object_error("writing", &self.path, e))?;
                upload.put(piece);
            }
            return Ok(());
        }
        self.buffered_len += bytes.len();
        self.buffered.push(bytes);
        if self.buffered_len >= PART_SIZE {
            let multipart = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| object_error("writing", &self.path, e))?;
            let mut upload = WriteMultipart::new_with_chunk_size(multipart, PART_SIZE);
            for chunk in self.buffered.drain(..) {
                upload.put(chunk);
            }
            self.buffered_len = 0;
            self.multipart = Some(upload);
        }
        Ok(())
    }

    /// Makes the object visible at its key with every byte handed over.
    pub async fn finish(mut self) -> Result<u64, Error> {
        match self.multipart.take() {
            Some(upload) => {
                upload
                    .finish()
                    .await
                    .map_err(|e| object_error("writing", &self.path, e))?;
            }
            None => {
                let parts = std::mem::take(&mut self.buffered);
                self.store
                    .put(&self.path, PutPayload::from_iter(parts))
                    .await
                    .map_err(|e| object_error("writing", &self.path, e))?;
            }
        }
        Ok(self.written)
    }

    /// Gives up: a multipart upload begun is aborted (best effort), so that no part is left for
    /// the store to keep; a small object was never sent.
    pub async fn abort(mut self) {
        if let Some(upload) = self.multipart.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(object_key = %self.path, error = %e, "aborting a multipart upload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    async fn written(store: &Arc<dyn ObjectStore>, path: &Path) -> Option<Bytes> {
        crate::storage::get_if_exists(store.as_ref(), path)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn small_and_large_objects_arrive_whole_and_only_at_finish() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for size in [0, 10, PART_SIZE - 1, PART_SIZE, 2 * PART_SIZE + 12_345] {
            let path = Path::from(format!("o/{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut upload = Upload::new(store.clone(), path.clone());
            for piece in data.chunks(100_000) {
                upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            assert_eq!(
                written(&store, &path).await,
                None,
                "{size}: not before finish"
            );
            assert_eq!(upload.finish().await.unwrap(), size as u64);
            assert_eq!(written(&store, &path).await.as_deref(), Some(&data[..]));
        }
    }

    #[tokio::test]
    async fn an_aborted_upload_leaves_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("o/aborted");
        let mut upload = Upload::new(store.clone(), path.clone());
        upload
            .write(Bytes::from(vec![1u8; PART_SIZE + 1]))
            .await
            .unwrap();
        upload.abort().await;
        assert_eq!(written(&store, &path).await, None);
    }
}
