//! Overlayfs snapshots.
//!
//! [`OverlaySnapshotter`] keeps snapshots under one root directory (for berthd:
//! `<--root>/snapshots/overlayfs`). Every snapshot gets a short numeric id and a directory
//! `snapshots/<id>` holding its files (`fs`), the overlay work directory (`work`) and its
//! record (`info.json`); the `layout` submodule has the full picture. Client keys are arbitrary
//! strings (they may contain `/` and `:`) and never become paths.
//!
//! Crash safety comes from the order of operations: a snapshot is assembled under
//! `staging/` and appears in `snapshots/` by one rename; it disappears by one rename into
//! `trash/`; its record changes by atomic replacement. So a record never points at a
//! missing directory, and what a crash leaves behind is garbage [`OverlaySnapshotter::cleanup`]
//! finds and deletes.

mod durable;
mod ids;
mod labels;
mod layout;
mod mounts;
mod record;
mod usage;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::mount::Mount;
use durable::{remove_tree, sync_dir, TEMP_SUFFIX};
use ids::IdAllocator;
use labels::{apply_label_update, validate_labels};
use layout::{Layout, FS_DIR, RECORD_FILE, WORK_DIR};
use record::Record;

pub use record::{Info, Kind, Usage};

/// Longest key or name accepted, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// Present when the kernel's overlay module supports the inodes index; overlays are then
/// mounted with `index=off`, as containerd does, so lower layers can be shared freely.
const OVERLAY_INDEX_PARAMETER: &str = "/sys/module/overlay/parameters/index";

/// Tunables of an [`OverlaySnapshotter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotterOptions {
    /// Flush the snapshot's files to disk (`syncfs`) before its commit is recorded, so a
    /// power loss cannot leave a committed snapshot with missing data. On by default.
    pub sync_on_commit: bool,
}

impl Default for SnapshotterOptions {
    fn default() -> Self {
        SnapshotterOptions {
            sync_on_commit: true,
        }
    }
}

/// An overlayfs snapshotter rooted at one directory. All methods take `&self` and are
/// safe to call from many threads (share it in an `Arc`).
#[derive(Debug)]
pub struct OverlaySnapshotter {
    /// Held open with an exclusive `flock` so that no second snapshotter (in this or
    /// another process) works on the same root: their id counters would collide.
    _root_lock: fs::File,
    layout: Layout,
    options: SnapshotterOptions,
    index_off: bool,
    state: RwLock<State>,
    /// Held while files in `trash/` are deleted, so two deletions never walk the same tree.
    emptying_trash: std::sync::Mutex<()>,
}

/// The in-memory index, rebuilt from the records at open.
#[derive(Debug)]
struct State {
    /// Every readable record, by key (active/view) or name (committed).
    by_key: HashMap<String, Record>,
    /// Ids of snapshot directories whose record could not be read. They are left alone
    /// (never cleaned up) so a damaged record never costs data.
    unreadable: HashSet<u64>,
    /// Source of new ids.
    ids: IdAllocator,
}

impl OverlaySnapshotter {
    /// Opens (creating if needed) the snapshotter rooted at `root`, with default options.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, SnapshotterOptions::default())
    }

    /// Opens (creating if needed) the snapshotter rooted at `root` and loads every record.
    ///
    /// The root must not contain `,` `:` or `\` (they would corrupt the overlay option
    /// strings handed to clients): `InvalidArgument` if it does.
    pub fn open_with(root: impl AsRef<Path>, options: SnapshotterOptions) -> Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root)
            .map_err(|err| Error::io(format!("create {}", root.display()), err))?;
        let root = fs::canonicalize(root)
            .map_err(|err| Error::io(format!("resolve {}", root.display()), err))?;
        check_root_path(&root)?;
        let layout = Layout::new(root);
        let root_lock = lock_root(&layout.lock_file())?;
        for dir in [
            layout.snapshots_dir(),
            layout.staging_dir(),
            layout.trash_dir(),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|err| Error::io(format!("create {}", dir.display()), err))?;
        }

        let mut by_key = HashMap::new();
        let mut unreadable = HashSet::new();
        let mut highest_id = 0;
        for (name, path) in list_dir(&layout.snapshots_dir())? {
            let Ok(id) = name.parse::<u64>() else {
                continue;
            };
            highest_id = highest_id.max(id);
            let record_path = path.join(RECORD_FILE);
            if !record_path.exists() {
                continue; // an orphan directory: cleanup() removes it
            }
            match Record::load(&record_path) {
                Ok(record) if record.id == id && !by_key.contains_key(&record.key) => {
                    by_key.insert(record.key.clone(), record);
                }
                Ok(record) => {
                    tracing::warn!(id, key = %record.key,
                        "snapshot record does not match its directory or repeats a key; ignoring it");
                    unreadable.insert(id);
                }
                Err(err) => {
                    tracing::warn!(id, error = %err, "unreadable snapshot record; leaving it alone");
                    unreadable.insert(id);
                }
            }
        }
        for dir in [layout.staging_dir(), layout.trash_dir()] {
            for (name, _) in list_dir(&dir)? {
                if let Ok(id) = name.parse::<u64>() {
                    highest_id = highest_id.max(id);
                }
            }
        }
        let ids = IdAllocator::load(layout.id_file(), highest_id)?;
        Ok(OverlaySnapshotter {
            _root_lock: root_lock,
            layout,
            options,
            index_off: Path::new(OVERLAY_INDEX_PARAMETER).exists(),
            emptying_trash: std::sync::Mutex::new(()),
            state: RwLock::new(State {
                by_key,
                unreadable,
                ids,
            }),
        })
    }

    /// The (absolute) root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Creates an active (read-write) snapshot `key` on top of the committed snapshot
    /// `parent` (`None` or `Some("")`: no parent) and returns the mounts for it.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// Creates a read-only view `key` of the committed snapshot `parent` and returns the
    /// mounts for it.
    pub fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    /// The mounts of the active or view snapshot `key` (`FailedPrecondition` for a
    /// committed one, which is only ever used as a parent).
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let state = self.read();
        let record = state.get(key)?;
        if record.kind == Kind::Committed {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is committed; only active snapshots and views have mounts"
            )));
        }
        self.mounts_of(&state, record)
    }

    /// Turns the active snapshot `key` into the committed snapshot `name` with `labels`;
    /// `key` no longer exists afterwards. Committing a view is `FailedPrecondition`.
    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        validate_key("name", name)?;
        validate_key("key", key)?;
        validate_labels(&labels)?;
        let id = {
            let state = self.read();
            let record = state.committable(key, name)?;
            record.id
        };

        // Measure and flush outside the lock: both walk or write the whole layer.
        let fs_dir = self.layout.fs_dir(id);
        let usage = usage::disk_usage(&fs_dir).map_err(|err| vanished_as_not_found(err, key))?;
        if self.options.sync_on_commit {
            sync_filesystem(&fs_dir)?;
        }

        let mut state = self.write();
        let record = state.committable(key, name)?;
        if record.id != id {
            return Err(Error::NotFound(format!(
                "snapshot {key:?} was replaced while it was being committed"
            )));
        }
        let now = SystemTime::now();
        let committed = Record {
            id,
            key: name.to_string(),
            kind: Kind::Committed,
            parent: record.parent.clone(),
            labels,
            created: now,
            updated: now,
            usage: Some(usage),
        };
        committed.store(&self.layout.record_file(id))?;
        state.by_key.remove(key);
        state.by_key.insert(name.to_string(), committed);
        Ok(())
    }

    /// Removes snapshot `key`: it is gone for every caller when this returns, its files
    /// wait in `trash/` for [`OverlaySnapshotter::empty_trash`] (or the next
    /// [`OverlaySnapshotter::cleanup`]), so that a caller answering a client need not wait
    /// for a tree to be deleted. A committed snapshot that other snapshots are built on is
    /// `FailedPrecondition`. The removal is atomic but not flushed before this returns:
    /// after a power loss the snapshot may be back, whole, as it was.
    pub fn remove(&self, key: &str) -> Result<()> {
        validate_key("key", key)?;
        let trash = {
            let mut state = self.write();
            let id = state.get(key)?.id;
            if let Some(child) = state
                .by_key
                .values()
                .find(|r| r.parent.as_deref() == Some(key))
            {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove snapshot {key:?}: snapshot {:?} is built on it",
                    child.key
                )));
            }
            let trash = self.layout.trash_path(&id.to_string());
            remove_tree(&trash)?;
            let dir = self.layout.snapshot_dir(id);
            fs::rename(&dir, &trash).map_err(|err| {
                Error::io(
                    format!("move {} to {}", dir.display(), trash.display()),
                    err,
                )
            })?;
            // No directory sync before answering: if a crash undoes the rename, the snapshot
            // is simply still there (the old state, never a record without its files), and
            // one nothing refers to any more is garbage that collection removes. The next
            // prepare syncs `snapshots/`, which makes the rename durable with it.
            state.by_key.remove(key);
            trash
        };
        tracing::debug!(key, trash = %trash.display(), "snapshot removed; its files are in the trash");
        Ok(())
    }

    /// Deletes the files of removed snapshots; returns how many trees it deleted. What it
    /// cannot delete stays for the next call.
    pub fn empty_trash(&self) -> Result<usize> {
        let _one_at_a_time = self
            .emptying_trash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut deleted = 0;
        for (_, path) in list_dir(&self.layout.trash_dir())? {
            remove_tree(&path)?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// What a client sees of snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.read().get(key)?.info())
    }

    /// Updates the labels of snapshot `info.name` (the only fields that can change) and
    /// returns the result. `fieldpaths` as in containerd: empty or `labels` replaces all
    /// labels, `labels.<key>` sets or removes one; any other path is `InvalidArgument`.
    pub fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info> {
        validate_key("name", &info.name)?;
        validate_labels(&info.labels)?;
        let mut state = self.write();
        let current = state.get(&info.name)?;
        let labels = apply_label_update(&current.labels, &info.labels, fieldpaths)?;
        let mut updated = current.clone();
        updated.labels = labels;
        updated.updated = SystemTime::now();
        updated.store(&self.layout.record_file(updated.id))?;
        let result = updated.info();
        state.by_key.insert(info.name.clone(), updated);
        Ok(result)
    }

    /// Disk space taken by snapshot `key`'s own files (its parents not included). Measured
    /// now for active snapshots and views; remembered from commit time for committed ones.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let (id, remembered) = {
            let state = self.read();
            let record = state.get(key)?;
            (
                record.id,
                record.usage.filter(|_| record.kind == Kind::Committed),
            )
        };
        match remembered {
            Some(usage) => Ok(usage),
            None => usage::disk_usage(&self.layout.fs_dir(id))
                .map_err(|err| vanished_as_not_found(err, key)),
        }
    }

    /// Every snapshot, sorted by name.
    pub fn list(&self) -> Result<Vec<Info>> {
        let state = self.read();
        let mut infos: Vec<Info> = state.by_key.values().map(Record::info).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    /// Deletes what interrupted operations left behind: half-made snapshots, removed
    /// snapshots whose files were not deleted yet, snapshot directories without a record.
    /// Returns how many such directories were deleted. Safe to call at any time.
    pub fn cleanup(&self) -> Result<usize> {
        let mut deleted = 0;
        {
            let state = self.write();
            // Snapshots are only assembled under the lock, so everything here is debris.
            for (_, path) in list_dir(&self.layout.staging_dir())? {
                remove_tree(&path)?;
                deleted += 1;
            }
            let live: HashSet<u64> = state.by_key.values().map(|r| r.id).collect();
            let mut moved = false;
            for (name, path) in list_dir(&self.layout.snapshots_dir())? {
                match name.parse::<u64>() {
                    Ok(id) if live.contains(&id) || state.unreadable.contains(&id) => {
                        remove_stale_temp(&path.join(RECORD_FILE))?;
                    }
                    _ => {
                        let trash = self.layout.trash_path(&name);
                        remove_tree(&trash)?;
                        fs::rename(&path, &trash).map_err(|err| {
                            Error::io(
                                format!("move {} to {}", path.display(), trash.display()),
                                err,
                            )
                        })?;
                        moved = true;
                    }
                }
            }
            if moved {
                sync_dir(&self.layout.snapshots_dir())?;
            }
            remove_stale_temp(&self.layout.id_file())?;
        }
        deleted += self.empty_trash()?;
        Ok(deleted)
    }

    /// Shared body of `prepare` and `view`.
    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        validate_key("key", key)?;
        validate_labels(&labels)?;
        let parent = parent.filter(|p| !p.is_empty());
        let mut state = self.write();
        if state.by_key.contains_key(key) {
            return Err(Error::AlreadyExists(format!(
                "snapshot {key:?} already exists"
            )));
        }
        let parent_ids = match parent {
            None => Vec::new(),
            Some(parent) => {
                let record = state.by_key.get(parent).ok_or_else(|| {
                    Error::NotFound(format!("parent snapshot {parent:?} does not exist"))
                })?;
                if record.kind != Kind::Committed {
                    return Err(Error::InvalidArgument(format!(
                        "parent {parent:?} is not a committed snapshot"
                    )));
                }
                state.ancestry(parent)?
            }
        };
        let id = state.ids.allocate()?;
        let now = SystemTime::now();
        let record = Record {
            id,
            key: key.to_string(),
            kind,
            parent: parent.map(str::to_string),
            labels,
            created: now,
            updated: now,
            usage: None,
        };
        self.materialize(&record, parent_ids.first().copied())?;
        let mounts = mounts::snapshot_mounts(&self.layout, id, kind, &parent_ids, self.index_off);
        state.by_key.insert(key.to_string(), record);
        Ok(mounts)
    }

    /// Assembles the snapshot's directory under `staging/` and renames it into
    /// `snapshots/`, so it appears whole (directories and record together) or not at all.
    fn materialize(&self, record: &Record, closest_parent: Option<u64>) -> Result<()> {
        let staging = self.layout.staging_path(record.id);
        remove_tree(&staging)?;
        let result = self
            .assemble(&staging, record, closest_parent)
            .and_then(|()| {
                let dir = self.layout.snapshot_dir(record.id);
                fs::rename(&staging, &dir).map_err(|err| {
                    Error::io(
                        format!("move {} to {}", staging.display(), dir.display()),
                        err,
                    )
                })?;
                sync_dir(&self.layout.snapshots_dir())
            });
        if result.is_err() {
            let _ = remove_tree(&staging);
        }
        result
    }

    /// Creates `fs`, `work` and the record inside `staging`, all durable.
    fn assemble(&self, staging: &Path, record: &Record, closest_parent: Option<u64>) -> Result<()> {
        make_dir(staging, 0o700)?;
        let fs_dir = staging.join(FS_DIR);
        make_dir(&fs_dir, 0o755)?;
        if let Some(parent) = closest_parent {
            // The new upper directory is the root of the merged tree: give it the parent's
            // owner and mode so the root directory does not change when the overlay is made.
            copy_owner_and_mode(&self.layout.fs_dir(parent), &fs_dir)?;
        }
        make_dir(&staging.join(WORK_DIR), 0o711)?;
        record.store(&staging.join(RECORD_FILE))
    }

    /// Mounts for an active snapshot or view.
    fn mounts_of(&self, state: &State, record: &Record) -> Result<Vec<Mount>> {
        let parent_ids = match &record.parent {
            Some(parent) => state.ancestry(parent)?,
            None => Vec::new(),
        };
        Ok(mounts::snapshot_mounts(
            &self.layout,
            record.id,
            record.kind,
            &parent_ids,
            self.index_off,
        ))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-changed (it is only
        // changed after the disk is), so a poisoned lock is still good.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// The record of `key`, or `NotFound`.
    fn get(&self, key: &str) -> Result<&Record> {
        validate_key("key", key)?;
        self.by_key
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("snapshot {key:?} does not exist")))
    }

    /// The record of `key` if it can be committed under `name` right now.
    fn committable(&self, key: &str, name: &str) -> Result<&Record> {
        let record = self.get(key)?;
        if record.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is not active; only active snapshots can be committed"
            )));
        }
        if self.by_key.contains_key(name) {
            return Err(Error::AlreadyExists(format!(
                "snapshot {name:?} already exists"
            )));
        }
        Ok(record)
    }

    /// Ids of the committed snapshot `name` and all its ancestors, closest first.
    fn ancestry(&self, name: &str) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = Some(name);
        while let Some(current) = next {
            let record = self.by_key.get(current).ok_or_else(|| {
                Error::NotFound(format!("ancestor snapshot {current:?} does not exist"))
            })?;
            ids.push(record.id);
            if ids.len() > self.by_key.len() {
                return Err(Error::FailedPrecondition(format!(
                    "the parents of snapshot {name:?} form a cycle"
                )));
            }
            next = record.parent.as_deref();
        }
        Ok(ids)
    }
}

/// Checks a key or name: not empty, at most [`MAX_KEY_LEN`] bytes. Anything else is
/// allowed (`/`, `:` included): keys are never used as paths.
fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "snapshot {what} must not be empty"
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "snapshot {what} is {} bytes long; at most {MAX_KEY_LEN} are allowed",
            key.len()
        )));
    }
    Ok(())
}

/// Opens and exclusively locks `path`; `FailedPrecondition` if someone else holds it.
fn lock_root(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|err| Error::io(format!("open {}", path.display()), err))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::FailedPrecondition(format!(
            "snapshotter root {} is in use by another snapshotter",
            path.parent().unwrap_or(path).display()
        ))),
        Err(err) => Err(Error::io(format!("lock {}", path.display()), err)),
    }
}

/// Refuses roots whose path would break overlay option strings.
fn check_root_path(root: &Path) -> Result<()> {
    match root.to_str() {
        Some(text) if !text.contains([',', ':', '\\']) => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "snapshotter root {} must be valid UTF-8 without ',', ':' or '\\'",
            root.display()
        ))),
    }
}

/// The entries of `dir` as (file name, path) pairs; names that are not UTF-8 come back
/// lossily converted (they are never ids, so they only ever count as debris).
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries =
        fs::read_dir(dir).map_err(|err| Error::io(format!("list {}", dir.display()), err))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(format!("list {}", dir.display()), err))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    Ok(out)
}

/// Creates directory `path` with exactly `mode` (whatever the umask).
fn make_dir(path: &Path, mode: u32) -> Result<()> {
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|err| Error::io(format!("create directory {}", path.display()), err))
}

/// Gives `to` the owner, group and permission bits of `from`.
fn copy_owner_and_mode(from: &Path, to: &Path) -> Result<()> {
    let meta =
        fs::metadata(from).map_err(|err| Error::io(format!("inspect {}", from.display()), err))?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))
        .and_then(|()| fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777)))
        .map_err(|err| Error::io(format!("copy owner and mode to {}", to.display()), err))
}

/// Flushes the filesystem holding `dir` to disk.
fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle =
        fs::File::open(dir).map_err(|err| Error::io(format!("open {}", dir.display()), err))?;
    rustix::fs::syncfs(&handle)
        .map_err(|err| Error::io(format!("sync the filesystem of {}", dir.display()), err))
}

/// Deletes the temporary file an interrupted atomic write of `path` may have left.
fn remove_stale_temp(path: &Path) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(TEMP_SUFFIX);
    match fs::remove_file(&temp) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
            format!("remove {}", Path::new(&temp).display()),
            err,
        )),
        _ => Ok(()),
    }
}

/// A snapshot directory that disappears under a reader means the snapshot was removed
/// meanwhile: report that as `NotFound` rather than as an I/O failure.
fn vanished_as_not_found(err: Error, key: &str) -> Error {
    match err {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("snapshot {key:?} does not exist"))
        }
        other => other,
    }
}
