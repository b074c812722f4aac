//! Crash safety: kill -9 the daemon in the middle of a large import, start it again,
//! and check that no record points at missing data, that the import then succeeds, and
//! that after garbage collection disk and records agree exactly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_tests::ctr::ctr_command;
use berth_tests::fixtures::large::{large_archive, large_layer_file, pseudo_random_bytes};
use berth_tests::snapshot_mount::{mount_target, mount_with_bin_mount, parse_printed_mounts};
use berth_tests::steps::{
    content_digests, import_archive, import_busybox, namespace_names, pinned_snapshot, scratch_dir,
    snapshots_ls, wait_until, BUSYBOX_NAME,
};
use berth_tests::{ctr_ok, unique_id, Daemon};

const LAYERS: usize = 6;
const LAYER_SIZE: usize = 16 << 20;
const NAME: &str = "localhost/large:1";

/// Asserts that every content record has its blob on disk and that there are at least
/// as many snapshot directories as listed snapshots, in every namespace.
fn assert_no_dangling_records(daemon: &Daemon) {
    let on_disk = daemon.blobs_on_disk();
    let mut listed_snapshots = 0;
    for ns in namespace_names(daemon) {
        for digest in content_digests(daemon, &ns) {
            assert!(
                on_disk.contains(&digest),
                "{ns}: record {digest} has no blob on disk"
            );
        }
        listed_snapshots += snapshots_ls(daemon, &ns).len();
    }
    let dirs = daemon.snapshot_dirs_on_disk().len();
    assert!(
        listed_snapshots <= dirs,
        "{listed_snapshots} snapshots listed, {dirs} on disk"
    );
}

/// Everything listed in every namespace, blobs and snapshots, as `(blobs, snapshots)`.
fn everything_listed(daemon: &Daemon) -> (std::collections::BTreeSet<String>, usize) {
    let mut blobs = std::collections::BTreeSet::new();
    let mut snapshots = 0;
    for ns in namespace_names(daemon) {
        blobs.extend(content_digests(daemon, &ns));
        snapshots += snapshots_ls(daemon, &ns).len();
    }
    (blobs, snapshots)
}

#[test]
fn kill9_mid_import_then_restart_leaves_consistent_storage() {
    let mut daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let archive = daemon.dir().join("large.tar");
    let image = large_archive(&archive, NAME, LAYERS, LAYER_SIZE).unwrap();

    // Start the import and kill the daemon once the first blob has landed on disk.
    let mut import = ctr_command(&daemon)
        .args(["-n", &ns, "images", "import", archive.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while daemon.blobs_on_disk().is_empty() {
        assert!(
            import.try_wait().unwrap().is_none(),
            "the import ended before any blob landed"
        );
        assert!(
            Instant::now() < deadline,
            "no blob landed within two minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    daemon.kill9();
    let interrupted = import.wait().unwrap();
    assert!(
        !interrupted.success(),
        "the import finished before the kill"
    );

    daemon.restart();
    assert_no_dangling_records(&daemon);

    // The import now succeeds and the image is whole.
    import_archive(&daemon, &ns, &archive);
    let check = ctr_ok(&daemon, &["-n", &ns, "images", "check"]);
    assert!(check.contains("complete"), "{check}");
    let top = image.chain_ids().pop().unwrap();
    pinned_snapshot(&daemon, &ns, "view", "after-crash", Some(&top));
    let target = mount_target(&scratch_dir(&daemon, "mnt"), "view");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            "after-crash",
        ],
    );
    let guard =
        mount_with_bin_mount(&parse_printed_mounts(&printed)).unwrap_or_else(|e| panic!("{e}"));
    for index in 0..LAYERS {
        let data = std::fs::read(target.join(large_layer_file(index))).unwrap();
        assert!(
            data == pseudo_random_bytes(index as u64, LAYER_SIZE),
            "layer {index} differs"
        );
    }
    drop(guard);
    ctr_ok(&daemon, &["-n", &ns, "snapshots", "rm", "after-crash"]);

    // After a collection (set off by removing a throw-away image), records and disk
    // agree exactly: nothing dangling, nothing orphaned.
    let trigger = unique_id("gc");
    ctr_ok(&daemon, &["namespaces", "create", &trigger]);
    import_busybox(&daemon, &trigger);
    ctr_ok(
        &daemon,
        &["-n", &trigger, "images", "rm", "--sync", BUSYBOX_NAME],
    );
    assert_no_dangling_records(&daemon);
    wait_until(
        Duration::from_secs(30),
        "blobs and snapshot dirs match the records",
        || {
            let (blobs, snapshots) = everything_listed(&daemon);
            daemon.blobs_on_disk() == blobs && daemon.snapshot_dirs_on_disk().len() == snapshots
        },
    );
    assert!(content_digests(&daemon, &ns).is_superset(&image.blobs.keys().cloned().collect()));

    // Drop the image and every lease (the killed import's included): GC leaves nothing.
    ctr_ok(&daemon, &["-n", &ns, "images", "rm", "--sync", NAME]);
    for ns in namespace_names(&daemon) {
        let leases = ctr_ok(&daemon, &["-n", &ns, "leases", "ls", "-q"]);
        for lease in leases.split_whitespace() {
            ctr_ok(&daemon, &["-n", &ns, "leases", "rm", "--sync", lease]);
        }
    }
    wait_until(
        Duration::from_secs(30),
        "GC removed every blob and snapshot",
        || {
            let (blobs, snapshots) = everything_listed(&daemon);
            blobs.is_empty()
                && snapshots == 0
                && daemon.blobs_on_disk().is_empty()
                && daemon.snapshot_dirs_on_disk().is_empty()
        },
    );
}
