//! What a well-formed layer turns into on disk.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;
use crate::layer::archive::EntryKind;
use crate::layer::compression::{OCI_LAYER_TAR_GZIP, OCI_LAYER_TAR_ZSTD};
use crate::mount::MountGuard;

fn both_worker_modes(check: impl Fn(usize)) {
    check(0);
    check(2);
}

/// A file capability granting CAP_NET_RAW (VFS_CAP_REVISION_2, effective).
fn net_raw_capability() -> Vec<u8> {
    let mut blob = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        blob.extend_from_slice(&word.to_le_bytes());
    }
    blob
}

fn mtime_of(path: &Path) -> (i64, i64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.mtime(), meta.mtime_nsec())
}

#[test]
fn ownership_modes_times_xattrs_and_special_files_are_kept() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let mut suid = entry("d/suid", EntryKind::Regular);
        suid.mode = 0o4755;
        suid.uid = 1000;
        suid.gid = 1001;
        let mut cap = entry("d/ping", EntryKind::Regular);
        cap.uid = 1000;
        cap.mode = 0o755;
        cap.xattrs = vec![
            (b"security.capability".to_vec(), net_raw_capability()),
            (b"user.note".to_vec(), b"hello".to_vec()),
        ];
        let mut link = entry("d/link", EntryKind::Symlink);
        link.link_name = b"suid".to_vec();
        link.uid = 1000;
        link.gid = 1000;
        link.mtime.seconds = T0 + 7;
        let mut fifo = entry("d/fifo", EntryKind::Fifo);
        fifo.mode = 0o600;
        let mut null = entry("d/null", EntryKind::CharDevice);
        null.mode = 0o666;
        null.device = (1, 3);
        let mut sticky = entry("tmp", EntryKind::Directory);
        sticky.mode = 0o1777;
        let tar = TarBuilder::new()
            .dir("d", 0o750)
            // Sub-second times travel in a PAX record.
            .pax(&[(b"mtime", format!("{}.5", T0 + 5).as_bytes())])
            .entry(suid, b"#!/bin/sh\n")
            .entry(cap, b"binary")
            .entry(link, b"")
            .hardlink("d/hard", "d/suid")
            .entry(fifo, b"")
            .entry(null, b"")
            .entry(sticky, b"")
            .finish();
        let applied = apply_plain(&ws.root, &tar, workers).unwrap();
        assert_eq!(applied.size, tar.len() as u64);

        let d = ws.root.join("d");
        let meta = std::fs::metadata(d.join("suid")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid bit survives chown");
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
        assert_eq!(mtime_of(&d.join("suid")), (T0 + 5, 500_000_000));
        assert_eq!(meta.nlink(), 2);
        assert_eq!(std::fs::read(d.join("hard")).unwrap(), b"#!/bin/sh\n");

        assert_eq!(
            xattr(&d.join("ping"), "security.capability"),
            Some(net_raw_capability()),
            "capability survives chown"
        );
        assert_eq!(xattr(&d.join("ping"), "user.note"), Some(b"hello".to_vec()));

        let meta = std::fs::symlink_metadata(d.join("link")).unwrap();
        assert!(meta.file_type().is_symlink());
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
        assert_eq!(mtime_of(&d.join("link")).0, T0 + 7);

        let meta = std::fs::symlink_metadata(d.join("fifo")).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let meta = std::fs::symlink_metadata(d.join("null")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(meta.mode() & 0o7777, 0o666);

        let meta = std::fs::metadata(ws.root.join("tmp")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o1777);
        // Set after its files were written.
        assert_eq!(mtime_of(&d), (T0, 0));
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o7777, 0o750);
    });
}

#[test]
fn long_names_and_large_files_are_extracted() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let long_dir = "l".repeat(120);
        let long_file = format!("{long_dir}/{}", "f".repeat(200));
        let big: Vec<u8> = (0..9 << 20).map(|i: u32| (i % 251) as u8).collect();
        let tar = TarBuilder::new()
            .file(&long_file, b"long")
            .file("big", &big)
            .finish();
        apply_plain(&ws.root, &tar, workers).unwrap();
        assert_eq!(std::fs::read(ws.root.join(&long_file)).unwrap(), b"long");
        assert_eq!(std::fs::read(ws.root.join("big")).unwrap(), big);
        // The implicit parent is 0755 root.
        let meta = std::fs::metadata(ws.root.join(&long_dir)).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
    });
}

#[test]
fn existing_objects_are_replaced_but_directories_are_kept() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let root = &ws.root;
        std::fs::write(root.join("was-file"), b"old").unwrap();
        std::fs::create_dir_all(root.join("was-dir/sub")).unwrap();
        std::fs::write(root.join("was-dir/sub/f"), b"old").unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("was-link")).unwrap();
        std::fs::create_dir(root.join("kept")).unwrap();
        std::fs::write(root.join("kept/old"), b"old").unwrap();
        std::fs::write(root.join("over-written"), b"old").unwrap();

        let tar = TarBuilder::new()
            .dir("was-file", 0o700)
            .file("was-dir", b"new")
            .dir("was-link", 0o755)
            .dir("kept", 0o711)
            .file("over-written", b"new")
            .finish();
        apply_plain(root, &tar, workers).unwrap();
        assert!(root.join("was-file").is_dir());
        assert_eq!(std::fs::read(root.join("was-dir")).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(root.join("was-link"))
            .unwrap()
            .is_dir());
        assert_eq!(std::fs::read(root.join("kept/old")).unwrap(), b"old");
        let mode = std::fs::metadata(root.join("kept")).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o711);
        assert_eq!(std::fs::read(root.join("over-written")).unwrap(), b"new");
    });
}

#[test]
fn later_entries_for_the_same_path_win() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let tar = TarBuilder::new()
            .file("f", b"first")
            .file("f", b"second")
            .hardlink("g", "f")
            .file("x", b"file")
            .dir("x", 0o755)
            .file("x/inner", b"inner")
            .dir("y", 0o755)
            .file("y/inner", b"inner")
            .file("y", b"file now")
            .finish();
        apply_plain(&ws.root, &tar, workers).unwrap();
        assert_eq!(std::fs::read(ws.root.join("f")).unwrap(), b"second");
        assert_eq!(std::fs::metadata(ws.root.join("g")).unwrap().nlink(), 2);
        assert_eq!(std::fs::read(ws.root.join("x/inner")).unwrap(), b"inner");
        assert_eq!(std::fs::read(ws.root.join("y")).unwrap(), b"file now");
    });
}

/// lower/ with: gone, keep, dir/{a,b}, opq/old, parent (0750, owned 7:8)
fn make_lower(dir: &Path) {
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    std::fs::create_dir_all(dir.join("opq")).unwrap();
    std::fs::create_dir_all(dir.join("parent")).unwrap();
    for f in ["gone", "keep", "dir/a", "dir/b", "opq/old"] {
        std::fs::write(dir.join(f), f.as_bytes()).unwrap();
    }
    std::fs::set_permissions(
        dir.join("parent"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::chown(dir.join("parent"), Some(7), Some(8)).unwrap();
}

fn whiteout_layer() -> Vec<u8> {
    TarBuilder::new()
        .file(".wh.gone", b"")
        .file("dir/.wh.a", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"new")
        .file("parent/child/file", b"deep")
        .file("same", b"this layer")
        .file(".wh.same", b"")
        .finish()
}

#[test]
fn whiteouts_become_overlay_whiteouts_in_an_upper_directory() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        let base = ws.dir.path();
        let lower = base.join("lower");
        let work = base.join("work");
        let merged = base.join("merged");
        for d in [&lower, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        make_lower(&lower);
        let mount = overlay(&ws.root, &work, &[&lower]);
        apply_layer(
            &whiteout_layer()[..],
            OCI_LAYER_TAR,
            std::slice::from_ref(&mount),
            &options(workers),
        )
        .unwrap();

        let upper = &ws.root;
        let gone = std::fs::symlink_metadata(upper.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert_eq!(
            xattr(&upper.join("opq"), "trusted.overlay.opaque"),
            Some(b"y".to_vec())
        );
        // The missing parent took the lower directory's metadata.
        let parent = std::fs::metadata(upper.join("parent")).unwrap();
        assert_eq!(parent.mode() & 0o7777, 0o750);
        assert_eq!((parent.uid(), parent.gid()), (7, 8));
        assert_eq!(std::fs::read(upper.join("same")).unwrap(), b"this layer");

        let guard = MountGuard::mount_all(&[mount], &merged).unwrap();
        let mut top: Vec<_> = std::fs::read_dir(&merged)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["dir", "keep", "opq", "parent", "same"]);
        let opq: Vec<_> = std::fs::read_dir(merged.join("opq"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(opq, ["new"]);
        assert!(!merged.join("dir/a").exists());
        assert!(merged.join("dir/b").exists());
        assert_eq!(
            std::fs::read(merged.join("parent/child/file")).unwrap(),
            b"deep"
        );
        guard.unmount().unwrap();
    });
}

#[test]
fn whiteouts_delete_in_a_plain_directory() {
    both_worker_modes(|workers| {
        let ws = Workspace::new();
        make_lower(&ws.root);
        apply_plain(&ws.root, &whiteout_layer(), workers).unwrap();
        let root = &ws.root;
        assert!(std::fs::symlink_metadata(root.join("gone")).is_err());
        assert!(!root.join("dir/a").exists());
        assert!(root.join("dir/b").exists());
        assert!(!root.join("opq/old").exists());
        assert_eq!(std::fs::read(root.join("opq/new")).unwrap(), b"new");
        assert_eq!(std::fs::read(root.join("same")).unwrap(), b"this layer");
        assert_eq!(
            std::fs::read(root.join("parent/child/file")).unwrap(),
            b"deep"
        );
    });
}

#[test]
fn other_mount_sets_are_mounted_for_the_apply_and_unmounted_after() {
    let ws = Workspace::new();
    let base = ws.dir.path().join("bottom");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(base.join("old"), b"old").unwrap();
    let temp_dir = tempfile::tempdir().unwrap();
    // Two stacked bind mounts: the top one (the workspace root) receives the files.
    let mounts = [bind(&base, false), bind(&ws.root, false)];
    let tar = TarBuilder::new()
        .file("new", b"new")
        .file(".wh.old", b"")
        .finish();
    let opts = ApplyOptions {
        temp_dir: temp_dir.path().to_path_buf(),
        ..options(2)
    };
    apply_layer(&tar[..], OCI_LAYER_TAR, &mounts, &opts).unwrap();
    assert_eq!(std::fs::read(ws.root.join("new")).unwrap(), b"new");
    assert!(!base.join("new").exists());
    assert!(base.join("old").exists());
    assert_eq!(
        std::fs::read_dir(temp_dir.path()).unwrap().count(),
        0,
        "temporary mount point left behind"
    );
}

#[test]
fn compressed_layers_give_the_diff_id_of_the_plain_tar() {
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/hostname", b"berth\n")
        .finish();
    let plain_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    let gzip = compress(&tar, Compression::Gzip);
    let zstd = compress(&tar, Compression::Zstd);
    for (data, media_type) in [
        (&tar, OCI_LAYER_TAR),
        (&gzip, OCI_LAYER_TAR_GZIP),
        (&zstd, OCI_LAYER_TAR_ZSTD),
        (&gzip, crate::layer::DOCKER_LAYER_TAR_GZIP),
        // Mislabelled: the magic bytes decide.
        (&gzip, OCI_LAYER_TAR),
        (&tar, OCI_LAYER_TAR_GZIP),
    ] {
        let ws = Workspace::new();
        let opts = ApplyOptions {
            expected_diff_id: Some(plain_id.clone()),
            ..ApplyOptions::default()
        };
        let applied = apply_layer(&data[..], media_type, &[bind(&ws.root, false)], &opts).unwrap();
        assert_eq!(applied.diff_id, plain_id);
        assert_eq!(applied.size, tar.len() as u64);
        assert_eq!(
            std::fs::read(ws.root.join("etc/hostname")).unwrap(),
            b"berth\n"
        );
    }
}

fn noisy_layer() -> Vec<u8> {
    // Incompressible content so that a cut lands inside compressed data.
    let data: Vec<u8> = (0u64..200_000)
        .map(|i| {
            (i.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 33) as u8
        })
        .collect();
    TarBuilder::new().file("noise", &data).finish()
}

#[test]
fn truncated_or_corrupt_compressed_layers_fail_clearly() {
    let tar = noisy_layer();
    for (compression, media_type) in [
        (Compression::Gzip, OCI_LAYER_TAR_GZIP),
        (Compression::Zstd, OCI_LAYER_TAR_ZSTD),
    ] {
        let good = compress(&tar, compression);
        let truncated = &good[..good.len() / 2];
        let mut corrupt = good.clone();
        let middle = corrupt.len() / 2;
        for b in &mut corrupt[middle..middle + 64] {
            *b ^= 0x5a;
        }
        let mut bad_trailer = good.clone();
        let last = bad_trailer.len() - 5;
        bad_trailer[last] ^= 0xff;
        for (case, data) in [
            ("truncated", truncated),
            ("corrupt", &corrupt[..]),
            ("trailer", &bad_trailer[..]),
        ] {
            if compression == Compression::Zstd && case == "trailer" {
                continue; // zstd frames carry no mandatory checksum
            }
            let ws = Workspace::new();
            let err =
                apply_layer(data, media_type, &[bind(&ws.root, false)], &options(2)).unwrap_err();
            assert!(
                matches!(err, LayerError::CorruptCompression { .. }),
                "{case} {}: {err}",
                compression.name()
            );
            assert!(err.to_string().contains(compression.name()), "{err}");
        }
    }
}

#[test]
fn a_wrong_diff_id_is_reported() {
    let ws = Workspace::new();
    let tar = TarBuilder::new().file("f", b"x").finish();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let opts = ApplyOptions {
        expected_diff_id: Some(wrong.clone()),
        ..options(0)
    };
    let err = apply_layer(&tar[..], OCI_LAYER_TAR, &[bind(&ws.root, false)], &opts).unwrap_err();
    match err {
        LayerError::DiffIdMismatch { expected, actual } => {
            assert_eq!(expected, wrong);
            assert_eq!(
                actual,
                format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
            );
        }
        other => panic!("unexpected error {other}"),
    }
    let opts = ApplyOptions {
        expected_diff_id: Some("md5:abc".into()),
        ..options(0)
    };
    let err = apply_layer(&tar[..], OCI_LAYER_TAR, &[bind(&ws.root, false)], &opts).unwrap_err();
    assert!(matches!(err, LayerError::InvalidDigest(_)), "{err}");
}

#[test]
fn oversized_layers_are_cut_off() {
    let ws = Workspace::new();
    let tar = noisy_layer();
    let opts = ApplyOptions {
        max_uncompressed_size: 100_000,
        ..options(2)
    };
    let err = apply_layer(&tar[..], OCI_LAYER_TAR, &[bind(&ws.root, false)], &opts).unwrap_err();
    assert!(
        matches!(err, LayerError::TooLarge { limit: 100_000, .. }),
        "{err}"
    );
}

#[test]
fn unusable_media_types_and_mounts_are_refused() {
    let ws = Workspace::new();
    let tar = TarBuilder::new().file("f", b"x").finish();
    let err = apply_layer(
        &tar[..],
        "application/vnd.oci.image.manifest.v1+json",
        &[bind(&ws.root, false)],
        &options(0),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::UnsupportedMediaType(_)), "{err}");
    let err = apply_layer(
        &tar[..],
        OCI_LAYER_TAR,
        &[bind(&ws.root, true)],
        &options(0),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::UnsupportedMounts(_)), "{err}");
    let err = apply_layer(&tar[..], OCI_LAYER_TAR, &[], &options(0)).unwrap_err();
    assert!(matches!(err, LayerError::UnsupportedMounts(_)), "{err}");
    assert_eq!(std::fs::read_dir(&ws.root).unwrap().count(), 0);
}

#[test]
fn an_upper_directory_over_128_lower_layers_needs_no_mount() {
    let ws = Workspace::new();
    let work = ws.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let lowers: Vec<_> = (0..128)
        .map(|i| {
            let dir = ws
                .dir
                .path()
                .join(format!("layers/{i:03}-{}", "x".repeat(24)));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        })
        .collect();
    // Only the bottom layer has `etc`, with a distinctive mode.
    let etc = lowers[127].join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::set_permissions(&etc, std::os::unix::fs::PermissionsExt::from_mode(0o705)).unwrap();
    let lower_refs: Vec<&Path> = lowers.iter().map(|p| p.as_path()).collect();
    let mount = overlay(&ws.root, &work, &lower_refs);
    assert!(mount.options.iter().map(|o| o.len()).sum::<usize>() > 4096);
    let tar = TarBuilder::new().file("etc/hostname", b"deep\n").finish();
    apply_layer(&tar[..], OCI_LAYER_TAR, &[mount], &options(2)).unwrap();
    assert_eq!(
        std::fs::read(ws.root.join("etc/hostname")).unwrap(),
        b"deep\n"
    );
    let mode = std::fs::metadata(ws.root.join("etc")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o705);
}
