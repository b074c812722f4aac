//! Deleting a task: the shim deletes the container and reports the exit, berthd shuts the
//! shim down and removes the bundle and socket — nothing of the task is left.
//!
//! The reply does not wait for the shim to exit: the shim detaches the container's root
//! filesystem (it is gone from the mount table at once) but the kernel flushes the
//! overlay's upper filesystem only when the shim exits and lets go of it, which costs a
//! disk flush (tens of milliseconds on a busy disk). So the bundle is moved aside into
//! `<state>/deleted/` (the container counts as task-less at once), and waiting for the
//! shim's exit and removing the bundle run after the reply, as a teardown that a new task of
//! the same id waits for before it takes the id's socket path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::containerd::events::TaskDelete;
use berth_proto::containerd::task::v2::DeleteRequest;

use super::bundle;
use super::process::shut_down_shim;
use super::{key, lock, ExitedTask, LiveTask, TaskError, TaskManager, TaskRef};

/// Topic of the event for a deleted task.
pub const TOPIC_DELETE: &str = "/tasks/delete";

/// What a deleted task's init process left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedTask {
    /// Its pid.
    pub pid: u32,
    /// Its exit status.
    pub exit_status: u32,
    /// When it exited.
    pub exited_at: SystemTime,
}

impl TaskManager {
    /// Deletes task `id` of `ns`: its process must have exited (the shim refuses
    /// otherwise). berthd publishes `/tasks/delete` before it replies, so the event comes
    /// before whatever the client does next (the shim's own copy is dropped).
    pub async fn delete(&self, ns: &str, id: &str) -> Result<DeletedTask, TaskError> {
        let manager = self.clone();
        let task = self.lookup(ns, id)?;
        // Run to completion even if the caller goes away: a half-deleted task would leak.
        tokio::spawn(async move {
            match task {
                TaskRef::Exited(exited) => Ok(manager.forget_exited(&exited)),
                TaskRef::Live(live) => manager.delete_live(live).await,
            }
        })
        .await
        .map_err(|e| TaskError::FailedPrecondition(format!("task delete was aborted: {e}")))?
    }

    /// Drops an exited task from the registry and reports it deleted.
    fn forget_exited(&self, exited: &Arc<ExitedTask>) -> DeletedTask {
        self.remove_exited(exited);
        self.inner.events.publish(
            &exited.namespace,
            TOPIC_DELETE,
            &TaskDelete {
                container_id: exited.id.clone(),
                pid: exited.exit.pid,
                exit_status: exited.exit.exit_status,
                exited_at: Some(exited.exit.exited_at.into()),
                id: String::new(),
            },
        );
        tracing::info!(namespace = %exited.namespace, id = %exited.id, "stopped task deleted");
        DeletedTask {
            pid: exited.exit.pid,
            exit_status: exited.exit.exit_status,
            exited_at: exited.exit.exited_at,
        }
    }

    /// Shuts the shim down and waits for it to exit (killing it if it lingers), then
    /// removes the bundle and socket, without holding up the Delete reply. Until this
    /// finishes, a new task of the same id waits in [`TaskManager::wait_for_teardown`].
    fn tear_down_after_reply(&self, task: Arc<LiveTask>, bundle: PathBuf, shim_pid: Option<i32>) {
        let done = self.begin_teardown(&task.namespace, &task.id);
        let manager = self.clone();
        let runtime_state = self
            .inner
            .layout
            .runtime_root(&task.namespace)
            .join(&task.id);
        tokio::spawn(async move {
            // Shut the shim down after the reply: it then runs the runtime's delete of the
            // exited container, which the client need not wait for. No shim outlives its
            // deleted task, and none still holds the socket path when a new task of the same
            // id binds it.
            shut_down_shim(&mut task.client(), &task.id, false, shim_pid).await;
            // The shim is gone, and with it any /tasks/delete of its own still on the way.
            lock(&manager.inner.deletes_announced).remove(&key(&task.namespace, &task.id));
            // The shim runs the runtime's delete after its reply; if that failed, say so
            // here, where the log outlives the bundle.
            if runtime_state.exists() {
                tracing::error!(id = %task.id, state = %runtime_state.display(),
                    "the runtime's state of a deleted task is still there; the runtime's delete failed (see the runtime's log)");
            }
            if let Err(e) = bundle::remove_bundle(&bundle) {
                tracing::error!(id = %task.id, error = %e, "could not remove a deleted task's bundle");
            }
            if let Err(e) = bundle::remove_file_if_present(&task.socket) {
                tracing::warn!(id = %task.id, error = %e, "could not remove a deleted task's socket");
            }
            drop(done);
        });
    }

    async fn delete_live(&self, task: Arc<LiveTask>) -> Result<DeletedTask, TaskError> {
        let started = std::time::Instant::now();
        let announced = key(&task.namespace, &task.id);
        // From before the shim is asked: its own /tasks/delete may beat its reply here.
        lock(&self.inner.deletes_announced).insert(announced.clone());
        let reply = task
            .client()
            .delete(DeleteRequest {
                id: task.id.clone(),
                exec_id: String::new(),
            })
            .await;
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                lock(&self.inner.deletes_announced).remove(&announced);
                return match self.call_failed(&task, status).await {
                    Ok(exited) => Ok(self.forget_exited(&exited)),
                    Err(e) => Err(e),
                };
            }
        };
        self.inner.events.publish(
            &task.namespace,
            TOPIC_DELETE,
            &TaskDelete {
                container_id: task.id.clone(),
                pid: reply.pid,
                exit_status: reply.exit_status,
                exited_at: reply.exited_at,
                id: String::new(),
            },
        );
        let shim_deleted = started.elapsed();
        task.mark_deleted();
        self.remove_live(&task);
        let shim_pid = bundle::read_shim_pid(&task.bundle);

        let parked = self
            .inner
            .layout
            .park_deleted_bundle(&task.namespace, &task.id);
        self.tear_down_after_reply(task.clone(), parked, shim_pid);
        tracing::info!(namespace = %task.namespace, id = %task.id, ?shim_deleted,
            total = ?started.elapsed(), "task deleted");
        Ok(DeletedTask {
            pid: reply.pid,
            exit_status: reply.exit_status,
            exited_at: reply
                .exited_at
                .and_then(|at| SystemTime::try_from(at).ok())
                .unwrap_or_else(SystemTime::now),
        })
    }
}
