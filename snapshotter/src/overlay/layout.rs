//! Where things live under the snapshotter's root directory.
//!
//! ```text
//! <root>/snapshots/<id>/fs          the snapshot's files (overlay upperdir, or bind source)
//! <root>/snapshots/<id>/work        overlay workdir
//! <root>/snapshots/<id>/info.json   the snapshot's record
//! <root>/staging/<id>/              a snapshot being created (renamed into snapshots/ when whole)
//! <root>/trash/<id>/                a snapshot being removed (renamed out of snapshots/ first)
//! <root>/next-id                    ids handed out so far (never reused)
//! <root>/lock                       locked while a snapshotter has the root open
//! ```
//!
//! Ids are short decimal numbers so that overlay option strings stay short; client keys
//! never appear in a path.

use std::path::{Path, PathBuf};

/// Paths under one snapshotter root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (an absolute path).
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    /// The root directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding one subdirectory per live snapshot.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Directory where new snapshots are assembled before they appear.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Directory where removed snapshots wait to be deleted.
    pub fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// File recording how far ids have been handed out.
    pub fn id_file(&self) -> PathBuf {
        self.root.join("next-id")
    }

    /// File locked by the snapshotter that has this root open.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// A live snapshot's directory.
    pub fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.snapshots_dir().join(id.to_string())
    }

    /// A live snapshot's files.
    pub fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join(FS_DIR)
    }

    /// A live snapshot's overlay work directory.
    pub fn work_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join(WORK_DIR)
    }

    /// A live snapshot's record.
    pub fn record_file(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join(RECORD_FILE)
    }

    /// Where snapshot `id` is assembled.
    pub fn staging_path(&self, id: u64) -> PathBuf {
        self.staging_dir().join(id.to_string())
    }

    /// Where an entry named `name` waits for deletion.
    pub fn trash_path(&self, name: &str) -> PathBuf {
        self.trash_dir().join(name)
    }
}

/// Name of the files directory inside a snapshot directory.
pub(crate) const FS_DIR: &str = "fs";
/// Name of the overlay work directory inside a snapshot directory.
pub(crate) const WORK_DIR: &str = "work";
/// Name of the record file inside a snapshot directory.
pub(crate) const RECORD_FILE: &str = "info.json";
