//! Output buffers shared by the encoders: a drainable buffer for the container formats (AVRO,
//! PARQUET), whose writers own their sink, and a plain-or-gzip sink for the text formats (CSV,
//! JSON), plus gzip detection on read (as the bytes arrive).

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use flate2::write::GzEncoder;

use super::FormatError;

/// A `Write` sink whose bytes can be taken while another writer still owns a clone of it.
/// The AVRO and PARQUET writers take their sink by value and only give it back at the end;
/// sharing it lets [`super::FileEncoder::take_output`] stream bytes out as blocks are written.
///
/// Bytes are kept in chunks of [`CHUNK_BYTES`], never in one growing buffer: a Parquet row group
/// (16 MiB) written into a `Vec` grew it by doubling, each step copying it, and a row group just
/// over a power of two held twice its size, for each writer at once; in chunks it costs its own
/// size, and each chunk goes to the upload as it is, without being joined.
#[derive(Clone, Default)]
pub(super) struct SharedBuffer(Arc<Mutex<Chunks>>);

/// At glibc's mmap threshold (see `main.rs`): each chunk is a mapping of its own, returned to the
/// system when its upload is done.
const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Default)]
struct Chunks {
    full: Vec<Bytes>,
    current: Vec<u8>,
    len: usize,
}

impl SharedBuffer {
    fn lock(&self) -> MutexGuard<'_, Chunks> {
        // A panic while holding the lock leaves plain bytes behind; they are still bytes.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn take(&self) -> Encoded {
        let mut chunks = self.lock();
        let mut full = std::mem::take(&mut chunks.full);
        if !chunks.current.is_empty() {
            full.push(Bytes::from(std::mem::take(&mut chunks.current)));
        }
        chunks.len = 0;
        Encoded(full)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut chunks = self.lock();
        let mut rest = buf;
        while !rest.is_empty() {
            if chunks.current.capacity() == 0 {
                chunks.current = Vec::with_capacity(CHUNK_BYTES);
            }
            let room = chunks.current.capacity() - chunks.current.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            chunks.current.extend_from_slice(now);
            rest = later;
            if chunks.current.len() == chunks.current.capacity() {
                let full = Bytes::from(std::mem::take(&mut chunks.current));
                chunks.full.push(full);
            }
        }
        chunks.len += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encoded bytes in the pieces they were written in: joining them would copy them all.
#[derive(Debug, Default, Clone)]
pub struct Encoded(Vec<Bytes>);

impl Encoded {
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.0
    }

    /// The bytes in one piece (a copy unless there is only one chunk): for tests and small files.
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

impl From<Bytes> for Encoded {
    fn from(bytes: Bytes) -> Self {
        Encoded(vec![bytes])
    }
}

impl IntoIterator for Encoded {
    type Item = Bytes;
    type IntoIter = std::vec::IntoIter<Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Where CSV and JSON text goes: straight into a buffer, or through gzip into it.
pub(super) enum TextSink {
    Plain(Vec<u8>),
    Gzip {
        encoder: Box<GzEncoder<Vec<u8>>>,
        /// One batch of text on its way into the encoder; kept to be reused by the next batch.
        text: Vec<u8>,
    },
}

impl TextSink {
    pub(super) fn new(gzip: bool) -> Self {
        if gzip {
            TextSink::Gzip {
                encoder: Box::new(GzEncoder::new(Vec::new(), flate2::Compression::default())),
                text: Vec::new(),
            }
        } else {
            TextSink::Plain(Vec::new())
        }
    }

    /// Writes bytes such as a header line.
    pub(super) fn write_all(&mut self, text: &[u8]) -> io::Result<()> {
        match self {
            TextSink::Plain(out) => {
                out.extend_from_slice(text);
                Ok(())
            }
            TextSink::Gzip { encoder, .. } => encoder.write_all(text),
        }
    }

    /// Lets `encode` append one batch's text to a buffer with `capacity` bytes to spare: the
    /// output itself when plain, so the text is written once and never copied; a reused buffer
    /// handed to gzip in one call otherwise (gzip is slow on many small writes). When `encode`
    /// fails, nothing of the batch is kept; gzip's own errors go through `io_error`.
    pub(super) fn write_batch(
        &mut self,
        capacity: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), FormatError>,
        io_error: impl FnOnce(io::Error) -> FormatError,
    ) -> Result<(), FormatError> {
        match self {
            TextSink::Plain(out) => {
                let start = out.len();
                out.reserve(capacity);
                let result = encode(out);
                if result.is_err() {
                    out.truncate(start);
                }
                result
            }
            TextSink::Gzip { encoder, text } => {
                text.clear();
                text.reserve(capacity);
                encode(text)?;
                encoder.write_all(text).map_err(io_error)
            }
        }
    }

    /// The compressed bytes produced so far. The gzip encoder only appends to its inner buffer,
    /// so draining that buffer between writes leaves a valid stream.
    pub(super) fn take(&mut self) -> Bytes {
        let out = match self {
            TextSink::Plain(out) => out,
            TextSink::Gzip { encoder, .. } => encoder.get_mut(),
        };
        Bytes::from(std::mem::take(out))
    }

    pub(super) fn pending_size(&self) -> usize {
        match self {
            TextSink::Plain(out) => out.len(),
            // Text still inside the compressor is not counted: at most its window (32 KiB).
            TextSink::Gzip { encoder, .. } => encoder.get_ref().len(),
        }
    }

    pub(super) fn finish(self) -> io::Result<Bytes> {
        match self {
            TextSink::Plain(out) => Ok(Bytes::from(out)),
            TextSink::Gzip { encoder, .. } => (*encoder).finish().map(Bytes::from),
        }
    }
}

/// The first two bytes of every gzip member. No UTF-8 text starts with them (0x8b is a
/// continuation byte), so CSV and JSON files are recognised whatever their name says.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The text of `reader`, gunzipped as it is read when it is gzip (all members, as `gzip -d` and
/// BigQuery read them). Looks at the first two bytes only, however the reader splits them.
pub(super) fn maybe_gunzip<'a>(mut reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; GZIP_MAGIC.len()];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = io::Cursor::new(head[..filled].to_vec()).chain(reader);
    Ok(if head[..filled] == GZIP_MAGIC {
        Box::new(flate2::read::MultiGzDecoder::new(whole))
    } else {
        Box::new(whole)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the sizes of the writes, the bytes come out whole and in order, in chunks of at
    /// most CHUNK_BYTES, none of them a copy of a buffer grown past it.
    #[test]
    fn shared_buffer_keeps_bytes_in_bounded_chunks() {
        let mut buffer = SharedBuffer::default();
        let mut written = Vec::new();
        for (i, size) in [10, CHUNK_BYTES - 10, 1, 3 * CHUNK_BYTES + 7, 0, 4096]
            .into_iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
            buffer.write_all(&bytes).unwrap();
            written.extend_from_slice(&bytes);
        }
        assert_eq!(buffer.len(), written.len());
        let taken = buffer.take();
        assert!(taken.chunks().iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(taken.len(), written.len());
        assert_eq!(taken.to_bytes(), written);
        // Taking empties it; later writes start afresh.
        assert_eq!(buffer.len(), 0);
        assert!(buffer.take().is_empty());
        buffer.write_all(b"tail").unwrap();
        assert_eq!(buffer.take().to_bytes(), &b"tail"[..]);
    }
}
