//! `ctr snapshots prepare/mounts/commit/view/usage/rm`, with every mount performed.

use berth_tests::ctr::{parse_human_size, table_rows};
use berth_tests::snapshot_mount::{
    mount_target, mount_with_bin_mount, parse_printed_mounts, MountGuard,
};
use berth_tests::steps::{pinned_snapshot, scratch_dir, snapshots_ls, SnapshotRow};
use berth_tests::{ctr_fails, ctr_ok, unique_id, Daemon};

/// Mounts snapshot `key` of `ns` at `<scratch>/<name>` by running what ctr prints.
fn mount_key(daemon: &Daemon, ns: &str, key: &str, name: &str) -> (std::path::PathBuf, MountGuard) {
    let target = mount_target(&scratch_dir(daemon, "mnt"), name);
    let printed = ctr_ok(
        daemon,
        &[
            "-n",
            ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            key,
        ],
    );
    let mounts = parse_printed_mounts(&printed);
    assert!(!mounts.is_empty(), "no mounts printed for {key}");
    let guard = mount_with_bin_mount(&mounts).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    (target, guard)
}

/// `(bytes, inodes)` from `ctr snapshots usage <key>`.
fn usage(daemon: &Daemon, ns: &str, key: &str) -> (f64, u64) {
    let rows = table_rows(&ctr_ok(daemon, &["-n", ns, "snapshots", "usage", key]));
    match rows.as_slice() {
        [row] if row.len() == 4 && row[0] == key => (
            parse_human_size(&row[1], &row[2]).unwrap_or_else(|| panic!("size in {row:?}")),
            row[3]
                .parse()
                .unwrap_or_else(|_| panic!("inodes in {row:?}")),
        ),
        _ => panic!("unexpected usage output {rows:?}"),
    }
}

fn row(key: &str, parent: Option<&str>, kind: &str) -> SnapshotRow {
    SnapshotRow {
        key: key.to_string(),
        parent: parent.map(str::to_string),
        kind: kind.to_string(),
    }
}

#[test]
fn snapshot_lifecycle_with_real_mounts() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);

    // A snapshot without a parent is an empty directory, bind-mounted read-write.
    pinned_snapshot(&daemon, &ns, "prepare", "base-work", None);
    let (target, guard) = mount_key(&daemon, &ns, "base-work", "base");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    std::fs::create_dir(target.join("etc")).unwrap();
    std::fs::write(target.join("etc/hello"), vec![b'h'; 10_000]).unwrap();
    drop(guard);
    let (bytes, inodes) = usage(&daemon, &ns, "base-work");
    assert!(bytes >= 10_000.0, "usage {bytes} below what was written");
    assert!(inodes >= 2, "usage counts {inodes} inodes");

    ctr_ok(
        &daemon,
        &["-n", &ns, "snapshots", "commit", "base", "base-work"],
    );
    assert_eq!(
        snapshots_ls(&daemon, &ns),
        vec![row("base", None, "Committed")]
    );
    let (bytes, _) = usage(&daemon, &ns, "base");
    assert!(bytes >= 10_000.0);

    // A view shows the committed files, read-only.
    pinned_snapshot(&daemon, &ns, "view", "base-view", Some("base"));
    let (target, guard) = mount_key(&daemon, &ns, "base-view", "view");
    assert_eq!(
        std::fs::read(target.join("etc/hello")).unwrap(),
        vec![b'h'; 10_000]
    );
    assert!(
        std::fs::write(target.join("etc/new"), "x").is_err(),
        "view is writable"
    );
    drop(guard);

    // A child sees its parent and keeps its own changes to itself.
    pinned_snapshot(&daemon, &ns, "prepare", "child-work", Some("base"));
    let (target, guard) = mount_key(&daemon, &ns, "child-work", "child");
    assert_eq!(
        std::fs::read(target.join("etc/hello")).unwrap().len(),
        10_000
    );
    std::fs::write(target.join("etc/child"), "child\n").unwrap();
    std::fs::remove_file(target.join("etc/hello")).unwrap();
    drop(guard);
    ctr_ok(
        &daemon,
        &["-n", &ns, "snapshots", "commit", "child", "child-work"],
    );
    pinned_snapshot(&daemon, &ns, "view", "child-view", Some("child"));
    let (target, guard) = mount_key(&daemon, &ns, "child-view", "child-view");
    assert_eq!(
        std::fs::read_to_string(target.join("etc/child")).unwrap(),
        "child\n"
    );
    assert!(
        !target.join("etc/hello").exists(),
        "deletion did not carry over"
    );
    drop(guard);
    let (target, guard) = mount_key(&daemon, &ns, "base-view", "view-again");
    assert!(target.join("etc/hello").exists(), "the parent changed");
    assert!(
        !target.join("etc/child").exists(),
        "the child leaked into its parent"
    );
    drop(guard);

    let mut listed = snapshots_ls(&daemon, &ns);
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        listed,
        vec![
            row("base", None, "Committed"),
            row("base-view", Some("base"), "View"),
            row("child", Some("base"), "Committed"),
            row("child-view", Some("child"), "View"),
        ]
    );

    // A parent cannot go while children depend on it; leaves first works.
    ctr_fails(&daemon, &["-n", &ns, "snapshots", "rm", "base"]);
    for key in ["child-view", "child", "base-view", "base"] {
        ctr_ok(&daemon, &["-n", &ns, "snapshots", "rm", key]);
    }
    assert!(snapshots_ls(&daemon, &ns).is_empty());
    ctr_fails(&daemon, &["-n", &ns, "snapshots", "rm", "base"]);
}

#[test]
fn committing_or_preparing_with_bad_references_fails_and_changes_nothing() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    pinned_snapshot(&daemon, &ns, "prepare", "work", None);

    ctr_fails(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "prepare",
            "orphan",
            "no-such-parent",
        ],
    );
    ctr_fails(&daemon, &["-n", &ns, "snapshots", "prepare", "work"]);
    ctr_fails(
        &daemon,
        &["-n", &ns, "snapshots", "commit", "done", "no-such-key"],
    );
    ctr_fails(
        &daemon,
        &["-n", &ns, "snapshots", "mounts", "/tmp", "no-such-key"],
    );
    assert_eq!(
        snapshots_ls(&daemon, &ns),
        vec![row("work", None, "Active")]
    );
    assert_eq!(daemon.snapshot_dirs_on_disk().len(), 1);

    // Another namespace sees none of it.
    let other = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &other]);
    assert!(snapshots_ls(&daemon, &other).is_empty());
    ctr_fails(
        &daemon,
        &["-n", &other, "snapshots", "commit", "done", "work"],
    );
}
