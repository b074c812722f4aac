//! Running `berthctl` against a test daemon, and reading what it prints.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::ctr::run_with_timeout;
use crate::daemon::Daemon;

/// Environment variable naming the berthctl binary (default: next to the test binary).
pub const BERTHCTL_BIN_ENV: &str = "BERTHCTL_BIN";
/// How long one berthctl command may run before the test fails.
pub const BERTHCTL_TIMEOUT: Duration = Duration::from_secs(300);

/// The berthctl binary: `$BERTHCTL_BIN`, else `berthctl` in the target directory the
/// test binary was built into (`target/<profile>/deps/<test>` → `target/<profile>/`).
pub fn berthctl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BERTHCTL_BIN_ENV) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("locating the test binary");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .join("berthctl")
}

/// A `berthctl --address <daemon socket>` command with no inherited Berth settings and
/// stdin closed; append the arguments.
pub fn berthctl_command(daemon: &Daemon) -> Command {
    let mut cmd = Command::new(berthctl_binary());
    cmd.arg("--address")
        .arg(daemon.socket())
        .env_remove("BERTH_ADDRESS")
        .env_remove("BERTH_NAMESPACE")
        .env_remove("BERTH_SNAPSHOTTER")
        .stdin(Stdio::null());
    cmd
}

/// Runs `berthctl --address <socket> <args>` and returns its output, whatever its
/// status. Panics (with the daemon's log tail) if it runs longer than
/// [`BERTHCTL_TIMEOUT`].
pub fn berthctl(daemon: &Daemon, args: &[&str]) -> Output {
    let mut cmd = berthctl_command(daemon);
    cmd.args(args);
    run_with_timeout(cmd, BERTHCTL_TIMEOUT).unwrap_or_else(|partial| {
        panic!(
            "berthctl {args:?} ran longer than {BERTHCTL_TIMEOUT:?}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&partial.stdout),
            String::from_utf8_lossy(&partial.stderr),
            daemon.log_tail(40)
        )
    })
}

/// Runs berthctl and returns its stdout; panics with stdout, stderr and the daemon's
/// log tail if it fails.
pub fn berthctl_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = berthctl(daemon, args);
    if !out.status.success() {
        panic!(
            "berthctl {args:?} failed ({})\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            daemon.log_tail(40)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs berthctl with `--format json` and parses what it prints; panics if it fails
/// or prints anything but one JSON document.
pub fn berthctl_json(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--format", "json"];
    full.extend_from_slice(args);
    let stdout = berthctl_ok(daemon, &full);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("berthctl {full:?} printed invalid JSON ({e}):\n{stdout}"))
}

/// How a failed berthctl run ended: its exit code and its stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything printed on stderr.
    pub stderr: String,
    /// Everything printed on stdout.
    pub stdout: String,
}

impl Failure {
    /// The one line berthctl prints for an error, without the `berthctl: ` prefix;
    /// panics unless stderr is exactly one such line.
    pub fn message(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "an error must be one line on stderr, got:\n{}",
            self.stderr
        );
        lines[0]
            .strip_prefix("berthctl: ")
            .unwrap_or_else(|| panic!("error line lacks the `berthctl: ` prefix: {}", lines[0]))
            .to_string()
    }
}

/// Runs berthctl expecting it to fail; panics with its output if it succeeded.
pub fn berthctl_fails(daemon: &Daemon, args: &[&str]) -> Failure {
    let out = berthctl(daemon, args);
    if out.status.success() {
        panic!(
            "berthctl {args:?} succeeded but should have failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Failure {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Runs berthctl expecting the usual failure of a command that could not be done: exit
/// code 1 and one line on stderr; returns that line (without the `berthctl: ` prefix).
pub fn berthctl_error(daemon: &Daemon, args: &[&str]) -> String {
    let failure = berthctl_fails(daemon, args);
    assert_eq!(
        failure.code,
        Some(1),
        "berthctl {args:?} should exit with 1; stderr: {}",
        failure.stderr
    );
    failure.message()
}

/// The rows of a berthctl table (header line skipped), split on runs of two or more
/// spaces, which is how berthctl separates columns, so cells such as `1.0 MiB` stay
/// whole. Empty cells in the middle of a row are lost; use `--format json` for those.
pub fn table_cells(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// Builds the busybox fixture in the daemon's temp dir and imports it into `namespace`
/// with `berthctl images import`; returns what the archive holds.
pub fn berthctl_import_busybox(daemon: &Daemon, namespace: &str) -> crate::fixtures::BuiltImage {
    let archive = daemon.dir().join(format!("busybox-{namespace}.tar"));
    let image = crate::fixtures::busybox_oci_archive(&archive, crate::steps::BUSYBOX_NAME)
        .expect("building the busybox image");
    let path = archive.to_str().expect("archive paths are UTF-8");
    berthctl_ok(daemon, &["-n", namespace, "images", "import", path]);
    image
}

/// A child process that is killed and reaped when the guard is dropped, so a failing
/// test leaves no `berthctl events` (or `ctr content ingest`) behind.
#[derive(Debug)]
pub struct ChildGuard {
    child: std::process::Child,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: std::process::Child) -> ChildGuard {
        ChildGuard { child }
    }

    /// The child's stdin, if it was piped and not taken yet.
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// The child's stdout, if it was piped and not taken yet.
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Waits up to `timeout` for the child to exit; its status, if it did.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_keep_sizes_whole() {
        let rows = table_cells("DIGEST   SIZE      AGE\nsha256:ab   1.0 MiB   3 days\n\n");
        assert_eq!(rows, vec![vec!["sha256:ab", "1.0 MiB", "3 days"]]);
    }

    #[test]
    fn a_failure_message_is_the_one_stderr_line() {
        let failure = Failure {
            code: Some(1),
            stderr: "berthctl: removing image x: not found\n".into(),
            stdout: String::new(),
        };
        assert_eq!(failure.message(), "removing image x: not found");
    }

    #[test]
    #[should_panic(expected = "one line")]
    fn a_multi_line_error_is_refused() {
        let failure = Failure {
            code: Some(1),
            stderr: "berthctl: a\nmore\n".into(),
            stdout: String::new(),
        };
        failure.message();
    }
}
