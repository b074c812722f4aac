//! Starting a container that `runc create` made, without running `runc start`.
//!
//! `runc create` leaves the container's init blocked writing one byte into the fifo
//! `<root>/<id>/exec.fifo`. All that `runc start` (runc 1.0 to 1.3) does for a created
//! container is read that byte, which lets the init exec the container's process, wait
//! until the init closes its end (it does so when it execs), and remove the fifo, which is
//! how runc tells a running container from a created one. Doing those three steps here
//! saves a whole runc process per start (~10 ms of a Go program's start-up on a small
//! machine, a fifth of the start latency beyond a bare `runc run`).
//!
//! Only the caller knows when this is safe: the binary must be runc itself (not a wrapper
//! the user wants called, nor crun), and the spec must have no `poststart` hooks (runc 1.2+
//! runs them in `start`). When the fifo is not there (the container was started already, or
//! a runc that works differently), [`release_init`] says so and the caller runs `start`.

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The fifo's name in the container's state directory under the runtime's root.
pub const EXEC_FIFO: &str = "exec.fifo";

/// How long one wait for the init's byte lasts before its liveness is checked again.
const POLL_TICK: Duration = Duration::from_millis(20);

/// What [`release_init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The init took the go-ahead and exec'd the container's process; the fifo is gone.
    Started,
    /// There is no exec fifo: the caller should run the runtime's `start`, which knows why.
    NoFifo,
}

/// Lets the created init of container `id` (pid `init_pid`) exec its process, the way
/// `runc start` does. Fails if the init dies first or does not answer within `timeout`.
pub fn release_init(root: &Path, id: &str, init_pid: u32, timeout: Duration) -> Result<Release> {
    crate::id::validate_container_id(id)?;
    let path = root.join(id).join(EXEC_FIFO);
    // Non-blocking: opening a fifo's read end blocking would wait for a writer that may
    // never come (an init that died).
    let mut fifo = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(fifo) => fifo,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Release::NoFifo),
        Err(error) => return Err(Error::io("open the exec fifo", &path)(error)),
    };
    let kind = fifo
        .metadata()
        .map_err(Error::io("inspect the exec fifo", &path))?
        .file_type();
    if !kind.is_fifo() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a fifo",
            path.display()
        )));
    }

    let deadline = Instant::now() + timeout;
    wait_for_go_byte(&mut fifo, &path, id, init_pid, deadline)?;
    // The init execs (or dies) next; either closes its end. A blocking read returns at that
    // moment, as `runc start` does, so the reply means "the process runs".
    set_blocking(&fifo, &path)?;
    let mut rest = [0u8; 16];
    loop {
        match fifo.read(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(Error::io("read the exec fifo", &path)(error)),
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io("remove the exec fifo", &path)(error)),
    }
    Ok(Release::Started)
}

/// Reads until the init's byte arrives. Until the init opens its end, a read finds no
/// writer and returns 0; so does one after an init that died, told apart by its pid. The
/// init is free to go as soon as the fifo is open here (its write does not wait for the
/// read), so it may have run and exited before the byte is read: the byte, still in the
/// pipe, is what counts, and an init found dead gets one last read.
fn wait_for_go_byte(
    fifo: &mut std::fs::File,
    path: &Path,
    id: &str,
    init_pid: u32,
    deadline: Instant,
) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        let nothing_yet = match fifo.read(&mut byte) {
            Ok(1..) => return Ok(()),
            Ok(0) => {
                // No writer yet (or one that left): poll would not wait, so sleep briefly.
                std::thread::sleep(Duration::from_millis(1));
                true
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => !wait_readable(fifo, POLL_TICK),
            Err(error) if error.kind() == ErrorKind::Interrupted => false,
            Err(error) => return Err(Error::io("read the exec fifo", path)(error)),
        };
        if nothing_yet && !is_alive(init_pid) {
            return match fifo.read(&mut byte) {
                Ok(1..) => Ok(()),
                _ => Err(Error::NotRunning { id: id.to_string() }),
            };
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed {
                command: "start".to_string(),
                code: None,
                message: format!(
                    "the init of container {id:?} did not take the go-ahead on {}",
                    path.display()
                ),
            });
        }
    }
}

/// Waits up to `tick` for data on `fifo`; true if some came (or the wait was cut short).
fn wait_readable(fifo: &std::fs::File, tick: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: fifo.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` is one valid pollfd for the duration of the call. An error (EINTR)
    // only ends this wait early; the caller reads again.
    unsafe { libc::poll(&mut poll, 1, tick.as_millis() as libc::c_int) != 0 }
}

/// Clears O_NONBLOCK on the fifo.
fn set_blocking(fifo: &std::fs::File, path: &Path) -> Result<()> {
    let fd = fifo.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory is passed.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) >= 0
    };
    if cleared {
        Ok(())
    } else {
        Err(Error::io("make the exec fifo blocking", path)(
            std::io::Error::last_os_error(),
        ))
    }
}

/// True while `pid` exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any byte.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_fifo(dir: &Path, id: &str) -> std::path::PathBuf {
        let state = dir.join(id);
        std::fs::create_dir(&state).unwrap();
        let path = state.join(EXEC_FIFO);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o622) }, 0);
        path
    }

    #[test]
    fn missing_fifo_asks_for_the_runtime_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c1")).unwrap();
        let got = release_init(dir.path(), "c1", std::process::id(), Duration::from_secs(1));
        assert_eq!(got.unwrap(), Release::NoFifo);
    }

    #[test]
    fn a_writer_is_released_and_the_fifo_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_fifo(dir.path(), "c2");
        // A stand-in for runc's init: opens the write end (blocking until we read), writes
        // the byte, then closes as an exec would.
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let mut end = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .unwrap();
            std::io::Write::write_all(&mut end, b"0").unwrap();
            std::thread::sleep(Duration::from_millis(30));
        });
        let started = Instant::now();
        let got = release_init(dir.path(), "c2", std::process::id(), Duration::from_secs(5));
        assert_eq!(got.unwrap(), Release::Started);
        // It waited for the writer to close, not just for the byte.
        assert!(started.elapsed() >= Duration::from_millis(55));
        assert!(
            !path.exists(),
            "the fifo marks a created container; it must go"
        );
        writer.join().unwrap();
    }

    #[test]
    fn an_init_that_ran_and_exited_before_the_read_counts_as_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_fifo(dir.path(), "c5");
        // A real process as the init: it writes the byte as soon as the read end is open
        // and exits at once, as a container running `true` does.
        let mut init = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf 0 > {}", path.display()))
            .spawn()
            .unwrap();
        let pid = init.id();
        let reaper = std::thread::spawn(move || init.wait().unwrap());
        // Open the read end only once the writer is blocked in its open, then let it die.
        std::thread::sleep(Duration::from_millis(50));
        let got = release_init(dir.path(), "c5", pid, Duration::from_secs(5));
        assert_eq!(got.unwrap(), Release::Started);
        reaper.join().unwrap();
    }

    #[test]
    fn a_dead_init_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_fifo(dir.path(), "c3");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let got = release_init(dir.path(), "c3", pid, Duration::from_secs(5));
        assert!(matches!(got, Err(Error::NotRunning { .. })), "{got:?}");
        assert!(
            path.exists(),
            "a failed start leaves the container as it was"
        );
    }

    #[test]
    fn a_plain_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c4")).unwrap();
        std::fs::write(dir.path().join("c4").join(EXEC_FIFO), b"0").unwrap();
        let got = release_init(dir.path(), "c4", std::process::id(), Duration::from_secs(1));
        assert!(matches!(got, Err(Error::InvalidArgument(_))), "{got:?}");
    }
}
