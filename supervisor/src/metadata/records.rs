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

/// A `google.protobuf.Any` as stored: its type URL and its bytes. The bytes are base64
/// text in the JSON record (a spec of 1 MiB stays about 1.3 MiB, not a list of numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyRecord {
    /// Type URL, e.g. `types.containerd.io/opencontainers/runtime-spec/1/Spec`.
    pub type_url: String,
    /// The encoded value (protobuf bytes, or JSON for OCI documents).
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

/// The runtime a container's task runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// Runtime name, e.g. `io.containerd.runc.v2`. Fixed at create.
    pub name: String,
    /// Runtime options (e.g. `containerd.runc.v1.Options`), if the client sent any.
    pub options: Option<AnyRecord>,
}

/// A container: the static description a task is later started from (no running state).
///
/// Garbage collection reads `snapshot_key` from this record's JSON to keep the container's
/// root filesystem snapshot alive, so that field keeps its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container id (also the record's name), checked by the identifier grammar.
    pub id: String,
    /// User labels.
    pub labels: Labels,
    /// Name of the image the container was made from; may be empty.
    pub image: String,
    /// Runtime name and options.
    pub runtime: RuntimeRecord,
    /// The runtime spec (for runc: the OCI spec as JSON).
    pub spec: AnyRecord,
    /// Snapshotter holding the root filesystem; empty when there is none. Fixed at create.
    pub snapshotter: String,
    /// The client's key of the root filesystem snapshot; empty when there is none.
    pub snapshot_key: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last update time.
    pub updated_at: SystemTime,
    /// Client-owned extra data by name.
    pub extensions: BTreeMap<String, AnyRecord>,
    /// Sandbox the container belongs to; empty when none. Fixed at create.
    pub sandbox: String,
}

/// Serde for byte strings as standard base64 text.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_records_keep_bytes_and_the_field_gc_reads() {
        let now = SystemTime::now();
        let record = ContainerRecord {
            id: "c1".into(),
            labels: Labels::from([("a".into(), "b".into())]),
            image: "localhost/busybox:latest".into(),
            runtime: RuntimeRecord {
                name: "io.containerd.runc.v2".into(),
                options: Some(AnyRecord {
                    type_url: "containerd.runc.v1.Options".into(),
                    value: vec![0, 1, 255],
                }),
            },
            spec: AnyRecord {
                type_url: "spec".into(),
                value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
            },
            snapshotter: "overlayfs".into(),
            snapshot_key: "c1-snap".into(),
            created_at: now,
            updated_at: now,
            extensions: BTreeMap::from([("ext".into(), AnyRecord::default())]),
            sandbox: String::new(),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["snapshot_key"], "c1-snap");
        assert_eq!(json["snapshotter"], "overlayfs");
        assert_eq!(json["runtime"]["options"]["value"], "AAH/");
        let back: ContainerRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
