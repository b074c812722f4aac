//! The one error type of the client half.

use std::path::PathBuf;
use std::time::Duration;

/// Why launching, reaching or cleaning up a shim failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `berth-shim` binary could not be run at all (missing, not executable).
    #[error("cannot run shim binary {binary}: {source}")]
    Spawn {
        /// The binary berthd tried to run.
        binary: PathBuf,
        /// The I/O error from exec.
        source: std::io::Error,
    },
    /// `berth-shim <command>` ran but reported failure; `message` is what it printed on stderr.
    #[error("berth-shim {command} failed ({status}): {message}")]
    CommandFailed {
        /// `start`, `spare` or `delete`.
        command: &'static str,
        /// How the process ended, e.g. `exit status: 1`.
        status: String,
        /// Its stderr, trimmed (or a note that it printed nothing).
        message: String,
    },
    /// `berth-shim <command>` did not finish in time and was killed.
    #[error("berth-shim {command} did not finish within {after:?}")]
    Timeout {
        /// `start`, `spare` or `delete`.
        command: &'static str,
        /// The limit that ran out.
        after: Duration,
    },
    /// `berth-shim <command>` succeeded but printed something that is not the agreed reply.
    #[error("berth-shim {command} printed an unexpected reply: {detail}")]
    BadReply {
        /// `start`, `spare` or `delete`.
        command: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// Waiting for or reading from the `berth-shim` process failed.
    #[error("talking to berth-shim {command}: {source}")]
    Io {
        /// `start`, `spare` or `delete`.
        command: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shim socket path would not fit in a unix socket address.
    #[error("shim socket path {path} is {len} bytes long; unix sockets allow at most {max}")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing answered on the shim's socket (the shim is gone, or hung past the timeout).
    #[error("cannot connect to shim at {socket}: {detail}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A spare shim did not take on the task it was given.
    #[error("the spare shim at {socket} did not take task {id}: {detail}")]
    Assign {
        /// The spare's socket.
        socket: PathBuf,
        /// The task id.
        id: String,
        /// What went wrong.
        detail: String,
    },
}
