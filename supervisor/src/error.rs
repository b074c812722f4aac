//! The daemon's one error type and the one place where errors become gRPC statuses.

use tonic::{Code, Status};

use crate::filters::FilterError;
use crate::ident::IdentError;
use crate::metadata::MetaError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// From the content store.
    #[error(transparent)]
    Content(#[from] berth_content::Error),
    /// From the snapshotter, mount or layer code.
    #[error(transparent)]
    Snapshot(#[from] berth_snapshot::Error),
    /// From the metadata database.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A namespace, id or key that breaks the identifier grammar.
    #[error(transparent)]
    Ident(#[from] IdentError),
    /// A malformed filter.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The named thing exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The method or option is not provided by Berth.
    #[error("{0}")]
    Unimplemented(String),
    /// A request or resource exceeds a limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Something broke inside the daemon; the message says what.
    #[error("{0}")]
    Internal(String),
}

/// Result type of request handlers.
pub type ApiResult<T> = Result<T, ApiError>;

fn io_code(source: &std::io::Error) -> Code {
    match source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

impl ApiError {
    /// The gRPC code a client sees for this error.
    pub fn code(&self) -> Code {
        use berth_content::Error as C;
        use berth_snapshot::Error as S;
        match self {
            ApiError::Content(e) => match e {
                C::NotFound { .. } => Code::NotFound,
                C::AlreadyExists { .. } => Code::AlreadyExists,
                C::Locked { .. } => Code::Unavailable,
                C::InvalidArgument(_) => Code::InvalidArgument,
                C::FailedPrecondition(_) => Code::FailedPrecondition,
                C::Io { source, .. } => io_code(source),
            },
            ApiError::Snapshot(e) => match e {
                S::NotFound(_) => Code::NotFound,
                S::AlreadyExists(_) => Code::AlreadyExists,
                S::FailedPrecondition(_) => Code::FailedPrecondition,
                S::InvalidArgument(_) => Code::InvalidArgument,
                S::Io { source, .. } => io_code(source),
                S::Layer(layer) => layer_code(layer),
            },
            ApiError::Meta(_) => Code::Internal,
            ApiError::Ident(_) | ApiError::Filter(_) | ApiError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Unimplemented(_) => Code::Unimplemented,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

fn layer_code(e: &berth_snapshot::layer::LayerError) -> Code {
    use berth_snapshot::layer::LayerError as L;
    match e {
        L::Io { source, .. } => io_code(source),
        L::Mount(_) | L::WorkerPanicked => Code::Internal,
        // Everything else is about the layer or the mounts the client gave us.
        #[allow(unreachable_patterns)]
        _ => Code::InvalidArgument,
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let code = e.code();
        if matches!(code, Code::Internal | Code::ResourceExhausted) {
            tracing::error!(error = %e, "request failed");
        } else {
            tracing::debug!(error = %e, ?code, "request refused");
        }
        Status::new(code, e.to_string())
    }
}
