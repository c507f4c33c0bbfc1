//! Builds an `object_store` client for a storage URI, rooted at the URI's prefix.

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

use super::StorageError;
use super::gcs_credentials::AdcTokenProvider;
use crate::config::{Settings, StorageSettings};
use crate::domain::{StorageAllowList, StorageScheme, StorageUri};

/// Retries of one storage request: object_store retries 5xx, 429, timeouts and connection errors
/// with exponential backoff; these bound it. Kept here as the one place storage retries are set.
pub const STORAGE_MAX_RETRIES: usize = 8;
pub const STORAGE_RETRY_TIMEOUT: Duration = Duration::from_secs(180);
/// A single storage request (one part of a multipart upload included) may take this long.
pub const STORAGE_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What the caller will do with a store. Reading never creates anything: a `file://` root that
/// does not exist is a 404 on read, and only a write (a backup, the state store) creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Endpoint and emulator settings for every store, and which roots callers may name.
#[derive(Debug, Clone, Default)]
pub struct StorageConfig {
    pub settings: StorageSettings,
    /// `None`: every URI may be opened (the CLI without `BQB_ALLOWED_STORAGE`).
    confinement: Option<StorageAllowList>,
}

impl StorageConfig {
    /// For the CLI: confined only when `BQB_ALLOWED_STORAGE` is set, since whoever runs it
    /// already owns the disk it would write to.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            settings: settings.storage.clone(),
            confinement: settings.storage.allowed.clone(),
        }
    }

    /// For `serve`, whose callers do not own its disk: `BQB_ALLOWED_STORAGE`, or by default
    /// every cloud bucket and no local directory or memory.
    pub fn for_service(settings: &Settings) -> Self {
        Self {
            settings: settings.storage.clone(),
            confinement: Some(
                settings
                    .storage
                    .allowed
                    .clone()
                    .unwrap_or_else(StorageAllowList::service_default),
            ),
        }
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
        self.open_at(uri, Some(field), access)
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
            StorageScheme::Gs => Arc::new(self.gcs(&bucket()?).map_err(|e| match e {
                GcsSetup::Store(source) => open_err(source),
                GcsSetup::Credentials(message) => StorageError::Config {
                    uri: text.clone(),
                    message,
                },
            })?),
            StorageScheme::S3 => Arc::new(self.s3(&bucket()?).map_err(open_err)?),
            StorageScheme::Az => Arc::new(self.azure(&bucket()?).map_err(open_err)?),
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
        Ok(Store::new(uri.clone(), root))
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

    fn gcs(&self, bucket: &str) -> Result<object_store::gcp::GoogleCloudStorage, GcsSetup> {
        let builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_retry(Self::retry());
        let builder = match &self.settings.gcs_emulator_host {
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
            None => builder
                .with_credentials(Arc::new(
                    AdcTokenProvider::new().map_err(GcsSetup::Credentials)?,
                ))
                .with_client_options(Self::client_options(false)),
        };
        builder.build().map_err(GcsSetup::Store)
    }

    fn s3(&self, bucket: &str) -> object_store::Result<object_store::aws::AmazonS3> {
        // from_env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, and
        // the container/web-identity credential variables.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(Self::retry())
            .with_client_options(Self::client_options(self.settings.s3_allow_http));
        if let Some(endpoint) = &self.settings.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(self.settings.s3_allow_http)
                .with_virtual_hosted_style_request(false);
        }
        builder.build()
    }

    fn azure(&self, container: &str) -> object_store::Result<object_store::azure::MicrosoftAzure> {
        // from_env: AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, SAS, client secret or
        // managed identity variables.
        let builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_retry(Self::retry());
        let builder = if self.settings.azure_use_emulator {
            builder
                .with_use_emulator(true)
                .with_client_options(Self::client_options(true))
        } else {
            builder.with_client_options(Self::client_options(false))
        };
        builder.build()
    }
}

enum GcsSetup {
    Store(object_store::Error),
    Credentials(String),
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

/// An opened backup repository root.
#[derive(Debug, Clone)]
pub struct Store {
    uri: StorageUri,
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    fn new(uri: StorageUri, inner: Arc<dyn ObjectStore>) -> Self {
        Self { uri, inner }
    }

    /// The URI this store was opened from.
    pub fn uri(&self) -> &StorageUri {
        &self.uri
    }

    /// The object store, rooted at the URI's prefix (keys are relative to it).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}
