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
#[derive(Clone, Default)]
pub(super) struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves plain bytes behind; they are still bytes.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.lock()))
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
