//! The records kept in the metadata store, as plain serde types.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Labels on any record.
pub type Labels = BTreeMap<String, String>;

/// A namespace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// User labels.
    pub labels: Labels,
}

/// A content descriptor, as an image target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorRecord {
    /// Media type of the blob.
    pub media_type: String,
    /// `sha256:<hex>` digest.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// OCI annotations.
    pub annotations: Labels,
}

/// An image: a name pointing at a manifest or index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// User and GC labels.
    pub labels: Labels,
    /// The root blob.
    pub target: DescriptorRecord,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last update time.
    pub updated_at: SystemTime,
}

/// A blob made visible in a namespace (the bytes are in the content store, once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentRecord {
    /// Size in bytes.
    pub size: i64,
    /// User and GC labels.
    pub labels: Labels,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last update time.
    pub updated_at: SystemTime,
}

/// Something a lease keeps alive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseResource {
    /// Resource type as containerd names it: `content`, `ingests`, `snapshots/<snapshotter>`.
    pub kind: String,
    /// The resource's id: a digest, an ingest ref, a snapshot key.
    pub id: String,
}

/// A lease: a GC root for everything added under it until it is deleted or expires.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Labels (`containerd.io/gc.expire` holds an RFC 3339 expiry).
    pub labels: Labels,
    /// Creation time.
    pub created_at: Option<SystemTime>,
    /// What the lease holds.
    pub resources: BTreeSet<LeaseResource>,
}
