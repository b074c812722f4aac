//! Configuration of a [`crate::Runtime`] and options of its `create` and `exec` calls.

use std::path::PathBuf;

use crate::stdio::Stdio;

/// How to run the OCI runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The runtime binary: a name looked up on `PATH` (default `runc`) or a path.
    pub binary: PathBuf,
    /// The runtime's `--root`, where it keeps its container state (e.g.
    /// `<berth state>/runc/<namespace>`); created with mode 0700.
    pub root: PathBuf,
    /// The runtime's `--log` file, written as JSON lines; failures are read back from it.
    pub log: Option<PathBuf>,
    /// Let systemd manage the cgroups (`--systemd-cgroup`) instead of cgroupfs.
    pub systemd_cgroup: bool,
}

impl RuntimeConfig {
    /// `runc` from `PATH` with the given root, no log, cgroupfs.
    pub fn new(root: impl Into<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            binary: PathBuf::from("runc"),
            root: root.into(),
            log: None,
            systemd_cgroup: false,
        }
    }
}

/// Options of `create`.
#[derive(Debug, Default)]
pub struct CreateOpts {
    /// Where the runtime writes the pid of the container's init (read it with
    /// [`crate::read_pid_file`]).
    pub pid_file: Option<PathBuf>,
    /// A unix socket on which the runtime sends the pty master when the spec asks for a
    /// terminal (see [`crate::ConsoleSocket`]).
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (needed when the rootfs is on a ramdisk).
    pub no_pivot: bool,
    /// The container init's stdin, stdout and stderr (ignored by the runtime with a terminal).
    pub stdio: Stdio,
}

/// Options of `exec`.
#[derive(Debug)]
pub struct ExecOpts {
    /// A JSON file holding the OCI `process` to run (see [`crate::write_process_json`]).
    pub process_json_path: PathBuf,
    /// Where the runtime writes the new process's pid.
    pub pid_file: Option<PathBuf>,
    /// A unix socket for the pty master when the process asks for a terminal.
    pub console_socket: Option<PathBuf>,
    /// Return as soon as the process runs (the default). When false the call lasts as long as
    /// the process and a non-zero exit of the process is reported as [`crate::Error::Failed`].
    pub detach: bool,
    /// The process's stdin, stdout and stderr.
    pub stdio: Stdio,
}

impl ExecOpts {
    /// Detached exec of the process in `process_json_path` with `/dev/null` stdio.
    pub fn new(process_json_path: impl Into<PathBuf>) -> ExecOpts {
        ExecOpts {
            process_json_path: process_json_path.into(),
            pid_file: None,
            console_socket: None,
            detach: true,
            stdio: Stdio::null(),
        }
    }
}
