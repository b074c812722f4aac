//! `berthctl run`: the same container life the ctr tests cover, driven through berthctl —
//! output and exit status, environment, working directory, users, mounts, host network,
//! limits, labels, a custom runtime binary, a terminal, and signals passed on.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use berth_tests::berthctl::{berthctl_command, berthctl_json, berthctl_ok};
use berth_tests::berthctl_tasks::{
    assert_nothing_left, fifo_root_arg, import_users_image, run, run_detached, run_ok,
    runc_wrapper, snapshot_keys, terminal_command_line, wait_for_status, SETTLE, USERS_IMAGE,
};
use berth_tests::steps::BUSYBOX_NAME;
use berth_tests::tasks::{daemon_with_busybox, TaskCleanup};
use berth_tests::terminal::TerminalSession;

/// Committed snapshots the busybox image unpacks to.
const BUSYBOX_LAYERS: usize = 1;

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_rm_prints_the_output_and_exits_with_the_task_status() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "hello");
    cleanup.track(&ns, "three");

    let hello = run_ok(
        &daemon,
        &ns,
        &["--rm", BUSYBOX_NAME, "hello", "echo", "hello"],
    );
    assert_eq!(hello, "hello\n");

    let out = run(
        &daemon,
        &ns,
        &[
            "--rm",
            BUSYBOX_NAME,
            "three",
            "sh",
            "-c",
            "echo to-stderr >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "to-stderr\n");
    assert_eq!(stdout_of(&out), "");

    // A process killed by a signal: 128 + the signal, as a shell reports it.
    cleanup.track(&ns, "killed");
    let fifos = fifo_root_arg(&daemon);
    let mut cmd = berthctl_command(&daemon);
    cmd.args([
        "-n",
        &ns,
        "run",
        "--rm",
        "--fifo-dir",
        &fifos,
        BUSYBOX_NAME,
        "killed",
        "sleep",
        "1000",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for_status(&daemon, &ns, "killed", "RUNNING");
    berthctl_ok(
        &daemon,
        &["-n", &ns, "tasks", "kill", "-s", "SIGKILL", "killed"],
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn stdin_reaches_the_process_and_its_end_closes_it() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "cat");
    let mut cmd = berthctl_command(&daemon);
    let fifos = fifo_root_arg(&daemon);
    cmd.args([
        "-n",
        &ns,
        "run",
        "--rm",
        "--fifo-dir",
        &fifos,
        BUSYBOX_NAME,
        "cat",
        "sh",
        "-c",
        "wc -c; echo done",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vec![b'x'; 200_000]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout_of(&out).split_whitespace().collect::<Vec<_>>(),
        ["200000", "done"]
    );
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn env_cwd_and_user_shape_the_process() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    for id in ["env", "user-num", "user-name", "user-bad"] {
        cleanup.track(&ns, id);
    }
    let out = run_ok(
        &daemon,
        &ns,
        &[
            "--rm",
            "--env",
            "GREETING=hi there",
            "--env",
            "PATH=/bin",
            "--cwd",
            "/tmp",
            BUSYBOX_NAME,
            "env",
            "sh",
            "-c",
            "echo \"$GREETING|$PATH|$(pwd)\"",
        ],
    );
    assert_eq!(out, "hi there|/bin|/tmp\n");

    // Numbers need nothing from the image.
    let out = run_ok(
        &daemon,
        &ns,
        &[
            "--rm",
            "--user",
            "1234:4321",
            BUSYBOX_NAME,
            "user-num",
            "id",
        ],
    );
    assert_eq!(out.trim(), "uid=1234 gid=4321");

    // A name is looked up in the image's own /etc/passwd and /etc/group (here in its
    // second layer), supplementary groups included.
    import_users_image(&daemon, &ns);
    let layers = snapshot_keys(&daemon, &ns).len();
    let ids = run_ok(
        &daemon,
        &ns,
        &[
            "--rm",
            "--user",
            "app",
            USERS_IMAGE,
            "user-name",
            "sh",
            "-c",
            "id -u; id -g; id -G",
        ],
    );
    assert_eq!(ids, "1000\n1000\n1000 29 44\n");
    let ids = run_ok(
        &daemon,
        &ns,
        &[
            "--rm",
            "--user",
            "app:audio",
            USERS_IMAGE,
            "user-name",
            "sh",
            "-c",
            "id -g",
        ],
    );
    assert_eq!(ids, "29\n");

    // A name the image does not know is a clear error, and nothing is left of the run.
    let out = run(
        &daemon,
        &ns,
        &[
            "--rm",
            "--user",
            "no-such-user",
            BUSYBOX_NAME,
            "user-bad",
            "id",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = stderr_of(&out);
    assert!(stderr.contains("no-such-user"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_nothing_left(&daemon, &ns, layers);
}

#[test]
fn a_bind_mount_is_seen_read_only() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "mnt");
    let shared = daemon.dir().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("note"), "from the host\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/shared,options=rbind:ro",
        shared.display()
    );
    let out = run(
        &daemon,
        &ns,
        &[
            "--rm",
            "--mount",
            &mount,
            BUSYBOX_NAME,
            "mnt",
            "sh",
            "-c",
            "cat /shared/note; touch /shared/new && echo wrote || echo refused",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "from the host\nrefused\n");
    assert!(!shared.join("new").exists());

    // A source that does not exist is refused before anything is made.
    let out = run(
        &daemon,
        &ns,
        &[
            "--rm",
            "--mount",
            "type=bind,src=/no/such/dir,dst=/x",
            BUSYBOX_NAME,
            "mnt",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr_of(&out).contains("/no/such/dir"), "{out:?}");
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

/// The host's network interfaces, from /sys.
fn host_interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn net_host_sees_the_hosts_interfaces_and_the_default_does_not() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "net-host");
    cleanup.track(&ns, "net-own");
    let list = |out: String| {
        let mut names: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        names.sort();
        names
    };
    let host = list(run_ok(
        &daemon,
        &ns,
        &[
            "--rm",
            "--net-host",
            BUSYBOX_NAME,
            "net-host",
            "ls",
            "/sys/class/net",
        ],
    ));
    assert_eq!(host, host_interfaces());
    let own = list(run_ok(
        &daemon,
        &ns,
        &["--rm", BUSYBOX_NAME, "net-own", "ls", "/sys/class/net"],
    ));
    assert_eq!(own, ["lo"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn memory_and_cpu_limits_reach_the_cgroup() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &["--memory", "64m", "--cpus", "0.5"],
        BUSYBOX_NAME,
        "limits",
        &["sleep", "1000"],
    );
    // Read the limits of the cgroup the task's init is in, as the host sees it.
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", task.init.pid)).unwrap();
    let path_of = |controller: &str| -> Option<String> {
        cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
    };
    let read = |file: &str| std::fs::read_to_string(file).map(|s| s.trim().to_string());
    if let Some(path) = path_of("memory") {
        let limit = read(&format!(
            "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
        ))
        .unwrap();
        assert_eq!(limit, (64u64 << 20).to_string());
        let quota = read(&format!(
            "/sys/fs/cgroup/cpu{}/cpu.cfs_quota_us",
            path_of("cpu").unwrap()
        ))
        .unwrap();
        assert_eq!(quota, "50000");
        assert_eq!(path, format!("/{ns}/limits"));
    } else {
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 path");
        let base = format!("/sys/fs/cgroup{path}");
        assert_eq!(
            read(&format!("{base}/memory.max")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&format!("{base}/cpu.max")).unwrap(), "50000 100000");
    }
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "-f", "limits"]);
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "limits"]);
    assert!(task.init.wait_gone(SETTLE));
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn labels_runtime_and_spec_are_in_the_container_record() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &["--label", "team=storage", "--label", "tier=test"],
        BUSYBOX_NAME,
        "labelled",
        &["sleep", "1000"],
    );
    let listed = berthctl_json(&daemon, &["-n", &ns, "containers", "ls"]);
    let entry = &listed.as_array().unwrap()[0];
    assert_eq!(entry["id"], "labelled");
    assert_eq!(entry["image"], BUSYBOX_NAME);
    assert_eq!(entry["runtime"], "io.containerd.runc.v2");
    assert_eq!(entry["labels"]["team"], "storage");
    assert_eq!(entry["labels"]["tier"], "test");

    let info: serde_json::Value = serde_json::from_str(&berthctl_ok(
        &daemon,
        &["-n", &ns, "containers", "info", "labelled"],
    ))
    .unwrap();
    assert_eq!(
        info["Spec"]["process"]["args"],
        serde_json::json!(["sleep", "1000"])
    );
    assert_eq!(
        info["Spec"]["linux"]["cgroupsPath"],
        format!("/{ns}/labelled")
    );
    assert_eq!(info["SnapshotKey"], "labelled");
    assert_eq!(info["Snapshotter"], "overlayfs");
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "-f", "labelled"]);
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "labelled"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn run_uses_the_runtime_binary_it_is_given() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "wrapped");
    let log = daemon.dir().join("runc-calls.log");
    let wrapper = runc_wrapper(&daemon, &log);
    let out = run_ok(
        &daemon,
        &ns,
        &[
            "--rm",
            "--runc-binary",
            wrapper.to_str().unwrap(),
            BUSYBOX_NAME,
            "wrapped",
            "echo",
            "wrapped",
        ],
    );
    assert_eq!(out, "wrapped\n");
    // Every shim gone means the runtime's delete (run after the reply) is logged too.
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    for verb in ["create", "start", "delete"] {
        assert!(
            calls
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == verb) && l.ends_with("wrapped")),
            "no `{verb}` of the container in:\n{calls}"
        );
    }
}

#[test]
fn a_terminal_run_sees_a_tty_of_this_terminals_size() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "tty");
    let fifos = fifo_root_arg(&daemon);
    let (program, args) = terminal_command_line(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "-t",
            "--rm",
            "--fifo-dir",
            &fifos,
            BUSYBOX_NAME,
            "tty",
            "sh",
        ],
    );
    // `script` gives berthctl a terminal; set its size first so it can be checked inside.
    let line = std::iter::once(program)
        .chain(args)
        .map(|a| berth_tests::terminal::shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut session = TerminalSession::start(
        "sh",
        &["-c", &format!("stty cols 123 rows 45; exec {line}")],
    );
    let timeout = Duration::from_secs(60);
    let prompt = session
        .wait_for("# ", 0, timeout)
        .unwrap_or_else(|| panic!("no shell prompt; terminal showed {:?}", session.output()));
    session.type_text("test -t 0 && test -t 1 && echo tty-$((6*7)); stty size\n");
    let answered = session.wait_for("tty-42", prompt, timeout);
    assert!(answered.is_some(), "terminal showed {:?}", session.output());
    let sized = session.wait_for("45 123", prompt, timeout);
    assert!(sized.is_some(), "terminal showed {:?}", session.output());
    session.type_text("exit 5\n");
    let status = session.wait(timeout);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(5),
        "terminal showed {:?}",
        session.output()
    );
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn signals_sent_to_berthctl_reach_the_task() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "trap");
    let fifos = fifo_root_arg(&daemon);
    let mut cmd = berthctl_command(&daemon);
    cmd.args([
        "-n",
        &ns,
        "run",
        "--rm",
        "--fifo-dir",
        &fifos,
        BUSYBOX_NAME,
        "trap",
        "sh",
        "-c",
        "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    {
        use std::io::Read;
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("ready\n") {
            assert_eq!(stdout.read(&mut byte).unwrap(), 1, "output ended early");
            seen.push(byte[0]);
        }
    }
    wait_for_status(&daemon, &ns, "trap", "RUNNING");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "{status:?} (signal {:?})",
        status.signal()
    );
    let mut rest = String::new();
    {
        use std::io::Read;
        stdout.read_to_string(&mut rest).unwrap();
    }
    assert_eq!(rest, "got-term\n");
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn an_image_that_is_not_unpacked_is_unpacked_by_run() {
    let daemon = berth_tests::Daemon::start();
    let ns = berth_tests::unique_id("ns");
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "fresh");
    let archive = daemon.dir().join("busybox.tar");
    let image = berth_tests::fixtures::busybox_oci_archive(&archive, BUSYBOX_NAME).unwrap();
    berth_tests::ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "import",
            "--no-unpack",
            archive.to_str().unwrap(),
        ],
    );
    assert_eq!(snapshot_keys(&daemon, &ns), Vec::<String>::new());
    let out = run_ok(
        &daemon,
        &ns,
        &["--rm", BUSYBOX_NAME, "fresh", "echo", "unpacked"],
    );
    assert_eq!(out, "unpacked\n");
    assert_eq!(snapshot_keys(&daemon, &ns), image.chain_ids());
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}
