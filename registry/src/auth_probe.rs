//! Asking a registry once whether it wants credentials at all (`GET /v2/` answered
//! with a `WWW-Authenticate` challenge or not), so that a registry that does not is
//! spoken to without an authentication round trip before every request.

use std::time::Duration;

use tokio::sync::OnceCell;

use crate::error::RegistryError;
use crate::oci_errors::{from_reqwest, ErrorContext};

/// The answer to "does this registry challenge?", asked at most once.
#[derive(Debug)]
pub(crate) struct AuthProbe {
    http: reqwest::Client,
    url: String,
    challenges: OnceCell<bool>,
}

impl AuthProbe {
    /// A probe of `{scheme}://{api_host}/v2/`.
    pub(crate) fn new(
        api_host: &str,
        plain_http: bool,
        insecure_skip_verify: bool,
        connect_timeout: Duration,
        user_agent: &'static str,
    ) -> Result<AuthProbe, reqwest::Error> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure_skip_verify)
            .connect_timeout(connect_timeout)
            .user_agent(user_agent)
            .build()?;
        let scheme = if plain_http { "http" } else { "https" };
        Ok(AuthProbe {
            http,
            url: format!("{scheme}://{api_host}/v2/"),
            challenges: OnceCell::new(),
        })
    }

    /// Whether the registry asks for authentication (asking it the first time only).
    pub(crate) async fn challenges(&self, ctx: &ErrorContext<'_>) -> Result<bool, RegistryError> {
        let answer = self
            .challenges
            .get_or_try_init(|| async {
                let response = self
                    .http
                    .get(&self.url)
                    .send()
                    .await
                    .map_err(|e| from_reqwest(&e, ctx))?;
                Ok::<bool, RegistryError>(
                    response.status() == reqwest::StatusCode::UNAUTHORIZED
                        || response
                            .headers()
                            .contains_key(reqwest::header::WWW_AUTHENTICATE),
                )
            })
            .await?;
        Ok(*answer)
    }
}
