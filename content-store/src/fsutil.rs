//! Small file-system helpers shared by the blob and ingest code: directory fsync, no-replace
//! rename, non-blocking `flock`, and whole-file reads and atomic replaces of tiny files.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{FlockOperation, RenameFlags, CWD};

use crate::error::{Error, Result};

/// Mode of every directory the store creates: only the daemon (root) looks inside.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `path` and any missing parents with [`DIR_MODE`].
pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(Error::io("create directory", path))
}

/// Flushes a directory's entries (after a rename or create inside it) to stable storage.
pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(Error::io("fsync directory", path))
}

/// Renames `from` to `to`, failing with `AlreadyExists` (io kind) instead of replacing `to`.
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

/// What a non-blocking lock attempt found.
pub(crate) enum LockOutcome {
    /// The exclusive lock is now held through the given file.
    Acquired,
    /// Another open file description (this process or another) holds it.
    Busy,
}

/// Tries to take an exclusive `flock` on `file` without waiting.
pub(crate) fn try_lock_exclusive(file: &File, path: &Path) -> Result<LockOutcome> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(LockOutcome::Acquired),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(LockOutcome::Busy),
        Err(errno) => Err(Error::errno("lock", path)(errno)),
    }
}

/// True when `file` (already open) is still the object found at `path`, i.e. nobody removed or
/// replaced it between our open and now.
pub(crate) fn still_at_path(file: &File, path: &Path) -> Result<bool> {
    let held = file.metadata().map_err(Error::io("stat", path))?;
    match fs::symlink_metadata(path) {
        Ok(current) => Ok(current.dev() == held.dev() && current.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("stat", path)(e)),
    }
}

/// Reads a small file whole, refusing anything larger than `limit` bytes.
/// `Ok(None)` when the file does not exist.
pub(crate) fn read_small_file(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io("read", path))?;
    if bytes.len() as u64 > limit {
        return Err(Error::FailedPrecondition(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(Some(bytes))
}

/// Replaces the small file `path` with `contents` atomically (write a sibling, then rename).
/// No fsync: these files describe in-flight ingests, which are resumable, never authoritative.
pub(crate) fn replace_small_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = Path::new(&staging);
    fs::write(staging, contents).map_err(Error::io("write", staging))?;
    fs::rename(staging, path).map_err(Error::io("rename into place", path))
}

/// Encodes a time as nanoseconds since the Unix epoch (the format of the `started` file).
pub(crate) fn time_to_text(time: SystemTime) -> String {
    let nanos = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    nanos.to_string()
}

/// Decodes [`time_to_text`]'s format.
pub(crate) fn time_from_text(text: &str) -> Option<SystemTime> {
    let nanos: u64 = text.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))
}

/// The modification time recorded in `metadata`, or the epoch if the platform lacks one.
pub(crate) fn modified(metadata: &fs::Metadata) -> SystemTime {
    metadata.modified().unwrap_or(UNIX_EPOCH)
}
