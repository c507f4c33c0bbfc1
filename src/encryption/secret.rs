//! Secret Manager: the payload of one secret version
//! (`GET {endpoint}/v1/projects/P/secrets/S/versions/V:access`), with the Application Default
//! Credentials (the service account on Cloud Run / GKE Workload Identity), none over plain
//! `http://` (an emulator or a test server). The payload is checked against the CRC32C Secret
//! Manager sends with it and never logged.

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, ErrorKind};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessResponse {
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    data: String,
    #[serde(default)]
    data_crc32c: Option<String>,
}

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn unavailable(name: &str, message: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("the secret {name} (BQB_ENCRYPTION_IDENTITIES) cannot be read: {message}"),
    )
}

/// The text of secret version `name`.
pub(super) async fn access(endpoint: &str, name: &str) -> Result<String, Error> {
    let url = format!("{}/v1/{name}:access", endpoint.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(30));
    if !endpoint.starts_with("http://") {
        let credentials = google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .map_err(|e| unavailable(name, format!("no Google credentials: {e}")))?;
        let token = credentials
            .access_token()
            .await
            .map_err(|e| unavailable(name, format!("no access token: {e}")))?;
        request = request.bearer_auth(token.token);
    }
    let response = request.send().await.map_err(|e| unavailable(name, e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let first: String = body.chars().take(300).collect();
        return Err(unavailable(name, format!("HTTP {status}: {first}")));
    }
    let answer: AccessResponse = response
        .json()
        .await
        .map_err(|e| unavailable(name, format!("unexpected answer: {e}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer.payload.data.trim())
        .map_err(|e| unavailable(name, format!("payload is not base64: {e}")))?;
    if let Some(expected) = answer.payload.data_crc32c
        && expected.parse::<u64>().ok() != Some(u64::from(CRC32C.checksum(&bytes)))
    {
        return Err(unavailable(name, "the payload does not match its CRC32C"));
    }
    String::from_utf8(bytes).map_err(|_| unavailable(name, "the payload is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering `:access` for one secret version as Secret Manager does (there is no
    /// Secret Manager emulator), with the payload's CRC32C right or wrong.
    async fn serve(text: &'static str, crc_right: bool) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(text);
        let crc = u64::from(CRC32C.checksum(text.as_bytes())) + u64::from(!crc_right);
        let body = serde_json::json!({
            "name": "projects/p/secrets/s/versions/1",
            "payload": { "data": data, "dataCrc32c": crc.to_string() },
        });
        let app = axum::Router::new().route(
            "/v1/projects/p/secrets/s/versions/1:access",
            axum::routing::get(move || async move { axum::Json(body) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_secret_version_is_read_and_its_checksum_checked() {
        let endpoint = serve("AGE-SECRET-KEY-1XYZ\n", true).await;
        let text = access(&endpoint, "projects/p/secrets/s/versions/1")
            .await
            .unwrap();
        assert_eq!(text, "AGE-SECRET-KEY-1XYZ\n");
        let missing = access(&endpoint, "projects/p/secrets/s/versions/2")
            .await
            .unwrap_err();
        assert!(missing.message().contains("404"), "{missing}");
        assert!(!missing.message().contains("XYZ"));

        let endpoint = serve("AGE-SECRET-KEY-1XYZ\n", false).await;
        let err = access(&endpoint, "projects/p/secrets/s/versions/1")
            .await
            .unwrap_err();
        assert!(err.message().contains("CRC32C"), "{err}");
        assert!(
            !err.message().contains("XYZ"),
            "the secret is never in an error: {err}"
        );
    }
}
