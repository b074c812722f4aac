//! `apply(diff(a, b))` onto `a` reproduces `b`, on every path of `write_diff`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::layer::archive::EntryKind;
use crate::layer::compression::OCI_LAYER_TAR_GZIP;
use crate::layer::{write_diff, DiffOptions, DiffResult};
use crate::mount::MountGuard;

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn set_mtime(path: &Path, seconds: i64) {
    let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        &dir,
        path.file_name().unwrap(),
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with a bit of everything.
fn make_base(dir: &Path) {
    std::fs::create_dir_all(dir.join("deldir/sub")).unwrap();
    std::fs::create_dir_all(dir.join("keep")).unwrap();
    std::fs::create_dir_all(dir.join("to-link")).unwrap();
    std::fs::create_dir_all(dir.join("opq")).unwrap();
    for (name, content) in [
        ("a.txt", "aaaa"),
        ("same-size.txt", "1234"),
        ("mode.txt", "mode"),
        ("del.txt", "bye"),
        ("deldir/x", "x"),
        ("deldir/sub/y", "y"),
        ("keep/unchanged", "same"),
        ("keep/xattr", "x"),
        ("to-link/inner", "i"),
        ("to-dir", "f"),
        ("hard1", "h"),
        ("opq/old", "old"),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    std::fs::hard_link(dir.join("hard1"), dir.join("hard2")).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    rustix::fs::mknodat(
        std::fs::File::open(dir).unwrap(),
        "fifo",
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    set_mtime(&dir.join("same-size.txt"), T0);
}

/// Changes `dir` in every way a diff must notice.
fn change_tree(dir: &Path) {
    std::fs::write(dir.join("same-size.txt"), "5678").unwrap();
    set_mtime(&dir.join("same-size.txt"), T0);
    std::fs::set_permissions(dir.join("mode.txt"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::remove_file(dir.join("del.txt")).unwrap();
    std::fs::remove_dir_all(dir.join("deldir")).unwrap();
    std::fs::create_dir_all(dir.join("new/dir")).unwrap();
    std::fs::write(dir.join("new/dir/file"), "new").unwrap();
    std::fs::remove_dir_all(dir.join("to-link")).unwrap();
    std::os::unix::fs::symlink("keep", dir.join("to-link")).unwrap();
    std::fs::remove_file(dir.join("to-dir")).unwrap();
    std::fs::create_dir(dir.join("to-dir")).unwrap();
    std::fs::write(dir.join("to-dir/inside"), "in").unwrap();
    let keep_xattr = dir.join("keep/xattr");
    rustix::fs::setxattr(
        &keep_xattr,
        "user.tag",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    std::os::unix::fs::lchown(dir.join("link"), Some(5), Some(5)).unwrap();
    std::fs::write(dir.join("newhard1"), "nh").unwrap();
    std::fs::hard_link(dir.join("newhard1"), dir.join("newhard2")).unwrap();
    std::fs::remove_dir_all(dir.join("opq")).unwrap();
    std::fs::create_dir(dir.join("opq")).unwrap();
    std::fs::write(dir.join("opq/new"), "new").unwrap();
}

fn diff_to_vec(lower: &[Mount], upper: &[Mount], options: &DiffOptions) -> (Vec<u8>, DiffResult) {
    let mut out = Vec::new();
    let result = write_diff(lower, upper, &mut out, options).unwrap();
    (out, result)
}

fn check_result(layer: &[u8], result: &DiffResult) {
    assert_eq!(result.size, layer.len() as u64);
    assert_eq!(
        result.digest,
        format!("sha256:{}", hex::encode(Sha256::digest(layer)))
    );
    assert_eq!(result.media_type, OCI_LAYER_TAR_GZIP);
}

/// Applies `layer` onto a copy of `base` and returns the copy's description.
fn apply_onto_copy(
    base: &Path,
    layer: &[u8],
    scratch: &Path,
    result: &DiffResult,
) -> BTreeMap<String, String> {
    let copy = scratch.join("applied");
    copy_tree(base, &copy);
    let opts = ApplyOptions {
        expected_diff_id: Some(result.diff_id.clone()),
        ..options(2)
    };
    apply_layer(layer, OCI_LAYER_TAR_GZIP, &[bind(&copy, false)], &opts).unwrap();
    describe_tree(&copy)
}

#[test]
fn diff_between_directories_round_trips() {
    let ws = tempfile::tempdir().unwrap();
    let a = ws.path().join("a");
    let b = ws.path().join("b");
    std::fs::create_dir(&a).unwrap();
    make_base(&a);
    copy_tree(&a, &b);
    change_tree(&b);

    let (layer, result) = diff_to_vec(
        &[bind(&a, true)],
        &[bind(&b, true)],
        &DiffOptions::default(),
    );
    check_result(&layer, &result);
    let names: Vec<String> = list_layer(&layer).into_iter().map(|(n, _)| n).collect();
    for expected in [
        ".wh.del.txt",
        ".wh.deldir",
        "same-size.txt",
        "mode.txt",
        "new/",
        "new/dir/file",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
    for unchanged in ["a.txt", "keep/unchanged", "hard1", "fifo"] {
        assert!(
            !names.contains(&unchanged.to_string()),
            "{unchanged} should not be in {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        describe_tree(&b),
        apply_onto_copy(&a, &layer, ws.path(), &result)
    );

    // Same input, same bytes.
    let (again, _) = diff_to_vec(
        &[bind(&a, true)],
        &[bind(&b, true)],
        &DiffOptions::default(),
    );
    assert_eq!(layer, again);
}

struct OverlayFixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

impl OverlayFixture {
    /// An overlay with `lower` (the base tree) below and the changes made through it.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let [lower, upper, work, merged] =
            ["lower", "upper", "work", "merged"].map(|n| base.join(n));
        for d in [&lower, &upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        make_base(&lower);
        let fixture = OverlayFixture {
            _dir: dir,
            base,
            lower,
            upper,
            work,
            merged,
        };
        let guard = MountGuard::mount_all(&[fixture.mount()], &fixture.merged).unwrap();
        change_tree(&fixture.merged);
        guard.unmount().unwrap();
        fixture
    }

    fn mount(&self) -> Mount {
        overlay(&self.upper, &self.work, &[&self.lower])
    }

    fn merged_description(&self) -> BTreeMap<String, String> {
        let guard = MountGuard::mount_all(&[self.mount()], &self.merged).unwrap();
        let description = describe_tree(&self.merged);
        guard.unmount().unwrap();
        description
    }
}

#[test]
fn overlay_upper_directory_is_written_with_oci_whiteouts() {
    let fx = OverlayFixture::new();
    let (layer, result) = diff_to_vec(
        &[bind(&fx.lower, true)],
        &[fx.mount()],
        &DiffOptions::default(),
    );
    check_result(&layer, &result);
    let entries = list_layer(&layer);
    let find = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
    assert_eq!(find(".wh.del.txt"), Some(EntryKind::Regular));
    assert_eq!(find(".wh.deldir"), Some(EntryKind::Regular));
    assert_eq!(find("opq/.wh..wh..opq"), Some(EntryKind::Regular));
    assert_eq!(find("newhard2"), Some(EntryKind::HardLink));
    assert!(
        !entries.iter().any(|(_, k)| *k == EntryKind::CharDevice),
        "{entries:?}"
    );
    let expected = fx.merged_description();

    // Onto a plain copy of the lower layer (whiteouts delete)...
    assert_eq!(
        apply_onto_copy(&fx.lower, &layer, &fx.base, &result),
        expected
    );

    // ...and onto a fresh overlay upper directory (whiteouts become overlayfs ones).
    let upper2 = fx.base.join("upper2");
    let work2 = fx.base.join("work2");
    std::fs::create_dir(&upper2).unwrap();
    std::fs::create_dir(&work2).unwrap();
    let mount2 = overlay(&upper2, &work2, &[&fx.lower]);
    apply_layer(
        &layer[..],
        OCI_LAYER_TAR_GZIP,
        std::slice::from_ref(&mount2),
        &options(2),
    )
    .unwrap();
    let guard = MountGuard::mount_all(&[mount2], &fx.merged).unwrap();
    let got = describe_tree(&fx.merged);
    guard.unmount().unwrap();
    assert_eq!(got, expected);
}

#[test]
fn overlay_against_other_lowers_is_compared_through_read_only_mounts() {
    let fx = OverlayFixture::new();
    // The lower side is an empty directory, not the overlay's lower: no fast path.
    let empty = fx.base.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let options = DiffOptions {
        temp_dir: temp.path().to_path_buf(),
        compression: Compression::Zstd,
        ..DiffOptions::default()
    };
    let (layer, result) = diff_to_vec(&[bind(&empty, true)], &[fx.mount()], &options);
    assert_eq!(result.media_type, crate::layer::OCI_LAYER_TAR_ZSTD);
    assert!(!list_layer(&layer).iter().any(|(n, _)| n.contains(".wh.")));
    assert_eq!(
        std::fs::read_dir(temp.path()).unwrap().count(),
        0,
        "temporary mount left behind"
    );
    let expected = fx.merged_description();
    let copy = fx.base.join("from-empty");
    std::fs::create_dir(&copy).unwrap();
    apply_layer(
        &layer[..],
        crate::layer::OCI_LAYER_TAR_ZSTD,
        &[bind(&copy, false)],
        &super::options(0),
    )
    .unwrap();
    assert_eq!(describe_tree(&copy), expected);
}

#[test]
fn a_parentless_snapshot_is_written_whole() {
    let ws = tempfile::tempdir().unwrap();
    let tree = ws.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    make_base(&tree);
    let (layer, result) = diff_to_vec(&[], &[bind(&tree, true)], &DiffOptions::default());
    check_result(&layer, &result);
    let target = ws.path().join("target");
    std::fs::create_dir(&target).unwrap();
    apply_layer(
        &layer[..],
        OCI_LAYER_TAR_GZIP,
        &[bind(&target, false)],
        &options(2),
    )
    .unwrap();
    assert_eq!(describe_tree(&target), describe_tree(&tree));
}

/// An upper and a lower directory described as the snapshotter would, never mounted.
fn raw_overlay() -> (tempfile::TempDir, PathBuf, PathBuf, Mount) {
    let dir = tempfile::tempdir().unwrap();
    let [lower, upper, work] = ["lower", "upper", "work"].map(|n| dir.path().join(n));
    for d in [&lower, &upper, &work] {
        std::fs::create_dir(d).unwrap();
    }
    let mount = overlay(&upper, &work, &[&lower]);
    (dir, lower, upper, mount)
}

#[test]
fn an_opaque_upper_root_becomes_a_root_opaque_marker() {
    let (_dir, lower, upper, mount) = raw_overlay();
    std::fs::write(upper.join("f"), b"f").unwrap();
    rustix::fs::setxattr(
        &upper,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let (layer, _) = diff_to_vec(&[bind(&lower, true)], &[mount], &DiffOptions::default());
    let names: Vec<String> = list_layer(&layer).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [".wh..wh..opq", "f"]);
}

#[test]
fn upper_objects_that_live_partly_in_lower_layers_are_refused() {
    let (_dir, lower, upper, mount) = raw_overlay();
    std::fs::write(upper.join("meta-only"), b"").unwrap();
    rustix::fs::setxattr(
        upper.join("meta-only"),
        "trusted.overlay.metacopy",
        b"",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let err = write_diff(
        &[bind(&lower, true)],
        &[mount],
        Vec::new(),
        &DiffOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::UnsupportedEntry { .. }), "{err}");
    assert!(err.to_string().contains("meta-only"), "{err}");
}
