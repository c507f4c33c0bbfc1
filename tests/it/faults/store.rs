//! A fault-injecting wrapper around any `ObjectStore` (test support only: installed through
//! `StorageConfig::with_wrapper`, never by the service itself).
//!
//! It sits above object_store's own HTTP retries, so its faults are what the service sees once
//! those have run out: a call that fails outright, a write that landed but whose answer was
//! lost (the caller gets an error; the object is there), a create-if-absent that landed and is
//! answered "already exists" (what a retried create sees of its own first attempt), and slow
//! calls. Faults are drawn from a seeded generator; `enabled` switches them on and off while a
//! test runs. Deletes and aborts are never failed (they are idempotent and object_store
//! retries them; the wire-level suite covers their faults), so that a clean failure can be
//! told from a cleanup that could not run.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// How often each fault happens, per call.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// The call fails without reaching the store.
    pub error: f64,
    /// A write reaches the store, then the answer is lost.
    pub lost_answer: f64,
    /// The call takes `slow` longer.
    pub slow: f64,
    pub slow_by: Duration,
}

/// Counts of what was injected and of multipart uploads.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub lost_answers: AtomicU64,
    pub slow: AtomicU64,
    pub uploads_started: AtomicU64,
    pub uploads_completed: AtomicU64,
    pub uploads_aborted: AtomicU64,
}

impl FaultStats {
    pub fn injected(&self) -> u64 {
        self.errors.load(Ordering::Relaxed) + self.lost_answers.load(Ordering::Relaxed)
    }

    /// Multipart uploads neither completed nor aborted: parts left behind in the store.
    pub fn uploads_left_open(&self) -> u64 {
        self.uploads_started.load(Ordering::Relaxed)
            - self.uploads_completed.load(Ordering::Relaxed)
            - self.uploads_aborted.load(Ordering::Relaxed)
    }
}

/// Shared between the wrapper and the test that reads its counters and switches it.
pub struct FaultControl {
    pub rates: FaultRates,
    /// Only calls on keys containing this are faulted (all when `None`).
    pub only: Option<&'static str>,
    pub enabled: AtomicBool,
    pub stats: FaultStats,
    rng: Mutex<u64>,
}

impl FaultControl {
    pub fn new(seed: u64, rates: FaultRates) -> Arc<Self> {
        Arc::new(Self {
            rates,
            only: None,
            enabled: AtomicBool::new(true),
            stats: FaultStats::default(),
            rng: Mutex::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        })
    }

    /// Faults only calls on keys containing `part`.
    pub fn only_keys_containing(seed: u64, rates: FaultRates, part: &'static str) -> Arc<Self> {
        let mut control = Arc::into_inner(Self::new(seed, rates)).expect("just made");
        control.only = Some(part);
        Arc::new(control)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// The next uniform number in [0, 1) (xorshift64*).
    fn draw(&self) -> f64 {
        let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }

    fn decide(&self, location: Option<&Path>) -> Fault {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let targeted = match (self.only, location) {
            (None, _) => true,
            (Some(part), Some(location)) => location.as_ref().contains(part),
            (Some(_), None) => false,
        };
        if !targeted || !self.enabled.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let r = self.draw();
        let FaultRates {
            error,
            lost_answer,
            slow,
            ..
        } = self.rates;
        if r < error {
            Fault::Error
        } else if r < error + lost_answer {
            Fault::LostAnswer
        } else if r < error + lost_answer + slow {
            Fault::Slow
        } else {
            Fault::None
        }
    }

    /// Counts a fault that was injected.
    fn injected(&self, fault: Fault) -> Fault {
        let counter = match fault {
            Fault::Error => &self.stats.errors,
            Fault::LostAnswer => &self.stats.lost_answers,
            Fault::Slow => &self.stats.slow,
            Fault::None => return fault,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        fault
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Error,
    LostAnswer,
    Slow,
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faults",
        source: format!("injected fault: {what} (connection reset by peer)").into(),
    }
}

pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    control: Arc<FaultControl>,
}

impl FaultyStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, control: Arc<FaultControl>) -> Arc<dyn ObjectStore> {
        Arc::new(Self { inner, control })
    }

    /// Draws a fault for a read (or a write that can only fail outright).
    async fn before(&self, what: &str, location: Option<&Path>) -> object_store::Result<()> {
        let fault = match self.control.decide(location) {
            Fault::LostAnswer => Fault::None,
            fault => self.control.injected(fault),
        };
        match fault {
            Fault::Error => Err(injected(what)),
            Fault::Slow => {
                tokio::time::sleep(self.control.rates.slow_by).await;
                Ok(())
            }
            Fault::None | Fault::LostAnswer => Ok(()),
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        match self.control.injected(self.control.decide(Some(location))) {
            Fault::Error => Err(injected("put")),
            Fault::LostAnswer => {
                let landed = self.inner.put_opts(location, payload, opts).await;
                match landed {
                    // A create whose retry finds its own first attempt is answered "exists".
                    Ok(_) if create && self.control.draw() < 0.5 => {
                        Err(object_store::Error::AlreadyExists {
                            path: location.to_string(),
                            source: "injected fault: a retried create found its own write".into(),
                        })
                    }
                    Ok(_) => Err(injected("put answer lost")),
                    Err(e) => Err(e),
                }
            }
            Fault::Slow => {
                tokio::time::sleep(self.control.rates.slow_by).await;
                self.inner.put_opts(location, payload, opts).await
            }
            Fault::None => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.before("create multipart upload", Some(location))
            .await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        self.control
            .stats
            .uploads_started
            .fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(FaultyUpload {
            location: location.clone(),
            inner: upload,
            control: self.control.clone(),
            ended: false,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.before("get", Some(location)).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.before("get ranges", Some(location)).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.control.decide(prefix) == Fault::Error {
            self.control.injected(Fault::Error);
            return futures::stream::once(async { Err(injected("list")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.before("list", prefix).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.before("copy", Some(to)).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

struct FaultyUpload {
    location: Path,
    inner: Box<dyn MultipartUpload>,
    control: Arc<FaultControl>,
    ended: bool,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultyUpload")
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let fault = self
            .control
            .injected(self.control.decide(Some(&self.location)));
        let part = self.inner.put_part(data);
        Box::pin(async move {
            match fault {
                Fault::Error => Err(injected("upload part")),
                Fault::LostAnswer => {
                    part.await?;
                    Err(injected("upload part answer lost"))
                }
                Fault::Slow | Fault::None => part.await,
            }
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        match self
            .control
            .injected(self.control.decide(Some(&self.location)))
        {
            Fault::Error => Err(injected("complete multipart upload")),
            Fault::LostAnswer => {
                let done = self.inner.complete().await?;
                self.mark_ended(true);
                let _ = done;
                Err(injected("complete multipart upload answer lost"))
            }
            Fault::Slow | Fault::None => {
                let done = self.inner.complete().await?;
                self.mark_ended(true);
                Ok(done)
            }
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let result = self.inner.abort().await;
        self.mark_ended(false);
        result
    }
}

impl FaultyUpload {
    fn mark_ended(&mut self, completed: bool) {
        if self.ended {
            return;
        }
        self.ended = true;
        let counter = if completed {
            &self.control.stats.uploads_completed
        } else {
            &self.control.stats.uploads_aborted
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
