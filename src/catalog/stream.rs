//! One recorded file read as checked batches while its bytes arrive: the checksum (SHA-256, or
//! CRC32C for a file BigQuery wrote: see [`super::checksum`]) and the size are computed on the way, the batches handed over one at a time, and the manifest's size,
//! checksum and row count compared at the end. Memory per file: the batches in flight plus, for
//! AVRO, CSV and JSON, the decoder's block or line buffers; for PARQUET, one row group's bytes.
//! Never the file, whatever its size.
//!
//! AVRO, CSV and JSON are read front to back from one GET. PARQUET keeps its footer at the end:
//! the footer comes first (a ranged read), then each row group in file order (ranged reads), and
//! the bytes between and after them are hashed too, so the checksum covers the whole file.
//!
//! An encrypted backup's files (age) are decrypted on the way: AVRO, CSV and JSON from the same
//! GET (the ciphertext hashed as it arrives, the plaintext as it decrypts); PARQUET through age's
//! seekable reader over ranged reads ([`super::cipher`]). Both checksums of the manifest are
//! compared, and every age chunk is authenticated, the last one as last (a file cut short fails).
//!
//! Depends on `formats` (decoding), `storage` and `error`; shared by restore and verify. The
//! checks at the end pass or fail only after every batch was handed over: a caller commits
//! nothing (a load job) before [`FileBatches::next`] has answered `Ok(None)`.

use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::checksum::FileHasher;
use super::cipher::{CipherObject, CipherState};
use super::manifest::FileEntry;
use super::verify::FileProblem;
use crate::encryption::{self, Identities, OpenError};
use crate::error::{Error, ErrorKind};
use crate::formats::{
    DecodeOptions, FooterParse, Format, FormatError, ParquetLayout, decode_stream,
};
use crate::storage::{Failure, object_error};

/// Batches decoded ahead of the consumer: decoding goes on while the consumer encodes or
/// uploads, and memory holds at most this many batches more than the one in use.
const BATCHES_AHEAD: usize = 2;
/// Bytes read from the end of a PARQUET file first: the footer of most files fits.
const PARQUET_TAIL: u64 = 64 * 1024;

/// The batches of one file, decoded on a thread of their own as its bytes arrive.
pub struct FileBatches {
    rx: mpsc::Receiver<Message>,
    finished: bool,
}

enum Message {
    Batch(RecordBatch),
    /// Every byte was read and every check passed.
    Done,
    Failed(FileProblem),
}

/// Starts reading `file` (decoded with `schema` and `options`). With `check`, its size, checksum
/// and row count must match `file`; without (a legacy backup records none), it is only decoded.
/// With `keys`, the file is an age file decrypted with them (an encrypted backup's).
/// Must be called inside the tokio runtime.
pub fn read_batches(
    os: &Arc<dyn ObjectStore>,
    file: &FileEntry,
    schema: SchemaRef,
    options: DecodeOptions,
    check: bool,
    keys: Option<Arc<Identities>>,
) -> FileBatches {
    let (tx, rx) = mpsc::channel(BATCHES_AHEAD);
    let reader = Reader {
        os: os.clone(),
        file: file.clone(),
        schema,
        options,
        check,
        keys,
        handle: Handle::current(),
        tx: tx.clone(),
    };
    // A thread of the blocking pool, not rayon: between batches the decoder waits for the
    // network, and rayon's few threads must stay free for encoding.
    tokio::task::spawn_blocking(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.run()));
        let last = match outcome {
            Ok(Ok(())) => Message::Done,
            Ok(Err(Stop::Problem(problem))) => Message::Failed(problem),
            // Nobody is listening any more.
            Ok(Err(Stop::Abandoned)) => return,
            Err(_) => Message::Failed(FileProblem::Storage(Error::internal(
                "reading the file panicked",
            ))),
        };
        let _ = tx.blocking_send(last);
    });
    FileBatches {
        rx,
        finished: false,
    }
}

impl FileBatches {
    /// The next batch. `Ok(None)` comes only once the whole file was read and every check
    /// passed: a caller that stops earlier has not verified the file.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, FileProblem> {
        if self.finished {
            return Ok(None);
        }
        let message = self.rx.recv().await;
        self.finished = !matches!(message, Some(Message::Batch(_)));
        match message {
            Some(Message::Batch(batch)) => Ok(Some(batch)),
            Some(Message::Done) => Ok(None),
            Some(Message::Failed(problem)) => Err(problem),
            None => Err(FileProblem::Storage(Error::internal(
                "the file's reader stopped without an answer",
            ))),
        }
    }

    /// Reads to the end, dropping the batches: the rows of a file that passed every check.
    pub async fn count_rows(mut self) -> Result<u64, FileProblem> {
        let mut rows = 0;
        while let Some(batch) = self.next().await? {
            rows += batch.num_rows() as u64;
        }
        Ok(rows)
    }
}

/// Why reading stopped early.
enum Stop {
    Problem(FileProblem),
    /// The consumer dropped its [`FileBatches`].
    Abandoned,
}

impl From<FileProblem> for Stop {
    fn from(problem: FileProblem) -> Self {
        Stop::Problem(problem)
    }
}

fn undecodable(e: FormatError) -> Stop {
    Stop::Problem(FileProblem::Damaged(format!("cannot be decoded: {e}")))
}

/// A store failure while reading `path`: a file that is not there is damage, anything else is
/// the store's.
pub(crate) fn store_problem(path: &Path, e: object_store::Error) -> FileProblem {
    match Failure::of(&e) {
        Failure::NotFound => FileProblem::Damaged("is missing".into()),
        _ => FileProblem::Storage(object_error("reading", path, e)),
    }
}

/// What was read of a file, to compare with its manifest entry at the end.
struct Tally {
    hasher: FileHasher,
    bytes: u64,
    rows: u64,
    /// Encrypted files: the plaintext's hash, to compare with `plaintextSha256`.
    plain: Option<Sha256Tally>,
}

/// The plaintext of an encrypted file, hashed as it decrypts.
struct Sha256Tally {
    hasher: sha2::Sha256,
    expected: Option<String>,
}

impl Sha256Tally {
    fn new(file: &FileEntry) -> Self {
        Self {
            hasher: sha2::Digest::new(),
            expected: file
                .plaintext_sha256
                .as_ref()
                .map(|s| s.to_ascii_lowercase()),
        }
    }

    fn check(self) -> Result<(), String> {
        let actual = hex::encode(sha2::Digest::finalize(self.hasher));
        match self.expected {
            Some(expected) if expected != actual => Err(
                "decrypts to bytes that do not match its plaintext SHA-256 in the manifest".into(),
            ),
            _ => Ok(()),
        }
    }
}

impl Tally {
    /// Nothing read yet; hashing with the algorithm `file`'s entry names.
    fn new(file: &FileEntry) -> Self {
        Self {
            hasher: FileHasher::for_entry(file),
            bytes: 0,
            rows: 0,
            plain: None,
        }
    }

    fn hash(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
    }
}

/// Runs on a blocking thread: network calls through `handle.block_on`, decoding in place.
struct Reader {
    os: Arc<dyn ObjectStore>,
    file: FileEntry,
    schema: SchemaRef,
    options: DecodeOptions,
    check: bool,
    keys: Option<Arc<Identities>>,
    handle: Handle,
    tx: mpsc::Sender<Message>,
}

/// A file's bytes by range: as stored, or the plaintext of an encrypted one.
trait Ranges {
    fn get(&self, range: Range<u64>) -> Result<Bytes, FileProblem>;
    /// Hashes `range` into `tally` as it arrives, holding none of it.
    fn hash(&self, range: Range<u64>, tally: &mut Tally) -> Result<(), FileProblem>;
}

struct Stored<'a> {
    reader: &'a Reader,
    path: &'a Path,
}

impl Ranges for Stored<'_> {
    fn get(&self, range: Range<u64>) -> Result<Bytes, FileProblem> {
        self.reader.get_range(self.path, range)
    }

    fn hash(&self, range: Range<u64>, tally: &mut Tally) -> Result<(), FileProblem> {
        self.reader.hash_range(self.path, range, tally)
    }
}

/// The plaintext of an encrypted PARQUET file, read with seeks.
struct Decrypted<'a> {
    plain: RefCell<age::stream::StreamReader<CipherObject>>,
    state: &'a Rc<RefCell<CipherState>>,
    path: &'a Path,
}

impl Decrypted<'_> {
    /// A failed read of the plaintext: the store's failure if there was one, else the file's.
    fn problem(&self, e: &std::io::Error) -> FileProblem {
        match self.state.borrow_mut().failure.take() {
            Some(failure) => store_problem(self.path, failure),
            None => FileProblem::Damaged(format!("cannot be decrypted: {e}")),
        }
    }
}

impl Ranges for Decrypted<'_> {
    fn get(&self, range: Range<u64>) -> Result<Bytes, FileProblem> {
        let mut plain = self.plain.borrow_mut();
        let mut bytes = vec![0; usize::try_from(range.end - range.start).unwrap_or(0)];
        plain
            .seek(SeekFrom::Start(range.start))
            .and_then(|_| plain.read_exact(&mut bytes))
            .map_err(|e| self.problem(&e))?;
        Ok(Bytes::from(bytes))
    }

    fn hash(&self, range: Range<u64>, tally: &mut Tally) -> Result<(), FileProblem> {
        let mut plain = self.plain.borrow_mut();
        plain
            .seek(SeekFrom::Start(range.start))
            .map_err(|e| self.problem(&e))?;
        let mut left = range.end - range.start;
        let mut buf = vec![0; 64 * 1024];
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            plain
                .read_exact(&mut buf[..n])
                .map_err(|e| self.problem(&e))?;
            tally.hash(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }
}

/// A file the identities cannot open.
fn open_problem(e: OpenError) -> FileProblem {
    match e {
        OpenError::NoMatchingKey => FileProblem::Storage(Error::new(
            ErrorKind::PermissionDenied,
            "none of the identities in BQB_ENCRYPTION_IDENTITIES opens it",
        )),
        OpenError::Damaged(what) => FileProblem::Damaged(what),
        OpenError::Io(e) => FileProblem::Damaged(format!("cannot be decrypted: {e}")),
    }
}

/// The plaintext of an age file as a reader, hashed as it is read.
struct Plaintext<R> {
    inner: R,
    tally: Sha256Tally,
}

impl<R: Read> Read for Plaintext<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.tally.hasher, &buf[..n]);
        Ok(n)
    }
}

impl Reader {
    fn run(&self) -> Result<(), Stop> {
        let path = Path::parse(&self.file.path)
            .map_err(|e| FileProblem::Damaged(format!("is not a valid key: {e}")))?;
        let tally = match (self.options.format, &self.keys) {
            (Format::Parquet, None) => self.read_parquet(&path)?,
            (Format::Parquet, Some(keys)) => self.read_parquet_encrypted(&path, keys)?,
            (Format::Avro | Format::Csv | Format::Json, keys) => {
                self.read_sequential(&path, keys.as_deref())?
            }
        };
        self.check_end(tally)?;
        Ok(())
    }

    fn send(&self, batch: RecordBatch) -> Result<(), Stop> {
        self.tx
            .blocking_send(Message::Batch(batch))
            .map_err(|_| Stop::Abandoned)
    }

    /// A size that differs from the manifest's is damage found before reading any data.
    fn check_size(&self, size: u64) -> Result<(), FileProblem> {
        if self.check && size != self.file.bytes {
            return Err(FileProblem::Damaged(format!(
                "has {size} bytes, the manifest says {}",
                self.file.bytes
            )));
        }
        Ok(())
    }

    fn check_end(&self, tally: Tally) -> Result<(), FileProblem> {
        if !self.check {
            return Ok(());
        }
        self.check_size(tally.bytes)?;
        tally.hasher.check().map_err(FileProblem::Damaged)?;
        if let Some(plain) = tally.plain {
            plain.check().map_err(FileProblem::Damaged)?;
        }
        if tally.rows != self.file.rows {
            return Err(FileProblem::Damaged(format!(
                "holds {} rows, the manifest says {}",
                tally.rows, self.file.rows
            )));
        }
        Ok(())
    }

    /// AVRO, CSV, JSON: one GET, decoded front to back as its chunks arrive.
    fn read_sequential(&self, path: &Path, keys: Option<&Identities>) -> Result<Tally, Stop> {
        let result = self
            .handle
            .block_on(self.os.get(path))
            .map_err(|e| store_problem(path, e))?;
        self.check_size(result.meta.size)?;
        let mut body = Body {
            handle: &self.handle,
            stream: result.into_stream(),
            chunk: Bytes::new(),
            tally: Tally::new(&self.file),
            failure: None,
        };
        let mut rows = 0;
        let mut plain = None;
        let decoded = match keys {
            None => self.decode_sequential(&mut body, &mut rows),
            Some(keys) => self.decode_encrypted(&mut body, keys, &mut rows, &mut plain),
        };
        // A read that failed surfaces in the decoder as an I/O error: it is the store's.
        if let Some(e) = body.failure.take() {
            return Err(store_problem(path, e).into());
        }
        // Bytes the decoder did not need (none, in a file this service wrote) still count, and
        // after a decoding error the rest is hashed to tell a changed file from a bug.
        let drained = std::io::copy(&mut body, &mut std::io::sink());
        if let Some(e) = body.failure.take() {
            return Err(store_problem(path, e).into());
        }
        drained.map_err(|e| FileProblem::Storage(Error::internal(e.to_string())))?;
        let tally = Tally {
            rows,
            plain,
            ..body.tally
        };
        match decoded {
            Err(stop) => Err(self.changed_or(stop, tally)),
            Ok(()) => Ok(tally),
        }
    }

    /// `stop` (a file that does not decode), or, when the file's checksum (the whole file
    /// hashed in `tally`) differs from the manifest's, that: the file was changed after the
    /// backup wrote it, which says more than where its decoder gave up.
    fn changed_or(&self, stop: Stop, tally: Tally) -> Stop {
        let damaged = matches!(stop, Stop::Problem(FileProblem::Damaged(_)));
        if damaged
            && self.check
            && tally.bytes == self.file.bytes
            && let Err(changed) = tally.hasher.check()
        {
            return FileProblem::Damaged(changed).into();
        }
        stop
    }

    /// Decrypts `body` as it is read and decodes the plaintext, read to its very end (where a
    /// file cut short is found); the plaintext's hash in `plain`.
    fn decode_encrypted(
        &self,
        body: &mut Body<'_>,
        keys: &Identities,
        rows: &mut u64,
        plain: &mut Option<Sha256Tally>,
    ) -> Result<(), Stop> {
        let reader = encryption::open(std::io::BufReader::new(&mut *body), keys)
            .map_err(|e| Stop::Problem(open_problem(e)))?;
        let mut text = Plaintext {
            inner: reader,
            tally: Sha256Tally::new(&self.file),
        };
        let decoded = self.decode_sequential(&mut text, rows);
        let drained = std::io::copy(&mut text, &mut std::io::sink());
        *plain = Some(text.tally);
        decoded?;
        drained.map_err(|e| FileProblem::Damaged(format!("cannot be decrypted: {e}")))?;
        Ok(())
    }

    fn decode_sequential(&self, input: impl Read, rows: &mut u64) -> Result<(), Stop> {
        let decoder =
            decode_stream(input, self.schema.clone(), &self.options).map_err(undecodable)?;
        for batch in decoder {
            let batch = batch.map_err(undecodable)?;
            *rows += batch.num_rows() as u64;
            self.send(batch)?;
        }
        Ok(())
    }

    /// The size of the file as stored, checked against the manifest before anything is read.
    fn stored_size(&self, path: &Path) -> Result<u64, FileProblem> {
        let size = self
            .handle
            .block_on(self.os.head(path))
            .map_err(|e| store_problem(path, e))?
            .size;
        self.check_size(size)?;
        Ok(size)
    }

    /// PARQUET: the footer first, then row group by row group in file order, hashing every
    /// byte in order (the leading magic, gaps, page indexes and the footer included).
    fn read_parquet(&self, path: &Path) -> Result<Tally, Stop> {
        let size = self.stored_size(path)?;
        self.decode_parquet(&Stored { reader: self, path }, size, Tally::new(&self.file))
    }

    /// An encrypted PARQUET file: its plaintext decoded as [`Self::read_parquet`] decodes a
    /// file in clear, its ciphertext hashed on the way ([`super::cipher`]).
    fn read_parquet_encrypted(&self, path: &Path, keys: &Identities) -> Result<Tally, Stop> {
        let size = self.stored_size(path)?;
        let state = Rc::new(RefCell::new(CipherState {
            hasher: FileHasher::for_entry(&self.file),
            hashed: 0,
            failure: None,
        }));
        let object = CipherObject::new(
            self.handle.clone(),
            self.os.clone(),
            path.clone(),
            size,
            state.clone(),
        );
        let reader = encryption::open_seekable(object, keys).map_err(|e| {
            match state.borrow_mut().failure.take() {
                Some(failure) => store_problem(path, failure),
                None => open_problem(e),
            }
        })?;
        let source = Decrypted {
            plain: RefCell::new(reader),
            state: &state,
            path,
        };
        let plain_size = source
            .plain
            .borrow_mut()
            .seek(SeekFrom::End(0))
            .map_err(|e| source.problem(&e))?;
        let mut plain = Tally::new(&self.file);
        plain.hasher = FileHasher::Sha256 {
            hasher: sha2::Digest::new(),
            expected: String::new(),
        };
        let decoded = self.decode_parquet(&source, plain_size, plain);
        drop(source);
        let plain = decoded?;
        CipherObject::hash_rest(&self.handle, &self.os, path, size, &state)
            .map_err(|e| store_problem(path, e))?;
        let state = Rc::try_unwrap(state)
            .map_err(|_| FileProblem::Storage(Error::internal("the ciphertext is still in use")))?
            .into_inner();
        let FileHasher::Sha256 { hasher, .. } = plain.hasher else {
            return Err(FileProblem::Storage(Error::internal("plaintext hasher lost")).into());
        };
        Ok(Tally {
            hasher: state.hasher,
            bytes: state.hashed,
            rows: plain.rows,
            plain: Some(Sha256Tally {
                hasher,
                expected: self
                    .file
                    .plaintext_sha256
                    .as_ref()
                    .map(|s| s.to_ascii_lowercase()),
            }),
        })
    }

    /// PARQUET from `source` (`size` bytes): the footer, the row groups in file order, every
    /// byte hashed in order into `tally`.
    fn decode_parquet(
        &self,
        source: &dyn Ranges,
        size: u64,
        mut tally: Tally,
    ) -> Result<Tally, Stop> {
        let (footer, tail) = self.read_footer(source, size)?;
        if self.check && footer.rows() != self.file.rows {
            // Found from the footer alone, before any data is read.
            return Err(FileProblem::Damaged(format!(
                "holds {} rows, the manifest says {}",
                footer.rows(),
                self.file.rows
            ))
            .into());
        }
        let tail_start = size - tail.len() as u64;
        let decoded = self.decode_row_groups(source, &footer, &tail, tail_start, &mut tally);
        if matches!(decoded, Err(Stop::Abandoned)) {
            return decoded.map(|()| tally);
        }
        // After the last row group (or the one that did not decode): page indexes, bloom
        // filters, then the footer already held.
        if tally.bytes < tail_start {
            source.hash(tally.bytes..tail_start, &mut tally)?;
        }
        let held = usize::try_from(tally.bytes.saturating_sub(tail_start)).unwrap_or(usize::MAX);
        if let Some(rest) = tail.get(held..) {
            tally.hash(rest);
        }
        match decoded {
            Err(stop) => Err(self.changed_or(stop, tally)),
            Ok(()) => Ok(tally),
        }
    }

    /// Fetches, hashes and decodes each row group in file order.
    fn decode_row_groups(
        &self,
        source: &dyn Ranges,
        footer: &ParquetLayout,
        tail: &Bytes,
        tail_start: u64,
        tally: &mut Tally,
    ) -> Result<(), Stop> {
        for group in footer.row_groups() {
            // From where hashing stopped (or the group's start, for a group that overlaps
            // bytes already hashed) to the group's end: gaps are hashed, the group kept.
            let from = group.start.min(tally.bytes);
            let bytes = self.fetch(source, from..group.end, tail, tail_start)?;
            let new = usize::try_from(tally.bytes.saturating_sub(from)).unwrap_or(usize::MAX);
            if let Some(unhashed) = bytes.get(new..) {
                tally.hash(unhashed);
            }
            let part = bytes.slice(usize::try_from(group.start - from).unwrap_or(0)..);
            let decoder = footer
                .decode_row_group(*group, part, &self.schema, self.options.batch_size)
                .map_err(undecodable)?;
            for batch in decoder {
                let batch = batch.map_err(undecodable)?;
                tally.rows += batch.num_rows() as u64;
                self.send(batch)?;
            }
        }
        Ok(())
    }

    /// The footer, from the file's last bytes (more of them when the footer is longer).
    fn read_footer(&self, source: &dyn Ranges, size: u64) -> Result<(ParquetLayout, Bytes), Stop> {
        let mut tail_len = PARQUET_TAIL.min(size);
        loop {
            let tail = source.get(size - tail_len..size)?;
            match ParquetLayout::parse(&tail, size).map_err(undecodable)? {
                FooterParse::Parsed(footer) => return Ok((footer, tail)),
                FooterParse::NeedTail(needed) if needed > tail_len && needed <= size => {
                    tail_len = needed;
                }
                FooterParse::NeedTail(_) => {
                    return Err(FileProblem::Damaged(
                        "cannot be decoded: PARQUET: the footer is cut off".into(),
                    )
                    .into());
                }
            }
        }
    }

    /// The bytes `range`, from the tail already held when they lie in it.
    fn fetch(
        &self,
        source: &dyn Ranges,
        range: Range<u64>,
        tail: &Bytes,
        tail_start: u64,
    ) -> Result<Bytes, FileProblem> {
        if range.start >= tail_start {
            let from = usize::try_from(range.start - tail_start).unwrap_or(usize::MAX);
            let to = usize::try_from(range.end - tail_start).unwrap_or(usize::MAX);
            if let Some(held) = tail.get(from..to) {
                return Ok(tail.slice_ref(held));
            }
        }
        source.get(range)
    }

    fn get_range(&self, path: &Path, range: Range<u64>) -> Result<Bytes, FileProblem> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.handle.block_on(async {
            let mut stream = self
                .os
                .get_opts(path, ranged(range.clone()))
                .await
                .map_err(|e| store_problem(path, e))?
                .into_stream();
            let mut bytes = BytesMut::with_capacity(
                usize::try_from(range.end - range.start).unwrap_or_default(),
            );
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.map_err(|e| store_problem(path, e))?);
            }
            Ok(bytes.freeze())
        })
    }

    /// Hashes the bytes `range` as they arrive, holding none of them.
    fn hash_range(
        &self,
        path: &Path,
        range: Range<u64>,
        tally: &mut Tally,
    ) -> Result<(), FileProblem> {
        self.handle.block_on(async {
            let mut stream = self
                .os
                .get_opts(path, ranged(range))
                .await
                .map_err(|e| store_problem(path, e))?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                tally.hash(&chunk.map_err(|e| store_problem(path, e))?);
            }
            Ok(())
        })
    }
}

fn ranged(range: Range<u64>) -> GetOptions {
    GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..Default::default()
    }
}

/// A GET's body as a blocking `Read` for the decoders, hashing and counting each chunk as it
/// arrives. A failed read is kept in `failure` (the decoder only sees an I/O error).
struct Body<'a> {
    handle: &'a Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    tally: Tally,
    failure: Option<object_store::Error>,
}

impl std::io::Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.tally.hash(&chunk);
                    self.chunk = chunk;
                }
                Some(Err(e)) => {
                    let message = e.to_string();
                    self.failure = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
