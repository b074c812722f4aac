//! `ctr version`, `ctr plugins ls` and the namespace commands, including bad names.

use berth_tests::ctr::table_rows;
use berth_tests::steps::{import_busybox, namespace_names, wait_until, BUSYBOX_NAME};
use berth_tests::{ctr, ctr_fails, ctr_ok, unique_id, Daemon};
use std::time::Duration;

/// The value printed after `key:` in the `Server:` section of `ctr version`.
fn server_field(version_output: &str, key: &str) -> Option<String> {
    let server = version_output.split("Server:").nth(1)?;
    server
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

/// Whether `text` is a UUID in its canonical textual form (8-4-4-4-12 hex digits).
fn is_canonical_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn version_reports_the_server() {
    let daemon = Daemon::start();
    let out = ctr_ok(&daemon, &["version"]);
    assert!(out.contains("Client:"), "{out}");
    let version = server_field(&out, "Version").unwrap_or_default();
    assert!(!version.is_empty(), "no server version in:\n{out}");
    let uuid = server_field(&out, "UUID").unwrap_or_default();
    assert!(
        is_canonical_uuid(&uuid),
        "server UUID {uuid:?} is not 8-4-4-4-12 hex in:\n{out}"
    );

    // The UUID identifies this daemon's root: it survives a restart.
    let mut daemon = daemon;
    daemon.restart();
    let again = ctr_ok(&daemon, &["version"]);
    assert_eq!(server_field(&again, "UUID").unwrap_or_default(), uuid);
}

#[test]
fn plugins_ls_lists_the_storage_plugins_and_services() {
    let daemon = Daemon::start();
    let rows = table_rows(&ctr_ok(&daemon, &["plugins", "ls"]));
    let find = |kind: &str, id: &str| {
        rows.iter()
            .find(|r| {
                r.first().map(String::as_str) == Some(kind)
                    && r.get(1).map(String::as_str) == Some(id)
            })
            .unwrap_or_else(|| panic!("no plugin {kind} {id} in {rows:#?}"))
    };
    let overlay = find("io.containerd.snapshotter.v1", "overlayfs");
    assert!(overlay.contains(&"linux/amd64".to_string()), "{overlay:?}");
    assert_eq!(overlay.last().map(String::as_str), Some("ok"));
    assert_eq!(
        find("io.containerd.content.v1", "content")
            .last()
            .map(String::as_str),
        Some("ok")
    );
    for service in [
        "content",
        "snapshots",
        "images",
        "namespaces",
        "leases",
        "diff",
        "events",
        "introspection",
        "version",
    ] {
        let row = find("io.containerd.grpc.v1", service);
        assert_eq!(row.last().map(String::as_str), Some("ok"), "{row:?}");
    }
}

#[test]
fn namespaces_are_created_labelled_listed_and_removed() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns, "team=storage"]);
    ctr_ok(&daemon, &["namespaces", "label", &ns, "tier=gold"]);

    let listing = ctr_ok(&daemon, &["namespaces", "ls"]);
    let row = table_rows(&listing)
        .into_iter()
        .find(|r| r[0] == ns)
        .unwrap_or_else(|| panic!("{ns} not listed:\n{listing}"));
    let mut labels: Vec<&str> = row[1].split(',').collect();
    labels.sort();
    assert_eq!(labels, vec!["team=storage", "tier=gold"]);

    // An empty value removes the label.
    ctr_ok(&daemon, &["namespaces", "label", &ns, "team="]);
    let listing = ctr_ok(&daemon, &["namespaces", "ls"]);
    let row = table_rows(&listing)
        .into_iter()
        .find(|r| r[0] == ns)
        .unwrap();
    assert_eq!(row[1], "tier=gold", "{listing}");

    ctr_ok(&daemon, &["namespaces", "rm", &ns]);
    assert!(!namespace_names(&daemon).contains(&ns));
}

#[test]
fn a_namespace_holding_an_image_cannot_be_removed() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    import_busybox(&daemon, &ns);

    let err = ctr_fails(&daemon, &["namespaces", "rm", &ns]);
    assert!(
        err.contains(&ns),
        "error does not name the namespace: {err}"
    );
    assert!(namespace_names(&daemon).contains(&ns));
    let images = ctr_ok(&daemon, &["-n", &ns, "images", "ls", "-q"]);
    assert!(images.contains(BUSYBOX_NAME), "{images}");

    // Once the image and what it pulled in are gone, the namespace can go.
    ctr_ok(
        &daemon,
        &["-n", &ns, "images", "rm", "--sync", BUSYBOX_NAME],
    );
    wait_until(
        Duration::from_secs(20),
        "the emptied namespace can be removed",
        || ctr(&daemon, &["namespaces", "rm", &ns]).status.success(),
    );
    assert!(!namespace_names(&daemon).contains(&ns));
}

#[test]
fn bad_namespace_names_are_rejected_and_nothing_is_created() {
    let daemon = Daemon::start();
    let before = namespace_names(&daemon);
    let snapshots_before = daemon.snapshot_dirs_on_disk();
    let too_long = "a".repeat(300);
    let bad: [&str; 8] = [
        "",
        "a/b",
        "..",
        ".",
        "../escape",
        "bad name",
        "a..b",
        &too_long,
    ];
    for name in bad {
        ctr_fails(&daemon, &["namespaces", "create", name]);
        if !name.is_empty() {
            ctr_fails(&daemon, &["-n", name, "images", "ls"]);
            ctr_fails(&daemon, &["-n", name, "snapshots", "prepare", "k"]);
            ctr_fails(&daemon, &["-n", name, "leases", "create"]);
        }
    }
    assert_eq!(namespace_names(&daemon), before);
    assert_eq!(daemon.snapshot_dirs_on_disk(), snapshots_before);
}

#[test]
fn bad_lease_ids_are_rejected() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let too_long = "l".repeat(300);
    for id in ["a/b", "..", "../x", too_long.as_str()] {
        let out = ctr(&daemon, &["-n", &ns, "leases", "create", "--id", id]);
        // Berth-only: containerd 1.6 does not check lease ids at all.
        if daemon.kind().is_berthd() {
            assert!(!out.status.success(), "lease id {id:?} was accepted");
        }
    }
    if daemon.kind().is_berthd() {
        let leases = ctr_ok(&daemon, &["-n", &ns, "leases", "ls", "-q"]);
        assert!(leases.trim().is_empty(), "{leases}");
    }
}
