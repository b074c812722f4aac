//! Helpers shared by this crate's unit tests: a store in a temporary directory.

use std::path::Path;

use crate::digest::Digest;
use crate::store::ContentStore;

/// A content store in a fresh temporary directory, removed when dropped (also on panic).
pub(crate) struct TempStore {
    pub(crate) store: ContentStore,
    dir: tempfile::TempDir,
}

impl TempStore {
    /// Creates the directory and opens a store on it.
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-content-test-")
            .tempdir()
            .expect("create temp dir");
        let store = ContentStore::open(dir.path()).expect("open store");
        TempStore { store, dir }
    }

    /// The store's root directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Ingests `content` under `reference` in one write and commits it.
pub(crate) fn commit_bytes(store: &ContentStore, reference: &str, content: &[u8]) -> Digest {
    let mut writer = store.writer(reference, None, None).expect("open writer");
    writer.write(0, content).expect("write");
    writer
        .commit(Some(content.len() as u64), Some(Digest::of(content)))
        .expect("commit")
}
