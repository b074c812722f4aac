//! Extracting archive entries into a root directory, safely.
//!
//! Every entry name is normalised (no absolute paths, no `..`), its parent directory is
//! resolved inside the root (see `root_dir`), and the entry is created relative to that
//! directory's fd without following symlinks. Metadata goes through the created object
//! (see `metadata`). Whatever is already at an entry's name is replaced, except that a
//! directory over a directory keeps the directory and takes the new metadata.
//!
//! Whiteouts are written in one of two styles: as overlayfs whiteouts when writing
//! straight into an overlay's upper directory, or as deletions when writing into a plain
//! or mounted tree. Following the OCI spec, a whiteout never removes what this same layer
//! created.
//!
//! Directory times are set at the very end, after everything inside them is written.

mod objects;
mod parents;
mod whiteouts;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, Timestamps};
use rustix::io::Errno;

use crate::layer::archive::{Entry, EntryKind, TarReader};
use crate::layer::error::{display_name, LayerError};
use crate::layer::file_workers::{CreateError, FilePool};
use crate::layer::metadata::{self, Creator};
use crate::layer::root_dir::{self, confined, dir_flags, DirHandle, RootDir};
use crate::layer::safe_path::{self, ancestors, split_parent};
use crate::layer::whiteout::{self, WhiteoutKind};

/// Regular files up to this size go to the worker pool with their data in memory;
/// larger ones are streamed to disk by the main thread.
const POOLED_FILE_LIMIT: u64 = 4 << 20;

/// How whiteouts (and missing parent directories) are written.
pub(crate) enum WhiteoutStyle {
    /// The root is an overlay's upper directory: `.wh.name` becomes a 0:0 character
    /// device, `.wh..wh..opq` the opaque xattr. Missing parent directories take their
    /// metadata from the first lower directory (topmost first) that has them.
    Overlay {
        /// The overlay's lower directories, topmost first.
        lowers: Vec<OwnedFd>,
    },
    /// The root is a plain or mounted tree: whiteouts delete.
    Delete,
}

/// What this layer has put at a path so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touched {
    /// A directory (named by an entry, or created as a parent of one).
    Dir,
    /// Anything else; a regular file may still be in the worker queue.
    Other,
}

/// Extracts one layer's entries into a root directory.
pub(crate) struct Unpacker<'p, 's> {
    root: RootDir,
    style: WhiteoutStyle,
    creator: Creator,
    pool: Option<&'p FilePool<'s>>,
    touched: HashMap<Vec<u8>, Touched>,
    /// Paths at which this layer created a symlink: a later entry of another type at the
    /// same path is refused, since its mode, owner or data would be aimed at the link.
    symlinks: HashSet<Vec<u8>>,
    deferred_times: Vec<(Vec<u8>, Timestamps)>,
}

fn errno_io(err: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(err.raw_os_error())
}

fn cstring(bytes: &[u8]) -> CString {
    // Normalised paths never contain NUL (see safe_path::normalize).
    CString::new(bytes).expect("normalised path without NUL")
}

impl<'p, 's> Unpacker<'p, 's> {
    /// Extracts into `root`, writing whiteouts in `style`, creating regular files on
    /// `pool` when there is one.
    pub fn new(
        root: RootDir,
        style: WhiteoutStyle,
        creator: Creator,
        pool: Option<&'p FilePool<'s>>,
    ) -> Self {
        Unpacker {
            root,
            style,
            creator,
            pool,
            touched: HashMap::new(),
            symlinks: HashSet::new(),
            deferred_times: Vec::new(),
        }
    }

    /// Extracts every entry of `reader`, then waits for all files to be written and sets
    /// directory times.
    pub fn run(&mut self, reader: &mut TarReader<'_>) -> Result<(), LayerError> {
        while let Some(entry) = reader.next_entry()? {
            self.entry(reader, &entry)?;
        }
        self.drain()?;
        self.set_deferred_times()
    }

    fn entry(&mut self, reader: &mut TarReader<'_>, entry: &Entry) -> Result<(), LayerError> {
        let path = safe_path::normalize(&entry.name)?;
        let (parent_path, base) = split_parent(&path);
        match whiteout::classify(&entry.name, base)? {
            WhiteoutKind::NotWhiteout => {}
            WhiteoutKind::Opaque => return self.opaque(parent_path, &entry.name),
            WhiteoutKind::Remove(target) => return self.whiteout(parent_path, target, &entry.name),
            WhiteoutKind::AufsMeta => return Ok(()),
        }
        if path.is_empty() {
            return self.root_entry(entry);
        }
        if entry.kind == EntryKind::Symlink {
            self.symlinks.insert(path.clone());
        } else if self.symlinks.contains(&path) {
            return Err(LayerError::unsafe_path(
                &entry.name,
                "it replaces a symlink this layer created at the same path (a chmod, chown or write meant for it could go through the link: CVE-2021-32760)",
            ));
        }
        let is_dir = entry.kind == EntryKind::Directory;
        if self.touch(&path, if is_dir { Touched::Dir } else { Touched::Other }) {
            self.drain()?;
        }
        let parent = self.parent_dir(parent_path, &entry.name)?;
        let name = cstring(base);
        match entry.kind {
            EntryKind::Directory => self.directory(&parent, &name, &path, entry),
            EntryKind::Regular => self.regular(reader, parent, name, path, entry),
            EntryKind::Symlink => self.symlink(&parent, &name, &path, entry),
            EntryKind::HardLink => self.hardlink(&parent, &name, &path, entry),
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                self.special(&parent, &name, &path, entry)
            }
        }
    }

    /// Records that this layer puts a `kind` at `path` (and directories at its
    /// ancestors). Returns true if the pool must drain first: something this layer wrote
    /// at `path` or at an ancestor may still be queued and is about to be replaced.
    fn touch(&mut self, path: &[u8], kind: Touched) -> bool {
        let mut needs_drain = match self.touched.get(path) {
            Some(Touched::Other) => true,
            Some(Touched::Dir) => kind != Touched::Dir,
            None => false,
        };
        for ancestor in ancestors(path) {
            match self.touched.get(ancestor) {
                Some(Touched::Dir) => break,
                Some(Touched::Other) => {
                    needs_drain = true;
                    break;
                }
                None => {
                    self.touched.insert(ancestor.to_vec(), Touched::Dir);
                }
            }
        }
        self.touched.insert(path.to_vec(), kind);
        needs_drain
    }

    /// Waits for queued files; replaces the objects in the way of any that found their
    /// name taken.
    fn drain(&mut self) -> Result<(), LayerError> {
        let Some(pool) = self.pool else {
            return Ok(());
        };
        for job in pool.drain()? {
            self.write_file_now(job)?;
        }
        Ok(())
    }

    /// Removes whatever is at `name` in `parent` so it can be replaced.
    fn clear_name(
        &mut self,
        parent: &DirHandle,
        name: &CString,
        path: &[u8],
    ) -> Result<(), LayerError> {
        self.drain()?;
        root_dir::remove_tree(parent.fd.as_fd(), name).map_err(|e| {
            LayerError::io(
                format!("remove {} to replace it", display_name(path)),
                errno_io(e),
            )
        })?;
        self.root.forget_all();
        Ok(())
    }

    /// Runs `create`; if the name is taken, removes what is there and runs it once more.
    /// The outer error is a failed removal, the inner result that of the last attempt.
    fn create_replacing(
        &mut self,
        parent: &DirHandle,
        name: &CString,
        path: &[u8],
        create: impl Fn() -> rustix::io::Result<()>,
    ) -> Result<rustix::io::Result<()>, LayerError> {
        match create() {
            Err(Errno::EXIST) => {
                self.clear_name(parent, name, path)?;
                Ok(create())
            }
            other => Ok(other),
        }
    }

    /// Sets the times of directories named by entries, now that their contents are final.
    fn set_deferred_times(&mut self) -> Result<(), LayerError> {
        for (path, times) in std::mem::take(&mut self.deferred_times) {
            if path.is_empty() {
                metadata::set_times_fd(self.root.fd(), &times, b".")?;
                continue;
            }
            let opened = rustix::fs::openat2(
                self.root.fd(),
                path.as_slice(),
                dir_flags() | OFlags::NOFOLLOW,
                Mode::empty(),
                confined(),
            );
            match opened {
                Ok(fd) => metadata::set_times_fd(fd.as_fd(), &times, &path)?,
                // Replaced by a non-directory or removed later in the layer.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {}
                Err(err) => return Err(resolve_error(err, &path, &path)),
            }
        }
        Ok(())
    }
}

fn create_failure(err: CreateError, path: &[u8]) -> LayerError {
    match err {
        CreateError::Exists => LayerError::io(
            format!("create {}", display_name(path)),
            std::io::Error::from_raw_os_error(libc::EEXIST),
        ),
        CreateError::Failed(err) => err,
    }
}

fn resolve_error(err: Errno, path: &[u8], entry: &[u8]) -> LayerError {
    if err == Errno::XDEV {
        return LayerError::unsafe_path(
            entry,
            "its parent path goes through a symlink that is absolute or leads outside the layer root",
        );
    }
    LayerError::io(
        format!(
            "resolve directory {:?} for layer entry {:?}",
            display_name(path),
            display_name(entry)
        ),
        errno_io(err),
    )
}
