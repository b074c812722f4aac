//! Real mounts in temporary directories (these tests need root). Every mount is made
//! through a [`MountGuard`] or undone by one, so a failing test leaves nothing mounted.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::options::MountOptions;
use super::overlay::mount_with_mount_syscall;
use super::*;

/// Whether `path` is currently a mount point of this process's mount namespace.
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let path = fs::canonicalize(path).expect("mount point exists");
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(point) == path)
}

/// How many mounts exist at or below `path`.
fn mounts_at_or_below(path: &Path) -> usize {
    let path = fs::canonicalize(path).expect("directory exists");
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(&path))
        .count()
}

/// Undoes whatever is mounted on a directory when dropped (for mounts a test makes by
/// other means than [`MountGuard`]).
struct Unmounter(PathBuf);

impl Drop for Unmounter {
    fn drop(&mut self) {
        let _ = unmount_all(&self.0);
    }
}

/// `count` lower layers, each with a file of its own and a file `shared` that every layer
/// has (with the layer's number in it), under a deliberately long directory so that the
/// absolute overlay options are longer than one page.
fn make_layers(base: &Path, count: usize) -> Vec<PathBuf> {
    let deep = base.join("a-directory-name-long-enough-to-matter");
    (0..count)
        .map(|i| {
            let dir = deep.join(format!("layer-{i:03}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("file-{i:03}")), format!("{i}")).unwrap();
            fs::write(dir.join("shared"), format!("{i}")).unwrap();
            dir
        })
        .collect()
}

/// An overlay mount with `lowers` (top first) and, if given, an upper and work directory.
fn overlay_mount(lowers: &[PathBuf], upper_and_work: Option<(&Path, &Path)>) -> Mount {
    let mut options = Vec::new();
    if let Some((upper, work)) = upper_and_work {
        options.push(format!("workdir={}", work.display()));
        options.push(format!("upperdir={}", upper.display()));
    }
    let lowers: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    options.push(format!("lowerdir={}", lowers.join(":")));
    Mount {
        kind: "overlay".to_string(),
        source: "overlay".to_string(),
        options,
    }
}

fn mkdir(path: PathBuf) -> PathBuf {
    fs::create_dir_all(&path).unwrap();
    path
}

/// Checks the merged view of [`make_layers`] layers with the topmost layer being number
/// `count - 1` first in the list.
fn assert_merged(target: &Path, count: usize) {
    assert_eq!(fs::read_to_string(target.join("file-000")).unwrap(), "0");
    let top = count - 1;
    assert_eq!(
        fs::read_to_string(target.join(format!("file-{top:03}"))).unwrap(),
        top.to_string()
    );
    assert_eq!(
        fs::read_to_string(target.join("shared")).unwrap(),
        top.to_string(),
        "the first lowerdir must be the top layer"
    );
}

#[test]
fn a_128_layer_overlay_mounts_with_the_per_layer_api() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layers = make_layers(tmp.path(), 128);
    layers.reverse(); // top first, as lowerdir lists them
    let upper = mkdir(tmp.path().join("upper"));
    let work = mkdir(tmp.path().join("work"));
    let target = mkdir(tmp.path().join("merged"));
    let mount = overlay_mount(&layers, Some((&upper, &work)));
    assert!(
        mount.options.join(",").len() > 4096,
        "the test must exceed one page of options to mean anything"
    );

    let guard = MountGuard::mount_all(&[mount], &target).unwrap();
    assert!(is_mount_point(&target));
    assert_merged(&target, 128);
    fs::write(target.join("new"), b"written").unwrap();
    assert_eq!(fs::read(upper.join("new")).unwrap(), b"written");
    guard.unmount().unwrap();
    assert!(!is_mount_point(&target));
}

#[test]
fn a_128_layer_overlay_mounts_with_mount2_and_relative_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layers = make_layers(tmp.path(), 128);
    layers.reverse();
    let upper = mkdir(tmp.path().join("upper"));
    let work = mkdir(tmp.path().join("work"));
    let target = mkdir(tmp.path().join("merged"));
    let mount = overlay_mount(&layers, Some((&upper, &work)));
    assert!(mount.options.join(",").len() > 4096);
    let cwd_before = std::env::current_dir().unwrap();

    let _undo = Unmounter(target.clone());
    // The classic path, as taken on kernels without the per-layer API.
    mount_with_mount_syscall("overlay", &target, &MountOptions::parse(&mount.options)).unwrap();
    assert_eq!(
        std::env::current_dir().unwrap(),
        cwd_before,
        "the process's working directory must not move"
    );
    assert!(is_mount_point(&target));
    assert_merged(&target, 128);
    fs::write(target.join("new"), b"written").unwrap();
    assert_eq!(fs::read(upper.join("new")).unwrap(), b"written");
}

#[test]
fn mount2_path_with_short_options_mounts_directly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layers = make_layers(tmp.path(), 3);
    layers.reverse();
    let target = mkdir(tmp.path().join("merged"));
    let mount = overlay_mount(&layers, None);
    let _undo = Unmounter(target.clone());
    mount_with_mount_syscall("overlay", &target, &MountOptions::parse(&mount.options)).unwrap();
    assert_merged(&target, 3);
    let err = fs::write(target.join("x"), b"x").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EROFS),
        "no upperdir: read-only"
    );
}

#[test]
fn a_read_only_bind_mount_refuses_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let source = mkdir(tmp.path().join("source"));
    fs::write(source.join("hello"), b"hi").unwrap();
    let target = mkdir(tmp.path().join("target"));
    let mount = Mount {
        kind: "bind".to_string(),
        source: source.display().to_string(),
        options: vec!["ro".to_string(), "rbind".to_string()],
    };
    let guard = MountGuard::mount_all(&[mount], &target).unwrap();
    assert_eq!(fs::read(target.join("hello")).unwrap(), b"hi");
    let err = fs::write(target.join("other"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    drop(guard);
    assert!(!is_mount_point(&target), "dropping the guard unmounts");
}

#[test]
fn a_failed_mount_all_undoes_the_mounts_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let source = mkdir(tmp.path().join("source"));
    let target = mkdir(tmp.path().join("target"));
    let _undo = Unmounter(target.clone());
    let mounts = [
        Mount {
            kind: "bind".to_string(),
            source: source.display().to_string(),
            options: vec!["rw".to_string(), "rbind".to_string()],
        },
        overlay_mount(&[tmp.path().join("does-not-exist")], None),
    ];
    let err = mount_all(&mounts, &target).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("does-not-exist"),
        "the error names the missing directory: {err}"
    );
    assert!(!is_mount_point(&target), "the bind mount was undone");
}

#[test]
fn unmount_all_removes_stacked_and_nested_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let a = mkdir(tmp.path().join("a"));
    mkdir(a.join("sub"));
    let b = mkdir(tmp.path().join("b"));
    let target = mkdir(tmp.path().join("target"));
    let _undo = Unmounter(target.clone());
    let bind = |source: &Path| Mount {
        kind: "bind".to_string(),
        source: source.display().to_string(),
        options: vec!["rbind".to_string()],
    };
    bind(&a).mount(&target).unwrap();
    bind(&b).mount(&target.join("sub")).unwrap();
    bind(&b).mount(&target).unwrap();
    assert_eq!(mounts_at_or_below(&target), 3);
    unmount_all(&target).unwrap();
    assert_eq!(mounts_at_or_below(&target), 0);
    // Nothing mounted: still fine.
    unmount_all(&target).unwrap();
    // A single unmount of something not mounted is an error.
    assert!(unmount(&target).is_err());
}

#[test]
fn a_missing_target_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = Mount {
        kind: "bind".to_string(),
        source: tmp.path().display().to_string(),
        options: vec!["rbind".to_string()],
    };
    let err = mount.mount(&tmp.path().join("nowhere")).unwrap_err();
    match err {
        Error::Io { source, .. } => assert_eq!(source.kind(), ErrorKind::NotFound),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn an_unknown_overlay_option_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = mkdir(tmp.path().join("lower"));
    let target = mkdir(tmp.path().join("target"));
    let _undo = Unmounter(target.clone());
    let mount = Mount {
        kind: "overlay".to_string(),
        source: "overlay".to_string(),
        options: vec![
            "no-such-option=1".to_string(),
            format!("lowerdir={}", lower.display()),
        ],
    };
    let err = mount.mount(&target).unwrap_err();
    assert!(err.to_string().contains("no-such-option"), "{err}");
    assert!(!is_mount_point(&target));
}

#[test]
fn a_proc_table_is_read_whole() {
    let path = Path::new("/proc/self/cgroup");
    let table = read_proc_table(path).unwrap();
    assert!(table.ends_with('\n'), "{table:?}");
    assert_eq!(table, fs::read_to_string(path).unwrap());
    assert_eq!(
        read_proc_table(Path::new("/proc/self/no-such-table"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}
