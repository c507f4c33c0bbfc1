//! Who may call the API, as configured: the mode and what each mode needs.

use crate::variables::{Problem, Reader, Secret, Source, Variable};

/// Google's signing keys for OIDC tokens (Cloud Scheduler, Pub/Sub push).
pub(crate) const DEFAULT_AUTH_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub(crate) const DEFAULT_AUTH_ISSUERS: &str = "https://accounts.google.com,accounts.google.com";

pub(crate) static AUTH_MODE: Variable = Variable {
    name: "AUTH_MODE",
    default: "none",
    doc: "Who may call the API (`/healthz` and `/readyz` stay open): `none`; `bearer` (an `Authorization: Bearer` token equal to `BQB_AUTH_BEARER_TOKEN`); `google-oidc` (a Google-signed ID token, as Cloud Scheduler and Pub/Sub push send, with the right audience from an allowed service account).",
};
pub(crate) static BEARER_TOKEN: Variable = Variable {
    name: "BQB_AUTH_BEARER_TOKEN",
    default: "(none)",
    doc: "The shared secret for `AUTH_MODE=bearer` (required then). Never logged.",
};
pub(crate) static AUDIENCE: Variable = Variable {
    name: "BQB_AUTH_AUDIENCE",
    default: "(none)",
    doc: "Accepted `aud` values of OIDC tokens, comma separated (required for `google-oidc`): usually the service URL.",
};
pub(crate) static ALLOWED_EMAILS: Variable = Variable {
    name: "BQB_AUTH_ALLOWED_EMAILS",
    default: "(none)",
    doc: "Service-account emails allowed to call with `google-oidc`, comma separated (required then); the token's `email` must be verified.",
};
pub(crate) static JWKS_URL: Variable = Variable {
    name: "BQB_AUTH_JWKS_URL",
    default: DEFAULT_AUTH_JWKS_URL,
    doc: "Where OIDC signing keys are fetched (a JWKS document).",
};
pub(crate) static ISSUERS: Variable = Variable {
    name: "BQB_AUTH_ISSUERS",
    default: DEFAULT_AUTH_ISSUERS,
    doc: "Accepted `iss` values of OIDC tokens, comma separated.",
};

/// Who may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    #[default]
    None,
    Bearer,
    GoogleOidc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub bearer_token: Option<Secret>,
    pub audiences: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub jwks_url: String,
    pub issuers: Vec<String>,
}

impl AuthSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let mode = match read.text(&AUTH_MODE).map(str::trim) {
            None | Some("none") => AuthMode::None,
            Some("bearer") => AuthMode::Bearer,
            Some("google-oidc") => AuthMode::GoogleOidc,
            Some(other) => {
                read.problem(
                    &AUTH_MODE,
                    format!("`{other}` is not one of none, bearer, google-oidc"),
                );
                AuthMode::default()
            }
        };
        let bearer_token = read.text(&BEARER_TOKEN).map(|t| Secret::new(t.trim()));
        let audiences = read.list(&AUDIENCE, "");
        let allowed_emails = read.list(&ALLOWED_EMAILS, "");
        match mode {
            AuthMode::Bearer if bearer_token.is_none() => {
                read.problem(&BEARER_TOKEN, "required when AUTH_MODE=bearer")
            }
            AuthMode::GoogleOidc => {
                if audiences.is_empty() {
                    read.problem(
                        &AUDIENCE,
                        "required when AUTH_MODE=google-oidc (usually the service URL)",
                    );
                }
                if allowed_emails.is_empty() {
                    read.problem(
                        &ALLOWED_EMAILS,
                        "required when AUTH_MODE=google-oidc (the service accounts that may call)",
                    );
                }
            }
            _ => {}
        }
        let settings = Self {
            mode,
            bearer_token,
            audiences,
            allowed_emails,
            jwks_url: read.endpoint(&JWKS_URL, DEFAULT_AUTH_JWKS_URL),
            issuers: read.list(&ISSUERS, DEFAULT_AUTH_ISSUERS),
        };
        read.finish(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn auth_modes_require_their_settings() {
        let err = Settings::from_pairs(&[("AUTH_MODE", "bearer")]).unwrap_err();
        assert!(err.to_string().contains("BQB_AUTH_BEARER_TOKEN"), "{err}");
        let err = Settings::from_pairs(&[("AUTH_MODE", "google-oidc")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("BQB_AUTH_AUDIENCE"), "{text}");
        assert!(text.contains("BQB_AUTH_ALLOWED_EMAILS"), "{text}");
        let err = Settings::from_pairs(&[("AUTH_MODE", "basic")]).unwrap_err();
        assert!(err.to_string().contains("AUTH_MODE: `basic`"), "{err}");
        let s = Settings::from_pairs(&[
            ("AUTH_MODE", "google-oidc"),
            ("BQB_AUTH_AUDIENCE", "https://svc.example, https://other"),
            ("BQB_AUTH_ALLOWED_EMAILS", "sched@p.iam.gserviceaccount.com"),
        ])
        .unwrap();
        assert_eq!(s.auth.mode, AuthMode::GoogleOidc);
        assert_eq!(s.auth.audiences, ["https://svc.example", "https://other"]);
        assert_eq!(s.auth.issuers.len(), 2);
    }

    #[test]
    fn the_bearer_token_never_reaches_debug_output() {
        let s = Settings::from_pairs(&[
            ("AUTH_MODE", "bearer"),
            ("BQB_AUTH_BEARER_TOKEN", "s3cret-value"),
        ])
        .unwrap();
        assert_eq!(
            s.auth.bearer_token.as_ref().map(Secret::expose),
            Some("s3cret-value")
        );
        assert!(!format!("{s:?}").contains("s3cret-value"));
    }
}
