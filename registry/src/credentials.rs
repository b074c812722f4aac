//! Registry credentials: from a `user:password` flag or from a Docker-style
//! `config.json` (`auths.<host>.auth` or `username`/`password`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::RegistryError;
use crate::reference::DEFAULT_REGISTRY;

/// How to identify to a registry. A registry that asks for a bearer token gets one
/// in exchange for these; one that asks for basic auth gets them directly.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials (public images; anonymous bearer tokens).
    #[default]
    Anonymous,
    /// A user name and password (or access token used as password).
    Basic {
        /// The user name.
        username: String,
        /// The password; never printed.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    /// Parses `user:password` as given to `--user`. Without a ':' this is an error, so
    /// that the command line can prompt for the password instead.
    pub fn from_user_flag(s: &str) -> Result<Credentials, RegistryError> {
        let (username, password) =
            s.split_once(':')
                .ok_or_else(|| RegistryError::InvalidCredentials {
                    reason: "expected user:password (no ':' given)".to_string(),
                })?;
        if username.is_empty() {
            return Err(RegistryError::InvalidCredentials {
                reason: "empty user name".to_string(),
            });
        }
        Ok(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    /// The credentials for `registry` (as [`crate::Reference::registry`] spells it) in
    /// the Docker config file at `path`; `None` when the file does not exist or has no
    /// entry for that registry. Entries may be keyed by host or by URL (Docker Hub's is
    /// `https://index.docker.io/v1/`). Credential helpers (`credsStore`,
    /// `credHelpers`) are not run.
    pub fn from_docker_config(
        path: &Path,
        registry: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let invalid = |reason: String| RegistryError::InvalidCredentials {
            reason: format!("{}: {reason}", path.display()),
        };
        let config: DockerConfig =
            serde_json::from_slice(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let wanted = config_key_host(registry);
        let Some(entry) = config
            .auths
            .iter()
            .find(|(key, _)| config_key_host(key) == wanted)
            .map(|(_, entry)| entry)
        else {
            return Ok(None);
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| invalid(format!("auths.{registry}.auth is not base64")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| invalid(format!("auths.{registry}.auth is not UTF-8")))?;
            return Credentials::from_user_flag(&decoded)
                .map(Some)
                .map_err(|_| invalid(format!("auths.{registry}.auth is not user:password")));
        }
        match (&entry.username, &entry.password) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Ok(Some(Credentials::Basic {
                    username: username.clone(),
                    password: password.clone(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// Where the Docker config is: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`; `None` when neither variable is set.
    pub fn default_docker_config_path() -> Option<PathBuf> {
        docker_config_path_from(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"))
    }
}

/// [`Credentials::default_docker_config_path`] given the values of `DOCKER_CONFIG`
/// and `HOME`.
fn docker_config_path_from(
    docker_config: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(dir) = docker_config.filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = home.filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// The parts of a Docker `config.json` read here.
#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

/// One `auths` entry.
#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The registry host a config key or registry name stands for: scheme and path
/// dropped, lowercased, and Docker Hub's several names folded into one.
fn config_key_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DEFAULT_REGISTRY.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn user_flag_splits_at_the_first_colon() {
        assert_eq!(
            Credentials::from_user_flag("alice:s3:cr:et").unwrap(),
            basic("alice", "s3:cr:et")
        );
        assert_eq!(
            Credentials::from_user_flag("bob:").unwrap(),
            basic("bob", "")
        );
        assert!(matches!(
            Credentials::from_user_flag("alice"),
            Err(RegistryError::InvalidCredentials { .. })
        ));
        assert!(Credentials::from_user_flag(":pw").is_err());
    }

    #[test]
    fn config_path_prefers_docker_config_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            docker_config_path_from(os("/etc/dc"), os("/root")),
            Some(PathBuf::from("/etc/dc/config.json"))
        );
        assert_eq!(
            docker_config_path_from(os(""), os("/home/a")),
            Some(PathBuf::from("/home/a/.docker/config.json"))
        );
        assert_eq!(docker_config_path_from(None, None), None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let text = format!("{:?}", basic("alice", "hunter2"));
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn docker_config_entries_are_found_by_host_or_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("hub:hubpw");
        let local = base64::engine::general_purpose::STANDARD.encode("me:pw:with:colons");
        std::fs::write(
            &path,
            serde_json::json!({
                "auths": {
                    "https://index.docker.io/v1/": {"auth": encoded},
                    "127.0.0.1:5000": {"auth": local},
                    "http://Example.com/some/path": {"username": "u", "password": "p"},
                    "empty.example": {},
                },
                "credsStore": "desktop",
            })
            .to_string(),
        )
        .unwrap();
        let get = |r: &str| Credentials::from_docker_config(&path, r).unwrap();
        assert_eq!(get("docker.io"), Some(basic("hub", "hubpw")));
        assert_eq!(get("127.0.0.1:5000"), Some(basic("me", "pw:with:colons")));
        assert_eq!(get("example.com"), Some(basic("u", "p")));
        assert_eq!(get("empty.example"), None);
        assert_eq!(get("127.0.0.1:5001"), None);
        assert_eq!(
            Credentials::from_docker_config(&dir.path().join("missing.json"), "docker.io").unwrap(),
            None
        );
    }

    #[test]
    fn a_broken_docker_config_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Credentials::from_docker_config(&path, "docker.io").unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        std::fs::write(&path, r#"{"auths":{"docker.io":{"auth":"!!!"}}}"#).unwrap();
        assert!(Credentials::from_docker_config(&path, "docker.io").is_err());
    }
}
