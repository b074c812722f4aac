//! The shim manager's error type and how it reaches clients as a gRPC status.

use berth_shim::client::ClientError;
use tonic::{Code, Status};

use crate::error::ApiError;

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such task, or the process is gone.
    #[error("{0}")]
    NotFound(String),
    /// The task or exec process exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The task's state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Berth does not provide this.
    #[error("{0}")]
    Unimplemented(String),
    /// The shim refused or failed the call; its code and message are passed on.
    #[error("task {task}: {}", .status.message())]
    Shim {
        /// The task id.
        task: String,
        /// What the shim answered (boxed: a status is large, and errors travel far).
        status: Box<Status>,
    },
    /// The `berth-shim` binary could not be launched, reached or run.
    #[error("task {task}: {source}")]
    Client {
        /// The task id.
        task: String,
        /// What went wrong.
        source: ClientError,
    },
    /// A file of the task's bundle could not be written or removed.
    #[error("task {task}: {what}: {source}")]
    Io {
        /// The task id.
        task: String,
        /// What berthd was doing, e.g. `writing config.json`.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A failure in the daemon's own stores (metadata, snapshots).
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl TaskError {
    /// The error for a call `task`'s shim answered with `status`.
    pub fn shim(task: &str, status: Status) -> Self {
        TaskError::Shim {
            task: task.to_string(),
            status: Box::new(status),
        }
    }

    /// The gRPC code a client sees.
    pub fn code(&self) -> Code {
        match self {
            TaskError::NotFound(_) => Code::NotFound,
            TaskError::AlreadyExists(_) => Code::AlreadyExists,
            TaskError::InvalidArgument(_) => Code::InvalidArgument,
            TaskError::FailedPrecondition(_) => Code::FailedPrecondition,
            TaskError::Unimplemented(_) => Code::Unimplemented,
            TaskError::Shim { status, .. } => status.code(),
            TaskError::Client { source, .. } => match source {
                ClientError::Spawn { .. } | ClientError::SocketPathTooLong { .. } => {
                    Code::FailedPrecondition
                }
                ClientError::Connect { .. } => Code::Unavailable,
                _ => Code::Internal,
            },
            TaskError::Io { .. } => Code::Internal,
            TaskError::Api(e) => e.code(),
        }
    }
}

impl From<TaskError> for Status {
    fn from(e: TaskError) -> Self {
        let code = e.code();
        if matches!(code, Code::Internal | Code::Unavailable | Code::Unknown) {
            tracing::error!(error = %e, ?code, "task request failed");
        } else {
            tracing::debug!(error = %e, ?code, "task request refused");
        }
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shims_refusal_keeps_its_code_and_message() {
        let e = TaskError::Shim {
            task: "t1".into(),
            status: Box::new(Status::already_exists("exec e1 already exists")),
        };
        let status = Status::from(e);
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status.message(), "task t1: exec e1 already exists");
    }

    #[test]
    fn a_missing_shim_binary_is_a_precondition_naming_it() {
        let e = TaskError::Client {
            task: "t1".into(),
            source: ClientError::Spawn {
                binary: "/nope/berth-shim".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            },
        };
        let status = Status::from(e);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("/nope/berth-shim"), "{status:?}");
    }
}
