//! The shim manager: which tasks exist, the connection to each task's shim, and the work
//! around the shims that only berthd can do — writing bundles, launching shims, cleaning up
//! after failed creates, deleted tasks and dead shims, and finding every shim again when
//! berthd restarts.
//!
//! berthd keeps nothing here that is not also on disk or inside a shim: the registry is
//! rebuilt from `<state>/tasks/*/*` at start ([`TaskManager::recover`]). Calls to different
//! tasks, and to the same task, run concurrently: a client's `Wait` may be pending while its
//! `Start` is still running, so no call holds a lock while it talks to a shim.

mod bundle;
mod create;
mod death;
mod delete;
mod error;
mod handle;
mod process;
mod recovery;
mod runtime_name;
mod spare;

pub use create::NewTask;
pub use delete::TOPIC_DELETE;
pub use error::TaskError;
pub use handle::{ExitedTask, LiveTask, TaskRef};
pub use runtime_name::check_runtime;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::events::EventBus;
use bundle::Layout;

/// What the manager needs from the daemon's settings.
#[derive(Debug, Clone)]
pub struct ShimSettings {
    /// The `berth-shim` binary.
    pub shim_binary: PathBuf,
    /// berthd's state directory (bundles, shim sockets, the runtime's root).
    pub state: PathBuf,
    /// berthd's API socket, where shims publish their events.
    pub publish_address: PathBuf,
    /// The shims' log level (`info`, `debug`, …); `None` leaves the shim's default.
    pub log_level: Option<String>,
    /// How many spare shims to keep started ahead of need (0: none).
    pub spare_shims: usize,
}

/// The shim log level for berthd's log filter: the filter itself when it is a plain level
/// such as `debug`, else nothing (a filter naming berthd's modules means nothing to a shim).
pub fn shim_log_level(filter: &str) -> Option<String> {
    let level = filter.trim().to_ascii_lowercase();
    ["trace", "debug", "info", "warn", "error"]
        .contains(&level.as_str())
        .then_some(level)
}

/// A namespace and a task id.
type TaskKey = (String, String);

/// One registry entry.
enum Slot {
    /// A Create is in progress: the id is taken, nothing can be called yet.
    Creating,
    /// Served by a live shim.
    Live(Arc<LiveTask>),
    /// Its shim is gone; kept to report the exit until the task is deleted.
    Exited(Arc<ExitedTask>),
}

/// The shim manager. Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ShimSettings,
    layout: Layout,
    events: EventBus,
    /// Held only to look up or change entries, never across a call to a shim.
    tasks: Mutex<HashMap<TaskKey, Slot>>,
    /// Deleted tasks whose shim exit and bundle removal still run; each receiver sees its
    /// sender dropped when that teardown is over.
    teardowns: Mutex<HashMap<TaskKey, watch::Receiver<()>>>,
    /// Tasks whose deletion berthd announces itself (on `/tasks/delete`, before it replies,
    /// so that the event comes before anything the client does next); the same event from
    /// their shim, which arrives at its own pace, is dropped as a duplicate.
    deletes_announced: Mutex<std::collections::HashSet<TaskKey>>,
    /// Spare shims started ahead of need.
    spares: spare::SparePool,
    /// True once the registry is complete ([`TaskManager::recover`] is done): berthd takes
    /// requests while it recovers, and task requests wait for this.
    recovered: watch::Sender<bool>,
}

/// Held by a running teardown; dropping it tells waiters the id's paths are free.
pub(crate) struct TeardownDone {
    manager: TaskManager,
    key: TaskKey,
    /// Dropped after the entry is removed, which ends the waiters' wait.
    _sender: watch::Sender<()>,
}

impl Drop for TeardownDone {
    fn drop(&mut self) {
        // One teardown per id at a time: a new task of the id waits for this one before it
        // can exist, let alone be deleted. The sender drops after this, waking waiters.
        lock(&self.manager.inner.teardowns).remove(&self.key);
    }
}

/// Locks a map whose every change is one insert or remove, so a poisoned lock still
/// guards a consistent map.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn key(ns: &str, id: &str) -> TaskKey {
    (ns.to_string(), id.to_string())
}

/// The error for a task that is not there.
pub fn not_found(id: &str) -> TaskError {
    TaskError::NotFound(format!("task {id}: not found"))
}

impl TaskManager {
    /// A manager with no tasks yet, not open for requests until [`TaskManager::recover`]
    /// (or [`TaskManager::open_for_requests`]) has run; `events` receives what
    /// berthd itself reports about tasks (the exits of dead shims).
    pub fn new(settings: ShimSettings, events: EventBus) -> Self {
        let layout = Layout::new(settings.state.clone());
        Self {
            inner: Arc::new(Inner {
                settings,
                layout,
                events,
                tasks: Mutex::new(HashMap::new()),
                teardowns: Mutex::new(HashMap::new()),
                deletes_announced: Mutex::new(std::collections::HashSet::new()),
                spares: spare::SparePool::default(),
                recovered: watch::channel(false).0,
            }),
        }
    }

    /// True if berthd itself announces the deletion of task `id` of `ns`, so that the
    /// shim's `/tasks/delete` for it is a duplicate.
    pub fn announces_delete_of(&self, ns: &str, id: &str) -> bool {
        lock(&self.inner.deletes_announced).contains(&key(ns, id))
    }

    /// Marks the registry complete, releasing the task requests that wait for it.
    /// [`TaskManager::recover`] calls this when it is done.
    pub fn open_for_requests(&self) {
        self.inner.recovered.send_replace(true);
    }

    /// Waits until the registry is complete, so that no request sees a task missing
    /// only because its shim has not been found again yet.
    pub async fn wait_until_recovered(&self) {
        let mut recovered = self.inner.recovered.subscribe();
        // Fails only if the sender is gone, which it is not while `self` lives.
        let _ = recovered.wait_for(|done| *done).await;
    }

    /// Records that the task `id` of `ns` is being torn down; the teardown ends when the
    /// returned guard is dropped.
    pub(crate) fn begin_teardown(&self, ns: &str, id: &str) -> TeardownDone {
        let (sender, receiver) = watch::channel(());
        lock(&self.inner.teardowns).insert(key(ns, id), receiver);
        TeardownDone {
            manager: self.clone(),
            key: key(ns, id),
            _sender: sender,
        }
    }

    /// Waits until no teardown of a deleted task `id` of `ns` is running, so a new task of
    /// that id does not race the old one's shim exit and bundle removal.
    pub(crate) async fn wait_for_teardown(&self, ns: &str, id: &str) {
        let pending = lock(&self.inner.teardowns).get(&key(ns, id)).cloned();
        if let Some(mut receiver) = pending {
            // Ends with an error once the sender is dropped: that is the signal.
            while receiver.changed().await.is_ok() {}
        }
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<TaskKey, Slot>> {
        // A panic while holding the lock cannot leave a half-made entry: every change is
        // one insert or remove, so a poisoned map is still consistent.
        lock(&self.inner.tasks)
    }

    /// The task `id` of namespace `ns` (a task still being created is not found yet).
    pub fn lookup(&self, ns: &str, id: &str) -> Result<TaskRef, TaskError> {
        match self.registry().get(&key(ns, id)) {
            Some(Slot::Live(task)) => Ok(TaskRef::Live(task.clone())),
            Some(Slot::Exited(task)) => Ok(TaskRef::Exited(task.clone())),
            Some(Slot::Creating) | None => Err(not_found(id)),
        }
    }

    /// The live task `id` of `ns`; a task whose shim is gone is refused with a message
    /// saying how it ended.
    pub fn live(&self, ns: &str, id: &str) -> Result<Arc<LiveTask>, TaskError> {
        match self.lookup(ns, id)? {
            TaskRef::Live(task) => Ok(task),
            TaskRef::Exited(task) => Err(stopped(&task)),
        }
    }

    /// Every task of namespace `ns` (being created excepted), sorted by id.
    pub fn list(&self, ns: &str) -> Vec<TaskRef> {
        let mut found: Vec<TaskRef> = self
            .registry()
            .iter()
            .filter(|((task_ns, _), _)| task_ns == ns)
            .filter_map(|(_, slot)| match slot {
                Slot::Live(task) => Some(TaskRef::Live(task.clone())),
                Slot::Exited(task) => Some(TaskRef::Exited(task.clone())),
                Slot::Creating => None,
            })
            .collect();
        found.sort_by(|a, b| a.id().cmp(b.id()));
        found
    }

    /// Replaces `task`'s entry with `exited`, if the entry is still that task.
    fn replace_live_with_exited(&self, task: &Arc<LiveTask>, exited: Arc<ExitedTask>) {
        let mut tasks = self.registry();
        let k = key(&task.namespace, &task.id);
        if let Some(Slot::Live(current)) = tasks.get(&k) {
            if Arc::ptr_eq(current, task) {
                tasks.insert(k, Slot::Exited(exited));
            }
        }
    }

    /// Removes `task`'s entry, if it is still that live task.
    fn remove_live(&self, task: &Arc<LiveTask>) {
        let mut tasks = self.registry();
        let k = key(&task.namespace, &task.id);
        if matches!(tasks.get(&k), Some(Slot::Live(current)) if Arc::ptr_eq(current, task)) {
            tasks.remove(&k);
        }
    }

    /// Removes `task`'s entry, if it is still that exited task.
    fn remove_exited(&self, task: &Arc<ExitedTask>) {
        let mut tasks = self.registry();
        let k = key(&task.namespace, &task.id);
        if matches!(tasks.get(&k), Some(Slot::Exited(current)) if Arc::ptr_eq(current, task)) {
            tasks.remove(&k);
        }
    }
}

/// The error for an operation that needs a running process on a task that has exited.
pub fn stopped(task: &ExitedTask) -> TaskError {
    TaskError::FailedPrecondition(format!(
        "task {}: its process has already exited (exit status {}); it can only be inspected, \
         waited for or deleted",
        task.id, task.exit.exit_status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_levels_reach_the_shim() {
        assert_eq!(shim_log_level("debug").as_deref(), Some("debug"));
        assert_eq!(shim_log_level(" WARN ").as_deref(), Some("warn"));
        assert_eq!(shim_log_level("berthd=debug"), None);
        assert_eq!(shim_log_level("info,sled=warn"), None);
    }
}
