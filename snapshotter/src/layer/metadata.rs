//! Ownership, permissions, extended attributes and times of extracted files.
//!
//! Metadata is always applied to the object just created, never to a path that could
//! have been swapped for a symlink: through an fd of the object (regular files and
//! directories), or through `*at` calls on its parent directory with
//! `AT_SYMLINK_NOFOLLOW` (symlinks, device nodes, FIFOs, which must not be opened).
//!
//! Order matters: `chown` clears setuid/setgid bits and file capabilities, so it comes
//! first, then `chmod`, then the extended attributes, then the times.

use std::ffi::{CStr, CString};
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::archive::{Entry, Timestamp};
use super::error::{display_name, LayerError};
use super::sys;
use super::whiteout::is_overlay_xattr;

/// The metadata of one archive entry that extraction applies.
#[derive(Debug, Clone)]
pub(crate) struct Attributes {
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time (the modification time when the archive has none).
    pub atime: Timestamp,
    /// Extended attributes to set, overlayfs' own already filtered out.
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

impl Attributes {
    /// Takes the metadata out of an archive entry. Extended attributes that would steer
    /// overlayfs (`trusted.overlay.*`, `user.overlay.*`) are dropped: whiteouts and opaque
    /// directories are expressed by OCI whiteout files, never by raw xattrs.
    pub fn from_entry(entry: &Entry) -> Result<Self, LayerError> {
        let mut xattrs = Vec::with_capacity(entry.xattrs.len());
        for (name, value) in &entry.xattrs {
            if is_overlay_xattr(name) {
                tracing::debug!(entry = %entry.display_name(), xattr = %display_name(name),
                    "ignoring overlayfs xattr from layer");
                continue;
            }
            let name = CString::new(name.clone()).map_err(|_| LayerError::CorruptTar {
                offset: 0,
                reason: format!("xattr name with a NUL byte on {}", entry.display_name()),
            })?;
            xattrs.push((name, value.clone()));
        }
        Ok(Attributes {
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            atime: entry.atime.unwrap_or(entry.mtime),
            xattrs,
        })
    }

    /// Plain attributes: `mode`, owned by `uid:gid`, with the given times.
    pub fn plain(mode: u32, uid: u32, gid: u32, mtime: Timestamp) -> Self {
        Attributes {
            mode,
            uid,
            gid,
            mtime,
            atime: mtime,
            xattrs: Vec::new(),
        }
    }

    /// The times in the form `utimensat` takes.
    pub fn timestamps(&self) -> Timestamps {
        timestamps(self.atime, self.mtime)
    }
}

/// Converts archive times to `utimensat`'s form.
pub(crate) fn timestamps(atime: Timestamp, mtime: Timestamp) -> Timestamps {
    let spec = |t: Timestamp| Timespec {
        tv_sec: t.seconds,
        tv_nsec: i64::from(t.nanos),
    };
    Timestamps {
        last_access: spec(atime),
        last_modification: spec(mtime),
    }
}

/// Who creates the files, so redundant `chown`/`chmod` calls can be skipped: a new file
/// is owned by the creator's effective ids and has `mode & !umask`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Creator {
    uid: u32,
    gid: u32,
    umask: Option<u32>,
}

impl Creator {
    /// The calling process.
    pub fn current() -> Self {
        Creator {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            umask: read_umask(),
        }
    }

    /// True if an object created in a directory (setgid or not) would not already have
    /// this owner.
    pub fn needs_chown(&self, attrs: &Attributes, parent_setgid: bool) -> bool {
        parent_setgid || attrs.uid != self.uid || attrs.gid != self.gid
    }

    /// True if an object created with `attrs.mode & 0o777` would not already have
    /// exactly `attrs.mode` (setuid/setgid/sticky bits, or bits the umask removes).
    pub fn needs_chmod(&self, attrs: &Attributes) -> bool {
        match self.umask {
            Some(umask) => attrs.mode & 0o7000 != 0 || attrs.mode & umask != 0,
            None => true,
        }
    }
}

/// The process umask, from `/proc/self/status` (reading it with `umask(2)` would briefly
/// change it for every thread).
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

fn errno_io(err: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(err.raw_os_error())
}

/// Applies owner, mode and xattrs (not times) to a regular file or directory through its
/// fd. `always` forces `chown`/`chmod` even when the creator's defaults would match (for
/// objects that existed before).
pub(crate) fn apply_to_fd(
    fd: BorrowedFd<'_>,
    attrs: &Attributes,
    creator: &Creator,
    parent_setgid: bool,
    always: bool,
    path: &[u8],
) -> Result<(), LayerError> {
    let chowned = always || creator.needs_chown(attrs, parent_setgid);
    if chowned {
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(attrs.uid)),
            Some(Gid::from_raw(attrs.gid)),
        )
        .map_err(|e| LayerError::io(format!("chown {}", display_name(path)), errno_io(e)))?;
    }
    if chowned || creator.needs_chmod(attrs) {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(attrs.mode))
            .map_err(|e| LayerError::io(format!("chmod {}", display_name(path)), errno_io(e)))?;
    }
    for (name, value) in &attrs.xattrs {
        let result = rustix::fs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty());
        xattr_result(result, name, path)?;
    }
    Ok(())
}

/// Sets times through an fd.
pub(crate) fn set_times_fd(
    fd: BorrowedFd<'_>,
    times: &Timestamps,
    path: &[u8],
) -> Result<(), LayerError> {
    rustix::fs::futimens(fd, times)
        .map_err(|e| LayerError::io(format!("set times of {}", display_name(path)), errno_io(e)))
}

/// Applies owner, mode (unless `is_symlink`), xattrs and times to `name` in `dir` without
/// following a symlink there: for symlinks, device nodes and FIFOs.
pub(crate) fn apply_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    attrs: &Attributes,
    creator: &Creator,
    parent_setgid: bool,
    is_symlink: bool,
    path: &[u8],
) -> Result<(), LayerError> {
    let chowned = creator.needs_chown(attrs, parent_setgid);
    if chowned {
        rustix::fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(attrs.uid)),
            Some(Gid::from_raw(attrs.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| LayerError::io(format!("chown {}", display_name(path)), errno_io(e)))?;
    }
    if !is_symlink && (chowned || creator.needs_chmod(attrs)) {
        sys::chmod_at_nofollow(dir, name, attrs.mode)
            .map_err(|e| LayerError::io(format!("chmod {}", display_name(path)), e))?;
    }
    for (attr, value) in &attrs.xattrs {
        let result = sys::set_xattr_at(dir, name, attr, value)
            .map_err(|e| Errno::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)));
        xattr_result(result, attr, path)?;
    }
    rustix::fs::utimensat(dir, name, &attrs.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| LayerError::io(format!("set times of {}", display_name(path)), errno_io(e)))
}

/// A filesystem without support for some xattr namespace is not an error worth failing
/// an image for (the attribute is logged and skipped); anything else is.
fn xattr_result(result: Result<(), Errno>, name: &CStr, path: &[u8]) -> Result<(), LayerError> {
    match result {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) => {
            tracing::warn!(path = %display_name(path), xattr = ?name,
                "filesystem does not support this xattr; skipped");
            Ok(())
        }
        Err(err) => Err(LayerError::io(
            format!("set xattr {:?} on {}", name, display_name(path)),
            errno_io(err),
        )),
    }
}
