//! `berthctl snapshots …` over an imported busybox image: listing, the tree, prepare,
//! view, mounts (performed for real), commit, usage, info, labels and removal.

use berth_tests::berthctl::{berthctl_error, berthctl_json, berthctl_ok, table_cells};
use berth_tests::fixtures::busybox::busybox_tree_problems;
use berth_tests::snapshot_mount::{mount_target, mount_with_bin_mount, parse_printed_mounts};
use berth_tests::steps::{import_busybox, scratch_dir, snapshots_ls, GC_ROOT_LABEL};
use berth_tests::{unique_id, Daemon};

/// `--label` that keeps a test's snapshot from a collection running in the background.
fn pin() -> String {
    format!("--label={GC_ROOT_LABEL}")
}

#[test]
fn prepare_mount_commit_and_view_a_snapshot_of_busybox() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    let base = image.chain_ids()[0].clone();

    // ls: the committed layer, in a table and as JSON.
    let table = berthctl_ok(&daemon, &["-n", &ns, "snapshots", "ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["KEY", "PARENT", "KIND"]);
    assert_eq!(
        table_cells(&table),
        vec![vec![base.clone(), "Committed".to_string()]]
    );
    let json = berthctl_json(&daemon, &["-n", &ns, "snapshots", "ls"]);
    assert_eq!(json[0]["name"], base.as_str());
    assert_eq!(json[0]["parent"], "");
    assert_eq!(json[0]["kind"], "Committed");
    assert!(json[0]["created_at"].as_str().unwrap().ends_with('Z'));

    // prepare --target prints the mount commands; performed with /bin/mount they show
    // busybox, and a write lands in the snapshot.
    let work = unique_id("work");
    let target = mount_target(&scratch_dir(&daemon, "mnt"), "work");
    let printed = berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "prepare",
            &pin(),
            "--target",
            target.to_str().unwrap(),
            &work,
            &base,
        ],
    );
    let mounts = parse_printed_mounts(&printed);
    assert_eq!(mounts.len(), 1, "{printed}");
    assert_eq!(mounts[0].target, target);
    {
        let _mounted = mount_with_bin_mount(&mounts).expect("mounting what berthctl printed");
        let problems = busybox_tree_problems(&target);
        assert!(problems.is_empty(), "{problems:?}");
        std::fs::write(target.join("added-by-test"), b"hello").unwrap();
    }

    // mounts prints the same command for the same key.
    let again = berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "mounts",
            target.to_str().unwrap(),
            &work,
        ],
    );
    assert_eq!(again, printed);
    let json = berthctl_json(&daemon, &["-n", &ns, "snapshots", "mounts", "/x", &work]);
    assert_eq!(json[0]["type"], "overlay", "{json}");

    // commit, then a view of the commit sees the file; the tree nests it all.
    let committed = unique_id("committed");
    berthctl_ok(
        &daemon,
        &["-n", &ns, "snapshots", "commit", &committed, &work],
    );
    let view = unique_id("view");
    let view_target = mount_target(&scratch_dir(&daemon, "mnt"), "view");
    let printed = berthctl_ok(
        &daemon,
        &[
            "-n",
            &ns,
            "snapshots",
            "view",
            &pin(),
            "-t",
            view_target.to_str().unwrap(),
            &view,
            &committed,
        ],
    );
    {
        let _mounted =
            mount_with_bin_mount(&parse_printed_mounts(&printed)).expect("mounting the view");
        assert_eq!(
            std::fs::read(view_target.join("added-by-test")).unwrap(),
            b"hello"
        );
        assert!(
            std::fs::write(view_target.join("refused"), b"x").is_err(),
            "a view is read-only"
        );
    }
    let tree = berthctl_ok(&daemon, &["-n", &ns, "snapshots", "tree"]);
    assert_eq!(
        tree,
        format!("{base}\n  \\_ {committed}\n    \\_ {view}\n"),
        "the tree nests child under parent"
    );
    let tree = berthctl_json(&daemon, &["-n", &ns, "snapshots", "tree"]);
    assert_eq!(tree[0]["children"][0]["children"][0]["name"], view.as_str());
    let kinds: Vec<(String, String)> = snapshots_ls(&daemon, &ns)
        .into_iter()
        .map(|s| (s.key, s.kind))
        .collect();
    assert!(
        kinds.contains(&(view.clone(), "View".to_string())),
        "ctr sees {kinds:?}"
    );

    // info and usage.
    let info = berthctl_json(&daemon, &["-n", &ns, "snapshots", "info", &committed]);
    assert_eq!(info["name"], committed.as_str());
    assert_eq!(info["parent"], base.as_str());
    assert_eq!(info["kind"], "Committed");
    let usage = berthctl_json(&daemon, &["-n", &ns, "snapshots", "usage", &base]);
    assert!(usage[0]["size"].as_u64().unwrap() > 1 << 20, "{usage}");
    assert!(usage[0]["inodes"].as_i64().unwrap() > 10, "{usage}");
    let bytes = berthctl_ok(&daemon, &["-n", &ns, "snapshots", "usage", "-b", &base]);
    assert_eq!(
        table_cells(&bytes)[0][1],
        usage[0]["size"].as_u64().unwrap().to_string()
    );
    let human = berthctl_ok(&daemon, &["-n", &ns, "snapshots", "usage"]);
    assert!(
        table_cells(&human)
            .iter()
            .any(|r| r[0] == base && r[1].ends_with("MiB")),
        "{human}"
    );

    // label: set, then clear.
    let labels = berthctl_ok(
        &daemon,
        &["-n", &ns, "snapshots", "label", &view, "purpose=test"],
    );
    assert!(labels.lines().any(|l| l == "purpose=test"), "{labels}");
    berthctl_ok(
        &daemon,
        &["-n", &ns, "snapshots", "label", &view, "purpose="],
    );
    let info = berthctl_json(&daemon, &["-n", &ns, "snapshots", "info", &view]);
    assert!(info["labels"].get("purpose").is_none(), "{info}");

    // rm, children first.
    berthctl_ok(&daemon, &["-n", &ns, "snapshots", "rm", &view]);
    berthctl_ok(&daemon, &["-n", &ns, "snapshots", "rm", &committed]);
    let keys: Vec<String> = snapshots_ls(&daemon, &ns)
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, vec![base]);
}

#[test]
fn missing_snapshots_and_bad_requests_are_one_line_errors() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let image = import_busybox(&daemon, &ns);
    let base = image.chain_ids()[0].clone();
    let before = snapshots_ls(&daemon, &ns);

    let message = berthctl_error(&daemon, &["-n", &ns, "snapshots", "info", "no-such-key"]);
    assert!(
        message.starts_with("reading snapshot no-such-key: "),
        "{message}"
    );
    let message = berthctl_error(&daemon, &["-n", &ns, "snapshots", "rm", "no-such-key"]);
    assert!(
        message.starts_with("removing snapshot no-such-key: "),
        "{message}"
    );
    let message = berthctl_error(&daemon, &["-n", &ns, "snapshots", "mounts", "/mnt", "nope"]);
    assert!(message.contains("nope"), "{message}");
    let message = berthctl_error(
        &daemon,
        &["-n", &ns, "snapshots", "prepare", "k", "no-parent"],
    );
    assert!(message.starts_with("preparing snapshot k: "), "{message}");
    // A committed snapshot cannot be committed again, nor can one be removed under its child.
    let work = unique_id("work");
    berthctl_ok(
        &daemon,
        &["-n", &ns, "snapshots", "prepare", &pin(), &work, &base],
    );
    let message = berthctl_error(&daemon, &["-n", &ns, "snapshots", "rm", &base]);
    assert!(
        message.starts_with(&format!("removing snapshot {base}: ")),
        "{message}"
    );
    let message = berthctl_error(
        &daemon,
        &["-n", &ns, "snapshots", "--snapshotter", "nosuch", "ls"],
    );
    assert!(message.contains("nosuch"), "{message}");
    berthctl_ok(&daemon, &["-n", &ns, "snapshots", "rm", &work]);
    assert_eq!(
        snapshots_ls(&daemon, &ns),
        before,
        "failed commands changed nothing"
    );
}
