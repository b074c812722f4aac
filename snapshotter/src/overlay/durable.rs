//! Crash-safe file system steps: atomic file replacement, directory syncs, tree removal.
//!
//! The order is always: write the data to a temporary name → fsync it → rename it over the
//! real name → fsync the directory. A crash at any point leaves the old file or the new
//! one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Suffix of the temporary file [`write_atomically`] writes before renaming it into place.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Replaces the file at `path` with `contents`, atomically and durably.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(TEMP_SUFFIX);
    let temp = Path::new(&temp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(|err| Error::io(format!("create {}", temp.display()), err))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| Error::io(format!("write {}", temp.display()), err))?;
    drop(file);
    fs::rename(temp, path).map_err(|err| {
        Error::io(
            format!("rename {} to {}", temp.display(), path.display()),
            err,
        )
    })?;
    sync_parent(path)
}

/// Makes the entries of directory `dir` (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| Error::io(format!("sync directory {}", dir.display()), err))
}

/// Makes the directory entry of `path` durable by syncing its parent directory.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Removes `path` and everything under it, without following symlinks. Entries that
/// vanish meanwhile (another thread removing the same tree) are not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(format!("inspect {}", path.display()), err)),
    };
    if meta.is_dir() {
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io(format!("list {}", path.display()), err)),
        };
        for entry in entries {
            match entry {
                Ok(entry) => remove_tree(&entry.path())?,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("list {}", path.display()), err)),
            }
        }
        ignore_not_found(fs::remove_dir(path))
            .map_err(|err| Error::io(format!("remove directory {}", path.display()), err))
    } else {
        ignore_not_found(fs::remove_file(path))
            .map_err(|err| Error::io(format!("remove {}", path.display()), err))
    }
}

/// Treats "it is already gone" as success.
fn ignore_not_found(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
    }

    #[test]
    fn remove_tree_removes_nested_content_but_not_symlink_targets() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/file"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        // Removing something that is not there is fine.
        remove_tree(&tree).unwrap();
    }
}
