//! The one error type of this crate.
//!
//! Each variant matches a class of failure a caller must treat differently (the supervisor maps
//! them onto gRPC status codes in one place), and its message is what a user should read.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob or ingest asked for does not exist; `what` names it (e.g. `blob sha256:…`).
    #[error("{what} not found")]
    NotFound {
        /// Human-readable name of the missing object.
        what: String,
    },

    /// The blob is already committed; `what` names it.
    #[error("{what} already exists")]
    AlreadyExists {
        /// Human-readable name of the existing object.
        what: String,
    },

    /// Another live writer (in this process or another) holds the ingest for this ref.
    #[error("ingest ref {reference:?} is locked: another writer is using it")]
    Locked {
        /// The client's ingest ref.
        reference: String,
    },

    /// The caller passed something malformed (a bad digest, an over-long ref, a read too large).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The request is well-formed but does not fit the current state: a size or digest that
    /// does not match at commit, a write at the wrong offset, a write past the expected total.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),

    /// An operating-system call failed; `op` and `path` say which one and on what.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation that failed, e.g. "fsync blob directory".
        op: &'static str,
        /// The file or directory it failed on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds a closure turning an `io::Error` into [`Error::Io`] with context, for `map_err`.
    pub(crate) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Like [`Error::io`] but for `rustix` errors.
    pub(crate) fn errno<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(rustix::io::Errno) -> Error + 'a {
        move |errno| Error::Io {
            op,
            path: path.to_path_buf(),
            source: errno.into(),
        }
    }
}
