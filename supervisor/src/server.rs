//! The API socket: a path-based unix socket, 0600 in a 0700 directory, never abstract.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process is already serving on the socket.
    #[error("{0} is in use by another running daemon")]
    InUse(String),
    /// Creating the directory or binding the socket failed.
    #[error("listening on {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Binds `path`: creates its directory (0700) if missing, removes a stale socket left by
/// a dead daemon (refusing if a live one answers), binds with mode 0600.
pub fn listen(path: &Path) -> Result<UnixListener, ListenError> {
    let io = |source| ListenError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    // Bind under a strict umask so the socket is never reachable by others, even briefly.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}
