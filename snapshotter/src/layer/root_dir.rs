//! The extraction root: a directory fd inside which every path is resolved.
//!
//! Paths are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: a symlink inside the root may be followed while it stays inside, but
//! one that is absolute or climbs out with `..` makes the resolution fail with `EXDEV`,
//! which the unpacker reports as an unsafe entry. (Clamping such links to the root, as
//! `RESOLVE_IN_ROOT` would, is safe too, but a layer that tries it is hostile or broken,
//! and its author is better told than silently given another tree.) Only directories are resolved this
//! way; the last component of every entry is then created relative to its parent's fd
//! with `*at` calls that never follow a symlink.
//!
//! Resolved directories are cached by path (archives list a directory's files together).
//! The cache is dropped whenever anything is removed, since a removal may change what a
//! cached path would resolve to.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many resolved directories are kept open at most.
const CACHE_LIMIT: usize = 256;

/// An open directory inside the root.
#[derive(Debug)]
pub(crate) struct DirHandle {
    /// The directory, opened read-only.
    pub fd: OwnedFd,
    /// Whether new entries in it inherit its group (setgid directory).
    pub setgid: bool,
}

impl DirHandle {
    /// Wraps an fd of a directory, noting whether it is setgid.
    pub fn new(fd: OwnedFd) -> rustix::io::Result<Self> {
        let stat = rustix::fs::fstat(&fd)?;
        Ok(DirHandle {
            fd,
            setgid: stat.st_mode & libc::S_ISGID != 0,
        })
    }
}

/// The root directory of an extraction or a diff, with a cache of resolved directories.
pub(crate) struct RootDir {
    root: Arc<DirHandle>,
    cache: HashMap<Vec<u8>, Arc<DirHandle>>,
}

/// Flags for resolving a path confined to the root.
pub(crate) fn confined() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

/// Flags for opening a directory to work in.
pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

impl RootDir {
    /// Opens `path` as the root.
    pub fn open(path: &Path) -> rustix::io::Result<Self> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())?;
        Ok(RootDir {
            root: Arc::new(DirHandle::new(fd)?),
            cache: HashMap::new(),
        })
    }

    /// The root directory itself.
    pub fn handle(&self) -> &Arc<DirHandle> {
        &self.root
    }

    /// The root's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.fd.as_fd()
    }

    /// Resolves the directory at `rel` (normalised, relative to the root; empty for the
    /// root) with symlinks confined to the root. Fails with `ENOENT`, `ENOTDIR`, … as
    /// `openat2` does.
    pub fn resolve(&mut self, rel: &[u8]) -> rustix::io::Result<Arc<DirHandle>> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(handle) = self.cache.get(rel) {
            return Ok(handle.clone());
        }
        let fd = rustix::fs::openat2(&self.root.fd, rel, dir_flags(), Mode::empty(), confined())?;
        let handle = Arc::new(DirHandle::new(fd)?);
        self.remember(rel, handle.clone());
        Ok(handle)
    }

    /// Records that `rel` resolves to `handle`.
    pub fn remember(&mut self, rel: &[u8], handle: Arc<DirHandle>) {
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(rel.to_vec(), handle);
    }

    /// Forgets every resolved directory (after a removal).
    pub fn forget_all(&mut self) {
        self.cache.clear();
    }
}

/// Removes `name` from `dir`: a file, symlink, device or FIFO is unlinked, a directory is
/// emptied recursively and removed. Symlinks are never followed. A missing `name` is not
/// an error.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<()> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(err) => return Err(err),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    let child = rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?;
    empty_dir(child.as_fd())?;
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// Removes everything inside the directory `dir`.
pub(crate) fn empty_dir(dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
    for name in list_dir(dir)? {
        remove_tree(dir, &name)?;
    }
    Ok(())
}

/// The names in a directory (without `.` and `..`), in no particular order.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<std::ffi::CString>> {
    let mut names = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    entries.rewind();
    for entry in entries.by_ref() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_followed_only_while_they_stay_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("inside/etc")).unwrap();
        std::fs::create_dir_all(outer.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("inside", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("/inside", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("..", root.join("parent")).unwrap();

        let mut dir = RootDir::open(&root).unwrap();
        let through_rel = dir.resolve(b"rel/etc").unwrap();
        let direct = rustix::fs::fstat(&through_rel.fd).unwrap();
        let expected = std::fs::metadata(root.join("inside/etc")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(direct.st_ino, expected.ino());

        // Absolute links and links that climb out are refused, never clamped or followed.
        assert_eq!(dir.resolve(b"abs/etc").unwrap_err(), Errno::XDEV);
        assert_eq!(dir.resolve(b"up/etc").unwrap_err(), Errno::XDEV);
        assert_eq!(dir.resolve(b"parent/x").unwrap_err(), Errno::XDEV);
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"x").unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/e/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("d/link")).unwrap();

        let dir = RootDir::open(&root).unwrap();
        remove_tree(dir.fd(), c"d").unwrap();
        remove_tree(dir.fd(), c"missing").unwrap();
        assert!(!root.join("d").exists());
        assert!(victim.join("keep").exists());
    }
}
