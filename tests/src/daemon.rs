//! One daemon per test: berthd (the default) or, to prove the tests themselves, the
//! reference containerd, each with its own temp root, state and socket.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup::unmount_all_under;
use crate::containerd_config::containerd_config;

/// Environment variable choosing the daemon: `berthd` (default) or `containerd`.
pub const DAEMON_ENV: &str = "BERTH_E2E_DAEMON";
/// Environment variable naming the berthd binary (default: next to the test binary).
pub const BERTHD_BIN_ENV: &str = "BERTHD_BIN";
/// Environment variable naming the containerd binary (default: `/usr/bin/containerd`).
pub const CONTAINERD_BIN_ENV: &str = "CONTAINERD_BIN";
/// How long a daemon may take to start serving its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Which daemon the tests talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    /// Berth's own daemon.
    Berthd,
    /// Debian's containerd, the reference the tests are proved against.
    Containerd,
}

impl DaemonKind {
    /// The kind chosen by `BERTH_E2E_DAEMON`; panics on an unknown value so that a typo
    /// never silently tests the wrong daemon.
    pub fn from_env() -> Self {
        match std::env::var(DAEMON_ENV).as_deref() {
            Err(_) | Ok("") | Ok("berthd") => DaemonKind::Berthd,
            Ok("containerd") => DaemonKind::Containerd,
            Ok(other) => panic!("{DAEMON_ENV}={other:?}: expected `berthd` or `containerd`"),
        }
    }

    /// Whether this is berthd (for the few assertions only berth is held to).
    pub fn is_berthd(self) -> bool {
        self == DaemonKind::Berthd
    }

    /// Where content blobs live, relative to the daemon's root.
    fn blobs_subdir(self) -> &'static str {
        match self {
            DaemonKind::Berthd => "content/blobs/sha256",
            DaemonKind::Containerd => "io.containerd.content.v1.content/blobs/sha256",
        }
    }

    /// The OCI runtime's own state root (`runc --root`) for `namespace` of a daemon of
    /// this kind whose state directory is `state`: inside it for berthd, one directory
    /// shared by every instance for containerd.
    pub fn runtime_root(self, state: &Path, namespace: &str) -> PathBuf {
        match self {
            DaemonKind::Berthd => state.join("runc").join(namespace),
            DaemonKind::Containerd => Path::new("/run/containerd/runc").join(namespace),
        }
    }

    /// Where task bundles live, relative to the daemon's state directory.
    fn tasks_subdir(self) -> &'static str {
        match self {
            DaemonKind::Berthd => "tasks",
            DaemonKind::Containerd => "io.containerd.runtime.v2.task",
        }
    }

    /// The overlayfs snapshotter's directory, relative to the daemon's root.
    fn snapshotter_subdir(self) -> &'static str {
        match self {
            DaemonKind::Berthd => "snapshots/overlayfs",
            DaemonKind::Containerd => "io.containerd.snapshotter.v1.overlayfs",
        }
    }
}

/// A running daemon with its own temp directory, stopped and cleaned up on drop.
///
/// The directory holds `root/`, `state/`, the socket `d.sock` and the log `daemon.log`;
/// its path is short because unix socket paths are limited to 107 bytes.
#[derive(Debug)]
pub struct Daemon {
    kind: DaemonKind,
    dir: PathBuf,
    child: Option<Child>,
    /// Flags added to berthd's command line.
    extra_args: Vec<String>,
}

impl Daemon {
    /// Starts the daemon chosen by `BERTH_E2E_DAEMON` and waits until it serves.
    pub fn start() -> Self {
        Self::start_kind(DaemonKind::from_env())
    }

    /// Starts berthd with `args` added to its command line, and waits until it serves.
    pub fn start_berthd_with(args: &[&str]) -> Self {
        Self::start_with(DaemonKind::Berthd, args)
    }

    /// Starts a daemon of `kind` in a fresh temp dir and waits until it serves.
    pub fn start_kind(kind: DaemonKind) -> Self {
        Self::start_with(kind, &[])
    }

    fn start_with(kind: DaemonKind, extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("be2e")
            .tempdir_in("/tmp")
            .expect("creating the daemon's temp dir")
            .keep();
        for sub in ["root", "state"] {
            std::fs::create_dir(dir.join(sub)).expect("creating root/state");
        }
        let mut daemon = Daemon {
            kind,
            dir,
            child: None,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        daemon.spawn();
        daemon
    }

    /// Which daemon this is.
    pub fn kind(&self) -> DaemonKind {
        self.kind
    }

    /// The temp directory everything of this daemon lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The daemon's `--state`.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("d.sock")
    }

    /// The file the daemon's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The process id of the running daemon, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the daemon's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The directory holding content blobs by hex digest.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root().join(self.kind.blobs_subdir())
    }

    /// The overlayfs snapshotter's own directory.
    pub fn snapshotter_dir(&self) -> PathBuf {
        self.root().join(self.kind.snapshotter_subdir())
    }

    /// The directory holding the task bundles of every namespace (`<state>/tasks` for
    /// berthd).
    pub fn task_bundles_root(&self) -> PathBuf {
        self.state().join(self.kind.tasks_subdir())
    }

    /// The bundle directory of task `id` in `namespace`.
    pub fn task_bundle(&self, namespace: &str, id: &str) -> PathBuf {
        self.task_bundles_root().join(namespace).join(id)
    }

    /// The OCI runtime's own state root for `namespace` (`runc --root`); see
    /// [`DaemonKind::runtime_root`].
    pub fn runtime_root(&self, namespace: &str) -> PathBuf {
        self.kind.runtime_root(&self.state(), namespace)
    }

    /// The digests (`sha256:<hex>`) of every blob file on disk.
    pub fn blobs_on_disk(&self) -> BTreeSet<String> {
        match std::fs::read_dir(self.blobs_dir()) {
            Ok(entries) => entries
                .flatten()
                .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Every snapshot directory on disk: a directory under the snapshotter's directory
    /// (at most two levels down) that holds an `fs` directory.
    pub fn snapshot_dirs_on_disk(&self) -> BTreeSet<PathBuf> {
        let mut found = BTreeSet::new();
        collect_snapshot_dirs(&self.snapshotter_dir(), 2, &mut found);
        found
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and returns whether
    /// it exited by itself within the grace period.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts the daemon again on the same root, state and socket (stopping it first if
    /// it still runs) and waits until it serves.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Builds the command line for this daemon kind.
    fn command(&self) -> Command {
        match self.kind {
            DaemonKind::Berthd => {
                let mut cmd = Command::new(berthd_binary());
                cmd.arg("--root")
                    .arg(self.root())
                    .arg("--state")
                    .arg(self.state())
                    .arg("--address")
                    .arg(self.socket())
                    .arg("--log-level")
                    .arg("debug")
                    .args(&self.extra_args);
                cmd
            }
            DaemonKind::Containerd => {
                let config = self.dir.join("containerd.toml");
                let text = containerd_config(
                    &self.root(),
                    &self.state(),
                    &self.socket(),
                    &self.dir.join("opt"),
                );
                std::fs::write(&config, text).expect("writing containerd.toml");
                let binary = std::env::var_os(CONTAINERD_BIN_ENV)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/usr/bin/containerd"));
                let mut cmd = Command::new(binary);
                cmd.arg("--config").arg(config);
                cmd
            }
        }
    }

    /// Spawns the daemon, logging to [`Daemon::log_path`], and waits for its socket.
    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the daemon log");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log fd"))
            .stderr(log)
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE");
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(2) and close_range(2), which are async-signal-safe; it touches no
        // memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Should the test process die without running its drops, the daemon
                // goes with it instead of lingering.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The daemon starts with nothing but its stdio, as under an init system:
                // whatever fds the test runner leaked do not reach it (or, through it,
                // the shims), so the tests see only the fds the daemon opens itself.
                if libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "starting {:?} ({:?}): {e}; set {BERTHD_BIN_ENV} or build it first, \
                 or run against containerd with {DAEMON_ENV}=containerd",
                self.kind,
                cmd.get_program()
            )
        });
        self.child = Some(child);
        self.wait_until_serving();
    }

    /// Waits until the socket accepts connections; panics with the log tail if the
    /// daemon exits or [`START_TIMEOUT`] passes.
    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            let child = self.child.as_mut().expect("daemon was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "{:?} exited with {status} before serving {}; log tail:\n{}",
                    self.kind,
                    self.socket().display(),
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{:?} did not serve {} within {START_TIMEOUT:?}; log tail:\n{}",
                    self.kind,
                    self.socket().display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        for failure in unmount_all_under(&self.dir) {
            eprintln!("berth-tests cleanup: {failure}");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("berth-tests cleanup: removing {}: {e}", self.dir.display());
        }
    }
}

/// The berthd binary: `$BERTHD_BIN`, else `berthd` in the target directory the test
/// binary was built into (`target/<profile>/deps/<test>` → `target/<profile>/berthd`).
pub fn berthd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BERTHD_BIN_ENV) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("locating the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir.join("berthd")
}

/// Adds to `found` each directory below `dir` (down to `depth` levels) holding `fs/`.
fn collect_snapshot_dirs(dir: &Path, depth: usize, found: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if path.join("fs").is_dir() {
            found.insert(path);
        } else if depth > 1 {
            collect_snapshot_dirs(&path, depth - 1, found);
        }
    }
}
