//! In-flight ingests: opening writers, reporting status, aborting, and sweeping stale ones.
//!
//! An ingest is named by a client-chosen ref (any string up to [`MAX_REF_LEN`] bytes). Its
//! directory is named by the sha256 of the ref, so refs never become paths.

mod layout;
mod status;
mod writer;

use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

pub use status::IngestStatus;
pub use writer::Writer;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil::{self, LockOutcome};
use crate::store::ContentStore;
use crate::MAX_REF_LEN;
use layout::{IngestDir, IngestMeta, LockedIngest, MetaRead, STAGING_PREFIX};

impl ContentStore {
    /// Opens the one writer of the ingest `reference`, creating the ingest or resuming it.
    ///
    /// A resumed ingest keeps its data: the writer's offset is the data's length and the hash
    /// is rebuilt from it. `expected_total` and `expected`, when given, replace what the ingest
    /// recorded before. Errors: `AlreadyExists` when `expected` is already a committed blob,
    /// `Locked` while another writer (in any process) holds the ref, `InvalidArgument` for an
    /// empty or over-long ref.
    pub fn writer(
        &self,
        reference: &str,
        expected_total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<Writer> {
        validate_ref(reference)?;
        if let Some(digest) = expected.filter(|d| self.exists(d)) {
            return Err(Error::AlreadyExists {
                what: format!("blob {digest}"),
            });
        }
        let dir = IngestDir::for_ref(self.ingest_dir(), reference);
        let new_meta = || IngestMeta {
            reference: reference.to_string(),
            total: expected_total,
            expected,
            started_at: SystemTime::now(),
        };
        let locked = LockedIngest::open_or_create(&dir, reference, new_meta)?;
        let what = format!("ingest ref {reference:?}");
        let meta = match locked.dir().read_meta(&what)? {
            MetaRead::Valid(meta) if meta.reference == reference => Some(meta),
            MetaRead::Valid(meta) => {
                return Err(Error::FailedPrecondition(format!(
                    "ingest directory {} belongs to ref {:?}, not {reference:?}",
                    dir.path().display(),
                    meta.reference
                )))
            }
            MetaRead::Corrupt(why) => {
                tracing::warn!(path = %dir.path().display(), %why, "replacing damaged ingest");
                None
            }
        };
        let (locked, mut meta) = match meta {
            Some(meta) => (locked, meta),
            None => {
                locked.remove()?;
                let fresh = new_meta();
                let locked = LockedIngest::open_or_create(&dir, reference, || fresh.clone())?;
                (locked, fresh)
            }
        };
        let total = expected_total.or(meta.total);
        let expected = expected.or(meta.expected);
        if (total, expected) != (meta.total, meta.expected) {
            locked.dir().write_expectations(total, expected.as_ref())?;
            meta.total = total;
            meta.expected = expected;
        }
        Writer::resume(self.clone(), locked, meta)
    }

    /// The status of the ingest `reference`, read from disk; `NotFound` if there is none.
    /// Works while a writer is live (its offset then reflects what has reached the file).
    pub fn status(&self, reference: &str) -> Result<IngestStatus> {
        validate_ref(reference)?;
        let dir = IngestDir::for_ref(self.ingest_dir(), reference);
        status::read_status(&dir, Some(reference))
    }

    /// Statuses of every ingest on disk, sorted by ref. Damaged or half-created ingest
    /// directories are skipped.
    pub fn list_statuses(&self) -> Result<Vec<IngestStatus>> {
        let root = self.ingest_dir();
        let entries = fs::read_dir(root).map_err(Error::io("list", root))?;
        let mut statuses = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("list", root))?;
            let is_ingest_name = entry
                .file_name()
                .to_str()
                .is_some_and(|name| Digest::from_hex(name).is_ok());
            if !is_ingest_name {
                continue;
            }
            match status::read_status(&IngestDir::at(entry.path()), None) {
                Ok(status) => statuses.push(status),
                Err(e) => {
                    tracing::debug!(path = %entry.path().display(), error = %e, "skipping ingest")
                }
            }
        }
        statuses.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(statuses)
    }

    /// Deletes the ingest `reference` and its data. `NotFound` if there is none, `Locked`
    /// while a writer holds it.
    pub fn abort(&self, reference: &str) -> Result<()> {
        validate_ref(reference)?;
        let dir = IngestDir::for_ref(self.ingest_dir(), reference);
        match LockedIngest::lock_existing(&dir, reference)? {
            Some(locked) => locked.remove(),
            None => Err(Error::NotFound {
                what: format!("ingest ref {reference:?}"),
            }),
        }
    }

    /// Deletes every ingest not written to for longer than `older_than`, plus leftovers of
    /// interrupted ingest creation of that age. Ingests with a live writer are skipped.
    /// Returns how many directories were removed.
    pub fn remove_stale_ingests(&self, older_than: Duration) -> Result<usize> {
        let root = self.ingest_dir();
        let entries = fs::read_dir(root).map_err(Error::io("list", root))?;
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(Error::io("list", root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(Digest::from_hex(name).is_ok() || name.starts_with(STAGING_PREFIX)) {
                continue;
            }
            let dir = IngestDir::at(entry.path());
            if remove_if_stale(&dir, now, older_than)? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Removes one ingest directory if it is unlocked and idle for longer than `older_than`.
fn remove_if_stale(dir: &IngestDir, now: SystemTime, older_than: Duration) -> Result<bool> {
    let path = dir.path();
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("open ingest directory", path)(e)),
    };
    if !file.metadata().map_err(Error::io("stat", path))?.is_dir() {
        return Ok(false);
    }
    if let LockOutcome::Busy = fsutil::try_lock_exclusive(&file, path)? {
        return Ok(false);
    }
    if !fsutil::still_at_path(&file, path)? {
        return Ok(false);
    }
    let last_activity = match status::read_status(dir, None) {
        Ok(status) => status.updated_at,
        Err(_) => fsutil::modified(&file.metadata().map_err(Error::io("stat", path))?),
    };
    let idle = now.duration_since(last_activity).unwrap_or_default();
    if idle <= older_than {
        return Ok(false);
    }
    fs::remove_dir_all(path).map_err(Error::io("remove stale ingest", path))?;
    tracing::debug!(path = %path.display(), idle_secs = idle.as_secs(), "removed stale ingest");
    Ok(true)
}

/// Checks that an ingest ref is usable: not empty, at most [`MAX_REF_LEN`] bytes.
fn validate_ref(reference: &str) -> Result<()> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument(
            "ingest ref must not be empty".into(),
        ));
    }
    if reference.len() > MAX_REF_LEN {
        return Err(Error::InvalidArgument(format!(
            "ingest ref is {} bytes long, the limit is {MAX_REF_LEN}",
            reference.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
