//! How a task's init process ended, kept in memory as [`ExitInfo`] and on disk in the
//! bundle's `exit` file (`{"pid":N,"exit_status":N,"exited_at":"<RFC 3339>"}`), written
//! atomically the moment the init is reaped, so `berth-shim delete` can still report it
//! after the shim itself is gone.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::client::{format_rfc3339, ExitInfo};
use crate::server::ShimError;

/// File name of the exit record inside the bundle.
pub const EXIT_FILE: &str = "exit";

/// Largest exit file read back (a real one is under 100 bytes).
const MAX_EXIT_FILE_BYTES: u64 = 4096;

/// The exit status of a raw `waitpid` status: the exit code, or 128 + the signal number
/// for a process killed by a signal (the shell's and containerd's convention).
pub fn exit_status_of(wait_status: i32) -> u32 {
    if libc::WIFEXITED(wait_status) {
        libc::WEXITSTATUS(wait_status) as u32
    } else if libc::WIFSIGNALED(wait_status) {
        128 + libc::WTERMSIG(wait_status) as u32
    } else {
        // Stopped or continued: not an exit; reported as unknown if it ever gets here.
        crate::client::UNKNOWN_EXIT_STATUS
    }
}

/// The exit of process `pid` with raw wait status `wait_status`, now.
pub fn exit_now(pid: u32, wait_status: i32) -> ExitInfo {
    ExitInfo {
        pid,
        exit_status: exit_status_of(wait_status),
        exited_at: SystemTime::now(),
    }
}

/// `exited_at` as a protobuf timestamp.
pub fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// The JSON shape of the file (and of `berth-shim delete`'s reply line).
#[derive(Serialize)]
struct ExitLine {
    pid: u32,
    exit_status: u32,
    exited_at: String,
}

impl ExitLine {
    fn of(exit: &ExitInfo) -> ExitLine {
        ExitLine {
            pid: exit.pid,
            exit_status: exit.exit_status,
            exited_at: format_rfc3339(exit.exited_at),
        }
    }
}

/// `exit` as one JSON line without the newline.
pub fn to_json(exit: &ExitInfo) -> String {
    // Serialising two numbers and a string cannot fail.
    serde_json::to_string(&ExitLine::of(exit)).unwrap_or_default()
}

/// Writes the exit file of the bundle atomically (temporary file, fsync, rename).
pub fn write(bundle: &Path, exit: &ExitInfo) -> Result<(), ShimError> {
    berth_runtime::write_json_atomically(&bundle.join(EXIT_FILE), &ExitLine::of(exit))?;
    Ok(())
}

/// Reads the bundle's exit file: `None` when there is none.
pub fn read(bundle: &Path) -> Result<Option<ExitInfo>, ShimError> {
    use std::io::Read;
    let path = bundle.join(EXIT_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ShimError::io("open", &path)(error)),
    };
    let mut text = String::new();
    file.take(MAX_EXIT_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(ShimError::io("read", &path))?;
    ExitInfo::from_json(&text)
        .map(Some)
        .map_err(|why| ShimError::InvalidArgument(format!("{}: {why}", path.display())))
}

/// Removes the bundle's exit file; a missing one is fine.
pub fn remove(bundle: &Path) -> Result<(), ShimError> {
    let path = bundle.join(EXIT_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ShimError::io("remove", &path)(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn wait_statuses_become_exit_codes_or_128_plus_signal() {
        // Exit code 3 is encoded in the second byte; a SIGKILL death in the low bits.
        assert_eq!(exit_status_of(3 << 8), 3);
        assert_eq!(exit_status_of(0), 0);
        assert_eq!(exit_status_of(libc::SIGKILL), 137);
        assert_eq!(exit_status_of(libc::SIGTERM), 143);
    }

    #[test]
    fn the_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let exit = ExitInfo {
            pid: 4242,
            exit_status: 3,
            exited_at: UNIX_EPOCH + Duration::new(1_700_000_000, 123_000_000),
        };
        write(dir.path(), &exit).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(exit));
        let text = std::fs::read_to_string(dir.path().join(EXIT_FILE)).unwrap();
        assert!(text.starts_with("{\"pid\":4242,\"exit_status\":3,\"exited_at\":\"2023-11-14T"));
        assert_eq!(text, to_json(&exit));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(EXIT_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_status() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EXIT_FILE), "garbage").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
