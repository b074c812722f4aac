//! `berthctl tasks …` on a detached task: listed with its pid, its processes, exec'd
//! into, paused and resumed, measured, killed, waited for, attached to, removed — and
//! the JSON forms of the listings.

use std::process::Command;
use std::time::Duration;

use berth_tests::berthctl::{berthctl, berthctl_error, berthctl_json, berthctl_ok, table_cells};
use berth_tests::berthctl_tasks::{
    assert_nothing_left, exec, fifo_leftovers, fifo_root_arg, import_users_image, run_detached,
    task_row, tasks_ls, terminal_command_line, wait_for_status, SETTLE, USERS_IMAGE,
};
use berth_tests::processes::status_field;
use berth_tests::steps::BUSYBOX_NAME;
use berth_tests::tasks::{daemon_with_busybox, TaskCleanup};
use berth_tests::terminal::TerminalSession;

const BUSYBOX_LAYERS: usize = 1;

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
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
        "t1",
        &["sleep", "1000"],
    );
    let pid = task.init.pid;

    // The listed pid is the container's init as the host sees it.
    let ps = Command::new("ps")
        .args(["-o", "args=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "sleep 1000");
    let nspid = status_field(pid, "NSpid").unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "NSpid {nspid}");
    let header = berthctl_ok(&daemon, &["-n", &ns, "tasks", "ls"]);
    assert_eq!(
        header
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["TASK", "PID", "STATUS"]
    );
    let json = berthctl_json(&daemon, &["-n", &ns, "tasks", "ls"]);
    assert_eq!(json[0]["id"], "t1");
    assert_eq!(json[0]["pid"], pid);
    assert_eq!(json[0]["status"], "RUNNING");
    assert_eq!(
        berthctl_ok(&daemon, &["-n", &ns, "tasks", "ls", "-q"]),
        "t1\n"
    );

    let ps_rows = table_cells(&berthctl_ok(&daemon, &["-n", &ns, "tasks", "ps", "t1"]));
    assert_eq!(ps_rows, vec![vec![pid.to_string(), "-".to_string()]]);

    // exec: output and exit status come back; a running exec is listed by ps.
    let out = exec(&daemon, &ns, "t1", "e1", &["ls", "/"]);
    assert!(out.status.success(), "{out:?}");
    let entries = stdout_of(&out);
    for wanted in ["bin", "etc", "proc", "tmp"] {
        assert!(
            entries.lines().any(|e| e == wanted),
            "{wanted} in {entries}"
        );
    }
    let out = exec(
        &daemon,
        &ns,
        "t1",
        "e2",
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(stdout_of(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // The exec shares the task's pid namespace: its init is pid 1 there.
    let out = exec(&daemon, &ns, "t1", "e3", &["ps", "-o", "pid,args"]);
    let listing = stdout_of(&out);
    assert!(
        listing
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "1000"]),
        "{listing}"
    );
    let json = berthctl_json(&daemon, &["-n", &ns, "tasks", "ps", "t1"]);
    assert_eq!(
        json.as_array().unwrap().len(),
        1,
        "finished execs are gone: {json}"
    );

    berthctl_ok(&daemon, &["-n", &ns, "tasks", "pause", "t1"]);
    assert_eq!(task_row(&daemon, &ns, "t1").unwrap().status, "PAUSED");
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "resume", "t1"]);
    let row = task_row(&daemon, &ns, "t1").unwrap();
    assert_eq!((row.status.as_str(), row.pid), ("RUNNING", pid));

    // Metrics from the task's cgroup: one process, some memory; as a table and as JSON.
    let metrics = berthctl_ok(&daemon, &["-n", &ns, "tasks", "metrics", "t1"]);
    assert!(metrics.starts_with("ID"), "{metrics}");
    let metric = |name: &str| -> Option<String> {
        metrics.lines().find_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells.first() == Some(&name)).then(|| cells.get(1).unwrap_or(&"").to_string())
        })
    };
    assert_eq!(metric("pids.current").as_deref(), Some("1"), "{metrics}");
    let json = berthctl_json(&daemon, &["-n", &ns, "tasks", "metrics", "t1"]);
    assert_eq!(json["id"], "t1");
    assert_eq!(json["metrics"]["pids.current"], 1, "{json}");
    let memory = json["metrics"]["memory.usage_in_bytes"]
        .as_u64()
        .or_else(|| json["metrics"]["memory.usage"].as_u64())
        .unwrap_or_else(|| panic!("no memory usage in {json}"));
    assert!(memory > 0, "{json}");

    berthctl_ok(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "t1"],
    );
    let stopped = wait_for_status(&daemon, &ns, "t1", "STOPPED");
    assert_eq!(stopped.pid, pid);
    assert!(task.init.wait_gone(SETTLE), "init {pid} survived SIGKILL");
    // wait on a stopped task answers at once, with its status as the exit code.
    let waited = berthctl(&daemon, &["-n", &ns, "tasks", "wait", "t1"]);
    assert_eq!(waited.status.code(), Some(137), "{waited:?}");

    // Removing the task reports how it ended, its fifos go, its record stays.
    let out = berthctl(&daemon, &["-n", &ns, "tasks", "rm", "t1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("137"),
        "{out:?}"
    );
    assert_eq!(task_row(&daemon, &ns, "t1"), None);
    assert!(task.shim.wait_gone(SETTLE), "the shim outlived its task");
    assert_eq!(fifo_leftovers(&daemon), Vec::<std::path::PathBuf>::new());
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "t1"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn a_running_task_is_not_removed_without_force() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "busy",
        &["sleep", "1000"],
    );
    let message = berthctl_error(&daemon, &["-n", &ns, "tasks", "rm", "busy"]);
    assert!(
        message.contains("busy") && message.contains("-f"),
        "{message}"
    );
    assert!(task.init.is_alive());
    let message = berthctl_error(&daemon, &["-n", &ns, "containers", "rm", "busy"]);
    assert!(message.contains("running"), "{message}");
    assert_eq!(task_row(&daemon, &ns, "busy").unwrap().status, "RUNNING");

    // -f kills every process of the task, waits, and deletes it.
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "-f", "busy"]);
    assert!(task.init.wait_gone(SETTLE));
    assert_eq!(tasks_ls(&daemon, &ns), Vec::new());
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "busy"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn attach_follows_a_detached_task_and_exits_with_its_status() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let gate = daemon.dir().join("gate");
    std::fs::create_dir(&gate).unwrap();
    let mount = format!("type=bind,src={},dst=/gate", gate.display());
    // The task waits for the test to open the gate, then talks and exits 9.
    run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &["--mount", &mount],
        BUSYBOX_NAME,
        "att",
        &[
            "sh",
            "-c",
            "echo early; while [ ! -e /gate/open ]; do sleep 0.05; done; echo late; exit 9",
        ],
    );
    let mut cmd = berth_tests::berthctl::berthctl_command(&daemon);
    cmd.args(["-n", &ns, "tasks", "attach", "att"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(gate.join("open"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert_eq!(stdout_of(&out), "early\nlate\n");
    // attach leaves the (stopped) task for tasks rm.
    assert_eq!(task_row(&daemon, &ns, "att").unwrap().status, "STOPPED");
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "att"]);
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "att"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn start_attached_runs_a_created_container_and_deletes_its_task() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "later");
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "containers",
            "create",
            BUSYBOX_NAME,
            "later",
            "sh",
            "-c",
            "echo started; exit 4",
        ],
    );
    assert_eq!(tasks_ls(&daemon, &ns), Vec::new());
    let fifos = fifo_root_arg(&daemon);
    let out = berthctl(
        &daemon,
        &["-n", &ns, "tasks", "start", "--fifo-dir", &fifos, "later"],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(stdout_of(&out), "started\n");
    assert_eq!(tasks_ls(&daemon, &ns), Vec::new());
    // Once more, detached, then waited for.
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "start",
            "-d",
            "--fifo-dir",
            &fifos,
            "later",
        ],
    );
    let waited = berthctl(&daemon, &["-n", &ns, "tasks", "wait", "later"]);
    assert_eq!(waited.status.code(), Some(4), "{waited:?}");
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "later"]);
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "later"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn tasks_of_missing_containers_are_clear_errors() {
    let (daemon, ns) = daemon_with_busybox();
    for args in [
        vec!["tasks", "start", "nosuch"],
        vec!["tasks", "kill", "nosuch"],
        vec!["tasks", "ps", "nosuch"],
        vec!["tasks", "metrics", "nosuch"],
        vec!["tasks", "rm", "nosuch"],
        vec!["tasks", "wait", "nosuch"],
        vec!["tasks", "attach", "nosuch"],
        vec!["tasks", "exec", "--exec-id", "e1", "nosuch", "true"],
    ] {
        let mut full = vec!["-n", ns.as_str()];
        full.extend(args.iter().copied());
        let message = berthctl_error(&daemon, &full);
        assert!(
            message.contains("nosuch") && message.contains("not found"),
            "{args:?}: {message}"
        );
    }
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn exec_takes_a_terminal_a_user_a_cwd_and_env() {
    let (daemon, ns) = daemon_with_busybox();
    import_users_image(&daemon, &ns);
    let mut cleanup = TaskCleanup::new(&daemon);
    run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        USERS_IMAGE,
        "host",
        &["sleep", "1000"],
    );
    // A user name resolves in the container's image, groups included.
    let out = berthctl(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "exec",
            "--fifo-dir",
            &fifo_root_arg(&daemon),
            "--user",
            "app",
            "--cwd",
            "/tmp",
            "--env",
            "MARK=x1",
            "host",
            "sh",
            "-c",
            "id -u; id -G; pwd; echo $MARK",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "1000\n1000 29 44\n/tmp\nx1\n");

    // With a terminal, through `script`.
    let fifos = fifo_root_arg(&daemon);
    let (program, args) = terminal_command_line(
        &daemon,
        &[
            "-n",
            &ns,
            "tasks",
            "exec",
            "-t",
            "--fifo-dir",
            &fifos,
            "--exec-id",
            "shell",
            "host",
            "sh",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut session = TerminalSession::start(&program, &args);
    let timeout = Duration::from_secs(60);
    let prompt = session
        .wait_for("# ", 0, timeout)
        .unwrap_or_else(|| panic!("no shell prompt; terminal showed {:?}", session.output()));
    session.type_text("test -t 0 && echo exec-tty-$((2*21))\n");
    assert!(
        session.wait_for("exec-tty-42", prompt, timeout).is_some(),
        "terminal showed {:?}",
        session.output()
    );
    session.type_text("exit 3\n");
    assert_eq!(session.wait(timeout).and_then(|s| s.code()), Some(3));
    // The exec is gone again; the task runs on.
    let json = berthctl_json(&daemon, &["-n", &ns, "tasks", "ps", "host"]);
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(task_row(&daemon, &ns, "host").unwrap().status, "RUNNING");
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "-f", "host"]);
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "host"]);
    let layers = berth_tests::berthctl_tasks::snapshot_keys(&daemon, &ns).len();
    assert_nothing_left(&daemon, &ns, layers);
}
