//! One file's bytes encrypted for new recipients as they pass (a copy that re-encrypts): from
//! clear, or from an age file the service's identities open. Push-style (bytes in, bytes out)
//! for the copy's pump; age's decryptor reads, so decryption runs on a thread of its own fed
//! through a bounded channel: memory per file is a few input chunks and one age chunk.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::{Buf, Bytes};
use sha2::{Digest, Sha256};

use super::{Encryptor, Identities, OpenError, Recipients, open};
use crate::error::{Error, ErrorKind};

/// Input chunks waiting for the decrypting thread.
const QUEUED: usize = 4;

/// The encryption of one file for new recipients.
pub struct Recrypt {
    mode: Mode,
}

enum Mode {
    /// The source is in clear.
    Encrypt { encryptor: Encryptor, plain: Sha256 },
    /// The source is an age file: decrypted and encrypted again on a thread.
    Reencrypt {
        input: Option<SyncSender<Bytes>>,
        output: Receiver<Bytes>,
        worker: Option<JoinHandle<Result<String, Error>>>,
    },
}

impl Recrypt {
    /// For a file in clear.
    pub fn encrypt(recipients: &Recipients) -> Result<Self, Error> {
        Ok(Self {
            mode: Mode::Encrypt {
                encryptor: Encryptor::new(recipients)?,
                plain: Sha256::new(),
            },
        })
    }

    /// For an age file that `identities` open.
    pub fn reencrypt(
        identities: Arc<Identities>,
        recipients: Arc<Recipients>,
    ) -> Result<Self, Error> {
        let (input, queue) = sync_channel::<Bytes>(QUEUED);
        let (sender, output) = std::sync::mpsc::channel::<Bytes>();
        let encryptor = Encryptor::new(&recipients)?;
        let worker = std::thread::Builder::new()
            .name("bqb-recrypt".into())
            .spawn(move || recrypt(queue, sender, &identities, encryptor))
            .map_err(|e| Error::internal(format!("starting re-encryption: {e}")))?;
        Ok(Self {
            mode: Mode::Reencrypt {
                input: Some(input),
                output,
                worker: Some(worker),
            },
        })
    }

    /// The output for the next piece of input (possibly empty).
    pub fn update(&mut self, bytes: Bytes) -> Result<Bytes, Error> {
        match &mut self.mode {
            Mode::Encrypt { encryptor, plain } => {
                plain.update(&bytes);
                encryptor.write(&bytes)
            }
            Mode::Reencrypt {
                input,
                output,
                worker,
            } => {
                let sent = input.as_ref().map(|tx| tx.send(bytes));
                if !matches!(sent, Some(Ok(()))) {
                    // The worker stopped: its answer says why.
                    input.take();
                    return Err(join(worker.take()).err().unwrap_or_else(|| {
                        Error::internal("re-encryption stopped before its input ended")
                    }));
                }
                Ok(drain(output))
            }
        }
    }

    /// The rest of the output, and the SHA-256 of the plaintext that passed.
    pub fn finish(self) -> Result<(Bytes, String), Error> {
        match self.mode {
            Mode::Encrypt { encryptor, plain } => {
                Ok((encryptor.finish()?, hex::encode(plain.finalize())))
            }
            Mode::Reencrypt {
                input,
                output,
                worker,
            } => {
                drop(input);
                let sha = join(worker)?;
                Ok((drain(&output), sha))
            }
        }
    }
}

fn join(worker: Option<JoinHandle<Result<String, Error>>>) -> Result<String, Error> {
    match worker.map(JoinHandle::join) {
        Some(Ok(result)) => result,
        Some(Err(_)) => Err(Error::internal("re-encryption panicked")),
        None => Err(Error::internal("re-encryption already ended")),
    }
}

/// Everything output so far, in one piece.
fn drain(output: &Receiver<Bytes>) -> Bytes {
    let pieces: Vec<Bytes> = output.try_iter().collect();
    match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.into_iter().next().unwrap_or_default(),
        _ => Bytes::from(pieces.concat()),
    }
}

/// The worker: decrypts what arrives on `queue`, encrypts it again into `sender`; the plaintext's
/// SHA-256 when every chunk was authentic and the file was whole.
fn recrypt(
    queue: Receiver<Bytes>,
    sender: std::sync::mpsc::Sender<Bytes>,
    identities: &Identities,
    mut encryptor: Encryptor,
) -> Result<String, Error> {
    let damaged = |what: String| Error::new(ErrorKind::DamagedBackup, what);
    let reader = BufReader::new(Queue {
        queue,
        chunk: Bytes::new(),
    });
    let mut plain = open(reader, identities).map_err(|e| match e {
        OpenError::NoMatchingKey => Error::new(
            ErrorKind::PermissionDenied,
            "none of the identities in BQB_ENCRYPTION_IDENTITIES opens the file",
        ),
        OpenError::Damaged(what) => damaged(what),
        OpenError::Io(e) => damaged(format!("cannot be decrypted: {e}")),
    })?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = plain
            .read(&mut buf)
            .map_err(|e| damaged(format!("cannot be decrypted: {e}")))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        let out = encryptor.write(&buf[..n])?;
        if !out.is_empty() && sender.send(out).is_err() {
            return Err(Error::cancelled("the copy stopped"));
        }
    }
    let _ = sender.send(encryptor.finish()?);
    Ok(hex::encode(sha.finalize()))
}

/// The input chunks as a blocking reader; the end of input when the sender is dropped.
struct Queue {
    queue: Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for Queue {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.queue.recv() {
                Ok(chunk) => self.chunk = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
