//! Containers outlive their daemon and their shim's death is noticed: kill -9 the daemon
//! with 20 tasks running and start it again; a task that exits while the daemon is away
//! keeps its real exit status; a shim killed, with the daemon up or down, gets its task
//! reported stopped and cleaned up while the others run on untouched.

use std::time::Duration;

use berth_tests::steps::{wait_until, BUSYBOX_NAME};
use berth_tests::tasks::{
    container_ids, daemon_with_busybox, exec, run_detached, shim_sockets, task_row, tasks_ls,
    wait_for_task_status, wait_task_cleaned_up, RunningTask, TaskCleanup,
};
use berth_tests::{ctr, ctr_ok, Daemon, EventWatcher};

/// How long a daemon may take to notice an exit or a dead shim.
const SETTLE: Duration = Duration::from_secs(30);
/// Tasks kept running through the daemon's crash.
const RUNNING: usize = 20;

/// Waits until task `id`, whose shim was killed, is reported stopped: listed as STOPPED
/// or no longer listed at all. If it is still listed, `ctr tasks rm` must then remove it.
fn wait_reported_stopped_and_remove(daemon: &Daemon, ns: &str, id: &str) {
    wait_until(
        SETTLE,
        &format!("task {id} is reported stopped"),
        || match task_row(daemon, ns, id) {
            None => true,
            Some(row) => row.status == "STOPPED",
        },
    );
    if task_row(daemon, ns, id).is_some() {
        let out = ctr(daemon, &["-n", ns, "tasks", "rm", id]);
        assert!(out.status.success(), "tasks rm {id}: {out:?}");
    }
    assert_eq!(task_row(daemon, ns, id), None);
}

/// Asserts that each task still runs as it did: RUNNING under the same pid, served by
/// the same shim.
fn assert_untouched(daemon: &Daemon, ns: &str, tasks: &[RunningTask]) {
    let listed = tasks_ls(daemon, ns);
    for task in tasks {
        let row = listed
            .iter()
            .find(|r| r.id == task.id)
            .unwrap_or_else(|| panic!("{} is not listed in {listed:#?}", task.id));
        assert_eq!(
            (row.status.as_str(), row.pid),
            ("RUNNING", task.init.pid),
            "{}",
            task.id
        );
        assert!(task.init.is_alive(), "{}: init died", task.id);
        assert!(task.shim.is_alive(), "{}: shim died", task.id);
    }
}

#[test]
fn tasks_survive_a_daemon_kill9_with_exits_and_dead_shims_accounted_for() {
    let (mut daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let tasks: Vec<RunningTask> = (0..RUNNING)
        .map(|i| {
            run_detached(
                &daemon,
                &mut cleanup,
                &ns,
                &[],
                BUSYBOX_NAME,
                &format!("r{i:02}"),
                &["sleep", "1000"],
            )
        })
        .collect();
    // Exits with 42 on SIGTERM (pid 1 only gets the signals it handles).
    let exiting = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "exits",
        &["sh", "-c", "trap 'exit 42' TERM; sleep 1000 & wait"],
    );
    let orphaned = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "shim-dies",
        &["sleep", "1000"],
    );

    daemon.kill9();
    // While the daemon is away, one task exits by itself and one shim dies.
    let init = rustix::process::Pid::from_raw(exiting.init.pid as i32).unwrap();
    rustix::process::kill_process(init, rustix::process::Signal::TERM).unwrap();
    assert!(
        exiting.init.wait_gone(SETTLE),
        "the trapping task ignored SIGTERM"
    );
    orphaned.shim.kill();
    assert!(orphaned.shim.wait_gone(SETTLE));
    daemon.restart();

    assert_untouched(&daemon, &ns, &tasks);
    let out = exec(
        &daemon,
        &ns,
        "r07",
        "after-restart",
        &["echo", "still-here"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "still-here\n",
        "{out:?}"
    );

    // The exit that happened while the daemon was down is reported with its status.
    let stopped = wait_for_task_status(&daemon, &ns, "exits", "STOPPED", SETTLE);
    assert_eq!(stopped.pid, exiting.init.pid);
    let out = ctr(&daemon, &["-n", &ns, "tasks", "rm", "exits"]);
    assert!(out.status.success(), "{out:?}");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains("exit code 42"), "tasks rm said: {warning}");
    assert!(exiting.shim.wait_gone(SETTLE), "the shim outlived its task");
    wait_task_cleaned_up(&daemon, &ns, "exits", SETTLE);

    // The task whose shim died is stopped for good and cleaned up.
    wait_reported_stopped_and_remove(&daemon, &ns, "shim-dies");
    assert!(orphaned.init.wait_gone(SETTLE), "its container still runs");
    wait_task_cleaned_up(&daemon, &ns, "shim-dies", SETTLE);

    // The others never noticed; the containers are all still there.
    assert_untouched(&daemon, &ns, &tasks);
    assert_eq!(container_ids(&daemon, &ns).len(), RUNNING + 2);
    if daemon.kind().is_berthd() {
        assert_eq!(
            shim_sockets(&daemon).len(),
            RUNNING,
            "{:?}",
            shim_sockets(&daemon)
        );
    }
}

#[test]
fn a_killed_shim_gets_its_task_stopped_and_cleaned_up() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let watcher = EventWatcher::start(&daemon);
    let victim = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "victim",
        &["sleep", "1000"],
    );
    let bystander = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "bystander",
        &["sleep", "1000"],
    );

    victim.shim.kill();
    wait_reported_stopped_and_remove(&daemon, &ns, "victim");
    let reported = watcher.wait_for_event(
        |e| e.topic == "/tasks/exit" && e.payload.contains("\"container_id\":\"victim\""),
        SETTLE,
    );
    assert!(
        reported,
        "no /tasks/exit for victim in {:#?}",
        watcher.events()
    );
    assert!(victim.init.wait_gone(SETTLE), "its container still runs");
    wait_task_cleaned_up(&daemon, &ns, "victim", SETTLE);

    assert_untouched(&daemon, &ns, std::slice::from_ref(&bystander));
    if daemon.kind().is_berthd() {
        assert_eq!(
            shim_sockets(&daemon).len(),
            1,
            "{:?}",
            shim_sockets(&daemon)
        );
    }
    let out = exec(&daemon, &ns, "bystander", "x1", &["echo", "fine"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine\n", "{out:?}");

    // Nothing of the old task is in the way of a new one under the same name.
    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", "victim"]);
    let again = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "victim",
        &["sleep", "1000"],
    );
    assert_ne!(again.init.pid, victim.init.pid);
}

/// Name of the file berthd writes into a parked bundle with the deleted task's id.
const PARKED_TASK_FILE: &str = "deleted-task-id";

#[test]
fn a_deleted_tasks_shim_left_running_by_a_dead_daemon_is_shut_down_at_restart() {
    let (mut daemon, ns) = daemon_with_busybox();
    if !daemon.kind().is_berthd() {
        return; // How berthd parks a deleted task's bundle is its own business.
    }
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "parked",
        &["sleep", "1000"],
    );
    // What a daemon killed halfway through Tasks.Delete leaves: the task deleted in its
    // shim, the bundle moved aside, and no Shutdown sent yet.
    daemon.kill9();
    let init = rustix::process::Pid::from_raw(task.init.pid as i32).unwrap();
    rustix::process::kill_process(init, rustix::process::Signal::KILL).unwrap();
    assert!(task.init.wait_gone(SETTLE));
    let bundle = daemon.task_bundle(&ns, "parked");
    let socket = std::fs::read_to_string(bundle.join("address")).unwrap();
    let socket = socket.trim().trim_start_matches("unix://").to_string();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut shim = berth_shim::client::connect(std::path::Path::new(&socket))
            .await
            .unwrap();
        shim.delete(berth_proto::containerd::task::v2::DeleteRequest {
            id: "parked".into(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    });
    let parked_root = daemon.state().join("deleted");
    std::fs::create_dir_all(&parked_root).unwrap();
    let parked = parked_root.join(format!("{ns}.parked.1.0"));
    std::fs::rename(&bundle, &parked).unwrap();
    std::fs::write(parked.join(PARKED_TASK_FILE), "parked").unwrap();
    assert!(task.shim.is_alive(), "the shim waits for a Shutdown");

    daemon.restart();
    assert!(
        task.shim.wait_gone(SETTLE),
        "the shim of the deleted task is still running after the restart"
    );
    // The shim ran the runtime's delete before it went, and the bundle is gone.
    let runtime_state = daemon.runtime_root(&ns).join("parked");
    assert!(!runtime_state.exists(), "{}", runtime_state.display());
    wait_until(SETTLE, "the parked bundle is removed", || {
        std::fs::read_dir(&parked_root).map_or(true, |mut d| d.next().is_none())
    });
    assert_eq!(task_row(&daemon, &ns, "parked"), None);
    ctr_ok(&daemon, &["-n", &ns, "containers", "rm", "parked"]);
    wait_task_cleaned_up(&daemon, &ns, "parked", SETTLE);
}
