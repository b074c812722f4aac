//! A task's files under berthd's state directory: the bundle the shim runs from
//! (`<state>/tasks/<ns>/<id>/`), the shim's socket and the runtime's own root.
//!
//! Modes keep other users out: the bundle is 0700 and its parents 0711, so nobody but
//! root can list tasks or read a container's spec.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The container's OCI spec, exactly as the client stored it.
pub const CONFIG_FILE: &str = "config.json";
/// The mount point of the container's root filesystem.
pub const ROOTFS_DIR: &str = "rootfs";
/// The shim's socket path, written by berthd once the shim listens.
pub const ADDRESS_FILE: &str = "address";
/// The shim's process id, written by the shim.
pub const SHIM_PID_FILE: &str = "shim.pid";

/// Mode of the directories above a bundle.
const PARENT_MODE: u32 = 0o711;
/// Mode of a bundle directory.
const BUNDLE_MODE: u32 = 0o700;
/// Mode of the rootfs mount point.
const ROOTFS_MODE: u32 = 0o711;
/// Mode of the shim socket directory.
const SOCKET_DIR_MODE: u32 = 0o700;

/// Where tasks keep their files under one state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    state: PathBuf,
}

impl Layout {
    /// The layout under berthd's `--state` directory.
    pub fn new(state: PathBuf) -> Self {
        Self { state }
    }

    /// `<state>/tasks`: one directory per namespace, one bundle per task below it.
    pub fn tasks_root(&self) -> PathBuf {
        self.state.join("tasks")
    }

    /// The bundle of task `id` in namespace `ns`.
    pub fn bundle(&self, ns: &str, id: &str) -> PathBuf {
        self.tasks_root().join(ns).join(id)
    }

    /// The runtime's state root for namespace `ns` (`runc --root`), inside the state
    /// directory so that two berthd instances never share it.
    pub fn runtime_root(&self, ns: &str) -> PathBuf {
        self.state.join("runc").join(ns)
    }

    /// Where the shim of task `id` in namespace `ns` listens.
    pub fn socket(&self, ns: &str, id: &str) -> PathBuf {
        berth_shim::client::socket_path(&self.state, ns, id)
    }

    /// `<state>/deleted`: bundles of deleted tasks wait here for their shim to exit before
    /// they are removed, so the task's own path is free (and its container deletable) at
    /// once. Anything here at startup is left over from a daemon that died meanwhile.
    pub fn deleted_root(&self) -> PathBuf {
        self.state.join("deleted")
    }

    /// Moves the bundle of deleted task `id` of `ns` into [`Layout::deleted_root`] under a
    /// name of its own and returns where it went; if it cannot be moved, the bundle stays
    /// where it is and that path is returned.
    pub fn park_deleted_bundle(&self, ns: &str, id: &str) -> PathBuf {
        static PARKED: AtomicU64 = AtomicU64::new(0);
        let bundle = self.bundle(ns, id);
        let parked = self.deleted_root().join(format!(
            "{ns}.{id}.{}.{}",
            std::process::id(),
            PARKED.fetch_add(1, Ordering::Relaxed)
        ));
        let moved = ensure_dir(&self.deleted_root(), SOCKET_DIR_MODE)
            .and_then(|()| std::fs::rename(&bundle, &parked));
        match moved {
            Ok(()) => {
                // For a daemon that dies before the teardown is over: its successor must
                // tell the shim which task to shut down (see `interrupted_teardowns`).
                if let Err(e) = std::fs::write(parked.join(PARKED_TASK_FILE), id) {
                    tracing::warn!(bundle = %parked.display(), error = %e, "could not note a deleted task's id");
                }
                parked
            }
            Err(e) => {
                tracing::warn!(bundle = %bundle.display(), error = %e, "could not move a deleted task's bundle aside");
                bundle
            }
        }
    }

    /// What deleted tasks left in [`Layout::deleted_root`] when a daemon died before their
    /// teardown was over: each parked bundle, with the task id its shim (if still there)
    /// answers to.
    pub fn interrupted_teardowns(&self) -> Vec<(PathBuf, Option<String>)> {
        let Ok(entries) = std::fs::read_dir(self.deleted_root()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| {
                let path = entry.path();
                let id = std::fs::read_to_string(path.join(PARKED_TASK_FILE)).ok();
                (path, id)
            })
            .collect()
    }

    /// `<state>/s`: the shims' sockets.
    pub fn socket_dir(&self) -> PathBuf {
        self.state.join(berth_shim::client::SOCKET_DIR)
    }

    /// Creates the shim socket directory (0700) if it is missing.
    pub fn ensure_socket_dir(&self) -> io::Result<()> {
        ensure_dir(&self.socket_dir(), SOCKET_DIR_MODE)
    }
}

/// File in a parked bundle holding the deleted task's id.
const PARKED_TASK_FILE: &str = "deleted-task-id";

/// Creates `dir` with `mode` if missing (parents too, with the same mode), and sets its mode.
fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// Writes a new bundle for a task: the directory (which must not exist yet), `config.json`
/// holding `spec_json` byte for byte, and an empty `rootfs/`.
pub fn create_bundle(bundle: &Path, spec_json: &[u8]) -> io::Result<()> {
    if let Some(namespace_dir) = bundle.parent() {
        if let Some(tasks_root) = namespace_dir.parent() {
            ensure_dir(tasks_root, PARENT_MODE)?;
        }
        ensure_dir(namespace_dir, PARENT_MODE)?;
    }
    DirBuilder::new().mode(BUNDLE_MODE).create(bundle)?;
    std::fs::set_permissions(bundle, Permissions::from_mode(BUNDLE_MODE))?;
    let rootfs = bundle.join(ROOTFS_DIR);
    DirBuilder::new().mode(ROOTFS_MODE).create(&rootfs)?;
    std::fs::set_permissions(&rootfs, Permissions::from_mode(ROOTFS_MODE))?;
    write_private(&bundle.join(CONFIG_FILE), spec_json)
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file and a rename, so a reader
/// never sees half of it.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Records in the bundle where the task's shim listens.
pub fn write_address(bundle: &Path, socket: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    write_private(&bundle.join(ADDRESS_FILE), socket.as_os_str().as_bytes())
}

/// The shim socket recorded in the bundle, if any.
pub fn read_address(bundle: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(bundle.join(ADDRESS_FILE)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// The shim's process id as it recorded it, if any.
pub fn read_shim_pid(bundle: &Path) -> Option<i32> {
    std::fs::read_to_string(bundle.join(SHIM_PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// Removes a bundle: unmounts whatever is still mounted at or below it (the rootfs), then
/// deletes the directory. A bundle already gone is fine.
pub fn remove_bundle(bundle: &Path) -> Result<(), String> {
    berth_snapshot::mount::unmount_all(bundle)
        .map_err(|e| format!("unmounting under {}: {e}", bundle.display()))?;
    match std::fs::remove_dir_all(bundle) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", bundle.display())),
    }
}

/// Removes a file if it exists (a stale socket, say).
pub fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One bundle found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBundle {
    /// Its namespace.
    pub namespace: String,
    /// Its task id.
    pub id: String,
    /// Its directory.
    pub path: PathBuf,
}

/// Every bundle under `<state>/tasks/*/*`. Entries whose names break the identifier
/// grammar are skipped with a warning: berthd never made them.
pub fn scan(tasks_root: &Path) -> io::Result<Vec<FoundBundle>> {
    let mut found = Vec::new();
    let namespaces = match std::fs::read_dir(tasks_root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for ns_entry in namespaces {
        let ns_entry = ns_entry?;
        let Some(namespace) = valid_dir_name(&ns_entry) else {
            continue;
        };
        for task_entry in std::fs::read_dir(ns_entry.path())? {
            let task_entry = task_entry?;
            if let Some(id) = valid_dir_name(&task_entry) {
                found.push(FoundBundle {
                    namespace: namespace.clone(),
                    id,
                    path: task_entry.path(),
                });
            }
        }
    }
    found.sort_by(|a, b| (&a.namespace, &a.id).cmp(&(&b.namespace, &b.id)));
    Ok(found)
}

/// The entry's name if it is a directory named by a valid identifier.
fn valid_dir_name(entry: &std::fs::DirEntry) -> Option<String> {
    let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
    let name = entry.file_name().into_string().ok();
    match name {
        Some(name) if is_dir && crate::ident::validate(&name).is_ok() => Some(name),
        _ => {
            tracing::warn!(path = %entry.path().display(), "ignoring unexpected entry among task bundles");
            None
        }
    }
}

#[cfg(test)]
mod tests;
