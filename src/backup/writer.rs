//! Writes a table's batches (from any of its read streams) into files of at most about
//! `file_size_bytes`: encoding and hashing on rayon, bytes streamed to the store as they are
//! produced through a [`Upload`] (one put for a small file, a multipart upload with bounded
//! parts in flight for a larger one), so memory stays bounded whatever the table size. An
//! encrypted backup's files are encrypted (age) on the same pass, chunk by chunk as they are
//! encoded: the store sees only ciphertext, and the manifest records both checksums.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::catalog::FileEntry;
use crate::domain::{BackupId, TableRef};
use crate::encryption::{Encryptor, Recipients};
use crate::error::{Error, ErrorKind};
use crate::exec::on_rayon;
use crate::formats::{EncodeOptions, Encoded, FileEncoder, file_extension};
use crate::storage::layout;
use crate::storage::upload::Upload;

/// A file may overshoot `file_size_bytes` by at most about this fraction of it.
const SLICES_PER_FILE: usize = 8;

/// `batch` cut into row ranges of at most `file_size_bytes / SLICES_PER_FILE` in-memory bytes.
fn slices(batch: &RecordBatch, file_size_bytes: u64) -> Vec<RecordBatch> {
    let bytes = batch.get_array_memory_size().max(1);
    let limit = usize::try_from(file_size_bytes).unwrap_or(usize::MAX) / SLICES_PER_FILE;
    let pieces = bytes.div_ceil(limit.max(1)).max(1);
    let rows = batch.num_rows();
    if pieces == 1 || rows < 2 {
        return vec![batch.clone()];
    }
    let step = rows.div_ceil(pieces).max(1);
    (0..rows)
        .step_by(step)
        .map(|start| batch.slice(start, step.min(rows - start)))
        .collect()
}

/// Everything the writers of one table share.
pub(crate) struct TableFiles {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) backup_id: BackupId,
    pub(crate) table: TableRef,
    pub(crate) schema: SchemaRef,
    pub(crate) encode: EncodeOptions,
    /// Every file is encrypted to these recipients.
    pub(crate) encryption: Option<Arc<Recipients>>,
    pub(crate) file_size_bytes: u64,
    /// The shard writing these files, in a sharded backup: its files are named apart
    /// ([`layout::shard_data_file`]), so that each shard numbers its own and replaces only its own.
    pub(crate) shard: Option<u32>,
    /// The partition these files hold, in a table read partition by partition: its files are
    /// named by it ([`layout::partition_data_file`]) and record it.
    pub(crate) partition: Option<String>,
    /// Next part number of this table, shared by its streams.
    pub(crate) next_index: AtomicUsize,
}

impl TableFiles {
    /// Writes batches taken from the table's queue until it closes; returns the files written
    /// (none when the other writers took every batch).
    pub(crate) async fn write_batches(
        self: &Arc<Self>,
        batches: &Mutex<mpsc::Receiver<RecordBatch>>,
        cancel: &CancellationToken,
    ) -> Result<Vec<FileEntry>, Error> {
        let mut files = Vec::new();
        let mut current: Option<OpenFile> = None;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => {
                    if let Some(f) = current.take() { f.abort().await; }
                    return Err(Error::cancelled("cancelled"));
                }
                next = async { batches.lock().await.recv().await } => next,
            };
            let Some(batch) = next else { break };
            // Large batches are written in slices (zero-copy) so that a file closes within about
            // a slice of `file_size_bytes`, however big the Read API's batches are.
            for slice in slices(&batch, self.file_size_bytes) {
                let file = match current.as_mut() {
                    Some(f) => f,
                    None => current.insert(self.open_file()?),
                };
                if let Err(e) = file.write(slice).await {
                    if let Some(f) = current.take() {
                        f.abort().await;
                    }
                    return Err(e);
                }
                if current
                    .as_ref()
                    .is_some_and(|f| f.size >= self.file_size_bytes)
                    && let Some(f) = current.take()
                {
                    files.push(f.finish().await?);
                }
            }
        }
        if let Some(f) = current.take() {
            files.push(f.finish().await?);
        }
        Ok(files)
    }

    fn open_file(&self) -> Result<OpenFile, Error> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let mut extension = file_extension(self.encode.format, self.encode.compression);
        if self.encryption.is_some() {
            extension.push_str(crate::encryption::AGE_SUFFIX);
        }
        let path = match (self.shard, &self.partition) {
            (Some(shard), _) => {
                layout::shard_data_file(&self.backup_id, &self.table, shard, index, &extension)
            }
            (None, Some(partition)) => layout::partition_data_file(
                &self.backup_id,
                &self.table,
                partition,
                index,
                &extension,
            ),
            (None, None) => layout::data_file(&self.backup_id, &self.table, index, &extension),
        };
        let encoder = FileEncoder::new(self.schema.clone(), &self.encode)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: {e}", self.table)))?;
        let encryption = self
            .encryption
            .as_deref()
            .map(|r| Encryptor::new(r).map(|e| (e, Sha256::new())))
            .transpose()?;
        Ok(OpenFile {
            upload: Upload::new(self.store.clone(), path.clone()),
            path,
            partition: self.partition.clone(),
            state: Some(EncodeState {
                encoder,
                hasher: Sha256::new(),
                encryption,
            }),
            size: 0,
        })
    }
}

/// The encoder and the running checksum travel together to the rayon pool and back.
struct EncodeState {
    encoder: FileEncoder,
    /// Of the bytes stored (the ciphertext, when encrypted).
    hasher: Sha256,
    /// Encrypted files: the encryptor and the plaintext's checksum.
    encryption: Option<(Encryptor, Sha256)>,
}

impl EncodeState {
    fn seal(&mut self, output: Encoded) -> Result<Vec<Bytes>, Error> {
        seal(&mut self.hasher, &mut self.encryption, output)
    }
}

/// `output` as stored: encrypted first when the file is, then hashed.
fn seal(
    hasher: &mut Sha256,
    encryption: &mut Option<(Encryptor, Sha256)>,
    output: Encoded,
) -> Result<Vec<Bytes>, Error> {
    {
        let chunks: Vec<Bytes> = match encryption {
            None => output.into_iter().collect(),
            Some((encryptor, plain)) => {
                let mut sealed = Vec::with_capacity(output.chunks().len());
                for chunk in output {
                    plain.update(&chunk);
                    sealed.push(encryptor.write(&chunk)?);
                }
                sealed
            }
        };
        for chunk in &chunks {
            hasher.update(chunk);
        }
        Ok(chunks)
    }
}

struct OpenFile {
    path: Path,
    partition: Option<String>,
    state: Option<EncodeState>,
    upload: Upload,
    /// Estimated size of the file so far (encoded plus still buffered in the encoder).
    size: u64,
}

impl OpenFile {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), Error> {
        let mut state = self
            .state
            .take()
            .ok_or_else(|| Error::internal("file already finished"))?;
        let path = self.path.clone();
        let (state, output) = on_rayon(move || -> Result<(EncodeState, Vec<Bytes>), Error> {
            state
                .encoder
                .write(&batch)
                .map_err(|e| Error::internal(format!("encoding {path} failed: {e}")))?;
            let output = state.encoder.take_output();
            let output = state.seal(output)?;
            Ok((state, output))
        })
        .await??;
        self.size = state.encoder.estimated_size();
        self.state = Some(state);
        self.push(output).await
    }

    async fn push(&mut self, output: Vec<Bytes>) -> Result<(), Error> {
        for chunk in output {
            if !chunk.is_empty() {
                self.upload.write(chunk).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<FileEntry, Error> {
        let state = self
            .state
            .take()
            .ok_or_else(|| Error::internal("file already finished"))?;
        let path = self.path.clone();
        let (rows, tail, sha256, plaintext_sha256) = on_rayon(
            move || -> Result<(u64, Vec<Bytes>, String, Option<String>), Error> {
                let EncodeState {
                    encoder,
                    mut hasher,
                    mut encryption,
                } = state;
                let rows = encoder.rows();
                let tail = encoder
                    .finish()
                    .map_err(|e| Error::internal(format!("finishing {path} failed: {e}")))?;
                let mut tail = seal(&mut hasher, &mut encryption, tail)?;
                let plaintext_sha256 = match encryption {
                    None => None,
                    Some((encryptor, plain)) => {
                        let last = encryptor.finish()?;
                        hasher.update(&last);
                        tail.push(last);
                        Some(hex::encode(plain.finalize()))
                    }
                };
                Ok((rows, tail, hex::encode(hasher.finalize()), plaintext_sha256))
            },
        )
        .await??;
        self.push(tail).await?;
        let bytes = self.upload.finish().await?;
        Ok(FileEntry {
            path: self.path.to_string(),
            bytes,
            rows,
            sha256,
            crc32c: None,
            plaintext_sha256,
            partition: self.partition,
        })
    }

    /// Best effort: a failed file leaves no part behind.
    async fn abort(self) {
        self.upload.abort().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::sample::all_types_batch;

    #[test]
    fn a_large_batch_is_sliced_into_pieces_of_an_eighth_of_the_file_size() {
        let batch = all_types_batch(4096);
        let size = batch.get_array_memory_size() as u64;
        let pieces = slices(&batch, size);
        assert!(pieces.len() >= SLICES_PER_FILE, "{} pieces", pieces.len());
        assert_eq!(
            pieces.iter().map(RecordBatch::num_rows).sum::<usize>(),
            4096,
            "no row lost or repeated"
        );
        assert_eq!(
            slices(&batch, size * 100).len(),
            1,
            "a small batch is left whole"
        );
    }
}
