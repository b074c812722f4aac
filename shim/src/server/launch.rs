//! `berth-shim start`: starting the daemon shim of a task.
//!
//! The daemon is this same binary run as `berth-shim serve` in a new session (setsid),
//! with the bundle as its working directory and `/dev/null` as stdio; `start` exits as
//! soon as it is ready, so the daemon is reparented away from berthd. Readiness comes back
//! through a pipe on the daemon's fd 3: `ok`, or the reason it failed. When the socket
//! already answers, the shim is up and `start` only prints the socket again.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::cli::daemon_flags;
use crate::server::daemon::{FAILED_PREFIX, READY_MESSAGE};
use crate::server::fd::pipe;
use crate::server::{DaemonConfig, ShimError};

/// How long the daemon has to bind its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Descriptor number of the ready pipe in the daemon.
const READY_FD: i32 = 3;

/// Starts the daemon shim for `config` (unless one already answers on its socket) and
/// returns the socket path once it listens.
pub fn start(config: &DaemonConfig) -> Result<PathBuf, ShimError> {
    config.validate()?;
    if std::os::unix::net::UnixStream::connect(&config.socket).is_ok() {
        return Ok(config.socket.clone());
    }
    let (ready_reader, ready_writer) = pipe().map_err(ShimError::io("create ready pipe", ""))?;
    let binary = std::env::current_exe().map_err(ShimError::io("find own binary", ""))?;
    let mut command = Command::new(&binary);
    command
        .arg("serve")
        .args(daemon_flags(config))
        .arg("--ready-fd")
        .arg(READY_FD.to_string())
        .current_dir(&config.task.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let writer = ready_writer.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (setsid, fcntl, dup2, close_range) on integers.
    unsafe {
        command.pre_exec(move || enter_daemon_session(writer));
    }
    let mut child = command
        .spawn()
        .map_err(ShimError::io("start the daemon shim", &binary))?;
    drop(command);
    drop(ready_writer);

    let answer = read_answer(ready_reader)?;
    let answer = answer.trim();
    if answer == READY_MESSAGE {
        return Ok(config.socket.clone());
    }
    // The daemon failed and exits; collect it so no zombie lingers while we report.
    let _ = child.wait();
    let log = config.task.bundle.join("shim.log");
    Err(ShimError::FailedPrecondition(
        match answer.strip_prefix(FAILED_PREFIX) {
            Some(reason) => format!("the shim failed to start: {reason}"),
            None => format!(
                "the shim exited before it was ready (see {})",
                log.display()
            ),
        },
    ))
}

/// In the daemon child: new session, ready pipe at fd 3, nothing else inherited.
fn enter_daemon_session(writer: i32) -> std::io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let placed = if writer == READY_FD {
        // dup2 onto itself would keep close-on-exec: clear it instead.
        // SAFETY: F_SETFD on a descriptor number; no memory is touched.
        unsafe { libc::fcntl(READY_FD, libc::F_SETFD, 0) }
    } else {
        // SAFETY: dup2 between two descriptor numbers; the copy lacks close-on-exec.
        unsafe { libc::dup2(writer, READY_FD) }
    };
    if placed < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: marks every descriptor above the ready pipe close-on-exec; no memory touched.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (READY_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );
    }
    Ok(())
}

/// Reads the daemon's answer: everything until it closes the pipe (or exits).
fn read_answer(reader: OwnedFd) -> Result<String, ShimError> {
    let mut poll = libc::pollfd {
        fd: reader.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    let mut answer = Vec::new();
    let mut file = std::fs::File::from(reader);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ShimError::FailedPrecondition(format!(
                "the shim did not get ready within {READY_TIMEOUT:?}"
            )));
        }
        // SAFETY: `poll` is one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ShimError::io("wait for the shim", "")(error));
        }
        if ready == 0 {
            continue;
        }
        let mut chunk = [0u8; 512];
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() > 64 * 1024 || answer.ends_with(b"\n") {
                    break;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ShimError::io("read the shim's answer", "")(error)),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
