//! Snapshotter behaviour as a client sees it, on real directories and real mounts (these
//! tests need root). Mounts are held by [`MountGuard`]s, so they are undone even when an
//! assertion fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::mount::tests::is_mount_point;
use crate::mount::MountGuard;

/// A snapshotter in a fresh temporary directory, with a scratch area for mount targets.
struct Fixture {
    // Field order matters: the snapshotter goes before the directory it lives in.
    snapshotter: Option<OverlaySnapshotter>,
    root: PathBuf,
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // Laid out like berthd's (`<root>/snapshots/overlayfs`), under a longish name so
        // that absolute overlay options for many layers really overflow one page.
        let root = tmp.path().join("berth-root-for-tests/snapshots/overlayfs");
        let snapshotter = OverlaySnapshotter::open(&root).unwrap();
        Fixture {
            snapshotter: Some(snapshotter),
            root,
            tmp,
        }
    }

    fn snap(&self) -> &OverlaySnapshotter {
        self.snapshotter.as_ref().unwrap()
    }

    /// Drops the snapshotter and opens a new one on the same root, as after a restart.
    fn reopen(&mut self) {
        self.snapshotter = None;
        self.snapshotter = Some(OverlaySnapshotter::open(&self.root).unwrap());
    }

    /// A fresh empty directory to mount on.
    fn target(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join("mnt").join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Prepares `key` on `parent`, writes `files` through its real mounts, and commits it
    /// as `name`.
    fn layer(&self, name: &str, parent: Option<&str>, files: &[(&str, &str)]) {
        let key = format!("extract-{name}");
        let mounts = self.snap().prepare(&key, parent, no_labels()).unwrap();
        let target = self.target(&key);
        {
            let _guard = MountGuard::mount_all(&mounts, &target).unwrap();
            for (file, content) in files {
                fs::write(target.join(file), content).unwrap();
            }
        }
        self.snap().commit(name, &key, no_labels()).unwrap();
    }
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of option `key=` in a mount, if present.
fn option<'a>(mount: &'a Mount, key: &str) -> Option<&'a str> {
    mount
        .options
        .iter()
        .find_map(|o| o.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn a_chain_of_layers_shows_through_a_real_overlay_and_writes_land_in_the_upper_dir() {
    let fx = Fixture::new();
    fx.layer(
        "base",
        None,
        &[("base.txt", "from base"), ("shadowed", "old")],
    );
    fx.layer(
        "middle",
        Some("base"),
        &[("middle.txt", "from middle"), ("shadowed", "new")],
    );

    let mounts = fx
        .snap()
        .prepare("container", Some("middle"), no_labels())
        .unwrap();
    assert_eq!(mounts.len(), 1);
    let overlay = &mounts[0];
    assert_eq!(
        (overlay.kind.as_str(), overlay.source.as_str()),
        ("overlay", "overlay")
    );
    let lowers: Vec<&str> = option(overlay, "lowerdir").unwrap().split(':').collect();
    assert_eq!(lowers.len(), 2, "two committed parents");
    assert!(lowers.iter().all(|l| Path::new(l).is_absolute()));
    let upper = PathBuf::from(option(overlay, "upperdir").unwrap());
    assert!(Path::new(option(overlay, "workdir").unwrap()).is_dir());

    let target = fx.target("container");
    let guard = MountGuard::mount_all(&mounts, &target).unwrap();
    assert_eq!(read(target.join("base.txt")), "from base");
    assert_eq!(read(target.join("middle.txt")), "from middle");
    assert_eq!(
        read(target.join("shadowed")),
        "new",
        "the closest parent wins"
    );
    fs::write(target.join("written"), "by the container").unwrap();
    assert_eq!(read(upper.join("written")), "by the container");
    assert!(
        !Path::new(lowers[0]).join("written").exists(),
        "parents stay untouched"
    );
    guard.unmount().unwrap();
    assert!(!is_mount_point(&target));

    let info = fx.snap().stat("container").unwrap();
    assert_eq!(info.kind, Kind::Active);
    assert_eq!(info.parent.as_deref(), Some("middle"));
    let middle = fx.snap().stat("middle").unwrap();
    assert_eq!(middle.kind, Kind::Committed);
    assert_eq!(middle.parent.as_deref(), Some("base"));
    assert!(
        matches!(fx.snap().stat("extract-middle"), Err(Error::NotFound(_))),
        "the active key disappears on commit"
    );
    let names: Vec<String> = fx
        .snap()
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["base", "container", "middle"]);
}

#[test]
fn a_snapshot_without_parent_is_a_bind_mount() {
    let fx = Fixture::new();
    let mounts = fx.snap().prepare("lonely", None, no_labels()).unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].kind, "bind");
    assert_eq!(mounts[0].options, ["rw", "rbind"]);
    assert!(Path::new(&mounts[0].source).is_absolute());
    let target = fx.target("lonely");
    let _guard = MountGuard::mount_all(&mounts, &target).unwrap();
    fs::write(target.join("f"), "x").unwrap();
    assert_eq!(read(Path::new(&mounts[0].source).join("f")), "x");
    // An empty parent means no parent, as on the wire.
    let same = fx
        .snap()
        .prepare("also-lonely", Some(""), no_labels())
        .unwrap();
    assert_eq!(same[0].kind, "bind");
}

#[test]
fn views_are_read_only_and_shaped_by_their_parent_count() {
    let fx = Fixture::new();
    fx.layer("base", None, &[("base.txt", "b")]);
    fx.layer("top", Some("base"), &[("top.txt", "t")]);

    let one = fx
        .snap()
        .view("view-of-base", Some("base"), no_labels())
        .unwrap();
    assert_eq!(one[0].kind, "bind");
    assert_eq!(one[0].options, ["ro", "rbind"]);
    let target = fx.target("view-of-base");
    {
        let _guard = MountGuard::mount_all(&one, &target).unwrap();
        assert_eq!(read(target.join("base.txt")), "b");
        let err = fs::write(target.join("x"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    }

    let two = fx
        .snap()
        .view("view-of-top", Some("top"), no_labels())
        .unwrap();
    assert_eq!(two[0].kind, "overlay");
    assert!(option(&two[0], "upperdir").is_none() && option(&two[0], "workdir").is_none());
    let target = fx.target("view-of-top");
    {
        let _guard = MountGuard::mount_all(&two, &target).unwrap();
        assert_eq!(read(target.join("base.txt")), "b");
        assert_eq!(read(target.join("top.txt")), "t");
        let err = fs::write(target.join("x"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    }
    assert_eq!(fx.snap().stat("view-of-top").unwrap().kind, Kind::View);
    assert_eq!(fx.snap().mounts("view-of-top").unwrap(), two);
}

#[test]
fn wrong_states_are_refused_with_the_right_error() {
    let fx = Fixture::new();
    fx.layer("base", None, &[]);
    fx.snap()
        .prepare("active", Some("base"), no_labels())
        .unwrap();
    fx.snap().view("view", Some("base"), no_labels()).unwrap();

    let err = fx.snap().commit("c", "view", no_labels()).unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    let err = fx.snap().commit("base", "active", no_labels()).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let err = fx.snap().prepare("active", None, no_labels()).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let err = fx
        .snap()
        .prepare("x", Some("active"), no_labels())
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(_)),
        "parent not committed: {err}"
    );
    let err = fx
        .snap()
        .prepare("x", Some("missing"), no_labels())
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let err = fx.snap().mounts("base").unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    let err = fx.snap().commit("c", "missing", no_labels()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let err = fx.snap().remove("missing").unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    // Nothing was created by the refused requests.
    assert!(matches!(fx.snap().stat("x"), Err(Error::NotFound(_))));
    assert!(matches!(fx.snap().stat("c"), Err(Error::NotFound(_))));
    assert_eq!(fx.snap().list().unwrap().len(), 3);
}

#[test]
fn removing_a_parent_is_refused_until_its_children_are_gone() {
    let fx = Fixture::new();
    fx.layer("base", None, &[("f", "x")]);
    fx.layer("top", Some("base"), &[]);
    fx.snap().view("view", Some("base"), no_labels()).unwrap();
    let base_dir = PathBuf::from(&fx.snap().mounts("view").unwrap()[0].source);
    assert!(base_dir.join("f").exists());

    for _ in 0..2 {
        let err = fx.snap().remove("base").unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        // Refusal changes nothing.
        assert!(fx.snap().stat("base").is_ok());
        assert!(base_dir.join("f").exists());
        fx.snap()
            .remove(if fx.snap().stat("top").is_ok() {
                "top"
            } else {
                "view"
            })
            .unwrap();
    }
    fx.snap().remove("base").unwrap();
    assert!(
        !base_dir.exists(),
        "the files are deleted with the snapshot"
    );
    assert!(fx.snap().list().unwrap().is_empty());
    assert_eq!(fs::read_dir(fx.root.join("snapshots")).unwrap().count(), 0);
}

#[test]
fn everything_survives_a_reopen() {
    let mut fx = Fixture::new();
    fx.layer("base", None, &[("f", "kept")]);
    fx.snap()
        .prepare("work", Some("base"), labels(&[("owner", "test")]))
        .unwrap();
    fx.snap().view("look", Some("base"), no_labels()).unwrap();
    let before_list = fx.snap().list().unwrap();
    let before_mounts = fx.snap().mounts("work").unwrap();
    let before_usage = fx.snap().usage("base").unwrap();

    fx.reopen();
    assert_eq!(fx.snap().list().unwrap(), before_list);
    assert_eq!(fx.snap().mounts("work").unwrap(), before_mounts);
    assert_eq!(fx.snap().usage("base").unwrap(), before_usage);
    assert_eq!(
        fx.snap().stat("work").unwrap().labels,
        labels(&[("owner", "test")])
    );

    // New snapshots get fresh directories; the old ones keep working.
    let fresh = fx
        .snap()
        .prepare("fresh", Some("base"), no_labels())
        .unwrap();
    assert_ne!(
        option(&fresh[0], "upperdir"),
        option(&before_mounts[0], "upperdir")
    );
    let target = fx.target("work");
    let _guard = MountGuard::mount_all(&before_mounts, &target).unwrap();
    assert_eq!(read(target.join("f")), "kept");
}

#[test]
fn cleanup_removes_what_interrupted_operations_left() {
    let mut fx = Fixture::new();
    fx.layer("base", None, &[("f", "x")]);
    fx.snap()
        .prepare("active", Some("base"), no_labels())
        .unwrap();
    // Debris as a crash would leave it: a half-made snapshot, a half-removed one, and a
    // snapshot directory with no record.
    fs::create_dir_all(fx.root.join("staging/900/fs")).unwrap();
    fs::create_dir_all(fx.root.join("trash/901/fs")).unwrap();
    fs::write(fx.root.join("trash/901/fs/big"), vec![0u8; 4096]).unwrap();
    fs::create_dir_all(fx.root.join("snapshots/902/fs")).unwrap();
    fs::create_dir_all(fx.root.join("snapshots/902/work")).unwrap();

    fx.reopen();
    assert_eq!(
        fx.snap().list().unwrap().len(),
        2,
        "debris is not a snapshot"
    );
    assert_eq!(fx.snap().cleanup().unwrap(), 3);
    assert!(!fx.root.join("staging/900").exists());
    assert!(!fx.root.join("trash/901").exists());
    assert!(!fx.root.join("snapshots/902").exists());
    assert_eq!(fx.snap().cleanup().unwrap(), 0, "nothing left to clean");

    // Live snapshots are untouched, and new ids do not collide with the debris's.
    let target = fx.target("active");
    let mounts = fx.snap().mounts("active").unwrap();
    let _guard = MountGuard::mount_all(&mounts, &target).unwrap();
    assert_eq!(read(target.join("f")), "x");
    let next = fx.snap().prepare("next", None, no_labels()).unwrap();
    let id: u64 = Path::new(&next[0].source)
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(id > 902, "id {id} reuses a debris id");
}

#[test]
fn usage_counts_the_snapshots_own_files_and_hard_links_once() {
    let fx = Fixture::new();
    fx.layer("base", None, &[("big", &"x".repeat(256 * 1024))]);
    let mounts = fx
        .snap()
        .prepare("work", Some("base"), no_labels())
        .unwrap();
    let empty = fx.snap().usage("work").unwrap();
    assert_eq!(
        empty.inodes, 1,
        "only the upper directory itself: {empty:?}"
    );

    let target = fx.target("work");
    {
        let _guard = MountGuard::mount_all(&mounts, &target).unwrap();
        fs::write(target.join("data"), vec![1u8; 100 * 1024]).unwrap();
        fs::hard_link(target.join("data"), target.join("data-again")).unwrap();
    }
    let used = fx.snap().usage("work").unwrap();
    assert_eq!(used.inodes, 2, "{used:?}");
    assert!(
        used.size >= 100 * 1024 && used.size < 200 * 1024,
        "{used:?}"
    );

    let base = fx.snap().usage("base").unwrap();
    assert!(base.size >= 256 * 1024, "{base:?}");
    fx.snap().commit("done", "work", no_labels()).unwrap();
    assert_eq!(
        fx.snap().usage("done").unwrap(),
        used,
        "remembered from commit time"
    );
}

#[test]
fn a_128_layer_chain_mounts_for_real() {
    let fx = Fixture::new();
    let mut parent: Option<String> = None;
    for i in 0..128 {
        let name = format!("sha256:{i:064x}");
        let own = format!("layer-{i}");
        let number = i.to_string();
        let mut files = vec![(own.as_str(), "present"), ("shared", number.as_str())];
        if i == 0 {
            files.push(("bottom", "from the bottom layer"));
        }
        fx.layer(&name, parent.as_deref(), &files);
        parent = Some(name);
    }
    let mounts = fx
        .snap()
        .prepare("container", parent.as_deref(), no_labels())
        .unwrap();
    let lowerdir = option(&mounts[0], "lowerdir").unwrap();
    assert_eq!(lowerdir.split(':').count(), 128);
    assert!(
        mounts[0].options.join(",").len() > 4096,
        "absolute options must overflow a page for this test to mean anything"
    );

    let target = fx.target("container");
    let guard = MountGuard::mount_all(&mounts, &target).unwrap();
    assert_eq!(read(target.join("bottom")), "from the bottom layer");
    assert_eq!(read(target.join("layer-0")), "present");
    assert_eq!(read(target.join("layer-127")), "present");
    assert_eq!(read(target.join("shared")), "127", "the top layer wins");
    fs::write(target.join("new"), "x").unwrap();
    assert_eq!(
        read(Path::new(option(&mounts[0], "upperdir").unwrap()).join("new")),
        "x"
    );
    guard.unmount().unwrap();

    // A view of the whole chain: an overlay with 128 lower directories and nothing else.
    let view = fx
        .snap()
        .view("look", parent.as_deref(), no_labels())
        .unwrap();
    let target = fx.target("look");
    let _guard = MountGuard::mount_all(&view, &target).unwrap();
    assert_eq!(read(target.join("bottom")), "from the bottom layer");
    assert_eq!(read(target.join("shared")), "127");
}

#[test]
fn empty_or_oversized_keys_are_invalid_and_change_nothing() {
    let fx = Fixture::new();
    fx.layer("base", None, &[]);
    fx.snap().prepare("active", None, no_labels()).unwrap();
    let long = "k".repeat(MAX_KEY_LEN + 1);
    let invalid = |result: Result<()>| {
        assert!(
            matches!(result, Err(Error::InvalidArgument(_))),
            "{result:?}"
        );
    };
    invalid(fx.snap().prepare("", None, no_labels()).map(drop));
    invalid(fx.snap().view("", Some("base"), no_labels()).map(drop));
    invalid(fx.snap().prepare(&long, None, no_labels()).map(drop));
    invalid(fx.snap().commit("", "active", no_labels()));
    invalid(fx.snap().commit("name", "", no_labels()));
    invalid(fx.snap().remove(""));
    invalid(fx.snap().stat("").map(drop));
    invalid(fx.snap().mounts("").map(drop));
    invalid(fx.snap().usage("").map(drop));
    invalid(
        fx.snap()
            .prepare("ok", None, labels(&[("", "v")]))
            .map(drop),
    );
    assert_eq!(fx.snap().list().unwrap().len(), 2);
    assert_eq!(fs::read_dir(fx.root.join("snapshots")).unwrap().count(), 2);
    assert_eq!(fs::read_dir(fx.root.join("staging")).unwrap().count(), 0);
}

#[test]
fn keys_with_slashes_colons_and_dots_are_names_not_paths() {
    let mut fx = Fixture::new();
    let key = "default/7/extract-123 sha256:abc/../../../escape";
    let name = "default/8/sha256:0123:/..";
    let mounts = fx.snap().prepare(key, None, no_labels()).unwrap();
    assert!(mounts[0].source.starts_with(fx.root.to_str().unwrap()));
    fx.snap().commit(name, key, no_labels()).unwrap();
    fx.snap()
        .view("ns/9/view:x", Some(name), no_labels())
        .unwrap();
    assert_eq!(fx.snap().stat(name).unwrap().name, name);
    fx.reopen();
    assert_eq!(
        fx.snap().stat("ns/9/view:x").unwrap().parent.as_deref(),
        Some(name)
    );
    // Only numeric directories exist under the root's snapshot directory, and nothing
    // escaped the root.
    for entry in fs::read_dir(fx.root.join("snapshots")).unwrap() {
        let entry_name = entry.unwrap().file_name();
        assert!(
            entry_name.to_str().unwrap().parse::<u64>().is_ok(),
            "{entry_name:?}"
        );
    }
    assert!(!fx.tmp.path().join("escape").exists());
    fx.snap().remove("ns/9/view:x").unwrap();
    fx.snap().remove(name).unwrap();
    assert!(fx.snap().list().unwrap().is_empty());
}

#[test]
fn labels_update_like_containerd_and_persist() {
    let mut fx = Fixture::new();
    fx.snap()
        .prepare("s", None, labels(&[("keep", "1"), ("drop", "2")]))
        .unwrap();
    let before = fx.snap().stat("s").unwrap();

    let mut request = before.clone();
    request.labels = labels(&[("new", "3")]);
    let paths = ["labels.new".to_string(), "labels.drop".to_string()];
    let after = fx.snap().update(&request, &paths).unwrap();
    assert_eq!(after.labels, labels(&[("keep", "1"), ("new", "3")]));
    assert!(after.updated >= before.updated);
    assert_eq!(after.created, before.created);

    let err = fx
        .snap()
        .update(&request, &["parent".to_string()])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let mut missing = request.clone();
    missing.name = "nope".to_string();
    assert!(matches!(
        fx.snap().update(&missing, &[]),
        Err(Error::NotFound(_))
    ));

    fx.reopen();
    assert_eq!(
        fx.snap().stat("s").unwrap().labels,
        labels(&[("keep", "1"), ("new", "3")])
    );
    let replaced = fx.snap().update(&request, &[]).unwrap();
    assert_eq!(replaced.labels, labels(&[("new", "3")]));
}

#[test]
fn a_root_is_used_by_one_snapshotter_at_a_time() {
    let mut fx = Fixture::new();
    let err = OverlaySnapshotter::open(&fx.root).unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    fx.reopen(); // once the first is dropped, the root is free again
}

#[test]
fn commit_keeps_the_given_labels_and_the_parent() {
    let fx = Fixture::new();
    fx.layer("base", None, &[]);
    fx.snap()
        .prepare("k", Some("base"), labels(&[("during", "extract")]))
        .unwrap();
    fx.snap()
        .commit("c", "k", labels(&[("containerd.io/gc.root", "x")]))
        .unwrap();
    let info = fx.snap().stat("c").unwrap();
    assert_eq!(info.labels, labels(&[("containerd.io/gc.root", "x")]));
    assert_eq!(info.parent.as_deref(), Some("base"));
    assert_eq!(info.kind, Kind::Committed);
}

#[test]
fn concurrent_prepares_get_distinct_snapshots() {
    let mut fx = Fixture::new();
    fx.layer("base", None, &[]);
    let snapshotter = Arc::new(fx.snapshotter.take().unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let snapshotter = Arc::clone(&snapshotter);
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let mounts = snapshotter
                            .prepare(&format!("t{t}/k{i}"), Some("base"), BTreeMap::new())
                            .unwrap();
                        option(&mounts[0], "upperdir").unwrap().to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut uppers: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    uppers.sort();
    uppers.dedup();
    assert_eq!(uppers.len(), 80);
    assert_eq!(snapshotter.list().unwrap().len(), 81);
}

#[test]
fn a_removed_snapshot_is_gone_at_once_and_its_files_with_empty_trash() {
    let fx = Fixture::new();
    fx.layer("base", None, &[("f", "x")]);
    fx.snap()
        .prepare("work", Some("base"), no_labels())
        .unwrap();
    fx.snap().remove("work").unwrap();
    assert!(matches!(fx.snap().stat("work"), Err(Error::NotFound(_))));
    let trash = fx.root.join("trash");
    let waiting = fs::read_dir(&trash).unwrap().count();
    assert_eq!(waiting, 1, "the removed snapshot's files wait in the trash");
    assert_eq!(fx.snap().empty_trash().unwrap(), 1);
    assert_eq!(fs::read_dir(&trash).unwrap().count(), 0);
    assert_eq!(fx.snap().empty_trash().unwrap(), 0);
    // The parent is untouched.
    assert!(fx.snap().stat("base").is_ok());
}
