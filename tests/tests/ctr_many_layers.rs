//! A 128-layer image with whiteouts and opaque directories: 128 committed snapshots,
//! and a mount of the top that shows exactly the expected tree.

use berth_tests::fixtures::many_layers_archive;
use berth_tests::snapshot_mount::{mount_like_the_shim, mount_target, parse_printed_mounts};
use berth_tests::steps::{import_archive, pinned_snapshot, scratch_dir, snapshots_ls};
use berth_tests::{ctr_ok, unique_id, Daemon};

const LAYERS: usize = 128;

#[test]
fn a_128_layer_image_unpacks_and_mounts_exactly() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let archive = daemon.dir().join("layers.tar");
    let (image, expected) = many_layers_archive(&archive, "localhost/layers:128", LAYERS).unwrap();
    import_archive(&daemon, &ns, &archive);

    // One committed snapshot per layer, chained by chain ID.
    let chain = image.chain_ids();
    let mut listed = snapshots_ls(&daemon, &ns);
    assert_eq!(listed.len(), LAYERS);
    listed.sort_by_key(|s| chain.iter().position(|c| *c == s.key).unwrap_or(usize::MAX));
    for (i, snapshot) in listed.iter().enumerate() {
        assert_eq!(snapshot.key, chain[i]);
        assert_eq!(snapshot.kind, "Committed");
        assert_eq!(
            snapshot.parent.as_ref(),
            i.checked_sub(1).map(|p| &chain[p])
        );
    }

    let scratch = scratch_dir(&daemon, "mnt");
    let top = chain.last().unwrap();

    // A read-only view of the top.
    pinned_snapshot(&daemon, &ns, "view", "top-view", Some(top));
    let target = mount_target(&scratch, "view");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            "top-view",
        ],
    );
    let mounts = parse_printed_mounts(&printed);
    let guard = mount_like_the_shim(&mounts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expected.differences(&target), Vec::<String>::new());
    drop(guard);

    // A writable snapshot on top: the same tree, and writes land in it.
    pinned_snapshot(&daemon, &ns, "prepare", "top-rw", Some(top));
    let target = mount_target(&scratch, "rw");
    let printed = ctr_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            "top-rw",
        ],
    );
    let mounts = parse_printed_mounts(&printed);
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].lowerdirs().len(), LAYERS, "{printed}");
    let guard = mount_like_the_shim(&mounts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expected.differences(&target), Vec::<String>::new());
    std::fs::write(target.join("layers/new"), "new\n").unwrap();
    drop(guard);
}
