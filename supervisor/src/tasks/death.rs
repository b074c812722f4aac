//! Shims that die: telling a dead shim from a failed call, cleaning up after it
//! (`berth-shim delete`: the runtime's forced delete, unmount, bundle removed), and
//! reporting its task STOPPED with the recorded exit status, or a clear synthetic one.
//!
//! Every live task has a watcher: a `Wait` held open on its shim. When the shim goes away
//! the call breaks, and the task is cleaned up at once rather than at the next request.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::containerd::events::TaskExit;
use berth_proto::containerd::task::v2::WaitRequest;
use berth_shim::client::{cleanup_dead, connect_with_timeout, DeleteArgs, ExitInfo};
use tonic::{Code, Status};

use super::bundle::{self, read_shim_pid};
use super::process::process_alive;
use super::{ExitedTask, LiveTask, Slot, TaskError, TaskManager};

/// How long a liveness probe waits for a shim's socket to answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Pause before a watcher asks again after a call failed but the shim is still there.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// Topic of the event for a task whose process exited.
pub const TOPIC_EXIT: &str = "/tasks/exit";

/// True for the codes a broken connection shows up as.
fn connection_trouble(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled)
}

/// True if the shim of the task with `bundle` and `socket` is gone: its recorded process
/// is not running and nothing answers on its socket.
pub(super) async fn shim_gone(bundle: &Path, socket: &Path) -> bool {
    if let Some(pid) = read_shim_pid(bundle) {
        if process_alive(pid) {
            return false;
        }
    }
    connect_with_timeout(socket, PROBE_TIMEOUT).await.is_err()
}

/// The exit recorded in the bundle's `exit` file by the shim, if it is readable.
fn recorded_exit(bundle: &Path) -> Option<ExitInfo> {
    let text = std::fs::read_to_string(bundle.join("exit")).ok()?;
    ExitInfo::from_json(&text).ok()
}

impl TaskManager {
    /// Judges a failed call to `task`'s shim. If the shim turns out to be dead, the task is
    /// cleaned up and its exit returned (`Ok`); otherwise the shim's error is (`Err`).
    pub async fn call_failed(
        &self,
        task: &Arc<LiveTask>,
        status: Status,
    ) -> Result<Arc<ExitedTask>, TaskError> {
        let as_error = |status: Status| TaskError::shim(&task.id, status);
        if let Some(exited) = task.death.get() {
            return Ok(exited.clone());
        }
        if !connection_trouble(status.code()) || task.is_deleted() {
            return Err(as_error(status));
        }
        if !shim_gone(&task.bundle, &task.socket).await {
            return Err(as_error(status));
        }
        Ok(self.bury(task).await)
    }

    /// Cleans up after `task`'s dead shim (once, however many callers notice), publishes
    /// its exit and keeps it in the registry as exited.
    async fn bury(&self, task: &Arc<LiveTask>) -> Arc<ExitedTask> {
        task.death
            .get_or_init(|| async {
                tracing::warn!(namespace = %task.namespace, id = %task.id,
                    "the task's shim died; cleaning up");
                let exit = self
                    .clean_up_after_dead_shim(&task.namespace, &task.id, &task.bundle, &task.socket)
                    .await;
                let exited = Arc::new(ExitedTask {
                    namespace: task.namespace.clone(),
                    id: task.id.clone(),
                    exit,
                });
                self.publish_exit(&exited);
                self.replace_live_with_exited(task, exited.clone());
                exited
            })
            .await
            .clone()
    }

    /// Removes everything a task whose shim is gone left behind, through
    /// `berth-shim delete` (forced runtime delete, unmount, bundle removal), and returns
    /// how its process ended. Whatever that command manages, the bundle and the socket
    /// are gone afterwards.
    pub(super) async fn clean_up_after_dead_shim(
        &self,
        ns: &str,
        id: &str,
        bundle: &Path,
        socket: &Path,
    ) -> ExitInfo {
        let args = DeleteArgs {
            shim_binary: self.inner.settings.shim_binary.clone(),
            namespace: ns.to_string(),
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            runtime_root: self.inner.layout.runtime_root(ns),
            runtime_binary: None,
        };
        let exit = match cleanup_dead(&args).await {
            Ok(exit) => exit,
            Err(e) => {
                tracing::warn!(namespace = ns, id, error = %e,
                    "cleanup after a dead shim failed; removing the bundle directly");
                recorded_exit(bundle).unwrap_or_else(|| ExitInfo::unknown(SystemTime::now()))
            }
        };
        if let Err(e) = bundle::remove_bundle(bundle) {
            tracing::error!(namespace = ns, id, error = %e, "could not remove a dead task's bundle");
        }
        if let Err(e) = bundle::remove_file_if_present(socket) {
            tracing::warn!(socket = %socket.display(), error = %e, "could not remove a dead shim's socket");
        }
        exit
    }

    /// Publishes `/tasks/exit` for a task whose shim could not.
    pub(super) fn publish_exit(&self, task: &ExitedTask) {
        self.inner.events.publish(
            &task.namespace,
            TOPIC_EXIT,
            &TaskExit {
                container_id: task.id.clone(),
                id: task.id.clone(),
                pid: task.exit.pid,
                exit_status: task.exit.exit_status,
                exited_at: Some(task.exit.exited_at.into()),
            },
        );
    }

    /// Starts watching `task`'s shim: a `Wait` on the init process held open. It ends when
    /// the process exits (the shim reports that itself) or when the shim dies (then the task
    /// is cleaned up and reported stopped).
    pub(super) fn watch(&self, task: Arc<LiveTask>) {
        let manager = self.clone();
        tokio::spawn(async move {
            loop {
                let waited = task
                    .client()
                    .wait(WaitRequest {
                        id: task.id.clone(),
                        exec_id: String::new(),
                    })
                    .await;
                let Err(status) = waited else { return };
                if task.is_deleted() || !connection_trouble(status.code()) {
                    return;
                }
                if manager.call_failed(&task, status).await.is_ok() {
                    return; // dead and cleaned up
                }
                // The shim is there but the call broke: ask again, unless the task left.
                tokio::time::sleep(WATCH_RETRY).await;
                let still_registered = matches!(
                    manager.registry().get(&super::key(&task.namespace, &task.id)),
                    Some(Slot::Live(current)) if Arc::ptr_eq(current, &task)
                );
                if !still_registered {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_trouble_can_mean_a_dead_shim() {
        assert!(connection_trouble(Code::Unavailable));
        assert!(connection_trouble(Code::Unknown));
        for code in [
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::Internal,
        ] {
            assert!(!connection_trouble(code), "{code:?}");
        }
    }

    #[tokio::test]
    async fn a_shim_with_a_live_process_is_not_gone_and_one_without_is() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("shim.sock");
        // Nothing listens and no pid is recorded: gone.
        assert!(shim_gone(dir.path(), &socket).await);
        // The recorded process runs (this test's own process): not gone.
        std::fs::write(
            dir.path().join(bundle::SHIM_PID_FILE),
            std::process::id().to_string(),
        )
        .unwrap();
        assert!(!shim_gone(dir.path(), &socket).await);
        // The recorded process is dead, but something answers on the socket: not gone.
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join(bundle::SHIM_PID_FILE), dead_pid.to_string()).unwrap();
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        assert!(!shim_gone(dir.path(), &socket).await);
        drop(listener);
        assert!(shim_gone(dir.path(), &socket).await);
    }

    #[test]
    fn the_recorded_exit_is_read_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_exit(dir.path()), None);
        std::fs::write(
            dir.path().join("exit"),
            "{\"pid\":9,\"exit_status\":3,\"exited_at\":\"2024-01-01T00:00:00Z\"}",
        )
        .unwrap();
        let exit = recorded_exit(dir.path()).unwrap();
        assert_eq!((exit.pid, exit.exit_status), (9, 3));
    }
}
