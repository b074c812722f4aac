//! The content store and its committed blobs: open, look up, read, delete, walk.
//!
//! Layout under the root given to [`ContentStore::open`] (normally `<berth root>/content`):
//!
//! ```text
//! blobs/sha256/<64 hex>      committed blobs, read-only, named by their digest
//! ingest/<sha256 of ref>/    one directory per in-flight ingest (see the `ingest` module)
//! ```
//!
//! A blob file exists under `blobs/sha256/` only once its bytes were fsynced and verified, so
//! anything there with a valid name is a complete blob. Other names (left by hand or by some
//! other tool) are ignored, never reported as blobs.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil;

/// The largest `len` accepted by [`ContentStore::read_at`]: 8 MiB. Larger reads must be split
/// (or use [`ContentStore::open_blob`]); this keeps one request from allocating without bound.
pub const MAX_READ_AT_LEN: u64 = 8 << 20;

/// What the store knows about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's digest (also its name).
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// When its bytes were last written, i.e. when it was ingested.
    pub created_at: SystemTime,
}

/// A content-addressed blob store rooted at one directory.
///
/// Cheap to clone; all methods take `&self` and may be called from many threads. Exclusion
/// between writers of the same ingest is done with file locks, so several processes sharing a
/// root are safe too.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    blobs_dir: PathBuf,
    ingest_dir: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let store = ContentStore {
            blobs_dir: root.join("blobs").join(Digest::ALGORITHM),
            ingest_dir: root.join("ingest"),
            root,
        };
        fsutil::create_dir_all(&store.blobs_dir)?;
        fsutil::create_dir_all(&store.ingest_dir)?;
        Ok(store)
    }

    /// The directory this store was opened on.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding committed sha256 blobs.
    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.blobs_dir
    }

    /// The directory holding one sub-directory per in-flight ingest.
    pub(crate) fn ingest_dir(&self) -> &Path {
        &self.ingest_dir
    }

    /// Where the blob `digest` lives (or would live) on disk.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir.join(digest.hex())
    }

    /// Size and time of a committed blob; `NotFound` if it is not committed.
    pub fn info(&self, digest: &Digest) -> Result<BlobInfo> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(blob_info(*digest, &metadata)),
            Ok(_) => Err(blob_not_found(digest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(blob_not_found(digest)),
            Err(e) => Err(Error::io("stat blob", &path)(e)),
        }
    }

    /// True when the blob is committed.
    pub fn exists(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Opens a committed blob for reading (close-on-exec, read-only).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(blob_not_found(digest)),
            Err(e) => Err(Error::io("open blob", &path)(e)),
        }
    }

    /// Reads up to `len` bytes of a blob starting at `offset`.
    ///
    /// Returns fewer bytes when the blob ends first, and nothing when `offset` equals the size.
    /// `offset` past the end is `InvalidArgument`, and so is `len` above [`MAX_READ_AT_LEN`].
    pub fn read_at(&self, digest: &Digest, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len > MAX_READ_AT_LEN {
            return Err(Error::InvalidArgument(format!(
                "read of {len} bytes is larger than the limit of {MAX_READ_AT_LEN} bytes"
            )));
        }
        let file = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let size = file
            .metadata()
            .map_err(Error::io("stat blob", &path))?
            .len();
        if offset > size {
            return Err(Error::InvalidArgument(format!(
                "read offset {offset} is past the end of {digest} ({size} bytes)"
            )));
        }
        let wanted = len.min(size - offset) as usize;
        let mut buffer = vec![0u8; wanted];
        let mut filled = 0;
        while filled < wanted {
            match file.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break, // the file shrank under us; return what there is
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read blob", &path)(e)),
            }
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    /// Removes a committed blob; `NotFound` if it is not there.
    ///
    /// The directory is not fsynced: a delete lost in a crash leaves an unreferenced blob that
    /// the next garbage collection removes again.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(blob_not_found(digest)),
            Err(e) => Err(Error::io("remove blob", &path)(e)),
        }
    }

    /// Lists every committed blob, sorted by digest. Entries whose name is not a valid digest
    /// or that are not regular files are skipped.
    pub fn walk(&self) -> Result<Vec<BlobInfo>> {
        let entries = fs::read_dir(&self.blobs_dir).map_err(Error::io("list", &self.blobs_dir))?;
        let mut blobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("list", &self.blobs_dir))?;
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                tracing::debug!(name = ?name, "skipping non-blob entry in the blob directory");
                continue;
            };
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Deleted between the listing and the stat: not a blob any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat blob", &entry.path())(e)),
            };
            if metadata.is_file() {
                blobs.push(blob_info(digest, &metadata));
            }
        }
        blobs.sort_by_key(|blob| blob.digest);
        Ok(blobs)
    }
}

/// Builds a [`BlobInfo`] from a blob file's metadata.
fn blob_info(digest: Digest, metadata: &fs::Metadata) -> BlobInfo {
    BlobInfo {
        digest,
        size: metadata.len(),
        created_at: fsutil::modified(metadata),
    }
}

/// The `NotFound` error for a blob.
pub(crate) fn blob_not_found(digest: &Digest) -> Error {
    Error::NotFound {
        what: format!("blob {digest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{commit_bytes, TempStore};

    #[test]
    fn open_creates_the_layout() {
        let temp = TempStore::new();
        assert!(temp.path().join("blobs/sha256").is_dir());
        assert!(temp.path().join("ingest").is_dir());
        // Opening again on the same root is fine and sees the same blobs.
        let digest = commit_bytes(&temp.store, "again", b"payload");
        let reopened = ContentStore::open(temp.path()).unwrap();
        assert!(reopened.exists(&digest));
    }

    #[test]
    fn info_open_and_exists_report_committed_blobs_only() {
        let temp = TempStore::new();
        let digest = commit_bytes(&temp.store, "r", b"hello blob");
        let info = temp.store.info(&digest).unwrap();
        assert_eq!(info.digest, digest);
        assert_eq!(info.size, 10);
        assert!(temp.store.exists(&digest));
        assert_eq!(
            std::fs::read(temp.store.blob_path(&digest)).unwrap(),
            b"hello blob"
        );

        let missing = Digest::of(b"never written");
        assert!(!temp.store.exists(&missing));
        assert!(matches!(
            temp.store.info(&missing),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            temp.store.open_blob(&missing),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn read_at_honours_offset_length_and_bounds() {
        let temp = TempStore::new();
        let digest = commit_bytes(&temp.store, "r", b"0123456789");
        let store = &temp.store;
        assert_eq!(store.read_at(&digest, 0, 4).unwrap(), b"0123");
        assert_eq!(store.read_at(&digest, 6, 100).unwrap(), b"6789");
        assert_eq!(store.read_at(&digest, 10, 5).unwrap(), b"");
        assert_eq!(store.read_at(&digest, 3, 0).unwrap(), b"");
        assert!(matches!(
            store.read_at(&digest, 11, 1),
            Err(Error::InvalidArgument(m)) if m.contains("past the end")
        ));
        assert!(matches!(
            store.read_at(&digest, 0, MAX_READ_AT_LEN + 1),
            Err(Error::InvalidArgument(m)) if m.contains("limit")
        ));
        assert_eq!(
            store.read_at(&digest, 0, MAX_READ_AT_LEN).unwrap(),
            b"0123456789"
        );
        assert!(matches!(
            store.read_at(&Digest::of(b"x"), 0, 1),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn delete_removes_the_blob_and_then_reports_not_found() {
        let temp = TempStore::new();
        let digest = commit_bytes(&temp.store, "r", b"to delete");
        temp.store.delete(&digest).unwrap();
        assert!(!temp.store.exists(&digest));
        assert!(!temp.store.blob_path(&digest).exists());
        assert!(matches!(
            temp.store.delete(&digest),
            Err(Error::NotFound { .. })
        ));
        assert!(temp.store.walk().unwrap().is_empty());
    }

    #[test]
    fn walk_lists_blobs_sorted_and_ignores_junk() {
        let temp = TempStore::new();
        let mut digests: Vec<Digest> = ["a", "b", "c"]
            .iter()
            .map(|content| commit_bytes(&temp.store, content, content.as_bytes()))
            .collect();
        digests.sort();
        let blobs_dir = temp.path().join("blobs/sha256");
        std::fs::write(blobs_dir.join("not-a-digest"), b"junk").unwrap();
        std::fs::write(blobs_dir.join(Digest::of(b"d").hex().to_uppercase()), b"d").unwrap();
        std::fs::create_dir(blobs_dir.join(Digest::of(b"dir").hex())).unwrap();

        let walked = temp.store.walk().unwrap();
        let walked_digests: Vec<Digest> = walked.iter().map(|b| b.digest).collect();
        assert_eq!(walked_digests, digests);
        assert!(walked.iter().all(|b| b.size == 1));
    }

    #[test]
    fn leftover_temp_file_from_an_interrupted_commit_is_not_a_blob() {
        let temp = TempStore::new();
        let content = b"half-committed";
        let digest = Digest::of(content);
        // What a crash can leave around: a partly written sibling of the final name, and an
        // ingest whose data was never renamed into place.
        let blobs_dir = temp.path().join("blobs/sha256");
        std::fs::write(blobs_dir.join(format!(".{}.tmp", digest.hex())), content).unwrap();
        std::fs::write(blobs_dir.join(format!("{}.tmp", digest.hex())), content).unwrap();
        let mut writer = temp.store.writer("crashed", None, None).unwrap();
        writer.write(0, content).unwrap();
        drop(writer);

        assert!(!temp.store.exists(&digest));
        assert!(matches!(
            temp.store.info(&digest),
            Err(Error::NotFound { .. })
        ));
        assert!(temp.store.walk().unwrap().is_empty());

        // The interrupted ingest is still there and finishes normally.
        let writer = temp.store.writer("crashed", None, None).unwrap();
        assert_eq!(writer.offset(), content.len() as u64);
        assert_eq!(writer.commit(None, Some(digest)).unwrap(), digest);
        assert_eq!(temp.store.walk().unwrap().len(), 1);
    }
}
