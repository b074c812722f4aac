//! `berthctl images …` with locally built images: import and export (each checked
//! against Debian's `ctr`), listing, check, tag, labels, usage, mount and removal.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_tests::berthctl::{
    berthctl, berthctl_error, berthctl_import_busybox, berthctl_json, berthctl_ok, table_cells,
};
use berth_tests::ctr::format_image_size;
use berth_tests::fixtures::busybox::busybox_tree_problems;
use berth_tests::fixtures::oci::MEDIA_TYPE_MANIFEST;
use berth_tests::snapshot_mount::mount_target;
use berth_tests::steps::{
    content_digests, image_names, import_archive, import_busybox, scratch_dir, snapshots_ls,
    wait_until, BUSYBOX_NAME,
};
use berth_tests::{ctr_ok, unique_id, Daemon};

#[test]
fn an_imported_image_is_listed_checked_and_unpacked() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let image = berthctl_import_busybox(&daemon, &ns);

    // ctr sees what berthctl imported, unpacked under the layer's chain id.
    assert_eq!(image_names(&daemon, &ns), vec![BUSYBOX_NAME.to_string()]);
    let snapshots = snapshots_ls(&daemon, &ns);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0].key, image.chain_ids()[0]);

    // ls: ctr's columns, a human size, the platform.
    let table = berthctl_ok(&daemon, &["-n", &ns, "images", "ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    );
    let rows = table_cells(&table);
    assert_eq!(
        rows,
        vec![vec![
            BUSYBOX_NAME.to_string(),
            MEDIA_TYPE_MANIFEST.to_string(),
            image.manifest_digest.clone(),
            format_image_size(image.total_size()),
            "linux/amd64".to_string(),
            "-".to_string(),
        ]]
    );
    let json = berthctl_json(&daemon, &["-n", &ns, "images", "ls"]);
    assert_eq!(json[0]["name"], BUSYBOX_NAME);
    assert_eq!(json[0]["digest"], image.manifest_digest.as_str());
    assert_eq!(json[0]["media_type"], MEDIA_TYPE_MANIFEST);
    assert_eq!(json[0]["size"], image.total_size());
    assert_eq!(json[0]["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(
        berthctl_ok(&daemon, &["-n", &ns, "images", "ls", "-q"]),
        format!("{BUSYBOX_NAME}\n")
    );

    // check: complete and unpacked, as ctr reports it.
    let check = berthctl_ok(&daemon, &["-n", &ns, "images", "check"]);
    let row = &table_cells(&check)[0];
    assert_eq!(row[3], "complete (2/2)", "{check}");
    assert_eq!(row[5], "true", "{check}");
    let json = berthctl_json(&daemon, &["-n", &ns, "images", "check"]);
    assert_eq!(json[0]["complete"], true);
    assert_eq!(json[0]["unpacked"], true);
    assert_eq!(
        berthctl_ok(&daemon, &["-n", &ns, "images", "check", "-q"]),
        format!("{BUSYBOX_NAME}\n")
    );

    // usage: the one layer's snapshot, and the total.
    let usage = berthctl_json(&daemon, &["-n", &ns, "images", "usage", BUSYBOX_NAME]);
    assert_eq!(
        usage["layers"][0]["chain_id"],
        image.chain_ids()[0].as_str()
    );
    assert!(usage["size"].as_u64().unwrap() > 1 << 20, "{usage}");
    assert_eq!(usage["unpacked"], true);

    // Removing the layer blob makes the image incomplete.
    let layer = image.layer_digests[0].clone();
    berthctl_ok(&daemon, &["-n", &ns, "content", "rm", &layer]);
    let json = berthctl_json(&daemon, &["-n", &ns, "images", "check"]);
    assert_eq!(json[0]["complete"], false);
    assert_eq!(json[0]["available"], 1);
    assert_eq!(json[0]["required"], 2);
}

#[test]
fn tags_and_labels_point_names_at_images() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);

    let tagged = berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "tag",
            BUSYBOX_NAME,
            "localhost/bb:1",
            "localhost/bb:2",
        ],
    );
    assert_eq!(tagged, "localhost/bb:1\nlocalhost/bb:2\n");
    let names: BTreeSet<String> = image_names(&daemon, &ns).into_iter().collect();
    assert_eq!(
        names,
        BTreeSet::from([
            BUSYBOX_NAME.to_string(),
            "localhost/bb:1".to_string(),
            "localhost/bb:2".to_string()
        ])
    );
    let json = berthctl_json(
        &daemon,
        &["-n", &ns, "images", "ls", "name==localhost/bb:2"],
    );
    assert_eq!(json.as_array().unwrap().len(), 1, "filters select: {json}");
    assert_eq!(json[0]["digest"], image.manifest_digest.as_str());

    // An existing name is refused without --force; with it, the name moves.
    let message = berthctl_error(
        &daemon,
        &["-n", &ns, "images", "tag", BUSYBOX_NAME, "localhost/bb:1"],
    );
    assert!(message.contains("--force"), "{message}");
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "tag",
            "--force",
            BUSYBOX_NAME,
            "localhost/bb:1",
        ],
    );

    // Labels: set, shown in ls, cleared.
    let labels = berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "label",
            "localhost/bb:1",
            "stage=test",
            "team=infra",
        ],
    );
    assert_eq!(labels, "stage=test\nteam=infra\n");
    let json = berthctl_json(
        &daemon,
        &["-n", &ns, "images", "ls", "name==localhost/bb:1"],
    );
    assert_eq!(
        json[0]["labels"],
        serde_json::json!({"stage": "test", "team": "infra"})
    );
    let table = berthctl_ok(
        &daemon,
        &["-n", &ns, "images", "ls", "name==localhost/bb:1"],
    );
    assert_eq!(table_cells(&table)[0][5], "stage=test,team=infra");
    let labels = berthctl_ok(
        &daemon,
        &["-n", &ns, "images", "label", "localhost/bb:1", "stage="],
    );
    assert_eq!(labels, "team=infra\n");

    // rm prints what it removed; the image itself stays while another name holds it.
    let removed = berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "rm",
            "localhost/bb:1",
            "localhost/bb:2",
        ],
    );
    assert_eq!(removed, "localhost/bb:1\nlocalhost/bb:2\n");
    assert_eq!(image_names(&daemon, &ns), vec![BUSYBOX_NAME.to_string()]);
}

#[test]
fn rm_sync_collects_what_only_the_image_held() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    import_busybox(&daemon, &ns);
    berthctl_ok(
        &daemon,
        &["-n", &ns, "images", "rm", "--sync", BUSYBOX_NAME],
    );
    assert!(image_names(&daemon, &ns).is_empty());
    wait_until(
        Duration::from_secs(20),
        "the image's blobs are collected",
        || content_digests(&daemon, &ns).is_empty(),
    );
    assert!(snapshots_ls(&daemon, &ns).is_empty());
}

#[test]
fn export_then_import_round_trips_through_ctr_both_ways() {
    let daemon = Daemon::start();
    let source = unique_id("src");
    berthctl_ok(&daemon, &["namespaces", "create", &source]);
    let image = berthctl_import_busybox(&daemon, &source);

    // berthctl export → ctr import: same digests.
    let archive = daemon.dir().join("exported.tar");
    let archive_path = archive.to_str().unwrap();
    let printed = berthctl_ok(
        &daemon,
        &[
            "-n",
            &source,
            "images",
            "export",
            archive_path,
            BUSYBOX_NAME,
        ],
    );
    assert!(printed.starts_with("exported "), "{printed}");
    let ctr_ns = unique_id("viactr");
    ctr_ok(&daemon, &["namespaces", "create", &ctr_ns]);
    import_archive(&daemon, &ctr_ns, &archive);
    let json = berthctl_json(&daemon, &["-n", &ctr_ns, "images", "ls"]);
    assert_eq!(json[0]["name"], BUSYBOX_NAME);
    assert_eq!(json[0]["digest"], image.manifest_digest.as_str());
    let expected: BTreeSet<String> = image.blobs.keys().cloned().collect();
    assert!(content_digests(&daemon, &ctr_ns).is_superset(&expected));

    // ctr export → berthctl import: same digests, and unpacked.
    let from_ctr = daemon.dir().join("from-ctr.tar");
    ctr_ok(
        &daemon,
        &[
            "-n",
            &ctr_ns,
            "images",
            "export",
            from_ctr.to_str().unwrap(),
            BUSYBOX_NAME,
        ],
    );
    let back = unique_id("back");
    berthctl_ok(&daemon, &["namespaces", "create", &back]);
    let json = berthctl_json(
        &daemon,
        &["-n", &back, "images", "import", from_ctr.to_str().unwrap()],
    );
    assert_eq!(json[0]["name"], BUSYBOX_NAME, "{json}");
    assert_eq!(json[0]["digest"], image.manifest_digest.as_str());
    let check = berthctl_json(&daemon, &["-n", &back, "images", "check"]);
    assert_eq!(check[0]["complete"], true);
    assert_eq!(check[0]["unpacked"], true);

    // --no-unpack stores the content only.
    let stored = unique_id("stored");
    berthctl_ok(&daemon, &["namespaces", "create", &stored]);
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &stored,
            "images",
            "import",
            "--no-unpack",
            archive_path,
        ],
    );
    let check = berthctl_json(&daemon, &["-n", &stored, "images", "check"]);
    assert_eq!(check[0]["complete"], true);
    assert_eq!(check[0]["unpacked"], false);

    // Exporting an unknown image fails and leaves no file behind.
    let missing = daemon.dir().join("missing.tar");
    let message = berthctl_error(
        &daemon,
        &[
            "-n",
            &source,
            "images",
            "export",
            missing.to_str().unwrap(),
            "localhost/nope:1",
        ],
    );
    assert!(message.contains("localhost/nope:1"), "{message}");
    let leftovers: Vec<_> = std::fs::read_dir(daemon.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".berthctl-export") || n == "missing.tar")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn mount_shows_the_image_and_unmount_rm_removes_its_snapshot() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let archive = daemon.dir().join("bb.tar");
    berth_tests::fixtures::busybox_oci_archive(&archive, BUSYBOX_NAME).unwrap();
    // Content only: mount has to unpack first.
    berthctl_ok(
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
    assert!(snapshots_ls(&daemon, &ns).is_empty());

    let target = mount_target(&scratch_dir(&daemon, "mnt"), "image");
    let target_text = target.to_str().unwrap();
    assert_eq!(
        berthctl_ok(
            &daemon,
            &["-n", &ns, "images", "mount", BUSYBOX_NAME, target_text]
        ),
        format!("{target_text}\n")
    );
    let problems = busybox_tree_problems(&target);
    let read_only = std::fs::write(target.join("x"), b"x").is_err();
    let snapshots = snapshots_ls(&daemon, &ns);
    berthctl_ok(
        &daemon,
        &["-n", &ns, "images", "unmount", "--rm", target_text],
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert!(read_only, "images mount is read-only without --rm");
    assert!(
        snapshots
            .iter()
            .any(|s| s.key == target_text && s.kind == "View"),
        "{snapshots:?}"
    );
    assert!(!snapshots_ls(&daemon, &ns)
        .iter()
        .any(|s| s.key == target_text));
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "still mounted"
    );

    // --rw: writes land in the snapshot.
    berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "mount",
            "--rw",
            BUSYBOX_NAME,
            target_text,
        ],
    );
    let written = std::fs::write(target.join("new-file"), b"x");
    berthctl_ok(
        &daemon,
        &["-n", &ns, "images", "unmount", "--rm", target_text],
    );
    written.expect("a --rw mount is writable");

    // Unmounting what is not mounted is an error.
    let message = berthctl_error(&daemon, &["-n", &ns, "images", "unmount", target_text]);
    assert!(message.contains("not a mount point"), "{message}");
}

#[test]
fn unknown_images_and_bad_arguments_are_clear_errors() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    for args in [
        vec!["images", "rm", "localhost/nope:1"],
        vec!["images", "tag", "localhost/nope:1", "localhost/other:1"],
        vec!["images", "label", "localhost/nope:1", "a=b"],
        vec!["images", "usage", "localhost/nope:1"],
    ] {
        let mut full = vec!["-n", ns.as_str()];
        full.extend(args.iter().copied());
        let message = berthctl_error(&daemon, &full);
        assert!(message.contains("localhost/nope:1"), "{args:?}: {message}");
    }
    let target = mount_target(&scratch_dir(&daemon, "mnt"), "none");
    let message = berthctl_error(
        &daemon,
        &[
            "-n",
            &ns,
            "images",
            "mount",
            "localhost/nope:1",
            target.to_str().unwrap(),
        ],
    );
    assert!(message.contains("localhost/nope:1"), "{message}");
    let message = berthctl_error(
        &daemon,
        &["-n", &ns, "images", "import", "/nonexistent/archive.tar"],
    );
    assert!(message.contains("/nonexistent/archive.tar"), "{message}");
    // Not an archive: refused, and nothing imported.
    let junk = daemon.dir().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive at all").unwrap();
    let out = berthctl(
        &daemon,
        &["-n", &ns, "images", "import", junk.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert!(image_names(&daemon, &ns).is_empty());
    let failure = berth_tests::berthctl::berthctl_fails(
        &daemon,
        &["-n", &ns, "images", "usage", "--platform", "a/b/c/d", "x"],
    );
    assert_eq!(failure.code, Some(2), "{}", failure.stderr);
}

#[test]
fn progress_is_drawn_on_a_terminal_and_only_summed_up_elsewhere() {
    let daemon = Daemon::start();
    let archive = daemon.dir().join("bb.tar");
    let image = berth_tests::fixtures::busybox_oci_archive(&archive, BUSYBOX_NAME).unwrap();
    let archive_text = archive.to_str().unwrap();

    // Not a terminal: the images imported and one summary line, nothing redrawn.
    let piped = unique_id("piped");
    berthctl_ok(&daemon, &["namespaces", "create", &piped]);
    let out = berthctl_ok(&daemon, &["-n", &piped, "images", "import", archive_text]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!("imported {BUSYBOX_NAME} ({})", image.manifest_digest)
    );
    assert!(lines[1].starts_with("3 objects"), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no terminal codes in piped output: {out:?}"
    );

    // A terminal: the live table, one line per object and a total line.
    let on_tty = unique_id("tty");
    berthctl_ok(&daemon, &["namespaces", "create", &on_tty]);
    let socket = daemon.socket();
    let binary = berth_tests::berthctl::berthctl_binary();
    let mut session = berth_tests::terminal::TerminalSession::start(
        binary.to_str().unwrap(),
        &[
            "--address",
            socket.to_str().unwrap(),
            "-n",
            &on_tty,
            "images",
            "import",
            archive_text,
        ],
    );
    let status = session
        .wait(Duration::from_secs(120))
        .expect("the import ends");
    let shown = session.output();
    assert!(status.success(), "{shown}");
    assert!(
        shown.contains("\x1b[2K"),
        "the table is redrawn in place: {shown:?}"
    );
    let layer_short = &image.layer_digests[0][..19];
    assert!(shown.contains(&format!(" {layer_short}")), "{shown}");
    assert!(shown.contains("elapsed: "), "{shown}");
    assert!(
        shown.contains(&format!("imported {BUSYBOX_NAME}")),
        "{shown}"
    );
}
