//! Garbage collection: mark from the roots (images, leases, containers, `gc.root`
//! labels), follow containerd's `containerd.io/gc.ref.*` labels and snapshot parents,
//! sweep what nothing reaches — content records, blobs no namespace holds, snapshots,
//! stale ingests.
//!
//! Writers that create something in a store and then record it hold
//! [`Collector::writer`] across both steps, so a collection never sees the object before
//! its record and deletes it as an orphan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{RwLock, RwLockReadGuard};

use crate::error::ApiResult;
use crate::metadata::{
    ContainerRecord, ContentRecord, ImageRecord, Kind, LeaseRecord, NamespaceRecord,
};
use crate::state::{client_snapshot_key, snapshot_key, Daemon, SNAPSHOTTER};

/// Label that makes a content blob or snapshot a root.
pub const LABEL_ROOT: &str = "containerd.io/gc.root";
/// Prefix of labels naming a blob this object references.
pub const LABEL_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Prefix of labels naming a snapshot this object references (`….<snapshotter>[/…]`).
pub const LABEL_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";
/// Lease label holding its expiry time (RFC 3339).
pub const LABEL_EXPIRE: &str = "containerd.io/gc.expire";
/// Lease label: protect only the resources themselves, not what they reference.
pub const LABEL_FLAT: &str = "containerd.io/gc.flat";
/// Ingests not written to for this long, and not held by a lease, are aborted.
pub const STALE_INGEST_AGE: Duration = Duration::from_secs(24 * 3600);

/// Coordinates collections with writers.
#[derive(Default)]
pub struct Collector {
    barrier: RwLock<()>,
    pending: AtomicBool,
}

impl Collector {
    /// Held by a writer from creating an object in a store until its metadata record is
    /// written; collections wait for it.
    pub async fn writer(&self) -> RwLockReadGuard<'_, ()> {
        self.barrier.read().await
    }
}

/// What a collection removed.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Content records removed from namespaces.
    pub content_records: usize,
    /// Blob files deleted from disk.
    pub blobs: usize,
    /// Snapshots removed.
    pub snapshots: usize,
    /// Ingests aborted.
    pub ingests: usize,
    /// Expired leases removed.
    pub leases: usize,
    /// Snapshot directories without a record removed.
    pub orphan_dirs: usize,
    /// Time the collection took.
    pub took: Duration,
}

/// Starts a collection in the background; several requests while one waits coalesce.
pub fn schedule(daemon: Arc<Daemon>) {
    if daemon.gc.pending.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        match collect(&daemon).await {
            Ok(report) => tracing::debug!(?report, "garbage collection done"),
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
    });
}

/// One reachable object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    Content(String),
    Snapshot(String),
}

fn referenced(labels: &BTreeMap<String, String>, ns: &str, out: &mut Vec<Node>) {
    for (key, value) in labels {
        if key == LABEL_REF_CONTENT || key.starts_with(&format!("{LABEL_REF_CONTENT}.")) {
            out.push(Node::Content(value.clone()));
        } else if let Some(rest) = key.strip_prefix(LABEL_REF_SNAPSHOT) {
            let snapshotter = rest.split('/').next().unwrap_or_default();
            if snapshotter == SNAPSHOTTER {
                out.push(Node::Snapshot(snapshot_key(ns, value)));
            }
        }
    }
}

/// Runs one full collection now and waits for it.
pub async fn collect(daemon: &Daemon) -> ApiResult<GcReport> {
    let started = std::time::Instant::now();
    let _exclusive = daemon.gc.barrier.write().await;
    daemon.gc.pending.store(false, Ordering::Release);
    let mut report = GcReport::default();
    let now = SystemTime::now();

    let namespaces: Vec<(String, NamespaceRecord)> = daemon.meta.list(Kind::Namespace, "")?;
    let snapshots = daemon.snapshots.list()?;
    let snapshot_info: HashMap<String, _> = snapshots
        .iter()
        .map(|info| (info.name.clone(), info.clone()))
        .collect();
    let mut live_blobs: HashSet<String> = HashSet::new();
    let mut live_snapshots: HashSet<String> = HashSet::new();
    let mut live_ingests: HashSet<String> = HashSet::new();

    for (ns, _) in &namespaces {
        let contents: Vec<(String, ContentRecord)> = daemon.meta.list(Kind::Content, ns)?;
        let content_labels: HashMap<&str, &BTreeMap<String, String>> = contents
            .iter()
            .map(|(d, r)| (d.as_str(), &r.labels))
            .collect();

        // Roots.
        let mut queue: Vec<Node> = Vec::new();
        for (_, image) in daemon.meta.list::<ImageRecord>(Kind::Image, ns)? {
            queue.push(Node::Content(image.target.digest));
        }
        let mut flat: Vec<Node> = Vec::new();
        let mut expired: Vec<String> = Vec::new();
        for (id, lease) in daemon.meta.list::<LeaseRecord>(Kind::Lease, ns)? {
            if lease_expired(&lease, now) {
                expired.push(id);
                continue;
            }
            let target = if lease.labels.contains_key(LABEL_FLAT) {
                &mut flat
            } else {
                &mut queue
            };
            for r in &lease.resources {
                match r.kind.as_str() {
                    "content" => target.push(Node::Content(r.id.clone())),
                    "ingests" => {
                        live_ingests.insert(crate::state::ingest_ref(ns, &r.id));
                    }
                    k if k == crate::state::snapshot_resource_kind() => {
                        target.push(Node::Snapshot(snapshot_key(ns, &r.id)))
                    }
                    _ => {}
                }
            }
        }
        for (digest, labels) in &content_labels {
            if labels.contains_key(LABEL_ROOT) {
                queue.push(Node::Content(digest.to_string()));
            }
        }
        for info in &snapshots {
            if client_snapshot_key(ns, &info.name).is_some() && info.labels.contains_key(LABEL_ROOT)
            {
                queue.push(Node::Snapshot(info.name.clone()));
            }
        }
        for (_, container) in daemon.meta.list::<ContainerRecord>(Kind::Container, ns)? {
            if !container.snapshot_key.is_empty() && container.snapshotter == SNAPSHOTTER {
                queue.push(Node::Snapshot(snapshot_key(ns, &container.snapshot_key)));
            }
            referenced(&container.labels, ns, &mut queue);
        }

        if !expired.is_empty() {
            daemon
                .meta
                .write(|_, batch| -> ApiResult<()> {
                    for id in &expired {
                        batch.delete(Kind::Lease, ns, id);
                    }
                    Ok(())
                })
                .await?;
            tracing::info!(namespace = %ns, leases = ?expired, "gc: expired leases removed");
            report.leases += expired.len();
        }

        // Mark.
        let mut marked: HashSet<Node> = HashSet::new();
        for node in flat {
            marked.insert(node);
        }
        while let Some(node) = queue.pop() {
            if !marked.insert(node.clone()) {
                continue;
            }
            match &node {
                Node::Content(digest) => {
                    if let Some(labels) = content_labels.get(digest.as_str()) {
                        referenced(labels, ns, &mut queue);
                    }
                }
                Node::Snapshot(key) => {
                    if let Some(info) = snapshot_info.get(key) {
                        referenced(&info.labels, ns, &mut queue);
                        if let Some(parent) = &info.parent {
                            queue.push(Node::Snapshot(parent.clone()));
                        }
                    }
                }
            }
        }

        // Sweep this namespace's content records.
        let dead: Vec<String> = contents
            .iter()
            .map(|(d, _)| d.clone())
            .filter(|d| !marked.contains(&Node::Content(d.clone())))
            .collect();
        if !dead.is_empty() {
            daemon
                .meta
                .write(|_, batch| -> ApiResult<()> {
                    for d in &dead {
                        batch.delete(Kind::Content, ns, d);
                    }
                    Ok(())
                })
                .await?;
            for d in &dead {
                daemon.events.publish(
                    ns,
                    "/content/delete",
                    &berth_proto::containerd::events::ContentDelete { digest: d.clone() },
                );
            }
            report.content_records += dead.len();
        }
        for (d, _) in &contents {
            if !dead.contains(d) {
                live_blobs.insert(d.clone());
            }
        }
        for node in marked {
            if let Node::Snapshot(key) = node {
                live_snapshots.insert(key);
            }
        }
    }

    // Snapshots nothing reaches, leaves first so parents become removable.
    let mut remaining: Vec<_> = snapshots
        .iter()
        .filter(|info| !live_snapshots.contains(&info.name))
        .cloned()
        .collect();
    loop {
        let parents: HashSet<String> = daemon
            .snapshots
            .list()?
            .into_iter()
            .filter_map(|i| i.parent)
            .collect();
        let (leaves, rest): (Vec<_>, Vec<_>) = remaining
            .into_iter()
            .partition(|info| !parents.contains(&info.name));
        if leaves.is_empty() {
            break;
        }
        for info in &leaves {
            match daemon.snapshots.remove(&info.name) {
                Ok(()) => {
                    report.snapshots += 1;
                    if let Some((ns, key)) = info.name.split_once('/') {
                        daemon.events.publish(
                            ns,
                            "/snapshot/remove",
                            &berth_proto::containerd::events::SnapshotRemove {
                                key: key.to_string(),
                                snapshotter: SNAPSHOTTER.to_string(),
                            },
                        );
                    }
                }
                Err(e) => tracing::warn!(key = %info.name, error = %e, "gc: removing snapshot"),
            }
        }
        remaining = rest;
    }
    report.orphan_dirs = daemon.snapshots.cleanup()?;

    // Blobs no namespace holds.
    for blob in daemon.content.walk()? {
        if !live_blobs.contains(&blob.digest.to_string()) {
            match daemon.content.delete(&blob.digest) {
                Ok(()) => report.blobs += 1,
                Err(e) => tracing::warn!(digest = %blob.digest, error = %e, "gc: deleting blob"),
            }
        }
    }

    // Ingests: abort stale ones nobody leases.
    for status in daemon.content.list_statuses()? {
        let stale = now
            .duration_since(status.updated_at)
            .map(|age| age > STALE_INGEST_AGE)
            .unwrap_or(false);
        if stale
            && !live_ingests.contains(&status.reference)
            && daemon.content.abort(&status.reference).is_ok()
        {
            report.ingests += 1;
        }
    }

    report.took = started.elapsed();
    Ok(report)
}

/// True if the lease carries an expiry label in the past. An unparseable label is logged
/// and treated as "not expired", so nothing is lost to a typo.
fn lease_expired(lease: &LeaseRecord, now: SystemTime) -> bool {
    let Some(text) = lease.labels.get(LABEL_EXPIRE) else {
        return false;
    };
    match parse_rfc3339(text) {
        Some(at) => at <= now,
        None => {
            tracing::warn!(label = %text, "lease expiry label is not RFC 3339; ignoring it");
            false
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &text[start..i];
        if frac.is_empty() {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let s = h * 3600 + m * 60;
            if *sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return None,
    };
    // Days since the epoch (proleptic Gregorian), after Howard Hinnant's civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs >= 0 {
        Some(SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos as u32))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs((-secs) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2026-11-23T17:40:04Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_455_604
        );
        let t2 = parse_rfc3339("2026-11-23T18:40:04.5+01:00").unwrap();
        assert_eq!(t2.duration_since(t).unwrap(), Duration::from_millis(500));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-23 17:40",
            "2026-11-23T17:40:04",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn gc_ref_labels() {
        let labels = BTreeMap::from([
            (
                "containerd.io/gc.ref.content.config".to_string(),
                "sha256:a".to_string(),
            ),
            (
                "containerd.io/gc.ref.content".to_string(),
                "sha256:b".to_string(),
            ),
            (
                "containerd.io/gc.ref.snapshot.overlayfs".to_string(),
                "chain".to_string(),
            ),
            (
                "containerd.io/gc.ref.snapshot.native".to_string(),
                "other".to_string(),
            ),
            (
                "containerd.io/gc.ref.contentious".to_string(),
                "sha256:c".to_string(),
            ),
        ]);
        let mut out = Vec::new();
        referenced(&labels, "ns", &mut out);
        assert!(out.contains(&Node::Content("sha256:a".into())));
        assert!(out.contains(&Node::Content("sha256:b".into())));
        assert!(out.contains(&Node::Snapshot("ns/chain".into())));
        assert_eq!(out.len(), 3, "{out:?}");
    }
}
