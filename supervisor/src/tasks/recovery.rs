//! Finding every task again when berthd starts: each bundle under `<state>/tasks/*/*` is
//! checked concurrently — connect to its shim (a dead socket fails at once, a hung one
//! after a short timeout), ask its state. Live shims are registered as they are; a task
//! whose shim is gone is cleaned up and kept as STOPPED, with the exit the shim recorded
//! (or a clear synthetic one), until the client deletes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::containerd::task::v2::StateRequest;
use berth_shim::client::connect;
use tonic::Code;

use super::bundle::{self, FoundBundle};
use super::process::shut_down_shim;
use super::{key, ExitedTask, LiveTask, Slot, TaskManager};

/// How long a reconnected shim may take to report its task's state.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Tasks whose shim answered; they are served as before.
    pub live: usize,
    /// Tasks whose shim was gone; cleaned up and reported stopped until deleted.
    pub exited: usize,
    /// Bundles of tasks already deleted, or dead with their container gone; removed.
    pub removed: usize,
    /// How long recovery took.
    pub elapsed: Duration,
}

/// What became of one bundle.
enum Outcome {
    Live,
    Exited,
    Removed,
}

impl TaskManager {
    /// Rebuilds the registry from the bundles on disk, then opens the manager for requests
    /// (berthd serves other requests meanwhile; task requests wait).
    /// `has_container(ns, id)` says whether the task's container record still exists: a
    /// dead task without one is cleaned up but not kept, since no client could delete it.
    pub async fn recover(&self, has_container: impl Fn(&str, &str) -> bool) -> RecoveryReport {
        let started = Instant::now();
        super::spare::remove_stale_spare_sockets(&self.inner.layout.socket_dir());
        self.finish_interrupted_teardowns().await;
        let found = match bundle::scan(&self.inner.layout.tasks_root()) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot list task bundles; no task recovered");
                self.open_for_requests();
                return RecoveryReport::default();
            }
        };
        let outcomes = futures::future::join_all(found.into_iter().map(|found| {
            let keep_if_dead = has_container(&found.namespace, &found.id);
            self.recover_one(found, keep_if_dead)
        }))
        .await;
        let mut report = RecoveryReport::default();
        for outcome in outcomes {
            match outcome {
                Outcome::Live => report.live += 1,
                Outcome::Exited => report.exited += 1,
                Outcome::Removed => report.removed += 1,
            }
        }
        report.elapsed = started.elapsed();
        self.open_for_requests();
        report
    }

    /// Finishes the teardowns a dead daemon left: shuts down each deleted task's shim that
    /// is still there (it then runs the runtime's delete and exits) and removes the bundle.
    async fn finish_interrupted_teardowns(&self) {
        let parked = self.inner.layout.interrupted_teardowns();
        futures::future::join_all(parked.into_iter().map(|(bundle_dir, id)| async move {
            // Only a shim that answers on the task's socket is waited for (or killed): a
            // pid file alone may name a process that reused a dead shim's pid.
            if let (Some(socket), Some(id)) = (bundle::read_address(&bundle_dir), id) {
                if let Ok(mut client) = connect(&socket).await {
                    tracing::info!(%id, "shutting down the shim of a task deleted before the restart");
                    let shim_pid = bundle::read_shim_pid(&bundle_dir);
                    shut_down_shim(&mut client, &id, false, shim_pid).await;
                }
            }
            if let Err(e) = bundle::remove_bundle(&bundle_dir) {
                tracing::warn!(bundle = %bundle_dir.display(), error = %e,
                    "could not remove a leftover deleted bundle");
            }
        }))
        .await;
    }

    async fn recover_one(&self, found: FoundBundle, keep_if_dead: bool) -> Outcome {
        let FoundBundle {
            namespace: ns,
            id,
            path: bundle_dir,
        } = found;
        let socket =
            bundle::read_address(&bundle_dir).unwrap_or_else(|| self.inner.layout.socket(&ns, &id));
        let mut client = match connect(&socket).await {
            Ok(client) => client,
            Err(e) => {
                tracing::info!(namespace = %ns, %id, error = %e,
                    "the task's shim is gone; cleaning up");
                let exit = self
                    .clean_up_after_dead_shim(&ns, &id, &bundle_dir, &socket)
                    .await;
                if !keep_if_dead {
                    tracing::info!(namespace = %ns, %id, "its container is gone too; not keeping the task");
                    return Outcome::Removed;
                }
                let exited = Arc::new(ExitedTask {
                    namespace: ns.clone(),
                    id: id.clone(),
                    exit,
                });
                self.publish_exit(&exited);
                self.registry().insert(key(&ns, &id), Slot::Exited(exited));
                return Outcome::Exited;
            }
        };
        let state = tokio::time::timeout(
            STATE_TIMEOUT,
            client.state(StateRequest {
                id: id.clone(),
                exec_id: String::new(),
            }),
        )
        .await;
        match state {
            Ok(Err(status)) if status.code() == Code::NotFound => {
                // The shim had deleted the task when berthd stopped; finish the delete.
                tracing::info!(namespace = %ns, %id, "finishing the delete of a task");
                let shim_pid = bundle::read_shim_pid(&bundle_dir);
                shut_down_shim(&mut client, &id, true, shim_pid).await;
                self.clean_up_after_dead_shim(&ns, &id, &bundle_dir, &socket)
                    .await;
                return Outcome::Removed;
            }
            Ok(Ok(state)) => {
                let state = state.into_inner();
                tracing::info!(namespace = %ns, %id, pid = state.pid, status = state.status,
                    "task recovered");
            }
            Ok(Err(status)) => tracing::warn!(namespace = %ns, %id, %status,
                "the task's shim answers but could not report its state; keeping it"),
            Err(_) => tracing::warn!(namespace = %ns, %id,
                "the task's shim did not report its state in time; keeping it"),
        }
        let task = Arc::new(LiveTask::new(
            ns.clone(),
            id.clone(),
            bundle_dir,
            socket,
            client,
        ));
        self.registry()
            .insert(key(&ns, &id), Slot::Live(task.clone()));
        self.watch(task);
        Outcome::Live
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use berth_proto::containerd::events::TaskExit;
    use prost::Message;

    use super::*;
    use crate::events::EventBus;
    use crate::tasks::{ShimSettings, TaskRef};

    /// A manager over a temporary state dir whose shim binary does not exist, so cleanup
    /// falls back to berthd's own: the recorded exit, the bundle removed.
    fn manager(state: &Path) -> (TaskManager, EventBus) {
        let events = EventBus::new();
        let manager = TaskManager::new(
            ShimSettings {
                shim_binary: state.join("no-such-berth-shim"),
                state: state.to_path_buf(),
                publish_address: state.join("berthd.sock"),
                log_level: None,
                spare_shims: 0,
            },
            events.clone(),
        );
        (manager, events)
    }

    /// A bundle as a shim leaves it when it dies: an address nobody answers on.
    fn dead_bundle(manager: &TaskManager, ns: &str, id: &str, exit: Option<&str>) {
        let bundle_dir = manager.inner.layout.bundle(ns, id);
        bundle::create_bundle(&bundle_dir, b"{}").unwrap();
        bundle::write_address(&bundle_dir, &manager.inner.layout.socket(ns, id)).unwrap();
        if let Some(exit) = exit {
            std::fs::write(bundle_dir.join("exit"), exit).unwrap();
        }
    }

    #[tokio::test]
    async fn a_dead_shims_task_is_stopped_with_its_recorded_exit_and_its_bundle_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, events) = manager(dir.path());
        let mut subscriber = events.subscribe();
        dead_bundle(
            &manager,
            "default",
            "t1",
            Some("{\"pid\":321,\"exit_status\":7,\"exited_at\":\"2024-01-01T00:00:00Z\"}"),
        );
        dead_bundle(&manager, "other", "t2", None);

        let report = manager.recover(|_, _| true).await;
        assert_eq!((report.live, report.exited, report.removed), (0, 2, 0));

        let TaskRef::Exited(t1) = manager.lookup("default", "t1").unwrap() else {
            panic!("t1 should be exited");
        };
        assert_eq!((t1.exit.pid, t1.exit.exit_status), (321, 7));
        let TaskRef::Exited(t2) = manager.lookup("other", "t2").unwrap() else {
            panic!("t2 should be exited");
        };
        // Nothing was recorded: the clear synthetic status.
        assert_eq!((t2.exit.pid, t2.exit.exit_status), (0, 255));
        assert!(!manager.inner.layout.bundle("default", "t1").exists());
        assert!(!manager.inner.layout.bundle("other", "t2").exists());
        // Namespaces do not mix.
        assert!(manager.lookup("default", "t2").is_err());

        let mut exits = Vec::new();
        while let Ok(event) = subscriber.try_recv() {
            assert_eq!(event.topic, "/tasks/exit");
            let exit = TaskExit::decode(event.payload.as_slice()).unwrap();
            exits.push((event.namespace.clone(), exit.container_id, exit.exit_status));
        }
        exits.sort();
        assert_eq!(
            exits,
            [
                ("default".to_string(), "t1".to_string(), 7),
                ("other".to_string(), "t2".to_string(), 255)
            ]
        );
    }

    #[tokio::test]
    async fn a_dead_task_whose_container_is_gone_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _events) = manager(dir.path());
        dead_bundle(&manager, "default", "orphan", None);
        let report = manager.recover(|_, id| id != "orphan").await;
        assert_eq!((report.live, report.exited, report.removed), (0, 0, 1));
        assert!(manager.lookup("default", "orphan").is_err());
        assert!(!manager.inner.layout.bundle("default", "orphan").exists());
    }

    #[tokio::test]
    async fn a_stopped_task_is_deleted_once_with_its_exit() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _events) = manager(dir.path());
        dead_bundle(
            &manager,
            "default",
            "t1",
            Some("{\"pid\":5,\"exit_status\":3,\"exited_at\":\"2024-01-01T00:00:00Z\"}"),
        );
        manager.recover(|_, _| true).await;
        assert!(manager.live("default", "t1").is_err());
        let deleted = manager.delete("default", "t1").await.unwrap();
        assert_eq!((deleted.pid, deleted.exit_status), (5, 3));
        let again = manager.delete("default", "t1").await.unwrap_err();
        assert_eq!(again.code(), tonic::Code::NotFound);
        assert!(manager.list("default").is_empty());
    }

    #[tokio::test]
    async fn an_empty_state_dir_recovers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _events) = manager(&dir.path().join("never-made"));
        let report = manager.recover(|_, _| true).await;
        assert_eq!((report.live, report.exited, report.removed), (0, 0, 0));
    }
}
