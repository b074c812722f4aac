//! berth-content: Berth's content-addressed blob store.
//!
//! Blobs are stored once, named by their sha256 digest, under `blobs/sha256/`. Clients put
//! bytes in through *ingests*: resumable uploads named by a client-chosen ref, with exactly one
//! live [`Writer`] per ref (enforced with file locks, across processes too). A writer hashes
//! while it writes and, on [`Writer::commit`], checks the size and digest, then fsyncs and
//! renames the data into place, so a blob on disk is always complete and verified.
//!
//! This crate keeps bytes only. Namespaces, labels and garbage-collection references belong to
//! the daemon's metadata; errors are plain [`Error`] values that the daemon maps onto its API.
//!
//! ```no_run
//! use berth_content::{ContentStore, Digest};
//!
//! # fn main() -> berth_content::Result<()> {
//! let store = ContentStore::open("/var/lib/berth/content")?;
//! let mut writer = store.writer("upload-1", Some(5), None)?;
//! writer.write(0, b"hello")?;
//! let digest = writer.commit(None, Some(Digest::of(b"hello")))?;
//! assert_eq!(store.read_at(&digest, 0, 5)?, b"hello");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod digest;
mod error;
mod fsutil;
mod hasher;
mod ingest;
mod store;

#[cfg(test)]
mod test_support;

pub use digest::Digest;
pub use error::{Error, Result};
pub use hasher::DigestHasher;
pub use ingest::{IngestStatus, Writer};
pub use store::{BlobInfo, ContentStore, MAX_READ_AT_LEN};

/// The longest ingest ref accepted, in bytes. Refs are client strings and only ever hashed,
/// but they are stored and echoed, so they are bounded.
pub const MAX_REF_LEN: usize = 1024;

// The daemon moves stores and writers across threads (e.g. into blocking tasks).
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ContentStore>();
    assert_send_sync::<Writer>();
};
