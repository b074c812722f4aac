//! A process's stdio as berthctl handles it: the fifos the shim reads and writes
//! ([`fifo`]), the copies between them and berthctl's own stdio ([`copy`]), and raw mode
//! and window size of berthctl's terminal ([`terminal`]). Nothing here speaks gRPC: the
//! commands decide when to create, start, resize and close.

pub mod copy;
pub mod fifo;
pub mod terminal;

use std::path::{Path, PathBuf};

pub use copy::{Attach, ProcessIo};
pub use fifo::{default_fifo_root, hold_output_fifos, remove_task_fifos, FifoDir, ProcessFifos};
pub use terminal::{window_size, RawMode};

/// Why a process's stdio could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// A fifo or its directory could not be made or opened.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: String,
        /// The file it was done to.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// berthctl's terminal could not be switched to or from raw mode.
    #[error("setting up the terminal: {0}")]
    Terminal(std::io::Error),
}

impl StdioError {
    /// Wraps an I/O error with what was being done to which file.
    pub fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StdioError {
        let what = what.to_string();
        let path = path.to_path_buf();
        move |source| StdioError::Io { what, path, source }
    }
}
