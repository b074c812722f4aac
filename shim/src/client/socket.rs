//! Where a task's shim listens: `<state>/s/<first 20 hex digits of sha256("<ns>/<id>")>.sock`.
//!
//! Hashing keeps the path short whatever the namespace and id (a unix socket address
//! holds at most 107 bytes of path) and fixed for a task, so a restarted berthd can find
//! the shim again. The socket is always a path in the file system, never abstract.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::client::ClientError;

/// Longest path a unix socket address can hold (108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// Directory under berthd's state dir that holds the shim sockets.
pub const SOCKET_DIR: &str = "s";

/// How many hex digits of the digest name a socket.
const NAME_HEX_DIGITS: usize = 20;

/// The socket path of the shim of task `id` in namespace `namespace`, under berthd's
/// state directory `state_dir`.
pub fn socket_path(state_dir: &Path, namespace: &str, id: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{namespace}/{id}").as_bytes());
    let name = &hex::encode(digest)[..NAME_HEX_DIGITS];
    state_dir.join(SOCKET_DIR).join(format!("{name}.sock"))
}

/// Refuses a socket path too long for a unix socket address.
pub fn check_socket_path(path: &Path) -> Result<(), ClientError> {
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_SOCKET_PATH_LEN {
        return Err(ClientError::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
            max: MAX_SOCKET_PATH_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_the_hashed_task_name_under_the_socket_dir() {
        let path = socket_path(Path::new("/run/berth"), "default", "t1");
        // sha256("default/t1") starts with these 20 hex digits.
        let expected = &hex::encode(Sha256::digest(b"default/t1"))[..20];
        assert_eq!(path, PathBuf::from(format!("/run/berth/s/{expected}.sock")));
        assert_eq!(path.file_name().unwrap().len(), 25);
    }

    #[test]
    fn namespace_and_id_both_matter() {
        let state = Path::new("/run/berth");
        let a = socket_path(state, "default", "web");
        assert_ne!(a, socket_path(state, "other", "web"));
        assert_ne!(a, socket_path(state, "default", "web2"));
        // The separator is part of the hashed text: "a/bc" and "ab/c" differ.
        assert_ne!(socket_path(state, "a", "bc"), socket_path(state, "ab", "c"));
        assert_eq!(a, socket_path(state, "default", "web"));
    }

    #[test]
    fn long_ids_still_give_short_paths_but_long_state_dirs_are_refused() {
        let long_id = "x".repeat(76);
        let ok = socket_path(Path::new("/run/berth"), "default", &long_id);
        assert!(check_socket_path(&ok).is_ok());
        let deep = PathBuf::from(format!("/{}", "d".repeat(90)));
        let too_long = socket_path(&deep, "default", "t1");
        assert!(matches!(
            check_socket_path(&too_long),
            Err(ClientError::SocketPathTooLong { len, .. }) if len > MAX_SOCKET_PATH_LEN
        ));
    }
}
