//! Measuring the disk space a directory tree takes.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::record::Usage;
use crate::error::{Error, Result};

/// Walks `dir` (without following symlinks) and adds up allocated blocks and inodes,
/// counting each inode once however many hard links point at it.
pub(crate) fn disk_usage(dir: &Path) -> Result<Usage> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut usage = Usage::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|err| Error::io(format!("inspect {}", path.display()), err))?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += meta.blocks() * 512;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|err| Error::io(format!("list {}", path.display()), err))?;
            for entry in entries {
                let entry =
                    entry.map_err(|err| Error::io(format!("list {}", path.display()), err))?;
                pending.push(entry.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fs");
        std::fs::create_dir(&root).unwrap();
        let empty = disk_usage(&root).unwrap();
        assert_eq!(empty.inodes, 1, "the directory itself is one inode");

        std::fs::write(root.join("data"), vec![7u8; 64 * 1024]).unwrap();
        let one = disk_usage(&root).unwrap();
        assert_eq!(one.inodes, 2);
        assert!(one.size >= empty.size + 64 * 1024, "{one:?}");

        std::fs::hard_link(root.join("data"), root.join("again")).unwrap();
        std::os::unix::fs::symlink("data", root.join("link")).unwrap();
        let linked = disk_usage(&root).unwrap();
        assert_eq!(
            linked.inodes, 3,
            "the hard link adds nothing, the symlink one inode"
        );
        assert!(linked.size < one.size + 64 * 1024, "{linked:?}");
    }
}
