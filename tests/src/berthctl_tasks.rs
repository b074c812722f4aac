//! Containers and tasks driven through `berthctl` (run, containers, tasks), with the
//! helpers the `berthctl_run`, `berthctl_tasks` and `berthctl_containers` tests share.
//!
//! Stdio fifos go to `<daemon dir>/fifo` (`--fifo-dir`), so a test can check that none
//! is left behind and whatever a failing test leaves goes away with the daemon.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::berthctl::{berthctl, berthctl_binary, berthctl_ok};
use crate::cleanup::mounts_under;
use crate::daemon::Daemon;
use crate::processes::ProcessHandle;
use crate::tasks::{
    bundles_in_namespace, parse_tasks_ls, shim_pid, shim_processes, shim_sockets, RunningTask,
    TaskCleanup, TaskRow,
};

/// How long a state change (a kill, an exit, a shim leaving) may take to show.
pub const SETTLE: Duration = Duration::from_secs(20);

/// The directory berthctl is told to make stdio fifos in.
pub fn berthctl_fifo_root(daemon: &Daemon) -> PathBuf {
    daemon.dir().join("fifo")
}

/// [`berthctl_fifo_root`] as an argument.
pub fn fifo_root_arg(daemon: &Daemon) -> String {
    berthctl_fifo_root(daemon)
        .to_str()
        .expect("temp dirs are UTF-8")
        .to_string()
}

/// Everything left in the fifo directory (fifo directories berthctl made).
pub fn fifo_leftovers(daemon: &Daemon) -> Vec<PathBuf> {
    match std::fs::read_dir(berthctl_fifo_root(daemon)) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Inserts `--fifo-dir <daemon fifo dir>` after the command words of a `run`, `tasks
/// start` or `tasks exec` command line (`words` of them), so fifos stay in the test's
/// temp dir.
fn with_fifo_dir(daemon: &Daemon, args: &[&str], words: usize) -> Vec<String> {
    let mut full: Vec<String> = args[..words].iter().map(|s| s.to_string()).collect();
    full.push("--fifo-dir".into());
    full.push(fifo_root_arg(daemon));
    full.extend(args[words..].iter().map(|s| s.to_string()));
    full
}

/// `berthctl -n <ns> run --fifo-dir <dir> <args…>` with its output, whatever its status.
pub fn run(daemon: &Daemon, namespace: &str, args: &[&str]) -> Output {
    let mut full = vec!["-n".to_string(), namespace.to_string()];
    full.extend(with_fifo_dir(daemon, &[&["run"], args].concat(), 1));
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    berthctl(daemon, &refs)
}

/// [`run`], which must succeed; returns stdout.
pub fn run_ok(daemon: &Daemon, namespace: &str, args: &[&str]) -> String {
    let out = run(daemon, namespace, args);
    assert!(
        out.status.success(),
        "berthctl run {args:?} failed ({})\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        daemon.log_tail(30)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `berthctl -n <ns> tasks exec --fifo-dir <dir> --exec-id <exec_id> <id> <args…>`.
pub fn exec(daemon: &Daemon, namespace: &str, id: &str, exec_id: &str, args: &[&str]) -> Output {
    let mut full = vec![
        "-n".to_string(),
        namespace.to_string(),
        "tasks".into(),
        "exec".into(),
        "--fifo-dir".into(),
        fifo_root_arg(daemon),
        "--exec-id".into(),
        exec_id.into(),
        id.into(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    berthctl(daemon, &refs)
}

/// The rows of `berthctl -n <ns> tasks ls` (the same columns as ctr's).
pub fn tasks_ls(daemon: &Daemon, namespace: &str) -> Vec<TaskRow> {
    parse_tasks_ls(&berthctl_ok(daemon, &["-n", namespace, "tasks", "ls"]))
}

/// The `tasks ls` row of task `id`, if listed.
pub fn task_row(daemon: &Daemon, namespace: &str, id: &str) -> Option<TaskRow> {
    tasks_ls(daemon, namespace).into_iter().find(|t| t.id == id)
}

/// Polls `berthctl tasks ls` until task `id` shows `status`; panics after [`SETTLE`].
pub fn wait_for_status(daemon: &Daemon, namespace: &str, id: &str, status: &str) -> TaskRow {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let rows = tasks_ls(daemon, namespace);
        if let Some(row) = rows.iter().find(|r| r.id == id && r.status == status) {
            return row.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} never showed {status}; last listing: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The container ids of `berthctl -n <ns> containers ls -q`.
pub fn container_ids(daemon: &Daemon, namespace: &str) -> Vec<String> {
    berthctl_ok(daemon, &["-n", namespace, "containers", "ls", "-q"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The snapshot keys of `berthctl -n <ns> snapshots ls` (JSON, so no column guessing).
pub fn snapshot_keys(daemon: &Daemon, namespace: &str) -> Vec<String> {
    let json = crate::berthctl::berthctl_json(daemon, &["-n", namespace, "snapshots", "ls"]);
    json.as_array()
        .expect("snapshots ls prints an array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .map(str::to_string)
        .collect()
}

/// `berthctl run -d` with `flags`; checks the task is listed RUNNING and registers its
/// container, init and shim with `cleanup`.
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
    let mut argv = vec!["-d"];
    argv.extend_from_slice(flags);
    argv.push(image);
    argv.push(id);
    argv.extend_from_slice(args);
    let printed = run_ok(daemon, namespace, &argv);
    assert_eq!(printed, "", "run -d prints nothing");
    let row = task_row(daemon, namespace, id)
        .unwrap_or_else(|| panic!("`berthctl run -d` returned but task {id} is not listed"));
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

/// Asserts that `namespace` holds no container, task, snapshot but the image's layers
/// (`image_layers` committed snapshots), task bundle, fifo or mount, and that every shim
/// has gone.
pub fn assert_nothing_left(daemon: &Daemon, namespace: &str, image_layers: usize) {
    assert_eq!(container_ids(daemon, namespace), Vec::<String>::new());
    assert_eq!(tasks_ls(daemon, namespace), Vec::new());
    let snapshots = snapshot_keys(daemon, namespace);
    assert!(
        snapshots.iter().all(|k| k.starts_with("sha256:")) && snapshots.len() == image_layers,
        "snapshots left: {snapshots:?}"
    );
    crate::steps::wait_until(SETTLE, "every shim has exited", || {
        shim_processes(daemon).is_empty()
    });
    assert_eq!(
        bundles_in_namespace(daemon, namespace),
        Vec::<String>::new()
    );
    assert_eq!(shim_sockets(daemon), Vec::<PathBuf>::new());
    assert_eq!(fifo_leftovers(daemon), Vec::<PathBuf>::new(), "fifos left");
    let mounts = mounts_under(daemon.dir());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    let views: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("berthctl-rootfs-"))
                .collect()
        })
        .unwrap_or_default();
    // Other tests run at the same time and may be mounting a view right now; only a
    // mounted one would be a leak, and `mounts_under` on the temp dir finds those.
    let mounted_views: Vec<_> = views
        .iter()
        .filter(|n| !mounts_under(&std::env::temp_dir().join(n)).is_empty())
        .collect();
    assert!(
        mounted_views.is_empty(),
        "image views left mounted: {mounted_views:?}"
    );
}

/// The berthctl command line `berthctl --address <socket> <args…>` as program and
/// arguments, for running under a terminal ([`crate::terminal::TerminalSession`]).
pub fn terminal_command_line(daemon: &Daemon, args: &[&str]) -> (String, Vec<String>) {
    let program = berthctl_binary()
        .to_str()
        .expect("binary paths are UTF-8")
        .to_string();
    let mut full = vec![
        "--address".to_string(),
        daemon
            .socket()
            .to_str()
            .expect("socket paths are UTF-8")
            .to_string(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    (program, full)
}

/// Writes an executable wrapper around runc that appends each call's arguments to
/// `log`, and returns its path.
pub fn runc_wrapper(daemon: &Daemon, log: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let runc = Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .expect("running sh");
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
    .expect("writing the runc wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("making the wrapper executable");
    wrapper
}

/// `/etc/passwd` of the image [`import_users_image`] builds.
pub const USERS_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";

/// `/etc/group` of that image: `app` is also in `audio` (29) and `video` (44).
pub const USERS_GROUP: &str = "root:x:0:\napp:x:1000:\naudio:x:29:app\nvideo:x:44:root,app\n";

/// Name the image with users is imported under.
pub const USERS_IMAGE: &str = "localhost/busybox-users:1";

/// Builds a two-layer image (busybox, then a layer replacing `/etc/passwd` and
/// `/etc/group` with [`USERS_PASSWD`] and [`USERS_GROUP`]) and imports (and unpacks) it
/// into `namespace` as [`USERS_IMAGE`] with ctr.
pub fn import_users_image(daemon: &Daemon, namespace: &str) {
    use crate::fixtures::oci::{write_oci_archive, ImageConfig, LayerBlob};
    use crate::fixtures::tar_writer::TarBuilder;
    let base = LayerBlob::gzip(
        &crate::fixtures::busybox::busybox_layer_tar().expect("reading the host's busybox"),
    );
    let mut users = TarBuilder::new();
    users
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, USERS_PASSWD.as_bytes())
        .file("etc/group", 0o644, USERS_GROUP.as_bytes());
    let users = LayerBlob::gzip(&users.finish());
    let archive = daemon.dir().join(format!("users-{namespace}.tar"));
    write_oci_archive(
        &archive,
        USERS_IMAGE,
        vec![base, users],
        &ImageConfig::default(),
    )
    .expect("writing the users image");
    crate::steps::import_archive(daemon, namespace, &archive);
}
