//! Cloud Storage object metadata that object_store does not expose: each object's CRC32C and MD5
//! as GCS computed them, from the JSON API's `objects.list`. The EXTRACT backup method records
//! them for files BigQuery wrote, so that no byte has to pass through this service to checksum
//! them.
//!
//! Same endpoint, credentials and retry budget as the gs:// object_store clients: the emulator
//! host (`STORAGE_EMULATOR_HOST`) without credentials, else Google's with the shared ADC
//! provider.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use object_store::CredentialProvider;
use serde::Deserialize;

use super::gcs_credentials::AdcTokenProvider;
use super::open::{STORAGE_MAX_RETRIES, STORAGE_REQUEST_TIMEOUT};
use crate::error::Error;

const GOOGLE_STORAGE: &str = "https://storage.googleapis.com";
/// Objects asked for per page (the API's maximum is 1000).
const PAGE_SIZE: &str = "1000";
/// HTTP statuses worth another attempt (GCS's retry guidance).
const RETRYABLE: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// One object as GCS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChecksums {
    /// The key relative to the store's root (its prefix removed).
    pub key: String,
    pub size: u64,
    /// CRC32C (Castagnoli) of the bytes as lower-case hex of its big-endian value; GCS computes
    /// it for every object.
    pub crc32c: Option<String>,
    /// MD5 as lower-case hex; GCS has none for composite objects.
    pub md5: Option<String>,
}

/// The JSON API client of one bucket under one prefix.
#[derive(Clone)]
pub(crate) struct GcsObjects {
    base: String,
    bucket: String,
    /// The store's prefix, without a trailing `/` (empty for a bucket root).
    prefix: String,
    credentials: Option<Arc<AdcTokenProvider>>,
}

impl std::fmt::Debug for GcsObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsObjects")
            .field("base", &self.base)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: Vec<Item>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    size: String,
    crc32c: Option<String>,
    md5_hash: Option<String>,
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(STORAGE_REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default()
    })
}

impl GcsObjects {
    pub(crate) fn new(
        emulator_host: Option<&str>,
        bucket: &str,
        prefix: &str,
        credentials: Option<Arc<AdcTokenProvider>>,
    ) -> Self {
        Self {
            base: emulator_host.unwrap_or(GOOGLE_STORAGE).to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            credentials,
        }
    }

    /// Every object whose key (relative to the store's root) starts with `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectChecksums>, Error> {
        let full = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let url = format!(
            "{}/storage/v1/b/{}/o",
            self.base,
            percent_encoding::utf8_percent_encode(&self.bucket, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", full.clone()),
                ("maxResults", PAGE_SIZE.to_string()),
                (
                    "fields",
                    "items(name,size,crc32c,md5Hash),nextPageToken".to_string(),
                ),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let page: ListPage = self.get(&url, &query).await?;
            for item in page.items {
                let key = match self.prefix.is_empty() {
                    true => item.name.clone(),
                    false => item
                        .name
                        .strip_prefix(&format!("{}/", self.prefix))
                        .unwrap_or(&item.name)
                        .to_string(),
                };
                out.push(ObjectChecksums {
                    key,
                    size: item.size.parse().map_err(|_| {
                        Error::upstream(format!(
                            "Cloud Storage listed {} with a size that is not a number",
                            item.name
                        ))
                    })?,
                    crc32c: item.crc32c.as_deref().and_then(base64_to_hex),
                    md5: item.md5_hash.as_deref().and_then(base64_to_hex),
                });
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(out),
            }
        }
    }

    /// One GET, tried again on transient failures with object_store's budget of attempts.
    async fn get(&self, url: &str, query: &[(&str, String)]) -> Result<ListPage, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = http().get(url).query(query);
            if let Some(credentials) = &self.credentials {
                let token = credentials.get_credential().await.map_err(|e| {
                    Error::new(
                        crate::error::ErrorKind::Unauthenticated,
                        format!("no Google credentials for Cloud Storage: {e}"),
                    )
                })?;
                request = request.bearer_auth(&token.bearer);
            }
            let failure = match request.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return resp.json().await.map_err(|e| {
                        Error::upstream(format!("Cloud Storage answered objects.list with: {e}"))
                    });
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    if !RETRYABLE.contains(&status) || attempt > STORAGE_MAX_RETRIES {
                        return Err(status_error(status, &body, &self.bucket));
                    }
                    format!("status {status}")
                }
                Err(e) if attempt <= STORAGE_MAX_RETRIES && !e.is_builder() => e.to_string(),
                Err(e) => {
                    return Err(Error::upstream(format!(
                        "listing gs://{} failed: {e}",
                        self.bucket
                    )));
                }
            };
            tracing::warn!(attempt, error = %failure, "Cloud Storage objects.list failed; retrying");
            let backoff = 100u64.saturating_mul(1 << attempt.min(8));
            tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
        }
    }
}

fn status_error(status: u16, body: &str, bucket: &str) -> Error {
    use crate::error::ErrorKind;
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect());
    let kind = match status {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        _ => ErrorKind::Upstream,
    };
    Error::new(
        kind,
        format!("listing gs://{bucket} failed ({status}): {message}"),
    )
}

/// GCS sends checksums as base64 of their big-endian bytes; the manifest keeps hex.
fn base64_to_hex(text: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .map(hex::encode)
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksums_are_turned_from_base64_into_hex() {
        // GCS's documented CRC32C of "hello": mnG7TA== (0x9a71bb4c).
        assert_eq!(
            super::base64_to_hex("mnG7TA==").as_deref(),
            Some("9a71bb4c")
        );
        assert_eq!(super::base64_to_hex("not base64!"), None);
    }
}
