//! berthd keeps a spare shim started ahead of need: a task create gives it the task (no
//! shim is launched while the client waits) and a new spare takes its place. A spare never
//! outlives its berthd, a spare that died costs the next create nothing but a launch, and
//! `--spare-shims 0` keeps none. (berthd only: containerd has no spare shims.)

use std::path::PathBuf;
use std::time::Duration;

use berth_tests::processes::ProcessHandle;
use berth_tests::steps::{import_busybox, wait_until, BUSYBOX_NAME};
use berth_tests::tasks::{
    run_detached, shim_processes, shim_sockets, spare_shims, wait_task_cleaned_up, TaskCleanup,
};
use berth_tests::{ctr, ctr_ok, unique_id, Daemon};

/// How long a spare may take to get ready, or to go once its berthd is gone.
const SPARE_WAIT: Duration = Duration::from_secs(20);

fn berthd_with_busybox(args: &[&str]) -> (Daemon, String) {
    let daemon = Daemon::start_berthd_with(args);
    let namespace = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &namespace]);
    import_busybox(&daemon, &namespace);
    (daemon, namespace)
}

/// `ctr run --rm busybox echo hello` must print hello.
fn run_rm_hello(daemon: &Daemon, ns: &str) {
    let id = unique_id("sp");
    let out = ctr(
        daemon,
        &["-n", ns, "run", "--rm", BUSYBOX_NAME, &id, "echo", "hello"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
}

/// Pids of the spares berthd logged as ready (connected and in its pool), oldest first.
fn spares_logged_ready(daemon: &Daemon) -> Vec<u32> {
    let log = std::fs::read_to_string(daemon.log_path()).unwrap_or_default();
    log.lines()
        .filter(|line| line.contains("spare shim ready"))
        .filter_map(|line| {
            let pid = line.split("pid=").nth(1)?.split_whitespace().next()?;
            pid.parse().ok()
        })
        .collect()
}

/// Waits for a ready spare other than those in `not`; returns it.
fn ready_spare(daemon: &Daemon, not: &[u32]) -> ProcessHandle {
    let mut found = None;
    wait_until(SPARE_WAIT, "berthd has a spare shim ready", || {
        found = spares_logged_ready(daemon)
            .into_iter()
            .rev()
            .find(|pid| !not.contains(pid) && spare_shims(daemon).contains(pid));
        found.is_some()
    });
    ProcessHandle::capture(found.expect("found above")).expect("the spare just ran")
}

/// The spare sockets in `<state>/s`.
fn spare_sockets(daemon: &Daemon) -> Vec<PathBuf> {
    std::fs::read_dir(daemon.state().join("s"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("spare-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_task_is_served_by_the_spare_and_a_new_spare_takes_its_place() {
    let (daemon, ns) = berthd_with_busybox(&[]);
    let mut cleanup = TaskCleanup::new(&daemon);
    let spare = ready_spare(&daemon, &[]);

    let id = unique_id("sp");
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        &id,
        &["sleep", "1000"],
    );
    assert_eq!(
        task.shim, spare,
        "the task was not given to the ready spare"
    );
    // From here on it is an ordinary task shim: the task's socket, log and working dir.
    let sockets = shim_sockets(&daemon);
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let bundle = daemon.task_bundle(&ns, &id);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", spare.pid)).unwrap(),
        bundle
    );
    let log = std::fs::read_to_string(bundle.join("shim.log")).unwrap();
    assert!(log.contains("spare shim took on the task"), "{log}");
    assert_eq!(shim_processes(&daemon), vec![spare.pid]);

    let next = ready_spare(&daemon, &[spare.pid]);
    assert_eq!(spare_shims(&daemon), vec![next.pid]);
    assert_eq!(
        spare_sockets(&daemon).len(),
        1,
        "{:?}",
        spare_sockets(&daemon)
    );

    let out = ctr(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "echo",
            "in",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "in");
    ctr_ok(&daemon, &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", &id]);
    wait_until(SPARE_WAIT, "the task is stopped", || {
        ctr(&daemon, &["-n", &ns, "tasks", "rm", &id])
            .status
            .success()
    });
    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", &id]);
    assert!(
        spare.wait_gone(SPARE_WAIT),
        "the task's shim outlived its task"
    );
    wait_task_cleaned_up(&daemon, &ns, &id, SPARE_WAIT);
    assert!(next.is_alive(), "the new spare went with the task");
    assert!(
        shim_sockets(&daemon).is_empty(),
        "{:?}",
        shim_sockets(&daemon)
    );
}

#[test]
fn a_spare_goes_with_its_berthd_and_a_restarted_berthd_starts_its_own() {
    let (mut daemon, ns) = berthd_with_busybox(&[]);
    let first = ready_spare(&daemon, &[]);
    let first_sockets = spare_sockets(&daemon);
    assert_eq!(first_sockets.len(), 1, "{first_sockets:?}");

    daemon.kill9();
    assert!(
        first.wait_gone(SPARE_WAIT),
        "the spare outlived a killed berthd"
    );
    wait_until(SPARE_WAIT, "the spare removed its socket", || {
        spare_sockets(&daemon).is_empty()
    });

    daemon.restart();
    let second = ready_spare(&daemon, &[first.pid]);
    assert_ne!(second, first);
    run_rm_hello(&daemon, &ns);
    assert!(
        second.wait_gone(SPARE_WAIT),
        "the used spare's shim is still running"
    );

    let third = ready_spare(&daemon, &[first.pid, second.pid]);
    assert!(daemon.stop(), "berthd did not stop on SIGTERM");
    assert!(
        third.wait_gone(SPARE_WAIT),
        "the spare outlived a stopped berthd"
    );
    assert!(
        spare_sockets(&daemon).is_empty(),
        "{:?}",
        spare_sockets(&daemon)
    );
}

#[test]
fn a_dead_spare_costs_the_next_task_only_a_launched_shim() {
    let (daemon, ns) = berthd_with_busybox(&[]);
    let spare = ready_spare(&daemon, &[]);
    spare.kill();
    assert!(spare.wait_gone(SPARE_WAIT));

    run_rm_hello(&daemon, &ns);
    let log = std::fs::read_to_string(daemon.log_path()).unwrap();
    assert!(
        log.contains("did not take the task"),
        "{}",
        daemon.log_tail(30)
    );
    // The dead spare's socket went with it; a new spare is on its way.
    let next = ready_spare(&daemon, &[spare.pid]);
    assert_eq!(
        spare_sockets(&daemon).len(),
        1,
        "{:?}",
        spare_sockets(&daemon)
    );
    assert!(next.is_alive());
}

#[test]
fn no_spare_is_kept_with_spare_shims_zero() {
    let (daemon, ns) = berthd_with_busybox(&["--spare-shims", "0"]);
    run_rm_hello(&daemon, &ns);
    // Long enough for a spare to get ready, had one been started (they take milliseconds).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(spare_shims(&daemon), Vec::<u32>::new());
    assert_eq!(spare_sockets(&daemon), Vec::<PathBuf>::new());
    assert!(
        spares_logged_ready(&daemon).is_empty(),
        "{}",
        daemon.log_tail(30)
    );
}
