//! Gives object_store's GCS client the same credentials as the BigQuery clients: the full
//! Application Default Credentials chain of `google-cloud-auth` (metadata server, key file, gcloud
//! user, workload identity federation, impersonation), tokens cached and refreshed by that crate.

use std::sync::Arc;

use google_cloud_auth::credentials::AccessTokenCredentials;
use object_store::CredentialProvider;
use object_store::gcp::GcpCredential;

#[derive(Debug)]
pub(super) struct AdcTokenProvider {
    credentials: AccessTokenCredentials,
}

impl AdcTokenProvider {
    pub(super) fn new() -> Result<Self, String> {
        let credentials = google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .map_err(|e| {
                format!("no Google credentials found (Application Default Credentials): {e}")
            })?;
        Ok(Self { credentials })
    }

    /// A provider of the given credentials (tests: there is no ADC on a test box).
    #[cfg(test)]
    pub(super) fn from_credentials(credentials: AccessTokenCredentials) -> Self {
        Self { credentials }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AdcTokenProvider {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let token = self.credentials.access_token().await.map_err(|e| {
            object_store::Error::Unauthenticated {
                path: String::new(),
                source: Box::new(e),
            }
        })?;
        Ok(Arc::new(GcpCredential {
            bearer: token.token,
        }))
    }
}
