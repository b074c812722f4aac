//! The general diff: walk a lower and an upper tree side by side and write what changed.
//!
//! Names are visited in sorted order. A name only in the upper tree is added (with
//! everything below it); a name only in the lower tree gets a whiteout; a name in both is
//! written again if its type, metadata (mode, owner, times, xattrs, link target, device)
//! or size differ, or — when size and mtime are equal — if its content differs.
//! Directories are written when their own metadata changed or when something below them
//! is written, so that every entry's parent precedes it with the right metadata.

use std::cmp::Ordering;
use std::ffi::CStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{FileType, Stat};

use super::emit::{
    entry_for, file_type, open_dir_at, open_file_at, sorted_names, stat_at, Emitter,
};
use crate::layer::archive::Entry;
use crate::layer::error::{display_name, LayerError};
use crate::layer::safe_path::join;

/// Writes the changes that turn the tree `lower` (none: empty) into the tree `upper`.
pub(crate) fn write_changes<W: Write>(
    emitter: &mut Emitter<W>,
    lower: Option<BorrowedFd<'_>>,
    upper: BorrowedFd<'_>,
) -> Result<(), LayerError> {
    let mut walk = Walk {
        emitter,
        pending: Vec::new(),
    };
    walk.compare_dirs(lower, upper, b"")
}

struct Walk<'e, W: Write> {
    emitter: &'e mut Emitter<W>,
    /// Unchanged ancestor directories of the current position not yet written: written
    /// (outermost first) just before anything below them is.
    pending: Vec<Option<Entry>>,
}

impl<W: Write> Walk<'_, W> {
    fn flush_parents(&mut self) -> Result<(), LayerError> {
        for slot in &mut self.pending {
            if let Some(entry) = slot.take() {
                self.emitter.header(&entry)?;
            }
        }
        Ok(())
    }

    fn compare_dirs(
        &mut self,
        lower: Option<BorrowedFd<'_>>,
        upper: BorrowedFd<'_>,
        dir_path: &[u8],
    ) -> Result<(), LayerError> {
        let lower_names = match lower {
            Some(lower) => sorted_names(lower, dir_path)?,
            None => Vec::new(),
        };
        let upper_names = sorted_names(upper, dir_path)?;
        let (mut l, mut u) = (0, 0);
        while l < lower_names.len() || u < upper_names.len() {
            let order = match (lower_names.get(l), upper_names.get(u)) {
                (Some(a), Some(b)) => a.as_bytes().cmp(b.as_bytes()),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    self.flush_parents()?;
                    self.emitter.whiteout(dir_path, lower_names[l].as_bytes())?;
                    l += 1;
                }
                Ordering::Greater => {
                    self.flush_parents()?;
                    let name = &upper_names[u];
                    add_tree(self.emitter, upper, name, &join(dir_path, name.as_bytes()))?;
                    u += 1;
                }
                Ordering::Equal => {
                    let lower = lower.expect("a name in both trees implies a lower tree");
                    let name = &upper_names[u];
                    self.compare_node(lower, upper, name, &join(dir_path, name.as_bytes()))?;
                    l += 1;
                    u += 1;
                }
            }
        }
        Ok(())
    }

    fn compare_node(
        &mut self,
        lower_dir: BorrowedFd<'_>,
        upper_dir: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
    ) -> Result<(), LayerError> {
        let lower_stat = stat_at(lower_dir, name, path)?;
        let upper_stat = stat_at(upper_dir, name, path)?;
        if file_type(&lower_stat) != file_type(&upper_stat) {
            // Replaced by another kind of object: extraction replaces it too.
            self.flush_parents()?;
            return add_tree(self.emitter, upper_dir, name, path);
        }
        let lower_entry = entry_for(lower_dir, name, path, &lower_stat)?;
        let upper_entry = entry_for(upper_dir, name, path, &upper_stat)?;
        if file_type(&upper_stat) == FileType::Directory {
            if metadata_differs(&lower_entry, &upper_entry) {
                self.flush_parents()?;
                self.emitter.header(&upper_entry)?;
                self.pending.push(None);
            } else {
                self.pending.push(Some(upper_entry));
            }
            let lower_child = open_dir_at(lower_dir, name, path)?;
            let upper_child = open_dir_at(upper_dir, name, path)?;
            let result = self.compare_dirs(Some(lower_child.as_fd()), upper_child.as_fd(), path);
            self.pending.pop();
            return result;
        }
        let changed = metadata_differs(&lower_entry, &upper_entry)
            || (file_type(&upper_stat) == FileType::RegularFile
                && !same_content(lower_dir, upper_dir, name, path)?);
        if changed {
            self.flush_parents()?;
            self.emitter.object(upper_dir, name, path, &upper_stat)?;
        }
        Ok(())
    }
}

/// Writes `name` in `dir` and, for a directory, everything below it.
fn add_tree<W: Write>(
    emitter: &mut Emitter<W>,
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &[u8],
) -> Result<(), LayerError> {
    let stat: Stat = stat_at(dir, name, path)?;
    emitter.object(dir, name, path, &stat)?;
    if file_type(&stat) == FileType::Directory {
        let child = open_dir_at(dir, name, path)?;
        for child_name in sorted_names(child.as_fd(), path)? {
            let child_path = join(path, child_name.as_bytes());
            add_tree(emitter, child.as_fd(), &child_name, &child_path)?;
        }
    }
    Ok(())
}

/// True if the two entries differ in anything a layer records.
fn metadata_differs(lower: &Entry, upper: &Entry) -> bool {
    lower.kind != upper.kind
        || lower.mode != upper.mode
        || lower.uid != upper.uid
        || lower.gid != upper.gid
        || lower.size != upper.size
        || lower.mtime != upper.mtime
        || lower.link_name != upper.link_name
        || lower.device != upper.device
        || lower.xattrs != upper.xattrs
}

/// Compares two regular files byte by byte.
fn same_content(
    lower_dir: BorrowedFd<'_>,
    upper_dir: BorrowedFd<'_>,
    name: &CStr,
    path: &[u8],
) -> Result<bool, LayerError> {
    let mut lower = open_file_at(lower_dir, name, path)?;
    let mut upper = open_file_at(upper_dir, name, path)?;
    let mut lower_buf = vec![0u8; 64 * 1024];
    let mut upper_buf = vec![0u8; 64 * 1024];
    let read_error = |e| LayerError::io(format!("read {}", display_name(path)), e);
    loop {
        let n = read_full(&mut lower, &mut lower_buf).map_err(read_error)?;
        let m = read_full(&mut upper, &mut upper_buf).map_err(read_error)?;
        if n != m || lower_buf[..n] != upper_buf[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
