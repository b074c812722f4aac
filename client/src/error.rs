//! The one error type of this crate: every way a client-side operation can fail, each
//! printed as one line that names the object it is about.

use std::time::Duration;

use crate::connection::ConnectError;

/// Why a client-side operation (ingest, unpack, import, export, pull, push) failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),

    /// The daemon answered a call with an error; its message is kept as it was sent.
    #[error("{action}: {} ({:?})", .status.message(), .status.code())]
    Rpc {
        /// What was being done, e.g. "reading blob sha256:…".
        action: String,
        /// The daemon's answer (boxed: a status is large, errors are rare).
        status: Box<tonic::Status>,
    },

    /// The registry client failed (resolve, fetch, push, authentication).
    #[error(transparent)]
    Registry(#[from] berth_registry::RegistryError),

    /// Something named does not exist (an image, a blob, a platform's manifest).
    #[error("{what}: not found")]
    NotFound {
        /// What was looked for, e.g. `image "docker.io/library/busybox:latest"`.
        what: String,
    },

    /// Bytes did not have the digest or size they were announced with.
    #[error("{what}: {detail}")]
    DigestMismatch {
        /// The object, e.g. `blob sha256:…`.
        what: String,
        /// What differed.
        detail: String,
    },

    /// An image archive is malformed or hostile; nothing of it was kept.
    #[error("invalid image archive: {detail}")]
    InvalidArchive {
        /// What is wrong with it.
        detail: String,
    },

    /// An index, manifest or config in the store (or from a registry) is malformed.
    #[error("invalid {what}: {detail}")]
    InvalidImage {
        /// The object, e.g. `manifest sha256:…`.
        what: String,
        /// What is wrong with it.
        detail: String,
    },

    /// An object is larger than this client accepts for its kind.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The object.
        what: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// The image has no manifest for the platform asked for.
    #[error("image {image}: no manifest for platform {platform}")]
    NoMatchingPlatform {
        /// The image (name or digest).
        image: String,
        /// The platform asked for, e.g. `linux/amd64`.
        platform: String,
    },

    /// A blob source (a registry stream, an archive entry) failed mid-transfer.
    #[error("reading {what}: {detail}")]
    Source {
        /// The object being read.
        what: String,
        /// The source's error.
        detail: String,
    },

    /// Waiting for another client that writes or unpacks the same object took too long.
    #[error("{what}: another client made no progress for {waited:?}")]
    WaitTimeout {
        /// The object waited for.
        what: String,
        /// How long nothing happened.
        waited: Duration,
    },

    /// A local I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The caller asked for something that cannot be done (bad name, bad option).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result type of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// Wraps a failed call with what was being done, for `map_err`.
    pub fn rpc(action: impl Into<String>) -> impl FnOnce(tonic::Status) -> ClientError {
        let action = action.into();
        move |status| ClientError::Rpc {
            action,
            status: Box::new(status),
        }
    }

    /// Wraps a local I/O failure with what was being done, for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
        let context = context.into();
        move |source| ClientError::Io { context, source }
    }

    /// An [`ClientError::InvalidArchive`] with this detail.
    pub fn archive(detail: impl Into<String>) -> ClientError {
        ClientError::InvalidArchive {
            detail: detail.into(),
        }
    }

    /// An [`ClientError::InvalidImage`] about `what`.
    pub fn image(what: impl Into<String>, detail: impl Into<String>) -> ClientError {
        ClientError::InvalidImage {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// The gRPC code of a daemon error, if this is one.
    pub fn rpc_code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// True if the daemon answered `NotFound`, or the object is otherwise missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
            || self.rpc_code() == Some(tonic::Code::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_keep_the_daemons_message_on_one_line() {
        let error = ClientError::rpc("reading blob sha256:ab")(tonic::Status::not_found(
            "content sha256:ab: not found",
        ));
        let text = error.to_string();
        assert_eq!(
            text,
            "reading blob sha256:ab: content sha256:ab: not found (NotFound)"
        );
        assert!(!text.contains('\n'));
        assert!(error.is_not_found());
    }

    #[test]
    fn archive_errors_say_what_is_wrong() {
        let text = ClientError::archive("index.json is missing").to_string();
        assert_eq!(text, "invalid image archive: index.json is missing");
    }
}
