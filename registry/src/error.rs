//! The one error type of this crate: every message is a single line that names the
//! reference, the registry host or the file it is about.

use std::path::PathBuf;

/// What can go wrong when talking to a registry or reading what it serves.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference does not follow the `[host[:port]/]name[:tag][@digest]` grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text that was given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The platform does not follow the `os/arch[/variant]` grammar.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform {
        /// The text that was given.
        platform: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Credentials given on the command line or in a config file cannot be used.
    #[error("invalid credentials: {reason}")]
    InvalidCredentials {
        /// What is wrong with them (never the secret itself).
        reason: String,
    },

    /// The registry does not have the manifest, blob or repository asked for.
    #[error("{what}: not found")]
    NotFound {
        /// What was looked up, e.g. `manifest docker.io/library/busybox:latest`.
        what: String,
    },

    /// The registry refused the request: the credentials are wrong or missing.
    #[error("registry {registry} refused access to {what}: wrong or missing credentials")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
    },

    /// No connection to the registry could be made, or it was lost.
    #[error("registry {registry} is unreachable: {detail}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// Why (connection refused, DNS failure, connection reset, ...).
        detail: String,
    },

    /// The TLS handshake with the registry failed (an untrusted or mismatching
    /// certificate, most often).
    #[error("TLS connection to registry {registry} failed: {detail}")]
    Tls {
        /// The registry host.
        registry: String,
        /// What the TLS layer reported.
        detail: String,
    },

    /// Content does not hash to the digest it was asked for by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest of what was received.
        actual: String,
    },

    /// Content does not have the size its descriptor announces.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size in the descriptor.
        expected: u64,
        /// The size received (or at least received so far).
        actual: u64,
    },

    /// A transfer made no progress for the configured stall timeout.
    #[error("{what}: no progress for {seconds} s, giving up")]
    Stalled {
        /// The transfer that stalled.
        what: String,
        /// The stall timeout, in seconds.
        seconds: u64,
    },

    /// An image index has no manifest for the wanted platform.
    #[error("no manifest for platform {wanted} in the index; available: {available}")]
    NoMatchingPlatform {
        /// The platform asked for, e.g. `linux/s390x`.
        wanted: String,
        /// The platforms the index offers, comma-separated.
        available: String,
    },

    /// A manifest or index of a media type this crate does not handle.
    #[error("{what}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The document, e.g. `manifest docker.io/library/busybox:latest`.
        what: String,
        /// Its media type (with a hint when one helps).
        media_type: String,
    },

    /// The registry broke the distribution protocol, or sent a document that is not valid.
    #[error("{what}: {detail}")]
    Protocol {
        /// What was being done.
        what: String,
        /// What went wrong.
        detail: String,
    },

    /// The stream of bytes handed to an upload failed.
    #[error("{what}: reading the data to upload failed: {source}")]
    UploadSource {
        /// The upload.
        what: String,
        /// The error from the stream.
        #[source]
        source: std::io::Error,
    },

    /// Reading a local file (a docker config, say) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error from the system.
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// A [`RegistryError::Protocol`] error about `what`.
    pub(crate) fn protocol(what: impl Into<String>, detail: impl Into<String>) -> Self {
        RegistryError::Protocol {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Whether retrying the same request later may succeed (the network or the
    /// registry failed, not the request itself).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. } | RegistryError::Stalled { .. }
        )
    }
}
