//! The blocking halves of Create and exec Start: mounting, opening stdio and running the
//! runtime. They run on the blocking pool and either succeed completely or leave nothing
//! behind (no mount, no open fifo, no runtime state), so a client never hangs on its
//! fifos after a failed create.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::oci_spec::runtime::Process as ProcessSpec;
use berth_runtime::{ConsoleSocket, CreateOpts, ExecOpts, Runtime};

use crate::server::process::Process;
use crate::server::stdio::{self, ShimSide, StdioPaths};
use crate::server::{ShimError, TaskIdentity};

/// How long the runtime has to send a terminal's pty master after create/exec returned.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// File the runtime writes the init's pid to.
pub(crate) const INIT_PID_FILE: &str = "init.pid";

/// A process the runtime has created.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// Its host pid.
    pub pid: u32,
    /// The pty master, for a process with a terminal.
    pub console: Option<OwnedFd>,
    /// The shim's ends of its stdio.
    pub shim_side: ShimSide,
}

/// `runc create` of the task's init, with its root filesystem mounted first.
pub(crate) struct CreateJob {
    /// The task.
    pub task: TaskIdentity,
    /// The runtime to run.
    pub runtime: Runtime,
    /// Mounts making up the root filesystem (none: the bundle's rootfs is used as is).
    pub mounts: Vec<berth_snapshot::Mount>,
    /// The client's stdio.
    pub stdio: StdioPaths,
    /// Where to listen for the pty master, when the init has a terminal.
    pub console_socket: Option<PathBuf>,
    /// Skip pivot_root.
    pub no_pivot: bool,
}

impl CreateJob {
    /// Mounts, opens stdio and creates the container; undoes everything on failure.
    pub(crate) fn run(self) -> Result<Spawned, ShimError> {
        let began = std::time::Instant::now();
        let rootfs = self.task.rootfs();
        if !self.mounts.is_empty() {
            berth_snapshot::mount::mount_all(&self.mounts, &rootfs)?;
        }
        let mounted = began.elapsed();
        let result = self.create_container();
        tracing::debug!(?mounted, total = ?began.elapsed(), ok = result.is_ok(),
            "root filesystem mounted and container created");
        if result.is_err() {
            if let Err(error) = self.runtime.delete(&self.task.id, true) {
                tracing::warn!(%error, "could not remove the half-created container");
            }
            if !self.mounts.is_empty() {
                if let Err(error) = berth_snapshot::mount::unmount_all(&rootfs) {
                    tracing::warn!(%error, "could not unmount the root filesystem");
                }
            }
        }
        result
    }

    fn create_container(&self) -> Result<Spawned, ShimError> {
        let opened = stdio::open(&self.stdio, &self.task)?;
        let console = bind_console(self.console_socket.as_deref())?;
        let pid_file = self.task.bundle.join(INIT_PID_FILE);
        let opts = CreateOpts {
            pid_file: Some(pid_file.clone()),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            no_pivot: self.no_pivot,
            stdio: opened.process,
        };
        let runtime_began = std::time::Instant::now();
        self.runtime
            .create(&self.task.id, &self.task.bundle, &opts)?;
        tracing::debug!(took = ?runtime_began.elapsed(), "runtime create done");
        // The container holds its stdio now; the shim's copies must not stay open.
        drop(opts);
        let console = receive_console(console)?;
        let pid = berth_runtime::read_pid_file(&pid_file)?;
        Ok(Spawned {
            pid: pid as u32,
            console,
            shim_side: opened.shim_side,
        })
    }
}

/// `runc exec --detach` of an exec process.
pub(crate) struct ExecJob {
    /// The task.
    pub task: TaskIdentity,
    /// The runtime to run.
    pub runtime: Runtime,
    /// The exec id.
    pub exec_id: String,
    /// The OCI process to run.
    pub spec: ProcessSpec,
    /// The client's stdio.
    pub stdio: StdioPaths,
    /// Where to listen for the pty master, when the process has a terminal.
    pub console_socket: Option<PathBuf>,
}

impl ExecJob {
    /// Opens stdio and starts the process in the container; on failure every stream opened
    /// is closed again.
    pub(crate) fn run(self) -> Result<Spawned, ShimError> {
        let bundle = &self.task.bundle;
        let process_json = Process::process_json_path(bundle, &self.exec_id);
        let pid_file = Process::pid_file_path(bundle, &self.exec_id);
        let result = self.exec(&process_json, &pid_file);
        for file in [&process_json, &pid_file] {
            let _ = std::fs::remove_file(file);
        }
        result
    }

    fn exec(&self, process_json: &Path, pid_file: &Path) -> Result<Spawned, ShimError> {
        let opened = stdio::open(&self.stdio, &self.task)?;
        berth_runtime::write_process_json(process_json, &self.spec)?;
        let console = bind_console(self.console_socket.as_deref())?;
        let opts = ExecOpts {
            process_json_path: process_json.to_path_buf(),
            pid_file: Some(pid_file.to_path_buf()),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            detach: true,
            stdio: opened.process,
        };
        self.runtime.exec(&self.task.id, &opts)?;
        drop(opts);
        let console = receive_console(console)?;
        let pid = berth_runtime::read_pid_file(pid_file)?;
        Ok(Spawned {
            pid: pid as u32,
            console,
            shim_side: opened.shim_side,
        })
    }
}

/// Binds the console socket at `path` (replacing a stale one), if a terminal is wanted.
fn bind_console(path: Option<&Path>) -> Result<Option<ConsoleSocket>, ShimError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let _ = std::fs::remove_file(path);
    Ok(Some(ConsoleSocket::bind(path)?))
}

/// Takes the pty master the runtime sent on `console` (the socket file goes with it).
fn receive_console(console: Option<ConsoleSocket>) -> Result<Option<OwnedFd>, ShimError> {
    match console {
        Some(console) => Ok(Some(console.receive_pty_master(CONSOLE_TIMEOUT)?)),
        None => Ok(None),
    }
}
