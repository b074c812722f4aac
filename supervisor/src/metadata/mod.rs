//! The supervisor's metadata: every namespaced record (namespaces, images, content,
//! leases, containers) lives in one sled tree, and every write goes through
//! [`MetaStore::write`], which applies one atomic batch and flushes it to disk before
//! returning — so a reply to a client is only sent for a record that is durable. Leases
//! alone use [`MetaStore::write_lazily`] (see there why losing one in a crash is harmless).
//!
//! Keys are `<kind byte><namespace>\0<name>`: listing a namespace's images is a prefix
//! scan, and nothing here ever becomes a path on the host.

mod records;

pub use records::*;

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Mutex;

/// How often sled flushes writes made with [`MetaStore::write_lazily`], in milliseconds.
const BACKGROUND_FLUSH_MS: u64 = 500;

/// What kind of record a key holds; the byte is the key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A namespace (its name is the record name; the namespace part is empty).
    Namespace = b'n' as isize,
    /// An image, by name.
    Image = b'i' as isize,
    /// A blob visible in a namespace, by digest.
    Content = b'c' as isize,
    /// A lease, by id.
    Lease = b'l' as isize,
    /// A container, by id.
    Container = b'k' as isize,
}

/// Why a metadata read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The sled database failed.
    #[error("metadata store: {0}")]
    Store(#[from] sled::Error),
    /// A record could not be encoded or decoded.
    #[error("metadata record {key}: {source}")]
    Codec {
        /// The record's key, printable.
        key: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// The metadata database.
pub struct MetaStore {
    db: sled::Db,
    records: sled::Tree,
    /// Serialises writers so that a read-check-write sequence sees no interleaving.
    write_lock: Mutex<()>,
}

fn key(kind: Kind, ns: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + ns.len() + name.len());
    k.push(kind as u8);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn prefix(kind: Kind, ns: &str) -> Vec<u8> {
    key(kind, ns, "")
}

fn decode<T: DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(v).map_err(|source| MetaError::Codec {
        key: String::from_utf8_lossy(k).into_owned(),
        source,
    })
}

impl MetaStore {
    /// Opens (or creates) the database at `path` (normally `<root>/meta.sled`).
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(BACKGROUND_FLUSH_MS))
            .open()?;
        let records = db.open_tree("records")?;
        Ok(Self {
            db,
            records,
            write_lock: Mutex::new(()),
        })
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
    ) -> Result<Option<T>, MetaError> {
        let k = key(kind, ns, name);
        match self.records.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    /// Lists every record of `kind` in namespace `ns`, as (name, record), sorted by name.
    pub fn list<T: DeserializeOwned>(
        &self,
        kind: Kind,
        ns: &str,
    ) -> Result<Vec<(String, T)>, MetaError> {
        let p = prefix(kind, ns);
        let mut out = Vec::new();
        for item in self.records.scan_prefix(&p) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            out.push((name, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// True if namespace `ns` holds any record other than itself.
    pub fn namespace_in_use(&self, ns: &str) -> Result<bool, MetaError> {
        for kind in [Kind::Image, Kind::Content, Kind::Lease, Kind::Container] {
            if self.records.scan_prefix(prefix(kind, ns)).next().is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Flushes everything to disk (at shutdown).
    pub async fn flush(&self) -> Result<(), MetaError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Runs `f` with the write lock held; `f` reads current records through `self` and
    /// stages changes in the [`Batch`]. The batch is applied atomically and flushed to
    /// disk before this returns. If `f` fails nothing is written.
    pub async fn write<R, E>(
        &self,
        f: impl FnOnce(&Self, &mut Batch) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<MetaError>,
    {
        self.write_batch(f, Durability::Flushed).await
    }

    /// Like [`MetaStore::write`], but the batch reaches the disk with sled's background
    /// flush (every [`BACKGROUND_FLUSH_MS`]) or with the next [`MetaStore::write`], whichever comes
    /// first, instead of before this returns. Only for records whose loss in a crash does
    /// no harm beyond garbage collection coming early or late: leases and what they hold.
    /// A client whose lease vanished in a crash was cut off mid-operation anyway; a lease
    /// that comes back keeps its resources only until it expires or is deleted again.
    pub async fn write_lazily<R, E>(
        &self,
        f: impl FnOnce(&Self, &mut Batch) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<MetaError>,
    {
        self.write_batch(f, Durability::Background).await
    }

    async fn write_batch<R, E>(
        &self,
        f: impl FnOnce(&Self, &mut Batch) -> Result<R, E>,
        durability: Durability,
    ) -> Result<R, E>
    where
        E: From<MetaError>,
    {
        let _guard = self.write_lock.lock().await;
        let mut batch = Batch::default();
        let out = f(self, &mut batch)?;
        if !batch.is_empty() {
            self.records
                .apply_batch(batch.inner)
                .map_err(MetaError::from)?;
            if durability == Durability::Flushed {
                self.db.flush_async().await.map_err(MetaError::from)?;
            }
        }
        Ok(out)
    }
}

/// When a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Before the write returns.
    Flushed,
    /// With the next flush, in the background.
    Background,
}

/// Changes staged by a writer, applied atomically by [`MetaStore::write`].
#[derive(Default)]
pub struct Batch {
    inner: sled::Batch,
    len: usize,
}

impl Batch {
    /// Stages a create-or-replace of a record.
    pub fn put<T: Serialize>(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        record: &T,
    ) -> Result<(), MetaError> {
        let k = key(kind, ns, name);
        let v = serde_json::to_vec(record).map_err(|source| MetaError::Codec {
            key: String::from_utf8_lossy(&k).into_owned(),
            source,
        })?;
        self.inner.insert(k, v);
        self.len += 1;
        Ok(())
    }

    /// Stages the removal of a record (a no-op if it is absent).
    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) {
        self.inner.remove(key(kind, ns, name));
        self.len += 1;
    }

    /// True if nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_namespaced_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sled");
        {
            let store = MetaStore::open(&path).unwrap();
            store
                .write(|_, b| -> Result<(), MetaError> {
                    b.put(Kind::Namespace, "", "a", &NamespaceRecord::default())?;
                    b.put(Kind::Lease, "a", "l1", &LeaseRecord::default())?;
                    b.put(Kind::Lease, "ab", "l2", &LeaseRecord::default())
                })
                .await
                .unwrap();
        }
        let store = MetaStore::open(&path).unwrap();
        let in_a: Vec<(String, LeaseRecord)> = store.list(Kind::Lease, "a").unwrap();
        assert_eq!(in_a.len(), 1, "prefix of another namespace must not leak");
        assert_eq!(in_a[0].0, "l1");
        assert!(store.namespace_in_use("a").unwrap());
        assert!(!store.namespace_in_use("zz").unwrap());
    }

    #[tokio::test]
    async fn failed_writer_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("m")).unwrap();
        let r: Result<(), MetaError> = store
            .write(|_, b| {
                b.put(Kind::Namespace, "", "x", &NamespaceRecord::default())?;
                Err(MetaError::Store(sled::Error::Unsupported("test".into())))
            })
            .await;
        assert!(r.is_err());
        let got: Option<NamespaceRecord> = store.get(Kind::Namespace, "", "x").unwrap();
        assert!(got.is_none());
    }
}
