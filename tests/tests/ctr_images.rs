//! `ctr images import` of the busybox image, then everything that lists, checks, reads
//! and mounts what it stored, and garbage collection after `images rm`.

use std::time::Duration;

use berth_tests::ctr::{format_image_size, table_rows};
use berth_tests::fixtures::busybox::busybox_tree_problems;
use berth_tests::fixtures::oci::MEDIA_TYPE_MANIFEST;
use berth_tests::snapshot_mount::{mount_target, mount_with_bin_mount, parse_printed_mounts};
use berth_tests::steps::{
    content_digests, image_names, import_busybox, pinned_snapshot, scratch_dir, snapshots_ls,
    wait_until, BUSYBOX_NAME,
};
use berth_tests::{ctr, ctr_ok, unique_id, Daemon};

#[test]
fn imported_busybox_is_listed_checked_and_readable() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);

    // images ls: name, media type, digest, size.
    let rows = table_rows(&ctr_ok(&daemon, &["-n", &ns, "images", "ls"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row[0], BUSYBOX_NAME);
    assert_eq!(row[1], MEDIA_TYPE_MANIFEST);
    assert_eq!(row[2], image.manifest_digest);
    assert_eq!(
        format!("{} {}", row[3], row[4]),
        format_image_size(image.total_size())
    );
    assert_eq!(row[5], "linux/amd64");

    // images check: everything is there and it is unpacked.
    let check = ctr_ok(&daemon, &["-n", &ns, "images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with(BUSYBOX_NAME))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(line.contains("complete"), "{check}");
    assert!(line.trim_end().ends_with("true"), "not unpacked: {check}");

    // content ls lists exactly the image's blobs; content get returns their bytes.
    // (The import's own temporary blobs, held by its lease, are collected once the
    // lease is gone; give that collection a moment.)
    let expected: std::collections::BTreeSet<String> = image.blobs.keys().cloned().collect();
    assert!(content_digests(&daemon, &ns).is_superset(&expected));
    wait_until(
        Duration::from_secs(20),
        "content ls lists exactly the image's blobs",
        || content_digests(&daemon, &ns) == expected,
    );
    for (digest, bytes) in &image.blobs {
        let out = ctr(&daemon, &["-n", &ns, "content", "get", digest]);
        assert!(
            out.status.success(),
            "content get {digest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == *bytes,
            "content get {digest} returned other bytes"
        );
    }

    // snapshots ls: the layer was committed under its chain ID.
    let snapshots = snapshots_ls(&daemon, &ns);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0].key, image.chain_ids()[0]);
    assert_eq!(snapshots[0].parent, None);
    assert_eq!(snapshots[0].kind, "Committed");
    assert!(daemon.blobs_on_disk().is_superset(&expected));
}

#[test]
fn mounting_what_snapshots_mounts_prints_shows_busybox() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    let top = image.chain_ids().pop().unwrap();
    let scratch = scratch_dir(&daemon, "mnt");

    // A read-only view.
    pinned_snapshot(&daemon, &ns, "view", "bb-view", Some(&top));
    let target = mount_target(&scratch, "view");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            "bb-view",
        ],
    );
    let guard = mount_with_bin_mount(&parse_printed_mounts(&printed))
        .unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(busybox_tree_problems(&target), Vec::<String>::new());
    assert!(
        std::fs::write(target.join("tmp/new"), "x").is_err(),
        "a view is writable"
    );
    drop(guard);

    // A writable snapshot on top of the image.
    pinned_snapshot(&daemon, &ns, "prepare", "bb-rw", Some(&top));
    let target = mount_target(&scratch, "rw");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            "bb-rw",
        ],
    );
    let guard = mount_with_bin_mount(&parse_printed_mounts(&printed))
        .unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(busybox_tree_problems(&target), Vec::<String>::new());
    std::fs::write(target.join("tmp/new"), "written").unwrap();
    std::fs::remove_file(target.join("bin/ls")).unwrap();
    drop(guard);

    // Changes went into the active snapshot, not the image's layer.
    let again = mount_target(&scratch, "view-again");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            again.to_str().unwrap(),
            "bb-view",
        ],
    );
    let _guard = mount_with_bin_mount(&parse_printed_mounts(&printed)).unwrap();
    assert_eq!(busybox_tree_problems(&again), Vec::<String>::new());
    assert!(!again.join("tmp/new").exists());
}

#[test]
fn removing_an_image_collects_its_blobs_and_snapshots() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    let digests: Vec<String> = image.blobs.keys().cloned().collect();
    assert!(digests.iter().all(|d| daemon.blobs_on_disk().contains(d)));
    assert_eq!(daemon.snapshot_dirs_on_disk().len(), 1);

    ctr_ok(
        &daemon,
        &["-n", &ns, "images", "rm", "--sync", BUSYBOX_NAME],
    );
    assert!(image_names(&daemon, &ns).is_empty());
    wait_until(
        Duration::from_secs(20),
        "content and snapshots are collected",
        || content_digests(&daemon, &ns).is_empty() && snapshots_ls(&daemon, &ns).is_empty(),
    );
    wait_until(
        Duration::from_secs(20),
        "blob files and snapshot dirs are gone from disk",
        || {
            let on_disk = daemon.blobs_on_disk();
            digests.iter().all(|d| !on_disk.contains(d))
                && daemon.snapshot_dirs_on_disk().is_empty()
        },
    );
}

#[test]
fn a_blob_shared_by_two_namespaces_outlives_one_of_them() {
    let daemon = Daemon::start();
    let (first, second) = (unique_id("ns"), unique_id("ns"));
    for ns in [&first, &second] {
        ctr_ok(&daemon, &["namespaces", "create", ns]);
    }
    let image = import_busybox(&daemon, &first);
    import_busybox(&daemon, &second);

    ctr_ok(
        &daemon,
        &["-n", &first, "images", "rm", "--sync", BUSYBOX_NAME],
    );
    wait_until(
        Duration::from_secs(20),
        "the first namespace is emptied",
        || content_digests(&daemon, &first).is_empty() && snapshots_ls(&daemon, &first).is_empty(),
    );
    let expected: std::collections::BTreeSet<String> = image.blobs.keys().cloned().collect();
    assert_eq!(content_digests(&daemon, &second), expected);
    assert!(daemon.blobs_on_disk().is_superset(&expected));
    let check = ctr_ok(&daemon, &["-n", &second, "images", "check"]);
    assert!(check.contains("complete"), "{check}");
    let layer = &image.layer_digests[0];
    let out = ctr(&daemon, &["-n", &second, "content", "get", layer]);
    assert!(out.stdout == image.blob(layer), "the shared layer changed");
}
