//! Turning filesystem objects into tar entries for a diff.
//!
//! Objects are always inspected relative to their parent directory's fd without
//! following symlinks, and regular files are opened with `O_NOFOLLOW`.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::layer::archive::{Entry, EntryKind, TarWriter, Timestamp, Xattr};
use crate::layer::error::{display_name, LayerError};
use crate::layer::root_dir::dir_flags;
use crate::layer::safe_path::join;
use crate::layer::sys;
use crate::layer::whiteout::{is_overlay_xattr, OPAQUE_MARKER, WHITEOUT_PREFIX};

pub(crate) fn errno_io(err: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(err.raw_os_error())
}

/// `lstat` of `name` in `dir`.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr, path: &[u8]) -> Result<Stat, LayerError> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| LayerError::io(format!("inspect {}", display_name(path)), errno_io(e)))
}

/// Opens the directory `name` in `dir` (never through a symlink).
pub(crate) fn open_dir_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &[u8],
) -> Result<OwnedFd, LayerError> {
    rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()).map_err(|e| {
        LayerError::io(
            format!("open directory {}", display_name(path)),
            errno_io(e),
        )
    })
}

/// Opens the regular file `name` in `dir` for reading (never through a symlink).
pub(crate) fn open_file_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &[u8],
) -> Result<File, LayerError> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| LayerError::io(format!("open {}", display_name(path)), errno_io(e)))
}

/// The names in directory `dir`, sorted bytewise (the diff's entry order).
pub(crate) fn sorted_names(dir: BorrowedFd<'_>, path: &[u8]) -> Result<Vec<CString>, LayerError> {
    let mut names = crate::layer::root_dir::list_dir(dir)
        .map_err(|e| LayerError::io(format!("list {}", display_name(path)), errno_io(e)))?;
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// overlayfs xattrs that mark objects a diff cannot describe from the upper directory.
const UNSUPPORTED_OVERLAY_XATTRS: &[&[u8]] =
    &[b"trusted.overlay.metacopy", b"trusted.overlay.redirect"];

/// The extended attributes of `name` in `dir`, sorted, without overlayfs' own.
pub(crate) fn read_xattrs(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &[u8],
) -> Result<Vec<Xattr>, LayerError> {
    let context = || format!("read xattrs of {}", display_name(path));
    let names = match sys::list_xattrs_at(dir, name) {
        Ok(names) => names,
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(err) => return Err(LayerError::io(context(), err)),
    };
    let mut xattrs = Vec::new();
    for attr in names {
        if UNSUPPORTED_OVERLAY_XATTRS.contains(&attr.as_slice()) {
            // The object's data or name lives elsewhere (metacopy, redirect_dir): the
            // upper directory alone does not describe it.
            return Err(LayerError::UnsupportedEntry {
                entry: display_name(path),
                kind: format!("overlayfs object with {}", display_name(&attr)),
            });
        }
        if is_overlay_xattr(&attr) {
            continue;
        }
        let attr_c = CString::new(attr.clone()).map_err(|e| LayerError::io(context(), e))?;
        match sys::get_xattr_at(dir, name, &attr_c) {
            Ok(value) => xattrs.push((attr, value)),
            // Removed between the list and the read.
            Err(err) if err.raw_os_error() == Some(libc::ENODATA) => {}
            Err(err) => return Err(LayerError::io(context(), err)),
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// The file type of a stat.
pub(crate) fn file_type(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

/// True if `stat` is an overlayfs whiteout (a 0:0 character device).
pub(crate) fn is_overlay_whiteout(stat: &Stat) -> bool {
    file_type(stat) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// Writes entries into the diff's tar stream, turning repeated inodes into hard links.
pub(crate) struct Emitter<W: Write> {
    tar: TarWriter<W>,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Emitter<W> {
    /// Writes into `tar`.
    pub fn new(tar: TarWriter<W>) -> Self {
        Emitter {
            tar,
            links: HashMap::new(),
        }
    }

    /// Writes the end of the archive and returns the writer.
    pub fn finish(self) -> Result<W, LayerError> {
        self.tar
            .finish()
            .map_err(|e| LayerError::io("write the end of the diff archive", e))
    }

    /// Writes an already built entry (a directory header, typically) with no data.
    pub fn header(&mut self, entry: &Entry) -> Result<(), LayerError> {
        self.tar
            .write_header(entry)
            .map_err(|e| LayerError::io(format!("write diff entry {}", entry.display_name()), e))
    }

    /// Writes the OCI whiteout for `parent_path/name`.
    pub fn whiteout(&mut self, parent_path: &[u8], name: &[u8]) -> Result<(), LayerError> {
        let mut whiteout_name = WHITEOUT_PREFIX.to_vec();
        whiteout_name.extend_from_slice(name);
        self.header(&marker_entry(join(parent_path, &whiteout_name)))
    }

    /// Writes the opaque marker of directory `dir_path`.
    pub fn opaque(&mut self, dir_path: &[u8]) -> Result<(), LayerError> {
        self.header(&marker_entry(join(dir_path, OPAQUE_MARKER)))
    }

    /// Writes the object `name` in `dir` (whose stat is `stat`) as entry `path`, with its
    /// data if it is a regular file (or as a hard link to an inode already written).
    pub fn object(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
        stat: &Stat,
    ) -> Result<(), LayerError> {
        let mut entry = entry_for(dir, name, path, stat)?;
        if entry.kind == EntryKind::Regular && stat.st_nlink > 1 {
            let key = (stat.st_dev, stat.st_ino);
            if let Some(first) = self.links.get(&key) {
                entry.kind = EntryKind::HardLink;
                entry.link_name = first.clone();
                entry.size = 0;
                return self.header(&entry);
            }
            self.links.insert(key, path.to_vec());
        }
        self.header(&entry)?;
        if entry.kind == EntryKind::Regular {
            let mut file = open_file_at(dir, name, path)?;
            self.tar
                .write_data(&mut file, entry.size)
                .map_err(|e| LayerError::io(format!("archive {}", display_name(path)), e))?;
        }
        Ok(())
    }
}

/// A zero-length marker file (whiteout or opaque marker) with fixed metadata, so diffs are
/// reproducible.
fn marker_entry(name: Vec<u8>) -> Entry {
    Entry {
        name,
        kind: EntryKind::Regular,
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: Timestamp::default(),
        atime: None,
        link_name: Vec::new(),
        device: (0, 0),
        xattrs: Vec::new(),
    }
}

/// Builds the tar entry describing object `name` in `dir`.
pub(crate) fn entry_for(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &[u8],
    stat: &Stat,
) -> Result<Entry, LayerError> {
    let kind = match file_type(stat) {
        FileType::RegularFile => EntryKind::Regular,
        FileType::Directory => EntryKind::Directory,
        FileType::Symlink => EntryKind::Symlink,
        FileType::CharacterDevice => EntryKind::CharDevice,
        FileType::BlockDevice => EntryKind::BlockDevice,
        FileType::Fifo => EntryKind::Fifo,
        FileType::Socket | FileType::Unknown => {
            return Err(LayerError::UnsupportedEntry {
                entry: display_name(path),
                kind: "socket or unknown file type".into(),
            })
        }
    };
    let mut entry_name = path.to_vec();
    if kind == EntryKind::Directory {
        entry_name.push(b'/');
    }
    let link_name = if kind == EntryKind::Symlink {
        rustix::fs::readlinkat(dir, name, Vec::new())
            .map_err(|e| {
                LayerError::io(format!("read symlink {}", display_name(path)), errno_io(e))
            })?
            .into_bytes()
    } else {
        Vec::new()
    };
    let device = if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        (
            rustix::fs::major(stat.st_rdev),
            rustix::fs::minor(stat.st_rdev),
        )
    } else {
        (0, 0)
    };
    Ok(Entry {
        name: entry_name,
        kind,
        mode: stat.st_mode & 0o7777,
        uid: stat.st_uid,
        gid: stat.st_gid,
        size: if kind == EntryKind::Regular {
            stat.st_size as u64
        } else {
            0
        },
        mtime: Timestamp {
            seconds: stat.st_mtime,
            nanos: stat.st_mtime_nsec as u32,
        },
        atime: None,
        link_name,
        device,
        xattrs: read_xattrs(dir, name, path)?,
    })
}
