//! The progress report of an in-flight ingest, as callers see it.

use std::fs;
use std::io;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::ingest::layout::{IngestDir, MetaRead};

/// Where an ingest stands: what has been received and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The client's ref for this ingest.
    pub reference: String,
    /// Bytes received so far; the next write must start here (or earlier, to rewind).
    pub offset: u64,
    /// Expected total size, when the client gave one.
    pub total: Option<u64>,
    /// Expected digest, when the client gave one.
    pub expected: Option<Digest>,
    /// When the ingest was first opened.
    pub started_at: SystemTime,
    /// When data was last written (or the ingest started, if nothing was written yet).
    pub updated_at: SystemTime,
}

/// Reads the status of the ingest in `dir` from disk.
///
/// `NotFound` when the directory is absent or belongs to another ref (named `reference` when
/// given); `FailedPrecondition` when its metadata is damaged.
pub(crate) fn read_status(dir: &IngestDir, reference: Option<&str>) -> Result<IngestStatus> {
    let what = match reference {
        Some(reference) => format!("ingest ref {reference:?}"),
        None => format!("ingest {}", dir.path().display()),
    };
    let meta = match dir.read_meta(&what)? {
        MetaRead::Valid(meta) => meta,
        MetaRead::Corrupt(why) => {
            return Err(Error::FailedPrecondition(format!(
                "ingest directory {} is damaged: {why}",
                dir.path().display()
            )))
        }
    };
    if reference.is_some_and(|r| r != meta.reference) {
        return Err(Error::NotFound { what });
    }
    let data_path = dir.data_path();
    let (offset, updated_at) = match fs::metadata(&data_path) {
        Ok(data) => (data.len(), fsutil::modified(&data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0, meta.started_at),
        Err(e) => return Err(Error::io("stat ingest data", &data_path)(e)),
    };
    Ok(IngestStatus {
        reference: meta.reference,
        offset,
        total: meta.total,
        expected: meta.expected,
        started_at: meta.started_at,
        updated_at: updated_at.max(meta.started_at),
    })
}
