//! Multi-step actions and readers of ctr's listings that many tests share.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::ctr::{ctr_ok, table_rows};
use crate::daemon::Daemon;
use crate::fixtures::{busybox_oci_archive, BuiltImage};

/// Name the busybox fixture is imported under.
pub const BUSYBOX_NAME: &str = "localhost/busybox:latest";

/// Builds the busybox archive in the daemon's temp dir and imports it into `namespace`
/// with `ctr images import`; returns what the archive holds.
pub fn import_busybox(daemon: &Daemon, namespace: &str) -> BuiltImage {
    let archive = daemon.dir().join("busybox.tar");
    let image = busybox_oci_archive(&archive, BUSYBOX_NAME).expect("building the busybox image");
    import_archive(daemon, namespace, &archive);
    image
}

/// `ctr -n <namespace> images import <archive>`, which must succeed; returns stdout.
pub fn import_archive(daemon: &Daemon, namespace: &str, archive: &std::path::Path) -> String {
    let path = archive.to_str().expect("archive paths are UTF-8");
    ctr_ok(daemon, &["-n", namespace, "images", "import", path])
}

/// One row of `ctr snapshots ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// The snapshot key (a chain ID for unpacked layers).
    pub key: String,
    /// The parent's key, if any.
    pub parent: Option<String>,
    /// `Committed`, `Active` or `View`.
    pub kind: String,
}

/// The rows of `ctr -n <namespace> snapshots ls`.
pub fn snapshots_ls(daemon: &Daemon, namespace: &str) -> Vec<SnapshotRow> {
    table_rows(&ctr_ok(daemon, &["-n", namespace, "snapshots", "ls"]))
        .into_iter()
        .map(|cells| match cells.as_slice() {
            [key, kind] => SnapshotRow {
                key: key.clone(),
                parent: None,
                kind: kind.clone(),
            },
            [key, parent, kind] => SnapshotRow {
                key: key.clone(),
                parent: Some(parent.clone()),
                kind: kind.clone(),
            },
            _ => panic!("unexpected `snapshots ls` row: {cells:?}"),
        })
        .collect()
}

/// The digests listed by `ctr -n <namespace> content ls`.
pub fn content_digests(daemon: &Daemon, namespace: &str) -> BTreeSet<String> {
    table_rows(&ctr_ok(daemon, &["-n", namespace, "content", "ls"]))
        .into_iter()
        .filter_map(|cells| cells.into_iter().next())
        .collect()
}

/// The image names listed by `ctr -n <namespace> images ls -q`.
pub fn image_names(daemon: &Daemon, namespace: &str) -> Vec<String> {
    ctr_ok(daemon, &["-n", namespace, "images", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The namespace names listed by `ctr namespaces ls -q`.
pub fn namespace_names(daemon: &Daemon) -> Vec<String> {
    ctr_ok(daemon, &["namespaces", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The digests of every blob the daemon lists in any namespace.
pub fn content_digests_everywhere(daemon: &Daemon) -> BTreeSet<String> {
    namespace_names(daemon)
        .iter()
        .flat_map(|ns| content_digests(daemon, ns))
        .collect()
}

/// Label that makes a snapshot a garbage-collection root.
pub const GC_ROOT_LABEL: &str = "containerd.io/gc.root=berth-e2e";

/// Creates snapshot `key` with `ctr snapshots <verb> key [parent]` (`verb` is `prepare`
/// or `view`) and labels it as a GC root, so that a collection running in the background
/// (after an import, say) cannot take it. ctr creates such snapshots unlabelled; should a
/// collection remove it before the label lands, it is created again.
pub fn pinned_snapshot(
    daemon: &Daemon,
    namespace: &str,
    verb: &str,
    key: &str,
    parent: Option<&str>,
) {
    for _attempt in 0..5 {
        let mut args = vec!["-n", namespace, "snapshots", verb, key];
        args.extend(parent);
        let created = crate::ctr::ctr(daemon, &args);
        let labelled = crate::ctr::ctr(
            daemon,
            &["-n", namespace, "snapshots", "label", key, GC_ROOT_LABEL],
        );
        if labelled.status.success() {
            return;
        }
        if !created.status.success() && snapshots_ls(daemon, namespace).iter().all(|s| s.key != key)
        {
            panic!(
                "ctr snapshots {verb} {key} failed: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
    }
    panic!("snapshot {key} kept disappearing before it could be labelled");
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory for mount targets inside the daemon's temp dir, so the daemon's drop
/// unmounts whatever a failing test left there.
pub fn scratch_dir(daemon: &Daemon, name: &str) -> PathBuf {
    let dir = daemon.dir().join(name);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}
