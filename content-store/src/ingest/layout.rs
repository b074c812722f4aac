//! On-disk layout of one ingest and the lock that gives a writer sole use of it.
//!
//! ```text
//! ingest/<sha256 hex of the ref>/
//!     data       the bytes received so far (its length is the offset, its mtime the update time)
//!     ref        the client's ref, verbatim (refs are arbitrary strings, never used as paths)
//!     started    creation time, nanoseconds since the Unix epoch
//!     total      expected total size in bytes, when the client gave one
//!     expected   expected digest, when the client gave one
//! ```
//!
//! A new ingest directory is built under a hidden staging name, locked, filled, and only then
//! renamed to its final name, so a visible ingest directory always has its metadata. The lock
//! is an exclusive `flock` on the directory itself; whoever holds it owns the ingest (writes,
//! commit, abort, stale removal). Because `flock` belongs to the open file description, a second
//! opener is refused whether it lives in this process or another.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil::{self, LockOutcome};
use crate::MAX_REF_LEN;

/// Prefix of staging directories (hidden, so listings skip them until they are renamed).
pub(crate) const STAGING_PREFIX: &str = ".new-";
/// How often to retry when the directory changes under us (removed or created concurrently).
const MAX_ATTEMPTS: usize = 64;
/// Largest `total`, `expected` or `started` file we are willing to read.
const MAX_SMALL_FILE: u64 = 128;

/// Distinguishes staging directories created by this process.
static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Paths of one ingest directory.
#[derive(Debug, Clone)]
pub(crate) struct IngestDir {
    path: PathBuf,
}

/// The metadata an ingest keeps besides its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IngestMeta {
    pub(crate) reference: String,
    pub(crate) total: Option<u64>,
    pub(crate) expected: Option<Digest>,
    pub(crate) started_at: SystemTime,
}

/// What reading an ingest directory's metadata found.
pub(crate) enum MetaRead {
    /// Complete, well-formed metadata.
    Valid(IngestMeta),
    /// The directory exists but its metadata is missing or malformed; the text says how.
    Corrupt(String),
}

impl IngestDir {
    /// The ingest directory for `reference` under `ingest_root`.
    pub(crate) fn for_ref(ingest_root: &Path, reference: &str) -> Self {
        Self::at(ingest_root.join(Digest::of(reference.as_bytes()).hex()))
    }

    /// An ingest directory at an explicit path (used when listing).
    pub(crate) fn at(path: PathBuf) -> Self {
        IngestDir { path }
    }

    /// The directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file holding the bytes received so far.
    pub(crate) fn data_path(&self) -> PathBuf {
        self.path.join("data")
    }

    /// Reads the metadata files. `NotFound` (naming `what`) when the directory is gone.
    pub(crate) fn read_meta(&self, what: &str) -> Result<MetaRead> {
        let ref_path = self.path.join("ref");
        let Some(reference) = fsutil::read_small_file(&ref_path, MAX_REF_LEN as u64)? else {
            return if self.path.is_dir() {
                Ok(MetaRead::Corrupt("the ref file is missing".into()))
            } else {
                Err(Error::NotFound {
                    what: what.to_string(),
                })
            };
        };
        let Ok(reference) = String::from_utf8(reference) else {
            return Ok(MetaRead::Corrupt("the ref file is not UTF-8".into()));
        };
        let started_at = match self.read_text("started")? {
            Some(text) => match fsutil::time_from_text(&text) {
                Some(time) => time,
                None => return Ok(MetaRead::Corrupt(format!("bad started time {text:?}"))),
            },
            None => return Ok(MetaRead::Corrupt("the started file is missing".into())),
        };
        let total = match self.read_text("total")? {
            Some(text) => match text.trim().parse() {
                Ok(total) => Some(total),
                Err(_) => return Ok(MetaRead::Corrupt(format!("bad total {text:?}"))),
            },
            None => None,
        };
        let expected = match self.read_text("expected")? {
            Some(text) => match Digest::parse(text.trim()) {
                Ok(digest) => Some(digest),
                Err(_) => return Ok(MetaRead::Corrupt(format!("bad expected digest {text:?}"))),
            },
            None => None,
        };
        Ok(MetaRead::Valid(IngestMeta {
            reference,
            total,
            expected,
            started_at,
        }))
    }

    /// Reads one small metadata file as text; `None` if absent. Non-UTF-8 becomes lossy text,
    /// which then fails to parse and marks the ingest corrupt.
    fn read_text(&self, name: &str) -> Result<Option<String>> {
        let bytes = fsutil::read_small_file(&self.path.join(name), MAX_SMALL_FILE)?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Writes the optional metadata (`total`, `expected`); `None` removes the file.
    pub(crate) fn write_expectations(
        &self,
        total: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<()> {
        write_or_remove(&self.path.join("total"), total.map(|t| t.to_string()))?;
        write_or_remove(&self.path.join("expected"), expected.map(|d| d.to_string()))
    }
}

/// Replaces `path` with `contents`, or removes it when `contents` is `None`.
fn write_or_remove(path: &Path, contents: Option<String>) -> Result<()> {
    match contents {
        Some(text) => fsutil::replace_small_file(path, text.as_bytes()),
        None => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path)(e)),
        },
    }
}

/// An ingest directory whose exclusive lock we hold. Dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct LockedIngest {
    dir: IngestDir,
    /// The open directory carrying the `flock`; kept open for as long as we own the ingest.
    _lock: File,
}

impl LockedIngest {
    /// The directory we hold.
    pub(crate) fn dir(&self) -> &IngestDir {
        &self.dir
    }

    /// Locks the existing ingest directory at `dir`.
    ///
    /// `Ok(None)` when there is no such directory; `Locked` (naming `reference`) when another
    /// writer holds it.
    pub(crate) fn lock_existing(dir: &IngestDir, reference: &str) -> Result<Option<Self>> {
        for _ in 0..MAX_ATTEMPTS {
            let file = match File::open(dir.path()) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open ingest directory", dir.path())(e)),
            };
            if let LockOutcome::Busy = fsutil::try_lock_exclusive(&file, dir.path())? {
                return Err(Error::Locked {
                    reference: reference.to_string(),
                });
            }
            // The previous owner may have removed (and someone else recreated) the directory
            // between our open and our lock; then our lock guards nothing, so look again.
            if fsutil::still_at_path(&file, dir.path())? {
                return Ok(Some(LockedIngest {
                    dir: dir.clone(),
                    _lock: file,
                }));
            }
        }
        Err(changed_too_often(dir.path()))
    }

    /// Creates and locks a fresh ingest directory at `dir` holding `meta` and empty data.
    ///
    /// `Ok(None)` when a directory appeared there first (the caller then locks that one).
    pub(crate) fn create(dir: &IngestDir, meta: &IngestMeta) -> Result<Option<Self>> {
        let parent = dir.path().parent().unwrap_or(Path::new("."));
        let staging = parent.join(format!(
            "{STAGING_PREFIX}{}-{}-{}",
            dir.path().file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            STAGING_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fsutil::create_dir_all(&staging)?;
        let filled = (|| {
            let file =
                File::open(&staging).map_err(Error::io("open ingest directory", &staging))?;
            // Fresh and private: nobody else can hold it.
            fsutil::try_lock_exclusive(&file, &staging)?;
            let staged = IngestDir::at(staging.clone());
            fsutil::replace_small_file(&staging.join("ref"), meta.reference.as_bytes())?;
            fsutil::replace_small_file(
                &staging.join("started"),
                fsutil::time_to_text(meta.started_at).as_bytes(),
            )?;
            staged.write_expectations(meta.total, meta.expected.as_ref())?;
            let data_path = staged.data_path();
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&data_path)
                .map_err(Error::io("create ingest data", &data_path))?;
            Ok(file)
        })();
        let file = match filled {
            Ok(file) => file,
            Err(e) => {
                remove_tree(&staging);
                return Err(e);
            }
        };
        match fsutil::rename_no_replace(&staging, dir.path()) {
            Ok(()) => Ok(Some(LockedIngest {
                dir: dir.clone(),
                _lock: file,
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                remove_tree(&staging);
                Ok(None)
            }
            Err(e) => {
                remove_tree(&staging);
                Err(Error::io("rename ingest directory into place", dir.path())(
                    e,
                ))
            }
        }
    }

    /// Locks the ingest at `dir`, creating it with `new_meta()` if there is none.
    pub(crate) fn open_or_create(
        dir: &IngestDir,
        reference: &str,
        new_meta: impl Fn() -> IngestMeta,
    ) -> Result<Self> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(locked) = Self::lock_existing(dir, reference)? {
                return Ok(locked);
            }
            if let Some(locked) = Self::create(dir, &new_meta())? {
                return Ok(locked);
            }
        }
        Err(changed_too_often(dir.path()))
    }

    /// Deletes the ingest directory and everything in it, then releases the lock.
    pub(crate) fn remove(self) -> Result<()> {
        let path = self.dir.path();
        fs::remove_dir_all(path).map_err(Error::io("remove ingest directory", path))
    }
}

/// Best-effort removal of a directory tree we created (used on error paths).
fn remove_tree(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove staging directory");
    }
}

/// The error when the ingest directory keeps being replaced under us.
fn changed_too_often(path: &Path) -> Error {
    Error::Io {
        op: "lock ingest directory",
        path: path.to_path_buf(),
        source: io::Error::other("the directory kept changing while being locked"),
    }
}
