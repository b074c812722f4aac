//! `containerd.services.snapshots.v1.Snapshots`: the overlayfs snapshots of a namespace.
//!
//! One snapshotter backs every namespace; a client's key `k` in namespace `ns` is the
//! backend key `ns/k` (see [`state::snapshot_key`]), and answers strip the prefix again.
//! A snapshot made or committed under a lease is added to it in the same step, with the
//! GC barrier held from the backend change until the lease record is durable, so a
//! collection never sees the snapshot unprotected.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::containerd::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use berth_proto::containerd::services::snapshots::v1::{
    snapshots_server::{Snapshots, SnapshotsServer},
    CleanupRequest, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, ListSnapshotsResponse,
    MountsRequest, MountsResponse, PrepareSnapshotRequest, PrepareSnapshotResponse,
    RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse, UpdateSnapshotRequest,
    UpdateSnapshotResponse, UsageRequest, UsageResponse, ViewSnapshotRequest, ViewSnapshotResponse,
};
use berth_proto::containerd::types::Mount as WireMount;
use berth_snapshot::mount::Mount;
use berth_snapshot::overlay::{self, Info as BackendInfo, Kind as BackendKind};
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::filters::{Fields, Filter};
use crate::metadata::{Kind as RecordKind, LeaseRecord, LeaseResource};
use crate::services::MAX_MESSAGE_BYTES;
use crate::state::{self, Daemon, SNAPSHOTTER};
use crate::{ident, request};

/// Longest client snapshot key (or name, or parent) accepted, in bytes: what still fits the
/// backend's limit once the longest namespace and its `/` are put in front.
pub const MAX_SNAPSHOT_KEY_LEN: usize = overlay::MAX_KEY_LEN - ident::MAX_IDENTIFIER_LEN - 1;

/// Label naming the committed snapshot a `Prepare` is meant to produce (its chain id);
/// if that snapshot exists already the prepare answers `AlreadyExists`, as containerd does.
pub const LABEL_SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// Most snapshots sent in one `List` message.
const LIST_BATCH_LEN: usize = 100;
/// Most encoded bytes of snapshot infos sent in one `List` message.
const LIST_BATCH_BYTES: usize = 1 << 20;

/// The Snapshots service.
pub struct SnapshotsService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> SnapshotsServer<SnapshotsService> {
    SnapshotsServer::new(SnapshotsService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Checks the snapshotter a request names: Berth has exactly one.
pub(crate) fn check_snapshotter(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "snapshotter name is missing (berthd provides {SNAPSHOTTER:?})"
        )));
    }
    if name != SNAPSHOTTER {
        return Err(ApiError::NotFound(format!(
            "snapshotter {name:?} is not available: berthd provides only {SNAPSHOTTER:?}"
        )));
    }
    Ok(())
}

/// Checks a client's snapshot key, name or parent (`what` says which): not empty and at
/// most [`MAX_SNAPSHOT_KEY_LEN`] bytes. Keys are never paths, so any other text is fine.
pub(crate) fn check_key(what: &str, key: &str) -> ApiResult<()> {
    if key.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "snapshot {what} must not be empty"
        )));
    }
    if key.len() > MAX_SNAPSHOT_KEY_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "snapshot {what} is {} bytes long; at most {MAX_SNAPSHOT_KEY_LEN} are allowed",
            key.len()
        )));
    }
    Ok(())
}

/// A backend mount as the wire carries it.
pub(crate) fn mount_to_wire(mount: Mount) -> WireMount {
    WireMount {
        r#type: mount.kind,
        source: mount.source,
        target: String::new(),
        options: mount.options,
    }
}

/// A mount from the wire as the mount code takes it. Mounts with a `target` (a path below
/// the root the client wants it at) are refused: Berth only stacks mounts on one directory.
pub(crate) fn mount_from_wire(mount: WireMount) -> ApiResult<Mount> {
    if !mount.target.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "mount of {:?} has target {:?}; mounts with a target are not supported",
            mount.source, mount.target
        )));
    }
    Ok(Mount {
        kind: mount.r#type,
        source: mount.source,
        options: mount.options,
    })
}

/// True if namespace `ns` holds any snapshot (a namespace in use cannot be deleted).
pub(crate) fn namespace_has_snapshots(daemon: &Daemon, ns: &str) -> ApiResult<bool> {
    Ok(daemon
        .snapshots
        .list()?
        .iter()
        .any(|info| state::client_snapshot_key(ns, &info.name).is_some()))
}

/// A snapshotter error as the client should read it: the backend names snapshots by their
/// namespaced keys (`"ns/key"`), the client knows them as `"key"`.
pub(crate) fn client_error(ns: &str, e: berth_snapshot::Error) -> ApiError {
    use berth_snapshot::Error as E;
    let strip = |message: String| message.replace(&format!("\"{ns}/"), "\"");
    ApiError::Snapshot(match e {
        E::NotFound(m) => E::NotFound(strip(m)),
        E::AlreadyExists(m) => E::AlreadyExists(strip(m)),
        E::FailedPrecondition(m) => E::FailedPrecondition(strip(m)),
        E::InvalidArgument(m) => E::InvalidArgument(strip(m)),
        other => other,
    })
}

/// Runs blocking snapshotter work (directory creation, fsync, tree walks) off the async
/// threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))
}

/// Deletes removed snapshots' files in the background: the client has its answer as soon
/// as the snapshot is gone from the index (see `OverlaySnapshotter::remove`).
fn empty_trash_later(snapshots: Arc<overlay::OverlaySnapshotter>) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = snapshots.empty_trash() {
            tracing::warn!(error = %e, "removed snapshots' files not fully deleted yet");
        }
    });
}

/// The wire's label map as the backend keeps it.
fn labels_in(labels: HashMap<String, String>) -> BTreeMap<String, String> {
    labels.into_iter().collect()
}

/// The client's view of a backend info in namespace `ns`.
fn info_to_wire(ns: &str, info: BackendInfo) -> Info {
    let strip = |name: &str| {
        state::client_snapshot_key(ns, name)
            .unwrap_or(name)
            .to_string()
    };
    let kind = match info.kind {
        BackendKind::Active => Kind::Active,
        BackendKind::View => Kind::View,
        BackendKind::Committed => Kind::Committed,
    };
    Info {
        name: strip(&info.name),
        parent: info.parent.as_deref().map(strip).unwrap_or_default(),
        kind: kind as i32,
        created_at: Some(info.created.into()),
        updated_at: Some(info.updated.into()),
        labels: info.labels.into_iter().collect(),
    }
}

/// A snapshot as filters see it: `kind`, `name`, `parent` and `labels.<key>`, as in
/// containerd (`parent` is present, empty, on snapshots without one).
struct Filterable<'a>(&'a Info);

impl Fields for Filterable<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let info = self.0;
        match (path.first().map(String::as_str), path.len()) {
            (Some("kind"), 1) => Some(
                match Kind::try_from(info.kind).unwrap_or(Kind::Unknown) {
                    Kind::Active => "active",
                    Kind::View => "view",
                    Kind::Committed => "committed",
                    Kind::Unknown => "unknown",
                }
                .to_string(),
            ),
            (Some("name"), 1) => Some(info.name.clone()),
            (Some("parent"), 1) => Some(info.parent.clone()),
            (Some("labels"), n) if n > 1 => info.labels.get(&path[1..].join(".")).cloned(),
            _ => None,
        }
    }
}

/// Splits infos into `List` messages of bounded count and size.
fn list_batches(infos: Vec<Info>) -> Vec<ListSnapshotsResponse> {
    let mut batches = Vec::new();
    let mut current = ListSnapshotsResponse::default();
    let mut bytes = 0;
    for info in infos {
        let len = info.encoded_len();
        if !current.info.is_empty()
            && (current.info.len() >= LIST_BATCH_LEN || bytes + len > LIST_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += len;
        current.info.push(info);
    }
    if !current.info.is_empty() {
        batches.push(current);
    }
    batches
}

/// Whether a new snapshot is read-write or a read-only view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewSnapshot {
    Prepare,
    View,
}

impl SnapshotsService {
    /// Fails with `NotFound` unless lease `lease` exists in `ns`.
    fn check_lease(&self, ns: &str, lease: Option<&str>) -> ApiResult<()> {
        if let Some(lease) = lease {
            if self
                .daemon
                .meta
                .get::<LeaseRecord>(RecordKind::Lease, ns, lease)?
                .is_none()
            {
                return Err(ApiError::NotFound(format!(
                    "lease {lease:?} does not exist in namespace {ns:?}"
                )));
            }
        }
        Ok(())
    }

    /// Records that namespace `ns` exists and that `add` (if any) is held by `lease` (if
    /// any), and that `drop` no longer is.
    async fn record(
        &self,
        ns: &str,
        lease: Option<&str>,
        add: Option<&str>,
        drop: Option<&str>,
    ) -> ApiResult<()> {
        let kind = state::snapshot_resource_kind();
        // Lazily: a lease's hold on a snapshot matters only to garbage collection.
        self.daemon
            .meta
            .write_lazily(|meta, batch| -> ApiResult<()> {
                state::ensure_namespace(meta, batch, ns)?;
                let Some(lease) = lease else {
                    return Ok(());
                };
                let mut record: LeaseRecord =
                    meta.get(RecordKind::Lease, ns, lease)?.ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "lease {lease:?} does not exist in namespace {ns:?}"
                        ))
                    })?;
                let mut changed = false;
                if let Some(key) = add {
                    changed |= record.resources.insert(LeaseResource {
                        kind: kind.clone(),
                        id: key.to_string(),
                    });
                }
                if let Some(key) = drop {
                    changed |= record.resources.remove(&LeaseResource {
                        kind: kind.clone(),
                        id: key.to_string(),
                    });
                }
                if changed {
                    batch.put(RecordKind::Lease, ns, lease, &record)?;
                }
                Ok(())
            })
            .await
    }

    /// Shared body of `Prepare` and `View`.
    async fn create(
        &self,
        what: NewSnapshot,
        ns: String,
        lease: Option<String>,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> ApiResult<Vec<WireMount>> {
        check_key("key", &key)?;
        if !parent.is_empty() {
            check_key("parent", &parent)?;
        }
        let labels = labels_in(labels);
        let target = labels.get(LABEL_SNAPSHOT_REF).cloned();
        if let Some(target) = &target {
            check_key("target (label containerd.io/snapshot.ref)", target)?;
        }

        let _no_gc = self.daemon.gc.writer().await;
        self.check_lease(&ns, lease.as_deref())?;

        // The snapshot this one is meant to become exists already: say so (and keep it
        // under the lease, for the client will use it instead).
        if let Some(target) = &target {
            if self
                .daemon
                .snapshots
                .stat(&state::snapshot_key(&ns, target))
                .is_ok()
            {
                self.record(&ns, lease.as_deref(), Some(target), None)
                    .await?;
                return Err(ApiError::AlreadyExists(format!(
                    "target snapshot {target:?} already exists"
                )));
            }
        }

        let snapshots = self.daemon.snapshots.clone();
        let backend_key = state::snapshot_key(&ns, &key);
        let backend_parent = (!parent.is_empty()).then(|| state::snapshot_key(&ns, &parent));
        let created = blocking({
            let backend_key = backend_key.clone();
            move || {
                let parent = backend_parent.as_deref();
                match what {
                    NewSnapshot::Prepare => snapshots.prepare(&backend_key, parent, labels),
                    NewSnapshot::View => snapshots.view(&backend_key, parent, labels),
                }
            }
        })
        .await?;
        let mounts = match created {
            Ok(mounts) => mounts,
            Err(berth_snapshot::Error::AlreadyExists(_)) => {
                // As containerd: the existing snapshot joins the lease all the same.
                self.record(&ns, lease.as_deref(), Some(&key), None).await?;
                return Err(ApiError::AlreadyExists(format!(
                    "snapshot {key:?} already exists"
                )));
            }
            Err(e) => return Err(client_error(&ns, e)),
        };

        if let Err(e) = self.record(&ns, lease.as_deref(), Some(&key), None).await {
            // Nothing may stay behind that the client was told failed.
            let snapshots = self.daemon.snapshots.clone();
            let undo = blocking(move || snapshots.remove(&backend_key)).await;
            empty_trash_later(self.daemon.snapshots.clone());
            if let Err(undo) = undo
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::warn!(namespace = %ns, %key, error = %undo,
                    "could not remove a snapshot whose lease update failed; GC will");
            }
            return Err(e);
        }
        Ok(mounts.into_iter().map(mount_to_wire).collect())
    }

    async fn do_prepare(
        &self,
        req: Request<PrepareSnapshotRequest>,
    ) -> ApiResult<PrepareSnapshotResponse> {
        let ns = request::namespace(&req)?;
        let lease = request::lease(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        let mounts = self
            .create(
                NewSnapshot::Prepare,
                ns.clone(),
                lease.clone(),
                r.key.clone(),
                r.parent.clone(),
                r.labels,
            )
            .await?;
        tracing::info!(namespace = %ns, key = %r.key, parent = %r.parent, lease = ?lease, "snapshot prepared");
        self.daemon.events.publish(
            &ns,
            "/snapshot/prepare",
            &SnapshotPrepare {
                key: r.key,
                parent: r.parent,
                snapshotter: SNAPSHOTTER.to_string(),
            },
        );
        Ok(PrepareSnapshotResponse { mounts })
    }

    async fn do_view(&self, req: Request<ViewSnapshotRequest>) -> ApiResult<ViewSnapshotResponse> {
        let ns = request::namespace(&req)?;
        let lease = request::lease(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        let mounts = self
            .create(
                NewSnapshot::View,
                ns.clone(),
                lease.clone(),
                r.key.clone(),
                r.parent.clone(),
                r.labels,
            )
            .await?;
        // containerd publishes no event for a view.
        tracing::info!(namespace = %ns, key = %r.key, parent = %r.parent, lease = ?lease, "snapshot view made");
        Ok(ViewSnapshotResponse { mounts })
    }

    async fn do_mounts(&self, req: Request<MountsRequest>) -> ApiResult<MountsResponse> {
        let ns = request::namespace(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        check_key("key", &r.key)?;
        tracing::debug!(namespace = %ns, key = %r.key, "snapshot mounts");
        let mounts = self
            .daemon
            .snapshots
            .mounts(&state::snapshot_key(&ns, &r.key))
            .map_err(|e| client_error(&ns, e))?;
        Ok(MountsResponse {
            mounts: mounts.into_iter().map(mount_to_wire).collect(),
        })
    }

    async fn do_commit(&self, req: Request<CommitSnapshotRequest>) -> ApiResult<()> {
        let ns = request::namespace(&req)?;
        let lease = request::lease(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        check_key("name", &r.name)?;
        check_key("key", &r.key)?;
        let labels = labels_in(r.labels);

        {
            let _no_gc = self.daemon.gc.writer().await;
            self.check_lease(&ns, lease.as_deref())?;
            // The name is checked first, as containerd does: committing onto an existing
            // name says so even when the key is gone already.
            if self
                .daemon
                .snapshots
                .stat(&state::snapshot_key(&ns, &r.name))
                .is_ok()
            {
                return Err(ApiError::AlreadyExists(format!(
                    "snapshot {:?} already exists",
                    r.name
                )));
            }
            let snapshots = self.daemon.snapshots.clone();
            let (name, key) = (
                state::snapshot_key(&ns, &r.name),
                state::snapshot_key(&ns, &r.key),
            );
            blocking(move || snapshots.commit(&name, &key, labels))
                .await?
                .map_err(|e| client_error(&ns, e))?;
            // The committed snapshot cannot be un-committed if this fails; it is then
            // unleased and a later collection may take it, as in containerd.
            if let Err(e) = self
                .record(&ns, lease.as_deref(), Some(&r.name), Some(&r.key))
                .await
            {
                tracing::error!(namespace = %ns, name = %r.name, error = %e,
                    "snapshot committed but its lease could not be updated");
                return Err(e);
            }
        }
        tracing::info!(namespace = %ns, key = %r.key, name = %r.name, lease = ?lease, "snapshot committed");
        self.daemon.events.publish(
            &ns,
            "/snapshot/commit",
            &SnapshotCommit {
                key: r.key,
                name: r.name,
                snapshotter: SNAPSHOTTER.to_string(),
            },
        );
        Ok(())
    }

    async fn do_remove(&self, req: Request<RemoveSnapshotRequest>) -> ApiResult<()> {
        let ns = request::namespace(&req)?;
        let lease = request::lease(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        check_key("key", &r.key)?;
        let snapshots = self.daemon.snapshots.clone();
        let key = state::snapshot_key(&ns, &r.key);
        blocking(move || snapshots.remove(&key))
            .await?
            .map_err(|e| client_error(&ns, e))?;
        empty_trash_later(self.daemon.snapshots.clone());
        if lease.is_some() {
            if let Err(e) = self.record(&ns, lease.as_deref(), None, Some(&r.key)).await {
                // The snapshot is gone; a stale lease entry protects nothing.
                tracing::warn!(namespace = %ns, key = %r.key, error = %e,
                    "snapshot removed but not dropped from its lease");
            }
        }
        tracing::info!(namespace = %ns, key = %r.key, "snapshot removed");
        self.daemon.events.publish(
            &ns,
            "/snapshot/remove",
            &SnapshotRemove {
                key: r.key,
                snapshotter: SNAPSHOTTER.to_string(),
            },
        );
        Ok(())
    }

    async fn do_stat(&self, req: Request<StatSnapshotRequest>) -> ApiResult<StatSnapshotResponse> {
        let ns = request::namespace(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        check_key("key", &r.key)?;
        tracing::debug!(namespace = %ns, key = %r.key, "snapshot stat");
        let info = self
            .daemon
            .snapshots
            .stat(&state::snapshot_key(&ns, &r.key))
            .map_err(|e| client_error(&ns, e))?;
        Ok(StatSnapshotResponse {
            info: Some(info_to_wire(&ns, info)),
        })
    }

    async fn do_update(
        &self,
        req: Request<UpdateSnapshotRequest>,
    ) -> ApiResult<UpdateSnapshotResponse> {
        let ns = request::namespace(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        let info = r
            .info
            .ok_or_else(|| ApiError::InvalidArgument("snapshot info is required".to_string()))?;
        check_key("name", &info.name)?;
        let paths = r.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let backend = BackendInfo {
            name: state::snapshot_key(&ns, &info.name),
            // Only the labels are read by an update.
            parent: None,
            kind: BackendKind::Active,
            labels: labels_in(info.labels),
            created: std::time::SystemTime::UNIX_EPOCH,
            updated: std::time::SystemTime::UNIX_EPOCH,
        };
        let snapshots = self.daemon.snapshots.clone();
        let updated = blocking(move || snapshots.update(&backend, &paths))
            .await?
            .map_err(|e| client_error(&ns, e))?;
        tracing::info!(namespace = %ns, key = %info.name, "snapshot labels updated");
        Ok(UpdateSnapshotResponse {
            info: Some(info_to_wire(&ns, updated)),
        })
    }

    async fn do_list(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> ApiResult<Vec<ListSnapshotsResponse>> {
        let ns = request::namespace(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        let filter = Filter::parse(&r.filters)?;
        tracing::debug!(namespace = %ns, filters = ?r.filters, "snapshot list");
        let infos: Vec<Info> = self
            .daemon
            .snapshots
            .list()?
            .into_iter()
            .filter(|info| state::client_snapshot_key(&ns, &info.name).is_some())
            .map(|info| info_to_wire(&ns, info))
            .filter(|info| filter.matches(&Filterable(info)))
            .collect();
        Ok(list_batches(infos))
    }

    async fn do_usage(&self, req: Request<UsageRequest>) -> ApiResult<UsageResponse> {
        let ns = request::namespace(&req)?;
        let r = req.into_inner();
        check_snapshotter(&r.snapshotter)?;
        check_key("key", &r.key)?;
        tracing::debug!(namespace = %ns, key = %r.key, "snapshot usage");
        let snapshots = self.daemon.snapshots.clone();
        let key = state::snapshot_key(&ns, &r.key);
        let usage = blocking(move || snapshots.usage(&key))
            .await?
            .map_err(|e| client_error(&ns, e))?;
        Ok(UsageResponse {
            size: i64::try_from(usage.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(usage.inodes).unwrap_or(i64::MAX),
        })
    }

    async fn do_cleanup(&self, req: Request<CleanupRequest>) -> ApiResult<()> {
        let ns = request::namespace(&req)?;
        check_snapshotter(&req.get_ref().snapshotter)?;
        let snapshots = self.daemon.snapshots.clone();
        let removed = blocking(move || snapshots.cleanup()).await??;
        tracing::info!(namespace = %ns, removed, "snapshotter cleaned up");
        Ok(())
    }
}

/// The stream type of `List`.
pub type ListStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        req: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        Ok(Response::new(self.do_prepare(req).await?))
    }

    async fn view(
        &self,
        req: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        Ok(Response::new(self.do_view(req).await?))
    }

    async fn mounts(
        &self,
        req: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        Ok(Response::new(self.do_mounts(req).await?))
    }

    async fn commit(&self, req: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        self.do_commit(req).await?;
        Ok(Response::new(()))
    }

    async fn remove(&self, req: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        self.do_remove(req).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        Ok(Response::new(self.do_stat(req).await?))
    }

    async fn update(
        &self,
        req: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        Ok(Response::new(self.do_update(req).await?))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let batches = self.do_list(req).await?;
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn usage(&self, req: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        Ok(Response::new(self.do_usage(req).await?))
    }

    async fn cleanup(&self, req: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        self.do_cleanup(req).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, parent: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.to_string(),
            parent: parent.to_string(),
            kind: kind as i32,
            created_at: None,
            updated_at: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn matches(filter: &str, info: &Info) -> bool {
        Filter::parse(&[filter]).unwrap().matches(&Filterable(info))
    }

    use crate::request::LEASE_KEY;
    use crate::services::test_support::{self, TestDaemon};
    use std::collections::BTreeSet;

    fn svc(t: &TestDaemon) -> SnapshotsService {
        SnapshotsService {
            daemon: t.daemon.clone(),
        }
    }

    fn leased<T>(ns: &str, lease: &str, message: T) -> Request<T> {
        let mut req = test_support::request(ns, message);
        req.metadata_mut().insert(LEASE_KEY, lease.parse().unwrap());
        req
    }

    fn prepare_req(key: &str, parent: &str) -> PrepareSnapshotRequest {
        PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels: HashMap::new(),
        }
    }

    fn commit_req(name: &str, key: &str) -> CommitSnapshotRequest {
        CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            labels: HashMap::new(),
        }
    }

    fn stat_req(key: &str) -> StatSnapshotRequest {
        StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.to_string(),
        }
    }

    async fn names(s: &SnapshotsService, ns: &str, filters: &[&str]) -> Vec<String> {
        let req = ListSnapshotsRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        };
        let batches = s.do_list(test_support::request(ns, req)).await.unwrap();
        batches
            .into_iter()
            .flat_map(|b| b.info)
            .map(|i| i.name)
            .collect()
    }

    async fn make_lease(t: &TestDaemon, ns: &str, id: &str) {
        t.daemon
            .meta
            .write(|_, batch| -> ApiResult<()> {
                Ok(batch.put(RecordKind::Lease, ns, id, &LeaseRecord::default())?)
            })
            .await
            .unwrap();
    }

    fn lease_keys(t: &TestDaemon, ns: &str, id: &str) -> BTreeSet<String> {
        let lease: LeaseRecord = t
            .daemon
            .meta
            .get(RecordKind::Lease, ns, id)
            .unwrap()
            .unwrap();
        lease
            .resources
            .into_iter()
            .map(|r| {
                assert_eq!(r.kind, "snapshots/overlayfs");
                r.id
            })
            .collect()
    }

    #[tokio::test]
    async fn namespaces_do_not_see_each_others_snapshots() {
        let t = test_support::daemon();
        let s = svc(&t);
        s.do_prepare(test_support::request("a", prepare_req("work", "")))
            .await
            .unwrap();
        s.do_commit(test_support::request(
            "a",
            commit_req("sha256:base", "work"),
        ))
        .await
        .unwrap();
        s.do_prepare(test_support::request(
            "a",
            prepare_req("child", "sha256:base"),
        ))
        .await
        .unwrap();

        assert_eq!(names(&s, "a", &[]).await, ["child", "sha256:base"]);
        assert!(names(&s, "b", &[]).await.is_empty());
        let err = s
            .do_stat(test_support::request("b", stat_req("sha256:base")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        // b cannot build on a's snapshot, and the message names the client's key.
        let err = s
            .do_prepare(test_support::request("b", prepare_req("x", "sha256:base")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.to_string().contains("\"sha256:base\""), "{err}");
        assert!(!err.to_string().contains("a/"), "{err}");
        // The same key in b is a different snapshot.
        s.do_prepare(test_support::request("b", prepare_req("work", "")))
            .await
            .unwrap();

        let info = s
            .do_stat(test_support::request("a", stat_req("child")))
            .await
            .unwrap()
            .info
            .unwrap();
        assert_eq!(info.parent, "sha256:base");
        assert_eq!(info.kind, Kind::Active as i32);
        assert_eq!(names(&s, "a", &["kind==committed"]).await, ["sha256:base"]);
        assert_eq!(names(&s, "a", &["parent==sha256:base"]).await, ["child"]);
        // Writing into a namespace creates it.
        assert!(t
            .daemon
            .meta
            .get::<crate::metadata::NamespaceRecord>(RecordKind::Namespace, "", "b")
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn leases_follow_prepare_commit_and_remove() {
        let t = test_support::daemon();
        let s = svc(&t);
        make_lease(&t, "ns", "l1").await;
        s.do_prepare(leased("ns", "l1", prepare_req("extract-1", "")))
            .await
            .unwrap();
        assert_eq!(
            lease_keys(&t, "ns", "l1"),
            BTreeSet::from(["extract-1".to_string()])
        );
        s.do_commit(leased("ns", "l1", commit_req("sha256:c", "extract-1")))
            .await
            .unwrap();
        assert_eq!(
            lease_keys(&t, "ns", "l1"),
            BTreeSet::from(["sha256:c".to_string()])
        );
        let view = ViewSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: "v".to_string(),
            parent: "sha256:c".to_string(),
            labels: HashMap::new(),
        };
        s.do_view(leased("ns", "l1", view)).await.unwrap();
        let rm = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: "v".to_string(),
        };
        s.do_remove(leased("ns", "l1", rm)).await.unwrap();
        assert_eq!(
            lease_keys(&t, "ns", "l1"),
            BTreeSet::from(["sha256:c".to_string()])
        );

        // A lease that does not exist: refused, and no snapshot is left behind.
        let err = s
            .do_prepare(leased("ns", "nope", prepare_req("orphan", "")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(t.daemon.snapshots.stat("ns/orphan").is_err());
    }

    #[tokio::test]
    async fn mutations_publish_containerds_events() {
        let t = test_support::daemon();
        let s = svc(&t);
        let mut events = t.daemon.events.subscribe();
        s.do_prepare(test_support::request("ns", prepare_req("k", "")))
            .await
            .unwrap();
        s.do_commit(test_support::request("ns", commit_req("n", "k")))
            .await
            .unwrap();
        let rm = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: "n".to_string(),
        };
        s.do_remove(test_support::request("ns", rm)).await.unwrap();

        let prepare = events.try_recv().unwrap();
        assert_eq!(
            (prepare.namespace.as_str(), prepare.topic.as_str()),
            ("ns", "/snapshot/prepare")
        );
        let decoded = SnapshotPrepare::decode(prepare.payload.as_slice()).unwrap();
        assert_eq!(
            (decoded.key.as_str(), decoded.snapshotter.as_str()),
            ("k", "overlayfs")
        );
        let commit = events.try_recv().unwrap();
        assert_eq!(commit.topic, "/snapshot/commit");
        let decoded = SnapshotCommit::decode(commit.payload.as_slice()).unwrap();
        assert_eq!((decoded.key.as_str(), decoded.name.as_str()), ("k", "n"));
        let remove = events.try_recv().unwrap();
        assert_eq!(remove.topic, "/snapshot/remove");
        assert_eq!(
            SnapshotRemove::decode(remove.payload.as_slice())
                .unwrap()
                .key,
            "n"
        );
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn bad_requests_change_nothing() {
        let t = test_support::daemon();
        let s = svc(&t);
        s.do_prepare(test_support::request("ns", prepare_req("base", "")))
            .await
            .unwrap();
        s.do_commit(test_support::request("ns", commit_req("parent", "base")))
            .await
            .unwrap();
        s.do_prepare(test_support::request("ns", prepare_req("kid", "parent")))
            .await
            .unwrap();

        let mut other = prepare_req("x", "");
        other.snapshotter = "native".to_string();
        let code = |r: ApiResult<PrepareSnapshotResponse>| r.unwrap_err().code();
        assert_eq!(
            code(s.do_prepare(test_support::request("ns", other)).await),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(
                s.do_prepare(test_support::request("ns", prepare_req("", "")))
                    .await
            ),
            tonic::Code::InvalidArgument
        );
        let long = "k".repeat(MAX_SNAPSHOT_KEY_LEN + 1);
        assert_eq!(
            code(
                s.do_prepare(test_support::request("ns", prepare_req(&long, "")))
                    .await
            ),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(
                s.do_prepare(test_support::request("ns", prepare_req("kid", "")))
                    .await
            ),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            code(
                s.do_prepare(test_support::request("ns", prepare_req("y", "kid")))
                    .await
            ),
            tonic::Code::InvalidArgument,
            "an active snapshot is no parent"
        );
        let rm = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: "parent".to_string(),
        };
        let err = s
            .do_remove(test_support::request("ns", rm))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.to_string().contains("\"kid\""), "{err}");

        // The target of a prepare exists already: AlreadyExists, nothing made.
        let mut targeted = prepare_req("extract-2", "");
        targeted
            .labels
            .insert(LABEL_SNAPSHOT_REF.to_string(), "parent".to_string());
        assert_eq!(
            code(s.do_prepare(test_support::request("ns", targeted)).await),
            tonic::Code::AlreadyExists
        );
        assert_eq!(names(&s, "ns", &[]).await, ["kid", "parent"]);
    }

    #[tokio::test]
    async fn labels_update_by_field_path() {
        let t = test_support::daemon();
        let s = svc(&t);
        let mut req = prepare_req("k", "");
        req.labels.insert("keep".to_string(), "1".to_string());
        req.labels.insert("drop".to_string(), "2".to_string());
        s.do_prepare(test_support::request("ns", req))
            .await
            .unwrap();
        let update = UpdateSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            info: Some(info("k", "", Kind::Active, &[("new", "3")])),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels.new".to_string(), "labels.drop".to_string()],
            }),
        };
        let updated = s
            .do_update(test_support::request("ns", update))
            .await
            .unwrap()
            .info
            .unwrap();
        assert_eq!(updated.name, "k");
        let mut labels: Vec<_> = updated.labels.into_iter().collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                ("keep".to_string(), "1".to_string()),
                ("new".to_string(), "3".to_string())
            ]
        );
        let bad = UpdateSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            info: Some(info("k", "", Kind::Active, &[])),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["parent".to_string()],
            }),
        };
        let err = s
            .do_update(test_support::request("ns", bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn only_overlayfs_is_served() {
        assert!(check_snapshotter("overlayfs").is_ok());
        assert!(matches!(
            check_snapshotter(""),
            Err(ApiError::InvalidArgument(_))
        ));
        let err = check_snapshotter("native").unwrap_err();
        assert!(matches!(err, ApiError::NotFound(_)));
        assert!(err.to_string().contains("overlayfs"), "{err}");
    }

    #[test]
    fn keys_are_bounded_and_not_empty_but_otherwise_free() {
        for key in ["extract-1-sha256:abc", "sha256:0123", "a/b/../c", "x y"] {
            assert!(check_key("key", key).is_ok(), "{key:?}");
        }
        assert!(check_key("key", "").is_err());
        assert!(check_key("key", &"k".repeat(MAX_SNAPSHOT_KEY_LEN)).is_ok());
        assert!(check_key("key", &"k".repeat(MAX_SNAPSHOT_KEY_LEN + 1)).is_err());
        // The longest namespace plus the longest key still fits the backend.
        let longest = state::snapshot_key(
            &"n".repeat(ident::MAX_IDENTIFIER_LEN),
            &"k".repeat(MAX_SNAPSHOT_KEY_LEN),
        );
        assert_eq!(longest.len(), overlay::MAX_KEY_LEN);
    }

    #[test]
    fn answers_carry_the_clients_names_not_the_backend_keys() {
        let now = std::time::SystemTime::now();
        let wire = info_to_wire(
            "ns",
            BackendInfo {
                name: "ns/sha256:b".to_string(),
                parent: Some("ns/sha256:a".to_string()),
                kind: BackendKind::Committed,
                labels: BTreeMap::from([("l".to_string(), "v".to_string())]),
                created: now,
                updated: now,
            },
        );
        assert_eq!(wire.name, "sha256:b");
        assert_eq!(wire.parent, "sha256:a");
        assert_eq!(wire.kind, Kind::Committed as i32);
        assert_eq!(wire.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(wire.created_at, Some(now.into()));
    }

    #[test]
    fn filters_see_kind_name_parent_and_labels() {
        let base = info(
            "base",
            "",
            Kind::Committed,
            &[("containerd.io/gc.root", "x")],
        );
        let work = info("work", "base", Kind::Active, &[]);
        assert!(matches("kind==committed", &base));
        assert!(!matches("kind==committed", &work));
        assert!(matches("kind==active,parent==base", &work));
        assert!(matches("name~=^wo", &work));
        assert!(matches(r#"labels."containerd.io/gc.root""#, &base));
        assert!(!matches(r#"labels."containerd.io/gc.root""#, &work));
        assert!(matches("parent==\"\"", &base));
    }

    #[test]
    fn list_messages_are_bounded() {
        let many: Vec<Info> = (0..250)
            .map(|i| info(&format!("s{i}"), "", Kind::Committed, &[]))
            .collect();
        let batches = list_batches(many);
        assert_eq!(
            batches.iter().map(|b| b.info.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );

        // Infos of ~20 KB each: the byte bound cuts batches well before 100 infos.
        let big = "v".repeat(4000);
        let labels: Vec<(String, &str)> = (0..5).map(|i| (format!("k{i}"), big.as_str())).collect();
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let fat: Vec<Info> = (0..600)
            .map(|i| info(&format!("s{i}"), "", Kind::Committed, &labels))
            .collect();
        let one = fat[0].encoded_len();
        let batches = list_batches(fat);
        assert!(batches.len() >= 12, "{} batches", batches.len());
        for batch in &batches {
            assert!(batch.info.len() < LIST_BATCH_LEN);
            assert!(batch.encoded_len() <= LIST_BATCH_BYTES + one + 16);
        }
        assert_eq!(batches.iter().map(|b| b.info.len()).sum::<usize>(), 600);
        assert!(list_batches(Vec::new()).is_empty());
    }

    #[test]
    fn mounts_cross_the_wire_both_ways() {
        let mount = Mount {
            kind: "overlay".to_string(),
            source: "overlay".to_string(),
            options: vec!["lowerdir=/a:/b".to_string()],
        };
        let wire = mount_to_wire(mount.clone());
        assert_eq!(wire.r#type, "overlay");
        assert!(wire.target.is_empty());
        assert_eq!(mount_from_wire(wire.clone()).unwrap(), mount);
        let targeted = WireMount {
            target: "/x".to_string(),
            ..wire
        };
        assert!(matches!(
            mount_from_wire(targeted),
            Err(ApiError::InvalidArgument(_))
        ));
    }
}
