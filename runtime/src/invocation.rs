//! Running the runtime binary once and turning a failure into a typed [`Error`].
//!
//! Two shapes of call exist. Most subcommands (`state`, `kill`, `ps`, ...) have their stdout
//! and stderr captured. `create` and `exec` instead hand the container's stdio to the runtime
//! as the runtime's own stdin/stdout/stderr, so their errors are read from the runtime's JSON
//! log: the configured one, or a temporary one for that call.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio as ProcessStdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::monitor::ProcessMonitor;
use crate::runtime_log::{last_error_in_stderr, LogTail};
use crate::stdio::Stdio;

/// Most output read from a runtime command (a `ps` of a huge container stays far below).
const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Everything needed to run the runtime binary; shared by all clones of a `Runtime`.
#[derive(Debug)]
pub(crate) struct Invoker {
    /// The resolved runtime binary.
    pub(crate) binary: PathBuf,
    /// The runtime's `--root`.
    pub(crate) root: PathBuf,
    /// The runtime's `--log` (JSON format), if configured.
    pub(crate) log: Option<PathBuf>,
    /// Pass `--systemd-cgroup`.
    pub(crate) systemd_cgroup: bool,
    /// How runtime processes are spawned and reaped.
    pub(crate) monitor: Arc<dyn ProcessMonitor>,
}

impl Invoker {
    /// Runs `<binary> <global flags> <subcommand> <args>` with stdout and stderr captured;
    /// returns stdout on success. `id` is the container concerned, for typed errors.
    pub(crate) fn run_captured(
        &self,
        subcommand: &'static str,
        id: Option<&str>,
        args: &[OsString],
    ) -> Result<Vec<u8>> {
        let tail = self.log.as_deref().map(LogTail::mark);
        let mut command = self.command(self.log.as_deref(), subcommand, args);
        command
            .stdin(ProcessStdio::null())
            .stdout(ProcessStdio::piped())
            .stderr(ProcessStdio::piped());
        let mut child = self.spawn(&mut command)?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (stdout, stderr) = std::thread::scope(|scope| {
            let stderr_reader = scope.spawn(move || read_all(stderr));
            let stdout = read_all(stdout);
            let stderr = stderr_reader.join().unwrap_or_default();
            (stdout, stderr)
        });
        let status = self.wait(child)?;
        if status.success() {
            return Ok(stdout);
        }
        let message = tail
            .and_then(|tail| tail.last_error())
            .or_else(|| last_error_in_stderr(&String::from_utf8_lossy(&stderr)));
        Err(self.failure(subcommand, id, status, message))
    }

    /// Runs a subcommand whose stdin/stdout/stderr are the container process's `stdio`.
    pub(crate) fn run_with_stdio(
        &self,
        subcommand: &'static str,
        id: &str,
        args: &[OsString],
        stdio: &Stdio,
    ) -> Result<()> {
        // Keeps a per-call log alive (and removes it afterwards) when none is configured.
        let temporary_log;
        let log_path = match &self.log {
            Some(log) => log.as_path(),
            None => {
                temporary_log = TemporaryLog::new(&self.root, subcommand, id);
                temporary_log.path.as_path()
            }
        };
        let tail = LogTail::mark(log_path);
        let mut command = self.command(Some(log_path), subcommand, args);
        let [stdin, stdout, stderr] = stdio
            .for_child()
            .map_err(Error::io("duplicate stdio for", &self.binary))?;
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        let child = self.spawn(&mut command)?;
        // The duplicates handed to the child must not stay open here.
        drop(command);
        let status = self.wait(child)?;
        if status.success() {
            return Ok(());
        }
        Err(self.failure(subcommand, Some(id), status, tail.last_error()))
    }

    fn command(&self, log: Option<&Path>, subcommand: &str, args: &[OsString]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        if let Some(log) = log {
            command
                .arg("--log")
                .arg(log)
                .arg("--log-format")
                .arg("json");
        }
        if self.systemd_cgroup {
            command.arg("--systemd-cgroup");
        }
        command.arg(subcommand).args(args);
        close_inherited_descriptors_on_exec(&mut command);
        command
    }

    fn spawn(&self, command: &mut Command) -> Result<std::process::Child> {
        self.monitor.start(command).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::MissingBinary {
                    binary: self.binary.clone(),
                }
            } else {
                Error::Io {
                    op: "start",
                    path: self.binary.clone(),
                    source: e,
                }
            }
        })
    }

    fn wait(&self, child: std::process::Child) -> Result<ExitStatus> {
        self.monitor
            .wait(child)
            .map_err(Error::io("wait for", &self.binary))
    }

    /// The typed error for a failed run: the runtime's words, classified.
    fn failure(
        &self,
        subcommand: &str,
        id: Option<&str>,
        status: ExitStatus,
        message: Option<String>,
    ) -> Error {
        let message = message.unwrap_or_else(|| "the runtime printed no error message".into());
        if let Some(id) = id {
            if subcommand == "create" && message.contains("already exists") {
                return Error::AlreadyExists { id: id.to_string() };
            }
            if subcommand != "create" && self.says_container_is_missing(id, &message) {
                return Error::NotFound { id: id.to_string() };
            }
            if message.contains("container not running")
                || message.contains("cannot start a container that has stopped")
            {
                return Error::NotRunning { id: id.to_string() };
            }
        }
        Error::Failed {
            command: format!("{} {subcommand}", binary_name(&self.binary)),
            code: status.code(),
            message,
        }
    }

    /// runc says "container does not exist"; crun names the missing state file or directory
    /// under its root.
    fn says_container_is_missing(&self, id: &str, message: &str) -> bool {
        if message.contains("container does not exist") {
            return true;
        }
        let state_dir = self.root.join(id);
        message.contains("No such file or directory")
            && message.contains(state_dir.to_string_lossy().as_ref())
    }
}

fn binary_name(binary: &Path) -> String {
    binary
        .file_name()
        .unwrap_or(binary.as_os_str())
        .to_string_lossy()
        .into_owned()
}

fn read_all(stream: Option<impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        // A read error only shortens the text used for messages; the exit status decides.
        let _ = stream.take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes);
    }
    bytes
}

/// Makes sure that no descriptor of this process other than the child's stdio reaches the
/// runtime (and through it a container), even one a careless library opened without
/// close-on-exec.
fn close_inherited_descriptors_on_exec(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it only makes one raw
    // system call, which is async-signal-safe, and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            // Fails only on kernels before 5.11 (ENOSYS); std's own descriptors are
            // close-on-exec anyway, so ignoring the error keeps those kernels working.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
            Ok(())
        });
    }
}

/// A per-call JSON log in the runtime's root, for a call whose stderr belongs to the
/// container; removed when dropped. Its name starts with '.', which runtimes skip when they
/// list containers.
struct TemporaryLog {
    path: PathBuf,
}

impl TemporaryLog {
    fn new(root: &Path, subcommand: &str, id: &str) -> TemporaryLog {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(".{subcommand}-{id}-{}-{n}.log", std::process::id());
        TemporaryLog {
            path: root.join(OsStr::new(&name)),
        }
    }
}

impl Drop for TemporaryLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
