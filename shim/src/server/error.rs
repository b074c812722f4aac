//! The one error type of the server half, and its mapping onto gRPC status codes.
//!
//! Runtime failures keep the runtime's own message ("exec: \"/nope\": no such file or
//! directory"), because that is what the person at the client needs to read.

use std::path::PathBuf;

/// Everything the shim can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The request is malformed (bad id, bad stdio URI, wrong task id, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// The task or process asked for does not exist (or has already finished).
    #[error("{0}")]
    NotFound(String),
    /// The task or process already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The task or process is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The shim does not do this (checkpoints).
    #[error("{0}")]
    Unimplemented(String),
    /// The OCI runtime failed or refused; its message is kept.
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    /// Mounting or unmounting the root filesystem failed.
    #[error(transparent)]
    Mount(#[from] berth_snapshot::Error),
    /// A system call failed; `op` and `path` say what and where.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "open stdout fifo".
        op: &'static str,
        /// The file concerned (empty when there is none).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking job of the shim died (a bug); the message says which.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ShimError {
    /// A closure turning an `io::Error` into [`ShimError::Io`], for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ShimError {
        let path = path.into();
        move |source| ShimError::Io { op, path, source }
    }

    /// The gRPC code this error is reported with.
    pub fn code(&self) -> tonic::Code {
        use berth_runtime::Error as Runtime;
        match self {
            ShimError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            ShimError::NotFound(_) => tonic::Code::NotFound,
            ShimError::AlreadyExists(_) => tonic::Code::AlreadyExists,
            ShimError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            ShimError::Unimplemented(_) => tonic::Code::Unimplemented,
            ShimError::Runtime(error) => match error {
                Runtime::MissingBinary { .. } | Runtime::NotRunning { .. } => {
                    tonic::Code::FailedPrecondition
                }
                Runtime::NotFound { .. } => tonic::Code::NotFound,
                Runtime::AlreadyExists { .. } => tonic::Code::AlreadyExists,
                Runtime::InvalidArgument(_)
                | Runtime::UserNotFound { .. }
                | Runtime::GroupNotFound { .. } => tonic::Code::InvalidArgument,
                Runtime::Failed { .. } => tonic::Code::Unknown,
                _ => tonic::Code::Internal,
            },
            ShimError::Mount(error) => match error {
                berth_snapshot::Error::NotFound(_) => tonic::Code::NotFound,
                berth_snapshot::Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
                berth_snapshot::Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
                _ => tonic::Code::Internal,
            },
            ShimError::Io { .. } | ShimError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<ShimError> for tonic::Status {
    fn from(error: ShimError) -> tonic::Status {
        tonic::Status::new(error.code(), error.to_string())
    }
}

impl From<tokio::task::JoinError> for ShimError {
    fn from(error: tokio::task::JoinError) -> ShimError {
        ShimError::Internal(format!("a blocking job failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_keep_their_message_and_get_a_fitting_code() {
        let failed = ShimError::from(berth_runtime::Error::Failed {
            command: "runc create".into(),
            code: Some(1),
            message: "exec: \"/nope\": no such file or directory".into(),
        });
        let status = tonic::Status::from(failed);
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(status.message().contains("/nope"), "{}", status.message());

        let missing = ShimError::from(berth_runtime::Error::MissingBinary {
            binary: "crun-nope".into(),
        });
        assert_eq!(missing.code(), tonic::Code::FailedPrecondition);
        assert!(missing.to_string().contains("crun-nope"));
        assert_eq!(
            ShimError::NotFound("process already finished".into()).code(),
            tonic::Code::NotFound
        );
    }
}
