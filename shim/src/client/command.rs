//! Running one `berth-shim` subcommand to completion, with a time limit, capturing what
//! it prints.
//!
//! Output goes to anonymous in-memory files rather than pipes: `berth-shim start` leaves a
//! daemon behind, and a pipe would stay open for as long as any descendant held it, so
//! reading to end-of-file could hang. A file is simply read once the command has exited.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::client::ClientError;

/// Most bytes kept of what a command prints on each stream.
const MAX_CAPTURED_BYTES: u64 = 64 << 10;

/// What a finished command left.
pub(crate) struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output (lossy UTF-8, at most [`MAX_CAPTURED_BYTES`]).
    pub stdout: String,
    /// Its standard error (lossy UTF-8, at most [`MAX_CAPTURED_BYTES`]).
    pub stderr: String,
}

impl Finished {
    /// The failure to report for a command that exited unsuccessfully.
    pub fn failure(&self, command: &'static str) -> ClientError {
        let message = self.stderr.trim();
        ClientError::CommandFailed {
            command,
            status: self.status.to_string(),
            message: if message.is_empty() {
                "(it printed nothing on stderr)".to_string()
            } else {
                message.to_string()
            },
        }
    }
}

/// An anonymous, close-on-exec in-memory file to capture one output stream.
fn capture_file(command: &'static str) -> Result<std::fs::File, ClientError> {
    let fd = rustix::fs::memfd_create("berth-shim-output", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|errno| ClientError::Io {
            command,
            source: errno.into(),
        })?;
    Ok(std::fs::File::from(fd))
}

fn read_capture(command: &'static str, file: &mut std::fs::File) -> Result<String, ClientError> {
    let io = |source| ClientError::Io { command, source };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_CAPTURED_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs `binary args…` with stdin from /dev/null, waits at most `limit` for it to exit
/// (killing it past that), and returns its status and output.
pub(crate) async fn run(
    command: &'static str,
    binary: &Path,
    args: Vec<OsString>,
    limit: Duration,
) -> Result<Finished, ClientError> {
    let io = |source| ClientError::Io { command, source };
    let mut stdout = capture_file(command)?;
    let mut stderr = capture_file(command)?;
    let mut child = tokio::process::Command::new(binary)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout.try_clone().map_err(io)?))
        .stderr(Stdio::from(stderr.try_clone().map_err(io)?))
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ClientError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })?;
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(waited) => waited.map_err(io)?,
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(ClientError::Timeout {
                command,
                after: limit,
            });
        }
    };
    Ok(Finished {
        status,
        stdout: read_capture(command, &mut stdout)?,
        stderr: read_capture(command, &mut stderr)?,
    })
}
