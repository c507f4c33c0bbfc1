//! Avro object container file framing, followed as the bytes of a file pass on their way to
//! arrow-avro's reader: the header, then every block's row count, size and sync marker. The
//! reader stops quietly at a file cut off inside a block; this turns that into an error and
//! counts the rows the blocks announce. Pure: bytes in, no I/O of its own.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The input, its bytes followed through [`Framing`] as they pass: arrow-avro's reader stops
/// quietly at a file cut off inside a block, which this turns into an error.
pub(super) struct FramedRead<'a> {
    inner: Box<dyn Read + 'a>,
    framing: Framing,
    announced: Arc<AtomicU64>,
}

impl<'a> FramedRead<'a> {
    /// `announced` is kept at the rows of the blocks that passed whole.
    pub(super) fn new(inner: Box<dyn Read + 'a>, announced: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            framing: Framing::default(),
            announced,
        }
    }
}

impl Read for FramedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let invalid =
            |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
        let read = self.inner.read(buf)?;
        if read == 0 {
            self.framing.finish().map_err(invalid)?;
        } else {
            self.framing.feed(&buf[..read]).map_err(invalid)?;
            self.announced.store(self.framing.rows, Ordering::Relaxed);
        }
        Ok(read)
    }
}

/// The steps of an object container file: the magic, the metadata map (blocks of key/value
/// entries, each string a length then its bytes), the sync marker; then data blocks (row count,
/// byte size, data, sync marker) until the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Step {
    #[default]
    Magic,
    MapCount,
    /// The byte size that follows a negative entry count (skipped).
    MapSize,
    KeyLength,
    Key,
    ValueLength,
    Value,
    HeaderSync,
    BlockCount,
    BlockSize,
    BlockData,
    BlockSync,
}

/// Follows the framing of an OCF file byte by byte (bulk for strings and block data), checking
/// every block's sync marker and adding up the rows the blocks announce.
#[derive(Debug, Default)]
struct Framing {
    step: Step,
    /// The zig-zag varint being read: value so far and its bit shift.
    long: u64,
    shift: u32,
    /// Bytes of the magic or sync marker matched so far.
    matched: usize,
    /// Bytes of the current string or block data still to pass.
    left: u64,
    /// Entries left in the current metadata map block.
    entries: u64,
    sync: [u8; 16],
    block_rows: u64,
    /// Rows of the blocks that passed whole.
    rows: u64,
    /// Bytes seen so far, for messages.
    offset: u64,
}

const OCF_MAGIC: &[u8; 4] = b"Obj\x01";

impl Framing {
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while let Some(&byte) = bytes.first() {
            match self.step {
                Step::Key | Step::Value | Step::BlockData => {
                    let n = bytes
                        .len()
                        .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                    self.left -= n as u64;
                    self.offset += n as u64;
                    bytes = &bytes[n..];
                    if self.left == 0 {
                        self.after_bytes();
                    }
                    continue;
                }
                Step::Magic => {
                    if byte != OCF_MAGIC[self.matched] {
                        return Err(
                            "the file does not start as an Avro object container file".into()
                        );
                    }
                    self.matched += 1;
                    if self.matched == OCF_MAGIC.len() {
                        self.matched = 0;
                        self.step = Step::MapCount;
                    }
                }
                Step::HeaderSync => {
                    self.sync[self.matched] = byte;
                    self.matched += 1;
                    if self.matched == self.sync.len() {
                        self.matched = 0;
                        self.step = Step::BlockCount;
                    }
                }
                Step::BlockSync => {
                    if byte != self.sync[self.matched] {
                        return Err(format!(
                            "the block ending at byte {} does not end with the file's sync marker",
                            self.offset
                        ));
                    }
                    self.matched += 1;
                    if self.matched == self.sync.len() {
                        self.matched = 0;
                        self.rows = self.rows.saturating_add(self.block_rows);
                        self.step = Step::BlockCount;
                    }
                }
                Step::MapCount
                | Step::MapSize
                | Step::KeyLength
                | Step::ValueLength
                | Step::BlockCount
                | Step::BlockSize => {
                    if let Some(value) = self.long_byte(byte)? {
                        self.after_long(value)?;
                    }
                }
            }
            self.offset += 1;
            bytes = &bytes[1..];
        }
        Ok(())
    }

    /// Adds one byte to the varint being read; its value once complete.
    fn long_byte(&mut self, byte: u8) -> Result<Option<i64>, String> {
        if self.shift >= 64 {
            return Err(format!("an overlong number at byte {}", self.offset));
        }
        self.long |= u64::from(byte & 0x7f) << self.shift;
        if byte & 0x80 != 0 {
            self.shift += 7;
            return Ok(None);
        }
        let zigzag = std::mem::take(&mut self.long);
        self.shift = 0;
        Ok(Some((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64)))
    }

    fn after_long(&mut self, value: i64) -> Result<(), String> {
        let size = |value: i64| {
            u64::try_from(value).map_err(|_| format!("a negative size before byte {}", self.offset))
        };
        match self.step {
            Step::MapCount if value == 0 => self.step = Step::HeaderSync,
            Step::MapCount => {
                self.entries = value.unsigned_abs();
                self.step = if value < 0 {
                    Step::MapSize
                } else {
                    Step::KeyLength
                };
            }
            Step::MapSize => self.step = Step::KeyLength,
            Step::KeyLength => {
                self.left = size(value)?;
                self.step = Step::Key;
                if self.left == 0 {
                    self.after_bytes();
                }
            }
            Step::ValueLength => {
                self.left = size(value)?;
                self.step = Step::Value;
                if self.left == 0 {
                    self.after_bytes();
                }
            }
            Step::BlockCount => {
                self.block_rows = size(value)?;
                self.step = Step::BlockSize;
            }
            Step::BlockSize => {
                self.left = size(value)?;
                self.step = Step::BlockData;
                if self.left == 0 {
                    self.after_bytes();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A string or a block's data has passed whole.
    fn after_bytes(&mut self) {
        self.step = match self.step {
            Step::Key => Step::ValueLength,
            Step::Value => {
                self.entries -= 1;
                if self.entries == 0 {
                    Step::MapCount
                } else {
                    Step::KeyLength
                }
            }
            Step::BlockData => Step::BlockSync,
            other => other,
        };
    }

    /// The input ended: only right after a whole block (or the header) is that its end.
    fn finish(&self) -> Result<(), String> {
        if self.step == Step::BlockCount && self.shift == 0 && self.long == 0 {
            return Ok(());
        }
        let place = match self.step {
            Step::BlockCount | Step::BlockSize | Step::BlockData | Step::BlockSync => "a block",
            _ => "its header",
        };
        Err(format!(
            "the file is cut off inside {place} after {} bytes",
            self.offset
        ))
    }
}
