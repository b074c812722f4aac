//! The life of containers and tasks through Debian's `ctr`: `run --rm` with its output
//! and exit status, a detached task listed, exec'd into, paused, resumed, measured,
//! killed and removed, the container records, a terminal, and a custom runtime binary.

use std::process::Command;
use std::time::Duration;

use berth_tests::ctr::{ctr_binary, table_rows};
use berth_tests::processes::{status_field, ProcessHandle};
use berth_tests::steps::{snapshots_ls, BUSYBOX_NAME};
use berth_tests::tasks::{
    bundles_in_namespace, container_ids, daemon_with_busybox, exec, run_detached, shim_processes,
    shim_sockets, task_row, tasks_ls, wait_for_task_status, wait_task_cleaned_up, TaskCleanup,
};
use berth_tests::terminal::TerminalSession;
use berth_tests::{ctr, ctr_ok, Daemon};

/// How long a state change (a kill, an exit) may take to show in `tasks ls`.
const SETTLE: Duration = Duration::from_secs(20);

/// Asserts that the namespace holds no container, no task bundle, and that no shim of
/// the daemon runs any more (waiting a little for shims that are on their way out).
fn assert_nothing_left(daemon: &Daemon, namespace: &str) {
    assert_eq!(container_ids(daemon, namespace), Vec::<String>::new());
    assert_eq!(tasks_ls(daemon, namespace), Vec::new());
    berth_tests::steps::wait_until(SETTLE, "every shim has exited", || {
        shim_processes(daemon).is_empty()
    });
    assert_eq!(
        bundles_in_namespace(daemon, namespace),
        Vec::<String>::new()
    );
    assert_eq!(shim_sockets(daemon), Vec::<std::path::PathBuf>::new());
    let mounts = berth_tests::cleanup::mounts_under(&daemon.task_bundles_root());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    if daemon.kind().is_berthd() {
        // Deleted bundles wait in <state>/deleted until their shim has exited.
        let parked = daemon.state().join("deleted");
        berth_tests::steps::wait_until(SETTLE, "deleted bundles are removed", || {
            std::fs::read_dir(&parked).map_or(true, |mut entries| entries.next().is_none())
        });
    }
}

#[test]
fn run_rm_prints_the_output_and_passes_the_exit_status_on() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "t1");
    cleanup.track(&ns, "t1-exit");

    let hello = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            BUSYBOX_NAME,
            "t1",
            "echo",
            "hello",
        ],
    );
    assert_eq!(hello, "hello\n");
    // The same id again at once: the new task waits for the old one's shim to be gone.
    let again = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            BUSYBOX_NAME,
            "t1",
            "echo",
            "again",
        ],
    );
    assert_eq!(again, "again\n");

    let out = ctr(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            BUSYBOX_NAME,
            "t1-exit",
            "sh",
            "-c",
            "echo to-stderr >&2; exit 3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));
    assert_nothing_left(&daemon, &ns);
}

#[test]
fn a_detached_task_is_listed_exec_d_paused_measured_killed_and_removed() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "t2",
        &["sleep", "1000"],
    );
    let pid = task.init.pid;

    // The listed pid is the container's init as the host sees it: `ps` shows its
    // command, and it is pid 1 of its own pid namespace.
    let ps = Command::new("ps")
        .args(["-o", "args=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "sleep 1000");
    let nspid = status_field(pid, "NSpid").unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "NSpid {nspid}");

    let ps_rows = table_rows(&ctr_ok(&daemon, &["-n", &ns, "tasks", "ps", "t2"]));
    let listed_pids: Vec<&str> = ps_rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(listed_pids, vec![pid.to_string()]);

    // exec: output and exit status come back.
    let out = exec(&daemon, &ns, "t2", "e1", &["ls", "/"]);
    assert!(out.status.success(), "{out:?}");
    let entries: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for wanted in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        assert!(
            entries.iter().any(|e| e == wanted),
            "{wanted} in {entries:?}"
        );
    }
    let out = exec(&daemon, &ns, "t2", "e2", &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // Finished execs are gone from the process list again.
    let ps_rows = table_rows(&ctr_ok(&daemon, &["-n", &ns, "tasks", "ps", "t2"]));
    assert_eq!(ps_rows.len(), 1, "{ps_rows:?}");

    ctr_ok(&daemon, &["-n", &ns, "tasks", "pause", "t2"]);
    assert_eq!(task_row(&daemon, &ns, "t2").unwrap().status, "PAUSED");
    ctr_ok(&daemon, &["-n", &ns, "tasks", "resume", "t2"]);
    let row = task_row(&daemon, &ns, "t2").unwrap();
    assert_eq!((row.status.as_str(), row.pid), ("RUNNING", pid));

    // Metrics from the container's cgroup: one process, some memory.
    let metrics = ctr_ok(&daemon, &["-n", &ns, "tasks", "metrics", "t2"]);
    let metric = |name: &str| -> Option<String> {
        metrics.lines().find_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells.first() == Some(&name)).then(|| cells.get(1).unwrap_or(&"").to_string())
        })
    };
    assert!(
        metrics.lines().next().unwrap_or("").starts_with("ID"),
        "{metrics}"
    );
    assert_eq!(metric("pids.current").as_deref(), Some("1"), "{metrics}");
    let memory: u64 = metric("memory.usage_in_bytes")
        .unwrap_or_else(|| panic!("no memory usage in {metrics}"))
        .parse()
        .unwrap();
    assert!(memory > 0, "{metrics}");

    ctr_ok(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "t2"],
    );
    let stopped = wait_for_task_status(&daemon, &ns, "t2", "STOPPED", SETTLE);
    assert_eq!(stopped.pid, pid);
    assert!(task.init.wait_gone(SETTLE), "init {pid} survived SIGKILL");

    // Removing the task reports how it ended and leaves nothing behind.
    let out = ctr(&daemon, &["-n", &ns, "tasks", "rm", "t2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("137"),
        "tasks rm should warn about exit code 137: {out:?}"
    );
    assert_eq!(task_row(&daemon, &ns, "t2"), None);
    assert!(task.shim.wait_gone(SETTLE), "the shim outlived its task");
    wait_task_cleaned_up(&daemon, &ns, "t2", SETTLE);

    // The container record stays until it is removed itself.
    let rows = table_rows(&ctr_ok(&daemon, &["-n", &ns, "containers", "ls"]));
    assert_eq!(
        rows,
        vec![vec![
            "t2".to_string(),
            BUSYBOX_NAME.to_string(),
            "io.containerd.runc.v2".to_string()
        ]]
    );
    let info: serde_json::Value =
        serde_json::from_str(&ctr_ok(&daemon, &["-n", &ns, "containers", "info", "t2"])).unwrap();
    assert_eq!(info["ID"], "t2");
    assert_eq!(info["Image"], BUSYBOX_NAME);
    assert_eq!(info["Runtime"]["Name"], "io.containerd.runc.v2");
    assert_eq!(info["SnapshotKey"], "t2");
    assert_eq!(info["Snapshotter"], "overlayfs");
    assert_eq!(
        info["Spec"]["process"]["args"],
        serde_json::json!(["sleep", "1000"])
    );
    assert!(snapshots_ls(&daemon, &ns).iter().any(|s| s.key == "t2"));

    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", "t2"]);
    assert!(container_ids(&daemon, &ns).is_empty());
    assert!(!snapshots_ls(&daemon, &ns).iter().any(|s| s.key == "t2"));
    assert_nothing_left(&daemon, &ns);
}

#[test]
fn a_terminal_task_reads_and_writes_through_its_pty() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "tty1");
    let ctr_path = ctr_binary();
    let socket = daemon.socket();
    let mut session = TerminalSession::start(
        ctr_path.to_str().unwrap(),
        &[
            "--address",
            socket.to_str().unwrap(),
            "-n",
            &ns,
            "run",
            "-t",
            "--rm",
            BUSYBOX_NAME,
            "tty1",
            "sh",
        ],
    );
    let timeout = Duration::from_secs(60);
    let prompt = session
        .wait_for("# ", 0, timeout)
        .unwrap_or_else(|| panic!("no shell prompt; terminal showed {:?}", session.output()));
    // While it runs, the task is listed with a pid whose stdin is a terminal.
    let row = task_row(&daemon, &ns, "tty1").expect("the terminal task is listed");
    if let Some(init) = ProcessHandle::capture(row.pid) {
        cleanup.track_process(init);
    }
    let stdin = std::fs::read_link(format!("/proc/{}/fd/0", row.pid)).unwrap();
    assert!(
        stdin.to_string_lossy().starts_with("/dev/pts/"),
        "init's stdin is {stdin:?}"
    );

    session.type_text("test -t 0 && test -t 1 && echo tty-$((6*7))\n");
    let answered = session.wait_for("tty-42", prompt, timeout);
    assert!(answered.is_some(), "terminal showed {:?}", session.output());
    session.type_text("exit 5\n");
    let status = session.wait(timeout);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(5),
        "terminal showed {:?}",
        session.output()
    );
    assert_nothing_left(&daemon, &ns);
}

/// Writes an executable wrapper around runc that appends each call's arguments to `log`.
fn runc_wrapper(daemon: &Daemon, log: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let runc = Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .unwrap();
    let runc = String::from_utf8_lossy(&runc.stdout).trim().to_string();
    assert!(!runc.is_empty(), "runc is not on PATH");
    let wrapper = daemon.dir().join("runc-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{runc}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// The logged runtime calls (one argument list per call) whose subcommand is `verb`
/// and whose last argument is `id`.
fn calls<'a>(log: &'a [Vec<String>], verb: &str, id: &str) -> Vec<&'a Vec<String>> {
    log.iter()
        .filter(|args| {
            args.iter().any(|a| a == verb) && args.last().map(String::as_str) == Some(id)
        })
        .collect()
}

fn read_calls(log: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn run_uses_the_runtime_binary_it_is_given() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "w1");
    let log = daemon.dir().join("runc-calls.log");
    let wrapper = runc_wrapper(&daemon, &log);
    let wrapper_arg = wrapper.to_str().unwrap();

    let out = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            "--runc-binary",
            wrapper_arg,
            BUSYBOX_NAME,
            "w1",
            "echo",
            "wrapped",
        ],
    );
    assert_eq!(out, "wrapped\n");
    // The shim runs the runtime's delete after its Delete reply and before it exits: once
    // nothing is left (every shim gone), the log is complete.
    assert_nothing_left(&daemon, &ns);
    let logged = read_calls(&log);
    for verb in ["create", "start", "delete"] {
        assert!(
            !calls(&logged, verb, "w1").is_empty(),
            "no `{verb}` in {logged:#?}"
        );
    }
    // The runtime's state lives where the daemon keeps it (under berthd's --state).
    let create = calls(&logged, "create", "w1")[0];
    let root_at = create.iter().position(|a| a == "--root").expect("--root");
    assert_eq!(
        std::path::Path::new(&create[root_at + 1]),
        daemon.runtime_root(&ns)
    );

    // A detached task keeps using it for everything later.
    run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &["--runc-binary", wrapper_arg],
        BUSYBOX_NAME,
        "w2",
        &["sleep", "1000"],
    );
    let out = exec(&daemon, &ns, "w2", "x1", &["echo", "exec-ok"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec-ok\n", "{out:?}");
    ctr_ok(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "w2"],
    );
    wait_for_task_status(&daemon, &ns, "w2", "STOPPED", SETTLE);
    ctr_ok(&daemon, &["-n", &ns, "tasks", "rm", "w2"]);
    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", "w2"]);
    // Every shim gone means the runtime's delete (run after the reply) is logged too.
    assert_nothing_left(&daemon, &ns);
    let logged = read_calls(&log);
    for verb in ["create", "start", "exec", "kill", "delete"] {
        let found = logged
            .iter()
            .any(|args| args.iter().any(|a| a == verb) && args.iter().any(|a| a == "w2"));
        assert!(found, "no `{verb}` of w2 in {logged:#?}");
    }
}

#[test]
fn crun_runs_the_task_or_its_own_error_reaches_the_client() {
    let crun = std::path::Path::new("/usr/bin/crun");
    if !crun.exists() {
        eprintln!("skipped: {} is not installed", crun.display());
        return;
    }
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "cr1");
    let out = ctr(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            "--runc-binary",
            "/usr/bin/crun",
            BUSYBOX_NAME,
            "cr1",
            "echo",
            "via-crun",
        ],
    );
    if out.status.success() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "via-crun\n");
    } else {
        // This host's hybrid cgroup layout makes crun refuse; its own words must arrive.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cgroup"), "crun's error is lost: {stderr}");
    }
    assert_nothing_left(&daemon, &ns);
}
