//! Execution helpers shared by backup and restore: CPU work on rayon, and how many tables run at
//! once (`settings` declares `BQB_MAX_PARALLEL_TABLES`, the service's limit). Depends on `error`
//! and `config` only.

pub(crate) mod settings;

use std::sync::Arc;

/// Runs CPU-bound work (encoding, decoding, hashing) on the rayon pool, never on the async
/// runtime's threads, and awaits its result. A panic in `f` becomes an internal error.
pub async fn on_rayon<F, R>(f: F) -> Result<R, crate::Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The receiver is gone only if the awaiting task was dropped (cancelled); nothing to do.
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(crate::Error::internal("a CPU task panicked")),
        Err(_) => Err(crate::Error::internal("a CPU task was lost")),
    }
}

/// Tables processed at once: what the request asks (Java's `threadPoolSize` or our
/// `maxParallelTables`), never more than the service allows (`BQB_MAX_PARALLEL_TABLES`).
pub fn parallel_tables(requested: Option<u32>, service_limit: usize) -> usize {
    let limit = service_limit.max(1);
    requested
        .map_or(limit, |n| usize::try_from(n).unwrap_or(limit))
        .clamp(1, limit)
}

/// Gives each item of `weights` to one of `bins` bins so that their sums are as even as they can
/// be: the heaviest first, each to the bin with the least so far (ties to the lowest bin). The
/// same input always gives the same answer; the result is each item's bin, in input order.
pub fn balance(weights: &[u64], bins: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; bins.max(1) as usize];
    let mut bin_of = vec![0u32; weights.len()];
    for item in order {
        let (least, _) = load
            .iter()
            .enumerate()
            .min_by_key(|&(i, l)| (*l, i))
            .unwrap_or((0, &0));
        load[least] += weights[item];
        bin_of[item] = u32::try_from(least).unwrap_or(0);
    }
    bin_of
}

/// Told about each table of a backup or restore as it goes (job records, progress bars).
pub trait Progress: Send + Sync {
    fn table_started(&self, table: &str);
    fn table_finished(&self, table: &str, rows: u64, bytes: u64, files: u64);
    fn table_failed(&self, table: &str, error: &crate::Error);
    /// `bytes` more were written (a copy's progress bar counts bytes; others ignore it).
    fn bytes_written(&self, _bytes: u64) {}
    /// Where the shards of a sharded backup stand (its job record shows it).
    fn shards(&self, _progress: &ShardsProgress) {}
}

/// The shards of a sharded backup as its job follows them: how many there are, how many have
/// reported (finished their part) and what they wrote, and the first shards still missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardsProgress {
    pub total: u32,
    pub reported: u32,
    /// The lowest-numbered shards without a report (at most [`ShardsProgress::MISSING_SHOWN`]).
    #[serde(default)]
    pub missing: Vec<u32>,
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
}

impl ShardsProgress {
    pub const MISSING_SHOWN: usize = 100;
}

/// Two listeners told alike (a job's record and the CLI's progress bar).
pub struct BothProgress(pub Arc<dyn Progress>, pub Arc<dyn Progress>);

impl Progress for BothProgress {
    fn table_started(&self, table: &str) {
        self.0.table_started(table);
        self.1.table_started(table);
    }

    fn table_finished(&self, table: &str, rows: u64, bytes: u64, files: u64) {
        self.0.table_finished(table, rows, bytes, files);
        self.1.table_finished(table, rows, bytes, files);
    }

    fn table_failed(&self, table: &str, error: &crate::Error) {
        self.0.table_failed(table, error);
        self.1.table_failed(table, error);
    }

    fn shards(&self, progress: &ShardsProgress) {
        self.0.shards(progress);
        self.1.shards(progress);
    }

    fn bytes_written(&self, bytes: u64) {
        self.0.bytes_written(bytes);
        self.1.bytes_written(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_may_lower_the_parallelism_but_not_raise_it() {
        assert_eq!(parallel_tables(None, 4), 4);
        assert_eq!(parallel_tables(Some(2), 4), 2);
        assert_eq!(parallel_tables(Some(64), 4), 4);
        assert_eq!(parallel_tables(Some(0), 4), 1);
    }

    #[tokio::test]
    async fn a_panic_on_rayon_is_an_error_not_a_crash() {
        assert_eq!(on_rayon(|| 2 + 2).await.unwrap(), 4);
        let err = on_rayon(|| -> u8 { panic!("boom") }).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal);
    }
}
