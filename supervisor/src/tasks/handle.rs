//! What the manager knows of one task: a live shim to call, or the recorded end of a task
//! whose shim is gone (kept until the client deletes the task).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_shim::client::{ExitInfo, TaskClient};
use tokio::sync::OnceCell;

/// A task whose shim is (as far as berthd knows) alive.
pub struct LiveTask {
    /// Its namespace.
    pub namespace: String,
    /// The task (container) id.
    pub id: String,
    /// Its bundle directory.
    pub bundle: PathBuf,
    /// The shim's socket.
    pub socket: PathBuf,
    /// The connection to the shim; cloned per call, calls run concurrently.
    client: TaskClient,
    /// Set once the shim deleted the task: the shim going away after that is expected.
    deleted: AtomicBool,
    /// Filled once the shim was found dead and cleaned up (only one cleanup ever runs).
    pub(super) death: OnceCell<Arc<ExitedTask>>,
}

impl LiveTask {
    /// A task served by the shim behind `client`.
    pub fn new(
        namespace: String,
        id: String,
        bundle: PathBuf,
        socket: PathBuf,
        client: TaskClient,
    ) -> Self {
        Self {
            namespace,
            id,
            bundle,
            socket,
            client,
            deleted: AtomicBool::new(false),
            death: OnceCell::new(),
        }
    }

    /// A client for one call to the shim.
    pub fn client(&self) -> TaskClient {
        self.client.clone()
    }

    /// Notes that the shim deleted the task, so that the shim exiting is not mistaken for
    /// a death.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
    }

    /// True once the shim deleted the task.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}

/// A task whose shim is gone: only its end is left, reported as STOPPED until deleted.
#[derive(Debug, Clone)]
pub struct ExitedTask {
    /// Its namespace.
    pub namespace: String,
    /// The task (container) id.
    pub id: String,
    /// How its init process ended (recorded by the shim, or the synthetic unknown status).
    pub exit: ExitInfo,
}

/// A task as found in the registry.
#[derive(Clone)]
pub enum TaskRef {
    /// Served by a live shim.
    Live(Arc<LiveTask>),
    /// Its shim is gone; only the exit is known.
    Exited(Arc<ExitedTask>),
}

impl TaskRef {
    /// The task (container) id.
    pub fn id(&self) -> &str {
        match self {
            TaskRef::Live(task) => &task.id,
            TaskRef::Exited(task) => &task.id,
        }
    }
}
