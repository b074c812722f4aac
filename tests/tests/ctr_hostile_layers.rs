//! Importing images whose layer is hostile: nothing may be written outside the
//! snapshot, and (berth) the import fails with a clear error and commits nothing.

use std::path::{Path, PathBuf};

use berth_tests::fixtures::{hostile_oci_archive, Canary, HostileLayer};
use berth_tests::steps::snapshots_ls;
use berth_tests::{ctr, ctr_ok, unique_id, Daemon};

/// Every path below `dir` (down to `depth` levels) whose file name starts with `prefix`.
fn find_named(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path.clone());
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && depth > 1 {
            find_named(&path, prefix, depth - 1, found);
        }
    }
}

/// Whether `path` lies inside the `fs` directory of one of the daemon's snapshots.
fn inside_a_snapshot(daemon: &Daemon, path: &Path) -> bool {
    daemon.snapshot_dirs_on_disk().iter().any(|dir| {
        let fs = dir.join("fs");
        path.starts_with(&fs) && path != fs
    })
}

/// Whether containerd 1.6 itself fails this import (it cleans hostile names into the
/// root instead of refusing them, so only broken streams and links it cannot resolve fail).
fn containerd_fails(case: HostileLayer) -> bool {
    matches!(
        case,
        HostileLayer::TruncatedGzip
            | HostileLayer::CorruptGzip
            | HostileLayer::HardlinkOutside
            | HostileLayer::WhiteoutEscape
    )
}

fn import_hostile(case: HostileLayer) {
    let daemon = Daemon::start();
    let canary = Canary::create(&daemon.dir().join("canary")).unwrap();
    let token = unique_id("t");
    let archive = daemon.dir().join("hostile.tar");
    let name = format!("localhost/hostile-{}:latest", case.name());
    let image = hostile_oci_archive(&archive, &name, case, &canary, &token).unwrap();
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);

    let out = ctr(
        &daemon,
        &["-n", &ns, "images", "import", archive.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{}: import {} {stderr}", case.name(), out.status);

    assert_eq!(
        canary.problems(),
        Vec::<String>::new(),
        "{} reached the canary",
        case.name()
    );
    let mut escaped = Vec::new();
    let prefix = format!("escaped-{token}");
    find_named(daemon.dir(), &prefix, 12, &mut escaped);
    find_named(Path::new("/tmp"), &prefix, 2, &mut escaped);
    find_named(Path::new("/"), &prefix, 1, &mut escaped);
    for path in &escaped {
        assert!(
            inside_a_snapshot(&daemon, path),
            "{} wrote {path:?} outside every snapshot",
            case.name()
        );
    }

    if daemon.kind().is_berthd() || containerd_fails(case) {
        assert!(
            !out.status.success(),
            "{}: the import succeeded",
            case.name()
        );
        assert!(
            stderr.trim().len() > 10,
            "{}: no error message",
            case.name()
        );
        // Berth-only: nothing of the hostile layer was committed.
        if daemon.kind().is_berthd() {
            let chain = image.chain_ids();
            let committed = snapshots_ls(&daemon, &ns);
            assert!(
                !committed.iter().any(|s| s.key == chain[0]),
                "{committed:?}"
            );
        }
    }
    // The daemon still serves.
    ctr_ok(&daemon, &["version"]);
}

#[test]
fn dotdot_path() {
    import_hostile(HostileLayer::DotDotPath);
}

#[test]
fn absolute_path() {
    import_hostile(HostileLayer::AbsolutePath);
}

#[test]
fn symlink_escape_then_write_through_it() {
    import_hostile(HostileLayer::SymlinkEscapeThenWrite);
}

#[test]
fn symlink_then_chmod_through_it_cve_2021_32760() {
    import_hostile(HostileLayer::SymlinkThenChmod);
}

#[test]
fn hardlink_to_a_file_outside() {
    import_hostile(HostileLayer::HardlinkOutside);
}

#[test]
fn dotdot_symlink_then_nested_entry() {
    import_hostile(HostileLayer::DotDotSymlinkThenNested);
}

#[test]
fn whiteout_escape() {
    import_hostile(HostileLayer::WhiteoutEscape);
}

#[test]
fn pax_size_disagrees_with_ustar_size() {
    import_hostile(HostileLayer::PaxSizeMismatch);
}

#[test]
fn truncated_gzip() {
    import_hostile(HostileLayer::TruncatedGzip);
}

#[test]
fn corrupt_gzip() {
    import_hostile(HostileLayer::CorruptGzip);
}

#[test]
fn every_case_has_a_test() {
    assert_eq!(HostileLayer::ALL.len(), 10);
}
