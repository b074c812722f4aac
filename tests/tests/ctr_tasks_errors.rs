//! Bad input to the task API: each a clear error, none leaving a shim, a mount or a
//! bundle behind, and none making the client hang.

use std::time::Duration;

use berth_tests::ctr::{ctr_command, run_with_timeout, table_rows};
use berth_tests::fixtures::busybox_oci_archive_with_config;
use berth_tests::fixtures::oci::ImageConfig;
use berth_tests::processes::ProcessHandle;
use berth_tests::steps::{import_archive, wait_until, BUSYBOX_NAME};
use berth_tests::tasks::{
    bundles_in_namespace, container_ids, daemon_with_busybox, exec, fifo_dir, run_detached,
    shim_pid, shim_processes, shim_sockets, task_row, tasks_ls, wait_for_task_status, TaskCleanup,
};
use berth_tests::{ctr, ctr_fails, ctr_ok, Daemon};

/// How long a failing ctr command may take before the test calls it a hang.
const NO_HANG: Duration = Duration::from_secs(60);
/// How long a shim may take to exit after its task is gone.
const SETTLE: Duration = Duration::from_secs(20);

/// Asserts that no shim other than those of `running` tasks runs, that only their
/// bundles exist in the namespace, and that nothing else is mounted in the daemon's
/// directory apart from their root filesystems.
fn assert_only_left(daemon: &Daemon, ns: &str, running: &[&str]) {
    wait_until(SETTLE, "only the running tasks' shims are left", || {
        shim_processes(daemon).len() == running.len()
    });
    if daemon.kind().is_berthd() {
        let sockets = shim_sockets(daemon);
        assert_eq!(sockets.len(), running.len(), "shim sockets: {sockets:?}");
    }
    let mut bundles = bundles_in_namespace(daemon, ns);
    bundles.sort();
    let mut wanted: Vec<String> = running.iter().map(|s| s.to_string()).collect();
    wanted.sort();
    assert_eq!(bundles, wanted, "task bundles in {ns}");
    let mounts = berth_tests::cleanup::mounts_under(daemon.dir());
    let allowed: Vec<_> = running
        .iter()
        .map(|id| daemon.task_bundle(ns, id).join("rootfs"))
        .collect();
    let stray: Vec<_> = mounts.iter().filter(|m| !allowed.contains(m)).collect();
    assert!(stray.is_empty(), "stray mounts: {stray:?}");
}

/// Runs ctr with `args` and fails the test if it does not return within [`NO_HANG`].
fn ctr_without_hanging(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    let mut cmd = ctr_command(daemon);
    cmd.args(args);
    run_with_timeout(cmd, NO_HANG).unwrap_or_else(|partial| {
        panic!(
            "ctr {args:?} hung for {NO_HANG:?}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&partial.stdout),
            String::from_utf8_lossy(&partial.stderr),
            daemon.log_tail(40)
        )
    })
}

#[test]
fn a_task_for_a_missing_container_is_not_found() {
    let (daemon, ns) = daemon_with_busybox();
    let stderr = ctr_fails(&daemon, &["-n", &ns, "tasks", "start", "nosuch"]);
    assert!(
        stderr.contains("nosuch") && stderr.contains("not found"),
        "{stderr}"
    );
    assert_only_left(&daemon, &ns, &[]);
}

#[test]
fn a_second_task_for_the_same_container_already_exists() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "twice");
    ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "containers",
            "create",
            BUSYBOX_NAME,
            "twice",
            "sleep",
            "1000",
        ],
    );
    let fifos = fifo_dir(&daemon);
    ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "start",
            "-d",
            "--fifo-dir",
            &fifos,
            "twice",
        ],
    );
    let first = task_row(&daemon, &ns, "twice").expect("the first task is listed");
    let init = ProcessHandle::capture(first.pid).unwrap();
    cleanup.track_process(init);
    cleanup
        .track_process(ProcessHandle::capture(shim_pid(&daemon, &ns, "twice", first.pid)).unwrap());

    let stderr = ctr_fails(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "start",
            "-d",
            "--fifo-dir",
            &fifos,
            "twice",
        ],
    );
    assert!(stderr.contains("already exists"), "{stderr}");
    // The first task is untouched.
    let row = task_row(&daemon, &ns, "twice").unwrap();
    assert_eq!((row.status.as_str(), row.pid), ("RUNNING", first.pid));
    assert!(init.is_alive());
    assert_only_left(&daemon, &ns, &["twice"]);
}

#[test]
fn an_exec_id_in_use_is_refused() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "ex",
        &["sleep", "1000"],
    );
    ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "exec",
            "-d",
            "--fifo-dir",
            &fifo_dir(&daemon),
            "--exec-id",
            "e1",
            "ex",
            "sleep",
            "500",
        ],
    );
    let out = exec(&daemon, &ns, "ex", "e1", &["echo", "second"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("e1") && stderr.contains("already exists"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("second"));

    // The first exec and the task run on.
    let pids = table_rows(&ctr_ok(&daemon, &["-n", &ns, "tasks", "ps", "ex"]));
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(task.init.is_alive());
    assert_eq!(task_row(&daemon, &ns, "ex").unwrap().status, "RUNNING");
    assert_only_left(&daemon, &ns, &["ex"]);
}

#[test]
fn killing_a_stopped_task_is_not_found() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "gone",
        &["sleep", "1000"],
    );
    ctr_ok(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "gone"],
    );
    wait_for_task_status(&daemon, &ns, "gone", "STOPPED", SETTLE);
    let stderr = ctr_fails(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "gone"],
    );
    assert!(stderr.contains("not found"), "{stderr}");
    // Still a stopped task that can be removed as usual.
    assert_eq!(task_row(&daemon, &ns, "gone").unwrap().status, "STOPPED");
    ctr_ok(&daemon, &["-n", &ns, "tasks", "rm", "gone"]);
    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", "gone"]);
    assert!(task.shim.wait_gone(SETTLE));
    assert_only_left(&daemon, &ns, &[]);
}

#[test]
fn a_missing_runtime_binary_is_a_clear_error() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "noruntime");
    let out = ctr_without_hanging(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            "--runc-binary",
            "/nonexistent/runc",
            BUSYBOX_NAME,
            "noruntime",
            "true",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/runc"), "{stderr}");
    assert_eq!(tasks_ls(&daemon, &ns), Vec::new());
    assert_eq!(container_ids(&daemon, &ns), Vec::<String>::new());
    assert_only_left(&daemon, &ns, &[]);
}

#[test]
fn an_entrypoint_that_does_not_exist_fails_without_hanging() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let archive = daemon.dir().join("broken.tar");
    let config = ImageConfig {
        entrypoint: vec!["/no/such/entrypoint".to_string()],
        cmd: Vec::new(),
        ..ImageConfig::default()
    };
    let image = "localhost/broken-entrypoint:1";
    busybox_oci_archive_with_config(&archive, image, &config).unwrap();
    import_archive(&daemon, &ns, &archive);

    // Attached, removed afterwards: ctr waits on its stdio fifos, which must be closed.
    cleanup.track(&ns, "broken1");
    let out = ctr_without_hanging(&daemon, &["-n", &ns, "run", "--rm", image, "broken1"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/entrypoint"), "{stderr}");
    assert_eq!(container_ids(&daemon, &ns), Vec::<String>::new());
    assert_only_left(&daemon, &ns, &[]);

    // Detached, the container record is kept, but no task.
    cleanup.track(&ns, "broken2");
    let fifos = fifo_dir(&daemon);
    let out = ctr_without_hanging(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "-d",
            "--fifo-dir",
            &fifos,
            image,
            "broken2",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/entrypoint"));
    assert_eq!(tasks_ls(&daemon, &ns), Vec::new());
    assert_only_left(&daemon, &ns, &[]);
    let out = ctr(&daemon, &["-n", &ns, "containers", "rm", "broken2"]);
    assert!(
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{out:?}"
    );
    assert_eq!(container_ids(&daemon, &ns), Vec::<String>::new());
}
