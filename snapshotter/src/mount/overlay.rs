//! Mounting overlays with any number of lower layers.
//!
//! `mount(2)` copies at most one page of option text, and 128 absolute `lowerdir` paths
//! do not fit. Two ways around it, tried in this order:
//!
//! 1. The filesystem-context API (`fsopen("overlay")`, then one `fsconfig` call per lower
//!    layer with the `lowerdir+` key, kernel 6.8 and later): no length limit at all.
//! 2. Classic `mount(2)`. If the option string is too long, the layer paths are rewritten
//!    relative to their common directory and the mount is made from a short-lived thread
//!    that has its own working directory (`unshare(CLONE_FS)` + `chdir`), so the rest of
//!    the process never sees its working directory change.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags,
};

use super::options::{escape_overlay_path, split_lowerdirs, MountOptions};
use super::syscalls::{c_string, raw_mount};
use crate::error::{Error, Result};

/// The most option text `mount(2)` is sure to accept: the kernel copies one page, and a
/// page is never smaller than 4 KiB. One byte is kept for the terminating NUL.
const MOUNT_DATA_LIMIT: usize = 4096 - 1;

/// `fsconfig` refuses string values of this many bytes or more.
const FSCONFIG_VALUE_LIMIT: usize = 256;

/// Mounts an overlay on `target`, by whichever method this kernel supports.
pub(crate) fn mount_overlay(source: &str, target: &Path, options: &MountOptions) -> Result<()> {
    match mount_with_fs_context(source, target, options) {
        Ok(()) => Ok(()),
        Err(Attempt::Unsupported) => mount_with_mount_syscall(source, target, options),
        Err(Attempt::Failed(err)) => Err(err),
    }
}

/// Why the filesystem-context attempt did not mount.
enum Attempt {
    /// The kernel lacks the API or the `lowerdir+` key, or refused a value as too long:
    /// the classic `mount(2)` path should be tried instead.
    Unsupported,
    /// The kernel understood the request and refused it: report this error.
    Failed(Error),
}

/// Mounts through `fsopen`/`fsconfig`/`fsmount`/`move_mount`, one `lowerdir+` per layer.
fn mount_with_fs_context(
    source: &str,
    target: &Path,
    options: &MountOptions,
) -> Result<(), Attempt> {
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::NOSYS) | Err(Errno::PERM) => return Err(Attempt::Unsupported),
        Err(err) => return Err(Attempt::Failed(Error::io("open an overlay context", err))),
    };
    let set_string = |key: &str, value: &str| {
        fsconfig_set_string(&fs, key, value).map_err(|err| match err {
            // `lowerdir+` unknown (kernel before 6.8), or a value too long for fsconfig.
            Errno::INVAL if key == "lowerdir+" || value.len() >= FSCONFIG_VALUE_LIMIT => {
                Attempt::Unsupported
            }
            err => Attempt::Failed(Error::io(
                with_kernel_log(format!("set overlay option {key}={value}"), &fs),
                err,
            )),
        })
    };
    if !source.is_empty() {
        set_string("source", source)?;
    }
    for option in &options.data {
        match option.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for dir in split_lowerdirs(dirs) {
                    set_string("lowerdir+", &dir)?;
                }
            }
            Some((key, value)) => set_string(key, value)?,
            None => fsconfig_set_flag(&fs, option.as_str()).map_err(|err| {
                Attempt::Failed(Error::io(
                    with_kernel_log(format!("set overlay option {option}"), &fs),
                    err,
                ))
            })?,
        }
    }
    for (flag, key) in SUPERBLOCK_FLAGS {
        if options.flags & flag != 0 {
            fsconfig_set_flag(&fs, key).map_err(|err| {
                Attempt::Failed(Error::io(format!("set overlay flag {key}"), err))
            })?;
        }
    }
    fsconfig_create(&fs).map_err(|err| {
        Attempt::Failed(Error::io(
            with_kernel_log(format!("create overlay for {}", target.display()), &fs),
            err,
        ))
    })?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        mount_attributes(options.flags),
    )
    .map_err(|err| Attempt::Failed(Error::io("make an overlay mount", err)))?;
    attach(&mnt, target).map_err(Attempt::Failed)
}

/// `MS_*` flags that belong to the superblock, and the `fsconfig` flag naming each.
const SUPERBLOCK_FLAGS: [(libc::c_ulong, &str); 4] = [
    (libc::MS_RDONLY, "ro"),
    (libc::MS_SYNCHRONOUS, "sync"),
    (libc::MS_DIRSYNC, "dirsync"),
    (libc::MS_LAZYTIME, "lazytime"),
];

/// Translates `MS_*` flags into the per-mount attributes `fsmount` takes.
fn mount_attributes(flags: libc::c_ulong) -> MountAttrFlags {
    let table = [
        (libc::MS_RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (libc::MS_NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (libc::MS_STRICTATIME, MountAttrFlags::MOUNT_ATTR_STRICTATIME),
        (libc::MS_NODIRATIME, MountAttrFlags::MOUNT_ATTR_NODIRATIME),
    ];
    table
        .into_iter()
        .filter(|(flag, _)| flags & flag != 0)
        .fold(MountAttrFlags::empty(), |acc, (_, attr)| acc | attr)
}

/// Attaches a detached mount (from `fsmount`) at `target`.
fn attach(mnt: &OwnedFd, target: &Path) -> Result<()> {
    move_mount(
        mnt.as_fd(),
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|err| Error::io(format!("attach overlay at {}", target.display()), err))
}

/// Appends to `context` the messages the kernel left on a filesystem context (its
/// reasons for refusing), if it left any.
fn with_kernel_log(mut context: String, fs: &OwnedFd) -> String {
    let mut buf = [0u8; 1024];
    // The kernel keeps a handful of messages; stop at the first empty read or error.
    for _ in 0..8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                let message = String::from_utf8_lossy(&buf[..n]);
                // Each message starts with its level: "e " error, "w " warning, "i " info.
                let text = message.get(2..).unwrap_or_default().trim_end();
                context.push_str(&format!(" (kernel: {text})"));
            }
            _ => break,
        }
    }
    context
}

/// Mounts with classic `mount(2)`, shortening the layer paths when they do not fit.
pub(crate) fn mount_with_mount_syscall(
    source: &str,
    target: &Path,
    options: &MountOptions,
) -> Result<()> {
    let source_c = c_string(source.as_bytes(), "mount source")?;
    let fstype_c = c_string(b"overlay", "filesystem type")?;
    let describe = || format!("mount overlay on {}", target.display());

    let data = options.data_string();
    if data.len() <= MOUNT_DATA_LIMIT {
        let target_c = c_string(target.as_os_str().as_bytes(), "mount target")?;
        let data_c = c_string(data.as_bytes(), "mount options")?;
        return raw_mount(
            Some(&source_c),
            &target_c,
            Some(&fstype_c),
            options.flags,
            Some(&data_c),
        )
        .map_err(|err| Error::io(describe(), err));
    }

    let (base, compact) = relative_overlay_data(&options.data).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "overlay options for {} are {} bytes, more than mount(2) accepts, and their \
             directories are not all absolute paths that could be shortened",
            target.display(),
            data.len()
        ))
    })?;
    if compact.len() > MOUNT_DATA_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "overlay options for {} are {} bytes even relative to {}; mount(2) accepts {}",
            target.display(),
            compact.len(),
            base.display(),
            MOUNT_DATA_LIMIT
        )));
    }
    let target = std::path::absolute(target)
        .map_err(|err| Error::io(format!("resolve {}", target.display()), err))?;
    let target_c = c_string(target.as_os_str().as_bytes(), "mount target")?;
    let data_c = c_string(compact.as_bytes(), "mount options")?;
    let flags = options.flags;

    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                // SAFETY: CLONE_FS only gives this thread its own working directory, root and
                // umask; no file descriptor table is unshared, so no other thread is affected.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
                    .map_err(|err| Error::io("give the mount thread its own directory", err))?;
                rustix::process::chdir(&base).map_err(|err| {
                    Error::io(format!("change directory to {}", base.display()), err)
                })?;
                raw_mount(
                    Some(&source_c),
                    &target_c,
                    Some(&fstype_c),
                    flags,
                    Some(&data_c),
                )
                .map_err(|err| Error::io(describe(), err))
            })
            .join()
    });
    outcome.unwrap_or_else(|_| {
        Err(Error::io(
            describe(),
            std::io::Error::other("the mount thread panicked"),
        ))
    })
}

/// Rewrites overlay data so the lower directories are relative to the directory they all
/// share (the upper and work directories, only two paths, stay as they are). Returns that
/// directory and the new option string, or `None` when some lower directory is not a
/// plain absolute path (and so cannot be rewritten safely).
pub(crate) fn relative_overlay_data(data: &[String]) -> Option<(PathBuf, String)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for option in data {
        if let Some(value) = option.strip_prefix("lowerdir=") {
            dirs.extend(split_lowerdirs(value).into_iter().map(PathBuf::from));
        }
    }
    if dirs.is_empty() || dirs.iter().any(|d| !is_plain_absolute(d)) {
        return None;
    }
    let base = common_ancestor(&dirs);
    let relative = |dir: &str| -> String {
        let rel = Path::new(dir)
            .strip_prefix(&base)
            .expect("every directory lies under their common ancestor");
        let rel = rel.to_string_lossy();
        escape_overlay_path(if rel.is_empty() { "." } else { &rel })
    };
    let rewritten: Vec<String> = data
        .iter()
        .map(|option| match option.strip_prefix("lowerdir=") {
            Some(value) => {
                let dirs: Vec<String> =
                    split_lowerdirs(value).iter().map(|d| relative(d)).collect();
                format!("lowerdir={}", dirs.join(":"))
            }
            None => option.clone(),
        })
        .collect();
    Some((base, rewritten.join(",")))
}

/// True for absolute paths without `.` or `..` components (so prefix arithmetic is exact).
fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The deepest directory that contains every path in `dirs` (at least `/`).
fn common_ancestor(dirs: &[PathBuf]) -> PathBuf {
    let mut common: Vec<Component> = dirs[0].components().collect();
    for dir in &dirs[1..] {
        let shared = common
            .iter()
            .zip(dir.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(shared);
    }
    common.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn lower_dirs_become_relative_to_their_common_directory() {
        let data = strings(&[
            "index=off",
            "workdir=/elsewhere/9/work",
            "upperdir=/elsewhere/9/fs",
            "lowerdir=/var/lib/b/snapshots/8/fs:/var/lib/b/snapshots/7/fs",
        ]);
        let (base, compact) = relative_overlay_data(&data).unwrap();
        assert_eq!(base, PathBuf::from("/var/lib/b/snapshots"));
        assert_eq!(
            compact,
            "index=off,workdir=/elsewhere/9/work,upperdir=/elsewhere/9/fs,lowerdir=8/fs:7/fs"
        );
    }

    #[test]
    fn a_directory_equal_to_the_base_becomes_dot() {
        let data = strings(&["lowerdir=/a/b:/a/b/c"]);
        let (base, compact) = relative_overlay_data(&data).unwrap();
        assert_eq!(base, PathBuf::from("/a/b"));
        assert_eq!(compact, "lowerdir=.:c");
    }

    #[test]
    fn relative_or_dotted_directories_are_not_rewritten() {
        assert!(relative_overlay_data(&strings(&["lowerdir=a:/b"])).is_none());
        assert!(relative_overlay_data(&strings(&["lowerdir=/a/../b:/b"])).is_none());
        assert!(relative_overlay_data(&strings(&["index=off", "upperdir=/u"])).is_none());
    }

    #[test]
    fn unrelated_directories_share_the_root() {
        let (base, compact) = relative_overlay_data(&strings(&["lowerdir=/x/1:/y/2"])).unwrap();
        assert_eq!(base, PathBuf::from("/"));
        assert_eq!(compact, "lowerdir=x/1:y/2");
    }

    #[test]
    fn mount_attributes_follow_flags() {
        let attrs = mount_attributes(libc::MS_RDONLY | libc::MS_NODEV);
        assert_eq!(
            attrs,
            MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV
        );
        assert_eq!(mount_attributes(0), MountAttrFlags::empty());
    }
}
