//! `binary://` stdio: a logging program started by the shim. It reads the container's
//! stdout on fd 3 and stderr on fd 4, and closes fd 5 once it is ready to read;
//! `CONTAINER_ID` and `CONTAINER_NAMESPACE` in its environment say whose output it is.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::fd::pipe;
use crate::server::{ShimError, TaskIdentity};

/// How long the logging program has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The write ends feeding a started logging program.
#[derive(Debug)]
pub(crate) struct LoggerPipes {
    /// What the process writes as stdout.
    pub stdout: OwnedFd,
    /// What the process writes as stderr.
    pub stderr: OwnedFd,
}

/// Starts `program args…` as the logger of `task` and waits until it is ready. The program
/// becomes a child of the shim; it ends when both pipes reach end of file, and is reaped
/// with the shim's other children.
pub(crate) fn start(
    program: &Path,
    args: &[String],
    task: &TaskIdentity,
) -> Result<LoggerPipes, ShimError> {
    if !is_executable(program) {
        return Err(ShimError::InvalidArgument(format!(
            "logging binary {} is not an executable file",
            program.display()
        )));
    }
    let new_pipe = || pipe().map_err(ShimError::io("create pipe for logging binary", program));
    let (stdout_reader, stdout_writer) = new_pipe()?;
    let (stderr_reader, stderr_writer) = new_pipe()?;
    let (ready_reader, ready_writer) = new_pipe()?;

    let inherited = [
        stdout_reader.as_raw_fd(),
        stderr_reader.as_raw_fd(),
        ready_writer.as_raw_fd(),
    ];
    let mut command = Command::new(program);
    command
        .args(args)
        .env("CONTAINER_ID", &task.id)
        .env("CONTAINER_NAMESPACE", &task.namespace)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (fcntl, dup2, close_range) on integers.
    unsafe {
        command.pre_exec(move || place_descriptors(inherited));
    }
    command
        .spawn()
        .map_err(ShimError::io("start logging binary", program))?;
    drop(command);
    drop(stdout_reader);
    drop(stderr_reader);
    drop(ready_writer);

    wait_until_ready(ready_reader, program)?;
    Ok(LoggerPipes {
        stdout: stdout_writer,
        stderr: stderr_writer,
    })
}

/// In the child: puts `fds` at 3, 4 and 5 (without close-on-exec), and makes sure nothing
/// else is inherited.
fn place_descriptors(fds: [i32; 3]) -> std::io::Result<()> {
    // First move all three above 5, so that placing one cannot overwrite another.
    let mut high = [0; 3];
    for (slot, fd) in high.iter_mut().zip(fds) {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; no memory is touched.
        let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if duplicate < 0 {
            return Err(std::io::Error::last_os_error());
        }
        *slot = duplicate;
    }
    for (target, fd) in (3..).zip(high) {
        // SAFETY: dup2 between two valid descriptor numbers; the result lacks close-on-exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: marks every descriptor from 6 up close-on-exec; touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            6 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );
    }
    Ok(())
}

/// Waits until the program closes its end of the ready pipe (or exits).
fn wait_until_ready(ready: OwnedFd, program: &Path) -> Result<(), ShimError> {
    let mut poll = libc::pollfd {
        fd: ready.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = READY_TIMEOUT.as_millis() as libc::c_int;
    loop {
        // SAFETY: `poll` is one valid pollfd for the duration of the call.
        let ready_count = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready_count > 0 {
            break;
        }
        if ready_count == 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "logging binary {} did not get ready within {READY_TIMEOUT:?}",
                program.display()
            )));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(ShimError::io("wait for logging binary", program)(error));
        }
    }
    // Drain whatever it wrote; end of file is the signal.
    let mut sink = Vec::new();
    let _ = std::fs::File::from(ready).take(4096).read_to_end(&mut sink);
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_logger_gets_both_streams_and_the_task_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("logged");
        let script = dir.path().join("logger");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec 5>&-\n{{ echo \"$CONTAINER_NAMESPACE/$CONTAINER_ID $1\"; cat <&3; cat <&4; }} > {}.tmp\nmv {0}.tmp {0}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let task = TaskIdentity {
            namespace: "ns1".into(),
            id: "t1".into(),
            bundle: dir.path().to_path_buf(),
        };
        let pipes = start(&script, &["tag".into()], &task).unwrap();
        std::fs::File::from(pipes.stdout)
            .write_all(b"out\n")
            .unwrap();
        std::fs::File::from(pipes.stderr)
            .write_all(b"err\n")
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !out.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "logger never finished"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "ns1/t1 tag\nout\nerr\n"
        );
    }

    #[test]
    fn a_missing_program_is_refused_before_anything_starts() {
        let task = TaskIdentity {
            namespace: "ns1".into(),
            id: "t1".into(),
            bundle: "/".into(),
        };
        let err = start(Path::new("/no/such/logger"), &[], &task).unwrap_err();
        assert!(err.to_string().contains("/no/such/logger"), "{err}");
    }
}
