//! `berth-shim start`: starting the daemon shim of a task; `berth-shim spare`: starting a
//! spare daemon shim that berthd gives a task later.
//!
//! The daemon is a fork of `start` (no second exec: loading the binary again cost about a
//! millisecond of every task's start) in a new session (setsid), with the bundle as its
//! working directory and `/dev/null` as stdio; `start` exits as soon as it is ready, so the
//! daemon is reparented away from berthd. Readiness comes back through a pipe: `ok`, or the
//! reason it failed. When the socket already answers, the shim is up and `start` only
//! prints the socket again. (`berth-shim serve` runs the same daemon in the foreground.)
//! A spare starts the same way, in `/` (it has no bundle yet).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::server::daemon::{self, DaemonMode, FAILED_PREFIX, READY_MESSAGE};
use crate::server::fd::pipe;
use crate::server::{DaemonConfig, ShimError, SpareConfig};

/// How long the daemon has to bind its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the daemon shim for `config` (unless one already answers on its socket) and
/// returns the socket path once it listens.
pub fn start(config: &DaemonConfig) -> Result<PathBuf, ShimError> {
    config.validate()?;
    if std::os::unix::net::UnixStream::connect(&config.socket).is_ok() {
        return Ok(config.socket.clone());
    }
    let log = config.task.bundle.join("shim.log");
    let hint = format!("see {}", log.display());
    fork_daemon(&config.task.bundle, &hint, DaemonMode::Task(config.clone()))?;
    Ok(config.socket.clone())
}

/// Starts a spare daemon shim for `config` and returns its socket path and pid once it
/// listens. A spare's socket is its own: one that already answers is refused.
pub fn start_spare(config: &SpareConfig) -> Result<(PathBuf, u32), ShimError> {
    config.validate()?;
    if std::os::unix::net::UnixStream::connect(&config.socket).is_ok() {
        return Err(ShimError::AlreadyExists(format!(
            "a shim already listens on {}",
            config.socket.display()
        )));
    }
    // A spare has no bundle (nor log) yet; its failures come back on the ready pipe.
    let pid = fork_daemon(
        Path::new("/"),
        "it left no log",
        DaemonMode::Spare(config.clone()),
    )?;
    Ok((config.socket.clone(), pid))
}

/// Forks the daemon shim in `mode` with `workdir` as its working directory and waits until
/// it listens (or reports why it cannot); returns its pid. `hint` says where to look if it
/// dies silently.
fn fork_daemon(workdir: &Path, hint: &str, mode: DaemonMode) -> Result<u32, ShimError> {
    let (ready_reader, ready_writer) = pipe().map_err(ShimError::io("create ready pipe", ""))?;
    // Opened before the fork, so the child has nothing to open that could fail silently.
    let dev_null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(ShimError::io("open", "/dev/null"))?;
    // SAFETY: `start` is single-threaded (no async runtime, no threads have been spawned),
    // so the child is a complete copy of this process and may go on running Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ShimError::io("fork the daemon shim", "")(
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(ready_reader);
        let code = match enter_daemon_session(workdir, dev_null, &ready_writer) {
            Ok(()) => match daemon::run(mode, Some(ready_writer)) {
                Ok(()) => 0,
                Err(_) => 1,
            },
            Err(error) => {
                let mut ready = std::fs::File::from(ready_writer);
                let _ = writeln!(ready, "{FAILED_PREFIX}entering the daemon session: {error}");
                1
            }
        };
        std::process::exit(code);
    }
    drop(ready_writer);
    drop(dev_null);

    let answer = read_answer(ready_reader)?;
    let answer = answer.trim();
    if answer == READY_MESSAGE {
        return Ok(pid as u32);
    }
    // The daemon failed and exits; collect it so no zombie lingers while we report.
    // SAFETY: waits for our own child; the status pointer may be null.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    Err(ShimError::FailedPrecondition(
        match answer.strip_prefix(FAILED_PREFIX) {
            Some(reason) => format!("the shim failed to start: {reason}"),
            None => format!("the shim exited before it was ready ({hint})"),
        },
    ))
}

/// In the daemon child: a new session (no controlling terminal, not in berthd's process
/// group), `workdir` (the bundle; `/` for a spare) as working directory, `/dev/null` as stdio so that nothing holds the
/// pipes `start`'s caller reads until EOF, and no other inherited descriptor but `ready`.
fn enter_daemon_session(
    workdir: &Path,
    dev_null: std::fs::File,
    ready: &OwnedFd,
) -> std::io::Result<()> {
    rustix::process::setsid()?;
    std::env::set_current_dir(workdir)?;
    for target in 0..=2 {
        // SAFETY: dup2 between two descriptor numbers; the copies lack close-on-exec, as
        // stdio should.
        if unsafe { libc::dup2(dev_null.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    drop(dev_null);
    // Whatever else `start` inherited from its caller (nothing owns it in this process).
    let ready = ready.as_raw_fd() as libc::c_uint;
    for (first, last) in [(3, ready.saturating_sub(1)), (ready + 1, libc::c_uint::MAX)] {
        if first <= last {
            // SAFETY: closes descriptor numbers no Rust object in this process owns (the
            // ready pipe is outside both ranges, /dev/null was dropped above).
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        }
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
