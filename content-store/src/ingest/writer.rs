//! [`Writer`]: sole owner of one in-flight ingest, hashing bytes as they are written and
//! committing them as a blob once size and digest check out.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::hasher::DigestHasher;
use crate::ingest::layout::{IngestMeta, LockedIngest};
use crate::ingest::status::IngestStatus;
use crate::store::ContentStore;

/// Chunk size used when re-reading existing data to rebuild the hash.
const REHASH_CHUNK: usize = 1 << 20;
/// Mode of committed blobs: nobody writes to content-addressed data.
const BLOB_MODE: u32 = 0o444;

/// The one live writer of an ingest (see [`ContentStore::writer`]).
///
/// Bytes are hashed in the same pass as they are written; nothing is fsynced until
/// [`Writer::commit`]. Dropping a writer without committing keeps the ingest on disk so it can
/// be resumed later, and releases the lock.
#[derive(Debug)]
pub struct Writer {
    store: ContentStore,
    ingest: LockedIngest,
    data: File,
    hasher: DigestHasher,
    meta: IngestMeta,
    updated_at: SystemTime,
    /// Set when a failed write or truncate left the file and the hash out of step; the writer
    /// then refuses further work (reopening re-hashes the file and recovers).
    broken: bool,
}

impl Writer {
    /// Takes over a locked ingest: opens its data and re-hashes what is already there.
    pub(crate) fn resume(
        store: ContentStore,
        ingest: LockedIngest,
        meta: IngestMeta,
    ) -> Result<Self> {
        let data_path = ingest.dir().data_path();
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(Error::io("open ingest data", &data_path))?;
        let metadata = data
            .metadata()
            .map_err(Error::io("stat ingest data", &data_path))?;
        let hasher = hash_prefix(&data, metadata.len(), &data_path)?;
        Ok(Writer {
            store,
            ingest,
            data,
            hasher,
            updated_at: fsutil::modified(&metadata).max(meta.started_at),
            meta,
            broken: false,
        })
    }

    /// The client's ref of this ingest.
    pub fn reference(&self) -> &str {
        &self.meta.reference
    }

    /// Bytes written so far: where the next [`Writer::write`] must start.
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }

    /// The expected total size, if known.
    pub fn total(&self) -> Option<u64> {
        self.meta.total
    }

    /// The expected digest, if known.
    pub fn expected(&self) -> Option<Digest> {
        self.meta.expected
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    /// The current status, from memory (no disk access).
    pub fn status(&self) -> IngestStatus {
        IngestStatus {
            reference: self.meta.reference.clone(),
            offset: self.offset(),
            total: self.meta.total,
            expected: self.meta.expected,
            started_at: self.meta.started_at,
            updated_at: self.updated_at,
        }
    }

    /// Writes `bytes` at `offset`.
    ///
    /// `offset` must be the current [`offset`](Writer::offset), or smaller to rewind: the data
    /// is then cut back to `offset` (and re-hashed) before writing. A larger offset, or a write
    /// running past the expected total, is `FailedPrecondition` and changes nothing.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.check_usable()?;
        let current = self.offset();
        if offset > current {
            return Err(Error::FailedPrecondition(format!(
                "write at offset {offset} for ref {:?} skips ahead: only {current} bytes written",
                self.meta.reference
            )));
        }
        let end = offset.checked_add(bytes.len() as u64);
        if let Some(total) = self.meta.total {
            if !matches!(end, Some(end) if end <= total) {
                return Err(Error::FailedPrecondition(format!(
                    "write of {} bytes at offset {offset} for ref {:?} goes past the expected total of {total} bytes",
                    bytes.len(),
                    self.meta.reference
                )));
            }
        }
        if offset < current {
            self.rewind(offset)?;
        }
        self.append(bytes)
    }

    /// Checks the size and digest and, when both match, makes the data a committed blob.
    ///
    /// `size` and `expected` are checked in addition to the total and digest given when the
    /// writer was opened. On a mismatch nothing is committed and the ingest stays on disk as it
    /// is (resumable: reopen it, rewind with a smaller offset, or abort it); the error says what
    /// was expected and what was found. If the blob already exists, the ingest is removed and
    /// the result is `AlreadyExists`.
    ///
    /// Order: fsync the data, rename it into `blobs/sha256/` (never replacing), fsync that
    /// directory, then remove the ingest directory.
    pub fn commit(self, size: Option<u64>, expected: Option<Digest>) -> Result<Digest> {
        self.check_usable()?;
        let got_size = self.offset();
        for (source, want) in [("commit", size), ("ingest", self.meta.total)] {
            if let Some(want) = want.filter(|want| *want != got_size) {
                return Err(Error::FailedPrecondition(format!(
                    "size mismatch for ref {:?}: expected {want} bytes (from the {source}), got {got_size}",
                    self.meta.reference
                )));
            }
        }
        let got = self.hasher.digest();
        for (source, want) in [("commit", expected), ("ingest", self.meta.expected)] {
            if let Some(want) = want.filter(|want| *want != got) {
                return Err(Error::FailedPrecondition(format!(
                    "digest mismatch for ref {:?}: expected {want} (from the {source}), got {got}",
                    self.meta.reference
                )));
            }
        }

        let blob_path = self.store.blob_path(&got);
        if self.store.exists(&got) {
            return self.discard_as_duplicate(got);
        }
        let data_path = self.ingest.dir().data_path();
        self.data
            .sync_data()
            .map_err(Error::io("fsync ingest data", &data_path))?;
        self.data
            .set_permissions(Permissions::from_mode(BLOB_MODE))
            .map_err(Error::io("make blob read-only", &data_path))?;
        match fsutil::rename_no_replace(&data_path, &blob_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return self.discard_as_duplicate(got)
            }
            Err(e) => {
                return Err(Error::io(
                    "rename ingest data into the blob store",
                    &blob_path,
                )(e))
            }
        }
        fsutil::fsync_dir(self.store.blobs_dir())?;
        let ingest_path = self.ingest.dir().path().to_path_buf();
        if let Err(e) = self.ingest.remove() {
            // The blob is committed and durable; a leftover ingest directory without data is
            // harmless and goes away with the next stale-ingest sweep.
            tracing::warn!(path = %ingest_path.display(), error = %e, "could not remove committed ingest");
        }
        tracing::debug!(digest = %got, size = got_size, "committed blob");
        Ok(got)
    }

    /// Removes the ingest because its content is already a blob, and reports `AlreadyExists`.
    fn discard_as_duplicate(self, digest: Digest) -> Result<Digest> {
        self.ingest.remove()?;
        Err(Error::AlreadyExists {
            what: format!("blob {digest}"),
        })
    }

    /// Writes at the end of the data and feeds the hash.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.data.write_all_at(bytes, self.offset()) {
            self.broken = true;
            return Err(Error::io(
                "write ingest data",
                &self.ingest.dir().data_path(),
            )(e));
        }
        self.hasher.update(bytes);
        self.updated_at = SystemTime::now();
        Ok(())
    }

    /// Cuts the data back to `offset` and rebuilds the hash of what remains.
    fn rewind(&mut self, offset: u64) -> Result<()> {
        let data_path = self.ingest.dir().data_path();
        self.broken = true;
        self.data
            .set_len(offset)
            .map_err(Error::io("truncate ingest data", &data_path))?;
        self.hasher = hash_prefix(&self.data, offset, &data_path)?;
        self.broken = false;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    /// Refuses work after an I/O failure left the file and the hash disagreeing.
    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::FailedPrecondition(format!(
                "writer for ref {:?} failed earlier; open the ingest again to resume",
                self.meta.reference
            )));
        }
        Ok(())
    }
}

/// Appends at the current end of the data: the fast path for the daemon's own producers
/// (for example a diff being written straight into the store).
impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Writer::write(self, self.offset(), buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes the first `len` bytes of `file`.
fn hash_prefix(file: &File, len: u64, path: &Path) -> Result<DigestHasher> {
    let mut hasher = DigestHasher::new();
    let mut buffer = vec![0u8; REHASH_CHUNK.min(len as usize)];
    while hasher.len() < len {
        let want = (len - hasher.len()).min(buffer.len() as u64) as usize;
        match file.read_at(&mut buffer[..want], hasher.len()) {
            Ok(0) => {
                return Err(Error::io("re-hash ingest data", path)(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at {} bytes, expected {len}", hasher.len()),
                )))
            }
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("re-hash ingest data", path)(e)),
        }
    }
    Ok(hasher)
}
