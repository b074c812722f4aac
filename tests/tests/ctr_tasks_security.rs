//! Security defaults of a running task: PID 1 has no inheritable capabilities
//! (CVE-2022-24769) and holds nothing but its stdio (CVE-2024-21626); the daemon's and
//! the shim's own fds are close-on-exec; task state is private (CVE-2021-41103); no
//! abstract unix sockets (CVE-2020-15257); the runtime's state stays inside the daemon's
//! state directory.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use berth_tests::processes::{abstract_socket_names, open_fds, socket_inodes, status_field};
use berth_tests::steps::BUSYBOX_NAME;
use berth_tests::tasks::{daemon_with_busybox, exec, run_detached, TaskCleanup};
use berth_tests::unique_id;

/// `O_CLOEXEC` as `/proc/<pid>/fdinfo/<fd>` prints it (octal `flags:`).
const O_CLOEXEC_OCTAL: u32 = 0o2000000;

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The fds of `pid` above 2 that are not close-on-exec, with what they point at.
fn inheritable_fds(pid: u32) -> Vec<String> {
    open_fds(pid)
        .unwrap_or_default()
        .into_iter()
        .filter(|fd| *fd > 2)
        .filter_map(|fd| {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())?;
            if flags & O_CLOEXEC_OCTAL != 0 {
                return None;
            }
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            Some(format!("fd {fd} -> {}", target.display()))
        })
        .collect()
}

#[test]
fn pid1_has_no_inheritable_capabilities_and_holds_only_its_stdio() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        "caps",
        &["sleep", "1000"],
    );
    let pid = task.init.pid;
    assert_eq!(
        status_field(pid, "CapInh").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(
        status_field(pid, "CapAmb").as_deref(),
        Some("0000000000000000")
    );
    // It still has the default bounding set, so the zero above is not vacuous.
    assert_ne!(
        status_field(pid, "CapBnd").as_deref(),
        Some("0000000000000000")
    );

    let out = exec(&daemon, &ns, "caps", "fds", &["ls", "/proc/1/fd"]);
    assert!(out.status.success(), "{out:?}");
    let inside: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(inside, vec!["0", "1", "2"]);
    assert_eq!(open_fds(pid).unwrap(), BTreeSet::from([0, 1, 2]));

    // What the daemon and the shim hold open never leaks into what they exec.
    let daemon_pid = daemon.pid().expect("the daemon runs");
    assert_eq!(inheritable_fds(daemon_pid), Vec::<String>::new(), "daemon");
    assert_eq!(inheritable_fds(task.shim.pid), Vec::<String>::new(), "shim");
}

#[test]
fn task_state_is_private_and_sockets_are_never_abstract() {
    let (daemon, ns) = daemon_with_busybox();
    let mut cleanup = TaskCleanup::new(&daemon);
    // Unique, since the runtime's default root would be shared with the whole host.
    let id = unique_id("private");
    let task = run_detached(
        &daemon,
        &mut cleanup,
        &ns,
        &[],
        BUSYBOX_NAME,
        &id,
        &["sleep", "1000"],
    );
    let bundle = daemon.task_bundle(&ns, &id);
    assert_eq!(mode(&daemon.task_bundles_root()), 0o711);
    assert_eq!(mode(&daemon.task_bundles_root().join(&ns)), 0o711);
    assert_eq!(mode(&bundle), 0o700);

    for pid in [daemon.pid().expect("the daemon runs"), task.shim.pid] {
        let names = abstract_socket_names(&socket_inodes(pid));
        assert!(
            names.is_empty(),
            "pid {pid} holds abstract sockets {names:?}"
        );
    }

    if !daemon.kind().is_berthd() {
        return;
    }
    // berthd's shim socket: named in the bundle, 0600 in a 0700 dir inside --state.
    let address = std::fs::read_to_string(bundle.join("address")).unwrap();
    let socket = Path::new(address.trim().trim_start_matches("unix://"));
    assert!(socket.starts_with(daemon.state()), "shim socket {socket:?}");
    let meta = std::fs::metadata(socket).unwrap();
    assert!(meta.file_type().is_socket(), "{socket:?} is not a socket");
    assert_eq!(mode(socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    // runc's own state for the task is under berthd's --state too, and nowhere global.
    let runtime_root = daemon.runtime_root(&ns);
    assert!(runtime_root.starts_with(daemon.state()));
    assert!(
        runtime_root.join(&id).join("state.json").is_file(),
        "no runc state under {}",
        runtime_root.display()
    );
    assert!(!Path::new("/run/containerd/runc").join(&ns).exists());
    assert!(!Path::new("/run/runc").join(&id).exists());
}
