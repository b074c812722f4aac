//! The crate's one error type.
//!
//! The first four variants mirror the gRPC status codes the supervisor answers with
//! (`NotFound`, `AlreadyExists`, `FailedPrecondition`, `InvalidArgument`); their message is
//! a complete sentence naming the snapshot or option at fault. `Io` carries what the crate
//! was doing when the kernel said no.

/// Everything that can go wrong in the snapshotter, the mount code or the layer code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named snapshot (or its parent) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A snapshot with that key or name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The snapshot exists but is in the wrong state for the request (e.g. it has children,
    /// or it is not active).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed (empty key, bad label, unknown field path, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A system call failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the crate was doing, e.g. `create directory /x/y`.
        context: String,
        /// The underlying error from the kernel or the standard library.
        #[source]
        source: std::io::Error,
    },
    /// A layer could not be applied or a diff could not be written.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
