//! What the snapshotter knows about each snapshot, and how that is stored on disk.
//!
//! Each snapshot's record is one small JSON file inside the snapshot's own directory
//! (`snapshots/<id>/info.json`), so the record and the directories it describes appear
//! (by one rename) and disappear (by one rename) together.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::durable::write_atomically;
use crate::error::{Error, Result};

/// The three states of a snapshot, as containerd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-write, made by `prepare`; can be committed.
    Active,
    /// Read-only, made by `view`; cannot be committed.
    View,
    /// Immutable, made by `commit`; can be the parent of other snapshots.
    Committed,
}

/// What a client sees of a snapshot (containerd's `snapshots.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The snapshot's key (active and view snapshots) or name (committed snapshots).
    pub name: String,
    /// The name of the committed snapshot this one is built on, if any.
    pub parent: Option<String>,
    /// Active, view or committed.
    pub kind: Kind,
    /// Free-form labels set by clients (e.g. `containerd.io/gc.root`).
    pub labels: BTreeMap<String, String>,
    /// When the snapshot was made (for a committed one: when it was committed).
    pub created: SystemTime,
    /// When the snapshot's record last changed.
    pub updated: SystemTime,
}

/// Disk space taken by a snapshot's own directory (not its parents').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of disk allocated (block count × 512), each hard-linked file counted once.
    pub size: u64,
    /// Number of distinct inodes, the directory itself included.
    pub inodes: u64,
}

/// One snapshot's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The numeric id naming the snapshot's directory (`snapshots/<id>`).
    pub id: u64,
    /// Key (active/view) or name (committed).
    pub key: String,
    /// Active, view or committed.
    pub kind: Kind,
    /// Name of the committed parent, if any.
    pub parent: Option<String>,
    /// Client labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    pub created: SystemTime,
    /// Last change of the record.
    pub updated: SystemTime,
    /// Usage measured when the snapshot was committed (committed snapshots never change).
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl Record {
    /// The client's view of this record.
    pub fn info(&self) -> Info {
        Info {
            name: self.key.clone(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: self.created,
            updated: self.updated,
        }
    }

    /// Reads a record file.
    pub fn load(path: &Path) -> Result<Record> {
        let bytes = std::fs::read(path)
            .map_err(|err| Error::io(format!("read {}", path.display()), err))?;
        serde_json::from_slice(&bytes).map_err(|err| {
            Error::io(
                format!("parse snapshot record {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            )
        })
    }

    /// Writes the record file atomically and durably (old or new content after a crash).
    pub fn store(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|err| {
            Error::io(
                format!("encode snapshot record {}", self.id),
                std::io::Error::other(err),
            )
        })?;
        write_atomically(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("info.json");
        let record = Record {
            id: 7,
            key: "ns/3/sha256:abc".to_string(),
            kind: Kind::Committed,
            parent: Some("ns/2/sha256:def".to_string()),
            labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
            created: SystemTime::UNIX_EPOCH + std::time::Duration::new(5, 6),
            updated: SystemTime::now(),
            usage: Some(Usage {
                size: 4096,
                inodes: 1,
            }),
        };
        record.store(&path).unwrap();
        assert_eq!(Record::load(&path).unwrap(), record);
        let info = record.info();
        assert_eq!(info.name, record.key);
        assert_eq!(info.kind, Kind::Committed);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("info.json");
        std::fs::write(&path, b"{\"id\": 1, \"key\"").unwrap();
        assert!(matches!(Record::load(&path), Err(Error::Io { .. })));
    }
}
