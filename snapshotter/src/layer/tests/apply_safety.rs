//! Hostile layers: each must fail with a clear error (or be confined to the root) and
//! must never write outside the root. Every case runs with and without file workers,
//! and in both whiteout styles where whiteouts are involved.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::layer::archive::EntryKind;

fn both_worker_modes(check: impl Fn(usize)) {
    check(0);
    check(2);
}

fn expect_unsafe(result: Result<Applied, LayerError>, what: &str) -> String {
    let err = result.expect_err("hostile layer must be refused");
    assert!(matches!(err, LayerError::UnsafePath { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(what),
        "{message:?} should mention {what:?}"
    );
    message
}

/// Applies onto an overlay upper directory (no mount needed for the apply itself).
fn apply_upper(ws: &Workspace, tar: &[u8], workers: usize) -> Result<Applied, LayerError> {
    let lower = ws.dir.path().join("lower");
    let work = ws.dir.path().join("work");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mount = overlay(&ws.root, &work, &[&lower]);
    let result = apply_layer(tar, OCI_LAYER_TAR, &[mount], &options(workers));
    std::fs::remove_dir_all(&lower).unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    result
}

#[test]
fn dot_dot_entries_are_refused() {
    both_worker_modes(|workers| {
        for name in ["../escape", "a/../../escape", "ok/../../../outside/secret"] {
            let ws = Workspace::new();
            let tar = TarBuilder::new().file(name, b"pwned").finish();
            let message = expect_unsafe(apply_plain(&ws.root, &tar, workers), "`..`");
            assert!(message.contains(name), "{message}");
            ws.assert_outside_untouched();
            assert!(!ws.dir.path().join("escape").exists());
        }
    });
}

#[test]
fn absolute_entries_are_refused() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let target = format!("{}/secret", ws.outside_str());
        let tar = TarBuilder::new().file(&target, b"pwned").finish();
        expect_unsafe(apply_plain(&ws.root, &tar, workers), "absolute");
        ws.assert_outside_untouched();
    });
}

#[test]
fn writing_through_a_symlink_that_points_outside_is_refused() {
    both_worker_modes(|workers| {
        // Absolute and relative spellings of "outside": a parent path through a link that
        // leaves the root is refused outright.
        for spelling in ["absolute", "../outside", "../../../outside"] {
            let ws = Workspace::new();
            let target = match spelling {
                "absolute" => ws.outside_str(),
                relative => relative.to_string(),
            };
            let tar = TarBuilder::new()
                .symlink("evil", &target)
                .file("evil/secret", b"pwned")
                .file("evil/new", b"pwned")
                .finish();
            let message = expect_unsafe(apply_plain(&ws.root, &tar, workers), "symlink");
            assert!(message.contains("evil"), "{message}");
            ws.assert_outside_untouched();
        }
    });
}

#[test]
fn absolute_symlinks_are_never_followed() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let outside = ws.outside_str();
        // Even where the root has its own copy of the outside path, an entry whose parent
        // is an absolute link is refused rather than clamped into the root.
        let tar = TarBuilder::new()
            .dir(&outside[1..], 0o755)
            .symlink("evil", &outside)
            .file("evil/secret", b"inside")
            .finish();
        expect_unsafe(apply_plain(&ws.root, &tar, workers), "absolute");
        assert!(!ws.root.join(&outside[1..]).join("secret").exists());
        ws.assert_outside_untouched();
    });
}

#[test]
fn mode_is_never_applied_through_a_symlink() {
    // containerd's CVE-2021-32760: a symlink, then an entry of the same name whose mode
    // was applied by path, following the symlink.
    both_worker_modes(|workers| {
        for second_kind in [EntryKind::Regular, EntryKind::Directory, EntryKind::Fifo] {
            let ws = Workspace::new();
            let secret = format!("{}/secret", ws.outside_str());
            let mut second = entry("link", second_kind);
            second.mode = 0o777;
            second.uid = 1234;
            let tar = TarBuilder::new()
                .symlink("link", &secret)
                .entry(second, b"")
                .finish();
            let message = expect_unsafe(apply_plain(&ws.root, &tar, workers), "CVE-2021-32760");
            assert!(message.contains("link"), "{second_kind:?}: {message}");
            ws.assert_outside_untouched();
            let meta = std::fs::symlink_metadata(ws.root.join("link")).unwrap();
            assert!(meta.file_type().is_symlink(), "{second_kind:?}");
        }
    });
}

#[test]
fn hard_links_to_outside_are_refused() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let tar = TarBuilder::new()
            .hardlink("h", "../outside/secret")
            .finish();
        expect_unsafe(apply_plain(&ws.root, &tar, workers), "`..`");
        ws.assert_outside_untouched();

        let ws = Workspace::new();
        let secret = format!("{}/secret", ws.outside_str());
        let tar = TarBuilder::new().hardlink("h", &secret).finish();
        expect_unsafe(apply_plain(&ws.root, &tar, workers), "absolute");
        ws.assert_outside_untouched();

        // Through a symlinked directory that points outside: refused.
        let ws = Workspace::new();
        let tar = TarBuilder::new()
            .symlink("s", &ws.outside_str())
            .hardlink("h", "s/secret")
            .finish();
        let err = apply_plain(&ws.root, &tar, workers).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::UnsafePath { .. } | LayerError::MissingLinkTarget { .. }
            ),
            "{err}"
        );
        assert!(!ws.root.join("h").exists());
        ws.assert_outside_untouched();
    });
}

#[test]
fn hard_link_to_a_symlink_links_the_symlink_itself() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let secret = format!("{}/secret", ws.outside_str());
        let tar = TarBuilder::new()
            .symlink("s", &secret)
            .hardlink("h", "s")
            .finish();
        apply_plain(&ws.root, &tar, workers).unwrap();
        let meta = std::fs::symlink_metadata(ws.root.join("h")).unwrap();
        assert!(meta.file_type().is_symlink());
        assert_eq!(meta.nlink(), 2);
        ws.assert_outside_untouched();
    });
}

#[test]
fn symlink_to_parent_then_nested_entries_are_refused() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let tar = TarBuilder::new()
            .symlink("a", "..")
            .file("a/x/y", b"data")
            .file("a/outside/secret", b"pwned")
            .finish();
        let message = expect_unsafe(
            apply_plain(&ws.root, &tar, workers),
            "outside the layer root",
        );
        assert!(message.contains("a/x/y"), "{message}");
        assert!(!ws.root.join("x").exists());
        assert!(!ws.dir.path().join("x").exists());
        ws.assert_outside_untouched();
    });
}

#[test]
fn escaping_whiteouts_are_refused() {
    both_worker_modes(|workers| {
        for (name, what) in [
            ("../.wh.outside", "`..`"),
            ("../outside/.wh.secret", "`..`"),
            (".wh.", "names no file"),
            (".wh..", "`.` or `..`"),
            ("dir/.wh...", "`.` or `..`"),
        ] {
            let ws = Workspace::new();
            let tar = TarBuilder::new().file(name, b"").finish();
            expect_unsafe(apply_plain(&ws.root, &tar, workers), what);
            ws.assert_outside_untouched();
            let ws = Workspace::new();
            expect_unsafe(apply_upper(&ws, &tar, workers), what);
            ws.assert_outside_untouched();
        }
    });
}

#[test]
fn whiteouts_through_symlinks_do_not_reach_outside() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let tar = TarBuilder::new()
            .symlink("evil", &ws.outside_str())
            .file("evil/.wh.secret", b"")
            .file("evil/.wh..wh..opq", b"")
            .finish();
        // Deleting: the whiteout's directory is reached only through a link out of the root.
        expect_unsafe(apply_plain(&ws.root, &tar, workers), "symlink");
        ws.assert_outside_untouched();
        // Overlay style: the whiteout's directory cannot be created through the symlink.
        let ws = Workspace::new();
        let tar = TarBuilder::new()
            .symlink("evil", &ws.outside_str())
            .file("evil/.wh.secret", b"")
            .finish();
        let err = apply_upper(&ws, &tar, workers).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::UnsafePath { .. } | LayerError::NotADirectory { .. }
            ),
            "{err}"
        );
        ws.assert_outside_untouched();
    });
}

#[test]
fn pax_size_disagreeing_with_ustar_is_refused() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        // A reader trusting the ustar size would see a second, hidden entry in the data.
        let hidden = TarBuilder::new()
            .file("../outside/secret", b"pwned")
            .finish();
        let tar = TarBuilder::new()
            .pax(&[(b"size", hidden.len().to_string().as_bytes())])
            .raw_header(&entry("innocent", EntryKind::Regular), b'0', 0, &hidden)
            .finish();
        let err = apply_plain(&ws.root, &tar, workers).unwrap_err();
        assert!(matches!(err, LayerError::PaxSizeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("innocent"), "{err}");
        ws.assert_outside_untouched();
    });
}

#[test]
fn huge_pax_headers_and_names_are_bounded() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let huge = vec![b'a'; 4 << 20];
        let tar = TarBuilder::new()
            .pax(&[(b"path", &huge)])
            .file("x", b"")
            .finish();
        let err = apply_plain(&ws.root, &tar, workers).unwrap_err();
        assert!(matches!(err, LayerError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("PAX extended header is too large"),
            "{err}"
        );

        let long_header = entry("././@LongLink", EntryKind::Regular);
        let tar = TarBuilder::new()
            .raw_header(&long_header, b'L', 1 << 30, b"")
            .finish();
        let err = apply_plain(&ws.root, &tar, workers).unwrap_err();
        assert!(
            err.to_string().contains("GNU long name is too large"),
            "{err}"
        );
        ws.assert_outside_untouched();
    });
}

#[test]
fn a_root_entry_that_is_not_a_directory_is_refused() {
    let ws = Workspace::new();
    let tar = TarBuilder::new().symlink("./", "/").finish();
    expect_unsafe(apply_plain(&ws.root, &tar, 0), "root");
    ws.assert_outside_untouched();
}

#[test]
fn overlay_xattrs_in_a_layer_are_ignored() {
    let ws = Workspace::new();
    let mut dir = entry("d", EntryKind::Directory);
    dir.xattrs = vec![(b"trusted.overlay.redirect".to_vec(), b"/etc".to_vec())];
    let tar = TarBuilder::new().entry(dir, b"").finish();
    apply_upper(&ws, &tar, 0).unwrap();
    assert_eq!(xattr(&ws.root.join("d"), "trusted.overlay.redirect"), None);
    let mode = std::fs::metadata(ws.root.join("d"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}
