//! The daemon's shared state: the stores every service works on, opened once at start.

use std::path::Path;
use std::sync::Arc;

use berth_content::ContentStore;

use crate::config::Settings;
use crate::error::{ApiError, ApiResult};
use crate::events::EventBus;
use crate::gc::Collector;
use crate::metadata::{Batch, Kind, LeaseRecord, LeaseResource, MetaStore, NamespaceRecord};
use crate::tasks::{shim_log_level, ShimSettings, TaskManager};

/// Name of the one snapshotter Berth provides (the name ctr uses by default).
pub const SNAPSHOTTER: &str = "overlayfs";

/// Everything a request handler may touch. Shared by all services behind an `Arc`.
pub struct Daemon {
    /// Merged settings.
    pub settings: Settings,
    /// Namespaced records (images, content visibility, leases, …).
    pub meta: MetaStore,
    /// Blob bytes.
    pub content: ContentStore,
    /// Overlayfs snapshots; keys are `<namespace>/<client key>`.
    pub snapshots: Arc<berth_snapshot::overlay::OverlaySnapshotter>,
    /// Event fan-out.
    pub events: EventBus,
    /// Garbage collection and its barrier against concurrent writers.
    pub gc: Collector,
    /// The running tasks and their shims.
    pub tasks: TaskManager,
    /// This root's identity (Introspection.Server uuid): a random UUID made once and kept in
    /// `<root>/uuid`, so it names the installation, not the process.
    pub uuid: String,
}

/// Why the daemon's stores could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Creating a directory under the root or state dir failed.
    #[error("creating {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content store failed to open.
    #[error("opening content store: {0}")]
    Content(#[from] berth_content::Error),
    /// The snapshotter failed to open.
    #[error("opening snapshotter: {0}")]
    Snapshot(#[from] berth_snapshot::Error),
    /// The metadata database failed to open.
    #[error("opening metadata: {0}")]
    Meta(#[from] crate::metadata::MetaError),
}

fn private_dir(path: &Path) -> Result<(), OpenError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| OpenError::Dir {
            path: path.display().to_string(),
            source,
        })
}

impl Daemon {
    /// Opens (creating if needed) every store under `settings.root` and `settings.state`.
    pub fn open(settings: Settings) -> Result<Arc<Self>, OpenError> {
        private_dir(&settings.root)?;
        private_dir(&settings.state)?;
        let content = ContentStore::open(settings.root.join("content"))?;
        let snapshots = berth_snapshot::overlay::OverlaySnapshotter::open(
            settings.root.join("snapshots").join(SNAPSHOTTER),
        )?;
        let meta = MetaStore::open(&settings.root.join("meta.sled"))?;
        let uuid = load_or_make_uuid(&settings.root.join("uuid"))?;
        let events = EventBus::new();
        let tasks = TaskManager::new(
            ShimSettings {
                shim_binary: settings.shim_binary.clone(),
                state: settings.state.clone(),
                publish_address: settings.address.clone(),
                log_level: shim_log_level(&settings.log_level),
                spare_shims: settings.spare_shims,
            },
            events.clone(),
        );
        Ok(Arc::new(Self {
            settings,
            meta,
            content,
            snapshots: Arc::new(snapshots),
            events,
            gc: Collector::default(),
            tasks,
            uuid,
        }))
    }
}

/// Reads the root's UUID, or makes a random (version 4) one and stores it durably.
fn load_or_make_uuid(path: &Path) -> Result<String, OpenError> {
    let err = |source| OpenError::Dir {
        path: path.display().to_string(),
        source,
    };
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim();
        if text.len() == 36 {
            return Ok(text.to_string());
        }
    }
    let bits = (rand::random::<u128>() & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &uuid).map_err(err)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(uuid)
}

/// The snapshotter key of a client's snapshot key in a namespace.
pub fn snapshot_key(ns: &str, key: &str) -> String {
    format!("{ns}/{key}")
}

/// The client's view of a snapshotter key, if it belongs to `ns`.
pub fn client_snapshot_key<'a>(ns: &str, backend_key: &'a str) -> Option<&'a str> {
    backend_key
        .strip_prefix(ns)
        .and_then(|rest| rest.strip_prefix('/'))
}

/// The content store's ingest ref for a client's ref in a namespace.
pub fn ingest_ref(ns: &str, reference: &str) -> String {
    format!("{ns}/{reference}")
}

/// Lease resource type of a snapshot of our snapshotter.
pub fn snapshot_resource_kind() -> String {
    format!("snapshots/{SNAPSHOTTER}")
}

/// Stages the creation of namespace `ns` if it does not exist yet: writing anything into
/// a namespace creates it, as in containerd.
pub fn ensure_namespace(meta: &MetaStore, batch: &mut Batch, ns: &str) -> ApiResult<()> {
    if meta
        .get::<NamespaceRecord>(Kind::Namespace, "", ns)?
        .is_none()
    {
        batch.put(Kind::Namespace, "", ns, &NamespaceRecord::default())?;
    }
    Ok(())
}

/// Stages adding `resource` to lease `lease` in `ns` (the lease must exist).
pub fn add_to_lease(
    meta: &MetaStore,
    batch: &mut Batch,
    ns: &str,
    lease: &str,
    resource: LeaseResource,
) -> ApiResult<()> {
    let mut record: LeaseRecord = meta.get(Kind::Lease, ns, lease)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "lease {lease:?} does not exist in namespace {ns:?}"
        ))
    })?;
    if record.resources.insert(resource) {
        batch.put(Kind::Lease, ns, lease, &record)?;
    }
    Ok(())
}
