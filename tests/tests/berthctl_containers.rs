//! `berthctl containers …` (create, ls, info, label, rm) and bad input to `run`: each a
//! clear one-line error that leaves no container, snapshot, task, fifo or mount behind,
//! and none making berthctl hang.

use std::time::Duration;

use berth_tests::berthctl::{
    berthctl_command, berthctl_error, berthctl_json, berthctl_ok, table_cells,
};
use berth_tests::berthctl_tasks::{
    assert_nothing_left, container_ids, fifo_root_arg, run_detached, snapshot_keys, tasks_ls,
};
use berth_tests::ctr::run_with_timeout;
use berth_tests::fixtures::busybox_oci_archive_with_config;
use berth_tests::fixtures::oci::ImageConfig;
use berth_tests::steps::{import_archive, BUSYBOX_NAME};
use berth_tests::tasks::{daemon_with_busybox, TaskCleanup};
use berth_tests::Daemon;

const BUSYBOX_LAYERS: usize = 1;

/// How long a failing berthctl command may take before the test calls it a hang.
const NO_HANG: Duration = Duration::from_secs(60);

/// Runs berthctl (stdio fifos in the daemon's dir) and fails the test if it does not
/// return within [`NO_HANG`].
fn berthctl_without_hanging(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    let mut cmd = berthctl_command(daemon);
    cmd.args(args);
    run_with_timeout(cmd, NO_HANG).unwrap_or_else(|partial| {
        panic!(
            "berthctl {args:?} hung for {NO_HANG:?}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&partial.stdout),
            String::from_utf8_lossy(&partial.stderr),
            daemon.log_tail(30)
        )
    })
}

#[test]
fn containers_are_created_listed_labelled_shown_and_removed() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "c1");
    cleanup.track(&ns, "c2");
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "containers",
            "create",
            "--label",
            "a=1",
            "--env",
            "X=y",
            BUSYBOX_NAME,
            "c1",
            "sleep",
            "100",
        ],
    );
    berthctl_ok(
        &daemon,
        &["-n", &ns, "c", "create", "-t", BUSYBOX_NAME, "c2"],
    );
    let table = berthctl_ok(&daemon, &["-n", &ns, "containers", "ls"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["CONTAINER", "IMAGE", "RUNTIME"]
    );
    assert_eq!(
        table_cells(&table),
        vec![
            vec!["c1", BUSYBOX_NAME, "io.containerd.runc.v2"],
            vec!["c2", BUSYBOX_NAME, "io.containerd.runc.v2"],
        ]
    );
    assert_eq!(container_ids(&daemon, &ns), ["c1", "c2"]);
    // No task yet, but a snapshot each on the image's top layer.
    assert_eq!(tasks_ls(&daemon, &ns), Vec::new());
    let keys = snapshot_keys(&daemon, &ns);
    assert!(
        keys.contains(&"c1".to_string()) && keys.contains(&"c2".to_string()),
        "{keys:?}"
    );

    let info: serde_json::Value = serde_json::from_str(&berthctl_ok(
        &daemon,
        &["-n", &ns, "containers", "info", "c1"],
    ))
    .unwrap();
    assert_eq!(info["ID"], "c1");
    assert_eq!(info["Image"], BUSYBOX_NAME);
    assert_eq!(info["Labels"]["a"], "1");
    assert_eq!(
        info["Spec"]["process"]["args"],
        serde_json::json!(["sleep", "100"])
    );
    assert!(info["Spec"]["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("X=y")));
    let spec: serde_json::Value = serde_json::from_str(&berthctl_ok(
        &daemon,
        &["-n", &ns, "containers", "info", "--spec", "c2"],
    ))
    .unwrap();
    assert_eq!(spec["process"]["terminal"], true);
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));

    // label: set one, clear one.
    berthctl_ok(
        &daemon,
        &["-n", &ns, "containers", "label", "c1", "b=2", "a="],
    );
    let listed = berthctl_json(&daemon, &["-n", &ns, "containers", "ls"]);
    let c1 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "c1")
        .unwrap();
    assert_eq!(c1["labels"], serde_json::json!({"b": "2"}));

    // A filter picks by label, as ctr's do.
    let filtered = berthctl_ok(
        &daemon,
        &["-n", &ns, "containers", "ls", "-q", "labels.b==2"],
    );
    assert_eq!(filtered, "c1\n");

    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "c1", "c2"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn an_unknown_image_is_a_clear_error_and_leaves_nothing() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "ghost");
    let fifos = fifo_root_arg(&daemon);
    let message = berthctl_error(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            "--fifo-dir",
            &fifos,
            "localhost/no-such-image:1",
            "ghost",
            "true",
        ],
    );
    assert!(
        message.contains("localhost/no-such-image:1") && message.contains("not found"),
        "{message}"
    );
    let message = berthctl_error(
        &daemon,
        &[
            "-n",
            &ns,
            "containers",
            "create",
            "localhost/no-such-image:1",
            "ghost",
        ],
    );
    assert!(message.contains("not found"), "{message}");
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn a_duplicate_id_is_refused_and_the_first_container_is_untouched() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let first = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "twice",
        &["sleep", "1000"],
    );
    let fifos = fifo_root_arg(&daemon);
    let message = berthctl_error(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            "--fifo-dir",
            &fifos,
            BUSYBOX_NAME,
            "twice",
            "echo",
            "no",
        ],
    );
    assert!(
        message.contains("twice") && message.contains("already exists"),
        "{message}"
    );
    assert!(first.init.is_alive());
    assert_eq!(container_ids(&daemon, &ns), ["twice"]);
    let info = berthctl_ok(
        &daemon,
        &["-n", &ns, "containers", "info", "--spec", "twice"],
    );
    assert!(info.contains("\"sleep\""), "{info}");
    berthctl_ok(&daemon, &["-n", &ns, "tasks", "rm", "-f", "twice"]);
    berthctl_ok(&daemon, &["-n", &ns, "containers", "rm", "twice"]);
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn a_missing_entrypoint_fails_without_hanging_and_leaves_nothing() {
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
    let layers = snapshot_keys(&daemon, &ns).len();
    let fifos = fifo_root_arg(&daemon);
    for (id, mode) in [("broken1", "--rm"), ("broken2", "-d"), ("broken3", "-t")] {
        cleanup.track(&ns, id);
        let out = berthctl_without_hanging(
            &daemon,
            &["-n", &ns, "run", mode, "--fifo-dir", &fifos, image, id],
        );
        assert_eq!(out.status.code(), Some(1), "{mode}: {out:?}");
        // The runtime's own words may come first, through the task's stderr; berthctl's
        // error is the last line.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("berthctl: ") && last.contains("/no/such/entrypoint"),
            "{mode}: {stderr}"
        );
        assert_nothing_left(&daemon, &ns, layers);
    }
}

#[test]
fn a_missing_runtime_binary_is_a_clear_error_and_leaves_nothing() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    cleanup.track(&ns, "noruntime");
    let fifos = fifo_root_arg(&daemon);
    let out = berthctl_without_hanging(
        &daemon,
        &[
            "-n",
            &ns,
            "run",
            "--rm",
            "--fifo-dir",
            &fifos,
            "--runc-binary",
            "/nonexistent/runc",
            BUSYBOX_NAME,
            "noruntime",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/runc"),
        "{out:?}"
    );
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}

#[test]
fn bad_flags_are_usage_errors_that_touch_nothing() {
    let (daemon, ns) = daemon_with_busybox();
    for args in [
        vec!["run", "--rm", "-d", BUSYBOX_NAME, "x", "true"],
        vec!["run", "--memory", "lots", BUSYBOX_NAME, "x", "true"],
        vec!["run", "--mount", "src=/tmp", BUSYBOX_NAME, "x", "true"],
        vec!["tasks", "kill", "-s", "SIGNOPE", "x"],
    ] {
        let mut full = vec!["-n", ns.as_str()];
        full.extend(args.iter().copied());
        let out = berthctl_without_hanging(&daemon, &full);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    assert_nothing_left(&daemon, &ns, BUSYBOX_LAYERS);
}
