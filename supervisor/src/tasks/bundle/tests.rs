//! Bundles on a real file system: modes, exact spec bytes, real mounts removed.

use std::os::unix::fs::MetadataExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// True if something is mounted exactly at `path`.
fn is_mount_point(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let wanted = std::fs::canonicalize(path).unwrap();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(point) == wanted)
}

#[test]
fn a_new_bundle_is_private_and_holds_the_spec_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("state"));
    let bundle = layout.bundle("default", "t1");
    let spec = b"{\"ociVersion\": \"1.0.2\",\n  \"process\": {}}";
    create_bundle(&bundle, spec).unwrap();

    assert_eq!(bundle, dir.path().join("state/tasks/default/t1"));
    assert_eq!(mode(&bundle), 0o700);
    assert_eq!(mode(&layout.tasks_root()), 0o711);
    assert_eq!(mode(&layout.tasks_root().join("default")), 0o711);
    assert_eq!(mode(&bundle.join(ROOTFS_DIR)), 0o711);
    assert_eq!(mode(&bundle.join(CONFIG_FILE)), 0o600);
    assert_eq!(std::fs::read(bundle.join(CONFIG_FILE)).unwrap(), spec);
    assert!(std::fs::read_dir(bundle.join(ROOTFS_DIR))
        .unwrap()
        .next()
        .is_none());
    assert!(!bundle.join("config.tmp").exists());
}

#[test]
fn a_bundle_is_never_made_over_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = Layout::new(dir.path().to_path_buf()).bundle("default", "t1");
    create_bundle(&bundle, b"{}").unwrap();
    let err = create_bundle(&bundle, b"{\"other\":1}").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(bundle.join(CONFIG_FILE)).unwrap(), b"{}");
}

#[test]
fn runtime_root_and_socket_stay_under_the_state_dir() {
    let layout = Layout::new(PathBuf::from("/run/b1"));
    assert_eq!(
        layout.runtime_root("ns1"),
        PathBuf::from("/run/b1/runc/ns1")
    );
    let socket = layout.socket("ns1", "t1");
    assert!(socket.starts_with("/run/b1/s/"), "{}", socket.display());
    assert_ne!(
        socket,
        Layout::new(PathBuf::from("/run/b2")).socket("ns1", "t1")
    );
}

#[test]
fn the_socket_dir_is_0700() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("state"));
    layout.ensure_socket_dir().unwrap();
    assert_eq!(mode(&dir.path().join("state/s")), 0o700);
}

#[test]
fn address_and_shim_pid_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(read_address(dir.path()), None);
    write_address(dir.path(), Path::new("/run/berth/s/0123.sock")).unwrap();
    assert_eq!(
        read_address(dir.path()),
        Some(PathBuf::from("/run/berth/s/0123.sock"))
    );
    assert_eq!(mode(&dir.path().join(ADDRESS_FILE)), 0o600);

    assert_eq!(read_shim_pid(dir.path()), None);
    std::fs::write(dir.path().join(SHIM_PID_FILE), "4242\n").unwrap();
    assert_eq!(read_shim_pid(dir.path()), Some(4242));
    std::fs::write(dir.path().join(SHIM_PID_FILE), "garbage").unwrap();
    assert_eq!(read_shim_pid(dir.path()), None);
}

#[test]
fn remove_bundle_unmounts_the_rootfs_first() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = Layout::new(dir.path().to_path_buf()).bundle("default", "t1");
    create_bundle(&bundle, b"{}").unwrap();
    let rootfs = bundle.join(ROOTFS_DIR);
    rustix::mount::mount(
        "tmpfs",
        &rootfs,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mounting a tmpfs (tests run as root)");
    // Should the test fail before removal, do not leave the mount behind.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = berth_snapshot::mount::unmount_all(&self.0);
        }
    }
    let _guard = Unmount(rootfs.clone());
    std::fs::write(rootfs.join("inside"), "x").unwrap();
    assert!(is_mount_point(&rootfs));

    remove_bundle(&bundle).unwrap();
    assert!(!bundle.exists());
    // Removing it again is fine.
    remove_bundle(&bundle).unwrap();
}

#[test]
fn scan_finds_bundles_and_skips_what_berthd_never_made() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().to_path_buf());
    assert!(scan(&layout.tasks_root()).unwrap().is_empty());
    for (ns, id) in [("default", "b"), ("default", "a"), ("other", "c")] {
        create_bundle(&layout.bundle(ns, id), b"{}").unwrap();
    }
    std::fs::create_dir(layout.tasks_root().join("default/.hidden")).unwrap();
    std::fs::write(layout.tasks_root().join("default/file"), "").unwrap();
    std::fs::create_dir(layout.tasks_root().join("bad..ns")).unwrap();

    let found = scan(&layout.tasks_root()).unwrap();
    let names: Vec<(&str, &str)> = found
        .iter()
        .map(|b| (b.namespace.as_str(), b.id.as_str()))
        .collect();
    assert_eq!(names, [("default", "a"), ("default", "b"), ("other", "c")]);
    assert_eq!(found[0].path, layout.bundle("default", "a"));
}
