//! The object_store clients a [`StorageConfig`](super::StorageConfig) has built, kept per bucket
//! and reused: a client owns an HTTP connection pool (and, for S3 and Azure, its credential
//! cache), so building one per request would pay a TLS handshake and a credential lookup every
//! time. gs:// clients also share one Application Default Credentials provider, so every bucket
//! is served by the same cached token.
//!
//! A client is keyed by what shapes it: its scheme, its bucket (or container) and the settings
//! that reach its builder (an emulator or endpoint, plain HTTP). A repository's prefix is not
//! part of the key: a [`Store`](super::Store) puts the prefix on top of a shared client.
//! Credentials and regions that object_store reads from the process environment are the same
//! for every client of a process, so they are not part of the key either.
//!
//! Callers name arbitrary buckets, so the cache is bounded: past [`CLIENT_CACHE_CAPACITY`]
//! clients, the least recently used one is dropped (stores already opened from it keep it
//! alive until they are done).
//!
//! `file://` and `memory://` stores are not kept here: a local directory needs no connections
//! or credentials, and must be looked at on every open (a read never creates it); memory stores
//! are kept for the whole process by name, elsewhere.
//!
//! Depends on object_store and the GCS credential provider only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use object_store::ObjectStore;

use super::gcs_credentials::AdcTokenProvider;

/// Clients kept at most (one per bucket and endpoint in use): far above what a deployment
/// backs up to, small enough that clients for buckets named once are let go.
pub const CLIENT_CACHE_CAPACITY: usize = 64;

/// What shapes an object_store client, one variant per cloud scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ClientKey {
    Gcs {
        bucket: String,
        /// `STORAGE_EMULATOR_HOST`: no OAuth, requests to this host. `None`: Google's, with the
        /// shared ADC provider.
        emulator_host: Option<String>,
    },
    S3 {
        bucket: String,
        /// `BQB_S3_ENDPOINT` (an S3-compatible store); `None`: AWS.
        endpoint: Option<String>,
        allow_http: bool,
    },
    Azure {
        container: String,
        /// `BQB_AZURE_USE_EMULATOR`: Azurite and its well-known account.
        emulator: bool,
    },
}

/// Built clients by key, least recently used dropped first; shared by a config's clones.
pub(super) struct ClientCache {
    capacity: usize,
    entries: Mutex<Entries>,
    /// Built on the first gs:// open without an emulator, then given to every GCS client.
    gcs_credentials: Mutex<Option<Arc<AdcTokenProvider>>>,
    /// Clients built so far (a cache hit builds none).
    built: AtomicU64,
}

#[derive(Default)]
struct Entries {
    clients: HashMap<ClientKey, Entry>,
    /// Ticks on every use; an entry's `last_used` is the tick of its latest use.
    clock: u64,
}

struct Entry {
    client: Arc<dyn ObjectStore>,
    last_used: u64,
}

impl Default for ClientCache {
    fn default() -> Self {
        Self::with_capacity(CLIENT_CACHE_CAPACITY)
    }
}

impl ClientCache {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::default(),
            gcs_credentials: Mutex::default(),
            built: AtomicU64::new(0),
        }
    }

    /// The client for `key`: the kept one, or one `build` makes (then kept). A failed build is
    /// not kept: the next open tries again.
    pub(super) fn get_or_build<E>(
        &self,
        key: ClientKey,
        build: impl FnOnce(&ClientKey) -> Result<Arc<dyn ObjectStore>, E>,
    ) -> Result<Arc<dyn ObjectStore>, E> {
        if let Some(client) = self.lock().touch(&key) {
            return Ok(client);
        }
        // Built outside the lock: it reads the environment and sets up TLS, and other buckets
        // should not wait for that.
        let built = build(&key)?;
        self.built.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        // Another open of the same bucket may have built one meanwhile: everyone shares the
        // first, so that there is one connection pool per bucket.
        if let Some(client) = entries.touch(&key) {
            return Ok(client);
        }
        if entries.clients.len() >= self.capacity {
            entries.evict_least_recently_used();
        }
        entries.clock += 1;
        let last_used = entries.clock;
        entries.clients.insert(
            key,
            Entry {
                client: built.clone(),
                last_used,
            },
        );
        Ok(built)
    }

    /// The one ADC provider of every GCS client. Not kept when it fails (no credentials found),
    /// so that the error is reported on each open, as before.
    pub(super) fn gcs_credentials(&self) -> Result<Arc<AdcTokenProvider>, String> {
        // A poisoned lock only means another thread panicked while holding it; the slot is
        // still a valid Option.
        let mut slot = self
            .gcs_credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(provider) = &*slot {
            return Ok(provider.clone());
        }
        let provider = Arc::new(AdcTokenProvider::new()?);
        *slot = Some(provider.clone());
        Ok(provider)
    }

    /// Clients built so far by this cache (and its config's clones).
    #[cfg(test)]
    pub(super) fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// Gives the GCS clients `provider` instead of the ADC chain's (tests: no ADC on the box).
    #[cfg(test)]
    pub(super) fn set_gcs_credentials(&self, provider: Arc<AdcTokenProvider>) {
        *self
            .gcs_credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(provider);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().clients.len()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A poisoned lock only means another thread panicked while holding it; the map is
        // still valid (every change to it is a single insert or remove).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Entries {
    /// The kept client for `key`, marked as just used.
    fn touch(&mut self, key: &ClientKey) -> Option<Arc<dyn ObjectStore>> {
        self.clock += 1;
        let now = self.clock;
        let entry = self.clients.get_mut(key)?;
        entry.last_used = now;
        Some(entry.client.clone())
    }

    /// A linear scan: the cache is small, and this only runs when a new bucket is named with
    /// the cache full.
    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .clients
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.clients.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn s3(bucket: &str) -> ClientKey {
        ClientKey::S3 {
            bucket: bucket.into(),
            endpoint: None,
            allow_http: false,
        }
    }

    fn build(_: &ClientKey) -> Result<Arc<dyn ObjectStore>, ()> {
        Ok(Arc::new(InMemory::new()))
    }

    #[test]
    fn a_kept_client_is_reused_and_a_failed_build_is_not_kept() {
        let cache = ClientCache::with_capacity(4);
        let first = cache.get_or_build(s3("a"), build).unwrap();
        let again = cache.get_or_build(s3("a"), build).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(cache.built(), 1);

        assert!(cache.get_or_build(s3("b"), |_| Err("no")).is_err());
        assert_eq!(cache.len(), 1, "the failure is not kept");
        let b = cache.get_or_build(s3("b"), build).unwrap();
        assert!(!Arc::ptr_eq(&first, &b));
    }

    #[test]
    fn past_its_capacity_the_least_recently_used_client_is_dropped() {
        let cache = ClientCache::with_capacity(2);
        let a = cache.get_or_build(s3("a"), build).unwrap();
        cache.get_or_build(s3("b"), build).unwrap();
        // `a` used last: `b` is the one to go when `c` comes.
        cache.get_or_build(s3("a"), build).unwrap();
        cache.get_or_build(s3("c"), build).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.built(), 3);

        let still_a = cache.get_or_build(s3("a"), build).unwrap();
        assert!(Arc::ptr_eq(&a, &still_a), "a, used recently, is kept");
        cache.get_or_build(s3("b"), build).unwrap();
        assert_eq!(cache.built(), 4, "b was dropped and is built again");
        assert_eq!(cache.len(), 2);
    }
}
