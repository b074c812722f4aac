//! The one error type of this crate.
//!
//! Each variant is a class of failure a caller treats differently (the shim maps them onto
//! gRPC status codes in one place). Failures of the runtime binary keep the runtime's own words,
//! because "container does not exist" or "cgroups in hybrid mode not supported" is what an
//! operator needs to read, not "exit status 1".

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while driving an OCI runtime or building a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime binary (e.g. `runc`) is not on `PATH` or not an executable file.
    #[error("OCI runtime binary {binary:?} not found (not an executable file, nor on PATH)")]
    MissingBinary {
        /// The binary as configured.
        binary: PathBuf,
    },

    /// The runtime has no container with this id.
    #[error("container {id:?} does not exist")]
    NotFound {
        /// The container id asked for.
        id: String,
    },

    /// A container with this id already exists in the runtime's root.
    #[error("container {id:?} already exists")]
    AlreadyExists {
        /// The container id asked for.
        id: String,
    },

    /// The container is not running, for an operation that needs it to (e.g. `kill` or `pause`
    /// of a stopped container).
    #[error("container {id:?} is not running")]
    NotRunning {
        /// The container id asked for.
        id: String,
    },

    /// The runtime ran and failed; `message` is the runtime's own error message.
    #[error("{command} failed ({}): {message}", exit_description(*.code))]
    Failed {
        /// The binary and subcommand, e.g. `runc create`.
        command: String,
        /// Exit code of the runtime, `None` if a signal ended it.
        code: Option<i32>,
        /// The last error the runtime reported (its log, else its stderr).
        message: String,
    },

    /// The caller passed something malformed (a bad container id, an empty command line, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The image's user (from `USER`) is not in the root filesystem's `/etc/passwd`.
    #[error("user {user:?} not found in the root filesystem's /etc/passwd")]
    UserNotFound {
        /// The user name as given.
        user: String,
    },

    /// The image's group (from `USER name:group`) is not in the root filesystem's `/etc/group`.
    #[error("group {group:?} not found in the root filesystem's /etc/group")]
    GroupNotFound {
        /// The group name as given.
        group: String,
    },

    /// Output of the runtime, or a file we read, is not what its format says.
    #[error("cannot parse {what}: {message}")]
    Parse {
        /// What was being parsed, e.g. `runc state output`.
        what: String,
        /// Why it did not parse.
        message: String,
    },

    /// An operating-system call failed; `op` and `path` say which one and on what.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation that failed, e.g. "write config.json".
        op: &'static str,
        /// The file or directory it failed on (empty when there is none).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn exit_description(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    }
}

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

    /// Builds a [`Error::Parse`] for `what` from any displayable cause.
    pub(crate) fn parse(what: impl Into<String>, cause: impl std::fmt::Display) -> Error {
        Error::Parse {
            what: what.into(),
            message: cause.to_string(),
        }
    }
}
