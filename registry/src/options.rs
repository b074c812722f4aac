//! How a [`crate::RegistryClient`] talks to its registry.

use std::time::Duration;

use crate::credentials::Credentials;

/// How long a transfer may make no progress before it fails, unless told otherwise.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings for one [`crate::RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `Some(true)`: plain HTTP; `Some(false)`: HTTPS; `None`: plain HTTP for a
    /// registry on this machine (`localhost`, `127.0.0.1`, `::1`) and HTTPS elsewhere.
    pub plain_http: Option<bool>,
    /// Who to identify as.
    pub credentials: Credentials,
    /// A request or transfer that makes no progress for this long fails with
    /// [`crate::RegistryError::Stalled`].
    pub stall_timeout: Duration,
    /// Accept any TLS certificate (self-signed test registries). Never the default.
    pub insecure_skip_verify: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            plain_http: None,
            credentials: Credentials::Anonymous,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            insecure_skip_verify: false,
        }
    }
}

impl RegistryOptions {
    /// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
    pub fn uses_plain_http(&self, registry: &str) -> bool {
        self.plain_http.unwrap_or_else(|| is_local_host(registry))
    }
}

/// Whether the host part of `registry` is this machine's loopback name or address.
fn is_local_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_automatic_only_for_loopback() {
        let auto = RegistryOptions::default();
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(auto.uses_plain_http(local), "{local}");
        }
        for remote in [
            "docker.io",
            "127.0.0.2:5000",
            "localhost.example.com",
            "10.0.0.1",
        ] {
            assert!(!auto.uses_plain_http(remote), "{remote}");
        }
        let forced = RegistryOptions {
            plain_http: Some(false),
            ..RegistryOptions::default()
        };
        assert!(!forced.uses_plain_http("localhost:5000"));
        let plain = RegistryOptions {
            plain_http: Some(true),
            ..RegistryOptions::default()
        };
        assert!(plain.uses_plain_http("docker.io"));
        assert_eq!(auto.stall_timeout, Duration::from_secs(60));
    }
}
