//! An encrypted (age) object read with seeks: the plaintext of a PARQUET file is read footer
//! first, then row group by row group, through age's seekable reader over ranged GETs of the
//! ciphertext. The ciphertext is hashed on the way whenever the reads reach the bytes right
//! after those already hashed (in file order, as row groups are read), and the rest at the end,
//! so the stored file's SHA-256 is checked too, with no second pass over what was read.
//! Memory: one window of ciphertext and one age chunk.

use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::runtime::Handle;

use super::checksum::FileHasher;

/// Ciphertext read per GET: a few age chunks, so a row group costs few requests.
const WINDOW: u64 = 1024 * 1024;

/// What the reader and its owner share: the running hash of the ciphertext and a failed read.
pub(super) struct CipherState {
    pub(super) hasher: FileHasher,
    /// Ciphertext bytes hashed so far: `0..hashed`.
    pub(super) hashed: u64,
    pub(super) failure: Option<object_store::Error>,
}

/// The ciphertext object as `Read + Seek`, for age's `StreamReader`.
pub(super) struct CipherObject {
    handle: Handle,
    os: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    pos: u64,
    window: Bytes,
    window_start: u64,
    state: Rc<RefCell<CipherState>>,
}

impl CipherObject {
    pub(super) fn new(
        handle: Handle,
        os: Arc<dyn ObjectStore>,
        path: Path,
        size: u64,
        state: Rc<RefCell<CipherState>>,
    ) -> Self {
        Self {
            handle,
            os,
            path,
            size,
            pos: 0,
            window: Bytes::new(),
            window_start: 0,
            state,
        }
    }

    fn fetch(&self, range: Range<u64>) -> Result<Bytes, object_store::Error> {
        self.handle.block_on(async {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            let mut stream = self.os.get_opts(&self.path, options).await?.into_stream();
            let mut bytes =
                Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            Ok(Bytes::from(bytes))
        })
    }

    /// Makes the window hold `pos`, hashing what it adds right after the hashed bytes.
    fn load(&mut self) -> std::io::Result<()> {
        let end = (self.pos + WINDOW).min(self.size);
        let bytes = self.fetch(self.pos..end).map_err(|e| {
            let message = e.to_string();
            self.state.borrow_mut().failure = Some(e);
            std::io::Error::other(message)
        })?;
        self.window_start = self.pos;
        self.window = bytes;
        let mut state = self.state.borrow_mut();
        let window_end = self.window_start + self.window.len() as u64;
        if (self.window_start..window_end).contains(&state.hashed) {
            let from = usize::try_from(state.hashed - self.window_start).unwrap_or(0);
            if let Some(new) = self.window.get(from..) {
                state.hasher.update(new);
            }
            state.hashed = window_end;
        }
        Ok(())
    }

    /// Hashes the ciphertext not hashed yet (after the last read, the footer's chunks), as it
    /// arrives; the hasher, once every byte of the object went through it.
    pub(super) fn hash_rest(
        handle: &Handle,
        os: &Arc<dyn ObjectStore>,
        path: &Path,
        size: u64,
        state: &Rc<RefCell<CipherState>>,
    ) -> Result<(), object_store::Error> {
        let from = state.borrow().hashed;
        if from >= size {
            return Ok(());
        }
        handle.block_on(async {
            let options = GetOptions {
                range: Some(GetRange::Bounded(from..size)),
                ..Default::default()
            };
            let mut stream = os.get_opts(path, options).await?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                let mut state = state.borrow_mut();
                state.hasher.update(&chunk);
                state.hashed += chunk.len() as u64;
            }
            Ok(())
        })
    }
}

impl Read for CipherObject {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let window_end = self.window_start + self.window.len() as u64;
        if !(self.window_start..window_end).contains(&self.pos) {
            self.load()?;
        }
        let from = usize::try_from(self.pos - self.window_start).unwrap_or(usize::MAX);
        let held = self.window.get(from..).unwrap_or_default();
        let n = held.len().min(buf.len());
        buf[..n].copy_from_slice(&held[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for CipherObject {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(n) => self.size.checked_add_signed(n),
            SeekFrom::Current(n) => self.pos.checked_add_signed(n),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}
