//! Tasks and containers as ctr shows them, where a task lives on the host, and the
//! cleanup that stops whatever containers and shims a test started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cleanup::mounts_under;
use crate::ctr::{ctr, ctr_binary, ctr_ok, run_with_timeout, table_rows};
use crate::daemon::{Daemon, DaemonKind};
use crate::processes::{cmdline, parent_pid, processes_naming_socket, ProcessHandle};

/// How long a cleanup ctr command may run before it is abandoned (and with it, any
/// further cleanup through the daemon).
const CLEANUP_CTR_TIMEOUT: Duration = Duration::from_secs(15);

/// One row of `ctr tasks ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// The task's (container's) id.
    pub id: String,
    /// The pid of its init process in the host's pid namespace.
    pub pid: u32,
    /// `CREATED`, `RUNNING`, `PAUSED`, `STOPPED`, …
    pub status: String,
}

/// Parses the output of `ctr tasks ls`; panics on a row that is not `TASK PID STATUS`.
pub fn parse_tasks_ls(stdout: &str) -> Vec<TaskRow> {
    table_rows(stdout)
        .into_iter()
        .map(|cells| match cells.as_slice() {
            [id, pid, status] => TaskRow {
                id: id.clone(),
                pid: pid
                    .parse()
                    .unwrap_or_else(|_| panic!("pid {pid:?} in `tasks ls` row {cells:?}")),
                status: status.clone(),
            },
            _ => panic!("unexpected `tasks ls` row: {cells:?}"),
        })
        .collect()
}

/// The rows of `ctr -n <namespace> tasks ls`.
pub fn tasks_ls(daemon: &Daemon, namespace: &str) -> Vec<TaskRow> {
    parse_tasks_ls(&ctr_ok(daemon, &["-n", namespace, "tasks", "ls"]))
}

/// The `tasks ls` row of task `id`, if it is listed.
pub fn task_row(daemon: &Daemon, namespace: &str, id: &str) -> Option<TaskRow> {
    tasks_ls(daemon, namespace).into_iter().find(|t| t.id == id)
}

/// Polls `tasks ls` until task `id` shows `status`; returns its row. Panics with the
/// last listing after `timeout`.
pub fn wait_for_task_status(
    daemon: &Daemon,
    namespace: &str,
    id: &str,
    status: &str,
    timeout: Duration,
) -> TaskRow {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let listed = tasks_ls(daemon, namespace);
        if let Some(row) = listed.iter().find(|t| t.id == id && t.status == status) {
            return row.clone();
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "task {id} never showed {status} within {timeout:?}; last `tasks ls`: \
                 {listed:#?}\ndaemon log:\n{}",
                daemon.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The container ids listed by `ctr -n <namespace> containers ls -q`.
pub fn container_ids(daemon: &Daemon, namespace: &str) -> Vec<String> {
    ctr_ok(daemon, &["-n", namespace, "containers", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The shim serving task `id`, whose init process is `init_pid`. berthd's shim records
/// itself in `<bundle>/shim.pid`, which must agree with the init's parent (the shim is
/// its subreaper); for containerd the init's parent is the only record.
pub fn shim_pid(daemon: &Daemon, namespace: &str, id: &str, init_pid: u32) -> u32 {
    let parent = parent_pid(init_pid)
        .unwrap_or_else(|| panic!("task {id}: init pid {init_pid} is not running"));
    if daemon.kind() == DaemonKind::Berthd {
        let file = daemon.task_bundle(namespace, id).join("shim.pid");
        let recorded: u32 = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(
            recorded,
            parent,
            "{} names {recorded}, but the parent of init {init_pid} is {parent}",
            file.display()
        );
    }
    parent
}

/// The shims serving tasks that are still running: processes that were given the
/// daemon's socket address, apart from the daemon, ctr clients and berthd's spare shims
/// that never had a task: idle ones (in `/`) and one being launched (its launcher, and the
/// daemon it forks until that moves to `/`, are still in berthd's working directory). A
/// former spare is in its task's bundle, or where the bundle was moved to: it counts.
pub fn shim_processes(daemon: &Daemon) -> Vec<u32> {
    let daemon_cwd = daemon.pid().and_then(cwd_of);
    processes_naming_socket(&daemon.socket(), daemon.pid())
        .into_iter()
        .filter(|pid| {
            let never_had_a_task = started_as_spare(*pid)
                && cwd_of(*pid)
                    .is_some_and(|cwd| cwd == Path::new("/") || Some(&cwd) == daemon_cwd.as_ref());
            !never_had_a_task
        })
        .collect()
}

/// berthd's spare shims that have no task yet: started as `berth-shim spare` and still in
/// `/` (a spare enters its task's bundle when it is given one).
pub fn spare_shims(daemon: &Daemon) -> Vec<u32> {
    processes_naming_socket(&daemon.socket(), daemon.pid())
        .into_iter()
        .filter(|pid| is_idle_spare(*pid))
        .collect()
}

fn is_idle_spare(pid: u32) -> bool {
    started_as_spare(pid) && cwd_of(pid).is_some_and(|cwd| cwd == Path::new("/"))
}

fn started_as_spare(pid: u32) -> bool {
    cmdline(pid).is_some_and(|args| args.get(1).is_some_and(|a| a == "spare"))
}

/// The working directory of process `pid`, if it can be read.
fn cwd_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The sockets of berthd's task shims, in `<state>/s/` (none for containerd, whose shim
/// sockets live in a directory shared by every instance); idle spares' `spare-*` sockets
/// are not counted.
pub fn shim_sockets(daemon: &Daemon) -> Vec<PathBuf> {
    if daemon.kind() != DaemonKind::Berthd {
        return Vec::new();
    }
    match std::fs::read_dir(daemon.state().join("s")) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with("spare-"))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Problems with what task `id` left on the host after it was deleted: its bundle
/// directory and any mount inside it. Empty when nothing is left.
pub fn task_leftovers(daemon: &Daemon, namespace: &str, id: &str) -> Vec<String> {
    let bundle = daemon.task_bundle(namespace, id);
    let mut problems: Vec<String> = mounts_under(&bundle)
        .into_iter()
        .map(|m| format!("still mounted: {}", m.display()))
        .collect();
    if bundle.exists() {
        problems.push(format!("bundle left behind: {}", bundle.display()));
    }
    problems
}

/// Waits up to `timeout` until task `id` left nothing behind (see [`task_leftovers`]);
/// panics with what is left.
pub fn wait_task_cleaned_up(daemon: &Daemon, namespace: &str, id: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let problems = task_leftovers(daemon, namespace, id);
        if problems.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("task {id} was not cleaned up within {timeout:?}: {problems:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything left under the daemon's bundles directory for `namespace` (file names).
pub fn bundles_in_namespace(daemon: &Daemon, namespace: &str) -> Vec<String> {
    match std::fs::read_dir(daemon.task_bundles_root().join(namespace)) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A directory for the stdio fifos of detached tasks and execs (`ctr … --fifo-dir`),
/// inside the daemon's temp dir: ctr leaves a detached task's fifos behind, and there
/// they go away with the daemon instead of piling up in ctr's host-wide default.
pub fn fifo_dir(daemon: &Daemon) -> String {
    daemon
        .dir()
        .join("fifo")
        .to_str()
        .expect("temp dirs are UTF-8")
        .to_string()
}

/// A detached task started by [`run_detached`], with the processes that serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningTask {
    /// Container and task id.
    pub id: String,
    /// Its init process.
    pub init: ProcessHandle,
    /// Its shim.
    pub shim: ProcessHandle,
}

/// `ctr -n <namespace> run -d [flags] <image> <id> <args>`; checks that `tasks ls` shows
/// the task RUNNING and registers its container, init and shim with `cleanup`.
pub fn run_detached(
    daemon: &Daemon,
    cleanup: &mut TaskCleanup,
    namespace: &str,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> RunningTask {
    cleanup.track(namespace, id);
    let fifos = fifo_dir(daemon);
    let mut argv = vec!["-n", namespace, "run", "-d", "--fifo-dir", &fifos];
    argv.extend_from_slice(flags);
    argv.push(image);
    argv.push(id);
    argv.extend_from_slice(args);
    ctr_ok(daemon, &argv);
    let row = task_row(daemon, namespace, id)
        .unwrap_or_else(|| panic!("`ctr run -d` returned but task {id} is not listed"));
    assert_eq!(row.status, "RUNNING", "{row:?}");
    let init = ProcessHandle::capture(row.pid)
        .unwrap_or_else(|| panic!("task {id} is listed with pid {}, which is gone", row.pid));
    cleanup.track_process(init);
    let shim = ProcessHandle::capture(shim_pid(daemon, namespace, id, row.pid))
        .unwrap_or_else(|| panic!("the shim of task {id} is gone"));
    cleanup.track_process(shim);
    RunningTask {
        id: id.to_string(),
        init,
        shim,
    }
}

/// Stops and removes, on drop, the containers and processes a test registered: first
/// through the daemon (`ctr tasks rm -f`, `ctr containers rm`) when it still serves,
/// then by SIGKILL to each remembered process that still runs. Declare it after the
/// [`Daemon`] so that it is dropped first, while the daemon still runs.
#[derive(Debug)]
pub struct TaskCleanup {
    socket: PathBuf,
    state: PathBuf,
    kind: DaemonKind,
    containers: Vec<(String, String)>,
    processes: Vec<ProcessHandle>,
}

impl TaskCleanup {
    /// A cleanup for containers of `daemon`.
    pub fn new(daemon: &Daemon) -> Self {
        TaskCleanup {
            socket: daemon.socket(),
            state: daemon.state(),
            kind: daemon.kind(),
            containers: Vec::new(),
            processes: Vec::new(),
        }
    }

    /// Registers container `id` in `namespace` for removal.
    pub fn track(&mut self, namespace: &str, id: &str) {
        let entry = (namespace.to_string(), id.to_string());
        if !self.containers.contains(&entry) {
            self.containers.push(entry);
        }
    }

    /// Registers a process to kill if it still runs at the end.
    pub fn track_process(&mut self, process: ProcessHandle) {
        if !self.processes.contains(&process) {
            self.processes.push(process);
        }
    }

    /// Runs one cleanup ctr command, ignoring its outcome; returns whether it finished
    /// in time.
    fn ctr_quietly(&self, args: &[&str]) -> bool {
        let mut cmd = std::process::Command::new(ctr_binary());
        cmd.arg("--address")
            .arg(&self.socket)
            .args(args)
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .stdin(std::process::Stdio::null());
        run_with_timeout(cmd, CLEANUP_CTR_TIMEOUT).is_ok()
    }
}

impl Drop for TaskCleanup {
    fn drop(&mut self) {
        if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
            for (namespace, id) in self.containers.iter().rev() {
                let answered = self.ctr_quietly(&["-n", namespace, "tasks", "rm", "-f", id])
                    && self.ctr_quietly(&["-n", namespace, "containers", "rm", id]);
                if !answered {
                    eprintln!("berth-tests cleanup: the daemon hangs; killing processes instead");
                    break;
                }
            }
        }
        // Containers first, so that no shim outlives the process it supervises.
        for process in &self.processes {
            process.kill();
        }
        for process in &self.processes {
            if !process.wait_gone(Duration::from_secs(10)) {
                eprintln!("berth-tests cleanup: pid {} survived SIGKILL", process.pid);
            }
        }
        for (namespace, id) in &self.containers {
            remove_runtime_leftovers(&self.kind.runtime_root(&self.state, namespace), id);
            remove_cgroups(namespace, id);
            if self.kind == DaemonKind::Containerd {
                // A containerd shim that was killed leaves its socket in a host-wide
                // directory; the name hashes this daemon's own address, so it is ours.
                let _ = std::fs::remove_file(containerd_shim_socket(&self.socket, namespace, id));
            }
        }
    }
}

/// Where containerd's shim for task `id` in `namespace` of the daemon listening on
/// `address` puts its socket: `/run/containerd/s/<hex sha256 of "<address>/<ns>/<id>">`.
fn containerd_shim_socket(address: &Path, namespace: &str, id: &str) -> PathBuf {
    use sha2::Digest;
    let key = format!("{}/{namespace}/{id}", address.display());
    Path::new("/run/containerd/s").join(hex::encode(sha2::Sha256::digest(key.as_bytes())))
}

/// Deletes what the runtime still keeps of container `id` under `runtime_root` (state
/// left by a daemon that could not clean up), then the namespace's runtime root if it is
/// empty. Every name involved is the test's own.
fn remove_runtime_leftovers(runtime_root: &Path, id: &str) {
    if runtime_root.join(id).exists() {
        let mut cmd = std::process::Command::new("runc");
        cmd.arg("--root")
            .arg(runtime_root)
            .args(["delete", "--force", id])
            .stdin(std::process::Stdio::null());
        let _ = run_with_timeout(cmd, CLEANUP_CTR_TIMEOUT);
    }
    let _ = std::fs::remove_dir(runtime_root);
}

/// Removes the (empty) cgroups `/<namespace>/<id>` and `/<namespace>` that runc made
/// for a container created by ctr, in every cgroup hierarchy; rmdir(2) refuses any
/// cgroup that still holds a process, so nothing alive is touched.
fn remove_cgroups(namespace: &str, id: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(
        hierarchies
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    );
    for root in roots {
        let _ = std::fs::remove_dir(root.join(namespace).join(id));
        let _ = std::fs::remove_dir(root.join(namespace));
    }
}

/// Starts the daemon chosen by the environment, creates a fresh namespace and imports
/// the busybox image ([`BUSYBOX_NAME`](crate::steps::BUSYBOX_NAME)) into it.
pub fn daemon_with_busybox() -> (Daemon, String) {
    let daemon = Daemon::start();
    let namespace = crate::ids::unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &namespace]);
    crate::steps::import_busybox(&daemon, &namespace);
    (daemon, namespace)
}

/// `ctr -n <namespace> tasks exec --exec-id <exec_id> <id> <args>` with its output,
/// whatever its status.
pub fn exec(
    daemon: &Daemon,
    namespace: &str,
    id: &str,
    exec_id: &str,
    args: &[&str],
) -> std::process::Output {
    let mut argv = vec!["-n", namespace, "tasks", "exec", "--exec-id", exec_id, id];
    argv.extend_from_slice(args);
    ctr(daemon, &argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_ls_rows_are_parsed() {
        let text = "TASK    PID     STATUS    \nt2      3305    RUNNING\nt3      0       STOPPED\n";
        assert_eq!(
            parse_tasks_ls(text),
            vec![
                TaskRow {
                    id: "t2".into(),
                    pid: 3305,
                    status: "RUNNING".into()
                },
                TaskRow {
                    id: "t3".into(),
                    pid: 0,
                    status: "STOPPED".into()
                },
            ]
        );
        assert!(parse_tasks_ls("TASK    PID     STATUS    \n").is_empty());
    }
}
