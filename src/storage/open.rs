//! Opens a storage URI as a [`Store`]: the object_store client of its bucket (built once and
//! kept, see `clients.rs`) rooted at the URI's prefix; checks the allow-list on every
//! open, and creates a local root only for a write.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::StorageSettings;
use super::clients::{ClientCache, ClientKey};
use super::gcs_objects::{GcsObjects, ObjectChecksums};
use super::{Failure, StorageError, delete_if_exists, object_error, storage_failure};
use crate::domain::{StorageAllowList, StorageScheme, StorageUri};
use crate::encryption::EncryptionSettings;
use crate::error::{Error, ErrorKind, FieldError};

/// Retries of one storage request: object_store retries 5xx, 429, timeouts and connection errors
/// with exponential backoff; these bound it. Kept here as the one place storage retries are set.
pub const STORAGE_MAX_RETRIES: usize = 8;
pub const STORAGE_RETRY_TIMEOUT: Duration = Duration::from_secs(180);
/// A single storage request (one part of a multipart upload included) may take this long.
pub const STORAGE_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Wraps every store opened (fault injection in tests; nothing in the service sets one).
pub type StoreWrapper =
    Arc<dyn Fn(&StorageUri, Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync>;

/// What the caller will do with a store. Reading never creates anything: a `file://` root that
/// does not exist is a 404 on read, and only a write (a backup, the state store) creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Endpoint and emulator settings for every store, which roots callers may name, and the
/// clients built so far (shared by clones: one client per bucket for the whole service).
#[derive(Clone, Default)]
pub struct StorageConfig {
    pub settings: StorageSettings,
    /// `None`: every URI may be opened (the CLI without `BQB_ALLOWED_STORAGE`).
    confinement: Option<StorageAllowList>,
    wrapper: Option<StoreWrapper>,
    /// Keyed by the settings that shape each client too, so a clone whose `settings` were
    /// changed never gets a client built for others.
    clients: Arc<ClientCache>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("settings", &self.settings)
            .field("confinement", &self.confinement)
            .field("wrapped", &self.wrapper.is_some())
            .finish()
    }
}

impl StorageConfig {
    /// For the CLI: confined only when `BQB_ALLOWED_STORAGE` is set, since whoever runs it
    /// already owns the disk it would write to.
    pub fn from_settings(settings: &StorageSettings) -> Self {
        Self {
            settings: settings.clone(),
            confinement: settings.allowed.clone(),
            wrapper: None,
            clients: Arc::default(),
        }
    }

    /// For `serve`, whose callers do not own its disk: `BQB_ALLOWED_STORAGE`, or by default
    /// every cloud bucket and no local directory or memory.
    pub fn for_service(settings: &StorageSettings) -> Self {
        Self {
            settings: settings.clone(),
            confinement: Some(
                settings
                    .allowed
                    .clone()
                    .unwrap_or_else(StorageAllowList::service_default),
            ),
            wrapper: None,
            clients: Arc::default(),
        }
    }

    /// Every store this config opens is passed through `wrapper` (test support: the fault
    /// injection suite wraps the real clients to fail chosen calls). It wraps each store opened,
    /// on top of the shared client, so every store it is meant for is wrapped, whether its
    /// client was just built or kept from an earlier open.
    pub fn with_wrapper(mut self, wrapper: StoreWrapper) -> Self {
        self.wrapper = Some(wrapper);
        self
    }

    /// The allow-list in force, as `BQB_ALLOWED_STORAGE` would write it (`any` without one).
    pub fn confinement_text(&self) -> String {
        self.confinement
            .as_ref()
            .map_or_else(|| "any".to_owned(), ToString::to_string)
    }

    /// Refuses `uri` unless the allow-list admits it. `field` names where the caller wrote it
    /// (`backupStorage.gcsOptions.uri`, the `uri` query parameter), for the error. A file://
    /// root is also checked as the disk resolves it, so that a symlink under an allowed
    /// directory cannot lead out of it.
    pub fn admit(&self, uri: &StorageUri, field: &str) -> Result<(), StorageError> {
        let Some(allowed) = &self.confinement else {
            return Ok(());
        };
        let refuse = |reason: String| StorageError::NotAllowed {
            field: field.to_owned(),
            uri: uri.to_string(),
            reason,
        };
        allowed.admits(uri).map_err(|r| refuse(r.to_string()))?;
        if let Some(path) = uri.file_path() {
            let resolved = resolve_existing(std::path::Path::new(&path));
            let inside = allowed.file_dirs().any(|dir| {
                let dir = PathBuf::from(dir);
                resolved.starts_with(std::fs::canonicalize(&dir).unwrap_or(dir))
            });
            if !inside {
                // Where it leads stays in the log: the caller learns nothing of this disk.
                tracing::warn!(uri = %uri, resolved = %resolved.display(), "a file:// URI leads outside the allowed directories");
                return Err(refuse(format!(
                    "`{uri}` is refused: on disk it leads outside the directories BQB_ALLOWED_STORAGE allows (a symbolic link)"
                )));
            }
        }
        Ok(())
    }

    /// Opens the store a caller named in `field` (a request body, a query parameter, a CLI
    /// flag): refused unless admitted (see [`Self::admit`]). No network call is made.
    pub fn open(
        &self,
        uri: &StorageUri,
        field: &str,
        access: Access,
    ) -> Result<Store, StorageError> {
        self.admit(uri, field)?;
        Ok(self
            .open_at(uri, Some(field), access)?
            .from_request_field(field))
    }

    /// Opens a store the operator configured (`BQB_STATE_URI`), which no allow-list confines.
    pub fn open_configured(&self, uri: &StorageUri, access: Access) -> Result<Store, StorageError> {
        self.open_at(uri, None, access)
    }

    fn open_at(
        &self,
        uri: &StorageUri,
        field: Option<&str>,
        access: Access,
    ) -> Result<Store, StorageError> {
        let mut store = self.open_client(uri, field, access)?;
        store.encryption = Arc::new(self.settings.encryption.clone());
        Ok(match &self.wrapper {
            Some(wrap) => Store {
                inner: wrap(uri, store.inner.clone()),
                ..store
            },
            None => store,
        })
    }

    fn open_client(
        &self,
        uri: &StorageUri,
        field: Option<&str>,
        access: Access,
    ) -> Result<Store, StorageError> {
        let text = uri.to_string();
        let open_err = |source| StorageError::Open {
            uri: text.clone(),
            source,
        };
        let bucket = || {
            uri.bucket()
                .map(str::to_string)
                .ok_or_else(|| StorageError::Config {
                    uri: text.clone(),
                    message: "bucket name missing".into(),
                })
        };
        let base: Arc<dyn ObjectStore> = match uri.scheme() {
            // One client per bucket, kept and shared by every store of that bucket.
            StorageScheme::Gs => self.client(
                ClientKey::Gcs {
                    bucket: bucket()?,
                    emulator_host: self.settings.gcs_emulator_host.clone(),
                },
                &text,
            )?,
            StorageScheme::S3 => self.client(
                ClientKey::S3 {
                    bucket: bucket()?,
                    endpoint: self.settings.s3_endpoint.clone(),
                    allow_http: self.settings.s3_allow_http,
                },
                &text,
            )?,
            StorageScheme::Az => self.client(
                ClientKey::Azure {
                    container: bucket()?,
                    emulator: self.settings.azure_use_emulator,
                },
                &text,
            )?,
            StorageScheme::Memory => memory_store(uri.bucket().unwrap_or_default()),
            StorageScheme::File => {
                let dir = PathBuf::from(uri.file_path().unwrap_or_default());
                match access {
                    // A write creates its root, like a bucket that exists.
                    Access::Write => {
                        std::fs::create_dir_all(&dir).map_err(|e| StorageError::Config {
                            uri: text.clone(),
                            message: format!("cannot create directory {}: {e}", dir.display()),
                        })?
                    }
                    // A read of a root that is not there finds nothing, and says so.
                    Access::Read if !dir.is_dir() => {
                        return Err(StorageError::Missing {
                            field: field.unwrap_or("uri").to_owned(),
                            uri: text,
                        });
                    }
                    Access::Read => {}
                }
                // Rooted at the directory itself (not `/` behind a prefix), so that removing
                // the last file of a backup cleans up empty directories up to the root only.
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(open_err)?;
                return Ok(Store::new(
                    uri.clone(),
                    Arc::new(store.with_automatic_cleanup(true)),
                ));
            }
        };
        let root: Arc<dyn ObjectStore> = if uri.prefix().is_empty() {
            base
        } else {
            Arc::new(PrefixStore::new(base, uri.prefix()))
        };
        let mut store = Store::new(uri.clone(), root);
        if uri.scheme() == StorageScheme::Gs {
            let emulator = self.settings.gcs_emulator_host.as_deref();
            // The checksum listing uses the clients' credentials; an emulator takes none.
            let credentials = match emulator {
                Some(_) => None,
                None => Some(self.clients.gcs_credentials().map_err(|message| {
                    StorageError::Config {
                        uri: text.clone(),
                        message,
                    }
                })?),
            };
            store.gcs = Some(GcsObjects::new(
                emulator,
                &bucket()?,
                uri.prefix(),
                credentials,
            ));
        }
        Ok(store)
    }

    /// The kept client for `key`, or a new one (then kept). `key` holds every setting the
    /// builders below read, so equal keys make equal clients.
    fn client(&self, key: ClientKey, uri: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
        self.clients.get_or_build(key, |key| {
            self.build_client(key).map_err(|e| match e {
                BuildError::Store(source) => StorageError::Open {
                    uri: uri.to_owned(),
                    source,
                },
                BuildError::Credentials(message) => StorageError::Config {
                    uri: uri.to_owned(),
                    message,
                },
            })
        })
    }

    fn build_client(&self, key: &ClientKey) -> Result<Arc<dyn ObjectStore>, BuildError> {
        Ok(match key {
            ClientKey::Gcs {
                bucket,
                emulator_host,
            } => Arc::new(self.gcs(bucket, emulator_host.as_deref())?),
            ClientKey::S3 {
                bucket,
                endpoint,
                allow_http,
            } => Arc::new(
                Self::s3(bucket, endpoint.as_deref(), *allow_http).map_err(BuildError::Store)?,
            ),
            ClientKey::Azure {
                container,
                emulator,
            } => Arc::new(Self::azure(container, *emulator).map_err(BuildError::Store)?),
        })
    }

    fn retry() -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: STORAGE_MAX_RETRIES,
            retry_timeout: STORAGE_RETRY_TIMEOUT,
        }
    }

    fn client_options(allow_http: bool) -> ClientOptions {
        ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout(STORAGE_REQUEST_TIMEOUT)
    }

    fn gcs(
        &self,
        bucket: &str,
        emulator_host: Option<&str>,
    ) -> Result<object_store::gcp::GoogleCloudStorage, BuildError> {
        let builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_retry(Self::retry());
        let builder = match emulator_host {
            // Emulators take no credentials: object_store skips OAuth for a key marked
            // `disable_oauth` and sends requests to `gcs_base_url`.
            Some(host) => builder
                .with_service_account_key(
                    serde_json::json!({
                        "disable_oauth": true,
                        "gcs_base_url": host,
                        "client_email": "",
                        "private_key": "",
                        "private_key_id": "",
                    })
                    .to_string(),
                )
                .with_client_options(Self::client_options(true)),
            // One provider for every bucket: one token, refreshed once, for all of them.
            None => builder
                .with_credentials(
                    self.clients
                        .gcs_credentials()
                        .map_err(BuildError::Credentials)?,
                )
                .with_client_options(Self::client_options(false)),
        };
        builder.build().map_err(BuildError::Store)
    }

    fn s3(
        bucket: &str,
        endpoint: Option<&str>,
        allow_http: bool,
    ) -> object_store::Result<object_store::aws::AmazonS3> {
        // from_env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, and
        // the container/web-identity credential variables.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(Self::retry())
            .with_client_options(Self::client_options(allow_http));
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(allow_http)
                .with_virtual_hosted_style_request(false);
        }
        builder.build()
    }

    fn azure(
        container: &str,
        emulator: bool,
    ) -> object_store::Result<object_store::azure::MicrosoftAzure> {
        // from_env: AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, SAS, client secret or
        // managed identity variables.
        let builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_retry(Self::retry());
        let builder = if emulator {
            builder
                .with_use_emulator(true)
                .with_client_options(Self::client_options(true))
        } else {
            builder.with_client_options(Self::client_options(false))
        };
        builder.build()
    }
}

/// Why a client could not be built.
enum BuildError {
    Store(object_store::Error),
    /// No Google credentials (ADC) were found.
    Credentials(String),
}

/// `memory://name` stores live for the whole process, so that every component (and every test
/// helper) opening the same name sees the same objects.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked while inserting; the map is still valid.
    let mut map = stores.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

/// Where a store's URI came from: whose mistake a bucket that does not exist is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A field of the caller's request (`backupStorage.uri`, the `uri` query parameter, a CLI
    /// flag), named as the caller wrote it: a missing bucket there is the caller's to fix.
    Request(String),
    /// A setting of this service (`BQB_STATE_URI`): a missing bucket there is a deployment
    /// problem, never the caller's.
    Setting(&'static str),
}

/// An opened backup repository root.
#[derive(Debug, Clone)]
pub struct Store {
    uri: StorageUri,
    inner: Arc<dyn ObjectStore>,
    origin: Option<Origin>,
    /// gs:// only: object checksums over the JSON API (see `gcs_objects`).
    gcs: Option<GcsObjects>,
    /// The service's encryption settings: default recipients, where its identities are.
    encryption: Arc<EncryptionSettings>,
}

impl Store {
    fn new(uri: StorageUri, inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            uri,
            inner,
            origin: None,
            gcs: None,
            encryption: Arc::default(),
        }
    }

    /// The service's encryption settings (`BQB_ENCRYPTION_*`).
    pub fn encryption(&self) -> &EncryptionSettings {
        &self.encryption
    }

    /// Every object under `prefix` (relative to the store's root) with the checksums Cloud
    /// Storage computed for it. gs:// stores only: others have no such metadata to list.
    pub async fn list_with_checksums(&self, prefix: &Path) -> Result<Vec<ObjectChecksums>, Error> {
        let Some(gcs) = &self.gcs else {
            return Err(Error::internal(format!(
                "{} is not a gs:// store: it has no Cloud Storage checksums",
                self.uri
            )));
        };
        let prefix = format!("{}/", prefix.as_ref().trim_end_matches('/'));
        gcs.list(&prefix).await.map_err(|e| self.attribute(e))
    }

    /// The store of the URI in request field `field` (its errors name the field).
    pub fn from_request_field(mut self, field: impl Into<String>) -> Self {
        self.origin = Some(Origin::Request(field.into()));
        self
    }

    /// The store of the URI in setting `name` (its errors say it is the service's setup).
    pub fn from_setting(mut self, name: &'static str) -> Self {
        self.origin = Some(Origin::Setting(name));
        self
    }

    /// The URI this store was opened from.
    pub fn uri(&self) -> &StorageUri {
        &self.uri
    }

    /// The object store, rooted at the URI's prefix (keys are relative to it).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// A failed call on this store, classified ([`object_error`]) and attributed.
    pub fn call_error(
        &self,
        operation: &'static str,
        location: &Path,
        source: object_store::Error,
    ) -> Error {
        self.attribute(object_error(operation, location, source))
    }

    /// Says whose a storage failure of this store is, by where its URI came from: for a request
    /// field, the field is named in `details` (and a missing bucket or refused access is said
    /// in those words); for a setting, a missing bucket or refused access becomes the service's
    /// own unavailability. Errors that are not this store's storage failures pass unchanged, so
    /// it is safe to apply to whatever an operation on the store returned.
    pub fn attribute(&self, error: Error) -> Error {
        let (Some(origin), Some(failure)) = (&self.origin, storage_failure(&error)) else {
            return error;
        };
        let about_root = match failure {
            Failure::RootMissing => Some(self.missing_root()),
            Failure::PermissionDenied => Some(format!(
                "the service's credentials may not access {}",
                self.uri
            )),
            Failure::Unauthenticated => {
                Some(format!("{} refused the service's credentials", self.uri))
            }
            _ => None,
        };
        match origin {
            Origin::Request(field) => {
                if error.details().iter().any(|d| &d.field == field) {
                    return error;
                }
                match about_root {
                    Some(message) => error
                        .with_message(message.clone())
                        .with_detail(FieldError::new(field.clone(), message)),
                    None => {
                        let detail = FieldError::new(field.clone(), error.message());
                        error.with_detail(detail)
                    }
                }
            }
            Origin::Setting(name) => match about_root {
                Some(message) => error.with_kind(ErrorKind::Unavailable).with_message(format!(
                    "{name} is misconfigured: {message}; the service cannot work until it is fixed"
                )),
                None => error,
            },
        }
    }

    /// Checks that the repository answers a listing: its bucket or container exists and the
    /// service may read it. One list request (the first page of `backups/`), cheap whatever the
    /// repository holds; errors are [attributed](Self::attribute).
    pub async fn check_reachable(&self) -> Result<(), Error> {
        let prefix = super::layout::backups_root();
        match self.inner.list(Some(&prefix)).next().await {
            Some(Err(e)) => Err(self.attribute(object_error("listing", &prefix, e))),
            Some(Ok(_)) | None => Ok(()),
        }
    }

    fn missing_root(&self) -> String {
        let name = self.uri.bucket().unwrap_or_default();
        match self.uri.scheme() {
            StorageScheme::Az => format!("the container `{name}` of {} does not exist", self.uri),
            _ => format!("the bucket `{name}` of {} does not exist", self.uri),
        }
    }

    /// Removes every object under `prefix` but those `keep` names; on `file://` also the files
    /// object_store never lists: the staging files (`…#n`) of uploads whose process died. Returns
    /// how many objects were removed.
    pub async fn remove_all(
        &self,
        prefix: &Path,
        keep: impl Fn(&Path) -> bool,
    ) -> Result<u64, Error> {
        let paths: Vec<Path> = self
            .inner
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| object_error("listing", prefix, e))?;
        let mut removed = 0;
        for path in paths.into_iter().filter(|p| !keep(p)) {
            delete_if_exists(self.inner.as_ref(), &path)
                .await
                .map_err(|e| object_error("deleting", &path, e))?;
            removed += 1;
        }
        if self.uri.scheme() == StorageScheme::File
            && let Some(root) = self.uri.file_path()
        {
            let dir = PathBuf::from(root).join(prefix.as_ref());
            removed += remove_staging_files(&dir).map_err(|e| {
                let kind = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                    _ => ErrorKind::Unavailable,
                };
                Error::new(
                    kind,
                    format!("removing staging files under {} failed", dir.display()),
                )
                .with_source(e)
            })?;
            // Fails while something is kept in it, which is what we want.
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(removed)
    }
}

/// Deletes the staging files (`name#n`) below `dir`, then the directories left empty.
fn remove_staging_files(dir: &std::path::Path) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            removed += remove_staging_files(&path)?;
            // Fails while something is left in it, which is what we want.
            let _ = std::fs::remove_dir(&path);
        } else if entry.file_name().to_string_lossy().contains('#') {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `path` as the disk resolves it: its deepest existing ancestor canonicalized (symlinks
/// followed), then the rest as written (which has no `.` or `..` steps: the URI parser refuses
/// them).
fn resolve_existing(path: &std::path::Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::storage::clients::CLIENT_CACHE_CAPACITY;

    /// Clients of an S3-compatible endpoint and of the GCS and Azure emulators: building them
    /// makes no network call.
    fn config() -> StorageConfig {
        let mut config = StorageConfig::default();
        config.settings.s3_endpoint = Some("http://127.0.0.1:9".into());
        config.settings.s3_allow_http = true;
        config.settings.gcs_emulator_host = Some("http://127.0.0.1:9".into());
        config.settings.azure_use_emulator = true;
        config
    }

    fn uri(text: &str) -> StorageUri {
        StorageUri::parse(text).expect("a valid URI")
    }

    fn open(config: &StorageConfig, text: &str, access: Access) -> Store {
        config
            .open(&uri(text), "uri", access)
            .expect("the store opens")
    }

    #[test]
    fn stores_of_one_bucket_share_its_client_whatever_their_prefix_or_access() {
        let config = config();
        for scheme in ["s3", "gs", "az"] {
            open(&config, &format!("{scheme}://bucket"), Access::Write);
            open(&config, &format!("{scheme}://bucket/a/b"), Access::Read);
            // Clones (the app state, the job runner, the scheduler) share the clients too.
            open(
                &config.clone(),
                &format!("{scheme}://bucket/c"),
                Access::Read,
            );
        }
        assert_eq!(config.clients.built(), 3, "one client per scheme");

        // And the store is still rooted at its prefix.
        let store = open(&config, "s3://bucket/a/b", Access::Read);
        assert_eq!(store.uri().prefix(), "a/b");
    }

    #[test]
    fn other_buckets_endpoints_or_schemes_get_clients_of_their_own() {
        let config = config();
        open(&config, "s3://one", Access::Read);
        open(&config, "s3://two", Access::Read);
        open(&config, "gs://one", Access::Read);
        open(&config, "az://one", Access::Read);
        assert_eq!(config.clients.built(), 4);

        // A clone told to use another endpoint shares the cache but not the client.
        let mut elsewhere = config.clone();
        elsewhere.settings.s3_endpoint = Some("http://127.0.0.1:10".into());
        open(&elsewhere, "s3://one", Access::Read);
        elsewhere.settings.gcs_emulator_host = Some("http://127.0.0.1:10".into());
        open(&elsewhere, "gs://one", Access::Read);
        assert_eq!(config.clients.built(), 6);
        // Back on the first endpoint: the first client.
        open(&config, "s3://one/p", Access::Read);
        assert_eq!(config.clients.built(), 6);
    }

    #[test]
    fn buckets_named_once_do_not_pile_up_clients() {
        let config = config();
        for n in 0..CLIENT_CACHE_CAPACITY + 10 {
            open(&config, &format!("s3://bucket-{n}"), Access::Read);
        }
        assert_eq!(config.clients.len(), CLIENT_CACHE_CAPACITY);
        // The oldest went first; the newest is still there.
        let built = config.clients.built();
        open(
            &config,
            &format!("s3://bucket-{}", CLIENT_CACHE_CAPACITY + 9),
            Access::Read,
        );
        assert_eq!(config.clients.built(), built);
        open(&config, "s3://bucket-0", Access::Read);
        assert_eq!(config.clients.built(), built + 1);
    }

    #[tokio::test]
    async fn every_gcs_bucket_gets_the_same_credential_provider() {
        // A key that parses; its token is never asked for (no call is made).
        let key = serde_json::json!({
            "type": "service_account",
            "client_email": "backup@project.iam.gserviceaccount.com",
            "private_key_id": "id",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
            "project_id": "project",
        });
        let credentials = google_cloud_auth::credentials::service_account::Builder::new(key)
            .build_access_token_credentials()
            .expect("credentials from a key");
        let provider = Arc::new(
            super::super::gcs_credentials::AdcTokenProvider::from_credentials(credentials),
        );
        let config = StorageConfig::default();
        config.clients.set_gcs_credentials(provider.clone());

        open(&config, "gs://one/a", Access::Read);
        open(&config, "gs://two", Access::Read);
        open(&config, "gs://one/b", Access::Read);
        assert_eq!(config.clients.built(), 2);
        assert_eq!(
            Arc::strong_count(&provider),
            // This test's, the cache's, and one in each of the two clients.
            4,
            "both clients hold the one provider"
        );
    }

    #[test]
    fn the_wrapper_wraps_every_store_opened_even_from_a_kept_client() {
        let wrapped = Arc::new(AtomicUsize::new(0));
        let counter = wrapped.clone();
        let config = config().with_wrapper(Arc::new(move |_: &StorageUri, inner| {
            counter.fetch_add(1, Ordering::Relaxed);
            inner
        }));
        open(&config, "s3://bucket/a", Access::Read);
        open(&config, "s3://bucket/b", Access::Write);
        assert_eq!(config.clients.built(), 1);
        assert_eq!(wrapped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_allow_list_is_checked_on_every_open_even_of_a_kept_client() {
        let mut config = config();
        config.confinement =
            Some(StorageAllowList::parse("s3://open").expect("a valid allow-list"));
        open(&config, "s3://open/a", Access::Read);
        let refused = config.open(&uri("s3://shut/a"), "uri", Access::Read);
        assert!(matches!(refused, Err(StorageError::NotAllowed { .. })));
        assert_eq!(config.clients.built(), 1, "a refused URI builds nothing");
    }

    #[test]
    fn a_read_of_a_missing_directory_creates_nothing_and_a_write_creates_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = dir.path().join("no/such/repository");
        let text = format!("file://{}", missing.display());
        let config = StorageConfig::default();
        for _ in 0..2 {
            let read = config.open(&uri(&text), "uri", Access::Read);
            assert!(
                matches!(&read, Err(StorageError::Missing { field, .. }) if field == "uri"),
                "{read:?}"
            );
            assert!(
                !dir.path().join("no").exists(),
                "a read created a directory"
            );
        }
        open(&config, &text, Access::Write);
        assert!(missing.is_dir());
        open(&config, &text, Access::Read);
    }
}
